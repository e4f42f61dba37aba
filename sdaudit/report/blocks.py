"""The report's plain-dict blocks, field by field: the documentation the JSON Schema's
descriptions are generated from (``python -m sdaudit.report.schema_source``).

The report keeps these blocks as dicts (they are assembled from several stages); each class
here names every key one may hold, with a docstring under it. A key the code writes that is not
documented here fails ``tests/test_schema_docs.py``.
"""

from __future__ import annotations

from typing import TypedDict


class TensorBlock(TypedDict):
    """One graph input or output of the model."""

    name: str
    """The tensor's name in the ONNX graph."""
    dtype: str
    """Element type (float32, float16, int64, ...)."""
    shape: list[int | str | None]
    """Dimensions; strings and nulls are dimensions the model leaves open."""


class MetricBlock(TypedDict):
    """What accuracy means for the audited output (since 1.3; sdaudit.analysis.metrics)."""

    kind: str
    """classification, per-position (sequences, maps, a detector's scores per anchor), relative
    or cosine (embeddings and regressors: the output's change)."""
    class_axis: int
    """The output axis holding the class scores (per-position)."""
    positions: int
    """Positions per sample each scored on its own (per-position)."""
    class_channels: list[int]
    """Where a detector's class scores are part of the class axis: their channels."""


class ModelBlock(TypedDict):
    """The audited model."""

    path: str
    """The model file as given on the command line."""
    sha256: str
    """SHA-256 of the model file: reports of the same model are recognizable whatever its name."""
    converted_onnx: str | None
    """Where a TorchScript or torch.export model's ONNX export is cached; null for .onnx input."""
    inputs: list[TensorBlock]
    """The model's graph inputs."""
    outputs: list[TensorBlock]
    """The model's graph outputs."""
    output_used: str
    """The output whose class scores were audited (--output, default the first)."""
    output_kind: str
    """Whether that output holds `logits` or `probabilities` (told from its values)."""
    output_choice: str
    """Why output_used was audited: --output, or the rule that chose it (since 1.3)."""
    metric: MetricBlock
    """What accuracy means for that output (since 1.3)."""
    opset: int
    """The model's default-domain ONNX opset."""
    ir_version: int
    """The model's ONNX IR version."""


class PreprocessBlock(TypedDict):
    """How image files became model input (image folders only)."""

    preset: str
    """--preset: none or imagenet."""
    scale: float
    """Pixels were multiplied by this first."""
    mean: list[float]
    """Per-channel mean subtracted after scaling."""
    std: list[float]
    """Per-channel s.d. divided by after subtracting the mean."""
    resize: int | None
    """Shorter side resized to this before the centre crop; null: resized straight to the input."""
    crop: int | None
    """Centre-crop size where the model leaves its input size open."""
    bgr: bool
    """Channels reversed to BGR order."""
    interpolation: str
    """Resampling filter: bilinear, bicubic, lanczos or nearest."""


class DataBlock(TypedDict):
    """The data the audit measured."""

    path: str
    """--data (or --data-loader-script) as given."""
    kind: str
    """npz, image-folder (one sub-folder per class), image-flat (a flat folder) or
    loader-script."""
    samples: int
    """Samples used (after --max-samples / --samples-per-class and skipped files)."""
    classes: int
    """Classes the model outputs."""
    class_names: list[str] | None
    """Class names in the model's output order, where known (--class-names, the model's
    metadata, or the folder names)."""
    classes_present: int
    """Classes with at least one sample in the data."""
    skipped: int
    """Unreadable files skipped."""
    skipped_examples: list[str]
    """The first few skipped files."""
    selectivity_data: str | None
    """--selectivity-data: held-out data for class selectivity; null: --data itself."""
    fingerprint: str
    """What identifies the data whatever its path: the file's SHA-256 (npz) or a hash of the
    image files' names, sizes and labels (folders)."""
    labels: str
    """`given` (the data's labels) or `predicted` (no labels: the unablated model's predictions
    stand in, and accuracies are agreement with it)."""
    preprocess: PreprocessBlock
    """Image preprocessing (image folders only)."""
    classes_matched_by: str
    """How class folders were matched to model outputs: class names, class indices, imagenet
    wordnet ids, sorted folder names, labels file, or none (image folders only)."""


class RuntimeBlock(TypedDict):
    """How the audit ran (none of it changes the numbers beyond float rounding)."""

    device: str
    """--device as asked: auto, cpu or cuda."""
    provider: str
    """The ONNX Runtime execution provider that ran the sweep."""
    threads: int
    """ONNX Runtime intra-op threads."""
    onnxruntime_version: str
    """The onnxruntime package's version."""
    cut: list[str]
    """The tensors where the graph was split: the unablated prefix runs once per chunk up to
    them, only the suffix after them per configuration."""
    precision: str
    """Precision of the sweep's suffix: fp32, or fp16 where --precision fp16 kept it."""
    io_binding: bool
    """Whether each chunk's cut tensors were bound on the device once for all configurations."""
    prune: bool
    """Whether zero-ablation configurations ran as pruned graphs (ablated channels skipped)."""
    pruned_configurations: int
    """Configurations that ran pruned on every chunk."""
    fp16_prediction_change: float
    """With --precision fp16: share of the first chunk's unablated predictions that fp16
    changed (kept only at ≤ 0.5 %)."""
    executor: str
    """Who ran the units of work (a chunk under a pass's configurations): local or ray
    (since 1.3)."""
    workers: int
    """Engines that ran units: 1 for local, the Ray actors for ray (since 1.3)."""
    chunk_size: int
    """Samples per chunk actually used (the model's fixed batch where it has one) (since 1.3)."""
    units_run: int
    """Units of work computed by this run, over all passes (since 1.3)."""
    units_resumed: int
    """Units read back from --checkpoint instead of computed (since 1.3)."""


class UnablatedBlock(TypedDict):
    """The unablated model on the data: the reference every curve is normalized by."""

    accuracy: float
    """Accuracy of the unablated model (1.0 by construction where labels are predicted)."""
    loss: float | None
    """Mean cross-entropy loss per sample."""
    per_class_accuracy: list[float | None]
    """Accuracy per class, model output order; null for classes absent from the data."""


class ImportanceCorrelation(TypedDict):
    """The selectivity–importance correlation of one layer."""

    layer: str
    """The layer's name."""
    spearman: float | None
    """Spearman ρ between its units' selectivity and importance (loss rise)."""


class ImportanceBlock(TypedDict):
    """Single-unit importance against class selectivity (Morcos et al., Section 3.4)."""

    metric: str
    """Which importance the correlations use."""
    per_layer: list[ImportanceCorrelation]
    """ρ per layer."""
    spearman_all: float | None
    """ρ over the units of all layers together."""
    method: dict[str, str]
    """How each layer's importance was measured, by layer name: "masked runs" (one run per
    unit) or the closed form of a linear head."""
    samples: int
    """Images the masked-run importance used (a seeded, stratified sample, or all)."""
    population: int
    """Images in the data the sample was drawn from."""
    sample: str
    """How the sample was drawn ("all" where it is the whole data)."""
    interval: str
    """How the importance intervals were computed."""


class EstimateBlock(TypedDict):
    """The time estimate made on the calibration chunk (sdaudit.runtime.estimate.Estimate)."""

    total_s: float
    """Estimated wall time of the whole audit, seconds."""
    setup_s: float
    """Estimated seconds before the first pass (loading, rewriting, sessions)."""
    by_measure: dict[str, float]
    """Estimated seconds by part: "statistics" (prefix and unablated runs), then each measure."""
    calibrated_on: int
    """Samples of the sweep pass's calibration chunk the estimate was made on."""


class TimeBudgetBlock(TypedDict):
    """What --time-budget chose (issue 14)."""

    budget_s: float
    """The budget, seconds."""
    calibration_s: float
    """Seconds spent calibrating before choosing."""
    images: int
    """Images the audit used (stratified by class, seeded)."""
    of: int
    """Images in the data."""
    draws: int
    """Draws per point chosen."""
    predicted_s: float
    """Predicted seconds of the audit with that choice."""
    fits: bool
    """Whether the choice fits the budget (false: even the fewest images and draws exceed it)."""


class RunBlock(TypedDict):
    """The only values that differ between two runs of the same command."""

    started: str
    """Start time, ISO 8601, UTC."""
    finished: str
    """End time, ISO 8601, UTC."""
    duration_s: float
    """Wall-clock seconds of the audit."""
    forward_passes: int
    """Forward passes the plan counted (samples × configurations, plus unablated runs)."""
    estimate: EstimateBlock
    """The time estimate the run made of itself, to compare with `duration_s`."""
    time_budget: TimeBudgetBlock
    """With --time-budget: what it chose."""


class DrawsBlock(TypedDict):
    """How many draws the ablation curves got, and why (--draws, issue 16)."""

    mode: str
    """`auto` (draws added until the AUC's interval is narrow enough) or `fixed`."""
    used: int
    """Draws the curves got."""
    first: int
    """Draws of the first batch (auto)."""
    max: int
    """--max-draws (auto)."""
    target: float | None
    """--ci-target: the 95 % half-width of the AUC to reach (auto)."""
    half_width: float | None
    """The half-width reached."""
    passes: int
    """Passes over the data the draws took."""
    stopped: str
    """Why no more draws: fixed, target (reached), images (the images' share of the interval
    dominates), max_draws, or passes."""


class BaselineDifferenceBlock(TypedDict):
    """This report's ablation AUC against the --baseline report's (issue 16)."""

    difference: float | None
    """AUC minus the baseline's AUC."""
    ci: list[float | None]
    """95 % interval of the difference."""
    paired: bool
    """Whether the draws were paired (same permutations in both reports)."""
    significant: bool
    """Whether the interval excludes 0."""


class SettingsBlock(TypedDict):
    """Where scan's settings came from (schema 1.3): a reviewer sees which values a CI job's
    configuration file set and which its command line."""

    config: str | None
    """The configuration read: "--config FILE", "pyproject.toml [tool.sdaudit]", or null."""
    sources: dict[str, str]
    """For every flag not left at its default, by its long name without dashes: "command line"
    or the configuration it came from."""
