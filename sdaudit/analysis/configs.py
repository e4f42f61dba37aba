"""The configuration table of an audit: mask rows over the pooled units, in named blocks.

One owner of unit offsets (where each selected layer's units sit in a row) and of block names
("joint", "layer:NAME", "ordered:high_to_low", "ordered:low_to_high", "importance"); the engine
runs the rows, report.build reads its counts back through the table. Row 0 is always the
unperturbed model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from sdaudit.analysis.draws import AUTO_PASSES, permutation_masks, plan_draws
from sdaudit.analysis.intervals import trapezoid_weights
from sdaudit.errors import InternalError

if TYPE_CHECKING:
    from sdaudit.config import AuditConfig
    from sdaudit.model.layers import LayerInfo


@dataclass(frozen=True)
class CurveRows:
    """The configuration rows of one curve: ``rows[d, j]`` is draw d at point j; the area of the
    curve weighs point j by ``weights[j]``. Statistic 0 of its moments is the weighted area,
    statistic 1 + j point j."""

    rows: np.ndarray  # [D, F] indices into the sweep's configurations
    weights: np.ndarray  # [F]

    def __post_init__(self) -> None:
        if self.rows.ndim != 2 or self.rows.shape[1] != len(self.weights):
            raise ValueError(f"rows {self.rows.shape} do not match {len(self.weights)} weights")


MomentSpec = dict[str, CurveRows]


def unit_offsets(layers: list[LayerInfo]) -> np.ndarray:
    """[L + 1] where each layer's units start in a row over all selected units (and the end)."""
    return np.cumsum([0] + [layer.channels for layer in layers])


def ordered_masks(order: np.ndarray, total: int, fractions: tuple[float, ...]) -> np.ndarray:
    """[F, total] masks: the first round(f·n) units of ``order`` off."""
    rows = np.ones((len(fractions), total), dtype=np.float32)
    for j, f in enumerate(fractions):
        rows[j, order[: round(f * len(order))]] = 0.0
    return rows


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
    # configurations per measure ("ablation", "ordered", "noise", "importance": the masked
    # units), the importance sample's size and the units done in closed form
    by_measure: dict[str, int] = field(default_factory=dict)
    importance_samples: int = 0
    closed_form_units: int = 0
    draws: int = 1  # draws of the random curves in the first batch
    max_draws: int = 1  # draws they can end with (--draws auto; else the same)
    random_configs: int = 0  # of mask_configs, those of random curves (they scale with draws)
    extra_passes: int = 0  # --draws auto: more passes over the data at most

    @property
    def forward_passes(self) -> int:
        """Sample-level forward passes (suffix runs count as passes)."""
        return self.samples * (self.mask_configs + self.noise_configs + self.stats_runs)

    @property
    def extra_configs(self) -> int:
        """Random-curve configurations --draws auto may add to the first batch's."""
        return self.random_configs * (self.max_draws - self.draws) // max(self.draws, 1)

    @property
    def max_forward_passes(self) -> int:
        """Sample-level forward passes if --draws auto goes to its maximum (each extra pass
        runs the unperturbed model once)."""
        return self.forward_passes + self.samples * (self.extra_configs + self.extra_passes)


def single_pass(config: AuditConfig, separate_selectivity: bool) -> bool:
    """Whether one pass does everything: random ablation and single-unit importance need nothing
    from the unablated statistics. Ordered ablation (selectivity), noise (unit s.d.) and mean
    ablation (unit means) need a first pass; mutual information joins the second."""
    return (set(config.measures) <= {"ablation", "importance"}
            and config.ablation_value == "zero" and not separate_selectivity)


class ConfigTable:
    """Mask rows over the pooled units of ``layers``, in named blocks (row 0: all ones)."""

    def __init__(self, layers: list[LayerInfo]) -> None:
        self.layers = list(layers)
        self.offsets = unit_offsets(self.layers)
        self.units = int(self.offsets[-1])
        self._rows: list[np.ndarray] = [np.ones((1, self.units), dtype=np.float32)]
        self._size = 1
        self.blocks: dict[str, tuple[int, int]] = {}
        self.units_off: dict[str, list[int]] = {}  # units ablated at each point of a block
        # the curves whose per-image moments the sweep keeps (their intervals' image variance)
        self.moments: dict[str, CurveRows] = {}

    def layer_slice(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def add(self, name: str, block: np.ndarray, units_off: list[int] | None = None,
            draws: int | None = None, weights: np.ndarray | None = None) -> None:
        """Append ``block``'s rows as block ``name``; with ``draws`` a curve of ``draws`` × points
        whose area weighs the points by ``weights`` (its image moments are kept).

        Pre-condition: the name is new and the rows span every selected unit."""
        if name in self.blocks or block.shape[1:] != (self.units,):  # pragma: no cover
            raise InternalError(f"block {name!r}: a new name and rows of {self.units} units")
        self._rows.append(block)
        self.blocks[name] = (self._size, self._size + len(block))
        if draws is not None and weights is not None:
            self.moments[name] = CurveRows(
                self._size + np.arange(len(block)).reshape(draws, len(weights)), weights)
        self._size += len(block)
        if units_off is not None:
            self.units_off[name] = units_off

    def __contains__(self, name: str) -> bool:
        return name in self.blocks

    def __len__(self) -> int:
        return self._size

    @property
    def masks(self) -> np.ndarray:
        """[M, U] every row, the unperturbed one first."""
        return np.concatenate(self._rows)

    def add_random(self, config: AuditConfig, seeds: list[np.random.SeedSequence],
                   first: int = 0, count: int | None = None) -> None:
        """Random cumulative ablation, draws ``first`` … ``first + count − 1`` (default: the
        first batch): the joint block and, with ``per_layer``, one per layer. Each curve has its
        own stream (the joint one ``seeds[0]``, layer i the i-th child of ``seeds[1]``), so draw
        k is the same whatever the number of draws."""
        u = self.units
        count = plan_draws(config.draws, config.max_draws, config.ci_target).first \
            if count is None else count
        w = trapezoid_weights(config.fractions)
        block, counts = permutation_masks(seeds[0], np.arange(u), u, config.fractions, first,
                                          count)
        self.add("joint", block, counts, count, w)
        if config.per_layer and len(self.layers) > 1:
            for i, layer in enumerate(self.layers):
                # the i-th child of seeds[1] (SeedSequence.spawn, without its state)
                child = np.random.SeedSequence(seeds[1].entropy,
                                               spawn_key=(*seeds[1].spawn_key, i))
                block, counts = permutation_masks(
                    child, np.arange(self.offsets[i], self.offsets[i + 1]), u, config.fractions,
                    first, count)
                self.add(f"layer:{layer.name}", block, counts, count, w)

    def add_ordered(self, selectivity: np.ndarray, fractions: tuple[float, ...]) -> None:
        """Ordered ablation by selectivity, highest first and lowest first (ties by unit)."""
        u = self.units
        order_desc = np.lexsort((np.arange(u), -selectivity))
        counts = [round(f * u) for f in fractions]
        w = trapezoid_weights(fractions)
        self.add("ordered:high_to_low", ordered_masks(order_desc, u, fractions), counts, 1, w)
        self.add("ordered:low_to_high", ordered_masks(order_desc[::-1].copy(), u, fractions),
                 counts, 1, w)

    def add_importance(self, units: np.ndarray | None = None) -> None:
        """Single-unit ablation: one row per unit of ``units`` (default: every unit), in order."""
        units = np.arange(self.units) if units is None else units
        rows = np.ones((len(units), self.units), dtype=np.float32)
        rows[np.arange(len(units)), units] = 0.0
        self.add("importance", rows)


def noise_draws(config: AuditConfig) -> int:
    """Draws of the noise curve: ``--draws N``, or the first batch of ``--draws auto``."""
    return plan_draws(config.draws, config.max_draws, config.ci_target).first


def noise_rows(elem_sd: np.ndarray, config: AuditConfig) -> tuple[np.ndarray, np.ndarray]:
    """[levels·draws, U] noise s.d. rows (level-major) and each row's draw: row i uses draw
    i mod draws, so one standard-normal draw per chunk serves that draw at every level (common
    random numbers)."""
    sd = elem_sd.astype(np.float32)
    draws = noise_draws(config)
    rows = np.concatenate([np.tile(alpha * sd, (draws, 1)) for alpha in config.noise_levels])
    return rows, np.tile(np.arange(draws), len(rows) // draws)


def noise_moments(config: AuditConfig) -> dict[str, CurveRows]:
    """The noise curve's rows for its image moments: draw d at level l is row l·D + d; its
    area is over log10 α."""
    draws, levels = noise_draws(config), len(config.noise_levels)
    rows = np.arange(levels)[None, :] * draws + np.arange(draws)[:, None]
    return {"noise": CurveRows(rows, trapezoid_weights(np.log10(np.asarray(config.noise_levels))))}


def plan(config: AuditConfig, table: ConfigTable, samples: int,
         separate_selectivity: bool, importance_units: int | None = None,
         importance_samples: int | None = None) -> Plan:
    """The work announced before the first pass (``table`` holds the random blocks so far;
    ``importance_units``: the units whose importance runs masked, default all)."""
    fused = single_pass(config, separate_selectivity)
    u = table.units
    n_ordered = 2 * len(config.fractions) if config.wants("ordered") else 0
    n_importance = (u if importance_units is None else importance_units) \
        if config.wants("importance") else 0
    n_noise = len(config.noise_levels) * noise_draws(config) if config.wants("noise") else 0
    separate_hist = config.wants("selectivity") and separate_selectivity
    extra = 1 if separate_selectivity else 0
    passes = 1 if fused else 2 + extra + int(separate_hist)
    stats_runs = 1 if fused else 1 + extra + int(config.wants("selectivity"))
    # row 0 is the unperturbed model: the statistics run computes it, it is no configuration
    draws = plan_draws(config.draws, config.max_draws, config.ci_target)
    ablation = config.wants("ablation")
    by_measure = {"ablation": len(table) - 1, "ordered": n_ordered, "noise": n_noise,
                  "importance": n_importance}
    return Plan(samples, u, len(table.layers), len(table) - 1 + n_ordered + n_importance,
                n_noise, stats_runs, passes,
                {k: v for k, v in by_measure.items() if config.wants(k)},
                samples if importance_samples is None else importance_samples,
                u - n_importance if config.wants("importance") else 0,
                draws=draws.first, max_draws=draws.most if ablation else draws.first,
                random_configs=len(table) - 1,
                extra_passes=AUTO_PASSES - 1 if draws.auto and ablation else 0)
