"""The commands driven through typer's CliRunner: output, files and exit codes."""

from __future__ import annotations

import json

import jsonschema
import models
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from sdaudit.report.json_io import load_schema


@pytest.fixture
def conv_model(tmp_path):
    return models.save(models.conv(17)[0], tmp_path / "conv.onnx")


@pytest.fixture
def counting(tmp_path):
    model = models.save(models.counting_net(), tmp_path / "count.onnx")
    return model, models.counting_data(tmp_path / "count.npz")


def test_help_lists_the_commands(runner, app):
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("layers", "instrument", "scan"):
        assert command in result.output


def test_layers_text_and_json(runner, app, conv_model):
    result = runner.invoke(app, ["layers", str(conv_model)])
    assert result.exit_code == 0, result.output
    assert "Relu" in result.output
    assert "✓" in result.output
    result = runner.invoke(app, ["layers", str(conv_model), "--json"])
    data = json.loads(result.stdout)
    assert data["layers"][0] | {"shape": None} == {
        "name": "r", "op_type": "Relu", "kind": "activation", "shape": None, "channel_axis": 1,
        "channels": 3, "depth": 1, "index": 1, "default": True, "batch_axis": 0}
    assert data["layers"][0]["shape"] == ["N", 3, 5, 5]


def test_instrument_writes_a_model_whose_masks_work(runner, app, conv_model, tmp_path):
    out = tmp_path / "inst.onnx"
    before = conv_model.read_bytes()
    result = runner.invoke(app, ["instrument", str(conv_model), "-o", str(out), "--layers", "r"])
    assert result.exit_code == 0, result.output
    assert conv_model.read_bytes() == before  # nothing the user gave is modified
    model = onnx.load(str(out))
    names = [i.name for i in model.graph.input]
    assert names == ["x", "r.mask", "r.noise_sd"]
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(np.float32)
    ref = ort.InferenceSession(str(conv_model)).run(None, {"x": x})[0]
    ones = {"r.mask": np.ones((1, 3), np.float32), "r.noise_sd": np.zeros((1, 3), np.float32)}
    np.testing.assert_allclose(sess.run(["logits"], {"x": x, **ones})[0], ref, atol=1e-5)


def test_instrument_refuses_to_overwrite_its_input(runner, app, conv_model):
    result = runner.invoke(app, ["instrument", str(conv_model), "-o", str(conv_model)])
    assert result.exit_code == 2
    assert "never overwrites" in result.stderr


def test_scan_text_report(runner, app, counting, tmp_path):
    model, data = counting
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["scan", str(model), "--data", str(data), "--draws", "2",
                                 "--json", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "AUC" in result.stdout
    assert "risk" in result.stdout
    jsonschema.validate(json.loads(out.read_text()), load_schema())


def test_scan_format_json_prints_only_json(runner, app, counting):
    model, data = counting
    result = runner.invoke(app, ["scan", str(model), "--data", str(data), "--draws", "2",
                                 "--format", "json", "--measure", "ablation"])
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema())
    assert report["summary"]["ablation_auc"] > 0


def test_gate_failure_exits_1_whatever_the_format(runner, app, counting):
    model, data = counting
    for fmt in ("text", "json"):
        result = runner.invoke(app, ["scan", str(model), "--data", str(data), "--measure",
                                     "ablation", "--fail-under", "0.99", "--format", fmt, "-q"])
        assert result.exit_code == 1, result.output
    if fmt == "json":
        assert json.loads(result.stdout)["gate"]["passed"] is False


@pytest.mark.parametrize(("args", "message"), [
    (["--fractions", "0,1.5"], "outside [0, 1]"),
    (["--draws", "0"], "--draws"),
    (["--layers", "nothing"], "matches no auditable tensor"),
    (["--measure", "magic"], "unknown measurement"),
    (["--max-drop", "0.1"], "--baseline"),
])
def test_bad_flags_exit_2_with_one_line(runner, app, counting, tmp_path, args, message):
    model, data = counting
    out = tmp_path / "never.json"
    result = runner.invoke(app, ["scan", str(model), "--data", str(data), "--json", str(out),
                                 *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_a_file_that_is_not_a_model(runner, app, tmp_path, counting):
    bad = tmp_path / "model.onnx"
    bad.write_text('{"not": "a model"}')
    result = runner.invoke(app, ["scan", str(bad), "--data", str(counting[1])])
    assert result.exit_code == 2
    assert "not an ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_imports_nothing_heavy():
    """`sdaudit --help` stays instant: the CLI imports no ONNX, numpy, torch or plotting code."""
    import subprocess
    import sys

    code = ("import sys, sdaudit.cli.app; heavy = ('onnx', 'onnxruntime', 'numpy', 'torch', "
            "'matplotlib', 'onnx_graphsurgeon', 'PIL'); "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m_runs_the_cli():
    """`python -m sdaudit` is the same command line as the `sdaudit` script."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "sdaudit", "--version"], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr
    from sdaudit import __version__

    assert __version__ in out.stdout
    bad = subprocess.run([sys.executable, "-m", "sdaudit", "scan"], capture_output=True,
                         text=True, check=False)
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr


def test_layers_of_an_instrumented_model_say_so(tmp_path, capsys):
    from conftest import ROOT

    from sdaudit.cli.app import run

    out = tmp_path / "inst.onnx"
    assert run(["instrument", str(ROOT / "samples" / "digits-mlp.onnx"), "-o", str(out)]) == 0
    capsys.readouterr()
    assert run(["layers", str(out)]) == 0
    assert "instrumented already" in capsys.readouterr().err
    assert run(["layers", str(ROOT / "samples" / "digits-mlp.onnx")]) == 0
    assert "instrumented already" not in capsys.readouterr().err
