"""`scan --config FILE` and `[tool.sdaudit]` in ./pyproject.toml, through the entry point."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import models
import pytest
from test_ci_output import sdaudit


@pytest.fixture
def project(tmp_path):
    """A CI job's folder: a model and data under models/, the settings file at the root."""
    folder = tmp_path / "repo"
    (folder / "models").mkdir(parents=True)
    models.save(models.counting_net(), folder / "models" / "m.onnx")
    models.counting_data(folder / "models" / "d.npz")
    return folder


def scan_in(folder: Path, *args: str):
    import os

    cwd = Path.cwd()
    os.chdir(folder)
    try:
        return sdaudit("scan", *args)
    finally:
        os.chdir(cwd)


def test_the_command_line_overrides_the_file_which_overrides_defaults(project, tmp_path):
    settings = project / "ci.toml"
    settings.write_text(
        '# the flags of sdaudit scan, without their dashes\n'
        'data = "models/d.npz"\nmeasure = ["ablation"]\nfractions = [0, 0.3, 0.6]\n'
        'draws = 2\nseed = 4\nfail-under = 0.2\nno-per-layer = true\n')
    out = tmp_path / "r.json"
    result = sdaudit("scan", str(project / "models" / "m.onnx"), "--config", str(settings),
                     "--draws", "3", "--json", str(out), "-q")  # run from elsewhere
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    config = report["config"]
    assert config["draws"] == 3  # the flag wins
    assert (config["seed"], config["fractions"], config["measures"]) == (4, [0, 0.3, 0.6],
                                                                       ["ablation"])
    assert config["per_layer"] is False  # no-per-layer = true
    assert config["gate"]["fail_under"] == 0.2
    assert config["mi_bins"] == 10  # untouched: the default
    # The data path is the file's own folder's models/d.npz, wherever scan runs from.
    assert report["data"]["path"] == str(project / "models" / "d.npz")
    source = f"--config {settings}"
    assert report["settings"] == {"config": source, "sources": {
        "data": source, "measure": source, "fractions": source, "draws": "command line",
        "seed": source, "per-layer": source, "json": "command line", "fail-under": source,
        "quiet": "command line"}}


def test_pyproject_tool_table_is_read_from_the_current_folder(project):
    (project / "pyproject.toml").write_text(
        '[project]\nname = "my-model"\n\n[tool.sdaudit]\ndata = "models/d.npz"\n'
        'measure = "ablation"\ndraws = 2\nfail-under = 0.99\njson = "audit.json"\n')
    result = scan_in(project, "models/m.onnx", "-q")
    assert result.returncode == 1  # the file's gate applies: the counting net's AUC is lower
    report = json.loads((project / "audit.json").read_text())
    assert report["settings"]["config"] == "pyproject.toml [tool.sdaudit]"
    assert report["settings"]["sources"]["fail-under"] == "pyproject.toml [tool.sdaudit]"
    assert report["config"]["gate"]["fail_under"] == 0.99
    # A flag still overrides it.
    assert scan_in(project, "models/m.onnx", "-q", "--fail-under", "0.1").returncode == 0


def test_a_pyproject_without_the_table_changes_nothing(project):
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n')
    result = scan_in(project, "models/m.onnx", "--data", "models/d.npz", "--draws", "2",
                     "--measure", "ablation", "--json", "r.json", "-q")
    assert result.returncode == 0, result.stderr
    assert json.loads((project / "r.json").read_text())["settings"]["config"] is None


@pytest.mark.parametrize(("text", "expected"), [
    ("fail_undr = 0.5\n", "unknown key 'fail_undr'; did you mean 'fail-under'?"),
    ('mi-bins = "many"\n', "mi-bins = 'many': 'many' is not a valid int"),
    ("per-layer = 3\n", "per-layer = 3:"),
    ("no-quiet = true\n", "unknown key 'no-quiet'"),
    ("[scan]\ndraws = 2\n", "unknown key 'scan'"),
    ("draws = \n", "not valid TOML"),
])
def test_a_bad_setting_is_one_line_exit_2_naming_it(project, text, expected):
    settings = project / "ci.toml"
    settings.write_text(text)
    out = project / "r.json"
    result = sdaudit("scan", str(project / "models" / "m.onnx"), "--data",
                     str(project / "models" / "d.npz"), "--config", str(settings), "--json",
                     str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"sdaudit: error: --config {settings}")
    assert expected in lines[0]
    assert not out.exists()  # no report claiming success


def test_a_missing_settings_file(project):
    result = sdaudit("scan", str(project / "models" / "m.onnx"), "--config", "nope.toml")
    assert result.returncode == 2
    assert result.stderr.startswith("sdaudit: error: --config nope.toml: no such file")


def test_the_settings_file_is_never_overwritten(project):
    settings = project / "ci.toml"
    settings.write_text('data = "models/d.npz"\ndraws = 2\n')
    before = hashlib.sha256(settings.read_bytes()).hexdigest()
    for flag in ("--json", "--html"):
        result = sdaudit("scan", str(project / "models" / "m.onnx"), "--config", str(settings),
                         flag, str(settings), "-q")
        assert result.returncode == 2
        assert "never overwrites what it reads" in result.stderr
    assert hashlib.sha256(settings.read_bytes()).hexdigest() == before
