"""Frozen report dataclasses. Serialization lives in :mod:`sdaudit.report.json_io` only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = "1.3"  # MAJOR.MINOR: a minor version only adds fields


@dataclass(frozen=True)
class Curve:
    """Accuracy as units are removed (x = fraction of units) or noise grows (x = α).

    Per point: mean and s.d. over draws of the accuracy, and its 95 % interval over draws and
    images (see analysis.intervals; None with one draw of a random curve); the mean normalized by
    the unablated accuracy; mean loss; agreement with the unablated predictions and KL divergence
    of the perturbed outputs from the unperturbed ones.
    """

    x: tuple[float, ...]
    units_ablated: tuple[int, ...]
    accuracy_mean: tuple[float, ...]
    accuracy_std: tuple[float, ...]
    accuracy_ci_low: tuple[float | None, ...]
    accuracy_ci_high: tuple[float | None, ...]
    normalized_mean: tuple[float, ...]
    loss_mean: tuple[float, ...]
    agreement_mean: tuple[float, ...]
    kl_mean: tuple[float, ...]  # KL(unperturbed ‖ perturbed output), nats per sample
    draws: int
    auc: float  # normalized area under the curve (see analysis.curves.normalized_auc)
    auc_ci_low: float | None  # None: one draw, no interval (see ``interval``)
    auc_ci_high: float | None
    class_auc: tuple[float, ...] = ()  # per-class normalized AUC (which classes collapse first)
    auc_draws: tuple[float, ...] = ()  # the AUC of each draw, in draw order (paired compare)
    auc_draw_se: float | None = None  # s.e. of the AUC from the draws (None: one draw)
    auc_image_se: float | None = None  # s.e. of the AUC from the images (delta method)
    interval: str = ""  # what the intervals account for, or why there are none


@dataclass(frozen=True)
class AblationResult:
    """The joint random curve, one random curve per layer, and the selectivity-ordered curves."""

    joint: Curve | None
    per_layer: dict[str, Curve]
    ordered: dict[str, Curve]  # "high_to_low", "low_to_high"


@dataclass(frozen=True)
class UnitArrays:
    """Per-unit arrays of one layer (index = channel)."""

    mean: tuple[float, ...]
    sd: tuple[float, ...]
    noise_sd: tuple[float, ...]
    selectivity: tuple[float, ...] | None
    preferred_class: tuple[int, ...] | None
    mutual_information: tuple[float, ...] | None
    importance: tuple[float, ...] | None  # accuracy drop when this unit alone is ablated
    importance_loss: tuple[float, ...] | None  # loss rise when this unit alone is ablated
    # standard errors of both, and the 95 % interval of the loss rise (0 wide on all the data)
    importance_se: tuple[float, ...] | None = None
    importance_loss_se: tuple[float, ...] | None = None
    importance_loss_ci_low: tuple[float, ...] | None = None
    importance_loss_ci_high: tuple[float, ...] | None = None


@dataclass(frozen=True)
class LayerReport:
    name: str
    op_type: str
    kind: str
    shape: tuple[int | str | None, ...]
    channel_axis: int
    channels: int
    depth: int
    dead_units: int
    selectivity_mean: float | None
    selectivity_median: float | None
    selectivity_max: float | None
    mutual_information_mean: float | None
    importance_selectivity_spearman: float | None
    units: UnitArrays


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    value: float | None
    threshold: float | None
    message: str
    interval: tuple[float | None, float | None] | None = None  # 95 % interval of ``value``
    mode: str = "point"  # "significant": fails only when the whole interval is past threshold


@dataclass(frozen=True)
class GateResult:
    passed: bool
    checks: tuple[GateCheck, ...]
    verdict: str


@dataclass(frozen=True)
class Summary:
    ablation_auc: float | None
    ablation_auc_ci: tuple[float, float] | None
    noise_auc: float | None
    risk: str | None
    risk_thresholds: dict[str, float]
    per_layer_auc: dict[str, float]
    notes: tuple[str, ...]
    # how many draws the ablation curves got and why: mode, used, first, max, target,
    # half_width (achieved), stopped ("fixed", "target", "images", "max_draws", "passes")
    draws: dict[str, Any] = field(default_factory=dict)
    # what the verdict rests on: "absolute" (the risk thresholds, a heuristic) or "baseline"
    # (the difference to --baseline, a report of the same model family)
    risk_basis: str = "absolute"
    baseline_difference: dict[str, Any] | None = None  # AUC − baseline AUC with its interval


@dataclass(frozen=True)
class AuditReport:
    """Everything an audit found. ``run`` holds the only values that vary between two runs."""

    sdaudit_version: str
    model: dict[str, Any]
    data: dict[str, Any]
    runtime: dict[str, Any]
    config: dict[str, Any]
    baseline: dict[str, Any]
    layers: tuple[LayerReport, ...]
    ablation: AblationResult | None
    noise: Curve | None
    importance: dict[str, Any] | None
    summary: Summary
    gate: GateResult
    run: dict[str, Any] = field(default_factory=dict)
    schema_version: str = SCHEMA_VERSION
