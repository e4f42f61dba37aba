"""Model loading: validation, external data, shapes."""

from __future__ import annotations

import models
import numpy as np
import onnx
import pytest

from sdaudit.errors import BadFlagError, ModelError
from sdaudit.model.load import load_model, parse_input_shapes
from sdaudit.rewrite.instrument import instrument


def test_external_data_is_loaded_and_instrumented(tmp_path):
    model, w = models.conv(17)
    path = models.save(model, tmp_path / "ext.onnx", external=True)
    assert (tmp_path / "ext.onnx.data").exists()
    loaded = load_model(path)
    kernel = next(i for i in loaded.proto.graph.initializer if i.name == "K")
    np.testing.assert_array_equal(onnx.numpy_helper.to_array(kernel), w["K"])
    from sdaudit.model.layers import discover_layers

    instrument(loaded.proto, discover_layers(loaded.proto))  # checks all-ones equivalence


def test_external_data_outside_the_folder_is_refused(tmp_path):
    with pytest.raises(ModelError, match="outside the model's folder"):
        load_model(models.external_outside(tmp_path))


def test_missing_external_data_names_the_file(tmp_path):
    model, _ = models.conv(17)
    path = models.save(model, tmp_path / "m.onnx", external=True)
    (tmp_path / "m.onnx.data").unlink()
    with pytest.raises(ModelError, match=r"m\.onnx\.data.*missing"):
        load_model(path)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b'{"model": 1}', "JSON"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not"),
])
def test_files_that_are_not_models(tmp_path, content, message):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=message):
        load_model(path)


def test_truncated_model(tmp_path):
    model, _ = models.conv(17)
    data = model.SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError):
        load_model(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "nope.onnx")
    with pytest.raises(ModelError, match="folder"):
        load_model(tmp_path)


def test_unknown_input_shape_needs_a_hint(tmp_path):
    model, _ = models.conv(17)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].Clear()
    dims[2].dim_param = "H"
    dims[3].Clear()
    dims[3].dim_param = "W"
    path = tmp_path / "dyn.onnx"
    onnx.save_model(model, str(path))
    with pytest.raises(ModelError, match="--input-shape"):
        load_model(path)
    loaded = load_model(path, parse_input_shapes("1,2,5,5"))
    assert loaded.inputs[0].shape == ("batch", 2, 5, 5)


@pytest.mark.parametrize("spec", ["a,b", "1,-3", "x:1,2;y"])
def test_bad_input_shape_flags(spec):
    with pytest.raises(BadFlagError):
        parse_input_shapes(spec)


def test_opset_and_ir_version_preserved(tmp_path):
    model, _ = models.mlp(13)
    path = models.save(model, tmp_path / "m.onnx")
    loaded = load_model(path)
    assert loaded.opset == 13
    assert loaded.proto.ir_version == model.ir_version
