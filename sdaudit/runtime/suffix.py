"""Running a set of configurations through the suffix sessions on one chunk.

* Several configurations are stacked in one batch (the cut tiled, one control row per sample),
  until a run holds about STACK_ROWS rows or the tiled cut STACK_BYTES.
* A run that fails for memory halves the stack and goes on (remembered for later chunks).
* With CUDA, each chunk's cut is copied to the device once and bound (IO binding) for all its
  configurations; only the small control rows travel per run.
* ``precision="fp16"``: the first chunk checks that the fp16 sweep suffix changes at most
  FP16_TOLERANCE of the unablated predictions (else the sweep goes back to fp32).
* Noise: one standard-normal draw per chunk and draw, keyed by (seed, chunk, draw) and shared by
  every noise level of that draw (common random numbers).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import InternalError, ModelError
from sdaudit.runtime.counts import SweepCounts

if TYPE_CHECKING:
    from sdaudit.analysis.metrics import Metric, Reference
    from sdaudit.model.layers import LayerInfo
    from sdaudit.rewrite.instrument import InstrumentedModel
    from sdaudit.runtime.variants import Level, Sessions, Variants

Progress = Callable[[str, int, int], None]
# Stack configurations only until a run holds about this many rows (per-row cost is flat beyond,
# and the memory of intermediate activations grows with it) or the tiled cut this many bytes.
STACK_ROWS = 256
STACK_BYTES = 32 << 20
# fp16 is kept only if it changes at most this fraction of the unablated predictions.
FP16_TOLERANCE = 0.005


def out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(k in text for k in ("failed to allocate memory", "bad_alloc", "bad allocation",
                                   "out of memory"))


def group_size(cut: dict[str, np.ndarray], n: int, configs: int) -> int:
    """How many configurations one run stacks on a chunk of ``n`` samples."""
    per_sample = sum(v.nbytes for v in cut.values()) / max(n, 1)
    by_bytes = int(STACK_BYTES // max(per_sample * n, 1))
    by_rows = STACK_ROWS // max(n, 1)
    return max(1, min(configs, by_bytes, by_rows))


def assign_levels(levels: tuple[Level, ...], offsets: np.ndarray,
                  masks: np.ndarray) -> list[tuple[Level, np.ndarray]]:
    """Rows 1… of ``masks`` by the suffix level they run from: the last level starting at or
    before the first layer the row perturbs."""
    rows = masks[1:]
    if len(rows) == 0:
        return []
    perturbed = np.stack([(rows[:, lo:hi] != 1).any(axis=1)
                          for lo, hi in itertools.pairwise(offsets)], axis=1)
    first = np.where(perturbed.any(axis=1), perturbed.argmax(axis=1), 0)
    starts = np.array([level.first for level in levels])
    which = np.searchsorted(starts, first, side="right") - 1
    return [(level, 1 + np.flatnonzero(which == i)) for i, level in enumerate(levels)
            if (which == i).any()]


@dataclass
class Job:
    """Configurations of one chunk that run through one suffix session."""

    session: Any
    inst: InstrumentedModel  # the variant whose control inputs the session takes
    masks: np.ndarray  # [m, U]
    noise_sd: np.ndarray | None  # [m, U] or None
    counts: SweepCounts
    rows: np.ndarray  # [m] the configurations' rows in ``counts``
    draw: int | None  # the noise draw fed to this job as an input (None: none, or in-graph)
    first: int  # the first selected layer the session instruments
    cut: dict[str, np.ndarray]


class SuffixRunner:
    """Runs jobs of configurations on chunks; remembers stack limits and fp16's verdict."""

    def __init__(self, variants: Variants, sessions: Sessions, layers: list[LayerInfo],
                 offsets: np.ndarray, notes: list[str], *, io_binding: bool,
                 device_type: str, seed: int) -> None:
        self.variants = variants
        self.sessions = sessions
        self.layers = layers
        self.offsets = offsets
        self.units = int(offsets[-1])
        self.notes = notes
        self.io_binding = io_binding
        self.device_type = device_type
        self.seed = seed
        self.group_cap: int | None = None  # configurations per run after an out-of-memory
        # Configurations stack along axis 0 of the cut: only where every cut tensor's batch
        # axis is proven to be 0 (a sequence-first [L, N, C] cut runs one configuration a run).
        self.stackable = True
        self.fp16_changed: float | None = None  # share of predictions fp16 changed (chunk 1)

    def controls(self, split_inst: InstrumentedModel, masks: np.ndarray, n: int,
                 noise_sd: np.ndarray | None = None, unit_mean: np.ndarray | None = None,
                 first: int = 0) -> dict[str, np.ndarray]:
        """Per-sample control rows for a group of configurations: [g·n, C] per layer.

        ``masks`` rows cover every selected unit; ``split_inst`` instruments the selected
        layers from ``first`` on (a suffix level), which get their columns.
        """
        g = masks.shape[0]
        feeds: dict[str, np.ndarray] = {}

        def rows(values: np.ndarray) -> np.ndarray:
            return values if g == 1 else np.repeat(values, n, axis=0)

        for i in range(first, len(self.layers)):
            lo, hi = self.offsets[i], self.offsets[i + 1]
            j = i - first
            feeds[split_inst.mask_inputs[j]] = rows(masks[:, lo:hi])
            if split_inst.fill_inputs:
                mean = unit_mean if unit_mean is not None else np.zeros(self.units, np.float32)
                feeds[split_inst.fill_inputs[j]] = rows(((1.0 - masks) * mean)[:, lo:hi])
            if split_inst.noise_inputs:
                sd = noise_sd if noise_sd is not None else np.zeros_like(masks)
                feeds[split_inst.noise_inputs[j]] = rows(sd[:, lo:hi])
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()}

    def runner(self, sess: Any, tiled: dict[str, np.ndarray],
               rows: int) -> Callable[[int, dict[str, np.ndarray]], np.ndarray]:
        """``run(g, controls)``: the suffix on the first ``g · rows`` rows of the tiled cut.

        With IO binding the cut goes to the session's device once per chunk (and group size),
        not once per configuration; the control rows are bound from host memory at each run.
        """
        output = self.variants.output
        if not self.io_binding:
            def run(g: int, controls: dict[str, np.ndarray]) -> np.ndarray:
                feeds = {name: v[: g * rows] for name, v in tiled.items()}
                return np.asarray(sess.run([output], {**feeds, **controls})[0])

            return run
        from sdaudit.ort import _ort

        ort = _ort()
        bound: dict[int, tuple[Any, list[Any]]] = {}

        def run_bound(g: int, controls: dict[str, np.ndarray]) -> np.ndarray:
            if g not in bound:
                binding = sess.io_binding()
                values = []
                for name, v in tiled.items():
                    value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v[: g * rows]),
                                                             self.device_type, 0)
                    binding.bind_ortvalue_input(name, value)
                    values.append(value)  # the binding does not own them: keep them alive
                binding.bind_output(output, "cpu")
                bound[g] = (binding, values)
            binding = bound[g][0]
            for name, arr in controls.items():
                binding.bind_cpu_input(name, arr)
            sess.run_with_iobinding(binding)
            return np.asarray(binding.copy_outputs_to_cpu()[0])

        return run_bound

    def check_fp16(self, cut: dict[str, np.ndarray], n: int, reference: np.ndarray,
                   metric: Metric) -> None:
        """Run the unablated model through the fp16 suffix on this chunk; keep fp16 only if it
        changes at most FP16_TOLERANCE of the metric's items against the fp32 output
        ``reference`` (predictions; for relative metrics, the mean relative change)."""
        rows = self.variants.fixed_batch or n
        ones = np.ones((1, self.units), dtype=np.float32)
        out = self.sessions.sweep.run([self.variants.output], {
            **cut, **self.controls(self.variants.sweep, ones, rows)})[0][:n]
        ref = metric.reference(reference)
        if ref.flat is None:
            changed = float(np.mean(metric.reference(out).pred != ref.pred)) if n else 0.0
        else:
            counts = SweepCounts.zeros(1, 1)
            metric.accumulate(counts, np.arange(1), out, 1, ref.pred, ref)
            changed = float(1.0 - counts.correct[0] / max(n, 1))
        self.fp16_changed = changed
        if changed > FP16_TOLERANCE:
            self.notes.append(
                f"--precision fp16 changed {100 * changed:.1f} % of the unablated model's "
                f"predictions on the first chunk (limit {100 * FP16_TOLERANCE:.1f} %); the sweep "
                "ran in fp32")
            self.sessions.set_precision("fp32")

    def check_neutral(self, unperturbed: dict[str, np.ndarray], n: int,
                      reference: np.ndarray) -> None:
        """Post-condition of the sweep's variants (instrumented without running the pass's own
        check): on this chunk, every suffix the sweep runs — the sweep suffix, each later level,
        the noise suffix — with neutral controls (every unit kept, no noise) gives the
        statistics run's outputs ``reference`` (that variant's rewrite was checked), within
        :func:`~sdaudit.rewrite.instrument.equivalence_tolerance` scaled by the outputs'
        magnitude. fp16 suffixes are checked on predictions instead (:meth:`check_fp16`)."""
        from sdaudit.errors import RewriteError
        from sdaudit.rewrite.instrument import equivalence_tolerance

        if self.sessions.precision != "fp32":
            return
        v = self.variants
        rows = v.fixed_batch or n
        ones = np.ones((1, self.units), dtype=np.float32)
        ref = np.asarray(reference, dtype=np.float64)
        finite = np.isfinite(ref)  # non-finite outputs are the statistics pass's to report
        scale = float(np.abs(ref[finite]).max()) if finite.any() else 1.0
        atol = equivalence_tolerance(v.stats.model) * max(1.0, scale)
        checks = [(f"suffix from layer {level.first}", self.sessions.level(level), level.inst,
                   level.first, {name: unperturbed[name] for name in level.split.cut})
                  for level in v.levels]
        if v.noise is not None and self.sessions.noise is not None:
            checks.append(("noise suffix", self.sessions.noise, v.noise, 0,
                           {name: unperturbed[name] for name in v.noise_split.cut}
                           if v.noise_split is not None else {}))
        for what, session, inst, first, cut in checks:
            feeds = {**cut, **self.controls(inst, ones, rows, np.zeros_like(ones), None, first)}
            if inst.eps_inputs:
                feeds.update({name: np.zeros((rows, *value.shape[1:]), np.float32)
                              for name, value in self.draw_eps(1, 0, 0).items()})
            out = np.asarray(session.run([v.output], feeds)[0])[:n]
            gap = np.abs(out.astype(np.float64) - ref)[finite]
            worst = float(gap.max()) if gap.size else 0.0
            if not worst <= atol:
                raise RewriteError(
                    f"the sweep's {what} does not reproduce the model with every unit kept "
                    f"(max difference {worst:.3g} > {atol:.3g})",
                    "report this model to sdaudit's maintainers; --layers may avoid the layer")

    def draw_eps(self, rows: int, chunk: int, draw: int) -> dict[str, np.ndarray]:
        """One standard-normal draw per noise layer, ``rows`` samples, for draw ``draw`` of
        chunk ``chunk``: keyed by (seed, chunk, draw), so the same wherever and whenever the
        chunk runs (a resumed or distributed sweep draws what an uninterrupted one does)."""
        noise = self.variants.noise
        if noise is None or not noise.eps_inputs:  # pragma: no cover - invariant
            return {}
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, chunk, draw]))
        draws = {}
        for layer, name in zip(self.layers, noise.eps_inputs, strict=True):
            dims = [d for d in layer.shape[1:] if isinstance(d, int)]
            if len(dims) != len(layer.shape) - 1:  # pragma: no cover - input noise needs them
                raise InternalError(f"noise input {name!r} without a known shape")
            draws[name] = rng.standard_normal((rows, *dims), dtype=np.float32)
        return draws

    def jobs(self, masks: np.ndarray, noise_sd: np.ndarray, noise_draw: np.ndarray | None,
             skip: np.ndarray, cut: dict[str, np.ndarray], unperturbed: dict[str, np.ndarray],
             mask_counts: SweepCounts, noise_counts: SweepCounts | None) -> list[Job]:
        """The jobs of one chunk: mask rows 1… not in ``skip`` by suffix level, then the noise
        rows (one job per draw where the draw is an input)."""
        jobs: list[Job] = []
        for level, assigned in assign_levels(self.variants.levels, self.offsets, masks):
            idx = assigned[~np.isin(assigned, skip)]
            if len(idx) == 0:
                continue
            level_cut = cut if level.first == 0 else {
                name: unperturbed[name] for name in level.split.cut}
            jobs.append(Job(self.sessions.level(level), level.inst, masks[idx], None,
                            mask_counts, idx, None, level.first, level_cut))
        noise = self.variants.noise
        if noise_counts is not None and noise is not None:
            ones = np.ones_like(noise_sd)
            if not noise.eps_inputs:
                jobs.append(Job(self.sessions.noise, noise, ones, noise_sd, noise_counts,
                                np.arange(len(noise_sd)), None, 0, cut))
            else:
                draws = (np.arange(len(noise_sd)) if noise_draw is None
                         else np.asarray(noise_draw))
                _, first_seen = np.unique(draws, return_index=True)
                for d in draws[np.sort(first_seen)]:
                    idx = np.flatnonzero(draws == d)
                    jobs.append(Job(self.sessions.noise, noise, ones[idx], noise_sd[idx],
                                    noise_counts, idx, int(d), 0, cut))
        return jobs

    def run(self, job: Job, chunk: int, n: int, y: np.ndarray, ref: Reference, metric: Metric,
            unit_mean: np.ndarray | None, step: Callable[[int], None] | None) -> None:
        """Run ``job`` on chunk ``chunk`` of ``n`` samples (``y``: the metric's targets), adding
        to its counts through ``metric``; ``step(rows)`` after each run."""
        fixed = self.variants.fixed_batch
        rows = fixed or n
        m = len(job.masks)
        job_cut = (job.cut if job.draw is None else
                   {**job.cut, **self.draw_eps(rows, chunk, job.draw)})
        g_max = 1 if fixed or not self.stackable else group_size(job_cut, n, m)
        if self.group_cap is not None:
            g_max = min(g_max, self.group_cap)
        tiled = {name: (v if g_max == 1 else np.concatenate([v] * g_max))
                 for name, v in job_cut.items()}
        run_suffix = self.runner(job.session, tiled, rows)
        start = 0
        while start < m:
            stop = min(start + g_max, m)
            g = stop - start
            try:
                out = run_suffix(g, self.controls(
                    job.inst, job.masks[start:stop], rows,
                    None if job.noise_sd is None else job.noise_sd[start:stop], unit_mean,
                    job.first))
            except Exception as exc:
                if not out_of_memory(exc):
                    raise
                if g_max == 1:
                    raise ModelError(
                        "out of memory running one configuration on a chunk of "
                        f"{rows} samples", "lower --chunk-size") from None
                g_max = max(1, g_max // 2)
                self.group_cap = g_max  # later chunks and jobs start there
                run_suffix = self.runner(job.session, tiled, rows)  # frees bound copies
                self.notes.append(f"ran out of memory with {g} configurations per run; "
                                  f"went on with {g_max}")
                continue
            if fixed:
                out = out[:n]
            metric.accumulate(job.counts, job.rows[start:stop], out, g, y, ref)
            if step:
                step(g * n)
            start = stop
