"""The model variants a sweep runs, and their sessions.

* the statistics variant (pooled unit means as outputs), split into the prefix every chunk runs
  once and the suffix that gives the unperturbed outputs and statistics;
* the sweep variant (masks, and fills for mean ablation) and the noise variant, whose suffixes
  run once per configuration;
* suffix *levels*: the sweep suffix from a later selected layer on, for configurations that
  leave the first layers intact (their cut comes out of the statistics run).

Sessions are built once (levels on first use) and never rebuilt during a sweep, except when
fp16 is given up after the first chunk's check.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sdaudit.errors import InternalError, ModelError, RewriteError

if TYPE_CHECKING:
    import onnx

    from sdaudit.model.layers import LayerInfo
    from sdaudit.rewrite.instrument import InstrumentedModel
    from sdaudit.rewrite.split import SplitModel

# At most this many suffix levels (each its own session): with more selected layers, levels
# start at evenly spaced layers and a configuration runs from the last level at or before its
# first perturbed layer.
MAX_LEVELS = 8
LEVEL_BYTES = 512 << 20


@dataclass
class Level:
    """The suffix that starts at selected layer ``first`` (level 0: the first layer)."""

    first: int
    inst: InstrumentedModel
    split: SplitModel
    session: Any = None  # built on first use


@dataclass(frozen=True)
class Variants:
    """The instrumented variants of one model and layer selection, split at the prefix cut."""

    output: str
    fixed_batch: int | None  # the graph's hard-coded batch size, where it cannot be freed
    stats: InstrumentedModel
    stats_split: SplitModel
    sweep: InstrumentedModel
    sweep_split: SplitModel
    noise: InstrumentedModel | None
    noise_split: SplitModel | None
    levels: tuple[Level, ...]  # levels[0] is the sweep suffix itself
    level_outputs: tuple[str, ...]  # later levels' cut tensors, from the statistics run

    @property
    def cut(self) -> tuple[str, ...]:
        return self.stats_split.cut


def build_variants(model: onnx.ModelProto, layers: list[LayerInfo], output: str, *,
                   ablation_value: str = "zero", noise: bool = True, seed: int = 0,
                   levels: bool = True) -> Variants:
    """Instrument and split ``model`` for a sweep over ``layers`` (output ``output``).

    Post-condition: every variant's prefix cut is the statistics variant's (one prefix run
    serves them all). The statistics variant is checked by the rewrite itself (neutral controls
    reproduce the model); the sweep, noise and level variants are not checked here, which would
    build a session of each on probe inputs, but on the first chunk, with the sessions the sweep
    runs, against the statistics run (runtime.suffix.SuffixRunner.check_neutral)."""
    import onnx

    from sdaudit.rewrite.batch import free_batch, has_fixed_batch
    from sdaudit.rewrite.instrument import instrument
    from sdaudit.rewrite.split import split

    # Where the graph hard-codes its batch size, run chunks of exactly that size (the last one
    # padded) and stack no configurations.
    fixed_batch: int | None = None
    if has_fixed_batch(model):
        try:
            model = free_batch(model)
        except ModelError:
            fixed_batch = int(model.graph.input[0].type.tensor_type.shape.dim[0].dim_value)
    fill = ablation_value == "mean"
    stats = instrument(model, layers, noise=False, stats=True, fill=fill, seed=seed)
    sweep = instrument(model, layers, noise=False, stats=False, fill=fill, seed=seed,
                       verify=False)
    noise_inst: InstrumentedModel | None = None
    if noise:
        # The noise's standard-normal draw as an input, drawn once per chunk and draw and shared
        # by every noise level (common random numbers: one draw costs more than a run of the
        # suffix); in-graph draws per run where a layer's shape is not fully known.
        try:
            noise_inst = instrument(model, layers, noise=True, stats=False, seed=seed,
                                    verify=False, noise_source="input")
        except RewriteError:
            noise_inst = instrument(model, layers, noise=True, stats=False, seed=seed,
                                    verify=False)
    sweep_split = split(sweep, (output,))
    # Later suffix levels, and the tensors their cuts need from the statistics run.
    all_levels: list[Level] = [Level(0, sweep, sweep_split)]
    if levels and len(layers) > 1:
        count = len(layers)
        # Each level holds a copy of its suffix: at most MAX_LEVELS, and no more than
        # LEVEL_BYTES of model copies in all (a big model gets fewer, evenly spaced levels).
        wanted = min(count, MAX_LEVELS, 1 + int(LEVEL_BYTES // max(model.ByteSize(), 1)))
        firsts = (range(1, count) if count <= wanted else
                  sorted({round(i * count / wanted) for i in range(1, wanted)}))
        for first in firsts:
            inst = instrument(model, layers[first:], noise=False, stats=False, fill=fill,
                              seed=seed, verify=False)
            try:
                part = split(inst, (output,))
            except RewriteError:  # these layers do not reach the output (another head's)
                continue
            # Keep names and the suffix only: the full copies are not needed again.
            all_levels.append(Level(first, replace(inst, model=onnx.ModelProto()),
                                    replace(part, prefix=None)))
    level_outputs = tuple(dict.fromkeys(
        name for level in all_levels[1:] for name in level.split.cut
        if name not in sweep_split.cut))
    stat_outputs = stats.mean_outputs + stats.sqmean_outputs
    try:
        stats_split = split(stats, (output, *stat_outputs, *level_outputs))
    except RewriteError:  # pragma: no cover - a later cut the statistics run cannot give
        all_levels, level_outputs = all_levels[:1], ()
        stats_split = split(stats, (output, *stat_outputs))
    noise_split = split(noise_inst, (output,)) if noise_inst else None
    for other in (sweep_split, noise_split):
        if other is not None and other.cut != stats_split.cut:  # pragma: no cover - invariant
            raise InternalError("instrumented variants disagree on the prefix cut")
    return Variants(output, fixed_batch, stats, stats_split, sweep, sweep_split, noise_inst,
                    noise_split, tuple(all_levels), level_outputs)


class Sessions:
    """ONNX Runtime sessions of the variants on one device: prefix and statistics suffix (fp32
    always), and the sweep, noise and level suffixes in ``precision``."""

    def __init__(self, variants: Variants, device: str, threads: int, precision: str) -> None:
        from sdaudit.ort import make_session

        self.variants = variants
        self.device = device
        self.threads = threads
        self.precision = precision
        v = variants
        self.prefix = (make_session(v.stats_split.prefix.SerializeToString(), device, threads,
                                    spin=False) if v.stats_split.prefix else None)
        self.stats = make_session(v.stats_split.suffix.SerializeToString(), device, threads,
                                  spin=False)
        self.sweep, self.noise = self._suffixes(precision)

    def model_session(self, model: Any, precision: str, arena: bool = True) -> Any:
        """A session of ``model`` in ``precision`` on this device."""
        from sdaudit.ort import make_session

        if precision == "fp16":
            from sdaudit.rewrite.precision import to_fp16

            model = to_fp16(model)
        return make_session(model.SerializeToString(), self.device, self.threads, arena=arena)

    def _suffixes(self, precision: str) -> tuple[Any, Any]:
        """Sessions of the sweep and noise suffixes, in ``precision``."""
        for level in self.variants.levels[1:]:
            level.session = None  # rebuilt on first use, in the precision now in force
        v = self.variants
        noise = (self.model_session(v.noise_split.suffix, precision)
                 if v.noise_split is not None else None)
        return self.model_session(v.sweep_split.suffix, precision), noise

    def set_precision(self, precision: str) -> None:
        """Rebuild the sweep, noise and level suffixes in ``precision``."""
        self.precision = precision
        self.sweep, self.noise = self._suffixes(precision)

    def level(self, level: Level) -> Any:
        """The session of ``level``'s suffix (the sweep suffix for level 0)."""
        if level.first == 0:
            return self.sweep
        if level.session is None:
            level.session = self.model_session(level.split.suffix, self.precision)
        return level.session
