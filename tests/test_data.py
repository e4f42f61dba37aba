"""Data sources: npz (memory-mapped) and image folders."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sdaudit.data import DataOptions, InputLayout, Preprocess, open_dataset
from sdaudit.errors import DataError

GRAY = InputLayout("x", (1, 4, 4), "float32")
RGB = InputLayout("x", (3, 4, 4), "float32")


def _folder(root, classes=("cat", "dog"), per_class=3, mode="L", size=(4, 4)):
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            shape = (size[1], size[0]) if mode == "L" else (size[1], size[0], 3)
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(
                root / name / f"{i}.png")
    return root


def test_npz_is_memory_mapped_and_chunked(tmp_path):
    x = np.arange(10 * 16, dtype=np.float32).reshape(10, 1, 4, 4)
    y = np.arange(10) % 2
    np.savez(tmp_path / "d.npz", x=x, y=y)
    data = open_dataset(tmp_path / "d.npz", GRAY, num_classes=2)
    assert isinstance(data._x, np.memmap)
    chunks = list(data.chunks(4))
    assert [len(c[0]) for c in chunks] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([c[0] for c in chunks]), x)
    np.testing.assert_array_equal(np.concatenate([c[1] for c in chunks]), y)


def test_compressed_npz_still_reads(tmp_path):
    x = np.ones((3, 1, 4, 4), dtype=np.float64)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=np.array([0, 1, 0]))
    data = open_dataset(tmp_path / "c.npz", GRAY, num_classes=2)
    got, _ = next(data.chunks(8))
    assert got.dtype == np.float32
    assert got.shape == (3, 1, 4, 4)


@pytest.mark.parametrize(("arrays", "message"), [
    ({"y": np.zeros(3, int)}, "no array 'x'"),
    ({"x": np.zeros((3, 16), np.float32), "y": np.zeros(3, int)}, "shape"),
    ({"x": np.zeros((3, 1, 4, 4), np.float32), "y": np.array([0, 1, 5])}, "go up to 5"),
    ({"x": np.zeros((3, 1, 4, 4), np.float32), "y": np.array([0, 1])}, "2 labels"),
    ({"x": np.zeros((3, 1, 4, 4), np.float32), "y": np.array([0, -1, 1])}, "≥ 0"),
    ({"x": np.zeros((3, 1, 4, 4), np.float32), "y": np.array([0.5, 1, 1])}, "not integer"),
    ({"x": np.zeros((0, 1, 4, 4), np.float32), "y": np.zeros(0, int)}, "zero samples"),
])
def test_npz_problems_are_named(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError, match=message):
        open_dataset(tmp_path / "bad.npz", GRAY, num_classes=3)


def test_image_folder_sorted_classes_and_preprocessing(tmp_path):
    root = _folder(tmp_path / "imgs", classes=("b_dog", "a_cat"))
    data = open_dataset(root, GRAY, num_classes=2,
                        options=DataOptions(preprocess=Preprocess(1 / 255, (0.5,), (0.25,))))
    assert data.class_names == ("a_cat", "b_dog")
    x, y = next(data.chunks(100))
    assert x.shape == (6, 1, 4, 4)
    assert list(y) == [0, 0, 0, 1, 1, 1]
    raw = np.asarray(Image.open(root / "a_cat" / "0.png"), dtype=np.float32)
    np.testing.assert_allclose(x[0, 0], (raw / 255 - 0.5) / 0.25, atol=1e-6)


def test_image_folder_resizes_and_converts_to_rgb(tmp_path):
    root = _folder(tmp_path / "imgs", size=(9, 7))  # grayscale, wrong size, RGB model
    x, _ = next(open_dataset(root, RGB, num_classes=2).chunks(10))
    assert x.shape == (6, 3, 4, 4)
    np.testing.assert_array_equal(x[:, 0], x[:, 1])


def test_corrupt_images_are_skipped_and_counted(tmp_path):
    root = _folder(tmp_path / "imgs")
    (root / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = open_dataset(root, GRAY, num_classes=2)
    total = sum(len(y) for _, y in data.chunks(2))
    assert total == 6
    assert data.skipped.count == 1
    assert data.skipped.examples == ["cat/broken.jpg"]


@pytest.mark.parametrize(("setup", "message"), [
    (lambda _: None, "an empty folder"),
    (lambda p: (p / "a").mkdir(), "no images found"),
])
def test_folder_problems_are_named(tmp_path, setup, message):
    root = tmp_path / "data"
    root.mkdir()
    setup(root)
    with pytest.raises(DataError, match=message):
        open_dataset(root, GRAY, num_classes=2)


def test_missing_and_unknown_paths(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(tmp_path / "nope", GRAY, num_classes=2)
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DataError, match=r"not an \.npz file or a folder"):
        open_dataset(tmp_path / "data.csv", GRAY, num_classes=2)
    with pytest.raises(DataError, match=r"not an\s+image"):
        open_dataset(tmp_path, InputLayout("x", (64,), "float32"), num_classes=2)
