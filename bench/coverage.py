"""Coverage of the ablation AUC's 95 % interval at default settings, against a 300-draw reference.

    python bench/coverage.py [--model samples/digits-mlp.onnx] [--data samples/digits-train-flat.npz]
                             [--seeds 40] [--reference-draws 300] [--out docs/coverage.md]

Each seed runs the audit as `sdaudit scan` does by default (--draws auto, --ci-target 0.01,
--max-draws 50, default fractions and layers; --measure ablation --no-per-layer, which leave
the joint curve and its interval as they are and skip the per-layer curves' time). The
reference is the joint AUC of 300 draws on the same data with a seed no run uses. Written:
coverage (the share of seeds whose interval holds the reference), mean width, draws used.
The reference shares the images, so the interval's image part makes it conservative here;
tests/test_intervals.py checks coverage where the images vary too.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(ROOT / "samples" / "digits-mlp.onnx"))
    ap.add_argument("--data", default=str(ROOT / "samples" / "digits-train-flat.npz"))
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--reference-draws", type=int, default=300)
    ap.add_argument("--out", default=str(ROOT / "docs" / "coverage.md"))
    args = ap.parse_args()
    from sdaudit.api import audit
    from sdaudit.config import AuditConfig

    def run(seed: int, draws: int | str):
        config = AuditConfig(measures=("ablation",), per_layer=False, draws=draws, seed=seed,
                             device="cpu")
        return audit(args.model, args.data, config)

    t0 = time.perf_counter()
    ref = run(10**6, args.reference_draws).summary.ablation_auc
    ref_s = time.perf_counter() - t0
    rows = []
    for seed in range(args.seeds):
        t = time.perf_counter()
        r = run(seed, "auto")
        lo, hi = r.summary.ablation_auc_ci or (math.nan, math.nan)
        rows.append((seed, r.summary.ablation_auc, lo, hi, r.summary.draws["used"],
                     r.summary.draws["stopped"], time.perf_counter() - t))
        print(f"seed {seed}: AUC {rows[-1][1]:.4f} [{lo:.4f}, {hi:.4f}] "
              f"{'covers' if lo <= ref <= hi else 'MISSES'} {ref:.4f}; {rows[-1][4]} draws "
              f"({rows[-1][5]}), {rows[-1][6]:.1f} s", flush=True)
    covered = sum(lo <= ref <= hi for _, _, lo, hi, *_ in rows)
    widths = [hi - lo for _, _, lo, hi, *_ in rows]
    draws = [d for *_, d, _, _ in rows]
    lines = [
        "# Coverage of the ablation AUC's interval", "",
        "Written by `python bench/coverage.py` "
        f"(model `{Path(args.model).name}`, data `{Path(args.data).name}`, {args.seeds} seeds).",
        f"Machine: {platform.processor() or platform.machine()}, {platform.system()}, shared "
        "with five other jobs (times are indicative).", "",
        "Each seed: `--draws auto` (ci-target 0.01, max 50 draws), default fractions and "
        "layers, `--measure ablation --no-per-layer`. Reference: the joint AUC of "
        f"{args.reference_draws} draws (seed 1,000,000) on the same data: {ref:.4f} "
        f"({ref_s:.0f} s).", "",
        "| measure | value |", "|---|---:|",
        f"| seeds whose 95 % interval holds the reference | {covered} / {len(rows)} "
        f"({covered / len(rows):.1%}) |",
        f"| mean width of the interval | {statistics.mean(widths):.4f} |",
        f"| widths (min – max) | {min(widths):.4f} – {max(widths):.4f} |",
        f"| draws used (min / median / max) | {min(draws)} / {statistics.median(draws):g} / "
        f"{max(draws)} |",
        f"| stopped because | {', '.join(sorted({s for *_, s, _ in rows}))} |",
        f"| time per seed (mean) | {statistics.mean(r[6] for r in rows):.1f} s |", "",
        "| seed | AUC | 95 % interval | draws | covers |", "|---:|---:|---|---:|---|",
        *[f"| {s} | {a:.4f} | {lo:.4f} – {hi:.4f} | {d} | {'yes' if lo <= ref <= hi else 'no'} |"
          for s, a, lo, hi, d, _, _ in rows], "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print(f"coverage {covered}/{len(rows)}, mean width {statistics.mean(widths):.4f}; "
          f"written to {args.out}")


if __name__ == "__main__":
    main()
