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
    """The curve's points: fractions of units ablated (`fractions`, in [0, 1]) or noise levels α
    (`levels`, the noise s.d. as a multiple of each unit's own s.d.)."""
    units_ablated: tuple[int, ...]
    """Units switched off at each point (over all layers of the curve); 0 for noise points."""
    accuracy_mean: tuple[float, ...]
    """Accuracy at each point, mean over the draws (random permutations or noise draws)."""
    accuracy_std: tuple[float, ...]
    """Sample standard deviation of the accuracy over the draws (0 with one draw)."""
    accuracy_ci_low: tuple[float | None, ...]
    """Lower end of the 95 % interval of the mean accuracy, over draws and images (see
    `interval`); null with one draw of a random curve."""
    accuracy_ci_high: tuple[float | None, ...]
    """Upper end of the 95 % interval of the mean accuracy (see `interval`)."""
    normalized_mean: tuple[float, ...]
    """Mean accuracy divided by the unablated accuracy (1.0 = unchanged); null where that is 0."""
    loss_mean: tuple[float, ...]
    """Mean cross-entropy loss per sample at each point, mean over the draws."""
    agreement_mean: tuple[float, ...]
    """Share of samples whose predicted class is the unablated model's, mean over the draws."""
    kl_mean: tuple[float, ...]
    """KL divergence of the perturbed from the unperturbed output distribution, nats per sample,
    mean over the draws."""
    draws: int
    """Draws per point: random permutations (ablation) or noise samples (noise)."""
    auc: float
    """Normalized area under the curve: trapezoids under `normalized_mean` over the points,
    divided by their span (1.0 = perturbing changes nothing; lower = more reliance)."""
    auc_ci_low: float | None
    """Lower end of the 95 % interval of the AUC over draws and images; null: one draw, no
    interval (see `interval`)."""
    auc_ci_high: float | None
    """Upper end of the 95 % interval of the AUC."""
    class_auc: tuple[float, ...] = ()
    """Per class (model output order): the normalized AUC of that class's accuracy; the classes
    that collapse first have the lowest. Empty where not measured."""
    auc_draws: tuple[float, ...] = ()
    """The AUC of each draw, in draw order (for paired comparisons of reports)."""
    auc_draw_se: float | None = None
    """Standard error of the AUC from the draws (null: one draw)."""
    auc_image_se: float | None = None
    """Standard error of the AUC from the images (delta method)."""
    interval: str = ""
    """What the intervals account for, or why there are none."""


@dataclass(frozen=True)
class AblationResult:
    """The joint random curve, one random curve per layer, and the selectivity-ordered curves."""

    joint: Curve | None
    """Random cumulative ablation of all selected layers together (its fields sit at the top of
    the `ablation` object)."""
    per_layer: dict[str, Curve]
    """Random cumulative ablation of each layer alone, by layer (tensor) name."""
    ordered: dict[str, Curve]
    """Ablation ordered by class selectivity: `high_to_low` (most selective units first) and
    `low_to_high`."""


@dataclass(frozen=True)
class UnitArrays:
    """Per-unit arrays of one layer (index = channel)."""

    mean: tuple[float, ...]
    """Per unit: mean activation over the data (spatial mean per sample, then over samples)."""
    sd: tuple[float, ...]
    """Per unit: standard deviation of that per-sample activation over the data."""
    noise_sd: tuple[float, ...]
    """Per unit: s.d. of its activation over samples and positions; the noise sweep's
    Gaussian noise has s.d. α × this."""
    selectivity: tuple[float, ...] | None
    """Per unit: class selectivity index (μmax − μ−max)/(μmax + μ−max) of its class-conditional
    mean activations, in [0, 1]; null where selectivity was not measured."""
    preferred_class: tuple[int, ...] | None
    """Per unit: the class (model output index) with the highest mean activation."""
    mutual_information: tuple[float, ...] | None
    """Per unit: mutual information between its binned activation and the class, bits."""
    importance: tuple[float, ...] | None
    """Per unit: accuracy drop when this unit alone is ablated (negative: accuracy rose)."""
    importance_loss: tuple[float, ...] | None
    """Per unit: loss rise when this unit alone is ablated."""
    importance_se: tuple[float, ...] | None = None
    """Per unit: standard error of `importance` (0 where it rests on all the data)."""
    importance_loss_se: tuple[float, ...] | None = None
    """Per unit: standard error of `importance_loss`."""
    importance_loss_ci_low: tuple[float, ...] | None = None
    """Per unit: lower end of the 95 % interval of `importance_loss` (see importance.interval)."""
    importance_loss_ci_high: tuple[float, ...] | None = None
    """Per unit: upper end of the 95 % interval of `importance_loss`."""


@dataclass(frozen=True)
class LayerReport:
    name: str
    """The activation tensor's name in the ONNX graph."""
    op_type: str
    """The ONNX operator that produces it (Relu, Gemm, ...)."""
    kind: str
    """`activation` (a non-linearity's output) or `linear` (a layer without one)."""
    shape: tuple[int | str | None, ...]
    """The tensor's shape; strings and nulls are dimensions the model leaves open."""
    channel_axis: int
    """The axis whose entries are the units (1 for NCHW and NC, 2 for tokens NLC)."""
    channels: int
    """Units (channels) in the layer."""
    depth: int
    """Weight layers (Conv, Gemm, MatMul) on the longest path from the inputs to this tensor."""
    dead_units: int
    """Units that never vary on the data: a Relu output never above 0, or any other output
    constant."""
    selectivity_mean: float | None
    """Mean class selectivity index of the layer's units."""
    selectivity_median: float | None
    """Median class selectivity index of the layer's units."""
    selectivity_max: float | None
    """Highest class selectivity index in the layer."""
    mutual_information_mean: float | None
    """Mean mutual information (bits) between a unit's activation and the class."""
    importance_selectivity_spearman: float | None
    """Spearman ρ between the units' selectivity and their importance (loss rise)."""
    units: UnitArrays
    """Per-unit arrays, index = channel."""


@dataclass(frozen=True)
class GateCheck:
    name: str
    """Which check: `fail_under` (absolute AUC) or `max_drop` (against --baseline)."""
    passed: bool
    """Whether this check passed."""
    value: float | None
    """What was checked: the ablation AUC (fail_under) or its drop from the baseline's
    (max_drop, negative when it rose); null when no AUC was measured."""
    threshold: float | None
    """The bound: --fail-under, or --max-drop (0 when --baseline is given without it)."""
    message: str
    """The check's result in words, value and threshold included."""
    interval: tuple[float | None, float | None] | None = None
    """95 % interval of `value` (the drop's, from draws and images); null where there is none."""
    mode: str = "point"
    """`point`, or `significant`: the check fails only when the whole interval is past the
    threshold."""


@dataclass(frozen=True)
class GateResult:
    passed: bool
    """Whether every check passed (true with no checks); false means exit code 1."""
    checks: tuple[GateCheck, ...]
    """The checks the flags asked for, in order."""
    verdict: str
    """"no gate set", "passed", or "failed: " and the failed checks' messages."""


@dataclass(frozen=True)
class Summary:
    ablation_auc: float | None
    """Normalized AUC of the joint random-ablation curve: the headline figure (1.0 = ablating
    units changes nothing; lower = more reliance on single directions)."""
    ablation_auc_ci: tuple[float, float] | None
    """95 % t-interval [low, high] of `ablation_auc` over the draws."""
    noise_auc: float | None
    """Normalized AUC of the noise curve (over log α)."""
    risk: str | None
    """Heuristic grade of `ablation_auc`: low, medium or high (see `risk_thresholds`)."""
    risk_thresholds: dict[str, float]
    """The grade's bounds: AUC ≥ `low` is low risk, ≥ `medium` medium, else high."""
    per_layer_auc: dict[str, float]
    """Ablation AUC of each layer ablated alone, by layer name."""
    notes: tuple[str, ...]
    """What a reader must know to trust the numbers (no labels, skipped images, fallbacks)."""
    draws: dict[str, Any] = field(default_factory=dict)
    """How many draws the ablation curves got and why: mode (auto, fixed), used, first, max,
    target, half_width (achieved), passes, stopped (fixed, target, images, max_draws, passes)."""
    risk_basis: str = "absolute"
    """What the verdict rests on: `absolute` (the risk thresholds, a heuristic) or `baseline`
    (the difference to --baseline, a report of the same model family)."""
    baseline_difference: dict[str, Any] | None = None
    """This AUC minus the --baseline report's, with its 95 % interval: difference, ci, paired
    (draw by draw on the same permutations), significant."""


@dataclass(frozen=True)
class AuditReport:
    """Everything an audit found. ``run`` holds the only values that vary between two runs."""

    sdaudit_version: str
    """The sdaudit version that wrote the report."""
    model: dict[str, Any]
    """The audited model (see :class:`sdaudit.report.blocks.ModelBlock`)."""
    data: dict[str, Any]
    """The data it was measured on (:class:`~sdaudit.report.blocks.DataBlock`)."""
    runtime: dict[str, Any]
    """How it ran (:class:`~sdaudit.report.blocks.RuntimeBlock`)."""
    config: dict[str, Any]
    """The audit's settings (:class:`sdaudit.config.AuditConfig`)."""
    unablated: dict[str, Any]
    """The unablated model's figures on the data (:class:`~sdaudit.report.blocks.UnablatedBlock`)."""
    layers: tuple[LayerReport, ...]
    """The audited layers, in graph order."""
    ablation: AblationResult | None
    """Ablation curves; null where --measure leaves ablation out."""
    noise: Curve | None
    """The noise curve (x = `levels`); null where not measured."""
    importance: dict[str, Any] | None
    """Selectivity versus importance (:class:`~sdaudit.report.blocks.ImportanceBlock`)."""
    summary: Summary
    """The verdict's figures."""
    gate: GateResult
    """The CI gate's checks and result."""
    run: dict[str, Any] = field(default_factory=dict)
    """The only values that differ between two runs of one command
    (:class:`~sdaudit.report.blocks.RunBlock`)."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Where scan's settings came from (:class:`~sdaudit.report.blocks.SettingsBlock`); empty
    for audits run through the Python API."""
    schema_version: str = SCHEMA_VERSION
    """MAJOR.MINOR of this report's JSON Schema; a minor version only adds fields."""

    @property
    def baseline(self) -> dict[str, Any]:
        """Deprecated name of :attr:`unablated` (the JSON keeps both in schema 1.x; "baseline"
        read as the --baseline report)."""
        return self.unablated
