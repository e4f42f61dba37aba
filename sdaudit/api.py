"""``audit(model, data, config)``: the one entry point the CLI calls."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sdaudit._version import __version__
from sdaudit.config import AuditConfig
from sdaudit.data.base import InputLayout
from sdaudit.data.open import DataOptions
from sdaudit.errors import DataError, InternalError, SdauditError
from sdaudit.report.model import (
    AblationResult,
    AuditReport,
    Curve,
    GateCheck,
    GateResult,
    LayerReport,
    Summary,
    UnitArrays,
)


@dataclass(frozen=True)
class Plan:
    """The work an audit will do, announced before it starts."""

    samples: int
    units: int
    layers: int
    mask_configs: int
    noise_configs: int
    stats_runs: int  # runs of the unperturbed model with its statistics outputs
    passes: int  # passes over the data (each runs the prefix once per chunk)

    @property
    def forward_passes(self) -> int:
        """Sample-level forward passes (suffix runs count as passes)."""
        return self.samples * (self.mask_configs + self.noise_configs + self.stats_runs)


class Hooks:
    """Callbacks for progress and announcements; the CLI renders them on stderr."""

    def plan(self, plan: Plan) -> None: ...

    def estimate(self, seconds: float) -> None: ...

    def progress(self, phase: str, done: int, total: int) -> None: ...


def input_layout(loaded: Any, channels_last: bool | None = None) -> InputLayout:
    spec = loaded.inputs[0]
    shape = tuple(int(d) for d in (spec.shape or ())[1:])
    if channels_last is None:
        channels_last = len(shape) == 3 and shape[-1] in (1, 3) and shape[0] not in (1, 3)
    from onnx import TensorProto, helper

    elem = TensorProto.DataType.Value(spec.dtype.upper()) if spec.dtype != "unknown" else 1
    dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem)).name
    return InputLayout(spec.name, shape, dtype, channels_last)


def _permutation_masks(rng: np.random.Generator, units: np.ndarray, total: int,
                       fractions: tuple[float, ...], draws: int) -> tuple[np.ndarray, list[int]]:
    """[draws·F, total] masks: along one permutation per draw, the first round(f·n) units off.

    Subsets are nested within a draw (the paper's cumulative ablation)."""
    n = len(units)
    counts = [round(f * n) for f in fractions]
    rows = np.ones((draws * len(fractions), total), dtype=np.float32)
    for d in range(draws):
        perm = units[rng.permutation(n)]
        for j, c in enumerate(counts):
            rows[d * len(fractions) + j, perm[:c]] = 0.0
    return rows, counts


def _ordered_masks(order: np.ndarray, total: int, fractions: tuple[float, ...]) -> np.ndarray:
    rows = np.ones((len(fractions), total), dtype=np.float32)
    for j, f in enumerate(fractions):
        rows[j, order[: round(f * len(order))]] = 0.0
    return rows


def _curve(x: tuple[float, ...], counts: list[int], arrays: dict[str, np.ndarray],
           class_counts: np.ndarray, n: int, base_acc: float, base_class_acc: np.ndarray,
           auc_x: np.ndarray | None = None) -> Curve:
    """Assemble a curve from count arrays shaped [draws, points] (class counts [draws, points, K]);
    areas over ``auc_x`` (default ``x``)."""
    from sdaudit.analysis.curves import mean_sd_ci, normalized_auc

    ax = np.asarray(x, dtype=np.float64) if auc_x is None else auc_x
    acc = arrays["correct"] / n
    draws = acc.shape[0]
    mean, sd, lo, hi = mean_sd_ci(acc, axis=0)
    # Accuracy lies in [0, 1]: a t-interval from few draws can reach past it.
    lo, hi = np.clip(lo, 0.0, 1.0), np.clip(hi, 0.0, 1.0)
    per_draw_auc = np.array([normalized_auc(ax, a, base_acc) for a in acc])
    _, _, auc_lo, auc_hi = mean_sd_ci(per_draw_auc[:, None], axis=0)
    # Normalized accuracy lies in [0, 1 / unablated accuracy]: so does its AUC and its interval.
    auc_lo = np.maximum(auc_lo, 0.0)
    if base_acc > 0:
        auc_hi = np.minimum(auc_hi, 1.0 / base_acc)
    with np.errstate(invalid="ignore", divide="ignore"):
        cls_acc = (arrays["class_correct"].mean(axis=0)
                   / np.where(class_counts > 0, class_counts, np.nan))
    class_auc = [
        normalized_auc(ax, cls_acc[:, c], float(base_class_acc[c]))
        if class_counts[c] > 0 and base_class_acc[c] > 0 else math.nan
        for c in range(cls_acc.shape[1])
    ]
    return Curve(
        x=tuple(x), units_ablated=tuple(counts), accuracy_mean=tuple(mean.tolist()),
        accuracy_std=tuple(sd.tolist()), accuracy_ci_low=tuple(lo.tolist()),
        accuracy_ci_high=tuple(hi.tolist()),
        normalized_mean=tuple((mean / base_acc if base_acc > 0 else mean * math.nan).tolist()),
        loss_mean=tuple((arrays["loss"] / n).mean(axis=0).tolist()),
        agreement_mean=tuple((arrays["agree"] / n).mean(axis=0).tolist()),
        kl_mean=tuple((arrays["kl"] / n).mean(axis=0).tolist()), draws=draws,
        auc=normalized_auc(ax, mean, base_acc), auc_ci_low=float(auc_lo[0]),
        auc_ci_high=float(auc_hi[0]), class_auc=tuple(class_auc),
    )


def baseline_auc(path_text: str) -> float:
    """The ablation AUC of an earlier report (--baseline), read by compare's reader;
    DataError when there is none."""
    from sdaudit.report.reader import ablation_auc, read_report

    return ablation_auc(read_report(path_text, "--baseline"), "--baseline", path_text)


def _gate(config: AuditConfig, summary_auc: float | None) -> GateResult:
    checks: list[GateCheck] = []
    gate = config.gate
    if gate.fail_under is not None:
        ok = summary_auc is not None and summary_auc >= gate.fail_under
        checks.append(GateCheck(
            "fail_under", ok, summary_auc, gate.fail_under,
            f"ablation AUC {summary_auc:.3f} {'≥' if ok else '<'} {gate.fail_under:.3f}"
            if summary_auc is not None else "no ablation AUC measured"))
    if gate.baseline_report is not None:
        old_auc = baseline_auc(gate.baseline_report)
        max_drop = gate.max_drop if gate.max_drop is not None else 0.0
        drop = None if summary_auc is None else old_auc - summary_auc
        ok = drop is not None and drop <= max_drop + 1e-12
        msg = (f"ablation AUC {summary_auc:.3f} vs baseline {old_auc:.3f}: drop {drop:+.3f} "
               f"(allowed {max_drop:.3f})" if drop is not None else "no ablation AUC measured")
        checks.append(GateCheck("max_drop", ok, drop, max_drop, msg))
    passed = all(c.passed for c in checks)
    verdict = ("no gate set" if not checks else "passed" if passed else
               "failed: " + "; ".join(c.message for c in checks if not c.passed))
    return GateResult(passed, tuple(checks), verdict)


def _finite(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def audit(model_path: str | Path, data_path: str | Path | None, config: AuditConfig | None = None, *,
          input_shape: Any = None, data_options: DataOptions | None = None,
          selectivity_data: str | Path | None = None, output: str | None = None,
          hooks: Hooks | None = None) -> AuditReport:
    """Measure how much the model at ``model_path`` relies on single directions, on ``data_path``.

    Raises :class:`~sdaudit.errors.SdauditError` for anything wrong with what was given.
    """
    from sdaudit.analysis.curves import spearman
    from sdaudit.analysis.selectivity import class_means, mutual_information, selectivity_index
    from sdaudit.data import open_dataset
    from sdaudit.model.layers import discover_layers, select_layers
    from sdaudit.model.load import load_model
    from sdaudit.runtime.engine import Configs, Engine, HistSpec

    config = config or AuditConfig()
    if config.gate.baseline_report is not None:
        baseline_auc(config.gate.baseline_report)  # a bad --baseline fails before any work
    hooks = hooks or Hooks()
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    loaded = load_model(model_path, input_shape)
    layers = select_layers(discover_layers(loaded.proto), config.layers)
    opts = data_options or DataOptions()
    layout = input_layout(loaded, opts.channels_last)
    out_spec = loaded.outputs[0] if output is None else next(
        (o for o in loaded.outputs if o.name == output), loaded.outputs[0])
    num_classes = (out_spec.shape[1] if out_spec.shape and len(out_spec.shape) == 2
                   and isinstance(out_spec.shape[1], int) else None)
    from sdaudit.runtime.session import usable_cores

    workers = config.threads or usable_cores()
    from dataclasses import replace

    from sdaudit.data.classes import names_from_metadata

    if opts.class_names is not None and num_classes is not None and \
            len(opts.class_names) != num_classes:
        raise DataError(f"--class-names gives {len(opts.class_names)} names but the model has "
                        f"{num_classes} outputs", "give one name per model output, in order")
    if opts.class_names is None:
        opts = replace(opts, class_names=names_from_metadata(loaded.proto, num_classes))
    data = open_dataset(data_path, layout, num_classes=num_classes, options=opts, workers=workers)
    sel_data = (open_dataset(selectivity_data, layout, num_classes=num_classes,
                             options=replace(opts, loader_script=None), workers=workers)
                if selectivity_data is not None else data)
    want_noise = config.wants("noise")
    engine = Engine(loaded, layers, device=config.device, threads=config.threads,
                    ablation_value=config.ablation_value, noise=want_noise, seed=config.seed,
                    chunk_size=config.chunk_for(
                        int(np.prod(layout.shape)) * np.dtype(layout.dtype).itemsize),
                    output=output, precision=config.precision, io_binding=config.io_binding,
                    prune=config.prune,
                    # suffixes that start at later layers pay off where configurations leave
                    # the first layers intact: per-layer curves, single units, ordered ablation
                    levels=(config.wants("ablation") and config.per_layer)
                    or config.wants("importance") or config.wants("ordered"))
    u = engine.units
    offsets = engine.offsets
    np.repeat(np.arange(len(layers)), [layer.channels for layer in layers])

    # -- configurations -----------------------------------------------------------------------
    seeds = np.random.SeedSequence(config.seed).spawn(3)
    fr = config.fractions
    blocks: dict[str, tuple[int, int]] = {}
    rows: list[np.ndarray] = [np.ones((1, u), dtype=np.float32)]

    def add(name: str, block: np.ndarray) -> None:
        start = sum(len(r) for r in rows)
        rows.append(block)
        blocks[name] = (start, start + len(block))

    joint_counts: list[int] = []
    layer_counts: dict[str, list[int]] = {}
    if config.wants("ablation"):
        block, joint_counts = _permutation_masks(np.random.default_rng(seeds[0]), np.arange(u), u,
                                                 fr, config.draws)
        add("joint", block)
        if config.per_layer and len(layers) > 1:
            rng = np.random.default_rng(seeds[1])
            for i, layer in enumerate(layers):
                block, layer_counts[layer.name] = _permutation_masks(
                    rng, np.arange(offsets[i], offsets[i + 1]), u, fr, config.draws)
                add(f"layer:{layer.name}", block)
    need_selectivity = config.wants("selectivity") or config.wants("ordered") or \
        config.wants("importance")
    # Random ablation and single-unit importance need nothing from the unablated statistics:
    # then one pass does everything. Ordered ablation (selectivity), noise (unit s.d.) and
    # mean-ablation (unit means) need a first pass; mutual information joins the second.
    fused = (set(config.measures) <= {"ablation", "importance"}
             and config.ablation_value == "zero" and selectivity_data is None)
    n_ordered = 2 * len(fr) if config.wants("ordered") else 0
    n_importance = u if config.wants("importance") else 0
    n_noise = len(config.noise_levels) * config.draws if want_noise else 0
    separate_hist = config.wants("selectivity") and selectivity_data is not None
    passes = 1 if fused else 2 + (1 if selectivity_data is not None else 0) + int(separate_hist)
    stats_runs = 1 if fused else 1 + (1 if selectivity_data is not None else 0) + int(
        config.wants("selectivity"))
    # rows[0] is the unperturbed model: the statistics run computes it, it is no configuration
    plan = Plan(data.num_samples, u, len(layers),
                sum(len(r) for r in rows) - 1 + n_ordered + n_importance, n_noise, stats_runs,
                passes)
    hooks.plan(plan)

    def calibrated(rate: dict[str, float]) -> None:
        def known(value: float) -> float:
            return value if math.isfinite(value) else 0.0

        hooks.estimate(data.num_samples * (plan.passes * rate["prefix_s_per_sample"]
                                           + plan.stats_runs * rate["stats_s_per_sample"]
                                           + (plan.mask_configs + plan.noise_configs)
                                           * known(rate["config_s_per_sample"])))

    if config.wants("importance") and fused:
        add("importance", 1.0 - np.eye(u, dtype=np.float32))
    hist_spec = None
    unit_mean = None
    noise_rows = np.zeros((0, u), dtype=np.float32)
    if fused:
        first = engine.run_pass(data, stats=True, configs=Configs(np.concatenate(rows)),
                                progress=hooks.progress, phase="sweeps", calibrated=calibrated)
    else:
        first = engine.run_pass(data, stats=True, progress=hooks.progress,
                                phase="unablated pass")
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
    if selectivity_data is not None:
        sel_stats = engine.run_pass(sel_data, stats=True, progress=hooks.progress,
                                    phase="selectivity data").stats
        if sel_stats is None:  # pragma: no cover - run_pass raises on empty data
            raise InternalError("the selectivity-data pass produced no statistics")
        sel = sel_stats
    present = int((sel.class_counts > 0).sum())
    si: np.ndarray | None = None
    pref: np.ndarray | None = None
    mi: np.ndarray | None = None
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
            order_desc = np.lexsort((np.arange(u), -si))
            add("ordered:high_to_low", _ordered_masks(order_desc, u, fr))
            add("ordered:low_to_high", _ordered_masks(order_desc[::-1].copy(), u, fr))
        if config.wants("importance"):
            add("importance", 1.0 - np.eye(u, dtype=np.float32))
        if want_noise:
            sd = base.elem_sd.astype(np.float32)
            noise_rows = np.concatenate([np.tile(alpha * sd, (config.draws, 1))
                                         for alpha in config.noise_levels])
        if config.ablation_value == "mean":
            unit_mean = base.mean.astype(np.float32)
        # Noise row i (level-major) uses draw i mod draws: one standard-normal draw per chunk
        # serves that draw at every level (common random numbers).
        noise_draw = np.tile(np.arange(config.draws), len(noise_rows) // config.draws)
        # The estimate comes from the sweep pass itself: the statistics run costs something
        # else per sample than a configuration does.
        second = engine.run_pass(data, configs=Configs(np.concatenate(rows), noise_rows,
                                                       noise_draw),
                                 unit_mean=unit_mean, progress=hooks.progress, phase="sweeps",
                                 hist=None if separate_hist else hist_spec, calibrated=calibrated)
        counts, noise_counts = second.mask_counts, second.noise_counts
        hist = second.hist
        if separate_hist and hist_spec is not None:
            hist = engine.run_pass(sel_data, hist=hist_spec, progress=hooks.progress,
                                   phase="selectivity data").hist
        if hist is not None:
            mi = mutual_information(hist)
    if counts is None:  # pragma: no cover - the sweep always runs the unperturbed row
        raise InternalError("the sweep produced no counts")
    notes.extend(engine.notes)
    n = counts.n
    base_acc = float(counts.correct[0] / n)
    with np.errstate(invalid="ignore", divide="ignore"):
        base_class_acc = counts.class_correct[0] / np.where(counts.class_counts > 0,
                                                            counts.class_counts, np.nan)

    fields = ("correct", "loss", "agree", "kl", "class_correct")

    def block_curve(name: str, x: tuple[float, ...], units_off: list[int], draws: int) -> Curve:
        a, b = blocks[name]
        arrays = {f: getattr(counts, f)[a:b].reshape(draws, len(x), -1).squeeze(-1)
                  if f != "class_correct" else counts.class_correct[a:b].reshape(draws, len(x), -1)
                  for f in fields}
        return _curve(x, units_off, arrays, counts.class_counts, n, base_acc, base_class_acc)

    ablation: AblationResult | None = None
    joint: Curve | None = None
    per_layer_auc: dict[str, float] = {}
    if config.wants("ablation"):
        joint = block_curve("joint", fr, joint_counts, config.draws)
        per_layer = {layer.name: block_curve(f"layer:{layer.name}", fr,
                                             layer_counts[layer.name], config.draws)
                     for layer in layers if f"layer:{layer.name}" in blocks}
        per_layer_auc = {name: c.auc for name, c in per_layer.items()}
        ablation = AblationResult(joint, per_layer, {})
    if "ordered:high_to_low" in blocks:
        ordered = {
            key: block_curve(f"ordered:{key}", fr, [round(f * u) for f in fr], 1)
            for key in ("high_to_low", "low_to_high")
        }
        ablation = AblationResult(ablation.joint if ablation else None,
                                  ablation.per_layer if ablation else {}, ordered)
    noise_curve: Curve | None = None
    if noise_counts is not None:
        levels = tuple(float(a) for a in config.noise_levels)
        shape = (len(levels), config.draws)

        def by_level(arr: np.ndarray) -> np.ndarray:
            return arr.reshape(*shape, *arr.shape[1:]).swapaxes(0, 1)

        noise_curve = _curve(levels, [u] * len(levels),
                             {f: by_level(getattr(noise_counts, f)) for f in fields},
                             noise_counts.class_counts, n, base_acc, base_class_acc,
                             # Over log α: each decade of noise weighs the same.
                             auc_x=np.log10(np.asarray(levels)))

    importance_acc = importance_loss = None
    if "importance" in blocks:
        a, b = blocks["importance"]
        importance_acc = base_acc - counts.correct[a:b] / n
        importance_loss = counts.loss[a:b] / n - float(counts.loss[0] / n)

    layer_reports = []
    correlations: list[dict[str, Any]] = []
    elem_sd = base.elem_sd
    for i, layer in enumerate(layers):
        lo, hi = offsets[i], offsets[i + 1]
        sl = slice(lo, hi)
        dead = int(np.sum(base.unit_max[sl] <= 0) if layer.op_type == "Relu"
                   else np.sum(base.unit_max[sl] - base.unit_min[sl] == 0))
        rho = None
        if importance_loss is not None and si is not None:
            rho = _finite(spearman(si[sl], importance_loss[sl]))
            correlations.append({"layer": layer.name, "spearman": rho})
        layer_reports.append(LayerReport(
            name=layer.name, op_type=layer.op_type, kind=layer.kind, shape=layer.shape,
            channel_axis=layer.channel_axis, channels=layer.channels, depth=layer.depth,
            dead_units=dead,
            selectivity_mean=None if si is None else float(np.mean(si[sl])),
            selectivity_median=None if si is None else float(np.median(si[sl])),
            selectivity_max=None if si is None else float(np.max(si[sl])),
            mutual_information_mean=None if mi is None else float(np.mean(mi[sl])),
            importance_selectivity_spearman=rho,
            units=UnitArrays(
                mean=tuple(base.mean[sl].tolist()), sd=tuple(base.sd[sl].tolist()),
                noise_sd=tuple(elem_sd[sl].tolist()),
                selectivity=None if si is None else tuple(si[sl].tolist()),
                preferred_class=None if pref is None else tuple(int(c) for c in pref[sl]),
                mutual_information=None if mi is None else tuple(mi[sl].tolist()),
                importance=None if importance_acc is None else tuple(importance_acc[sl].tolist()),
                importance_loss=None if importance_loss is None else
                tuple(importance_loss[sl].tolist()),
            ),
        ))
    importance: dict[str, Any] | None = None
    if importance_acc is not None and importance_loss is not None:
        rho_all = spearman(si, importance_loss) if si is not None else math.nan
        # The correlation uses the loss rise: on robust nets one unit rarely flips a prediction,
        # so accuracy drops are mostly 0 and their rank correlation is undefined.
        importance = {"metric": "loss rise when the unit alone is ablated (importance_loss); "
                      "the accuracy drop is in importance",
                      "per_layer": correlations, "spearman_all": _finite(rho_all)}

    auc = joint.auc if joint is not None else None
    risk = config.risk.grade(auc) if auc is not None and math.isfinite(auc) else None
    summary = Summary(
        ablation_auc=_finite(auc) if auc is not None else None,
        ablation_auc_ci=(joint.auc_ci_low, joint.auc_ci_high) if joint is not None else None,
        noise_auc=_finite(noise_curve.auc) if noise_curve is not None else None,
        risk=risk, risk_thresholds={"low": config.risk.low, "medium": config.risk.medium},
        per_layer_auc=per_layer_auc, notes=tuple(notes),
    )
    gate = _gate(config, summary.ablation_auc)
    class_names = list(data.class_names) if data.class_names else None
    finished = datetime.now(timezone.utc)
    return AuditReport(
        sdaudit_version=__version__,
        model={"path": str(model_path), "sha256": loaded.sha256, "converted_onnx": loaded.converted,
               "inputs": [s.to_dict() for s in loaded.inputs],
               "outputs": [s.to_dict() for s in loaded.outputs], "output_used": engine.output,
               "output_kind": "probabilities" if engine.probabilities else "logits",
               "opset": loaded.opset, "ir_version": int(loaded.proto.ir_version)},
        data={**data.describe(), "samples": n, "classes": k, "class_names": class_names,
              "classes_present": int((counts.class_counts > 0).sum()),
              "skipped": data.skipped.count, "skipped_examples": list(data.skipped.examples),
              "selectivity_data": None if selectivity_data is None else str(selectivity_data),
              "labels": "given" if data.labelled else "predicted"},
        runtime={**engine.runtime.to_dict(), "cut": list(engine.cut),
                 **({} if engine.fp16_changed is None
                    else {"fp16_prediction_change": engine.fp16_changed})},
        config=config.to_dict(),
        baseline={"accuracy": base_acc, "loss": float(counts.loss[0] / n),
                  "per_class_accuracy": [_finite(v) for v in base_class_acc.tolist()]},
        layers=tuple(layer_reports), ablation=ablation, noise=noise_curve,
        importance=importance, summary=summary, gate=gate,
        run={"started": started.isoformat(timespec="seconds"),
             "finished": finished.isoformat(timespec="seconds"),
             "duration_s": round(time.perf_counter() - t0, 3),
             "forward_passes": plan.forward_passes},
    )


__all__ = ["Hooks", "Plan", "SdauditError", "audit"]
