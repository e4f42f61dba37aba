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

from sdaudit.errors import InternalError

if TYPE_CHECKING:
    from sdaudit.config import AuditConfig
    from sdaudit.model.layers import LayerInfo


def unit_offsets(layers: list[LayerInfo]) -> np.ndarray:
    """[L + 1] where each layer's units start in a row over all selected units (and the end)."""
    return np.cumsum([0] + [layer.channels for layer in layers])


def permutation_masks(rng: np.random.Generator, units: np.ndarray, total: int,
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

    @property
    def forward_passes(self) -> int:
        """Sample-level forward passes (suffix runs count as passes)."""
        return self.samples * (self.mask_configs + self.noise_configs + self.stats_runs)


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

    def layer_slice(self, i: int) -> slice:
        return slice(int(self.offsets[i]), int(self.offsets[i + 1]))

    def add(self, name: str, block: np.ndarray, units_off: list[int] | None = None) -> None:
        """Append ``block``'s rows as block ``name``.

        Pre-condition: the name is new and the rows span every selected unit."""
        if name in self.blocks or block.shape[1:] != (self.units,):  # pragma: no cover
            raise InternalError(f"block {name!r}: a new name and rows of {self.units} units")
        self._rows.append(block)
        self.blocks[name] = (self._size, self._size + len(block))
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

    def add_random(self, config: AuditConfig, seeds: list[np.random.SeedSequence]) -> None:
        """Random cumulative ablation: the joint block and, with ``per_layer``, one per layer."""
        u = self.units
        block, counts = permutation_masks(np.random.default_rng(seeds[0]), np.arange(u), u,
                                          config.fractions, config.draws)
        self.add("joint", block, counts)
        if config.per_layer and len(self.layers) > 1:
            rng = np.random.default_rng(seeds[1])
            for i, layer in enumerate(self.layers):
                block, counts = permutation_masks(
                    rng, np.arange(self.offsets[i], self.offsets[i + 1]), u, config.fractions,
                    config.draws)
                self.add(f"layer:{layer.name}", block, counts)

    def add_ordered(self, selectivity: np.ndarray, fractions: tuple[float, ...]) -> None:
        """Ordered ablation by selectivity, highest first and lowest first (ties by unit)."""
        u = self.units
        order_desc = np.lexsort((np.arange(u), -selectivity))
        counts = [round(f * u) for f in fractions]
        self.add("ordered:high_to_low", ordered_masks(order_desc, u, fractions), counts)
        self.add("ordered:low_to_high", ordered_masks(order_desc[::-1].copy(), u, fractions),
                 counts)

    def add_importance(self, units: np.ndarray | None = None) -> None:
        """Single-unit ablation: one row per unit of ``units`` (default: every unit), in order."""
        units = np.arange(self.units) if units is None else units
        rows = np.ones((len(units), self.units), dtype=np.float32)
        rows[np.arange(len(units)), units] = 0.0
        self.add("importance", rows)


def noise_rows(elem_sd: np.ndarray, config: AuditConfig) -> tuple[np.ndarray, np.ndarray]:
    """[levels·draws, U] noise s.d. rows (level-major) and each row's draw: row i uses draw
    i mod draws, so one standard-normal draw per chunk serves that draw at every level (common
    random numbers)."""
    sd = elem_sd.astype(np.float32)
    rows = np.concatenate([np.tile(alpha * sd, (config.draws, 1))
                           for alpha in config.noise_levels])
    return rows, np.tile(np.arange(config.draws), len(rows) // config.draws)


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
    n_noise = len(config.noise_levels) * config.draws if config.wants("noise") else 0
    separate_hist = config.wants("selectivity") and separate_selectivity
    extra = 1 if separate_selectivity else 0
    passes = 1 if fused else 2 + extra + int(separate_hist)
    stats_runs = 1 if fused else 1 + extra + int(config.wants("selectivity"))
    # row 0 is the unperturbed model: the statistics run computes it, it is no configuration
    by_measure = {"ablation": len(table) - 1, "ordered": n_ordered, "noise": n_noise,
                  "importance": n_importance}
    return Plan(samples, u, len(table.layers), len(table) - 1 + n_ordered + n_importance,
                n_noise, stats_runs, passes,
                {k: v for k, v in by_measure.items() if config.wants(k)},
                samples if importance_samples is None else importance_samples,
                u - n_importance if config.wants("importance") else 0)
