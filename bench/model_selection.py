"""Model selection with ``sdaudit compare``: does the ablation AUC order nets as test accuracy does?

Morcos et al. (ICLR 2018, Sec. 3.3) train many nets that all fit their training data and find
that the ones that generalize worse rely more on single directions (a lower area under the
ablation curve). This script builds such a family on sklearn's 8×8 digits, audits every net on
its *own* training data with the labels it was fitted to (the paper's protocol), ranks the
nets with ``sdaudit compare`` and reports Spearman's ρ between the AUC that ``compare`` ranks
by and the accuracy on the 597 clean held-out test images.

Families (``--family``, a comma list; every family has ≥ 6 nets; default ``label-noise``):

``label-noise`` (default)
    All 1,200 training images; a fraction 0, 0.1, 0.2, 0.3, 0.4 or 0.5 of their labels replaced
    by random ones (``digits.corrupt_labels``, as in the paper's Fig. 2), seeds 0, 1, 2
    (18 nets). Every net fits its corrupted labels to ≥ 99.5 %, is audited against them, and
    is tested on the clean test labels. The only family on digits where the ranking tracks
    test accuracy (see docs/model-selection.md).
``size``
    The same net trained on 100, 200, 300, 500, 800 and 1,200 training images (a seeded,
    class-stratified subset of the 1,200-image training split; ``--seeds`` gives one net per
    size per seed; default seed 0).
``size-seed``
    ``size`` with seeds 0, 1 and 2 (18 nets): the subset, the initial weights and the
    minibatch order all change with the seed.
``seed-lr``
    All 1,200 training images; seeds 0, 1, 2 × Adam step sizes 3e-4, 1e-3, 3e-3 (9 nets), the
    setting of the paper's model-selection experiment (seed and learning rate).
``weight-decay``
    All 1,200 images, seed 0, L2 weight decay (Adam's ``weight_decay``) 0, 1e-4, 3e-4, 1e-3,
    3e-3, 1e-2.
``dropout``
    All 1,200 images, seed 0, dropout after every hidden ReLU with p = 0, 0.1, 0.2, 0.3, 0.4,
    0.5 (the exported net is in eval mode, so the dropout is gone from the ONNX graph).

Every net is trained with Adam until its training accuracy (eval mode, on the images and
labels it was given) reaches 99.5 %, checked every 5 epochs, exactly as
``samples/digits.py``'s ``train`` does, but in this script's own loop so that it can add
weight decay and run torch on one thread (two torch threads on a busy two-core machine are
an order of magnitude slower). Example::

    python bench/model_selection.py --out /tmp/model_selection --table /tmp/model_selection/table.md
    python bench/model_selection.py --family size,seed-lr --arch cnn --out /tmp/ms-cnn
    python bench/model_selection.py --family label-noise,size,size-seed,seed-lr,weight-decay,dropout \
        --out /tmp/model_selection --table /tmp/model_selection/table.md

For each family the script writes ``OUT/FAMILY/`` with one ``NAME.onnx``, ``NAME-train.npz``
and ``NAME.json`` (the scan report) per net, ``compare.json`` (the output of ``sdaudit compare
--format json``) and ``results.json``; the markdown table goes to ``--table`` or stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scan_runner import run_scan  # bench/, beside this script
from torch import nn

from sdaudit.analysis.curves import spearman  # the tested implementation the tool uses

# The sample models live in samples/, which is a folder of scripts rather than a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "samples"))
import digits

TARGET_ACC = 0.995
SIZES: tuple[int, ...] = (100, 200, 300, 500, 800, 1200)
FAMILIES: tuple[str, ...] = ("size", "size-seed", "seed-lr", "weight-decay", "dropout", "label-noise")
ARCHS: tuple[str, ...] = ("mlp2x128", "mlp", "cnn")
"""``mlp2x128``: 2 hidden layers of 128 (default); ``mlp``: 3×256; ``cnn``: digits' CNN."""


@dataclass(frozen=True)
class Config:
    """How one net of a family is trained."""

    n_train: int
    seed: int
    lr: float = digits.LEARNING_RATE
    weight_decay: float = 0.0
    dropout: float = 0.0
    noise: float = 0.0

    def name(self, arch: str) -> str:
        """File stem (and ``compare``'s name) of the net: ``mlp2x128-n300-s0-lr0.001-wd0-p0-c0``."""
        return (
            f"{arch}-n{self.n_train}-s{self.seed}-lr{self.lr:g}-wd{self.weight_decay:g}"
            f"-p{self.dropout:g}-c{self.noise:g}"
        )


def family_configs(family: str, seeds: list[int] | None) -> list[Config]:
    """The nets of ``family``; ``seeds`` replaces the family's default seeds."""
    if family == "size":
        return [Config(n, s) for s in seeds or [0] for n in SIZES]
    if family == "size-seed":
        return [Config(n, s) for s in seeds or [0, 1, 2] for n in SIZES]
    if family == "seed-lr":
        return [Config(digits.N_TRAIN, s, lr=lr) for s in seeds or [0, 1, 2] for lr in (3e-4, 1e-3, 3e-3)]
    if family == "weight-decay":
        return [
            Config(digits.N_TRAIN, s, weight_decay=wd)
            for s in seeds or [0]
            for wd in (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
        ]
    if family == "dropout":
        return [
            Config(digits.N_TRAIN, s, dropout=p) for s in seeds or [0] for p in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
        ]
    if family == "label-noise":
        return [
            Config(digits.N_TRAIN, s, noise=c)
            for s in seeds or [0, 1, 2]
            for c in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
        ]
    raise ValueError(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")


@dataclass
class Run:
    """One trained net and, once audited and compared, its AUC and rank."""

    family: str
    name: str
    arch: str
    n_train: int
    seed: int
    lr: float
    weight_decay: float
    dropout: float
    noise: float
    model: str
    data: str
    report: str
    train_acc: float
    test_acc: float
    epochs: int
    train_seconds: float
    ablation_auc: float | None = None
    audit_accuracy: float | None = None
    audit_seconds: float | None = None
    audit_error: str | None = None
    compare_auc: float | None = None
    compare_rank: int | None = None
    overlaps_next: bool | None = None


def make_model(arch: str, seed: int, dropout: float) -> nn.Sequential:
    """Build ``arch`` with weights from ``seed``; ``dropout > 0`` (MLPs only) adds Dropout after each ReLU."""
    if arch == "cnn":
        if dropout:
            raise ValueError("dropout is only implemented for the MLPs")
        return digits.make_cnn(batchnorm=False, seed=seed)
    hidden, depth = (128, 2) if arch == "mlp2x128" else (256, 3)
    model = digits.make_mlp(hidden=hidden, depth=depth, seed=seed)
    if not dropout:
        return model
    layers: list[nn.Module] = []
    for layer in model:
        layers.append(layer)
        if isinstance(layer, nn.ReLU):
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def model_input(arch: str, x: np.ndarray) -> np.ndarray:
    """``x`` (``[N, 1, 8, 8]``) in the input layout of ``arch``."""
    return digits.model_input("cnn" if arch == "cnn" else "mlp", x)


def subset(x: np.ndarray, y: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded, class-stratified subset of ``n`` of the training images (all of them for 1,200)."""
    if n >= len(y):
        return x, y
    from sklearn.model_selection import train_test_split

    x_sub, _, y_sub, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed, shuffle=True)
    return np.ascontiguousarray(x_sub), np.ascontiguousarray(y_sub)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: Config, max_epochs: int) -> tuple[float, int]:
    """``digits.train`` plus weight decay, on one torch thread: Adam until ``TARGET_ACC``.

    The dropout masks come from the global torch RNG, so training runs under a forked RNG
    seeded with the net's seed: the net does not depend on what ran before it in the process,
    and the caller's RNG is left untouched. Returns the final training accuracy (eval mode)
    and the number of epochs run.
    """
    torch.set_num_threads(1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return _fit(model, x, y, cfg, max_epochs)


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, cfg: Config, max_epochs: int) -> tuple[float, int]:
    """The training loop of :func:`fit`."""
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = nn.CrossEntropyLoss()
    acc, epoch = digits.accuracy(model, xt, yt), 0
    for epoch in range(1, max_epochs + 1):
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), 64):
            idx = perm[start : start + 64]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(xt[idx]), yt[idx]).backward()
            opt.step()
        if epoch % 5 == 0 or epoch == max_epochs:
            acc = digits.accuracy(model, xt, yt)
            if acc >= TARGET_ACC:
                break
    model.eval()
    return acc, epoch


def train_one(
    family: str,
    arch: str,
    cfg: Config,
    split: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    out: Path,
) -> Run:
    """Train one net, export it and the exact training data (images and labels) it was fitted to."""
    x_train, y_train, x_test, y_test = split
    x_sub, y_sub = subset(x_train, y_train, cfg.n_train, cfg.seed)
    if cfg.noise:
        y_sub = digits.corrupt_labels(y_sub, cfg.noise, seed=cfg.seed)
    xi_train, xi_test = model_input(arch, x_sub), model_input(arch, x_test)
    model = make_model(arch, cfg.seed, cfg.dropout)
    start = time.perf_counter()
    train_acc, epochs = fit(model, xi_train, y_sub, cfg, digits.MAX_EPOCHS["cnn" if arch == "cnn" else "mlp"])
    seconds = time.perf_counter() - start
    name = cfg.name(arch)
    model_path, data_path = out / f"{name}.onnx", out / f"{name}-train.npz"
    digits.export_onnx(model, model_path, xi_train[:2], check_input=xi_train)
    np.savez(data_path, x=xi_train, y=y_sub.astype(np.int64))
    return Run(
        family=family,
        name=name,
        arch=arch,
        n_train=cfg.n_train,
        seed=cfg.seed,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        dropout=cfg.dropout,
        noise=cfg.noise,
        model=str(model_path),
        data=str(data_path),
        report=str(out / f"{name}.json"),
        train_acc=train_acc,
        test_acc=digits.accuracy(model, xi_test, y_test),
        epochs=epochs,
        train_seconds=seconds,
    )


def scan_command(run: Run, sdaudit: str, draws: str, audit_seed: int) -> list[str]:
    """``sdaudit scan`` of ``run`` on its own training data, writing the JSON report."""
    return [
        *shlex.split(sdaudit),
        "scan",
        run.model,
        "--data",
        run.data,
        "--measure",
        "ablation",
        "--draws",
        str(draws),
        "--seed",
        str(audit_seed),
        "--json",
        run.report,
        "-q",
    ]


def audit(run: Run, sdaudit: str, draws: str, audit_seed: int, timeout: float) -> None:
    """Scan ``run``; store its AUC and unablated accuracy or, without raising, why it failed."""
    report, run.audit_error, run.audit_seconds = run_scan(
        scan_command(run, sdaudit, draws, audit_seed), timeout, report=run.report)
    if report is None:
        return
    try:
        run.ablation_auc = float(report["summary"]["ablation_auc"])
        run.audit_accuracy = float(report["baseline"]["accuracy"])
    except (ValueError, TypeError, KeyError) as exc:
        run.audit_error = f"unexpected report ({type(exc).__name__}: {exc})"


def compare(runs: list[Run], sdaudit: str, out: Path) -> list[str]:
    """Run ``sdaudit compare --format json`` on the audited nets; fill in rank and AUC, return warnings."""
    done = [r for r in runs if r.ablation_auc is not None]
    if len(done) < 2:
        return ["fewer than two audited nets: nothing to compare"]
    cmd = [*shlex.split(sdaudit), "compare", *(r.report for r in done), "--format", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    (out / "compare.json").write_text(proc.stdout, encoding="utf-8")
    if proc.returncode != 0:
        return [f"sdaudit compare exit status {proc.returncode}: {proc.stderr.strip()[-500:]}"]
    result: dict[str, Any] = json.loads(proc.stdout)
    by_report = {str(Path(r.report).resolve()): r for r in done}
    for entry in result["ranking"]:
        run = by_report[str(Path(entry["report"]).resolve())]
        run.compare_auc = float(entry["ablation_auc"])
        run.compare_rank = int(entry["rank"])
        run.overlaps_next = bool(entry["overlaps_next"])
    return [str(w) for w in result.get("warnings", [])]




def fmt(value: float | None, places: int = 4) -> str:
    """A table cell: the number, or ``n/a``."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{places}f}"


def markdown(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table, first column left-aligned, the rest right-aligned."""
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    lines.extend("| " + " | ".join(row) + " |" for row in rows)
    return lines


def family_rho(runs: list[Run]) -> tuple[float, float, float]:
    """ρ(compare AUC, test acc), ρ(−compare rank, test acc) and ρ(train images, test acc)."""
    done = [r for r in runs if r.compare_auc is not None]
    test = [r.test_acc for r in done]
    return (
        spearman([r.compare_auc or 0.0 for r in done], test),
        spearman([-float(r.compare_rank or 0) for r in done], test),
        spearman([float(r.n_train) for r in done], test),
    )


def per_seed_rho(runs: list[Run]) -> list[str]:
    """ρ(compare AUC, test acc) over the nets of each seed, where a family has several seeds."""
    seeds = list(dict.fromkeys(r.seed for r in runs))
    if len(seeds) < 2:
        return []
    cells = []
    for seed in seeds:
        mine = [r for r in runs if r.seed == seed and r.compare_auc is not None]
        rho = spearman([r.compare_auc or 0.0 for r in mine], [r.test_acc for r in mine])
        cells.append(f"seed {seed}: {fmt(rho, 3)} ({len(mine)} nets)")
    return [f"- per seed, ρ(ablation AUC, test acc): {'; '.join(cells)}"]


def family_table(family: str, runs: list[Run], warnings: list[str], seconds: float) -> list[str]:
    """Markdown for one family: one row per net in compare's order, then ρ and warnings."""
    ordered = sorted(runs, key=lambda r: (r.compare_rank is None, r.compare_rank or 0))
    columns = [
        "net",
        "train images",
        "seed",
        "lr",
        "weight decay",
        "dropout",
        "label noise",
        "epochs",
        "train acc",
        "test acc",
        "ablation AUC",
        "compare rank",
        "CI overlaps next",
    ]
    rows = [
        [
            r.name,
            str(r.n_train),
            str(r.seed),
            f"{r.lr:g}",
            f"{r.weight_decay:g}",
            f"{r.dropout:g}",
            f"{r.noise:g}",
            str(r.epochs),
            fmt(r.train_acc),
            fmt(r.test_acc),
            fmt(r.compare_auc),
            "n/a" if r.compare_rank is None else str(r.compare_rank),
            "n/a" if r.overlaps_next is None else ("yes" if r.overlaps_next else "no"),
        ]
        for r in ordered
    ]
    rho_auc, rho_rank, rho_n = family_rho(runs)
    n_done = sum(r.compare_auc is not None for r in runs)
    lines = [f"### {family} ({len(runs)} nets, {seconds:.0f} s)", ""]
    lines += markdown(columns, rows)
    lines += [
        "",
        f"- Spearman ρ(ablation AUC, test acc) = {fmt(rho_auc, 3)} ({n_done} nets); "
        f"ρ(−compare rank, test acc) = {fmt(rho_rank, 3)}",
        *per_seed_rho(runs),
        f"- Spearman ρ(train images, test acc) = {fmt(rho_n, 3)}",
        f"- min train acc = {fmt(min(r.train_acc for r in runs))}; test acc "
        f"{fmt(min(r.test_acc for r in runs))}–{fmt(max(r.test_acc for r in runs))}",
    ]
    worst = [abs((r.audit_accuracy or 0.0) - r.train_acc) for r in runs if r.audit_accuracy is not None]
    if worst:
        lines.append(f"- max |audit's unablated acc − torch train acc| = {max(worst):.3g}")
    lines.extend(f"- audit failure, {r.name}: {r.audit_error}" for r in runs if r.audit_error)
    distinct = sorted(set(warnings))
    if distinct:
        lines.append(
            f"- `sdaudit compare` warnings: {len(warnings)} ({len(distinct)} distinct); first: {distinct[0]}"
        )
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description="Rank digit nets with sdaudit compare vs test accuracy.")
    parser.add_argument("--out", type=Path, required=True, help="folder for models, data and reports")
    parser.add_argument("--family", default="label-noise", help=f"comma list of {', '.join(FAMILIES)}")
    parser.add_argument("--arch", default="mlp2x128", choices=ARCHS)
    parser.add_argument("--seeds", default=None, help="comma list of seeds (default: the family's)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the 1,200/597 train/test split")
    parser.add_argument("--draws", default="10",
                        help="sdaudit scan --draws: a number, or auto (sdaudit's default; default 10)")
    parser.add_argument("--audit-seed", type=int, default=0, help="sdaudit scan --seed, same for all nets")
    parser.add_argument("--sdaudit", default="sdaudit", help="command that runs sdaudit")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per scan")
    parser.add_argument("--table", type=Path, help="write the markdown here (not stdout)")
    args = parser.parse_args(argv)
    args.family = list(dict.fromkeys(f.strip() for f in args.family.split(",") if f.strip()))
    for family in args.family:
        if family not in FAMILIES:
            parser.error(f"unknown family {family!r}; expected one of {', '.join(FAMILIES)}")
    if args.arch == "cnn" and "dropout" in args.family:
        parser.error("the dropout family needs an MLP arch")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()] if args.seeds else None
    except ValueError as exc:
        parser.error(str(exc))
    if args.draws != "auto" and (not args.draws.isdigit() or int(args.draws) < 1):
        parser.error(f"--draws must be auto or at least 1, got {args.draws}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Train, audit and compare every family; exit 1 if a net missed the target, 2 if an audit failed."""
    args = parse_args(argv)
    split = digits.load_digits_split(seed=args.split_seed)
    header = [
        f"Command: `python bench/model_selection.py {shlex.join(sys.argv[1:] if argv is None else argv)}`",
        f"Machine: {platform.machine()}, {platform.processor() or 'unknown CPU'}, "
        f"torch {torch.__version__} on 1 thread, Python {platform.python_version()}",
        "",
    ]
    lines: list[str] = []
    all_runs: list[Run] = []
    total = time.perf_counter()
    for family in args.family:
        out = args.out / family
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        runs: list[Run] = []
        for cfg in family_configs(family, args.seeds):
            run = train_one(family, args.arch, cfg, split, out)
            runs.append(run)
            audit(run, args.sdaudit, args.draws, args.audit_seed, args.timeout)
            print(
                f"{family}/{run.name}: train acc {run.train_acc:.4f} test acc {run.test_acc:.4f} "
                f"({run.epochs} epochs, {run.train_seconds:.1f} s); "
                f"{run.audit_error or f'AUC {fmt(run.ablation_auc)}'} ({run.audit_seconds:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
        warnings = compare(runs, args.sdaudit, out)
        (out / "results.json").write_text(
            json.dumps([asdict(r) for r in runs], indent=2) + "\n", encoding="utf-8"
        )
        lines += [*family_table(family, runs, warnings, time.perf_counter() - start), ""]
        rho = family_rho(runs)[0]
        print(f"{family}: Spearman rho(AUC, test acc) = {fmt(rho, 3)}", file=sys.stderr, flush=True)
        all_runs += runs
    header.insert(2, f"Total time: {time.perf_counter() - total:.0f} s")
    text = "\n".join(header + lines)
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    if any(r.train_acc < TARGET_ACC for r in all_runs):
        for r in all_runs:
            if r.train_acc < TARGET_ACC:
                print(f"warning: {r.family}/{r.name} reached only {r.train_acc:.4f}", file=sys.stderr)
        return 1
    return 2 if any(r.audit_error for r in all_runs) else 0


if __name__ == "__main__":
    sys.exit(main())
