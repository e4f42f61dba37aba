"""--checkpoint DIR: a scan killed mid-sweep (SIGKILL, SIGTERM) and rerun with the same folder
resumes and gives the numbers of an uninterrupted scan; a folder of another audit is refused.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLES
from test_executors import assert_same_numbers

# 300 samples in 30 chunks of 10: a sweep of 30 units, long enough to be interrupted.
SCAN = ["scan", str(SAMPLES / "digits-cnn.onnx"), "--data", str(SAMPLES / "digits-train.npz"),
        "--measure", "ablation,noise,selectivity", "--draws", "2", "--max-samples", "300",
        "--chunk-size", "10", "--device", "cpu", "--threads", "1", "-q", "--format", "json"]


def sdaudit(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sdaudit", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("plain") / "r.json"
    proc = sdaudit(*SCAN, "--json", str(out))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err
    return json.loads(out.read_text())


def sweep_units(folder: Path, seen: list[Path]) -> int:
    """Finished units of the second pass folder to appear (the sweep; ``seen``: the folders in
    the order they appeared, kept between calls)."""
    for p in sorted(folder.glob("pass-*")):
        if p not in seen:
            seen.append(p)  # polled often: the unablated pass is alone for a while first
    return len(list(seen[1].glob("unit-*.npz"))) if len(seen) >= 2 else 0


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_scan_killed_mid_sweep_resumes_to_the_same_numbers(tmp_path, uninterrupted, sig):
    folder, out = tmp_path / "ckpt", tmp_path / "r.json"
    proc = sdaudit(*SCAN, "--checkpoint", str(folder), "--json", str(out))
    deadline, seen = time.monotonic() + 240, []
    while sweep_units(folder, seen) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == (-9 if sig == signal.SIGKILL else 143), err
    assert not out.exists()  # an interrupted scan writes no report
    done = sweep_units(folder, seen)
    assert 3 <= done < 30  # killed mid-sweep
    assert not list(folder.glob("pass-*/.tmp-*"))  # no half-written unit left as a unit
    rerun = sdaudit(*SCAN, "--checkpoint", str(folder), "--json", str(out))
    _, err = rerun.communicate(timeout=240)
    assert rerun.returncode == 0, err
    report = json.loads(out.read_text())
    assert_same_numbers(uninterrupted, report)
    # every unablated-pass unit and the finished sweep units were read back, not run again
    assert report["runtime"]["units_resumed"] >= 30 + done
    assert report["runtime"]["units_run"] == 60 - report["runtime"]["units_resumed"]


def test_another_audits_folder_is_refused(tmp_path):
    folder, out = tmp_path / "ckpt", tmp_path / "r.json"
    first = sdaudit(*SCAN, "--checkpoint", str(folder), "--json", str(out))
    _, err = first.communicate(timeout=240)
    assert first.returncode == 0, err
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    other = [a if a != "2" else "3" for a in SCAN]  # --draws 3: another configuration
    out2 = tmp_path / "r2.json"
    proc = sdaudit(*other, "--checkpoint", str(folder), "--json", str(out2))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "another audit" in err
    assert not out2.exists()
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_a_folder_with_other_files_is_left_alone(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    proc = sdaudit(*SCAN, "--checkpoint", str(folder))
    _, err = proc.communicate(timeout=240)
    assert proc.returncode == 2
    assert len(err.strip().splitlines()) == 1, err
    assert "other files" in err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_counts_survive_the_round_trip_through_a_file(tmp_path):
    """What a unit file holds is what was computed: every array and scalar, exactly."""
    from sdaudit.runtime.checkpoint import Checkpoint
    from sdaudit.runtime.counts import Configs, PassResult, SweepCounts, UnitResult, UnitStats, Work

    rng = np.random.default_rng(3)
    stats = UnitStats(7, 5.0, 3.25, rng.random(3), rng.random(3), rng.random(4), rng.random(4),
                      rng.random(4), rng.random(4), rng.random(4), rng.random((3, 4)), 1)
    counts = SweepCounts(7, rng.random(2), rng.random(2), rng.random(2), rng.random(2),
                         rng.random((2, 3)), rng.random(3))
    result = PassResult(stats, rng.integers(0, 9, (4, 5, 3)), counts, None)
    work = Work(1, 7, True, None, Configs(np.ones((2, 4), np.float32)))
    store = Checkpoint(tmp_path / "c", {"any": "audit"}).pass_store(work)
    store.save(UnitResult(4, result, 7, {"prefix_s_per_sample": 0.5}, False, 3), "abc")
    back = store.load(4, "abc")
    assert back is not None
    assert (back.resumed, back.samples, back.num_classes) == (True, 7, 3)
    a, b = result.to_arrays(), back.counts.to_arrays()
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert back.counts.stats is not None
    assert back.counts.stats.nonfinite == 1
    from sdaudit.errors import DataError

    with pytest.raises(DataError, match="other data"):
        store.load(4, "another chunk")
    assert store.load(5, "abc") is None
