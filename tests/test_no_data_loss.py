"""Nothing a user gave is modified or lost: write targets that are inputs, the same as another
output, or not regular files are refused before any work (exit 2), and a run's outputs are
committed together. Through the real entry point (``sdaudit.cli.app.run``), with the checksum
of every file in the folder before and after."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import models
import pytest

from sdaudit.cli.app import run

FAST = ["--measure", "ablation", "--draws", "1", "--no-per-layer", "-q"]


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (hidden ones included), by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A model with external weights, its data, a second data set, a loader script, class names,
    labels, and an earlier report of the same model."""
    d = tmp_path_factory.mktemp("inputs")
    models.save(models.counting_net(), d / "m.onnx", external=True)
    models.counting_data(d / "d.npz")
    models.counting_data(d / "sel.npz", per_class=20)
    (d / "load.py").write_text("import numpy as np\n\ndef load_data():\n"
                               "    yield np.ones((4, 1), np.float32), np.zeros(4, np.int64)\n")
    (d / "names.txt").write_text("one\ntwo\n")
    (d / "labels.txt").write_text("a.png 0\n")
    assert run(["scan", str(d / "m.onnx"), "--data", str(d / "d.npz"), "--json",
                str(d / "old.json"), *FAST]) == 0
    return d


@pytest.fixture
def work(base, tmp_path, monkeypatch) -> Path:
    for p in base.iterdir():
        shutil.copy2(p, tmp_path / p.name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def scan_args(extra: list[str]) -> list[str]:
    return ["scan", "m.onnx", "--data", "d.npz", *FAST, *extra]


def refused(capsys, argv: list[str], folder: Path, *words: str) -> str:
    before = snapshot(folder)
    code = run(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err, err
    assert snapshot(folder) == before  # nothing changed, nothing new (no temporary file either)
    return err


@pytest.mark.parametrize(("extra", "flags"), [
    (["--selectivity-data", "sel.npz", "--json", "sel.npz"], ("--json", "--selectivity-data")),
    (["--json", "m.onnx.data"], ("--json", "external data of MODEL")),
    (["--json", "m.onnx"], ("--json", "MODEL")),
    (["--html", "d.npz"], ("--html", "--data")),
    (["--labels", "labels.txt", "--html", "labels.txt"], ("--html", "--labels")),
    (["--class-names", "names.txt", "--json", "names.txt"], ("--json", "--class-names")),
    (["--baseline", "old.json", "--json", "old.json"], ("--json", "--baseline")),
    (["--baseline", "old.json", "--html", "./old.json"], ("--html", "--baseline")),
    (["--json", "r.json", "--html", "r.json"], ("--html", "--json")),
    (["--json", "r.json", "--html", "./r.json"], ("--html", "--json")),
], ids=["selectivity-data", "external-data", "model", "data", "labels", "class-names",
        "baseline", "baseline-dot-slash", "json-is-html", "json-is-html-dot-slash"])
def test_an_output_that_is_an_input_or_another_output_is_refused(work, capsys, extra, flags):
    refused(capsys, scan_args(extra), work, *flags)


def test_the_loader_script_is_protected(work, capsys):
    refused(capsys, ["scan", "m.onnx", "--data-loader-script", "load.py:load_data", *FAST,
                     "--html", "load.py"], work, "--html", "--data-loader-script")


def test_links_are_followed(work, capsys):
    os.link(work / "sel.npz", work / "hard.json")
    (work / "soft.json").symlink_to(work / "d.npz")
    (work / "sub").mkdir()
    (work / "sub" / "up.json").symlink_to("../m.onnx.data")
    refused(capsys, scan_args(["--selectivity-data", "sel.npz", "--json", "hard.json"]), work,
            "--selectivity-data")
    refused(capsys, scan_args(["--json", "soft.json"]), work, "--data")
    refused(capsys, scan_args(["--html", "sub/up.json"]), work, "external data")
    refused(capsys, scan_args(["--json", "soft.json", "--html", "d.npz"]), work, "--data")


def test_a_folder_a_fifo_or_a_link_to_one_is_refused(work, capsys):
    os.mkfifo(work / "pipe")
    (work / "to-pipe.json").symlink_to(work / "pipe")
    (work / "folder").mkdir()
    refused(capsys, scan_args(["--json", "r.json", "--html", "folder"]), work, "--html",
            "a folder")
    refused(capsys, scan_args(["--json", "pipe"]), work, "a fifo")
    refused(capsys, scan_args(["--html", "to-pipe.json"]), work, "a fifo")
    assert not (work / "r.json").exists()


def test_a_device_is_refused_before_anything_is_written():
    """Checked on the plan alone: a regression must not get the chance to replace /dev/null."""
    from sdaudit.errors import BadFlagError
    from sdaudit.paths import PathPlan, Use

    with pytest.raises(BadFlagError, match="a device"):
        PathPlan((), (Use("--json", Path(os.devnull)),)).check()


def test_a_missing_folder_is_refused(work, capsys):
    refused(capsys, scan_args(["--json", "r.json", "--html", "nowhere/r.html"]), work,
            "--html", "does not exist")


def test_compare_never_overwrites_its_reports(work, capsys):
    shutil.copy(work / "old.json", work / "other.json")
    refused(capsys, ["compare", "old.json", "other.json", "--html", "old.json"], work,
            "--html", "REPORT")
    assert run(["compare", "old.json", "other.json", "--html", "c.html"]) == 0


def test_instrument_never_overwrites_the_model_or_its_weights(work, capsys):
    refused(capsys, ["instrument", "m.onnx", "-o", "m.onnx.data"], work, "--output",
            "external data of MODEL")
    (work / "alias.onnx").symlink_to("m.onnx")
    refused(capsys, ["instrument", "m.onnx", "-o", "alias.onnx"], work, "--output", "MODEL")


def test_a_failed_render_leaves_no_file_and_earlier_files_whole(work, capsys, monkeypatch):
    from sdaudit.report import html

    (work / "r.json").write_text("earlier")

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated renderer bug")

    monkeypatch.setattr(html, "render_report", broken)
    before = snapshot(work)
    code = run(scan_args(["--json", "r.json", "--html", "r.html"]))
    capsys.readouterr()
    assert code == 3
    assert snapshot(work) == before


def test_a_failed_rename_puts_back_what_was_replaced(work, capsys, monkeypatch):
    """The second of two renames fails: the first file is restored, the second never appears."""
    (work / "r.json").write_text("earlier")
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", flaky)
    before = snapshot(work)
    err = refused(capsys, scan_args(["--json", "r.json", "--html", "r.html"]), work, "--html",
                  "No space left")
    assert "cannot write" in err
    assert snapshot(work) == before


def test_outputs_are_written_whole_and_replaced_files_keep_their_mode(work, capsys):
    import json
    import stat

    (work / "r.json").write_text("earlier")
    (work / "r.json").chmod(0o640)
    before = snapshot(work)
    assert run(scan_args(["--json", "r.json", "--html", "r.html"])) == 0
    capsys.readouterr()
    after = snapshot(work)
    assert {k for k in after if before.get(k) != after[k]} == {"r.json", "r.html"}
    assert json.loads((work / "r.json").read_text())["schema_version"].startswith("1.")
    assert stat.S_IMODE((work / "r.json").stat().st_mode) == 0o640


def test_writing_through_a_link_keeps_the_link(work, capsys):
    (work / "reports").mkdir()
    (work / "reports" / "r.json").write_text("earlier")
    (work / "latest.json").symlink_to("reports/r.json")
    assert run(scan_args(["--json", "latest.json"])) == 0
    capsys.readouterr()
    assert (work / "latest.json").is_symlink()
    assert (work / "reports" / "r.json").read_text().startswith("{")
