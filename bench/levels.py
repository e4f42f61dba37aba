"""Suffix levels: a default scan with them against the same scan run from the first layer.

Both with pruned suffixes off (--no-prune), which isolates the levels; then the default scan as
shipped (levels and, where they pay, pruned suffixes) against the first.

    python bench/levels.py [--model M.onnx --data D.npz --layers L1,L2,L3]

Defaults: the reference ResNet-20 and 1,024 images that `bench/speed.py` prepares in
/tmp/sdaudit-speed, with its three block outputs. Prints both wall times and every number of the
JSON reports that differs (none is expected between the first two; with pruned suffixes, sums in
another order can move the last digits).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict):
        return [d for k in a if k != "run" for d in differences(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list):
        if a and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in a):
            gap = float(np.nanmax(np.abs(np.array(a, float) - np.array(b, float))))
            return [f"{path}: {gap:.3g}"] if gap > 0 else []
        return [d for i, (u, v) in enumerate(zip(a, b, strict=True))
                for d in differences(u, v, f"{path}[{i}]")]
    both_nan = isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b)
    return [] if a == b or both_nan else [f"{path}: {a!r} != {b!r}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/sdaudit-speed/resnet20.onnx")
    parser.add_argument("--data", default="/tmp/sdaudit-speed/digits32-1024.npz")
    parser.add_argument("--layers", help="default: the reference model's three block outputs")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))
    from sdaudit.api import audit
    from sdaudit.config import AuditConfig
    from sdaudit.report.json_io import dumps
    from sdaudit.runtime import suffix

    if args.layers is None:
        from speed import block_outputs

        args.layers = ",".join(block_outputs(args.model))
    config = AuditConfig(device="cpu", layers=args.layers, prune=False)
    t0 = time.perf_counter()
    with_levels = json.loads(dumps(audit(args.model, args.data, config)))
    t1 = time.perf_counter()
    shipped = json.loads(dumps(audit(args.model, args.data, AuditConfig(device="cpu",
                                                                        layers=args.layers))))
    t_shipped = time.perf_counter() - t1

    def level_0_only(levels: Any, _offsets: np.ndarray, masks: np.ndarray) -> list:
        return [(levels[0], np.arange(1, len(masks)))]

    suffix.assign_levels = level_0_only
    t2 = time.perf_counter()
    flat = json.loads(dumps(audit(args.model, args.data, config)))
    t3 = time.perf_counter()
    print(f"default scan, suffix levels: {t1 - t0:.2f} s; every configuration from the first "
          f"layer: {t3 - t2:.2f} s")
    diffs = differences(with_levels, flat)
    print("differences:", *diffs[:20], sep="\n  ") if diffs else print("identical reports")
    pruned = shipped["runtime"]["pruned_configurations"]
    print(f"default scan as shipped (levels, {pruned} configurations pruned): {t_shipped:.2f} s")
    diffs = [d for d in differences(shipped, with_levels)
             if not d.startswith((".runtime.prune", ".config.prune"))]
    print("differences from --no-prune:", *diffs[:20], sep="\n  ") if diffs else \
        print("identical reports")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
