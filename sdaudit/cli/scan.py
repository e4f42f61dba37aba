"""``sdaudit scan MODEL --data PATH``: the audit, its report, and the CI gate's exit code."""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sdaudit.cli.common import (
    InputShapeOpt,
    LayersOpt,
    ModelArg,
    boundary,
    err_console,
    parse_floats,
)
from sdaudit.cli.config_file import load as load_config
from sdaudit.errors import EXIT_GATE_FAILED, EXIT_OK, BadFlagError

if TYPE_CHECKING:
    from sdaudit.paths import PathPlan


class Format(str, Enum):
    text = "text"
    json = "json"
    junit = "junit"
    markdown = "markdown"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class GateMode(str, Enum):
    point = "point"
    significant = "significant"


def _draws(text: str) -> int | str:
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise BadFlagError(f"--draws {text!r} is neither a number nor auto",
                           "e.g. --draws 10, or --draws auto") from None


class Executor(str, Enum):
    local = "local"
    ray = "ray"


class Precision(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"


class AblationValue(str, Enum):
    zero = "zero"
    mean = "mean"


def error_document(fmt: str, model: str) -> Callable[[int, str], None]:
    """What `scan --format junit|markdown` writes to stdout when it cannot finish (exit 2, 3,
    130, 143): a valid document naming the error, never an empty file."""

    def write(code: int, message: str) -> None:
        from sdaudit.cli.common import write_stdout
        from sdaudit.report.formats import junit_error, markdown_error

        if fmt == Format.junit.value:
            write_stdout(junit_error(model, code, message))
        elif fmt == Format.markdown.value:
            write_stdout(markdown_error(model, code, message))

    return write


def _print_dry_run(hooks: _CliHooks, fmt: Format) -> None:
    """--dry-run's output on stdout: the plan and the estimate (JSON with --format json)."""
    from sdaudit.cli.common import write_stdout

    if fmt is Format.json:
        import json
        from dataclasses import asdict

        plan = asdict(hooks.last_plan) if hooks.last_plan is not None else None
        est = hooks.last_estimate.to_dict() if hooks.last_estimate is not None else None
        write_stdout(json.dumps({"plan": plan, "estimate": est}, indent=2) + "\n")
    else:
        write_stdout("".join(f"{k}: {v}\n" for k, v in hooks.lines.items()))


class _CliHooks:
    """Plan, estimate and progress bars on stderr."""

    def __init__(self, quiet: bool, dry_run: bool = False) -> None:
        self.quiet = quiet
        self.dry_run = dry_run  # the plan and estimate go to stdout at the end instead
        self.console = err_console()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self.lines: dict[str, str] = {}
        self.last_plan: Any = None
        self.last_estimate: Any = None

    def _say(self, key: str, line: str) -> None:
        self.lines[key] = line
        if not self.quiet and not self.dry_run:
            self.console.print(f"[dim]{key}:[/] {line}")

    def plan(self, plan: Any) -> None:
        self.last_plan = plan
        parts = []
        for measure, count in plan.by_measure.items():
            if measure == "importance":
                on = ("" if plan.importance_samples >= plan.samples else
                      f" on a sample of {plan.importance_samples:,}")
                closed = (f" + {plan.closed_form_units:,} units in closed form"
                          if plan.closed_form_units else "")
                parts.append(f"importance {count:,}{on}{closed}")
            else:
                parts.append(f"{measure} {count:,}")
        self._say("plan", f"{plan.samples:,} samples; configurations: "
                  f"{', '.join(parts) or 'none'}; {plan.stats_runs} unablated "
                  f"run{'s' if plan.stats_runs != 1 else ''}; {plan.passes} "
                  f"pass{'es' if plan.passes != 1 else ''} over the data; "
                  f"{plan.units:,} units in {plan.layers} layers"
                  + (f"; draws auto: {plan.draws} first, up to {plan.max_draws} "
                     f"(≤ {plan.max_forward_passes:,} forward passes)"
                     if plan.max_draws > plan.draws else ""))

    def estimate(self, estimate: Any) -> None:
        self.last_estimate = estimate
        parts = ", ".join(f"{k} {v:,.1f} s" for k, v in estimate.by_measure.items())
        self._say("estimated time", f"{estimate.total_s:,.1f} s (start-up "
                  f"{estimate.setup_s:,.1f} s, {parts}; calibrated on "
                  f"{estimate.calibrated_on} samples)"
                  + (f"; up to {estimate.most_s:,.1f} s if --draws auto needs its most"
                     if estimate.most_s is not None else ""))

    def progress(self, phase: str, done: int, total: int) -> None:
        if self.quiet:
            return
        if self._progress is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("{task.description:<22}"), BarColumn(),
                                      TextColumn("{task.percentage:>5.1f}%"), TimeRemainingColumn(),
                                      console=self.console, transient=True)
            self._progress.start()
        if phase not in self._tasks:
            self._tasks[phase] = self._progress.add_task(phase, total=max(total, 1))
        self._progress.update(self._tasks[phase], completed=min(done, total))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _path_plan(model: Path, data: Path | None, selectivity_data: Path | None,
               labels: Path | None, class_names: Path | None, loader_script: str | None,
               baseline: Path | None, json_path: Path | None, html_path: Path | None) -> PathPlan:
    """What a scan reads and writes (sdaudit.paths checks that no write touches a read)."""
    from sdaudit.paths import PathPlan, Use, model_reads

    writes = tuple(Use(flag, path) for flag, path in (("--json", json_path), ("--html", html_path))
                   if path is not None)
    # The external data are listed where an existing output lies in the model's folder.
    reads = list(model_reads(model, writes))
    if loader_script is not None:
        script = loader_script if Path(loader_script).exists() else loader_script.partition(":")[0]
        reads.append(Use("--data-loader-script", Path(script)))
    reads.extend(Use(flag, path) for flag, path in (
        ("--data", data), ("--selectivity-data", selectivity_data), ("--labels", labels),
        ("--class-names", class_names), ("--baseline", baseline)) if path is not None)
    return PathPlan(tuple(reads), writes)


def scan(
    ctx: typer.Context,
    model: ModelArg,
    config_file: Path | None = typer.Option(
        None, "--config", is_eager=True, callback=load_config, show_default=False,
        help="A TOML file of scan settings: the flags' names as keys (fail-under = 0.6, "
        "fractions = [0, 0.5]) [default: [tool.sdaudit] of ./pyproject.toml]; flags override it."),
    data: Path | None = typer.Option(None, "--data", "-d", help="An .npz with x (and y), a "
                                     "folder with one sub-folder of images per class (ImageNet "
                                     "WordNet ids included), or a flat folder of images.",
                                     show_default=False),
    select: LayersOpt = "default",
    measure: str = typer.Option("all", help="Comma-separated: all, selectivity, ablation, "
                                "ordered, noise, importance."),
    fractions: str = typer.Option("0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9",
                                  help="Fractions of units to ablate, increasing, in [0, 1]."),
    draws: str = typer.Option("auto", help="Random permutations per point: a number, or auto "
                              "(add draws until the ablation AUC's 95% half-width is at most "
                              "--ci-target, at most --max-draws). Noise runs the first 5 (or N)."),
    ci_target: float = typer.Option(0.01, help="--draws auto: the 95% half-width of the "
                                    "ablation AUC to reach."),
    max_draws: int = typer.Option(50, help="--draws auto: at most this many draws."),
    seed: int = typer.Option(0, help="Seed of every random draw."),
    noise_levels: str = typer.Option("0.0316,0.1,0.316,1,3.16,10",
                                     help="Noise s.d. as multiples α of each unit's own s.d."),
    ablation_value: AblationValue = typer.Option(AblationValue.zero, help="Clamp ablated units "
                                                 "to zero (the paper) or to their mean."),
    per_layer: bool = typer.Option(True, "--per-layer/--no-per-layer",
                                   help="Also ablate each layer on its own."),
    mi_bins: int = typer.Option(10, help="Equal-width bins of the mutual-information estimate."),
    selectivity_data: Path | None = typer.Option(None, help="Held-out data for class "
                                                 "selectivity (default: --data).",
                                                 show_default=False),
    chunk_size: int | None = typer.Option(None, help="Samples per chunk [default: about 32 MiB "
                                          "of input, 16 to 256]; memory is flat in data size.",
                                          show_default=False),
    device: Device = typer.Option(Device.auto, help="auto: CUDA where it works, else CPU."),
    threads: int | None = typer.Option(None, help="ONNX Runtime threads (default: usable cores).",
                                       show_default=False),
    precision: Precision = typer.Option(
        Precision.fp32, help="fp16: the ablation and noise runs in half precision (for CUDA; "
        "slower on CPU). Kept only if it changes at most 0.5 % of the unablated predictions on "
        "the first chunk, else fp32 with a note. Statistics and baseline stay fp32."),
    io_binding: bool | None = typer.Option(
        None, "--io-binding/--no-io-binding", help="Copy each chunk's cut tensors to the device "
        "once for all its configurations [default: on with CUDA].", show_default=False),
    prune: bool | None = typer.Option(
        None, "--prune/--no-prune", help="Run zero-ablation configurations as pruned graphs "
        "(ablated channels neither read nor computed; same results, less work): --prune for "
        "every one that ablates at least 5 % of its units and can be, --no-prune for none "
        "[default: where the saving should outweigh building the graphs, kept after the first "
        "chunk only if faster].", show_default=False),
    importance_samples: int = typer.Option(
        1000, help="Single-unit importance of units without a closed form runs on a seeded "
        "sample of this many images, stratified by class (0: all); each unit's standard error "
        "is reported."),
    closed_form: bool = typer.Option(
        True, "--closed-form/--no-closed-form", help="Importance of layers followed only by "
        "global pooling and a dense head computed exactly from the pooled activations and the "
        "weights (no run per unit); --no-closed-form runs every unit masked."),
    metric: str = typer.Option(
        "auto", help="What accuracy means for the output: classification ([N, K] class "
        "scores), per-position (argmax agreement at every position of [N, T, V], [N, K, H, W], "
        "a detector's anchors), relative (1 - normalized L2 change) or cosine [default: auto, "
        "by the output's shape]."),
    class_axis: int | None = typer.Option(
        None, help="The output's class axis for per-position metrics [default: from the graph: "
        "a Softmax's axis, a MatMul's last axis, a Conv's channels].", show_default=False),
    executor: Executor = typer.Option(Executor.local, help="Who runs the units of work (a chunk "
                                      "under a pass's configurations): local (this process) or "
                                      "ray (Ray actors: pip install 'sdaudit[ray]')."),
    ray_address: str | None = typer.Option(None, help="--executor ray: a running Ray cluster "
                                           "[default: start a local Ray with this machine's CPUs "
                                           "and GPUs].", show_default=False),
    workers: int | None = typer.Option(None, help="--executor ray: Ray actors, each with its "
                                       "engine [default: one per GPU, else one per CPU].",
                                       show_default=False),
    checkpoint: Path | None = typer.Option(None, help="Keep each finished unit's counts in this "
                                           "folder; rerun with the same folder to resume an "
                                           "interrupted scan (refused for another model, data "
                                           "or configuration).", show_default=False),
    input_shape: InputShapeOpt = None,
    preset: str = typer.Option("none", help="Image preprocessing preset: none (/255, resize to the "
                               "input) or imagenet (short side 256, centre crop 224, ImageNet "
                               "mean/std). Flags below override it."),
    mean: str | None = typer.Option(None, help="Per-channel mean subtracted after scaling "
                                    "[preset: 0].", show_default=False),
    std: str | None = typer.Option(None, help="Per-channel s.d. divided by after scaling "
                                   "[preset: 1].", show_default=False),
    scale: float | None = typer.Option(None, help="Pixels are multiplied by this first "
                                       "[preset: 1/255].", show_default=False),
    resize: int | None = typer.Option(None, help="Resize the shorter side to this, then centre "
                                      "crop to the input size.", show_default=False),
    crop: int | None = typer.Option(None, help="Centre-crop size where the model's input size "
                                    "is open.", show_default=False),
    bgr: bool | None = typer.Option(None, "--bgr/--rgb", help="Channel order the model expects "
                                    "[preset: RGB].", show_default=False),
    interpolation: str | None = typer.Option(None, help="bilinear, bicubic, lanczos or nearest "
                                             "[preset: bilinear].", show_default=False),
    channels_last: bool | None = typer.Option(None, "--channels-last/--channels-first",
                                              help="Image layout of the model's input "
                                              "[default: from its shape].", show_default=False),
    class_names: Path | None = typer.Option(None, help="One class name per line, in the model's "
                                            "output order (default: the model's metadata).",
                                            show_default=False),
    labels: Path | None = typer.Option(None, help="Labels of a flat image folder: 'filename "
                                       "label' lines or ImageNet's LOC_val_solution.csv.",
                                       show_default=False),
    max_samples: int | None = typer.Option(None, help="Use at most N samples (seeded, "
                                           "stratified by class).", show_default=False),
    samples_per_class: int | None = typer.Option(None, help="Use at most K samples of each "
                                                 "class (seeded).", show_default=False),
    data_loader_script: str | None = typer.Option(None, help="FILE.py[:func] yielding (x, y) "
                                                  "batches (runs that file's code).",
                                                  show_default=False),
    output: str | None = typer.Option(None, help="The model output to audit (default: "
                                      "chosen from the graph: a float [N, K] output, class "
                                      "scores named as such first; the report says which).",
                                      show_default=False),
    json_path: Path | None = typer.Option(None, "--json", help="Write the full JSON report here.",
                                          show_default=False),
    html_path: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML "
                                          "report (plots and numbers) here.", show_default=False),
    fmt: Format = typer.Option(Format.text, "--format", help="What goes to stdout: text (rich), "
                               "json, junit (XML) or markdown."),
    fail_under: float | None = typer.Option(None, help="Gate: fail (exit 1) when the ablation "
                                            "AUC is below this.", show_default=False),
    baseline: Path | None = typer.Option(None, help="Gate: an earlier JSON report of the same "
                                         "model family.", show_default=False),
    max_drop: float | None = typer.Option(None, help="Gate: fail when the AUC falls more than "
                                          "this below --baseline's.", show_default=False),
    gate_mode: GateMode = typer.Option(GateMode.point, "--gate", help="point: --max-drop fails "
                                       "on the drop measured; significant: only when the 95% "
                                       "interval of the drop lies wholly above --max-drop."),
    risk_thresholds: str = typer.Option("0.7,0.5", help="Ablation AUC bounds LOW,MEDIUM of the "
                                        "risk grades."),
    top: int = typer.Option(10, min=0, help="Most selective units to list (0: none)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
    time_budget: str | None = typer.Option(
        None, help="A duration (90s, 10m, 2h): calibrate on the first chunks, then audit the "
        "most images (a seeded sample, stratified by class) and draws whose estimate fits; the "
        "report says what was chosen and the precision it buys. No measure is dropped.",
        show_default=False),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and the estimated "
                                 "time per measure, calibrated on the first two chunks of each "
                                 "pass, then stop: no sweep over the rest, no report written."),
) -> None:
    """Audit MODEL for reliance on single directions (Morcos et al., ICLR 2018).

    Exit codes: 0 audit done and gate passed, 1 gate failed, 2 could not run, 3 internal error.
    """
    hooks = _CliHooks(quiet, dry_run)
    code = EXIT_OK
    with boundary(on_error=error_document(fmt.value, str(model))):
        try:
            from sdaudit.api import Execution, audit
            from sdaudit.config import MEASURES, AuditConfig, Gate, RiskThresholds
            from sdaudit.model.load import parse_input_shapes

            measures = tuple(m.strip() for m in measure.split(",") if m.strip())
            if "all" in measures:
                measures = MEASURES
            risk = parse_floats(risk_thresholds, "--risk-thresholds") or ()
            if len(risk) != 2:
                raise BadFlagError("--risk-thresholds takes two numbers LOW,MEDIUM", "e.g. 0.7,0.5")
            plan = _path_plan(model, data, selectivity_data, labels, class_names,
                              data_loader_script, baseline, json_path, html_path)
            if config_file is not None:  # the settings file is an input too: never overwritten
                from sdaudit.paths import PathPlan, Use

                plan = PathPlan((*plan.reads, Use("--config", config_file)), plan.writes)
            plan.check()
            if threads is not None and threads > 0:
                from sdaudit.ort import usable_cores

                if threads > usable_cores() and not quiet:
                    err_console().print(
                        f"[yellow]--threads {threads} is more than the {usable_cores()} cores "
                        "this process may use: ONNX Runtime runs slower oversubscribed[/]")
            config = AuditConfig(
                layers=select, measures=measures,
                fractions=parse_floats(fractions, "--fractions") or (),
                draws=_draws(draws), seed=seed, ci_target=ci_target, max_draws=max_draws,
                noise_levels=parse_floats(noise_levels, "--noise-levels") or (),
                ablation_value=ablation_value.value, per_layer=per_layer, mi_bins=mi_bins,
                chunk_size=chunk_size, device=device.value, threads=threads,
                precision=precision.value, io_binding=io_binding, prune=prune,
                importance_samples=importance_samples, closed_form=closed_form,
                metric=metric, class_axis=class_axis,
                risk=RiskThresholds(risk[0], risk[1]),
                gate=Gate(fail_under, None if baseline is None else str(baseline), max_drop,
                          gate_mode.value),
            )
            from sdaudit.data import DataOptions, Sampling
            from sdaudit.data.classes import read_class_names

            if data is None and data_loader_script is None:
                raise BadFlagError("no data given", "give --data PATH or --data-loader-script FILE.py")
            for flag, value in (("--max-samples", max_samples),
                                ("--samples-per-class", samples_per_class)):
                if value is not None and value < 1:
                    raise BadFlagError(f"{flag} must be at least 1")
            overrides = {
                "scale": scale, "resize": resize, "crop": crop, "bgr": bgr,
                "interpolation": interpolation,
                "mean": parse_floats(mean, "--mean"), "std": parse_floats(std, "--std"),
            }
            options = DataOptions(
                preset=preset, overrides=overrides, channels_last=channels_last,
                class_names=read_class_names(class_names) if class_names else None,
                labels_file=None if labels is None else str(labels),
                sampling=Sampling(max_samples, samples_per_class, seed),
                loader_script=data_loader_script,
            )
            budget_s = None
            if time_budget is not None:
                from sdaudit.analysis.budget import parse_duration

                budget_s = parse_duration(time_budget)
            report = audit(model, data, config, input_shape=parse_input_shapes(input_shape),
                           data_options=options, selectivity_data=selectivity_data,
                           output=output, hooks=hooks,  # type: ignore[arg-type]
                           dry_run=dry_run, time_budget=budget_s,
                           execution=Execution(executor.value, ray_address, workers,
                                               None if checkpoint is None else str(checkpoint)))
        finally:
            hooks.close()
        if dry_run:
            _print_dry_run(hooks, fmt)
            raise typer.Exit(EXIT_OK)
        from dataclasses import replace

        from sdaudit.cli.config_file import setting_sources

        report = replace(report, settings=setting_sources(ctx))
        from sdaudit.outputs import Outputs
        from sdaudit.report.json_io import report_to_dict, to_json

        data_dict = report_to_dict(report)
        text = to_json(data_dict)
        with Outputs() as outputs:  # every file or none: a failed render leaves nothing behind
            if json_path is not None:
                outputs.stage("--json", json_path, text)
            if html_path is not None:
                from sdaudit.report.html import render_report

                outputs.stage("--html", html_path, render_report(data_dict))
            outputs.commit()
        from sdaudit.cli.common import StdoutClosedError, out_console, silence_stdout, write_stdout

        try:
            if fmt is Format.json:
                write_stdout(text)
            elif fmt is Format.junit:
                from sdaudit.report.formats import junit

                write_stdout(junit(data_dict))
            elif fmt is Format.markdown:
                from sdaudit.report.formats import markdown

                write_stdout(markdown(data_dict))
            else:
                from sdaudit.report.terminal import render

                render(report, out_console(), top=top)
        except StdoutClosedError:
            # The reader went away (`| head`): the audit is done, its exit code stands.
            silence_stdout()
        if fmt is Format.text and not quiet:
            for label, path in (("report", json_path), ("HTML report", html_path)):
                if path is not None:
                    err_console().print(f"[dim]{label} written to {path}[/]")
        code = EXIT_OK if report.gate.passed else EXIT_GATE_FAILED
    raise typer.Exit(code)
