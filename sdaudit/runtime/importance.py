"""Single-unit importance, done as cheaply as its definition allows.

* Layers whose suffix is linear in them (global pooling → dense head) get it in closed form from
  the statistics run (:mod:`sdaudit.analysis.closed_form`): exact, on all the data, no run per
  unit. The head is checked against the model's own output on every chunk; where it disagrees,
  that layer's units run masked instead (with a note).
* Every other unit runs as a masked configuration (stacked in the batch like any other), on a
  seeded, stratified sample of ``samples`` images (``0``: all), its standard error reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.analysis.closed_form import CHECK_TOL, UnitCounts, accumulate, check_head, head_logits
from sdaudit.analysis.importance import ImportanceEstimate, estimate

if TYPE_CHECKING:
    from sdaudit.data.base import Dataset
    from sdaudit.model.layers import LayerInfo
    from sdaudit.model.linear_head import LinearHead
    from sdaudit.runtime.counts import SweepCounts
    from sdaudit.runtime.executors import Executor


@dataclass
class ImportancePlan:
    """Which units are done how, and the closed-form counts as the statistics run feeds them."""

    offsets: np.ndarray  # [L + 1] unit offsets of the selected layers
    heads: dict[int, LinearHead]  # layer index → its linear head
    population: int  # samples of the data
    sample: int  # samples the masked units run on (= population: all)
    seed: int
    probabilities: Callable[[], bool] = lambda: False  # the output holds probabilities
    closed: dict[int, UnitCounts] = field(default_factory=dict)
    failed: dict[int, float] = field(default_factory=dict)  # layer → worst head mismatch
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # spent in observe (the closed form's cost)
    calibrate_only: bool = False  # --dry-run: the data is its first chunks, not sampled again

    @classmethod
    def make(cls, model: Any, layers: list[LayerInfo], engine: Executor, *, closed_form: bool,
             zero_ablation: bool, samples: int, population: int, seed: int) -> ImportancePlan:
        heads: dict[int, LinearHead] = {}
        # the closed form computes classification counts (a class-score output [N, K])
        classifier = getattr(engine, "metric", None) is None or \
            getattr(engine.metric, "kind", "classification") == "classification"
        if closed_form and zero_ablation and classifier:
            from sdaudit.model.linear_head import find_linear_head

            for i, layer in enumerate(layers):
                head = find_linear_head(model, layer, engine.output)
                if head is not None:
                    heads[i] = head
        sample = population if samples <= 0 or samples >= population else samples
        # read once the first chunk has shown what the output holds
        return cls(np.asarray(engine.offsets), heads, population, sample, seed,
                   probabilities=lambda: bool(getattr(engine, "probabilities", False)))

    @property
    def sampled(self) -> bool:
        return self.sample < self.population

    def closed_units(self) -> np.ndarray:
        """Units done in closed form (heads that did not fail)."""
        return np.concatenate([np.arange(self.offsets[i], self.offsets[i + 1])
                               for i in sorted(self.heads) if i not in self.failed]
                              or [np.zeros(0, np.int64)]).astype(np.int64)

    def masked_units(self) -> np.ndarray:
        return np.setdiff1d(np.arange(int(self.offsets[-1])), self.closed_units())

    @staticmethod
    def rows(units: np.ndarray, total: int) -> np.ndarray:
        """One mask row per unit, that unit alone off."""
        rows = np.ones((len(units), total), dtype=np.float32)
        rows[np.arange(len(units)), units] = 0.0
        return rows

    def observe(self, out: np.ndarray, means: np.ndarray, y: np.ndarray,
                logp: np.ndarray) -> None:
        """One chunk of the statistics run (see Executor.run_pass's ``observe``)."""
        import time

        t0 = time.perf_counter()
        self._observe(out, means, y, logp)
        self.seconds += time.perf_counter() - t0

    def _observe(self, out: np.ndarray, means: np.ndarray, y: np.ndarray,
                 logp: np.ndarray) -> None:
        for i, head in self.heads.items():
            if i in self.failed:
                continue
            pooled = means[:, self.offsets[i]:self.offsets[i + 1]]
            logits = head_logits(pooled, head.matrix, head.bias)
            worst = check_head(logits, out, head.softmax)
            if not worst <= CHECK_TOL:
                self.failed[i] = worst
                self.closed.pop(i, None)
                continue
            counts = self.closed.setdefault(i, UnitCounts.zeros(pooled.shape[1], out.shape[1]))
            accumulate(counts, logits if head.softmax else out, pooled, head.matrix, y, logp,
                       probabilities=self.probabilities())

    def sample_data(self, data: Dataset) -> Dataset:
        if not self.sampled or self.calibrate_only:
            return data
        from sdaudit.data.subsample import StratifiedSample

        return StratifiedSample(data, self.sample, self.seed)

    def results(self, masked: SweepCounts | None, masked_units: np.ndarray,
                base_counts: tuple[float, float, int],
                layer_names: list[str]) -> tuple[ImportanceEstimate, dict[str, Any]]:
        """Per-unit estimates over every unit, and the report's description of how.

        ``masked``: counts whose row 0 is the unperturbed model on the masked units' samples
        and rows 1… the units ``masked_units`` in order; ``base_counts``: (correct, loss, n)
        of the unperturbed model on all the data (for the closed-form layers)."""
        u = int(self.offsets[-1])
        arrays = {k: np.full(u, np.nan) for k in ("acc", "loss", "acc_se", "loss_se", "lo", "hi")}

        def put(units: np.ndarray, est: ImportanceEstimate) -> None:
            for key, value in (("acc", est.accuracy_drop), ("loss", est.loss_rise),
                               ("acc_se", est.accuracy_drop_se), ("loss_se", est.loss_rise_se),
                               ("lo", est.loss_rise_ci_low), ("hi", est.loss_rise_ci_high)):
                arrays[key][units] = value

        base_correct, base_loss, n_all = base_counts
        methods: dict[str, str] = {}
        for i, counts in self.closed.items():
            units = np.arange(self.offsets[i], self.offsets[i + 1])
            put(units, estimate(counts.correct, counts.loss, counts.dloss_sq, counts.dcorrect_sq,
                                base_correct, base_loss, counts.n, self.population))
            methods[layer_names[i]] = "closed form: " + " → ".join(self.heads[i].ops)
        if masked is not None and len(masked_units):
            m = masked.n
            put(masked_units, estimate(masked.correct[1:], masked.loss[1:], masked.dloss_sq[1:],
                                       masked.dcorrect_sq[1:], float(masked.correct[0]),
                                       float(masked.loss[0]), m, self.population))
        for i, name in enumerate(layer_names):
            methods.setdefault(name, "masked runs")
            if i in self.failed:
                self.notes.append(
                    f"the linear head after {name} did not reproduce the model's output "
                    f"(difference {self.failed[i]:.3g}): its importance ran masked")
        sample_n = int(masked.n) if masked is not None and len(masked_units) else n_all
        est = ImportanceEstimate(arrays["acc"], arrays["loss"], arrays["acc_se"],
                                 arrays["loss_se"], arrays["lo"], arrays["hi"], sample_n,
                                 self.population)
        info = {"method": methods, "samples": int(sample_n), "population": self.population,
                "sample": "all" if not self.sampled else
                f"stratified by class, systematic from a seeded start (seed {self.seed})",
                "interval": "95 % Student t on the mean over the sample, finite-population "
                            "corrected; 0 wide where the value rests on all the data"}
        return est, info
