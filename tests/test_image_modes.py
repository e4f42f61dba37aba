"""Every kind of image file is read at its real bit depth and orientation, or skipped with a
reason: each against a numpy reference computed from the pixel values written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import png
import pytest
from onnx import TensorProto, helper
from PIL import Image

from sdaudit.cli.app import run
from sdaudit.data.base import InputLayout
from sdaudit.data.decode import UnreadableImageError, read_pixels
from sdaudit.data.preprocess import Preprocess, pixels_to_array

H, W = 4, 5
RNG = np.random.default_rng(7)
# float32 arithmetic on values ≤ 255: a few ulps
TOL = 1e-5


def sample(path: Path, channels: int, pre: Preprocess | None = None) -> np.ndarray:
    """What sdaudit feeds the model for this file: [H, W, C], scale 1/255, no resize."""
    layout = InputLayout("x", (H, W, channels), "float32", channels_last=True)
    return pixels_to_array(read_pixels(path, channels), pre or Preprocess(), layout)


def write_png16(path: Path, arr: np.ndarray, *, greyscale: bool, alpha: bool) -> Path:
    height, width = arr.shape[:2]
    with path.open("wb") as fh:
        png.Writer(width, height, greyscale=greyscale, alpha=alpha, bitdepth=16).write(
            fh, arr.reshape(height, -1).tolist())
    return path


def test_sixteen_bit_grey_png_is_scaled_not_clipped(tmp_path):
    v = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    Image.fromarray(v).save(tmp_path / "g.png")
    assert Image.open(tmp_path / "g.png").mode == "I;16"
    np.testing.assert_allclose(sample(tmp_path / "g.png", 1)[:, :, 0], v / 65535, atol=TOL)
    rgb = sample(tmp_path / "g.png", 3)
    for c in range(3):  # grey for an RGB model: repeated
        np.testing.assert_allclose(rgb[:, :, c], v / 65535, atol=TOL)


def test_sixteen_bit_big_endian_and_pgm(tmp_path):
    v = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
    Image.fromarray(v.astype(">u2")).save(tmp_path / "b.tif")
    assert Image.open(tmp_path / "b.tif").mode == "I;16B"
    np.testing.assert_allclose(sample(tmp_path / "b.tif", 1)[:, :, 0], v / 65535, atol=TOL)
    twelve = RNG.integers(0, 4096, (H, W), dtype=np.uint16)  # a 12-bit PGM: maxval 4095
    (tmp_path / "t.pgm").write_bytes(b"P5\n5 4\n4095\n" + twelve.astype(">u2").tobytes())
    # PIL rescales maxval to 65535 (rounding): within one 16-bit step of v / 4095
    np.testing.assert_allclose(sample(tmp_path / "t.pgm", 1)[:, :, 0], twelve / 4095,
                               atol=1 / 65535 + TOL)


def test_48_bit_rgb_png_at_full_depth(tmp_path):
    v = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)
    path = write_png16(tmp_path / "c.png", v, greyscale=False, alpha=False)
    np.testing.assert_allclose(sample(path, 3), v / 65535, atol=TOL)
    luma = v.astype(np.float64) @ np.array([0.299, 0.587, 0.114]) / 65535
    np.testing.assert_allclose(sample(path, 1)[:, :, 0], luma, atol=TOL)
    # Not the high byte PIL keeps: the difference is visible at this scale.
    assert np.abs(sample(path, 3) - (v >> 8) / 255).max() > 1e-4


def test_sixteen_bit_alpha_is_dropped_and_counted(tmp_path):
    v = RNG.integers(0, 65536, (H, W, 4), dtype=np.uint16)
    v[..., 3] = 65535
    v[0, 0, 3] = 0
    path = write_png16(tmp_path / "a.png", v, greyscale=False, alpha=True)
    assert read_pixels(path, 3).transparent
    np.testing.assert_allclose(sample(path, 3), v[..., :3] / 65535, atol=TOL)
    la = RNG.integers(0, 65536, (H, W, 2), dtype=np.uint16)
    la[..., 1] = 65535
    path = write_png16(tmp_path / "la.png", la, greyscale=True, alpha=True)
    assert not read_pixels(path, 1).transparent  # all opaque: nothing to count
    np.testing.assert_allclose(sample(path, 1)[:, :, 0], la[..., 0] / 65535, atol=TOL)


def test_eight_bit_alpha_modes_drop_alpha(tmp_path):
    rgba = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_pixels(tmp_path / "a.png", 3).transparent
    np.testing.assert_allclose(sample(tmp_path / "a.png", 3), rgba[..., :3] / 255, atol=TOL)
    la = RNG.integers(0, 256, (H, W, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(sample(tmp_path / "la.png", 1)[:, :, 0], la[..., 0] / 255,
                               atol=TOL)


def test_palette_with_transparency_uses_its_palette(tmp_path):
    palette = RNG.integers(0, 256, (4, 3), dtype=np.uint8)
    index = RNG.integers(0, 4, (H, W), dtype=np.uint8)
    img = Image.fromarray(index, "P")
    img.putpalette(palette.flatten().tolist())
    img.save(tmp_path / "p.png", transparency=2)
    pixels = read_pixels(tmp_path / "p.png", 3)
    assert pixels.transparent == bool((index == 2).any())
    np.testing.assert_allclose(sample(tmp_path / "p.png", 3), palette[index] / 255, atol=TOL)


def test_cmyk_converts_naively(tmp_path):
    cmyk = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.tif")
    c, k = cmyk[..., :3].astype(np.float64), cmyk[..., 3:].astype(np.float64)
    expected = (255 - c) * (255 - k) / 255 / 255
    # PIL rounds each channel to an integer: within one 8-bit step
    np.testing.assert_allclose(sample(tmp_path / "c.tif", 3), expected, atol=1 / 255 + TOL)


@pytest.mark.parametrize(("orientation", "turn"), [
    (3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1])])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    upright = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    stored = np.ascontiguousarray({3: np.rot90(upright, 2), 6: np.rot90(upright, 1),
                                   8: np.rot90(upright, -1), 2: upright[:, ::-1]}[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored, "L").save(tmp_path / "e.png", exif=exif)
    assert np.array_equal(turn(stored), upright)
    np.testing.assert_allclose(sample(tmp_path / "e.png", 1)[:, :, 0], upright / 255, atol=TOL)


def test_images_without_a_known_range_are_not_guessed(tmp_path):
    Image.fromarray(RNG.standard_normal((H, W)).astype(np.float32)).save(tmp_path / "f.tif")
    Image.fromarray(RNG.integers(0, 2**31, (H, W)).astype(np.int32)).save(tmp_path / "i.tif")
    for name, reason in (("f.tif", "floating-point"), ("i.tif", "32-bit integer")):
        with pytest.raises(UnreadableImageError, match=reason):
            read_pixels(tmp_path / name, 1)


def _grey_model(path: Path) -> Path:
    """x[N,1,4,5] ─Conv(1×1, weights 1, 1)─► c[N,2,4,5] ─Relu─► r ─GlobalAveragePool─► g
    ─Flatten─► f[N,2] ─Gemm(W = [[1,-1],[1,-1]]/2, b = [-0.5, 0.5])─► logits[N,2]:
    class 0 exactly when the image's mean (as fed) exceeds 0.5."""
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "W", "b"], ["logits"])]
    graph = helper.make_graph(
        nodes, "grey", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, H, W])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [onnx.numpy_helper.from_array(np.ones((2, 1, 1, 1), np.float32), "K"),
         onnx.numpy_helper.from_array(np.array([[1, -1], [1, -1]], np.float32) / 2, "W"),
         onnx.numpy_helper.from_array(np.array([-0.5, 0.5], np.float32), "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save_model(model, str(path))
    return path


def test_a_scan_of_16_bit_images_matches_the_same_pixels_as_an_npz(tmp_path, capsys):
    """Bright (≈ 0.6) and dark (≈ 0.3) 16-bit pictures: read as 8-bit and clipped every one
    would look white (accuracy 0.5); read right, the report equals the npz of v / 65535."""
    model = _grey_model(tmp_path / "m.onnx")
    xs, ys = [], []
    for label, level in ((0, 40000), (1, 20000)):
        (tmp_path / "imgs" / f"c{label}").mkdir(parents=True)
        for i in range(6):
            v = (level + RNG.integers(-3000, 3000, (H, W))).astype(np.uint16)
            Image.fromarray(v).save(tmp_path / "imgs" / f"c{label}" / f"{i}.png")
            xs.append(v[None] / 65535)
            ys.append(label)
    np.savez(tmp_path / "ref.npz", x=np.array(xs, np.float32), y=np.array(ys))
    reports = {}
    for name, data in (("img", tmp_path / "imgs"), ("ref", tmp_path / "ref.npz")):
        assert run(["scan", str(model), "--data", str(data), "--measure", "ablation",
                    "--draws", "2", "-q", "--json", str(tmp_path / f"{name}.json")]) == 0
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    capsys.readouterr()
    assert reports["img"]["baseline"]["accuracy"] == 1.0
    assert reports["img"]["data"]["skipped"] == 0
    assert reports["img"]["ablation"]["accuracy_mean"] == reports["ref"]["ablation"]["accuracy_mean"]


def test_a_scan_skips_and_names_unreadable_kinds(tmp_path, capsys):
    model = _grey_model(tmp_path / "m.onnx")
    for label in (0, 1):
        (tmp_path / "imgs" / f"c{label}").mkdir(parents=True)
        for i in range(3):
            Image.fromarray(RNG.integers(0, 256, (H, W), dtype=np.uint8)).save(
                tmp_path / "imgs" / f"c{label}" / f"{i}.png")
    Image.fromarray(np.ones((H, W), np.float32)).save(tmp_path / "imgs" / "c0" / "f.tif")
    rgba = RNG.integers(0, 256, (H, W, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "imgs" / "c1" / "a.png")
    assert run(["scan", str(model), "--data", str(tmp_path / "imgs"), "--measure", "ablation",
                "--draws", "1", "-q", "--json", str(tmp_path / "r.json")]) == 0
    capsys.readouterr()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["data"]["skipped"] == 1
    assert data["data"]["skipped_examples"] == ["c0/f.tif"]
    notes = " ".join(data["summary"]["notes"])
    assert "floating-point pixels" in notes
    assert "1 images have transparent pixels" in notes


def test_a_panorama_that_resizing_would_blow_up_is_skipped(tmp_path):
    """The shorter side to --resize makes the long side of a 4000×2 strip 16 million pixels:
    skipped with the reason before PIL allocates it."""
    Image.new("L", (4000, 2)).save(tmp_path / "strip.png")
    layout = InputLayout("x", (H, W, 1), "float32", channels_last=True)
    with pytest.raises(UnreadableImageError, match="pixel limit"):
        pixels_to_array(read_pixels(tmp_path / "strip.png", 1), Preprocess(resize=8000), layout)
