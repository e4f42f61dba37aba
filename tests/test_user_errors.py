"""Errors user input provokes deep inside (onnx, numpy, PIL, ONNX Runtime, a loader script):
each is one line naming the fix, exit 2, no traceback, no report. Through the real entry point."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from sdaudit.cli.app import run

FAST = ["--measure", "ablation", "--draws", "1", "--no-per-layer", "-q"]


def _counting(d: Path) -> Path:
    return models.save(models.counting_net(), d / "m.onnx")


def _data(d: Path) -> Path:
    return models.counting_data(d / "d.npz")


def _truncated_weights(d: Path) -> Path:
    path = models.save(models.counting_net(), d / "w.onnx", external=True)
    data = (d / "w.onnx.data").read_bytes()
    (d / "w.onnx.data").write_bytes(data[: len(data) // 2])
    return path


def _tokens(d: Path) -> Path:
    """x[N,3] int64 ─Gather(E[10,4])─► g ─Relu─► r ─ReduceMean(axis 1)─► m ─Gemm─► logits."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Gather", ["E", "x"], ["g"]), helper.make_node("Relu", ["g"], ["r"]),
             helper.make_node("ReduceMean", ["r"], ["m"], axes=[1], keepdims=0),
             helper.make_node("Gemm", ["m", "W"], ["logits"])]
    graph = helper.make_graph(
        nodes, "tok", [helper.make_tensor_value_info("x", TensorProto.INT64, ["N", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [onnx.numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "E"),
         onnx.numpy_helper.from_array(rng.standard_normal((4, 2)).astype(np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(d / "tok.onnx"))
    return d / "tok.onnx"


def _token_ids(top: int) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        x = np.array([[1, 2, 3], [4, 5, top]] * 10, np.int64)
        np.savez(d / "tok.npz", x=x, y=np.array([0, 1] * 10))
        return d / "tok.npz"
    return make


def _script(body: str) -> Callable[[Path], str]:
    def make(d: Path) -> str:
        (d / "load.py").write_text("import numpy as np\nimport sys\n\n" + body)
        return str(d / "load.py")
    return make


def _flat_images_with_labels(text: str) -> Callable[[Path], list[str]]:
    def make(d: Path) -> list[str]:
        from PIL import Image

        (d / "imgs").mkdir()
        Image.new("RGB", (5, 5)).save(d / "imgs" / "a.png")
        (d / "labels.txt").write_text(text)
        return ["--data", str(d / "imgs"), "--labels", str(d / "labels.txt")]
    return make


def _rgb(d: Path) -> Path:
    model = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("GlobalAveragePool", ["r"], ["g"]),
         helper.make_node("Flatten", ["g"], ["logits"])], "rgb",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])]),
        opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(d / "rgb.onnx"))
    return d / "rgb.onnx"


def _npz(**arrays) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        np.savez(d / "bad.npz", **arrays)
        return d / "bad.npz"
    return make


SCRIPT_LABELS = "def load_data():\n    yield np.ones((4, 1), np.float32), np.array({})\n"
# (id, model builder, argv builder (data flags), extra flags, words the message must hold)
CASES: list[tuple[str, Callable[[Path], Path], Callable[[Path], object] | None, list[str],
                  tuple[str, ...]]] = [
    ("external data truncated", _truncated_weights, _data, [], ("truncated", "weights file")),
    ("seed negative", _counting, _data, ["--seed", "-1"], ("--seed -1",)),
    ("seed past int64", _counting, _data, ["--seed", str(2**64)], ("--seed",)),
    ("npz x is one number", _counting, _npz(x=np.float32(1), y=np.int64(0)), [],
     ("single number",)),
    ("token ids past the vocabulary", _tokens, _token_ids(60), [],
     ("ONNX Runtime cannot run the model on the data", "Gather", "idx=60")),
    ("loader script calls sys.exit", _counting, _script("sys.exit(7)\n"), [], ("SystemExit",)),
    ("loader script exits while loading", _counting,
     _script("def load_data():\n    sys.exit(3)\n"), [], ("SystemExit",)),
    ("loader script yields strings", _counting,
     _script("def load_data():\n    yield np.array([['a']] * 4), np.zeros(4, int)\n"), [],
     ("dtype <U1",)),
    ("loader script labels are strings", _counting, _script(SCRIPT_LABELS.format("['a'] * 4")),
     [], ("labels of dtype",)),
    ("loader script labels are fractions", _counting,
     _script(SCRIPT_LABELS.format("[0.5] * 4")), [], ("not whole numbers",)),
    ("loader script labels hold None", _counting,
     _script(SCRIPT_LABELS.format("[None, 1, 0, 1]")), [], ("labels of dtype object",)),
    ("labels file with a negative label", _rgb, _flat_images_with_labels("a.png -1\n"), [],
     ("negative",)),
    ("fractions with nan", _counting, _data, ["--fractions", "0,nan"], ("--fractions",)),
    ("noise levels with inf", _counting, _data, ["--measure", "noise", "--noise-levels", "1,inf"],
     ("finite",)),
    ("max drop nan", _counting, _data, ["--baseline", "b.json", "--max-drop", "nan"],
     ("--max-drop",)),
    ("scale nan", _rgb, _flat_images_with_labels("a.png 0\n"), ["--scale", "nan"], ("--scale",)),
    # --resize 100000 made every 5×5 picture 10^10 pixels: the process was killed for memory
    ("resize past the pixel limit", _rgb, _flat_images_with_labels("a.png 0\n"),
     ["--resize", "100000"], ("--resize 100000", "at most 8192")),
]


@pytest.mark.parametrize(("model", "data", "args", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_user_error(tmp_path, capsys, model, data, args, words):
    report = tmp_path / "report.json"
    argv = ["scan", str(model(tmp_path)), "--json", str(report), *FAST, *args]
    made = data(tmp_path) if data is not None else None
    if isinstance(made, list):
        argv += made
    elif isinstance(made, str):
        argv += ["--data-loader-script", made]
    elif made is not None:
        argv += ["--data", str(made)]
    if "--baseline" in args:
        assert run(["scan", argv[1], "--data", str(_data(tmp_path)), "--json",
                    str(tmp_path / "b.json"), *FAST]) == 0
        capsys.readouterr()
    code = run(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("sdaudit: error:")
    for word in words:
        assert word in err, err
    assert not report.exists()
    assert out == ""


def test_token_ids_inside_the_vocabulary_run(tmp_path, capsys):
    """The same token model runs when its data fit: the check above blames the data, not it."""
    code = run(["scan", str(_tokens(tmp_path)), "--data", str(_token_ids(9)(tmp_path)), *FAST])
    capsys.readouterr()
    assert code == 0


def test_a_failure_of_sdaudit_inside_onnxruntime_stays_a_bug(tmp_path, capsys, monkeypatch):
    """An ONNX Runtime error the plain model does not have is sdaudit's: exit 3, traceback."""
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    from sdaudit.runtime import engine

    def broken(*_args, **_kwargs):
        raise Fail("simulated failure of a rewritten graph")

    monkeypatch.setattr(engine.Engine, "_sweep_chunk", broken)
    code = run(["scan", str(_counting(tmp_path)), "--data", str(_data(tmp_path)), *FAST])
    err = capsys.readouterr().err
    assert code == 3
    assert "Traceback" in err


@pytest.mark.parametrize("seed", ["-5", str(2**64)])
def test_instrument_refuses_seeds_out_of_range(tmp_path, capsys, seed):
    code = run(["instrument", str(_counting(tmp_path)), "-o", str(tmp_path / "i.onnx"),
                "--seed", seed])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "--seed" in err
    assert not (tmp_path / "i.onnx").exists()


def test_large_seeds_keep_distinct_in_graph_noise():
    """Above 2^24 a float32 seed would merge neighbours: the in-graph seeds stay distinct."""
    from sdaudit.rewrite.instrument import graph_seed

    assert graph_seed(5, 2) == 7.0  # small seeds: unchanged (seed + layer position)
    big = [graph_seed(2**24 + s, p) for s in range(4) for p in range(3)]
    assert len(set(big)) == len(big)
    assert all(float(np.float32(v)) == v for v in big)  # exact as the float32 ONNX stores
