"""The report says when the data holds fewer classes than the model outputs (issue 17)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from test_ci_output import sdaudit

ROOT = Path(__file__).resolve().parents[1]
PNGS = ROOT / "samples" / "digits-png"


def test_data_with_fewer_classes_than_the_model_is_noted(tmp_path):
    folder = tmp_path / "digits"
    for digit in ("3", "7"):  # two of the ten classes
        (folder / digit).mkdir(parents=True)
        for png in sorted((PNGS / digit).glob("*.png"))[:12]:
            shutil.copy(png, folder / digit / png.name)
    names = tmp_path / "classes.txt"  # folders "3" and "7" are those classes, not the first two
    names.write_text("".join(f"{d}\n" for d in range(10)))
    out = tmp_path / "r.json"
    result = sdaudit("scan", str(ROOT / "samples" / "digits-cnn.onnx"), "--data", str(folder),
                     "--class-names", str(names), "--measure", "ablation", "--draws", "2",
                     "--json", str(out), "-q")
    assert result.returncode == 0, result.stderr
    notes = json.loads(out.read_text())["summary"]["notes"]
    assert ("the data holds 2 of the model's 10 classes: per-class figures and class "
            "selectivity cover those only") in notes
    assert "2 of the model's 10 classes" in result.stdout  # the panel shows the notes


def test_data_with_every_class_gets_no_such_note(tmp_path):
    out = tmp_path / "r.json"
    result = sdaudit("scan", str(ROOT / "samples" / "digits-cnn.onnx"), "--data", str(PNGS),
                     "--measure", "ablation", "--draws", "1", "--max-samples", "60", "--json",
                     str(out), "-q")
    assert result.returncode == 0, result.stderr
    notes = json.loads(out.read_text())["summary"]["notes"]
    assert not any("of the model's 10 classes" in n for n in notes)


def test_colour_images_converted_to_a_grey_model_are_noted(tmp_path):
    """RGB copies of the digit PNGs (R = G = B): converted to the CNN's one channel, the same
    accuracy as the grey originals, and a note saying what was converted."""
    from PIL import Image

    colour, grey = tmp_path / "colour", tmp_path / "grey"
    for digit in range(10):
        for folder in (colour, grey):
            (folder / str(digit)).mkdir(parents=True)
        for png in sorted((PNGS / str(digit)).glob("*.png"))[:6]:
            shutil.copy(png, grey / str(digit) / png.name)
            Image.open(png).convert("RGB").save(colour / str(digit) / png.name)
    reports = {}
    for name, folder in (("colour", colour), ("grey", grey)):
        out = tmp_path / f"{name}.json"
        result = sdaudit("scan", str(ROOT / "samples" / "digits-cnn.onnx"), "--data",
                         str(folder), "--measure", "ablation", "--draws", "1", "--json",
                         str(out), "-q")
        assert result.returncode == 0, result.stderr
        reports[name] = json.loads(out.read_text())
    notes = [n for n in reports["colour"]["summary"]["notes"] if "converted" in n]
    assert notes == ["60 images converted colour → grey (the model takes one channel; "
                     "ITU-R 601 luma, as PIL's convert('L'))"]
    assert not [n for n in reports["grey"]["summary"]["notes"] if "converted" in n]
    assert reports["colour"]["unablated"]["accuracy"] == reports["grey"]["unablated"]["accuracy"]
