"""``audit(model, data, config)``: the one entry point the CLI calls.

A short pipeline: load → select → plan the configurations (analysis.configs) → execute the
passes (runtime.passes) → build the report's figures (report.build) → gate (report.gate).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from sdaudit._version import __version__
from sdaudit.analysis.configs import Plan
from sdaudit.config import AuditConfig
from sdaudit.data.base import InputLayout
from sdaudit.data.open import DataOptions
from sdaudit.errors import DataError, SdauditError
from sdaudit.report.model import AuditReport
from sdaudit.runtime.estimate import Estimate
from sdaudit.runtime.executors import Execution


class Hooks:
    """Callbacks for progress and announcements; the CLI renders them on stderr."""

    def plan(self, plan: Plan) -> None: ...

    def estimate(self, estimate: Estimate) -> None: ...

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


def _load_with_data_shape(model_path: str | Path, input_shape: Any, data_path: str | Path | None,
                          opts: DataOptions) -> Any:
    """The model, its open input dimensions (but the batch) taken from the data where the
    data fixes them (an .npz's samples, an image folder's crop or first image) and no
    ``--input-shape`` gives them."""
    from sdaudit.model.load import load_model

    if input_shape is not None:
        return load_model(model_path, input_shape)
    loaded = load_model(model_path, None, require_static=False)
    open_dims = [s for s in loaded.inputs
                 if s.shape is None or any(not isinstance(d, int) or d <= 0 for d in s.shape[1:])]
    if len(loaded.inputs) != 1 or not open_dims or loaded.inputs[0].shape is None:
        return load_model(model_path, None)  # its own error where a dimension stays open
    from sdaudit.data.peek import fill_open_dims, sample_shape

    spec = loaded.inputs[0]
    shape = spec.shape or ()
    rank3 = len(shape) == 4
    channels_last = bool(opts.channels_last) if opts.channels_last is not None else (
        rank3 and shape[-1] in (1, 3) and shape[1] not in (1, 3))
    c = shape[-1 if channels_last else 1] if rank3 else None
    crop = opts.preprocess.crop if opts.preprocess else (
        opts.overrides.get("crop") or (224 if opts.preset == "imagenet" else None))
    found = sample_shape(None if opts.loader_script else data_path,
                         c if isinstance(c, int) and c > 0 else None, channels_last, crop)
    if found is None:
        return load_model(model_path, None)
    return load_model(model_path, fill_open_dims(shape, found, spec.name))


def audit(model_path: str | Path, data_path: str | Path | None, config: AuditConfig | None = None, *,
          input_shape: Any = None, data_options: DataOptions | None = None,
          selectivity_data: str | Path | None = None, output: str | None = None,
          hooks: Hooks | None = None, execution: Execution | None = None,
          dry_run: bool = False, time_budget: float | None = None,
          max_images: int | None = None) -> AuditReport:
    """Measure how much the model at ``model_path`` relies on single directions, on ``data_path``.

    ``execution``: which executor runs the units of work, and the checkpoint folder.
    Raises :class:`~sdaudit.errors.SdauditError` for anything wrong with what was given, an
    ONNX Runtime failure that the model as given has on the data included.
    ``dry_run``: announce the plan and the estimate (``hooks``) from the first two chunks of
    each pass only; the report returned then covers those chunks alone (no checkpoint kept).
    ``time_budget``
    (seconds): calibrate as ``dry_run`` does, then audit the most images (a seeded sample,
    stratified by class) and draws whose estimate fits (sdaudit.analysis.budget); the report's
    notes and ``run.time_budget`` say what was chosen. ``max_images``: audit a seeded,
    stratified sample of this many images.
    """
    opened: list[Any] = []  # executors to close, whatever happens
    try:
        return _audit(model_path, data_path, config, input_shape=input_shape,
                      data_options=data_options, selectivity_data=selectivity_data,
                      output=output, hooks=hooks, execution=execution, dry_run=dry_run,
                      time_budget=time_budget, max_images=max_images, opened=opened)
    except Exception as exc:
        from sdaudit.runtime.diagnose import is_ort_error, raise_if_data_fault

        if not is_ort_error(exc):
            raise
        data_paths = [data_path] + ([selectivity_data] if selectivity_data is not None else [])
        raise_if_data_fault(model_path, data_paths, input_shape, data_options)
        raise
    finally:
        for executor in opened:
            executor.close()


def _audit(model_path: str | Path, data_path: str | Path | None, config: AuditConfig | None = None,
           *, input_shape: Any = None, data_options: DataOptions | None = None,
           selectivity_data: str | Path | None = None, output: str | None = None,
           hooks: Hooks | None = None, execution: Execution | None = None,
           dry_run: bool = False, time_budget: float | None = None,
           max_images: int | None = None, opened: list[Any] | None = None) -> AuditReport:
    """The audit itself (:func:`audit` adds the diagnosis of ONNX Runtime failures and closes
    the executors it ``opened``)."""
    if time_budget is not None and not dry_run:
        return _within_budget(model_path, data_path, config or AuditConfig(), time_budget,
                              hooks or Hooks(), input_shape=input_shape,
                              data_options=data_options, selectivity_data=selectivity_data,
                              output=output, execution=execution)
    from dataclasses import replace

    from sdaudit.analysis import configs
    from sdaudit.data import open_dataset
    from sdaudit.data.classes import names_from_metadata
    from sdaudit.model.layers import discover_layers, select_layers
    from sdaudit.ort import usable_cores
    from sdaudit.report import baseline
    from sdaudit.report.build import figures
    from sdaudit.report.gate import baseline_auc, judge
    from sdaudit.runtime.estimate import Calibrator
    from sdaudit.runtime.executors import EngineSpec, make_executor
    from sdaudit.runtime.passes import execute

    config = config or AuditConfig()
    execution = execution or Execution()
    old: dict[str, Any] | None = None
    baseline_notes: list[str] = []
    if config.gate.baseline_report is not None:
        baseline_auc(config.gate.baseline_report)  # a bad --baseline fails before any work
        old = baseline.load(config.gate.baseline_report)
        baseline_notes = baseline.check_settings(old, config.to_dict(), config.gate.baseline_report)
    hooks = hooks or Hooks()
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    # -- load, select, open the data ----------------------------------------------------------
    opts = data_options or DataOptions()
    loaded = _load_with_data_shape(model_path, input_shape, data_path, opts)
    from sdaudit.model.outputs import for_output

    loaded, choice = for_output(loaded, output)
    output = choice.name
    layers = select_layers(discover_layers(loaded.proto), config.layers)
    layout = input_layout(loaded, opts.channels_last)
    out_spec = next(o for o in loaded.outputs if o.name == output)
    num_classes = (out_spec.shape[1] if out_spec.shape and len(out_spec.shape) == 2
                   and isinstance(out_spec.shape[1], int) else None)
    workers = config.threads or usable_cores()
    if opts.class_names is not None and num_classes is not None and \
            len(opts.class_names) != num_classes:
        raise DataError(f"--class-names gives {len(opts.class_names)} names but the model has "
                        f"{num_classes} outputs", "give one name per model output, in order")
    if opts.class_names is None:
        opts = replace(opts, class_names=names_from_metadata(loaded.proto, num_classes))
    data = open_dataset(data_path, layout, num_classes=num_classes, options=opts, workers=workers)
    if max_images is not None and max_images < data.num_samples:
        from sdaudit.data.subsample import StratifiedSample

        data = StratifiedSample(data, max_images, config.seed)
    sel_data = (open_dataset(selectivity_data, layout, num_classes=num_classes,
                             options=replace(opts, loader_script=None), workers=workers)
                if selectivity_data is not None else data)
    if old is not None and config.gate.baseline_report is not None:
        baseline.check_subject(old, tuple((la.name, la.channels) for la in layers),
                               {**data.describe(), "samples": data.num_samples},
                               config.gate.baseline_report)
    options = {
        "device": config.device, "threads": config.threads, "seed": config.seed,
        "ablation_value": config.ablation_value, "noise": config.wants("noise"),
        "chunk_size": config.chunk_for(int(np.prod(layout.shape))
                                       * np.dtype(layout.dtype).itemsize),
        "output": output, "precision": config.precision, "io_binding": config.io_binding,
        "prune": config.prune, "metric": config.metric, "class_axis": config.class_axis,
        # suffixes that start at later layers pay off where configurations leave the first
        # layers intact: per-layer curves, single units, ordered ablation
        "levels": (config.wants("ablation") and config.per_layer)
        or config.wants("importance") or config.wants("ordered")}
    executor = make_executor(execution.executor, EngineSpec(loaded, tuple(layers), options),
                             None if dry_run else
                             checkpoint(execution, loaded, data, config, layers, output),
                             address=execution.ray_address, workers=execution.workers)
    if opened is not None:
        opened.append(executor)
    # -- plan ---------------------------------------------------------------------------------
    separate = selectivity_data is not None
    table = configs.ConfigTable(layers)
    if config.wants("ablation"):
        table.add_random(config, np.random.SeedSequence(config.seed).spawn(3))
    imp = None
    if config.wants("importance"):
        from sdaudit.runtime.importance import ImportancePlan

        imp = ImportancePlan.make(loaded.proto, layers, executor, closed_form=config.closed_form,
                                  zero_ablation=config.ablation_value == "zero",
                                  samples=config.importance_samples,
                                  population=data.num_samples, seed=config.seed)
    plan = configs.plan(config, table, data.num_samples, separate,
                        None if imp is None else len(imp.masked_units()),
                        None if imp is None else imp.sample)
    if dry_run:
        # Calibrate on the first two chunks of every pass (the sweep's second chunk is the
        # one timed) and scale to the whole data; nothing else is run.
        from sdaudit.data.subsample import FirstChunks

        data = FirstChunks(data, 2 * executor.chunk_size)
        sel_data = FirstChunks(sel_data, 2 * executor.chunk_size)
        if imp is not None:
            imp.calibrate_only = True
    hooks.plan(plan)
    fused = configs.single_pass(config, separate)
    if imp is not None and fused and not imp.sampled:
        table.add_importance(imp.masked_units())
    calibrator = Calibrator(plan, table, plan.samples, hooks.estimate,
                            sample=imp.sample if imp is not None and imp.sampled else 0,
                            importance_units=0 if imp is None else len(imp.masked_units()),
                            started=t0)
    # -- execute, build, gate -----------------------------------------------------------------
    meas = execute(executor, table, config, data, sel_data, separate_selectivity=separate,
                   fused=fused, progress=hooks.progress,
                   calibrator=calibrator, importance=imp)
    figs = figures(table, meas, config)
    info = executor.info
    summary, verdict = judge(config, figs, old, meas.counts.n)
    if baseline_notes:
        summary = replace(summary, notes=(*baseline_notes, *summary.notes))
    counts = meas.counts
    metric = info.metric.describe()
    if "positions" in metric:  # as the units counted them (a resumed run sets up no metric)
        metric["positions"] = executor.positions
    class_names = list(data.class_names) if data.class_names else None
    finished = datetime.now(timezone.utc)
    return AuditReport(
        sdaudit_version=__version__,
        model={"path": str(model_path), "sha256": loaded.sha256, "converted_onnx": loaded.converted,
               "inputs": [s.to_dict() for s in loaded.inputs],
               "outputs": [s.to_dict() for s in loaded.outputs], "output_used": info.output,
               "output_choice": choice.reason,
               "metric": metric,
               "output_kind": "probabilities" if executor.probabilities else "logits",
               "opset": loaded.opset, "ir_version": int(loaded.proto.ir_version)},
        data={**data.describe(), "samples": counts.n // executor.positions,
              "classes": meas.classes,
              "class_names": class_names,
              "classes_present": int((counts.class_counts > 0).sum()),
              "skipped": data.skipped.count, "skipped_examples": list(data.skipped.examples),
              "selectivity_data": None if selectivity_data is None else str(selectivity_data),
              "labels": "given" if data.labelled else "predicted"},
        runtime={**info.runtime, "cut": list(info.cut),
                 **({} if info.fp16_changed is None
                    else {"fp16_prediction_change": info.fp16_changed}),
                 "executor": executor.name, "workers": executor.workers,
                 "chunk_size": info.chunk_size, "units_run": executor.units_run,
                 "units_resumed": executor.units_resumed},
        config=config.to_dict(), unablated=figs.baseline, layers=figs.layers,
        ablation=figs.ablation, noise=figs.noise, importance=figs.importance,
        summary=summary, gate=verdict,
        run={"started": started.isoformat(timespec="seconds"),
             "finished": finished.isoformat(timespec="seconds"),
             "duration_s": round(time.perf_counter() - t0, 3),
             "forward_passes": plan.forward_passes,
             **({} if calibrator.result is None else {"estimate": calibrator.result.to_dict()})},
    )


def checkpoint(execution: Execution, loaded: Any, data: Any, config: AuditConfig,
               layers: list[Any], output: str) -> Any:
    """The checkpoint folder of ``--checkpoint`` for this audit (None without one)."""
    if execution.checkpoint is None:
        return None
    from sdaudit.runtime.checkpoint import Checkpoint

    return Checkpoint(execution.checkpoint, {
        "sdaudit": __version__, "model": loaded.sha256, "data": data.describe(),
        "samples": data.num_samples, "config": config.to_dict(),
        "layers": [layer.name for layer in layers], "output": output})


class _Captured(Hooks):
    """The calibration's plan and estimate, kept instead of shown."""

    def __init__(self) -> None:
        self.last_plan: Plan | None = None
        self.last_estimate: Estimate | None = None

    def plan(self, plan: Plan) -> None:
        self.last_plan = plan

    def estimate(self, estimate: Estimate) -> None:
        self.last_estimate = estimate


def _within_budget(model_path: str | Path, data_path: str | Path | None, config: AuditConfig,
                   budget: float, hooks: Hooks, **kw: Any) -> AuditReport:
    """--time-budget: calibrate, choose images and draws, audit, say what the choice bought."""
    from dataclasses import replace

    from sdaudit.analysis.budget import choose

    t0 = time.perf_counter()
    cap = _Captured()
    audit(model_path, data_path, config, hooks=cap, dry_run=True, **kw)
    spent = time.perf_counter() - t0
    plan, est = cap.last_plan, cap.last_estimate
    if plan is None or est is None:  # pragma: no cover - a dry run always announces both
        from sdaudit.errors import InternalError

        raise InternalError("the time budget's calibration gave no estimate")
    sample = plan.importance_samples if plan.importance_samples < plan.samples else 0
    # the calibration ran the draws of the first batch (--draws auto: its first 5); the budget
    # then fixes the draws it can afford
    choice = choose(est.by_measure, est.setup_s, plan.samples, plan.draws, sample,
                    budget - spent, min_images=min(plan.samples, 100))
    report = audit(model_path, data_path, replace(config, draws=choice.draws), hooks=hooks,
                   max_images=choice.images if choice.images < plan.samples else None, **kw)
    ci = report.summary.ablation_auc_ci
    half = None if ci is None or report.summary.ablation_auc is None else (ci[1] - ci[0]) / 2
    se = [s for layer in report.layers for s in (layer.units.importance_loss_se or ())]
    bought = [f"the ablation AUC ± {half:.3f} (95 %)"] if half is not None else []
    if se:
        bought.append(f"a median importance standard error of {float(np.median(se)):.2g}")
    note = (f"--time-budget {budget:,.0f} s: {choice.images:,} of {plan.samples:,} images "
            f"(stratified by class, seed {config.seed}) and {choice.draws} draws, predicted "
            f"{choice.predicted_s:,.0f} s after {spent:,.0f} s of calibration"
            + ("" if choice.fits else "; even the fewest images and draws exceed the budget")
            + (f"; this buys {' and '.join(bought)}" if bought else ""))
    info = {"budget_s": budget, "calibration_s": round(spent, 3), "images": choice.images,
            "of": plan.samples, "draws": choice.draws,
            "predicted_s": round(choice.predicted_s, 3), "fits": choice.fits}
    return replace(report, summary=replace(report.summary,
                                           notes=(*report.summary.notes, note)),
                   run={**report.run, "time_budget": info,
                        "duration_s": round(time.perf_counter() - t0, 3)})


__all__ = ["Execution", "Hooks", "Plan", "SdauditError", "audit"]
