"""The streaming sweep engine: do only the work that must be done.

* Data arrive in chunks; memory does not grow with the number of samples.
* Per chunk, the prefix (everything no control can change) runs once; each configuration runs
  only the suffix, with its masks fed as inputs: no session is rebuilt during a sweep.
* A configuration that leaves the first k selected layers intact (one layer alone, one unit)
  runs only the suffix from layer k: its cut comes from the unperturbed statistics run.
* Several configurations are stacked in one batch (the cut tiled, one mask row per sample).
* With CUDA, each chunk's cut is copied to the device once and bound (IO binding) for all its
  configurations; only the small control rows travel per run.
* ``precision="fp16"`` runs the sweep suffix in half precision, after checking on the first
  chunk that it changes at most 0.5 % of the unablated model's predictions (else fp32).
* Per configuration only counts and sums are kept (:class:`SweepCounts`), which merge by
  addition: a chunk × a set of configurations is a self-contained unit of work.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import DataError, ModelError, RewriteError

if TYPE_CHECKING:
    from sdaudit.data.base import Dataset
    from sdaudit.model.layers import LayerInfo
    from sdaudit.model.load import LoadedModel
    from sdaudit.rewrite.instrument import InstrumentedModel
    from sdaudit.rewrite.split import SplitModel
    from sdaudit.runtime.session import RuntimeInfo

Progress = Callable[[str, int, int], None]
# Stack configurations until the tiled cut reaches about this many bytes or rows.
# Stack configurations only until a run holds about this many rows (per-row cost is flat beyond,
# and the memory of intermediate activations grows with it) or the tiled cut this many bytes.
STACK_ROWS = 256
STACK_BYTES = 32 << 20
# fp16 is kept only if it changes at most this fraction of the unablated predictions.
FP16_TOLERANCE = 0.005
# At most this many suffix levels (each its own session): with more selected layers, levels
# start at evenly spaced layers and a configuration runs from the last level at or before its
# first perturbed layer.
MAX_LEVELS = 8
LEVEL_BYTES = 512 << 20
# Pruned suffixes (zero ablation): a configuration runs pruned where its convolutions and
# products need at most this share of the masked suffix's multiply-adds; at most PRUNE_BYTES of
# pruned weights per pass, fused into sessions of at most PRUNE_SESSION configurations.
PRUNE_MAX_COST = 0.9
PRUNE_MIN_ABLATED = 0.05  # configurations ablating less of their layers' units are not tried
PRUNE_BYTES = 256 << 20
PRUNE_SESSION = 48
PRUNE_SESSION_BYTES = 64 << 20
# Planned only where the expected saving (the multiply-adds saved × the unperturbed suffix's
# time over the whole data × PRUNE_REALIZED, the share of the saving that shows up as time:
# 0.9 on the reference ResNet-20, 0.4 on PP-LCNet) is PRUNE_PAYBACK × the estimated build time
# (emission + session ≈ PRUNE_BUILD × the emission of one branch: about 4.7 on the ResNet-20,
# about 3 on PP-LCNet; emission timed on the first three branches).
PRUNE_REALIZED = 0.5
PRUNE_PAYBACK = 2.0
PRUNE_BUILD = 5.0
# Kept after the first chunk only where the fused run took at most this share of the masked
# runs it replaces (one masked run of its first configuration × its configurations; stacked
# masked runs cost somewhat less per configuration than that single run).
PRUNE_KEEP = 0.8
# The first chunk checks a fused session's first and last branch against the masked suffix.
PRUNE_RTOL = {"fp32": 1e-4, "fp16": 2e-2}


@dataclass
class _Level:
    """The suffix that starts at selected layer ``first`` (level 0: the first layer)."""

    first: int
    inst: InstrumentedModel
    split: SplitModel
    session: Any = None  # built on first use


class _NotWorthItError(Exception):
    """Pruning would cost more to build than it saves (planning stops, nothing is pruned)."""


def _first_line(exc: BaseException) -> str:
    from sdaudit.errors import first_line

    return first_line(exc, 160)


@dataclass
class _Fused:
    """Pruned suffixes of several configurations in one session (see rewrite.prune)."""

    level: _Level
    session: Any
    rows: np.ndarray  # the configurations (mask rows) it runs, one output each
    outputs: list[str]
    checked: bool = False


@dataclass
class UnitStats:
    """Additive statistics of the unablated model over a data set (float64 sums)."""

    n: int
    correct: float
    loss: float
    class_counts: np.ndarray  # [K]
    class_correct: np.ndarray  # [K]
    unit_sum: np.ndarray  # [U] sums of spatial means
    unit_sumsq: np.ndarray  # [U] sums of squared spatial means
    unit_elem_sq: np.ndarray  # [U] sums of spatial means of squares
    unit_min: np.ndarray  # [U]
    unit_max: np.ndarray  # [U]
    class_sums: np.ndarray  # [K, U]
    nonfinite: int = 0

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def mean(self) -> np.ndarray:
        return self.unit_sum / max(self.n, 1)

    @property
    def sd(self) -> np.ndarray:
        """s.d. over samples of each unit's spatial mean."""
        return np.sqrt(np.maximum(self.unit_sumsq / max(self.n, 1) - self.mean**2, 0.0))

    @property
    def elem_sd(self) -> np.ndarray:
        """s.d. over samples and positions of each unit's activation (scales the noise)."""
        return np.sqrt(np.maximum(self.unit_elem_sq / max(self.n, 1) - self.mean**2, 0.0))


@dataclass
class SweepCounts:
    """Per-configuration counts; ``merge`` adds two of them (chunks, machines)."""

    n: int
    correct: np.ndarray  # [M]
    loss: np.ndarray  # [M]
    agree: np.ndarray  # [M] predictions equal to the unperturbed model's
    kl: np.ndarray  # [M] KL(unperturbed output ‖ perturbed output), summed over samples (nats)
    class_correct: np.ndarray  # [M, K]
    class_counts: np.ndarray  # [K]

    @classmethod
    def zeros(cls, configs: int, classes: int) -> SweepCounts:
        return cls(0, np.zeros(configs), np.zeros(configs), np.zeros(configs), np.zeros(configs),
                   np.zeros((configs, classes)), np.zeros(classes))

    def merge(self, other: SweepCounts) -> SweepCounts:
        return SweepCounts(self.n + other.n, self.correct + other.correct, self.loss + other.loss,
                           self.agree + other.agree, self.kl + other.kl,
                           self.class_correct + other.class_correct,
                           self.class_counts + other.class_counts)

    def take(self, rows: np.ndarray) -> SweepCounts:
        """The counts of configurations ``rows`` (repeats allowed)."""
        return SweepCounts(self.n, self.correct[rows], self.loss[rows], self.agree[rows],
                           self.kl[rows], self.class_correct[rows], self.class_counts)

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()}


@dataclass(frozen=True)
class Configs:
    """Configurations of one sweep: rows over the pooled units of the selected layers.

    ``masks`` [M, U] for the mask-only suffix (row 0 must be all ones: the unperturbed model,
    whose predictions define agreement); ``noise_sd`` [Q, U] for the noise suffix.
    """

    masks: np.ndarray
    noise_sd: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    # [Q] the draw of each noise row: rows of one draw share one standard-normal draw per chunk
    # (common random numbers across noise levels). None: every row its own draw.
    noise_draw: np.ndarray | None = None


@dataclass(frozen=True)
class HistSpec:
    """Equal-width bins of each unit's spatial mean between ``lo`` and ``hi`` (per unit)."""

    lo: np.ndarray
    hi: np.ndarray
    bins: int


@dataclass
class PassResult:
    """What one pass over the data produced (each part only where it was asked for)."""

    stats: UnitStats | None = None
    hist: np.ndarray | None = None  # [U, bins, K] counts
    mask_counts: SweepCounts | None = None
    noise_counts: SweepCounts | None = None


def _log_probs(out: np.ndarray, probabilities: bool) -> np.ndarray:
    """Log class probabilities of each row of ``out`` (logits, or probabilities already)."""
    if probabilities:
        return np.log(np.clip(out.astype(np.float64), 1e-12, None))
    z = out.astype(np.float64)
    top = z.max(axis=-1, keepdims=True)
    return z - (top + np.log(np.exp(z - top).sum(axis=-1, keepdims=True)))



def _unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rows in order of first appearance, and for each row the index of its twin."""
    if len(rows) == 0:
        return rows, np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)  # unique rows as they first appear: row 0 stays first
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rows[first[order]], rank[inverse.reshape(-1)]


def _out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(k in text for k in ("failed to allocate memory", "bad_alloc", "bad allocation",
                                   "out of memory"))


def _accumulate(counts: SweepCounts, rows: np.ndarray, logp: np.ndarray, pred: np.ndarray,
                y: np.ndarray, base_pred: np.ndarray, base_logp: np.ndarray,
                base_p: np.ndarray | None = None) -> None:
    """Add one group's results ([g, n, K] log-probabilities, [g, n] predictions) to ``counts``
    rows ``rows`` (g distinct indices).

    ``base_p``: ``exp(base_logp)``, passed in when the caller has it for the whole chunk.
    """
    n = len(y)
    hit = pred == y[None, :]
    counts.correct[rows] += hit.sum(axis=1)
    counts.loss[rows] += np.nansum(-logp[:, np.arange(n), y], axis=1)
    counts.agree[rows] += (pred == base_pred[None, :]).sum(axis=1)
    if base_p is None:
        base_p = np.exp(base_logp)
    counts.kl[rows] += np.nansum(base_p[None] * (base_logp[None] - logp), axis=(1, 2))
    k = counts.class_correct.shape[1]
    for i, row in enumerate(rows):
        counts.class_correct[row] += np.bincount(y[hit[i]], minlength=k)[:k]


class Engine:
    """Sessions for one model and layer selection; runs the passes of an audit."""

    def __init__(self, loaded: LoadedModel, layers: list[LayerInfo], *, device: str = "auto",
                 threads: int | None = None, ablation_value: str = "zero", noise: bool = True,
                 seed: int = 0, chunk_size: int = 256, output: str | None = None,
                 precision: str = "fp32", io_binding: bool | None = None,
                 levels: bool = True, prune: bool | None = None) -> None:
        from sdaudit.config import PRECISIONS
        from sdaudit.rewrite.batch import free_batch, has_fixed_batch
        from sdaudit.rewrite.instrument import instrument
        from sdaudit.rewrite.split import split
        from sdaudit.runtime.session import make_session, runtime_info, usable_cores

        if precision not in PRECISIONS:
            from sdaudit.errors import BadFlagError

            raise BadFlagError(f"--precision {precision}: unknown precision",
                               "choose fp32 or fp16")
        self.notes: list[str] = []
        model = loaded.proto
        if len(loaded.inputs) != 1:
            raise ModelError(
                f"the model has {len(loaded.inputs)} inputs; scan audits single-input classifiers",
                "export a model that takes one input tensor",
            )
        # Where the graph hard-codes its batch size, run chunks of exactly that size (the last
        # one padded) and stack no configurations.
        self.fixed_batch: int | None = None
        if has_fixed_batch(model):
            try:
                model = free_batch(model)
            except ModelError:
                self.fixed_batch = int(model.graph.input[0].type.tensor_type.shape.dim[0].dim_value)
                chunk_size = self.fixed_batch
        self.layers = list(layers)
        self.offsets = np.cumsum([0] + [layer.channels for layer in layers])
        self.units = int(self.offsets[-1])
        self.chunk_size = chunk_size
        self.ablation_value = ablation_value
        self.input_name = loaded.inputs[0].name
        out_names = [o.name for o in loaded.outputs]
        self.output = output or out_names[0]
        if self.output not in out_names:
            raise ModelError(f"--output {self.output!r} is not an output of the model",
                             f"outputs: {', '.join(out_names)}")
        fill = ablation_value == "mean"
        self._stats: InstrumentedModel = instrument(model, layers, noise=False, stats=True,
                                                    fill=fill, seed=seed)
        self._sweep = instrument(model, layers, noise=False, stats=False, fill=fill, seed=seed,
                                 verify=False)
        self._noise: InstrumentedModel | None = None
        if noise:
            # The noise's standard-normal draw as an input, drawn once per chunk and draw and
            # shared by every noise level (common random numbers: one draw costs more than a run
            # of the suffix); in-graph draws per run where a layer's shape is not fully known.
            try:
                self._noise = instrument(model, layers, noise=True, stats=False, seed=seed,
                                         verify=False, noise_source="input")
            except RewriteError:
                self._noise = instrument(model, layers, noise=True, stats=False, seed=seed,
                                         verify=False)
        self._sweep_split = split(self._sweep, (self.output,))
        # Later suffix levels, and the tensors their cuts need from the statistics run.
        self._levels: list[_Level] = [_Level(0, self._sweep, self._sweep_split)]
        if levels and len(layers) > 1:
            import onnx

            count = len(layers)
            # Each level holds a copy of its suffix: at most MAX_LEVELS, and no more than
            # LEVEL_BYTES of model copies in all (a big model gets fewer, evenly spaced levels).
            wanted = min(count, MAX_LEVELS,
                         1 + int(LEVEL_BYTES // max(model.ByteSize(), 1)))
            firsts = (range(1, count) if count <= wanted else
                      sorted({round(i * count / wanted) for i in range(1, wanted)}))
            for first in firsts:
                inst = instrument(model, layers[first:], noise=False, stats=False, fill=fill,
                                  seed=seed, verify=False)
                try:
                    part = split(inst, (self.output,))
                except RewriteError:  # these layers do not reach the output (another head's)
                    continue
                # Keep names and the suffix only: the full copies are not needed again.
                self._levels.append(_Level(first, replace(inst, model=onnx.ModelProto()),
                                           replace(part, prefix=None)))
        self._level_outputs = tuple(dict.fromkeys(
            name for level in self._levels[1:] for name in level.split.cut
            if name not in self._sweep_split.cut))
        stat_outputs = self._stats.mean_outputs + self._stats.sqmean_outputs
        try:
            self._stats_split: SplitModel = split(
                self._stats, (self.output, *stat_outputs, *self._level_outputs))
        except RewriteError:  # pragma: no cover - a later cut the statistics run cannot give
            self._levels, self._level_outputs = self._levels[:1], ()
            self._stats_split = split(self._stats, (self.output, *stat_outputs))
        self._noise_split = split(self._noise, (self.output,)) if self._noise else None
        self.threads = threads or usable_cores()
        self._prefix = (make_session(self._stats_split.prefix.SerializeToString(), device,
                                     self.threads, spin=False) if self._stats_split.prefix else None)
        self._stats_sess = make_session(self._stats_split.suffix.SerializeToString(), device,
                                        self.threads, spin=False)
        self.device = device
        self.precision = precision
        self.fp16_changed: float | None = None  # share of predictions fp16 changed (chunk 1)
        self._sweep_sess, self._noise_sess = self._sweep_sessions(precision)
        self._group_cap: int | None = None  # configurations per run after an out-of-memory
        # Pruned suffixes for zero ablation: planned per pass on its first chunk.
        # None: where it pays (expected saving against build time, then the first chunk's
        # timing); True: every zero-ablation configuration that can be pruned; False: never.
        self.prune = prune is not False and ablation_value == "zero"
        self._prune_always = prune is True
        self._pruners: dict[int, Any] = {}
        self._plan: list[_Fused] | None = None
        self.pruned_configs = 0  # configurations that ran pruned, over all passes
        self._suffix_s = 0.0  # one unperturbed suffix run per sample (last chunk)
        self._pass_samples = 0
        self._eps_sess = None
        if self._noise is not None and not self._noise.eps_inputs:
            self.notes.append("a noise layer's shape is not fully known: every noise run draws "
                              "afresh (no draw shared across noise levels)")
        if self._noise is not None and self._noise.eps_inputs:
            from sdaudit.rewrite.instrument import noise_generator

            self._eps_sess = make_session(noise_generator(self._noise, seed).SerializeToString(),
                                          device, self.threads, spin=False)
        self._runtime: RuntimeInfo = runtime_info(self._stats_sess, device, self.threads)
        on_cuda = self._runtime.provider == "CUDAExecutionProvider"
        self.io_binding = on_cuda if io_binding is None else io_binding
        self._device_type = "cuda" if on_cuda else "cpu"
        self.cut = self._stats_split.cut
        for other in (self._sweep_split, self._noise_split):
            if other is not None and other.cut != self.cut:  # pragma: no cover - invariant
                from sdaudit.errors import InternalError

                raise InternalError("instrumented variants disagree on the prefix cut")
        self.probabilities: bool | None = None
        self.num_classes: int | None = None
        out_spec = next(o for o in loaded.outputs if o.name == self.output)
        if out_spec.shape and len(out_spec.shape) == 2 and isinstance(out_spec.shape[1], int):
            self.num_classes = out_spec.shape[1]

    def _suffix_session(self, part: SplitModel, precision: str) -> Any:
        """A session of ``part``'s suffix in ``precision``."""
        return self._model_session(part.suffix, precision)

    def _model_session(self, model: Any, precision: str, arena: bool = True) -> Any:
        from sdaudit.runtime.session import make_session

        if precision == "fp16":
            from sdaudit.rewrite.precision import to_fp16

            model = to_fp16(model)
        return make_session(model.SerializeToString(), self.device, self.threads, arena=arena)

    def _sweep_sessions(self, precision: str) -> tuple[Any, Any]:
        """Sessions of the sweep and noise suffixes, in ``precision``."""
        for level in self._levels[1:]:
            level.session = None  # rebuilt on first use, in the precision now in force
        noise = (self._suffix_session(self._noise_split, precision)
                 if self._noise_split is not None else None)
        return self._suffix_session(self._sweep_split, precision), noise

    def _level_session(self, level: _Level) -> Any:
        if level.first == 0:
            return self._sweep_sess
        if level.session is None:
            level.session = self._suffix_session(level.split, self.precision)
        return level.session

    @property
    def runtime(self) -> RuntimeInfo:
        return replace(self._runtime, precision=self.precision, io_binding=self.io_binding,
                       prune=self.prune, pruned_configs=self.pruned_configs)

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
            if not _out_of_memory(exc) or self.fixed_batch:
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
        if self._prefix is not None:
            names = list(self._stats_split.prefix_outputs)
            cut.update(zip(names, self._prefix.run(names, {self.input_name: x}), strict=True))
        if self.input_name in self.cut:
            cut[self.input_name] = x
        return cut

    def _controls(self, split_inst: InstrumentedModel, masks: np.ndarray, n: int,
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

    def _check_output(self, out: np.ndarray, y: np.ndarray) -> None:
        if out.ndim != 2:
            raise ModelError(
                f"output {self.output!r} has shape {list(out.shape)}; scan needs class scores "
                "[batch, classes]", "choose the logits output with --output",
            )
        if self.num_classes is None:
            self.num_classes = out.shape[1]
        if out.shape[1] < 2:
            raise ModelError(f"output {self.output!r} has one column: not a classifier")
        if len(y) and y.max() >= out.shape[1]:
            raise DataError(
                f"labels go up to {int(y.max())} but the model has {out.shape[1]} classes",
                "labels must be class indices in the model's output order",
            )
        if self.probabilities is None:
            finite = out[np.isfinite(out).all(axis=1)]
            self.probabilities = bool(
                len(finite) and finite.min() >= 0 and finite.max() <= 1
                and np.allclose(finite.sum(axis=1), 1.0, atol=1e-3)
            )

    # -- passes ------------------------------------------------------------------------------
    def _new_stats(self, k: int) -> UnitStats:
        u = self.units
        return UnitStats(0, 0.0, 0.0, np.zeros(k), np.zeros(k), np.zeros(u), np.zeros(u),
                         np.zeros(u), np.full(u, np.inf), np.full(u, -np.inf), np.zeros((k, u)))

    def run_pass(self, data: Dataset, *, stats: bool = False, hist: HistSpec | None = None,
                 configs: Configs | None = None, unit_mean: np.ndarray | None = None,
                 progress: Progress | None = None, phase: str = "pass",
                 calibrated: Callable[[dict[str, float]], None] | None = None) -> PassResult:
        """One pass over the data, doing per chunk everything that was asked for.

        ``stats``/``hist``: run the unperturbed model with its statistics outputs (unit
        statistics; the joint histogram of binned unit means and class). ``configs``: run every
        configuration (suffix only, stacked). The prefix runs once per chunk for all of it.
        """
        from sdaudit.rewrite.instrument import neutral_controls

        result = PassResult()
        self._plan = None
        self._pass_samples = data.num_samples
        expand: np.ndarray | None = None
        planned = 0 if configs is None else len(configs.masks) + len(configs.noise_sd)
        if configs is not None:
            # Identical masks (every draw's fraction 0, say) give identical results: run each once.
            unique, expand = _unique_rows(configs.masks)
            configs = Configs(unique, configs.noise_sd, configs.noise_draw)
        ctl = neutral_controls(self._stats, 1)
        unit_idx = np.arange(self.units)
        total = data.num_samples * (1 + (0 if configs is None else
                                         len(configs.masks) + len(configs.noise_sd)))
        done = 0
        chunks_seen = 0
        pending_rate: dict[str, float] | None = None
        for x, labels in data.chunks(self.chunk_size):
            n = len(labels)
            t0 = time.perf_counter()
            cut = self._run_prefix(x)
            t1 = time.perf_counter()
            base: tuple[np.ndarray, np.ndarray] | None = None
            # The cut tensors of later suffix levels come out of the statistics run (padded rows
            # kept: the suffixes run on the padded chunk).
            extra = list(self._level_outputs) if configs is not None else []
            level_cut: dict[str, np.ndarray] = {}
            want_units = stats or hist is not None
            if want_units or configs is not None:
                # One run serves the statistics, the histogram and the sweep's unperturbed row
                # (always from this fp32 session).
                names = [self.output, *self._stats.mean_outputs, *self._stats.sqmean_outputs] \
                    if want_units else [self.output]
                t_run = time.perf_counter()
                raw = self._stats_sess.run([*names, *extra], {**cut, **ctl})
                # the cost of one unperturbed suffix run, per sample (pruning's break-even)
                self._suffix_s = (time.perf_counter() - t_run) / max(n, 1)
                level_cut = dict(zip(extra, raw[len(names):], strict=True))
                outs = [o[:n] for o in raw[:len(names)]]
                out = outs[0]
                self._check_output(out, labels if n and labels[0] >= 0 else labels[:0])
                pred = np.argmax(out, axis=1)
                logp = _log_probs(out, bool(self.probabilities))
                if want_units:
                    y = labels if n and labels[0] >= 0 else pred
                    means = np.concatenate(
                        [o.astype(np.float64) for o in outs[1:1 + len(self.layers)]], axis=1)
                    if stats:
                        if result.stats is None:
                            result.stats = self._new_stats(int(self.num_classes or out.shape[1]))
                        sqmeans = np.concatenate(
                            [o.astype(np.float64) for o in outs[1 + len(self.layers):]], axis=1)
                        self._add_stats(result.stats, out, pred, logp, y, means, sqmeans)
                    if hist is not None:
                        k = int(self.num_classes or out.shape[1])
                        if result.hist is None:
                            result.hist = np.zeros((self.units, hist.bins, k), dtype=np.int64)
                        from sdaudit.analysis.selectivity import bin_index

                        b = bin_index(means, hist.lo, hist.hi, hist.bins)
                        flat = (unit_idx[None, :] * hist.bins + b) * k + y[:, None]
                        result.hist += np.bincount(flat.ravel(),
                                                   minlength=result.hist.size).reshape(
                            result.hist.shape)
                base = (pred, logp)
            t2 = time.perf_counter()
            done += n
            if configs is not None:
                done = self._sweep_chunk(cut, labels, configs, unit_mean, result, base, done,
                                         total, progress, phase, {**cut, **level_cut})
            t3 = time.perf_counter()
            # Rates from the second chunk: the first pays for the sessions' warm-up.
            chunks_seen += 1
            pending_rate = {"prefix_s_per_sample": (t1 - t0) / max(n, 1),
                            "stats_s_per_sample": (t2 - t1) / max(n, 1),
                            # per sample and planned configuration (duplicates included)
                            "config_s_per_sample": (t3 - t2) / max(n * planned, 1)}
            if chunks_seen == 2 and calibrated is not None:
                calibrated(pending_rate)
                pending_rate = None
            if progress:
                progress(phase, done, total)
        if chunks_seen == 1 and calibrated is not None and pending_rate is not None:
            calibrated(pending_rate)
        if result.stats is not None:
            if result.stats.n == 0:
                raise DataError(f"no usable samples in {data.path!r}",
                                "check that the data holds readable samples")
            if result.stats.nonfinite:
                raise ModelError(
                    f"the model gives NaN or infinite outputs on {result.stats.nonfinite} of "
                    f"{result.stats.n} samples of the unablated run",
                    "check the preprocessing (--mean/--std, scale) and the model",
                )
        elif done == 0:
            raise DataError(f"no usable samples in {data.path!r}",
                            "check that the data holds readable samples")
        # Configurations that ran pruned on every chunk: those still in the plan at the end.
        final: list[_Fused] = self._plan or []
        self.pruned_configs += int(sum(len(fused.rows) for fused in final))
        if result.mask_counts is not None and expand is not None:
            result.mask_counts = result.mask_counts.take(expand)
        return result

    @staticmethod
    def _add_stats(stats: UnitStats, out: np.ndarray, pred: np.ndarray, logp: np.ndarray,
                   y: np.ndarray, means: np.ndarray, sqmeans: np.ndarray) -> None:
        finite = np.isfinite(out).all(axis=1)
        stats.nonfinite += int((~finite).sum())
        loss = -logp[np.arange(len(y)), y]
        stats.n += len(y)
        stats.correct += float((pred == y).sum())
        stats.loss += float(np.nansum(loss))
        np.add.at(stats.class_counts, y, 1)
        np.add.at(stats.class_correct, y, (pred == y).astype(np.float64))
        stats.unit_sum += means.sum(axis=0)
        stats.unit_sumsq += (means**2).sum(axis=0)
        stats.unit_elem_sq += sqmeans.sum(axis=0)
        stats.unit_min = np.minimum(stats.unit_min, means.min(axis=0))
        stats.unit_max = np.maximum(stats.unit_max, means.max(axis=0))
        np.add.at(stats.class_sums, y, means)

    def _suffix_runner(self, sess: Any, tiled: dict[str, np.ndarray],
                       rows: int) -> Callable[[int, dict[str, np.ndarray]], np.ndarray]:
        """``run(g, controls)``: the suffix on the first ``g · rows`` rows of the tiled cut.

        With IO binding the cut goes to the session's device once per chunk (and group size),
        not once per configuration; the control rows are bound from host memory at each run.
        """
        if not self.io_binding:
            def run(g: int, controls: dict[str, np.ndarray]) -> np.ndarray:
                feeds = {name: v[: g * rows] for name, v in tiled.items()}
                return np.asarray(sess.run([self.output], {**feeds, **controls})[0])

            return run
        from sdaudit.runtime.session import _ort

        ort = _ort()
        bound: dict[int, tuple[Any, list[Any]]] = {}

        def run_bound(g: int, controls: dict[str, np.ndarray]) -> np.ndarray:
            if g not in bound:
                binding = sess.io_binding()
                values = []
                for name, v in tiled.items():
                    value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v[: g * rows]),
                                                             self._device_type, 0)
                    binding.bind_ortvalue_input(name, value)
                    values.append(value)  # the binding does not own them: keep them alive
                binding.bind_output(self.output, "cpu")
                bound[g] = (binding, values)
            binding = bound[g][0]
            for name, arr in controls.items():
                binding.bind_cpu_input(name, arr)
            sess.run_with_iobinding(binding)
            return np.asarray(binding.copy_outputs_to_cpu()[0])

        return run_bound

    def _check_fp16(self, cut: dict[str, np.ndarray], n: int, reference: np.ndarray) -> None:
        """Run the unablated model through the fp16 suffix on this chunk; keep fp16 only if it
        changes at most FP16_TOLERANCE of the fp32 predictions ``reference``."""
        rows = self.fixed_batch or n
        ones = np.ones((1, self.units), dtype=np.float32)
        out = self._sweep_sess.run([self.output],
                                   {**cut, **self._controls(self._sweep, ones, rows)})[0][:n]
        changed = float(np.mean(np.argmax(out, axis=1) != reference)) if n else 0.0
        self.fp16_changed = changed
        if changed > FP16_TOLERANCE:
            self.notes.append(
                f"--precision fp16 changed {100 * changed:.1f} % of the unablated model's "
                f"predictions on the first chunk (limit {100 * FP16_TOLERANCE:.1f} %); the sweep "
                "ran in fp32")
            self.precision = "fp32"
            self._sweep_sess, self._noise_sess = self._sweep_sessions("fp32")

    def _group_size(self, cut: dict[str, np.ndarray], n: int, configs: int) -> int:
        per_sample = sum(v.nbytes for v in cut.values()) / max(n, 1)
        by_bytes = int(STACK_BYTES // max(per_sample * n, 1))
        by_rows = STACK_ROWS // max(n, 1)
        return max(1, min(configs, by_bytes, by_rows))

    def _sweep_chunk(self, cut: dict[str, np.ndarray], labels: np.ndarray, configs: Configs,
                     unit_mean: np.ndarray | None, result: PassResult,
                     base: tuple[np.ndarray, np.ndarray] | None, done_rows: int, total_rows: int,
                     progress: Progress | None, phase: str,
                     unperturbed: dict[str, np.ndarray]) -> int:
        """Every configuration on one chunk; counts go into ``result``.

        ``unperturbed``: the chunk's cut and the unperturbed values of the later levels' cuts.
        """
        k = int(self.num_classes or 0)
        masks = np.ascontiguousarray(configs.masks, dtype=np.float32)
        if len(masks) == 0 or not np.all(masks[0] == 1):
            from sdaudit.errors import InternalError

            raise InternalError("the first mask configuration must be the unperturbed model")
        noise_sd = np.ascontiguousarray(configs.noise_sd, dtype=np.float32)
        has_noise = len(noise_sd) > 0 and self._noise_sess is not None
        if result.mask_counts is None:
            result.mask_counts = SweepCounts.zeros(len(masks), k)
            result.noise_counts = SweepCounts.zeros(len(noise_sd), k) if has_noise else None
        y = labels
        n = len(y)
        unlabelled = bool(n and y[0] < 0)
        if base is None:  # run_pass always computes the unperturbed row first
            from sdaudit.errors import InternalError

            raise InternalError("a sweep chunk without the unperturbed predictions")
        base_pred, base_logp = base
        base_p = np.exp(base_logp)
        if unlabelled:
            y = base_pred
        if self.precision == "fp16" and self.fp16_changed is None:
            self._check_fp16(cut, n, base_pred)
        # Row 0 is the unperturbed model, which the statistics run just computed.
        _accumulate(result.mask_counts, np.arange(1), base_logp[None], base_pred[None], y,
                    base_pred, base_logp)
        done_rows += n
        # (session, instrumented model, masks, noise s.d. or None, counts, their rows,
        #  draws eps, first layer, cut)
        jobs: list[tuple[Any, InstrumentedModel, np.ndarray, np.ndarray | None, SweepCounts,
                         np.ndarray, bool, int, dict[str, np.ndarray]]] = []
        if self._plan is None:
            self._plan = self._plan_pruning(masks, self._suffix_s * self._pass_samples)
        pruned = self._run_pruned(masks, unperturbed, result.mask_counts, n, y, base)
        done_rows += n * len(pruned)
        if progress and len(pruned):
            progress(phase, done_rows, total_rows)
        for level, assigned in self._assign_levels(masks):
            idx = assigned[~np.isin(assigned, pruned)]
            if len(idx) == 0:
                continue
            level_cut = cut if level.first == 0 else {
                name: unperturbed[name] for name in level.split.cut}
            jobs.append((self._level_session(level), level.inst, masks[idx], None,
                         result.mask_counts, idx, False, level.first, level_cut))
        if has_noise and result.noise_counts is not None and self._noise is not None:
            ones = np.ones_like(noise_sd)
            if self._eps_sess is None:
                jobs.append((self._noise_sess, self._noise, ones, noise_sd, result.noise_counts,
                             np.arange(len(noise_sd)), False, 0, cut))
            else:
                draws = (np.arange(len(noise_sd)) if configs.noise_draw is None
                         else np.asarray(configs.noise_draw))
                _, first_seen = np.unique(draws, return_index=True)
                for d in draws[np.sort(first_seen)]:
                    idx = np.flatnonzero(draws == d)
                    jobs.append((self._noise_sess, self._noise, ones[idx], noise_sd[idx],
                                 result.noise_counts, idx, True, 0, cut))
        rows = self.fixed_batch or n
        for (sess, inst, job_masks, job_noise, counts, row_ids, draws_eps, first,
             base_cut) in jobs:
            m = len(job_masks)
            job_cut = {**base_cut, **self._draw_eps(rows)} if draws_eps else base_cut
            g_max = 1 if self.fixed_batch else self._group_size(job_cut, n, m)
            if self._group_cap is not None:
                g_max = min(g_max, self._group_cap)
            tiled = {name: (v if g_max == 1 else np.concatenate([v] * g_max))
                     for name, v in job_cut.items()}
            run_suffix = self._suffix_runner(sess, tiled, rows)
            start = 0
            while start < m:
                stop = min(start + g_max, m)
                g = stop - start
                try:
                    out = run_suffix(g, self._controls(
                        inst, job_masks[start:stop], rows,
                        None if job_noise is None else job_noise[start:stop], unit_mean, first))
                except Exception as exc:
                    if not _out_of_memory(exc):
                        raise
                    if g_max == 1:
                        raise ModelError(
                            "out of memory running one configuration on a chunk of "
                            f"{rows} samples", "lower --chunk-size") from None
                    g_max = max(1, g_max // 2)
                    self._group_cap = g_max  # later chunks and jobs start there
                    run_suffix = self._suffix_runner(sess, tiled, rows)  # frees bound copies
                    self.notes.append(f"ran out of memory with {g} configurations per run; "
                                      f"went on with {g_max}")
                    continue
                if self.fixed_batch:
                    out = out[:n]
                logp = _log_probs(out, bool(self.probabilities)).reshape(g, n, -1)
                pred = np.argmax(out, axis=1).reshape(g, n)
                _accumulate(counts, row_ids[start:stop], logp, pred, y, base_pred, base_logp,
                            base_p)
                done_rows += g * n
                if progress:
                    progress(phase, done_rows, total_rows)
                start = stop
        for counts in {id(c): c for c in (result.mask_counts, result.noise_counts)
                       if c is not None and (c is result.mask_counts or has_noise)}.values():
            counts.n += n
            np.add.at(counts.class_counts, y, 1)
        return done_rows

    # -- pruned suffixes ---------------------------------------------------------------------
    def _pruner(self, level: _Level) -> Any:
        """The pruning pass over ``level``'s suffix (None where its graph cannot be analysed,
        e.g. channels not on axis 1: its configurations run masked)."""
        if level.first not in self._pruners:
            from sdaudit.rewrite.prune import NotPrunableError, Pruner

            pruner = None
            if all(layer.channel_axis == 1 for layer in self.layers[level.first:]):
                try:
                    pruner = Pruner(level.split.suffix, level.inst.mask_inputs, self.output)
                except NotPrunableError:
                    pass
                except Exception as exc:  # an unusual graph: its configurations run masked
                    self._prune_note(exc)
            self._pruners[level.first] = pruner
        return self._pruners[level.first]

    def _prune_note(self, exc: BaseException) -> None:
        note = f"pruned suffixes are off where they failed ({_first_line(exc)})"
        if note not in self.notes:
            self.notes.append(note)

    def _plan_pruning(self, masks: np.ndarray, data_s: float) -> list[_Fused]:
        """Fused pruned sessions for the configurations that pay for one (rows 1… of masks).

        ``data_s``: the unperturbed suffix's time over the whole data (the masked cost of one
        configuration), against which the saving is weighed. Whatever fails here leaves that
        level's configurations masked, with a note."""
        if not self.prune:
            return []
        chosen: list[tuple[_Level, list[int], list[float]]] = []
        for level, assigned in self._assign_levels(masks):
            lo = self.offsets[level.first]
            idx = assigned[(masks[assigned, lo:] == 0).mean(axis=1) >= PRUNE_MIN_ABLATED]
            pruner = self._pruner(level) if len(idx) else None
            if pruner is None:
                continue
            try:
                costs = [pruner.cost(self._level_masks(level, masks[row])) for row in idx]
            except Exception as exc:
                self._prune_note(exc)
                continue
            keep = [i for i, c in enumerate(costs) if c <= PRUNE_MAX_COST or self._prune_always]
            if keep:
                chosen.append((level, [int(idx[i]) for i in keep], [costs[i] for i in keep]))
        if not chosen:
            return []
        # A later level's suffix costs its share of the first level's (by multiply-adds).
        first = self._pruner(self._levels[0])
        whole = first.full_macs if first is not None else 0.0
        saving = PRUNE_REALIZED * data_s * sum(
            (1.0 - c) * min(1.0, self._pruner(level).full_macs / whole if whole else 1.0)
            for level, _, cs in chosen for c in cs)
        count = sum(len(rows) for _, rows, _ in chosen)
        emitted: list[float] = []

        def pays() -> bool:
            """Build ≈ PRUNE_BUILD × the emission time, per branch (timed on the first few)."""
            if self._prune_always or not emitted:
                return True
            return saving >= PRUNE_PAYBACK * PRUNE_BUILD * float(np.median(emitted)) * count

        plan: list[_Fused] = []
        budget = PRUNE_BYTES
        for level, rows, _ in chosen:
            try:
                branches, kept = self._emit_branches(level, masks, rows, emitted, budget, pays)
            except _NotWorthItError:
                return []
            except Exception as exc:
                self._prune_note(exc)
                continue
            if not pays():
                return []
            budget -= sum(b.nbytes for b in branches)
            try:
                plan += self._fuse_sessions(level, branches, kept)
            except Exception as exc:
                self._prune_note(exc)
        return plan

    def _emit_branches(self, level: _Level, masks: np.ndarray, rows: list[int],
                       emitted: list[float], budget: int,
                       pays: Callable[[], bool]) -> tuple[list[Any], list[int]]:
        """The pruned branches of ``rows`` (those that can be and fit ``budget``)."""
        from sdaudit.rewrite.prune import NotPrunableError

        pruner = self._pruner(level)
        branches, kept = [], []
        for row in rows:
            t0 = time.perf_counter()
            try:
                branch = pruner.branch(self._level_masks(level, masks[row]),
                                       f"{self.output}#{row}")
            except NotPrunableError:
                continue
            emitted.append(time.perf_counter() - t0)
            if len(emitted) == 3 and not pays():
                raise _NotWorthItError
            if branch.nbytes > budget:
                continue
            budget -= branch.nbytes
            branches.append(branch)
            kept.append(row)
        return branches, kept

    def _fuse_sessions(self, level: _Level, branches: list[Any], kept: list[int]) -> list[_Fused]:
        """Sessions of at most PRUNE_SESSION configurations and PRUNE_SESSION_BYTES of weights
        (a larger branch alone): building one holds about four copies of its weights."""
        pruner = self._pruner(level)
        groups: list[list[int]] = []
        size = 0
        for i, branch in enumerate(branches):
            if not groups or len(groups[-1]) == PRUNE_SESSION \
                    or size + branch.nbytes > PRUNE_SESSION_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(i)
            size += branch.nbytes
        fused = []
        for group in groups:
            model = pruner.fuse([branches[i] for i in group])
            fused.append(_Fused(level, self._model_session(model, self.precision, arena=False),
                                np.asarray([kept[i] for i in group]),
                                [branches[i].output for i in group]))
            del model
            for i in group:  # the session holds its own copy now
                branches[i].inits.clear()
                branches[i].nodes.clear()
        return fused

    def _level_masks(self, level: _Level, row: np.ndarray) -> dict[str, np.ndarray]:
        """One configuration's masks by the mask inputs of ``level``'s suffix."""
        return {name: row[self.offsets[i]:self.offsets[i + 1]]
                for i, name in enumerate(level.inst.mask_inputs, start=level.first)}

    def _run_pruned(self, masks: np.ndarray, unperturbed: dict[str, np.ndarray],
                    counts: SweepCounts, n: int, y: np.ndarray,
                    base: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Run the planned fused sessions on one chunk; the rows they counted.

        A session's first run checks its first and last branch against the masked suffix;
        a mismatch, a failure or running out of memory turns pruning off: from then on every
        configuration runs masked (rows already counted from verified sessions stay)."""
        done: list[np.ndarray] = []
        base_pred, base_logp = base
        base_p = np.exp(base_logp)
        rows_in = self.fixed_batch or n
        for fused in list(self._plan or []):
            feeds = {name: unperturbed[name] for name in fused.level.split.cut}
            t0 = time.perf_counter()
            try:
                outs = fused.session.run(fused.outputs, feeds)
                fused_s = time.perf_counter() - t0
            except Exception as exc:
                self.notes.append(
                    ("ran out of memory running pruned suffixes" if _out_of_memory(exc) else
                     f"a pruned suffix failed to run ({_first_line(exc)})")
                    + "; from then on every configuration ran masked")
                self._plan = []
                break
            if not fused.checked:
                level = fused.level
                masked_s = 0.0
                for k in sorted({0, len(fused.rows) - 1}):
                    row = int(fused.rows[k])
                    t0 = time.perf_counter()
                    ref = self._level_session(level).run([self.output], {
                        **{name: unperturbed[name] for name in level.split.cut},
                        **self._controls(level.inst, masks[row:row + 1], rows_in,
                                         first=level.first)})[0]
                    masked_s = masked_s or time.perf_counter() - t0
                    scale = max(1.0, float(np.abs(ref).max()))
                    if not np.allclose(outs[k], ref, rtol=0,
                                       atol=PRUNE_RTOL[self.precision] * scale):
                        self.notes.append(
                            "a pruned suffix disagreed with the masked one "
                            f"(max difference {float(np.abs(outs[k] - ref).max()):.3g}); from "
                            "then on every configuration ran masked")
                        self.prune = False
                        self._plan = []
                        return np.concatenate(done) if done else np.zeros(0, np.int64)
                fused.checked = True
                if not self._prune_always and fused_s > PRUNE_KEEP * masked_s * len(fused.rows):
                    # Not faster here: counted this once, masked from the next chunk on.
                    self._plan = [f for f in self._plan or [] if f is not fused]
            out = np.stack([o[:n] for o in outs])  # [configs, n, classes]
            g = len(fused.rows)
            flat = out.reshape(g * n, -1)
            logp = _log_probs(flat, bool(self.probabilities)).reshape(g, n, -1)
            pred = np.argmax(out, axis=2)
            _accumulate(counts, fused.rows, logp, pred, y, base_pred, base_logp, base_p)
            done.append(fused.rows)
        return np.concatenate(done) if done else np.zeros(0, np.int64)

    def _assign_levels(self, masks: np.ndarray) -> list[tuple[_Level, np.ndarray]]:
        """Rows 1… of ``masks`` by the suffix level they run from: the last level starting at
        or before the first layer the row perturbs."""
        rows = masks[1:]
        if len(rows) == 0:
            return []
        perturbed = np.stack([(rows[:, lo:hi] != 1).any(axis=1)
                              for lo, hi in zip(self.offsets[:-1], self.offsets[1:], strict=True)],
                             axis=1)
        first = np.where(perturbed.any(axis=1), perturbed.argmax(axis=1), 0)
        starts = np.array([level.first for level in self._levels])
        which = np.searchsorted(starts, first, side="right") - 1
        return [(level, 1 + np.flatnonzero(which == i)) for i, level in enumerate(self._levels)
                if (which == i).any()]

    def _draw_eps(self, rows: int) -> dict[str, np.ndarray]:
        """One standard-normal draw per noise layer, ``rows`` samples (the noise generator)."""
        if self._noise is None or self._eps_sess is None:  # pragma: no cover - invariant
            return {}
        names = list(self._noise.eps_inputs)
        feeds = {name + "_shape": np.array([rows, *layer.shape[1:]], dtype=np.int64)
                 for layer, name in zip(self.layers, names, strict=True)}
        return dict(zip(names, self._eps_sess.run(names, feeds), strict=True))
