"""The cost model per measure and `scan --dry-run`."""

from __future__ import annotations

import json

import numpy as np
from conftest import SAMPLES

from sdaudit.analysis.configs import ConfigTable, Plan
from sdaudit.runtime.estimate import Calibrator

CNN = str(SAMPLES / "digits-cnn.onnx")
TRAIN = str(SAMPLES / "digits-train.npz")


def test_dry_run_prints_plan_and_estimate_and_writes_nothing(runner, app, tmp_path):
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["scan", CNN, "--data", TRAIN, "--dry-run", "--format", "json",
                                 "--json", str(report), "--importance-samples", "300", "-q"])
    assert result.exit_code == 0, result.output
    assert not report.exists()
    out = json.loads(result.stdout)
    plan, est = out["plan"], out["estimate"]
    assert plan["samples"] == 1200
    assert plan["importance_samples"] == 300
    # every measure that has configurations is priced, and the parts add up to the total
    assert set(est["by_measure"]) == {"statistics", "ablation", "ordered", "noise", "importance"}
    assert all(v > 0 for v in est["by_measure"].values())
    parts = est["setup_s"] + sum(est["by_measure"].values())
    assert abs(parts - est["total_s"]) < 0.01
    assert est["calibrated_on"] == 256  # the sweep's second chunk


def test_a_measure_costs_its_configurations_at_its_own_sample_size():
    from sdaudit.model.layers import LayerInfo

    layer = LayerInfo("a", "Relu", "activation", ("N", 4), 1, 4, 1, 0, True)
    table = ConfigTable([layer])
    table.add("joint", np.ones((3, 4), np.float32), [0, 1, 2])
    plan = Plan(1000, 4, 1, 3, 2, 1, 2)
    got = []
    cal = Calibrator(plan, table, 1000, got.append, sample=100, importance_units=4, started=0.0)
    cal.first_pass = 2.0
    cal.for_pass("importance")({"prefix_s_per_sample": 0.01, "stats_s_per_sample": 0.02,
                                "config_s_per_sample": 0.5,
                                "row_s_per_sample": np.array([0.0, 1, 1, 1, 1])})
    assert not got  # announced once the sweep is calibrated
    cal.for_pass("sweeps")({"prefix_s_per_sample": 0.01, "stats_s_per_sample": 0.02,
                            "config_s_per_sample": 0.1, "samples": 64,
                            "row_s_per_sample": np.array([0.0, 0.1, 0.2, 0.3]),
                            "noise_row_s_per_sample": np.array([0.5, 0.5])})
    est = got[0]
    assert est.setup_s == 2.0
    assert np.isclose(est.by_measure["statistics"], 1000 * (2 * 0.01 + 1 * 0.02))
    assert np.isclose(est.by_measure["ablation"], 1000 * 0.6)
    assert np.isclose(est.by_measure["noise"], 1000 * 1.0)
    assert np.isclose(est.by_measure["importance"], 100 * (4 + 0.01 + 0.02))
    assert np.isclose(est.total_s, 2.0 + sum(est.by_measure.values()))
