"""The passes of an audit over its data, and what they measure.

One pass where random ablation and single-unit importance are all that is asked (they need
nothing from the unablated statistics); otherwise an unablated pass (unit statistics, then
selectivity), the selectivity data's own pass where there is one, and the sweep pass (every
mask and noise configuration, and the histogram of mutual information).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import DataError, InternalError

if TYPE_CHECKING:
    from sdaudit.analysis.configs import ConfigTable, Plan
    from sdaudit.analysis.importance import ImportanceEstimate
    from sdaudit.config import AuditConfig
    from sdaudit.data.base import Dataset
    from sdaudit.runtime.counts import SweepCounts, UnitStats
    from sdaudit.runtime.engine import Engine
    from sdaudit.runtime.importance import ImportancePlan


@dataclass(frozen=True)
class Measurements:
    """Everything the passes measured, for report.build."""

    base: UnitStats  # the unablated model on the data
    counts: SweepCounts  # one row per row of the configuration table
    noise_counts: SweepCounts | None  # one row per noise configuration (level-major)
    selectivity: np.ndarray | None  # [U] class selectivity index (None: fewer than 2 classes)
    preferred: np.ndarray | None  # [U] each unit's preferred class
    mutual_information: np.ndarray | None  # [U] bits
    classes: int  # the model's output classes
    notes: tuple[str, ...]
    # per-unit importance over every unit and how it was measured (None: not asked)
    importance: tuple[ImportanceEstimate, dict[str, Any]] | None = None


def calibrator(plan: Plan, samples: int,
               estimate: Callable[[float], None]) -> Callable[[dict[str, float]], None]:
    """From a pass's measured rates, the estimated time of the whole audit (to ``estimate``)."""
    def calibrated(rate: dict[str, float]) -> None:
        def known(value: float) -> float:
            return value if math.isfinite(value) else 0.0

        estimate(samples * (plan.passes * rate["prefix_s_per_sample"]
                            + plan.stats_runs * rate["stats_s_per_sample"]
                            + (plan.mask_configs + plan.noise_configs)
                            * known(rate["config_s_per_sample"])))

    return calibrated


def execute(engine: Engine, table: ConfigTable, config: AuditConfig, data: Dataset,
            sel_data: Dataset, *, separate_selectivity: bool, fused: bool,
            progress: Any, calibrated: Callable[[dict[str, float]], None],
            importance: ImportancePlan | None = None) -> Measurements:
    """Run the passes of an audit; ordered, importance and noise configurations join ``table``
    once the unablated statistics are known.

    Pre-condition: ``table`` holds the random-ablation blocks (and, when ``fused``, every
    block). Post-condition: ``counts`` has one row per row of ``table``."""
    from sdaudit.analysis.configs import noise_rows
    from sdaudit.analysis.selectivity import class_means, mutual_information, selectivity_index
    from sdaudit.runtime.counts import Configs, HistSpec

    want_noise = config.wants("noise")
    need_selectivity = config.wants("selectivity") or config.wants("ordered") or \
        config.wants("importance")
    separate_hist = config.wants("selectivity") and separate_selectivity
    imp = importance
    # masked single-unit runs: every unit but those done in closed form (on the sample, in
    # their own pass, when there is one)
    imp_units = imp.masked_units() if imp is not None else np.zeros(0, np.int64)
    observe = imp.observe if imp is not None and imp.heads else None
    if fused:
        first = engine.run_pass(data, stats=True, configs=Configs(table.masks),
                                progress=progress, phase="sweeps", calibrated=calibrated,
                                observe=observe)
    else:
        first = engine.run_pass(data, stats=True, progress=progress, phase="unablated pass",
                                observe=observe)
    base = first.stats
    if base is None:  # pragma: no cover - run_pass raises on empty data
        raise InternalError("the unablated pass produced no statistics")
    k = int(engine.num_classes or 0)
    notes: list[str] = []
    if not data.labelled:
        notes.append("the data has no labels: the unablated model's predictions stand in, so "
                     "accuracy is agreement with the unablated model (see also kl_mean)")
    if data.skipped.count:
        notes.append(f"{data.skipped.count} unreadable images skipped "
                     f"(first: {', '.join(data.skipped.examples)})")
    if base.correct == 0 and data.labelled:
        raise DataError(
            "the unablated model gets no sample right on this data: nothing to measure",
            "check that labels follow the model's class order and the preprocessing is right",
        )
    sel = base
    if separate_selectivity:
        sel_stats = engine.run_pass(sel_data, stats=True, progress=progress,
                                    phase="selectivity data").stats
        if sel_stats is None:  # pragma: no cover - run_pass raises on empty data
            raise InternalError("the selectivity-data pass produced no statistics")
        sel = sel_stats
    present = int((sel.class_counts > 0).sum())
    si: np.ndarray | None = None
    pref: np.ndarray | None = None
    mi: np.ndarray | None = None
    hist_spec = None
    if need_selectivity:
        if present < 2:
            notes.append("selectivity undefined: the data holds one class only; selectivity, "
                         "ordered ablation and the selectivity–importance correlation skipped")
        else:
            means = class_means(sel.class_sums, sel.class_counts)
            shift = np.where(sel.unit_min < 0, sel.unit_min, 0.0)
            si = selectivity_index(means, config.selectivity_eps, shift)
            classes_present = np.flatnonzero(sel.class_counts > 0)
            pref = classes_present[np.argmax(means, axis=0)]
            if config.wants("selectivity"):
                hist_spec = HistSpec(sel.unit_min, sel.unit_max, config.mi_bins)
    if fused:
        counts, noise_counts = first.mask_counts, first.noise_counts
    else:
        if config.wants("ordered") and si is not None:
            table.add_ordered(si, config.fractions)
        if imp is not None and not imp.sampled:
            table.add_importance(imp_units)
        noise_sd = np.zeros((0, table.units), dtype=np.float32)
        noise_draw = np.tile(np.arange(config.draws), 0)
        if want_noise:
            noise_sd, noise_draw = noise_rows(base.elem_sd, config)
        unit_mean = base.mean.astype(np.float32) if config.ablation_value == "mean" else None
        # The estimate comes from the sweep pass itself: the statistics run costs something
        # else per sample than a configuration does.
        second = engine.run_pass(data, configs=Configs(table.masks, noise_sd, noise_draw),
                                 unit_mean=unit_mean, progress=progress, phase="sweeps",
                                 hist=None if separate_hist else hist_spec, calibrated=calibrated)
        counts, noise_counts = second.mask_counts, second.noise_counts
        hist = second.hist
        if separate_hist and hist_spec is not None:
            hist = engine.run_pass(sel_data, hist=hist_spec, progress=progress,
                                   phase="selectivity data").hist
        if hist is not None:
            mi = mutual_information(hist)
    if counts is None:  # pragma: no cover - the sweep always runs the unperturbed row
        raise InternalError("the sweep produced no counts")
    found = None
    if imp is not None:
        found = _importance(engine, imp, table, counts, imp_units, data, base, progress)
        notes.extend(imp.notes)
    notes.extend(engine.notes)
    return Measurements(base, counts, noise_counts, si, pref, mi, k, tuple(notes), found)


def _importance(engine: Engine, imp: ImportancePlan, table: ConfigTable, counts: SweepCounts,
                imp_units: np.ndarray, data: Dataset, base: UnitStats,
                progress: Any) -> tuple[ImportanceEstimate, dict[str, Any]]:
    """The masked units still to run (all of them on the sample, where there is one; those of
    a head that failed its check), then every unit's estimate."""
    from sdaudit.runtime.counts import Configs

    u = table.units
    todo = imp.masked_units() if imp.sampled else np.setdiff1d(imp.masked_units(), imp_units)
    imp_counts = None
    if "importance" in table:
        a, b = table.blocks["importance"]
        imp_counts = counts.take(np.concatenate([[0], np.arange(a, b)]))
    if len(todo):
        extra = engine.run_pass(imp.sample_data(data), configs=Configs(np.concatenate(
            [np.ones((1, u), np.float32), imp.rows(todo, u)])), progress=progress,
            phase="importance").mask_counts
        if extra is None:  # pragma: no cover - the sweep always runs the unperturbed row
            raise InternalError("the importance pass produced no counts")
        if imp_counts is None:
            imp_counts, imp_units = extra, todo
        else:  # no sample: both on all the data, one table
            imp_units = np.concatenate([imp_units, todo])
            for f in ("correct", "loss", "agree", "kl", "class_correct", "dloss_sq",
                      "dcorrect_sq"):
                setattr(imp_counts, f, np.concatenate([getattr(imp_counts, f),
                                                       getattr(extra, f)[1:]]))
    return imp.results(imp_counts, imp_units, (float(base.correct), float(base.loss),
                                               int(base.n)), [la.name for la in table.layers])
