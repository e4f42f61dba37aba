"""The cost model of an audit, per measure, calibrated on the data's first chunks.

    T ≈ T_setup + Σ_passes N_pass · t_prefix + Σ_stats runs N · t_stats
        + Σ_measures Σ_configurations N_measure · t_configuration

``t_prefix`` and ``t_stats`` are measured per sample on a pass's calibration chunk (the second
chunk: the first pays for the sessions' warm-up; the first where there is only one), and each
configuration's ``t`` is its share of that chunk's suffix runs (a stacked or pruned run's time
split over the configurations it served), so a measure's cost is what its own configurations
took, at the number of images that measure runs on (importance: its sample). ``T_setup`` is
the time spent before the first pass (loading, rewriting, building sessions).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from sdaudit.analysis.configs import ConfigTable, Plan

MEASURE_OF_BLOCK = (("joint", "ablation"), ("layer:", "ablation"), ("ordered:", "ordered"),
                    ("importance", "importance"))


@dataclass(frozen=True)
class Estimate:
    """Estimated wall time of an audit and its parts (seconds)."""

    total_s: float
    setup_s: float  # before the first pass
    by_measure: dict[str, float]  # "statistics" (prefix + unablated runs), then each measure
    calibrated_on: int  # samples of the calibration chunk of the sweep pass
    # --draws auto: the total if it goes to --max-draws (more random-curve configurations, and
    # a prefix and unablated run per extra pass); None where the draws are fixed
    most_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"total_s": round(self.total_s, 3), "setup_s": round(self.setup_s, 3),
                "by_measure": {k: round(v, 3) for k, v in self.by_measure.items()},
                "calibrated_on": self.calibrated_on,
                **({} if self.most_s is None else {"most_s": round(self.most_s, 3)})}


@dataclass
class Calibrator:
    """Collects each pass's calibration rates; announces the estimate once the sweep's come.

    ``samples``: images of the data; ``sample``: images of the importance pass (0: none);
    ``importance_units``: units running masked in that pass."""

    plan: Plan
    table: ConfigTable
    samples: int
    announce: Callable[[Estimate], None]
    sample: int = 0
    importance_units: int = 0
    started: float = field(default_factory=time.perf_counter)
    first_pass: float | None = None
    closed_form_s: float = 0.0  # per sample, timed in the statistics run
    rates: dict[str, dict[str, Any]] = field(default_factory=dict)
    result: Estimate | None = None

    def mark_first_pass(self) -> None:
        if self.first_pass is None:
            self.first_pass = time.perf_counter()

    def for_pass(self, name: str) -> Callable[[dict[str, Any]], None]:
        """The ``calibrated`` callback of pass ``name`` ("importance" or "sweeps")."""
        def calibrated(rate: dict[str, Any]) -> None:
            self.rates[name] = rate
            if name == "sweeps":
                self.result = self.estimate()
                self.announce(self.result)

        self.mark_first_pass()
        return calibrated

    def estimate(self) -> Estimate:
        sweep = self.rates["sweeps"]
        n = self.samples
        setup = (self.first_pass or self.started) - self.started
        by: dict[str, float] = {"statistics": n * (
            self.plan.passes * _known(sweep["prefix_s_per_sample"])
            + self.plan.stats_runs * _known(sweep["stats_s_per_sample"]))}
        rows = sweep.get("row_s_per_sample")
        if rows is not None:
            for name, (a, b) in self.table.blocks.items():
                measure = next(m for prefix, m in MEASURE_OF_BLOCK if name.startswith(prefix))
                by[measure] = by.get(measure, 0.0) + n * float(np.sum(rows[a:b]))
        else:  # no per-configuration times: the pass's average
            by["ablation"] = n * (len(self.table) - 1) * _known(sweep["config_s_per_sample"])
        noise = sweep.get("noise_row_s_per_sample")
        if noise is not None and len(noise):
            by["noise"] = n * float(np.sum(noise))
        imp = self.rates.get("importance")
        if imp is not None and self.sample:
            imp_rows = imp.get("row_s_per_sample")
            per = (float(np.sum(imp_rows)) if imp_rows is not None else
                   self.importance_units * _known(imp["config_s_per_sample"]))
            by["importance"] = by.get("importance", 0.0) + self.sample * (
                per + _known(imp["prefix_s_per_sample"]) + _known(imp["stats_s_per_sample"]))
        if self.closed_form_s:
            by["importance"] = by.get("importance", 0.0) + n * self.closed_form_s
        calibrated_on = int(sweep.get("samples", 0))
        total = setup + sum(by.values())
        most = None
        if self.plan.max_draws > self.plan.draws:
            # the random curves' cost scales with their draws; each extra pass reruns the
            # prefix and the unperturbed model (the rows of the first batch are all random
            # curves' when only ablation runs; otherwise "ablation" holds only theirs)
            per_pass = n * (_known(sweep["prefix_s_per_sample"])
                            + _known(sweep["stats_s_per_sample"]))
            most = total + by.get("ablation", 0.0) * (self.plan.max_draws - self.plan.draws) \
                / self.plan.draws + self.plan.extra_passes * per_pass
        return Estimate(total, setup, by, calibrated_on, most)


def _known(value: float) -> float:
    import math

    return value if math.isfinite(value) else 0.0
