"""The engine of one worker: a model's sessions, and the unit of work on them.

``Engine.run_unit(index, x, labels, work)`` runs one chunk under one pass's configuration set
and returns its counts (runtime.counts); the executors (runtime.executors) feed it chunks and
merge the counts in chunk order.

* Per chunk, the prefix (everything no control can change) runs once; one run of the statistics
  suffix gives the unperturbed outputs, the unit statistics and the cuts of later suffix levels;
  each configuration runs only its suffix (runtime.suffix), with its masks fed as inputs, or a
  pruned suffix (runtime.pruning): no session is rebuilt during a sweep.
* Per configuration only counts and sums are kept, which merge by addition: a chunk × a set of
  configurations is a self-contained unit of work. Its random draws (noise) are keyed by the
  seed, the chunk's index and the draw, so a unit gives the same counts wherever it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import InternalError, ModelError
from sdaudit.runtime.counts import (
    Configs,
    PassResult,
    SweepCounts,
    UnitResult,
    UnitStats,
    Work,
)
from sdaudit.runtime.moments import chunk_moments, merge_into
from sdaudit.runtime.suffix import out_of_memory

if TYPE_CHECKING:
    from sdaudit.analysis.metrics import Reference
    from sdaudit.model.layers import LayerInfo
    from sdaudit.model.load import LoadedModel
    from sdaudit.ort import RuntimeInfo



class Engine:
    """Sessions for one model and layer selection; runs the passes of an audit."""

    def __init__(self, loaded: LoadedModel, layers: list[LayerInfo], *, device: str = "auto",
                 threads: int | None = None, ablation_value: str = "zero", noise: bool = True,
                 seed: int = 0, chunk_size: int = 256, output: str | None = None,
                 precision: str = "fp32", io_binding: bool | None = None,
                 levels: bool = True, prune: bool | None = None, metric: str = "auto",
                 class_axis: int | None = None) -> None:
        from sdaudit.analysis.configs import unit_offsets
        from sdaudit.config import PRECISIONS
        from sdaudit.ort import runtime_info, usable_cores
        from sdaudit.runtime.pruning import Pruning
        from sdaudit.runtime.suffix import SuffixRunner
        from sdaudit.runtime.variants import Sessions, build_variants

        if precision not in PRECISIONS:
            from sdaudit.errors import BadFlagError

            raise BadFlagError(f"--precision {precision}: unknown precision",
                               "choose fp32 or fp16")
        self.notes: list[str] = []
        if len(loaded.inputs) != 1:
            raise ModelError(
                f"the model has {len(loaded.inputs)} inputs; scan audits single-input classifiers",
                "export a model that takes one input tensor",
            )
        self.layers = list(layers)
        self.offsets = unit_offsets(self.layers)
        self.units = int(self.offsets[-1])
        self.ablation_value = ablation_value
        self.input_name = loaded.inputs[0].name
        out_names = [o.name for o in loaded.outputs]
        self.output = output or out_names[0]
        if self.output not in out_names:
            raise ModelError(f"--output {self.output!r} is not an output of the model",
                             f"outputs: {', '.join(out_names)}")
        self.variants = build_variants(loaded.proto, self.layers, self.output,
                                       ablation_value=ablation_value, noise=noise, seed=seed,
                                       levels=levels)
        self.fixed_batch = self.variants.fixed_batch
        self.chunk_size = self.fixed_batch or chunk_size
        self.threads = threads or usable_cores()
        self.device = device
        self.sessions = Sessions(self.variants, device, self.threads, precision)
        if self.variants.noise is not None and not self.variants.noise.eps_inputs:
            self.notes.append("a noise layer's shape is not fully known: every noise run draws "
                              "afresh (no draw shared across noise levels)")
        self._runtime: RuntimeInfo = runtime_info(self.sessions.stats, device, self.threads)
        on_cuda = self._runtime.provider == "CUDAExecutionProvider"
        self.io_binding = on_cuda if io_binding is None else io_binding
        self.suffix = SuffixRunner(self.variants, self.sessions, self.layers, self.offsets,
                                   self.notes, io_binding=self.io_binding,
                                   device_type="cuda" if on_cuda else "cpu", seed=seed)
        self.pruning = Pruning(self.variants, self.sessions, self.suffix, self.layers,
                               self.offsets, self.notes, ablation_value=ablation_value,
                               prune=prune)
        self._suffix_s = 0.0  # one unperturbed suffix run per sample (last chunk)
        self._pass_id: int | None = None  # the pass whose units this engine runs now
        self._checked = False  # the sweep variants' post-condition, checked on a first chunk
        self._row_s: tuple[np.ndarray, np.ndarray] = (np.zeros(0), np.zeros(0))
        self.cut = self.variants.cut
        self.num_classes: int | None = None
        out_spec = next(o for o in loaded.outputs if o.name == self.output)
        from sdaudit.analysis.metrics import choose_metric
        from sdaudit.model.class_axis import class_axis as graph_class_axis

        axis, channels = ((class_axis, None) if class_axis is not None else
                          graph_class_axis(loaded.proto, self.output))
        if axis is None and out_spec.shape is not None and len(out_spec.shape) >= 2:
            axis = len(out_spec.shape) - 1 if len(out_spec.shape) == 3 else 1  # [N,T,V], NCHW
        self.metric = choose_metric(metric, self.output, out_spec.shape, axis, channels)
        from sdaudit.model.axes import batch_axes

        proven = batch_axes(loaded.proto)
        self.suffix.stackable = all(
            name == self.input_name or proven.get(name) == 0
            for name in (*self.cut, *self.variants.level_outputs))
        self._metric_ready = False
        if out_spec.shape and len(out_spec.shape) == 2 and isinstance(out_spec.shape[1], int) \
                and self.metric.kind == "classification":
            self.num_classes = out_spec.shape[1]

    @property
    def probabilities(self) -> bool:
        """Whether the audited output holds probabilities already (else logits)."""
        return bool(self.metric.probabilities)

    @property
    def precision(self) -> str:
        """The sweep suffix's precision now in force (fp16 may fall back after chunk 1)."""
        return self.sessions.precision

    @property
    def fp16_changed(self) -> float | None:
        return self.suffix.fp16_changed

    @property
    def runtime(self) -> RuntimeInfo:
        return replace(self._runtime, precision=self.precision, io_binding=self.io_binding,
                       prune=self.pruning.enabled)

    # -- pieces ------------------------------------------------------------------------------
    def _padded(self, x: np.ndarray) -> np.ndarray:
        """A chunk padded (by repeating its last sample) to the model's fixed batch size."""
        if self.fixed_batch is None or len(x) == self.fixed_batch:
            return x
        pad = np.repeat(x[-1:], self.fixed_batch - len(x), axis=0)
        return np.concatenate([x, pad])

    def _run_prefix(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """The cut tensors of one chunk. Where the chunk does not fit in memory, its halves run
        one after the other (the cut is small next to the prefix's own activations)."""
        try:
            return self._run_prefix_once(x)
        except Exception as exc:
            if not out_of_memory(exc) or self.fixed_batch:
                raise
            if len(x) <= 1:
                raise ModelError("out of memory running the model on a single sample",
                                 "use a machine with more memory (or --device cuda)") from None
        half = len(x) // 2
        if not any(n.startswith("a chunk of") for n in self.notes):
            self.notes.append(f"a chunk of {len(x)} samples did not fit in memory; it ran in "
                              "smaller parts (lower --chunk-size to avoid the retries)")
        first, second = self._run_prefix(x[:half]), self._run_prefix(x[half:])
        return {name: np.concatenate([first[name], second[name]]) for name in first}

    def _run_prefix_once(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = self._padded(x)
        cut: dict[str, np.ndarray] = {}
        if self.sessions.prefix is not None:
            names = list(self.variants.stats_split.prefix_outputs)
            cut.update(zip(names, self.sessions.prefix.run(names, {self.input_name: x}), strict=True))
        if self.input_name in self.cut:
            cut[self.input_name] = x
        return cut

    def _check_output(self, out: np.ndarray, y: np.ndarray) -> None:
        """The metric's set-up on the first chunk (shape, classes, labels' range)."""
        if not self._metric_ready:
            self.metric.setup(out, y)
            self._metric_ready = True
            self.num_classes = self.metric.classes

    # -- passes ------------------------------------------------------------------------------
    def run_unit(self, index: int, x: np.ndarray, labels: np.ndarray, work: Work,
                 step: Callable[[int], None] | None = None) -> UnitResult:
        """The unit of work: chunk ``index`` (``x``, ``labels``) under ``work``'s configuration
        set, to its counts. The prefix runs once for all of it.

        ``work.stats``/``work.hist``: run the unperturbed model with its statistics outputs
        (unit statistics; the joint histogram of binned unit means and class). ``work.configs``:
        run every configuration (suffix only, stacked). ``step(rows)`` as runs finish.
        Pre-condition: the units of one pass share their ``work`` (its ``pass_id``)."""
        from sdaudit.rewrite.instrument import neutral_controls

        if work.pass_id != self._pass_id:  # the first unit of a pass this engine runs
            self._pass_id = work.pass_id
            self.pruning.start_pass()
        result = PassResult()
        observed: tuple[np.ndarray, ...] | None = None
        configs = work.configs
        stats, hist = work.stats, work.hist
        ctl = neutral_controls(self.variants.stats, 1)
        n = len(labels)
        t0 = time.perf_counter()
        cut = self._run_prefix(x)
        t1 = time.perf_counter()
        base: tuple[Reference, np.ndarray] | None = None
        # The cut tensors of later suffix levels come out of the statistics run (padded rows
        # kept: the suffixes run on the padded chunk).
        extra = list(self.variants.level_outputs) if configs is not None else []
        level_cut: dict[str, np.ndarray] = {}
        want_units = stats or hist is not None
        if want_units or configs is not None:
            # One run serves the statistics, the histogram and the sweep's unperturbed row
            # (always from this fp32 session).
            names = [self.output, *self.variants.stats.mean_outputs,
                     *self.variants.stats.sqmean_outputs] if want_units else [self.output]
            t_run = time.perf_counter()
            raw = self.sessions.stats.run([*names, *extra], {**cut, **ctl})
            # the cost of one unperturbed suffix run, per sample (pruning's break-even)
            self._suffix_s = (time.perf_counter() - t_run) / max(n, 1)
            level_cut = dict(zip(extra, raw[len(names):], strict=True))
            outs = [o[:n] for o in raw[:len(names)]]
            out = outs[0]
            self._check_output(out, labels if n and labels[0] >= 0 else labels[:0])
            ref = self.metric.reference(out)
            classify = self.metric.kind == "classification"
            if classify:
                pred, logp = ref.pred, ref.logp
            else:  # per-sample class statistics need a classifier's labels: one class
                pred, logp = np.zeros(n, np.int64), np.zeros((n, 1))
            if want_units:
                y = (labels if n and labels[0] >= 0 else pred) if classify else pred
                means = np.concatenate(
                    [o.astype(np.float64) for o in outs[1:1 + len(self.layers)]], axis=1)
                k = int(self.num_classes or out.shape[1]) if classify else 1
                if stats:
                    result.stats = UnitStats.zeros(k, self.units)
                    sqmeans = np.concatenate(
                        [o.astype(np.float64) for o in outs[1 + len(self.layers):]], axis=1)
                    result.stats.add(out.reshape(n, -1), pred, logp, y, means, sqmeans)
                if work.observe:
                    observed = (out, means, y, logp)
                if hist is not None:
                    from sdaudit.analysis.selectivity import bin_index

                    b = bin_index(means, hist.lo, hist.hi, hist.bins)
                    flat = (np.arange(self.units)[None, :] * hist.bins + b) * k + y[:, None]
                    result.hist = np.bincount(flat.ravel(), minlength=self.units * hist.bins * k
                                              ).reshape(self.units, hist.bins, k)
            base = (ref, out)
        t2 = time.perf_counter()
        if step:
            step(n)
        if configs is not None:
            self._sweep_chunk(index, cut, labels, configs, work, result, base, step,
                              {**cut, **level_cut})
        t3 = time.perf_counter()
        planned = 0 if configs is None else len(configs.masks) + len(configs.noise_sd)
        rates: dict[str, Any] = {"prefix_s_per_sample": (t1 - t0) / max(n, 1),
                                 "stats_s_per_sample": (t2 - t1) / max(n, 1),
                                 "config_s_per_sample": (t3 - t2) / max(n * planned, 1)}
        if configs is not None:
            # seconds of each distinct mask row and each noise row on this chunk
            rates["row_s"], rates["noise_row_s"] = self._row_s
        return UnitResult(index, result, n, rates, bool(self.probabilities),
                          int(self.num_classes or 0), observed=observed,
                          positions=int(self.metric.positions))

    def planned_rows(self, pass_id: int) -> tuple[int, ...] | None:
        """The configurations of pass ``pass_id`` that ran pruned on every chunk this engine ran
        (None: it ran none of the pass)."""
        if pass_id != self._pass_id:
            return None
        return tuple(sorted(int(r) for fused in self.pruning.plan or [] for r in fused.rows))

    def _sweep_chunk(self, index: int, cut: dict[str, np.ndarray], labels: np.ndarray,
                     configs: Configs, work: Work, result: PassResult,
                     base: tuple[Reference, np.ndarray] | None,
                     step: Callable[[int], None] | None,
                     unperturbed: dict[str, np.ndarray]) -> None:
        """Every configuration on chunk ``index``; counts go into ``result``.

        ``unperturbed``: the chunk's cut and the unperturbed values of the later levels' cuts.
        """
        k = int(self.num_classes or 0)
        masks = np.ascontiguousarray(configs.masks, dtype=np.float32)
        if len(masks) == 0 or not np.all(masks[0] == 1):
            raise InternalError("the first mask configuration must be the unperturbed model")
        noise_sd = np.ascontiguousarray(configs.noise_sd, dtype=np.float32)
        has_noise = len(noise_sd) > 0 and self.sessions.noise is not None
        result.mask_counts = SweepCounts.zeros(len(masks), k)
        result.noise_counts = SweepCounts.zeros(len(noise_sd), k) if has_noise else None
        n = len(labels)
        if base is None:  # run_unit always computes the unperturbed row first
            raise InternalError("a sweep chunk without the unperturbed predictions")
        ref, base_out = base
        y = self.metric.targets(labels, ref)  # one class per item (labels or predictions)
        if not self._checked:  # the variants' post-condition, on this engine's first chunk
            self.suffix.check_neutral(unperturbed, n, base_out)
            self._checked = True
        if self.precision == "fp16" and self.fp16_changed is None:
            self.suffix.check_fp16(cut, n, base_out, self.metric)
        mask_spec, noise_spec = work.moments, work.noise_moments
        for spec, of, m in ((mask_spec, result.mask_counts, len(masks)),
                            (noise_spec, result.noise_counts, len(noise_sd))):
            # per item: a sample, or each of its positions; the masks' row 0 (the unperturbed
            # model) serves every curve's normalization
            if of is not None and (spec or (of is result.mask_counts and noise_spec)):
                of.hits = np.zeros((m, len(y)))
        # Row 0 is the unperturbed model, which the statistics run just computed.
        self.metric.accumulate(result.mask_counts, np.arange(1), base_out, 1, y, ref)
        if self.pruning.plan is None:
            self.pruning.plan = self.pruning.make_plan(masks, self._suffix_s * work.samples)
        # each configuration's share of this chunk's time (the per-measure estimate)
        row_s, noise_s = np.zeros(len(masks)), np.zeros(len(noise_sd))
        t0 = time.perf_counter()
        pruned = self.pruning.run(masks, unperturbed, result.mask_counts, n, y, ref,
                                  self.metric)
        if len(pruned):
            row_s[pruned] += (time.perf_counter() - t0) / len(pruned)
        if step:
            step(n * (1 + len(pruned)))
        jobs = self.suffix.jobs(masks, noise_sd, configs.noise_draw, pruned, cut, unperturbed,
                                result.mask_counts, result.noise_counts if has_noise else None)
        for job in jobs:
            t0 = time.perf_counter()
            self.suffix.run(job, index, n, y, ref, self.metric, work.unit_mean, step)
            spent = row_s if job.counts is result.mask_counts else noise_s
            spent[job.rows] += (time.perf_counter() - t0) / max(len(job.rows), 1)
        self._row_s = (row_s, noise_s)
        for counts in (result.mask_counts, result.noise_counts):
            if counts is not None:
                counts.n += len(y)  # items: samples, or positions of every sample
                np.add.at(counts.class_counts, y, 1)
        unperturbed_hits = result.mask_counts.hits
        for spec, of, target in ((mask_spec, result.mask_counts, result.mask_moments),
                                 (noise_spec, result.noise_counts, result.noise_moments)):
            if spec and of is not None and of.hits is not None and unperturbed_hits is not None:
                # the unit of the image variance is the sample: a sample's positions average
                hits = of.hits.reshape(len(of.hits), n, -1).mean(axis=2)
                # the unperturbed model's outcomes: row 0 of the masks (the statistics run)
                base_hits = unperturbed_hits[0].reshape(n, -1).mean(axis=1)
                merge_into(target, chunk_moments(spec, hits, base_hits))
        for of in (result.mask_counts, result.noise_counts):
            if of is not None:
                of.hits = None
