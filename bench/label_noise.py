"""Label-noise experiment of Morcos et al. (ICLR 2018), Fig. 2, on 8×8 digits.

Nets that memorize more (trained on a larger fraction of randomly relabelled examples) are
reported to rely more on single directions: ablating their units one by one hurts accuracy
faster, so the area under the ablation curve falls as the corrupted fraction rises (a
negative Spearman correlation between fraction and AUC).

For each architecture, seed and corrupted fraction this script trains a net to ≥ 99.5 %
training accuracy on the corrupted labels, exports it to ONNX with the training data it was
fitted to (corrupted labels included), audits it with ``sdaudit scan --measure ablation`` and
writes markdown tables: one row per net, one row per (arch, fraction) with the mean and
s.d. of the AUC over seeds, and per arch the Spearman correlations per seed, over all nets
pooled and over the per-level means. Example::

    python bench/label_noise.py --out /tmp/label_noise --table /tmp/label_noise/table.md
    python bench/label_noise.py --arch mlp2x128,cnn --seeds 0,1,2 --out /tmp/label_noise
    python bench/label_noise.py --out /tmp/label_noise --train-only   # no sdaudit needed

The seed of a net sets its label corruption, its initial weights, its minibatch order and
the random draws of its audit. The train/test split is the same for every net
(``--split-seed``), so all nets see the same 1,200 training images.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scan_runner import run_scan  # bench/, beside this script
from torch import nn

from sdaudit.analysis.curves import spearman  # the tested implementation the tool uses

# The sample models live in samples/, which is a folder of scripts rather than a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples"))
import digits

TARGET_ACC = 0.995

ARCHS: tuple[str, ...] = (*digits.ARCHS, "mlp2x128")
"""The archs of :mod:`digits` (``mlp`` is 3×256) plus ``mlp2x128``: 2 hidden layers of 128."""


def make_model(arch: str, seed: int) -> nn.Sequential:
    """Build ``arch`` with weights drawn from ``seed``."""
    if arch == "mlp2x128":
        return digits.make_mlp(hidden=128, depth=2, seed=seed)
    return digits.make_model(arch, seed=seed)


def model_input(arch: str, x: np.ndarray) -> np.ndarray:
    """``x`` (``[N, 1, 8, 8]``) in the input layout of ``arch``."""
    if arch == "mlp2x128":
        return digits.flatten(x)
    return digits.model_input(arch, x)


def max_epochs(arch: str) -> int:
    """Epoch cap of ``arch`` (the MLP cap for ``mlp2x128``)."""
    return digits.MAX_EPOCHS["mlp" if arch == "mlp2x128" else arch]


@dataclass
class Run:
    """One trained net and, once audited, its ablation summary."""

    arch: str
    seed: int
    fraction: float
    model: str
    data: str
    train_acc: float
    test_acc: float
    epochs: int
    train_seconds: float
    onnx_max_diff: float
    ablation_auc: float | None = None
    audit_accuracy: float | None = None
    audit_seconds: float | None = None
    audit_error: str | None = None


def fraction_tag(fraction: float) -> str:
    """The ``c{fraction}`` part of the file names: ``0.0``, ``0.2``, ``1.0``."""
    return str(float(fraction))


def run_name(arch: str, fraction: float, seed: int) -> str:
    """File stem and log name of one net: ``mlp2x128-c0.2-s1``."""
    return f"{arch}-c{fraction_tag(fraction)}-s{seed}"


def train_one(
    arch: str,
    fraction: float,
    split: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    out: Path,
    seed: int,
) -> Run:
    """Corrupt the labels, train to :data:`TARGET_ACC`, export the net and its training data.

    ``seed`` draws the corrupted labels, the initial weights and the minibatch order. The
    corrupted labels are what the net is asked to fit, so they are what the audit must
    measure accuracy against: the ``-train.npz`` file holds exactly those labels, with ``x``
    in the model's input layout. Test accuracy is against the clean test labels.
    """
    x_train, y_train, x_test, y_test = split
    y_corrupt = digits.corrupt_labels(y_train, fraction, seed=seed)
    xi_train = model_input(arch, x_train)
    xi_test = model_input(arch, x_test)
    model = make_model(arch, seed=seed)
    history: list[tuple[int, float]] = []
    start = time.perf_counter()
    train_acc = digits.train(
        model,
        xi_train,
        y_corrupt,
        max_epochs(arch),
        digits.LEARNING_RATE,
        seed,
        target_acc=TARGET_ACC,
        history=history,
    )
    seconds = time.perf_counter() - start
    test_acc = digits.accuracy(model, xi_test, y_test)
    stem = run_name(arch, fraction, seed)
    model_path = out / f"{stem}.onnx"
    data_path = out / f"{stem}-train.npz"
    max_diff = digits.export_onnx(model, model_path, xi_train[:2], check_input=xi_train)
    np.savez(data_path, x=xi_train, y=y_corrupt.astype(np.int64))
    return Run(
        arch=arch,
        seed=seed,
        fraction=fraction,
        model=str(model_path),
        data=str(data_path),
        train_acc=train_acc,
        test_acc=test_acc,
        epochs=history[-1][0] if history else 0,
        train_seconds=seconds,
        onnx_max_diff=max_diff,
    )




def scan_command(run: Run, sdaudit: str, draws: int) -> list[str]:
    """The ``sdaudit scan`` command line that audits ``run`` (seeded with the net's seed)."""
    return [
        *shlex.split(sdaudit),
        "scan",
        run.model,
        "--data",
        run.data,
        "--measure",
        "ablation",
        "--seed",
        str(run.seed),
        "--draws",
        str(draws),
        "--format",
        "json",
    ]


def audit(run: Run, sdaudit: str, draws: int, timeout: float) -> None:
    """Run ``sdaudit scan`` on ``run`` and store its ablation AUC, or the reason it failed.

    Never raises: a missing executable, a failing scan, unparsable output or a report
    without the expected keys is recorded in ``run.audit_error`` so that one bad net (or a
    not-yet-written command) does not lose the others.
    """
    report, run.audit_error, run.audit_seconds = run_scan(scan_command(run, sdaudit, draws),
                                                          timeout)
    if report is None:
        return
    try:
        run.ablation_auc = float(report["summary"]["ablation_auc"])
        run.audit_accuracy = float(report["baseline"]["accuracy"])
    except (ValueError, TypeError, KeyError) as exc:
        run.audit_error = f"unexpected report ({type(exc).__name__}: {exc})"






def fmt(value: float | None, digits_: int = 4) -> str:
    """A table cell: the number, or ``n/a``."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits_}f}"


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample s.d. (``ddof=1``); NaN where undefined (no values, or one for the s.d.)."""
    if not values:
        return math.nan, math.nan
    arr = np.asarray(values, dtype=np.float64)
    sd = float(arr.std(ddof=1)) if len(arr) > 1 else math.nan
    return float(arr.mean()), sd


def markdown(columns: list[str], rows: list[list[str]], text_columns: int = 1) -> list[str]:
    """A markdown table; the first ``text_columns`` columns left-aligned, the rest right."""
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if i < text_columns else "---:" for i in range(len(columns))) + "|",
    ]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def per_net_table(runs: list[Run]) -> list[str]:
    """One row per trained net."""
    columns = [
        "arch",
        "seed",
        "corrupted fraction",
        "train acc",
        "test acc",
        "ablation AUC",
        "audit baseline acc",
        "epochs",
        "train s",
        "audit s",
    ]
    rows = [
        [
            r.arch,
            str(r.seed),
            f"{r.fraction:.2f}",
            fmt(r.train_acc),
            fmt(r.test_acc),
            fmt(r.ablation_auc),
            fmt(r.audit_accuracy),
            str(r.epochs),
            f"{r.train_seconds:.1f}",
            "n/a" if r.audit_seconds is None else f"{r.audit_seconds:.1f}",
        ]
        for r in runs
    ]
    return markdown(columns, rows)


def per_level_table(runs: list[Run], audited: bool) -> list[str]:
    """One row per (arch, fraction): AUC mean ± s.d. over seeds, mean accuracies."""
    columns = [
        "arch",
        "corrupted fraction",
        "nets",
        "ablation AUC mean ± s.d.",
        "min train acc",
        "mean test acc",
    ]
    rows = []
    for arch in dict.fromkeys(r.arch for r in runs):
        for fraction in dict.fromkeys(r.fraction for r in runs if r.arch == arch):
            level = [r for r in runs if r.arch == arch and r.fraction == fraction]
            aucs = [r.ablation_auc for r in level if r.ablation_auc is not None]
            mean, sd = mean_sd(aucs)
            auc_cell = f"{fmt(mean)} ± {fmt(sd)}" if audited else "n/a"
            rows.append(
                [
                    arch,
                    f"{fraction:.2f}",
                    f"{len(aucs)}/{len(level)}" if audited else str(len(level)),
                    auc_cell,
                    fmt(min(r.train_acc for r in level)),
                    fmt(mean_sd([r.test_acc for r in level])[0]),
                ]
            )
    return markdown(columns, rows)


def correlations(runs: list[Run]) -> list[str]:
    """Per arch: Spearman rho per seed, over all nets pooled, and over the per-level means."""
    lines = []
    for arch in dict.fromkeys(r.arch for r in runs):
        done = [r for r in runs if r.arch == arch and r.ablation_auc is not None]
        per_seed = []
        for seed in dict.fromkeys(r.seed for r in runs if r.arch == arch):
            mine = [r for r in done if r.seed == seed]
            rho = spearman([r.fraction for r in mine], [r.ablation_auc or 0.0 for r in mine])
            per_seed.append(f"seed {seed}: {fmt(rho, 3)} ({len(mine)} nets)")
        pooled = spearman([r.fraction for r in done], [r.ablation_auc or 0.0 for r in done])
        levels = sorted({r.fraction for r in done})
        means = [mean_sd([r.ablation_auc or 0.0 for r in done if r.fraction == f])[0] for f in levels]
        lines.append(f"- {arch}")
        lines.append(f"  - per seed: {'; '.join(per_seed)}")
        lines.append(f"  - all nets pooled: {fmt(pooled, 3)} ({len(done)} nets)")
        lines.append(f"  - per-level means: {fmt(spearman(levels, means), 3)} ({len(levels)} levels)")
    return lines


def accuracy_check(runs: list[Run]) -> list[str]:
    """How far the audit's unablated accuracy is from the torch training accuracy, per arch."""
    lines = []
    for arch in dict.fromkeys(r.arch for r in runs):
        done = [r for r in runs if r.arch == arch and r.audit_accuracy is not None]
        if not done:
            continue
        worst = max(abs((r.audit_accuracy or 0.0) - r.train_acc) for r in done)
        lines.append(f"- {arch}: max |audit baseline acc − train acc| = {worst:.4g} ({len(done)} nets)")
    return lines


def table(runs: list[Run], audited: bool) -> str:
    """The markdown results: per-net table, per-level table and, when audited, correlations."""
    lines = ["Per net:", ""]
    lines += per_net_table(runs)
    lines += ["", "Per corruption level (over seeds):", ""]
    lines += per_level_table(runs, audited)
    lines += [
        "",
        "Train accuracy is on the corrupted labels the net was fitted to; test accuracy on the",
        "clean test labels. The s.d. is the sample s.d. (ddof = 1) over seeds.",
    ]
    if not audited:
        lines += ["", "Not audited (`--train-only`)."]
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "Spearman correlation between corrupted fraction and ablation AUC",
        "(Morcos et al. predict a negative value):",
        "",
    ]
    lines += correlations(runs)
    check = accuracy_check(runs)
    if check:
        lines += ["", "Audit's unablated accuracy vs the training accuracy measured in torch:", ""]
        lines += check
    failed = [r for r in runs if r.audit_error]
    if failed:
        lines += ["", "Audit failures:"]
        lines.extend(f"- {run_name(r.arch, r.fraction, r.seed)}: {r.audit_error}" for r in failed)
    return "\n".join(lines) + "\n"


def parse_int_list(text: str) -> list[int]:
    """``"0,1,2"`` → ``[0, 1, 2]``, duplicates dropped in order."""
    return list(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Train nets on corrupted digit labels and audit their single directions."
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for models and data")
    parser.add_argument("--fractions", default="0,0.2,0.4,0.6,0.8,1.0")
    parser.add_argument("--arch", default="mlp,cnn", help=f"comma list of {', '.join(ARCHS)}")
    seeds = parser.add_mutually_exclusive_group()
    seeds.add_argument(
        "--seeds",
        default=None,
        help="comma list of seeds, one net per seed per fraction (default 0); a seed sets the "
        "label corruption, the initial weights, the minibatch order and the audit's draws",
    )
    seeds.add_argument("--seed", type=int, default=None, help="a single seed (same as --seeds N)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the train/test split")
    parser.add_argument("--draws", type=int, default=10, help="sdaudit --draws (default 10)")
    parser.add_argument("--sdaudit", default="sdaudit", help="command that runs sdaudit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per scan")
    parser.add_argument("--train-only", action="store_true", help="train and export, no audit")
    parser.add_argument("--table", type=Path, help="write the markdown tables here (not stdout)")
    args = parser.parse_args(argv)
    try:
        args.fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
        args.seeds = (
            parse_int_list(args.seeds)
            if args.seeds is not None
            else [args.seed if args.seed is not None else 0]
        )
    except ValueError as exc:
        parser.error(str(exc))
    args.arch = list(dict.fromkeys(a.strip() for a in args.arch.split(",") if a.strip()))
    for arch in args.arch:
        if arch not in ARCHS:
            parser.error(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
    for fraction in args.fractions:
        if not 0.0 <= fraction <= 1.0:
            parser.error(f"fractions must lie in [0, 1], got {fraction}")
    if not args.arch or not args.fractions or not args.seeds:
        parser.error("--arch, --fractions and --seeds must each name at least one value")
    if any(s < 0 for s in args.seeds):
        parser.error("seeds must be non-negative")
    if args.draws < 1:
        parser.error(f"--draws must be at least 1, got {args.draws}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train (and audit) every arch × seed × fraction.

    ``results.json`` in ``--out`` is rewritten after every net, so an interrupted run keeps
    what it finished. Exit status 1 if a net missed the training-accuracy target, else 2 if
    an audit failed.
    """
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    split = digits.load_digits_split(seed=args.split_seed)

    runs: list[Run] = []
    start = time.perf_counter()
    for arch in args.arch:
        for seed in args.seeds:
            for fraction in args.fractions:
                run = train_one(arch, fraction, split, out, seed)
                runs.append(run)
                print(
                    f"{run_name(arch, fraction, seed)}: train acc {run.train_acc:.4f} "
                    f"test acc {run.test_acc:.4f} ({run.epochs} epochs, "
                    f"{run.train_seconds:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )
                if not args.train_only:
                    audit(run, args.sdaudit, args.draws, args.timeout)
                    result = run.audit_error or f"ablation AUC {fmt(run.ablation_auc)}"
                    print(f"  audit: {result} ({run.audit_seconds:.1f} s)", file=sys.stderr, flush=True)
                (out / "results.json").write_text(
                    json.dumps([asdict(r) for r in runs], indent=2) + "\n", encoding="utf-8"
                )
    print(f"total {time.perf_counter() - start:.0f} s", file=sys.stderr)

    text = table(runs, audited=not args.train_only)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)

    missed = [r for r in runs if r.train_acc < TARGET_ACC]
    for r in missed:
        print(
            f"warning: {run_name(r.arch, r.fraction, r.seed)} reached only {r.train_acc:.4f} "
            f"training accuracy (< {TARGET_ACC})",
            file=sys.stderr,
        )
    if missed:
        return 1
    return 2 if any(r.audit_error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
