"""TorchScript input: converted through torch (the optional extra), same numbers as ONNX."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES

torch = pytest.importorskip("torch")
nn = torch.nn


def _net() -> nn.Module:
    """A small conv net with seeded weights: Conv-ReLU ×3, pooling, a dense head."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10),
    )
    return net.eval()


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("SDAUDIT_CACHE", str(tmp_path / "cache"))
    net = _net()
    x = np.load(SAMPLES / "digits-train.npz")["x"][:300]
    example = torch.zeros(1, 1, 8, 8)
    scripted = torch.jit.trace(net, example)
    scripted.save(str(tmp_path / "net.pt"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), str(tmp_path / "net.onnx"), dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17)
    np.savez(tmp_path / "x.npz", x=x)  # unlabelled: predictions stand in
    return tmp_path


def test_torchscript_and_its_onnx_export_agree(runner, app, files):
    common = ["--data", str(files / "x.npz"), "--format", "json", "-q", "--draws", "3",
              "--measure", "ablation,noise"]
    a = runner.invoke(app, ["scan", str(files / "net.pt"), "--input-shape", "1,1,8,8", *common])
    b = runner.invoke(app, ["scan", str(files / "net.onnx"), *common])
    assert a.exit_code == 0, a.output
    assert b.exit_code == 0, b.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert ra["model"]["converted_onnx"].endswith(".onnx")
    assert ra["summary"]["ablation_auc"] == pytest.approx(rb["summary"]["ablation_auc"], abs=0.01)
    assert ra["summary"]["noise_auc"] == pytest.approx(rb["summary"]["noise_auc"], abs=0.01)
    np.testing.assert_allclose(ra["ablation"]["accuracy_mean"], rb["ablation"]["accuracy_mean"],
                               atol=0.01)
    assert len(list((files / "cache" / "torch-onnx").glob("*.onnx"))) == 1


def test_torchscript_needs_an_input_shape(runner, app, files):
    result = runner.invoke(app, ["layers", str(files / "net.pt")])
    assert result.exit_code == 2
    assert "--input-shape" in result.stderr


def test_a_state_dict_is_not_a_model(runner, app, files):
    torch.save(_net().state_dict(), files / "weights.pth")
    result = runner.invoke(app, ["layers", str(files / "weights.pth"), "--input-shape", "1,1,8,8"])
    assert result.exit_code == 2
    assert "not a TorchScript file" in result.stderr
    assert "Traceback" not in result.stderr


def test_torch_export_program(runner, app, files):
    program = torch.export.export(_net(), (torch.zeros(4, 1, 8, 8),))
    torch.export.save(program, str(files / "net.pt2"))
    common = ["--data", str(files / "x.npz"), "--format", "json", "-q", "--draws", "2",
              "--measure", "ablation"]
    a = runner.invoke(app, ["scan", str(files / "net.pt2"), "--input-shape", "4,1,8,8", *common])
    b = runner.invoke(app, ["scan", str(files / "net.onnx"), *common])
    assert a.exit_code == 0, a.output
    ra, rb = json.loads(a.stdout), json.loads(b.stdout)
    assert ra["summary"]["ablation_auc"] == pytest.approx(rb["summary"]["ablation_auc"], abs=0.01)
