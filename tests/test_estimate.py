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


def test_durations_parse_and_bad_ones_are_refused():
    import pytest

    from sdaudit.analysis.budget import parse_duration
    from sdaudit.errors import BadFlagError

    assert parse_duration("90") == 90
    assert parse_duration("90s") == 90
    assert parse_duration("10m") == 600
    assert parse_duration("2h") == 7200
    assert parse_duration("1h30m") == 5400
    for bad in ("", "soon", "-5m", "0s", "5 minutes"):
        with pytest.raises(BadFlagError):
            parse_duration(bad)


def test_budget_picks_the_most_images_then_draws():
    from sdaudit.analysis.budget import choose, predict

    # at 1,000 images and 5 draws: 10 s start-up, 100 s statistics, 500 s ablation, 50 s
    # ordered, 100 s noise, 200 s importance on its sample of 100
    by = {"statistics": 100.0, "ablation": 500.0, "ordered": 50.0, "noise": 100.0,
          "importance": 200.0}
    assert predict(by, 10.0, 1000, 5, 100, 1000, 5) == 960.0
    # half the images: everything but importance (its sample of 100 still fits) halves
    assert predict(by, 10.0, 1000, 5, 100, 500, 5) == 10 + 375 + 200
    c = choose(by, 10.0, 1000, 5, 100, 600.0, min_images=50)
    assert c.fits
    assert c.draws == 5
    assert c.predicted_s <= 600 < predict(by, 10.0, 1000, 5, 100, c.images + 1, 5)
    more = choose(by, 10.0, 1000, 5, 100, 2000.0, min_images=50)  # all images fit: more draws
    assert more.images == 1000
    assert more.draws > 5
    assert more.predicted_s <= 2000 < predict(by, 10.0, 1000, 5, 100, 1000, more.draws + 1)
    tight = choose(by, 10.0, 1000, 5, 100, 1.0, min_images=50)  # nothing fits: said, not hidden
    assert not tight.fits
    assert tight.images == 50
    assert tight.draws == 2


def test_time_budget_reports_its_choice(runner, app, tmp_path):
    import models

    model = models.save(models.counting_net(units=10), tmp_path / "c.onnx")
    data = models.counting_data(tmp_path / "c.npz")
    report = tmp_path / "r.json"
    result = runner.invoke(app, ["scan", str(model), "--data", str(data), "--time-budget",
                                 "1h", "--json", str(report), "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    d = json.loads(report.read_text())
    tb = d["run"]["time_budget"]
    assert tb["images"] == tb["of"] == 100  # an hour holds everything
    assert tb["fits"]
    assert d["config"]["draws"] == tb["draws"] >= 5
    assert any(n.startswith("--time-budget 3,600 s") for n in d["summary"]["notes"])
    bad = runner.invoke(app, ["scan", str(model), "--data", str(data), "--time-budget", "soon"])
    assert bad.exit_code == 2
