"""Frozen configuration of an audit. Every choice the paper leaves open is a field here,
with its default documented in docs/method.md."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from sdaudit.errors import BadFlagError

MEASURES = ("selectivity", "ablation", "ordered", "noise", "importance")
DEFAULT_FRACTIONS = tuple(round(i / 10, 2) for i in range(10))  # 0, 0.1, ..., 0.9
DEFAULT_NOISE_LEVELS = tuple(round(10 ** (-1.5 + 0.5 * i), 6) for i in range(6))  # 10^-1.5 … 10^1
ABLATION_VALUES = ("zero", "mean")
PRECISIONS = ("fp32", "fp16")
MAX_SEED = 2**63 - 1  # numpy takes any non-negative integer; reports keep it as a JSON int64


@dataclass(frozen=True)
class RiskThresholds:
    """Ablation AUC at or above ``low`` → low risk; at or above ``medium`` → medium; else high."""

    low: float = 0.70
    """Ablation AUC at or above this is graded low risk."""
    medium: float = 0.50
    """Ablation AUC at or above this (and below `low`) is graded medium risk; below, high."""

    def grade(self, auc: float) -> str:
        if auc >= self.low:
            return "low"
        if auc >= self.medium:
            return "medium"
        return "high"


GATE_MODES = ("point", "significant")


@dataclass(frozen=True)
class Gate:
    """CI gate: fail under an absolute AUC, or on a drop against an earlier report.

    ``mode`` of the drop: "point" fails when the measured drop exceeds ``max_drop``;
    "significant" only when the whole 95 % interval of the drop does (the drop is more than
    ``max_drop`` beyond what draws and images explain)."""

    fail_under: float | None = None
    """--fail-under: fail (exit 1) when the ablation AUC is below this."""
    baseline_report: str | None = None
    """--baseline: an earlier report whose ablation AUC this one is checked against."""
    max_drop: float | None = None
    """--max-drop: the largest allowed fall of the AUC below the baseline's (null: 0)."""
    mode: str = "point"
    """--gate: point (fail when the measured drop exceeds max_drop) or significant (only when
    the whole 95 % interval of the drop does)."""


@dataclass(frozen=True)
class AuditConfig:
    """What to measure and how. Defaults follow Morcos et al. (2018) where the paper is explicit."""

    layers: str = "default"
    """--layers: which activation tensors (default, all, last:N, first:N, names, globs)."""
    measures: tuple[str, ...] = MEASURES
    """--measure: the measurements run (selectivity, ablation, ordered, noise, importance)."""
    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    """--fractions: fractions of units ablated, increasing, in [0, 1]."""
    draws: int | str = "auto"
    """--draws: random permutations (and noise draws) per point, or "auto": add draws until the
    AUC's interval is narrow enough (see ci_target, max_draws)."""
    seed: int = 0
    """--seed: the seed of every random draw."""
    ci_target: float = 0.01
    """--ci-target: with --draws auto, the 95 % half-width of the ablation AUC to reach."""
    max_draws: int = 50
    """--max-draws: with --draws auto, at most this many draws."""
    noise_levels: tuple[float, ...] = DEFAULT_NOISE_LEVELS
    """--noise-levels: noise s.d. as multiples α of each unit's own s.d."""
    ablation_value: str = "zero"
    """--ablation-value: ablated units clamped to zero (the paper) or to their mean (a variant)."""
    per_layer: bool = True
    """--per-layer: each layer also ablated on its own."""
    mi_bins: int = 10
    """--mi-bins: equal-width bins of the mutual-information estimate."""
    selectivity_eps: float = 1e-7
    """ε added to the selectivity index's denominator (units that are 0 on every class)."""
    chunk_size: int | None = None
    """--chunk-size: samples per chunk; null: about 32 MiB of input per chunk, 16 to 256."""
    device: str = "auto"
    """--device: auto, cpu or cuda (in the report's runtime block, not here)."""
    threads: int | None = None
    """--threads: ONNX Runtime threads (in the report's runtime block, not here)."""
    precision: str = "fp32"
    """--precision: fp16 runs the sweep's suffix in half precision where that is checked to
    change at most 0.5 % of the unablated predictions."""
    io_binding: bool | None = None
    """--io-binding: cut tensors bound on the device once per chunk; null: on with CUDA."""
    prune: bool | None = None
    """--prune: zero-ablation configurations as pruned graphs; null: where they pay, true:
    always, false: never."""
    importance_samples: int = 1000
    """--importance-samples: single-unit importance of masked units on a seeded, stratified
    sample of this many images (0: all)."""
    closed_form: bool = True
    """--closed-form: importance of layers followed only by pooling and a dense head computed
    exactly on all the data, no run per unit."""
    metric: str = "auto"
    """--metric: what accuracy means for the output (sdaudit.analysis.metrics): auto,
    classification, per-position, relative or cosine."""
    class_axis: int | None = None
    """--class-axis: the output's class axis; null: from the graph (Softmax axis, MatMul's last,
    Conv's 1)."""
    risk: RiskThresholds = field(default_factory=RiskThresholds)
    """--risk-thresholds: the bounds of the risk grades."""
    gate: Gate = field(default_factory=Gate)
    """The CI gate's settings."""

    def __post_init__(self) -> None:
        unknown = [m for m in self.measures if m not in MEASURES]
        if unknown or not self.measures:
            raise BadFlagError(
                f"--measure {','.join(self.measures) or '(empty)'}: unknown measurement "
                f"{', '.join(unknown) or '(none)'}",
                f"choose from all, {', '.join(MEASURES)}",
            )
        if not self.fractions:
            raise BadFlagError("--fractions is empty", "e.g. --fractions 0,0.1,0.2,0.5")
        bad = [f for f in self.fractions if not 0.0 <= f <= 1.0]
        if bad:
            raise BadFlagError(
                f"--fractions {bad[0]} is outside [0, 1]", "fractions of units lie in [0, 1]"
            )
        if list(self.fractions) != sorted(set(self.fractions)):
            raise BadFlagError("--fractions must be increasing and distinct", "e.g. 0,0.25,0.5")
        if self.precision not in PRECISIONS:
            raise BadFlagError(f"--precision {self.precision}: unknown precision",
                               "choose fp32 or fp16")
        from sdaudit.analysis.metrics import METRICS

        if self.metric not in METRICS:
            raise BadFlagError(f"--metric {self.metric!r}", f"choose one of {', '.join(METRICS)}")
        if self.class_axis is not None and self.class_axis < 1:
            raise BadFlagError(f"--class-axis {self.class_axis}: axis 0 is the batch",
                               "give the output's class axis, 1 or more")
        if not 0 <= self.seed <= MAX_SEED:
            raise BadFlagError(f"--seed {self.seed}: seeds are integers from 0 to 2^63 − 1",
                               "e.g. --seed 0")
        if self.draws != "auto" and (isinstance(self.draws, str) or self.draws < 1):
            raise BadFlagError(f"--draws {self.draws}: at least one draw is needed",
                               "e.g. --draws 5, or --draws auto")
        if not self.ci_target > 0:
            raise BadFlagError(f"--ci-target {self.ci_target}: the half-width to reach must be "
                               "positive", "e.g. --ci-target 0.01")
        if self.max_draws < 2:
            raise BadFlagError(f"--max-draws {self.max_draws}: auto needs at least 2 draws to "
                               "estimate an interval", "e.g. --max-draws 50")
        if self.gate.mode not in GATE_MODES:
            raise BadFlagError(f"--gate {self.gate.mode}: unknown gate mode",
                               f"choose {' or '.join(GATE_MODES)}")
        if self.gate.mode == "significant" and self.gate.max_drop is None:
            raise BadFlagError("--gate significant tests the drop against --baseline",
                               "add --baseline OLD.json --max-drop D")
        if any(not a > 0 for a in self.noise_levels) or not self.noise_levels:
            raise BadFlagError("--noise-levels must be positive multiples of each unit's s.d.")
        if self.ablation_value not in ABLATION_VALUES:
            raise BadFlagError(
                f"--ablation-value {self.ablation_value!r}", f"choose {' or '.join(ABLATION_VALUES)}"
            )
        if self.mi_bins < 2:
            raise BadFlagError("--mi-bins must be at least 2")
        if self.chunk_size is not None and self.chunk_size < 1:
            raise BadFlagError("--chunk-size must be at least 1")
        if not 0 <= self.risk.medium <= self.risk.low <= 1:
            raise BadFlagError(
                "--risk-thresholds LOW,MEDIUM must satisfy 1 ≥ LOW ≥ MEDIUM ≥ 0", "e.g. 0.7,0.5"
            )
        if self.gate.max_drop is not None and self.gate.baseline_report is None:
            raise BadFlagError("--max-drop needs --baseline OLD.json to compare against")
        if self.gate.max_drop is not None and not 0 <= self.gate.max_drop < math.inf:
            raise BadFlagError(f"--max-drop {self.gate.max_drop}: a non-negative AUC difference",
                               "e.g. --max-drop 0.05")
        if self.gate.fail_under is not None and not 0 <= self.gate.fail_under <= 1:
            raise BadFlagError("--fail-under is an ablation AUC in [0, 1]")
        gated = self.gate.fail_under is not None or self.gate.baseline_report is not None
        if gated and "ablation" not in self.measures:
            raise BadFlagError("--fail-under and --baseline gate on the ablation AUC, which "
                               f"--measure {','.join(self.measures)} does not measure",
                               "add ablation to --measure")
        if self.importance_samples < 0:
            raise BadFlagError(f"--importance-samples {self.importance_samples}: a sample size "
                               "cannot be negative", "give a number of images, or 0 for all")
        if self.threads is not None and self.threads < 1:
            raise BadFlagError(f"--threads {self.threads}: at least one thread is needed",
                               "leave it out to use every usable core")

    def chunk_for(self, sample_bytes: int) -> int:
        """Samples per chunk: as given, or sized so a chunk's input is about 32 MiB.

        Big images (224² and up) then run in chunks of tens, which keeps the activations that
        ONNX Runtime holds for a chunk (and so the peak memory) bounded."""
        if self.chunk_size is not None:
            return self.chunk_size
        return int(min(256, max(16, (32 << 20) // max(sample_bytes, 1))))

    def wants(self, measure: str) -> bool:
        return measure in self.measures

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["measures"] = list(self.measures)
        data["fractions"] = list(self.fractions)
        data["noise_levels"] = list(self.noise_levels)
        data.pop("device")
        data.pop("threads")
        return data
