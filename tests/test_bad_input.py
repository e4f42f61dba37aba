"""Bad input, case by case: exit code, a one-line message naming the problem, no traceback,
and no report left behind. Driven through the real entry point (``sdaudit.cli.app.run``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import models
import numpy as np
import onnx
import pytest
from conftest import ROOT
from onnx import TensorProto, helper
from PIL import Image

from sdaudit.cli.app import run


def _counting(d: Path) -> Path:
    return models.save(models.counting_net(), d / "m.onnx")


def _data(d: Path) -> Path:
    return models.counting_data(d / "d.npz")


def _conv(d: Path, **kw) -> Path:
    return models.save(models.conv(17)[0], d / "conv.onnx", **kw)


def _no_inputs(d: Path) -> Path:
    const = helper.make_node("Constant", [], ["y"], value=helper.make_tensor(
        "v", TensorProto.FLOAT, [1, 2], [0.0, 1.0]))
    graph = helper.make_graph([const], "g", [], [helper.make_tensor_value_info(
        "y", TensorProto.FLOAT, [1, 2])])
    path = d / "noinput.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _custom_op(d: Path) -> Path:
    nodes = [helper.make_node("Magic", ["x"], ["h"], domain="com.example"),
             helper.make_node("Relu", ["h"], ["a"]),
             helper.make_node("MatMul", ["a", "W"], ["logits"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor("W", TensorProto.FLOAT, [1, 2], [1.0, 0.0])],
        value_info=[helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", 1]) for n in "ha"])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    path = d / "custom.onnx"
    onnx.save_model(model, str(path))
    return path


def _dynamic(d: Path) -> Path:
    model, _ = models.conv(17)
    dim = model.graph.input[0].type.tensor_type.shape.dim[2]
    dim.Clear()
    dim.dim_param = "H"
    path = d / "dyn.onnx"
    onnx.save_model(model, str(path))
    return path


def _nan_model(d: Path) -> Path:
    model = models.counting_net()
    for init in model.graph.initializer:
        if init.name == "t":
            init.CopyFrom(onnx.numpy_helper.from_array(np.array([np.nan, 0], np.float32), "t"))
    return models.save(model, d / "nan.onnx")


def _external_missing(d: Path) -> Path:
    path = _conv(d, external=True)
    (d / "conv.onnx.data").unlink()
    return path


def _write(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        (d / name).write_bytes(content)
        return d / name
    return make


def _truncated(d: Path) -> Path:
    data = models.conv(17)[0].SerializeToString()
    (d / "cut.onnx").write_bytes(data[: len(data) // 3])
    return d / "cut.onnx"


def _npz(**arrays) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        np.savez(d / "bad.npz", **arrays)
        return d / "bad.npz"
    return make


def _folder(kind: str) -> Callable[[Path], Path]:
    def make(d: Path) -> Path:
        root = d / "imgs"
        root.mkdir()
        if kind == "no-images":
            (root / "cat").mkdir()
            (root / "cat" / "notes.txt").write_text("hello")
        return root
    return make


def _rgb_conv(d: Path) -> Path:
    """x[N,3,5,5] ─Conv─► ─Relu─► ─GlobalAveragePool─► ─Flatten─► ─Gemm─► logits[N,2]"""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "W"], ["logits"])]
    graph = helper.make_graph(
        nodes, "rgb", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 5, 5])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [onnx.numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "K"),
         onnx.numpy_helper.from_array(rng.standard_normal((4, 2)).astype(np.float32), "W")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = d / "rgb.onnx"
    onnx.save_model(model, str(path))
    return path


X1 = np.zeros((4, 1), np.float32)
# (id, model builder, data builder, extra args, message that must appear)
CASES = [
    ("missing model", lambda d: d / "nope.onnx", _data, [], "does not exist"),
    ("empty model", _write("e.onnx", b""), _data, [], "is empty"),
    ("truncated model", _truncated, _data, [], "not"),
    ("random bytes", _write("r.onnx", bytes(range(256)) * 8), _data, [], "not"),
    ("json as model", _write("m.onnx", b'{"layers": []}'), _data, [], "JSON"),
    ("model without inputs", _no_inputs, _data, [], "has no inputs"),
    ("op onnxruntime cannot run", _custom_op, _data, [], "onnxruntime"),
    ("dynamic input shape", _dynamic, _data, [], "--input-shape"),
    ("missing external data", _external_missing, _data, [], "missing"),
    ("external data outside folder", models.external_outside, _data, [], "outside the model's folder"),
    ("missing data path", _counting, lambda d: d / "none.npz", [], "does not exist"),
    ("no data at all", _counting, None, [], "no data given"),
    ("empty folder", _rgb_conv, _folder("empty"), [], "no images found"),
    ("folder without images", _rgb_conv, _folder("no-images"), [], "no images found"),
    ("npz without x", _counting, _npz(y=np.zeros(4, int)), [], "no array 'x'"),
    ("npz of wrong shape", _counting, _npz(x=np.zeros((4, 3), np.float32), y=np.zeros(4, int)),
     [], "shape"),
    ("labels out of range", _counting, _npz(x=X1, y=np.array([0, 1, 2, 1])), [], "go up to 2"),
    ("label count mismatch", _counting, _npz(x=X1, y=np.array([0, 1])), [], "2 labels"),
    ("negative labels", _counting, _npz(x=X1, y=np.array([0, -1, 1, 0])), [], "≥ 0"),
    ("zero samples", _counting, _npz(x=np.zeros((0, 1), np.float32), y=np.zeros(0, int)), [],
     "zero samples"),
    ("layers matching nothing", _counting, _data, ["--layers", "conv*"], "matches no auditable"),
    ("fractions outside [0, 1]", _counting, _data, ["--fractions", "0,0.5,1.2"], "outside [0, 1]"),
    ("fractions not numbers", _counting, _data, ["--fractions", "0,half"], "not a comma-separated"),
    ("draws 0", _counting, _data, ["--draws", "0"], "--draws"),
    ("draws not a number", _counting, _data, ["--draws", "many"], "--draws"),
    ("unknown device", _counting, _data, ["--device", "tpu"], "--device"),
    ("unknown measure", _counting, _data, ["--measure", "vibes"], "unknown measurement"),
    ("nan in outputs", _nan_model, _data, [], "NaN"),
    ("bad input shape flag", _dynamic, _data, ["--input-shape", "1,x,5"], "--input-shape"),
    ("max drop without baseline", _counting, _data, ["--max-drop", "0.1"], "--baseline"),
    ("baseline missing", _counting, _data, ["--baseline", "old.json", "--max-drop", "0.1"],
     "does not exist"),
    ("fail-under out of range", _counting, _data, ["--fail-under", "7"], "--fail-under"),
    ("gate without ablation", _counting, _data, ["--measure", "noise", "--fail-under", "0.5"],
     "does not measure"),
    ("baseline not JSON", _counting, _data,
     ["--baseline", str(ROOT / "README.md"), "--max-drop", "0.1"], "is not a JSON report"),
    ("baseline JSON but no report", _counting, _data,
     ["--baseline", str(ROOT / "docs" / "report-schema.json")], "is not an sdaudit report"),
    ("threads 0", _counting, _data, ["--threads", "0"], "--threads"),
    ("threads negative", _counting, _data, ["--threads", "-1"], "--threads"),
    ("json into a missing folder", _counting, _data, ["--json", "/no-such-dir/r.json"],
     "does not exist"),
    ("noise levels not positive", _counting, _data, ["--noise-levels", "0,1"], "--noise-levels"),
    ("preset unknown", _rgb_conv, _folder("no-images"), ["--preset", "coco"], "--preset"),
    ("image folder for a non-image model", _conv, _folder("no-images"), [], "not an image"),
]


@pytest.mark.parametrize(("model", "data", "args", "message"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, capsys, model, data, args, message):
    model_path = model(tmp_path)
    report = tmp_path / "report.json"
    argv = ["scan", str(model_path), "--json", str(report), "-q", *args]
    if data is not None:
        argv += ["--data", str(data(tmp_path))]
    code = run(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("sdaudit: error:")
    assert not report.exists()
    assert out == ""


def test_corrupt_and_grayscale_images_are_handled(tmp_path, capsys):
    """A corrupt JPEG among good ones is skipped and counted; grayscale for RGB is converted."""
    x = np.random.default_rng(0)
    root = tmp_path / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(x.integers(0, 256, (5, 5, 3), dtype=np.uint8)).save(root / c / f"{i}.png")
    Image.fromarray(x.integers(0, 256, (5, 5), dtype=np.uint8), "L").save(root / "a" / "gray.png")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    graph_model = _rgb_conv(tmp_path)
    report = tmp_path / "r.json"
    code = run(["scan", str(graph_model), "--data", str(root), "--json", str(report), "-q",
                "--draws", "2", "--measure", "ablation"])
    capsys.readouterr()
    assert code == 0
    data = json.loads(report.read_text())["data"]
    assert data["samples"] == 7
    assert data["skipped"] == 1
    assert data["skipped_examples"] == ["b/broken.jpg"]


def test_one_class_only_skips_selectivity_and_says_so(tmp_path, capsys):
    model = _counting(tmp_path)
    np.savez(tmp_path / "one.npz", x=np.ones((20, 1), np.float32), y=np.zeros(20, int))
    report = tmp_path / "r.json"
    code = run(["scan", str(model), "--data", str(tmp_path / "one.npz"), "--json", str(report),
                "-q", "--draws", "2"])
    capsys.readouterr()
    assert code == 0
    data = json.loads(report.read_text())
    assert any("one class only" in n for n in data["summary"]["notes"])
    assert data["layers"][0]["units"]["selectivity"] is None


def test_ctrl_c_exits_130_and_leaves_no_report(tmp_path, capsys, monkeypatch):
    from sdaudit.runtime import engine

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.Engine, "_sweep_chunk", interrupted)
    report = tmp_path / "r.json"
    code = run(["scan", str(_counting(tmp_path)), "--data", str(_data(tmp_path)),
                "--json", str(report), "-q"])
    _, err = capsys.readouterr()
    assert code == 130
    assert "interrupted" in err
    assert not report.exists()


def test_a_failed_run_leaves_an_earlier_report_intact(tmp_path, capsys):
    report = tmp_path / "r.json"
    report.write_text('{"earlier": true}')
    code = run(["scan", str(_counting(tmp_path)), "--data", str(tmp_path / "missing.npz"),
                "--json", str(report), "-q"])
    capsys.readouterr()
    assert code == 2
    assert report.read_text() == '{"earlier": true}'
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".r.json")] == []


def test_running_out_of_memory_shrinks_the_stack_and_goes_on(tmp_path, capsys, monkeypatch):
    """The engine halves the configurations per run when a run fails for memory."""
    from sdaudit.runtime import suffix

    real = suffix.SuffixRunner.controls

    def picky(self, inst, masks, *args, **kwargs):
        if masks.shape[0] > 1:
            raise MemoryError("simulated: Failed to allocate memory")
        return real(self, inst, masks, *args, **kwargs)

    monkeypatch.setattr(suffix.SuffixRunner, "controls", picky)
    report = tmp_path / "r.json"
    code = run(["scan", str(_counting(tmp_path)), "--data", str(_data(tmp_path)),
                "--json", str(report), "-q", "--measure", "ablation,noise", "--draws", "3",
                "--chunk-size", "16"])
    capsys.readouterr()
    assert code == 0
    data = json.loads(report.read_text())
    oom_notes = [n for n in data["summary"]["notes"] if "ran out of memory" in n]
    # The smaller stack is remembered: a few halvings in all, not one per chunk and job.
    assert 1 <= len(oom_notes) <= 4, oom_notes
    expected = [1.0 if 10 - round(10 * f) > 4.5 else 0.5 for f in data["ablation"]["fractions"]]
    assert data["ablation"]["accuracy_mean"] == pytest.approx(expected)


def test_a_chunk_too_big_for_memory_runs_in_halves(tmp_path, capsys, monkeypatch):
    """The prefix of a chunk that does not fit runs in halves; results are unchanged."""
    from sdaudit.runtime import engine

    model, data = _counting(tmp_path), _data(tmp_path)
    plain = tmp_path / "plain.json"
    assert run(["scan", str(model), "--data", str(data), "--json", str(plain), "-q",
                "--measure", "ablation", "--draws", "2"]) == 0
    real = engine.Engine._run_prefix_once

    def small_only(self, x):
        if len(x) > 30:
            raise MemoryError("simulated: Failed to allocate memory")
        return real(self, x)

    monkeypatch.setattr(engine.Engine, "_run_prefix_once", small_only)
    halved = tmp_path / "halved.json"
    code = run(["scan", str(model), "--data", str(data), "--json", str(halved), "-q",
                "--measure", "ablation", "--draws", "2"])
    capsys.readouterr()
    assert code == 0
    a, b = json.loads(plain.read_text()), json.loads(halved.read_text())
    assert any("did not fit in memory" in n for n in b["summary"]["notes"])
    assert a["ablation"]["accuracy_mean"] == b["ablation"]["accuracy_mean"]


def test_bad_gates_fail_before_any_work(tmp_path, capsys, monkeypatch):
    """A --baseline that cannot serve stops the scan before a model is even loaded."""
    from sdaudit.model import load

    model, data = _counting(tmp_path), _data(tmp_path)
    noise_only = tmp_path / "noise.json"
    assert run(["scan", str(model), "--data", str(data), "--measure", "noise", "--draws", "2",
                "--json", str(noise_only), "-q"]) == 0

    def no_work(*_args, **_kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(load, "load_model", no_work)
    for baseline, message in ((noise_only, "has no ablation AUC"),
                              (tmp_path / "missing.json", "does not exist")):
        code = run(["scan", str(model), "--data", str(data), "--baseline", str(baseline),
                    "--max-drop", "0.1", "-q"])
        err = capsys.readouterr().err
        assert code == 2, err
        assert message in err
        assert len(err.strip().splitlines()) == 1


def test_reports_get_the_mode_of_an_ordinary_file(tmp_path):
    import os
    import stat

    from sdaudit.report.json_io import write_atomic

    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "r.json", "{}")
        assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o644
        (tmp_path / "r.json").chmod(0o600)
        write_atomic(tmp_path / "r.json", "{}")  # a replaced file keeps its mode
        assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == 0o600
    finally:
        os.umask(old)


def test_a_closed_pipe_keeps_the_audits_exit_code(tmp_path):
    """`sdaudit scan … | head -1`: the reader leaves early; the exit code is the audit's."""
    import subprocess
    import sys

    model, data = _counting(tmp_path), _data(tmp_path)
    script = (f"set -o pipefail; {sys.executable} -m sdaudit scan {model} --data {data} "
              "--measure ablation --draws 2 -q | true")  # true reads nothing: the pipe is closed
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for flags in ("", "--json"):  # the other commands end quietly with 0
        script = (f"set -o pipefail; {sys.executable} -m sdaudit layers {model} {flags} "
                  "| true")
        listed = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                                check=False)
        assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in done.stderr
    assert "BrokenPipe" not in done.stderr
