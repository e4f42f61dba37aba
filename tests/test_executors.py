"""The ray executor gives the local executor's numbers: units merge in chunk order whoever ran
them, a killed worker's unit is retried by Ray, a worker's error comes back as one line.

A local Ray (2 CPUs) is started once for the module; nothing connects to a remote address.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
from conftest import SAMPLES

from sdaudit.api import Execution, Hooks, audit
from sdaudit.config import AuditConfig
from sdaudit.data.base import Sampling
from sdaudit.data.open import DataOptions
from sdaudit.errors import ModelError
from sdaudit.report.json_io import dumps

ray = pytest.importorskip("ray")

CNN, DATA = str(SAMPLES / "digits-cnn.onnx"), str(SAMPLES / "digits-train.npz")
# 240 samples in 6 chunks of 40: enough units for two workers to share and finish out of order.
CONFIG = AuditConfig(measures=("ablation", "noise", "selectivity", "ordered"), draws=2,
                     device="cpu", chunk_size=40)
OPTIONS = DataOptions(sampling=Sampling(max_samples=240))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def local_report():
    return json.loads(dumps(audit(CNN, DATA, CONFIG, data_options=OPTIONS)))


def numbers(report: dict, path: str = "") -> dict[str, float]:
    """Every number of a report but its run and runtime parts, by its path."""
    out: dict[str, float] = {}
    items = (report.items() if isinstance(report, dict) else enumerate(report)
             if isinstance(report, list) else ())
    for key, value in items:
        where = f"{path}.{key}"
        if where in (".run", ".runtime"):
            continue
        if isinstance(value, bool) or value is None or isinstance(value, str):
            continue
        if isinstance(value, int | float):
            out[where] = float(value)
        else:
            out.update(numbers(value, where))
    return out


def assert_same_numbers(a: dict, b: dict) -> None:
    na, nb = numbers(a), numbers(b)
    assert na.keys() == nb.keys()
    assert len(na) > 500  # curves, per-layer and per-unit figures, not just a few fields
    for key, value in na.items():
        # The same float sums added in the same (chunk) order: equal up to float noise.
        assert nb[key] == pytest.approx(value, rel=1e-6, abs=1e-6), key


def test_ray_gives_the_local_numbers(local_ray, local_report):
    report = json.loads(dumps(audit(CNN, DATA, CONFIG, data_options=OPTIONS,
                                    execution=Execution("ray", workers=2))))
    assert_same_numbers(local_report, report)
    runtime = report["runtime"]
    assert (runtime["executor"], runtime["workers"], runtime["chunk_size"]) == ("ray", 2, 40)
    assert (runtime["units_run"], runtime["units_resumed"]) == (12, 0)  # 6 chunks × 2 passes
    assert runtime["threads"] == 1  # each worker its share of the 2 CPUs
    assert local_report["runtime"]["executor"] == "local"


def test_a_killed_ray_worker_is_retried(local_ray, local_report, monkeypatch):
    """SIGKILL one worker process when the sweep's first unit is in: Ray restarts the actor,
    it rebuilds its engine and the unit it held runs again; the numbers do not change."""
    from sdaudit.runtime import executors

    made: list = []
    real_init = executors.RayExecutor.__init__

    def keep(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        made.append(self)

    monkeypatch.setattr(executors.RayExecutor, "__init__", keep)
    killed: list[int] = []

    class KillOnce(Hooks):
        def progress(self, phase: str, done: int, total: int) -> None:
            if phase == "sweeps" and not killed and done < total:
                actor = made[0].actors[0]
                killed.append(ray.get(actor.pid.remote()))
                os.kill(killed[0], signal.SIGKILL)

    report = json.loads(dumps(audit(CNN, DATA, CONFIG, data_options=OPTIONS, hooks=KillOnce(),
                                    execution=Execution("ray", workers=2))))
    assert killed, "the sweep had no unit left to interrupt"
    assert_same_numbers(local_report, report)


def test_a_worker_error_comes_back_whole(local_ray):
    with pytest.raises(ModelError) as err:
        audit(CNN, DATA, CONFIG, data_options=OPTIONS, output="nope",
              execution=Execution("ray", workers=1))
    assert "not an output of the model" in err.value.message
    assert "outputs:" in (err.value.hint or "")
