"""Label-noise experiment of Morcos et al. (ICLR 2018), Fig. 2, on 8×8 digits.

Nets that memorize more (trained on a larger fraction of randomly relabelled examples) are
reported to rely more on single directions: ablating their units one by one hurts accuracy
faster, so the area under the ablation curve falls as the corrupted fraction rises (a
negative Spearman correlation between fraction and AUC).

For each architecture and corrupted fraction this script trains a net to ≥ 99.5 % training
accuracy on the corrupted labels, exports it to ONNX with the training data it was fitted to
(corrupted labels included), audits it with ``sdaudit scan --measure ablation`` and writes
a markdown table. Example::

    python bench/label_noise.py --out /tmp/label_noise --table /tmp/label_noise/table.md
    python bench/label_noise.py --out /tmp/label_noise --train-only   # no sdaudit needed
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# The sample models live in samples/, which is a folder of scripts rather than a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples"))
import digits

TARGET_ACC = 0.995


@dataclass
class Run:
    """One trained net and, once audited, its ablation summary."""

    arch: str
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
    audit_error: str | None = None


def fraction_tag(fraction: float) -> str:
    """The ``c{fraction}`` part of the file names: ``0.0``, ``0.2``, ``1.0``."""
    return str(float(fraction))


def train_one(
    arch: str,
    fraction: float,
    split: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    out: Path,
    seed: int,
) -> Run:
    """Corrupt the labels, train to :data:`TARGET_ACC`, export the net and its training data.

    The corrupted labels are what the net is asked to fit, so they are what the audit must
    measure accuracy against: the ``-train.npz`` file holds exactly those labels, with ``x``
    in the model's input layout. Test accuracy is against the clean test labels.
    """
    x_train, y_train, x_test, y_test = split
    y_corrupt = digits.corrupt_labels(y_train, fraction, seed=seed)
    xi_train = digits.model_input(arch, x_train)
    xi_test = digits.model_input(arch, x_test)
    model = digits.make_model(arch, seed=seed)
    history: list[tuple[int, float]] = []
    start = time.perf_counter()
    train_acc = digits.train(
        model,
        xi_train,
        y_corrupt,
        digits.MAX_EPOCHS[arch],
        digits.LEARNING_RATE,
        seed,
        target_acc=TARGET_ACC,
        history=history,
    )
    seconds = time.perf_counter() - start
    test_acc = digits.accuracy(model, xi_test, y_test)
    stem = f"{arch}-c{fraction_tag(fraction)}"
    model_path = out / f"{stem}.onnx"
    data_path = out / f"{stem}-train.npz"
    max_diff = digits.export_onnx(model, model_path, xi_train[:2], check_input=xi_train)
    np.savez(data_path, x=xi_train, y=y_corrupt.astype(np.int64))
    return Run(
        arch=arch,
        fraction=fraction,
        model=str(model_path),
        data=str(data_path),
        train_acc=train_acc,
        test_acc=test_acc,
        epochs=history[-1][0] if history else 0,
        train_seconds=seconds,
        onnx_max_diff=max_diff,
    )


def parse_json_report(stdout: str) -> dict[str, Any]:
    """Parse the scan's JSON report, tolerating log lines printed around it."""
    try:
        report = json.loads(stdout)
    except json.JSONDecodeError:
        first, last = stdout.find("{"), stdout.rfind("}")
        if first < 0 or last <= first:
            raise
        report = json.loads(stdout[first : last + 1])
    if not isinstance(report, dict):
        raise TypeError(f"expected a JSON object, got {type(report).__name__}")
    return report


def audit(run: Run, sdaudit: str, seed: int, timeout: float) -> None:
    """Run ``sdaudit scan`` on ``run`` and store its ablation AUC, or the reason it failed.

    Never raises: a missing executable, a failing scan, unparsable output or a report
    without the expected keys is recorded in ``run.audit_error`` so that one bad net (or a
    not-yet-written command) does not lose the others.
    """
    cmd = [
        *shlex.split(sdaudit),
        "scan",
        run.model,
        "--data",
        run.data,
        "--measure",
        "ablation",
        "--seed",
        str(seed),
        "--format",
        "json",
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        run.audit_error = f"{type(exc).__name__}: {exc}"
        return
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        run.audit_error = f"exit status {proc.returncode}: {' | '.join(tail)}"
        return
    try:
        report = parse_json_report(proc.stdout)
        run.ablation_auc = float(report["summary"]["ablation_auc"])
        run.audit_accuracy = float(report["baseline"]["accuracy"])
    except (ValueError, TypeError, KeyError) as exc:
        run.audit_error = f"unexpected report ({type(exc).__name__}: {exc})"


def rank(values: np.ndarray) -> np.ndarray:
    """Ranks starting at 1, ties given their average rank (as Spearman's rho needs)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(1, len(values) + 1, dtype=np.float64)
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation; NaN for fewer than 3 points or a constant series."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(xs) < 3 or np.ptp(xs) == 0 or np.ptp(ys) == 0:
        return math.nan
    try:
        from scipy.stats import spearmanr
    except ImportError:
        return float(np.corrcoef(rank(xs), rank(ys))[0, 1])
    return float(spearmanr(xs, ys).statistic)


def fmt(value: float | None, digits_: int = 4) -> str:
    """A table cell: the number, or ``n/a``."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits_}f}"


def table(runs: list[Run], audited: bool) -> str:
    """The markdown results table, with per-arch Spearman correlations when audited."""
    columns = [
        "arch",
        "corrupted fraction",
        "train acc",
        "test acc",
        "ablation AUC",
        "audit baseline acc",
        "epochs",
        "train s",
    ]
    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" if c == "arch" else "---:" for c in columns) + "|",
    ]
    for r in runs:
        lines.append(
            f"| {r.arch} | {r.fraction:.2f} | {fmt(r.train_acc)} | {fmt(r.test_acc)} | "
            f"{fmt(r.ablation_auc)} | {fmt(r.audit_accuracy)} | {r.epochs} | "
            f"{r.train_seconds:.1f} |"
        )
    lines.append("")
    lines.append("Train accuracy is on the corrupted labels the net was fitted to; test accuracy")
    lines.append("on the clean test labels.")
    if not audited:
        lines.append("")
        lines.append("Not audited (`--train-only`).")
        return "\n".join(lines) + "\n"
    lines.append("")
    lines.append("Spearman correlation between corrupted fraction and ablation AUC")
    lines.append("(Morcos et al. predict a negative value):")
    lines.append("")
    for arch in dict.fromkeys(r.arch for r in runs):
        done = [r for r in runs if r.arch == arch and r.ablation_auc is not None]
        rho = spearman([r.fraction for r in done], [r.ablation_auc or 0.0 for r in done])
        lines.append(f"- {arch}: rho = {fmt(rho, 3)} ({len(done)} nets)")
    failed = [r for r in runs if r.audit_error]
    if failed:
        lines.append("")
        lines.append("Audit failures:")
        lines.extend(f"- {r.arch} c{fraction_tag(r.fraction)}: {r.audit_error}" for r in failed)
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        description="Train nets on corrupted digit labels and audit their single directions."
    )
    parser.add_argument("--out", type=Path, required=True, help="folder for models and data")
    parser.add_argument("--fractions", default="0,0.2,0.4,0.6,0.8,1.0")
    parser.add_argument(
        "--arch", default="mlp,cnn", help=f"comma list of {', '.join(digits.ARCHS)}"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sdaudit", default="sdaudit", help="command that runs sdaudit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per scan")
    parser.add_argument("--train-only", action="store_true", help="train and export, no audit")
    parser.add_argument("--table", type=Path, help="write the markdown table here (not stdout)")
    args = parser.parse_args(argv)
    args.fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    args.arch = [a.strip() for a in args.arch.split(",") if a.strip()]
    for arch in args.arch:
        if arch not in digits.ARCHS:
            parser.error(f"unknown arch {arch!r}; expected one of {', '.join(digits.ARCHS)}")
    for fraction in args.fractions:
        if not 0.0 <= fraction <= 1.0:
            parser.error(f"fractions must lie in [0, 1], got {fraction}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train (and audit) every arch × fraction.

    Exit status 1 if a net missed the training-accuracy target, else 2 if an audit failed.
    """
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    split = digits.load_digits_split(seed=args.seed)

    runs: list[Run] = []
    for arch in args.arch:
        for fraction in args.fractions:
            run = train_one(arch, fraction, split, out, args.seed)
            runs.append(run)
            print(
                f"{arch} c{fraction_tag(fraction)}: train acc {run.train_acc:.4f} "
                f"test acc {run.test_acc:.4f} ({run.epochs} epochs, {run.train_seconds:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            if not args.train_only:
                audit(run, args.sdaudit, args.seed, args.timeout)
                result = run.audit_error or f"ablation AUC {fmt(run.ablation_auc)}"
                print(f"  audit: {result}", file=sys.stderr, flush=True)

    (out / "results.json").write_text(
        json.dumps([asdict(r) for r in runs], indent=2) + "\n", encoding="utf-8"
    )
    text = table(runs, audited=not args.train_only)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)

    missed = [r for r in runs if r.train_acc < TARGET_ACC]
    for r in missed:
        print(
            f"warning: {r.arch} c{fraction_tag(r.fraction)} reached only {r.train_acc:.4f} "
            f"training accuracy (< {TARGET_ACC})",
            file=sys.stderr,
        )
    if missed:
        return 1
    return 2 if any(r.audit_error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
