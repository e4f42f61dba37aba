"""Executors: `--executor ray` against `local` on the reference sweep of bench/speed.py.

    python bench/executors.py --model /tmp/sdaudit-speed/resnet20.onnx \
        --data /tmp/sdaudit-speed/digits32-1024.npz --rounds 2

(`python bench/speed.py` makes the model and data.) The reference sweep: ResNet-20, 1,024 images
in 4 chunks of 256, the last three residual blocks ablated jointly, 10 fractions × 5 draws. Each
variant runs as its own `sdaudit scan` process, rounds interleaved (local, ray ×2, ray ×1, …) so
that drift in a shared machine's speed hits every variant alike; each row is its median round:

* `wall`: the whole process (interpreter, imports, for ray starting a local Ray and its actors);
* `in scan`: the report's `run.duration_s` (from loading the model to the report);
* the reports' numbers are compared with the local one's (they must agree within 1e-6).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VARIANTS = {"local": [], "ray, 2 workers × 1 thread": ["--executor", "ray", "--workers", "2"],
            "ray, 1 worker × 2 threads": ["--executor", "ray", "--workers", "1"]}


def numbers(report: object, path: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    items = (report.items() if isinstance(report, dict) else enumerate(report)
             if isinstance(report, list) else ())
    for key, value in items:
        where = f"{path}.{key}"
        if where in (".run", ".runtime") or isinstance(value, bool | str) or value is None:
            continue
        if isinstance(value, int | float):
            out[where] = float(value)
        else:
            out.update(numbers(value, where))
    return out


def scan(args: argparse.Namespace, flags: list[str]) -> tuple[float, dict]:
    sys.path.insert(0, str(HERE))
    from speed import DRAWS, FRACTIONS, SEED, block_outputs

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        cmd = [str(Path(sys.executable).with_name("sdaudit")), "scan", args.model, "--data",
               args.data, "--measure", "ablation", "--no-per-layer", "--layers",
               ",".join(block_outputs(args.model)), "--draws", str(DRAWS), "--fractions",
               ",".join(str(f) for f in FRACTIONS), "--seed", str(SEED), "--device", "cpu",
               "--chunk-size", "256", "-q", "--json", str(out), *flags]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, text=True)
        return time.perf_counter() - t0, json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/sdaudit-speed/resnet20.onnx")
    parser.add_argument("--data", default="/tmp/sdaudit-speed/digits32-1024.npz")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    runs: dict[str, list[tuple[float, dict]]] = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name, flags in VARIANTS.items():
            runs[name].append(scan(args, flags))
            print(f"round {r + 1} {name}: {runs[name][-1][0]:.1f} s", flush=True)
    reference = numbers(runs["local"][0][1])
    print("| executor | wall (s) | in scan (s) | rounds, wall (s) | numbers as local |")
    print("| --- | ---: | ---: | --- | --- |")
    for name, results in runs.items():
        ordered = sorted(results, key=lambda t: t[0])
        wall, report = ordered[(len(ordered) - 1) // 2]
        ours = numbers(report)
        same = ours.keys() == reference.keys() and all(
            abs(ours[k] - v) <= 1e-6 + 1e-6 * abs(v) for k, v in reference.items())
        print(f"| {name} | {wall:.1f} | {report['run']['duration_s']:.1f} | "
              f"{', '.join(f'{w:.1f}' for w, _ in results)} | {'yes' if same else 'NO'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
