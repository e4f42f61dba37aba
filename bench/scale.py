"""The default scan at scale: every measure against the joint random-ablation curve alone.

    python bench/scale.py --out /tmp/sdaudit-scale --images 128 --importance-samples 32

Cases (each command in its own process; wall time from the parent, peak memory = the child's
maximum resident set; the variants of a case run in interleaved rounds):

* ``r50``: an ImageNet ResNet-50 (bench/resnet.py, random weights, seed 0) at 3×224×224 on
  synthetic unlabelled images (standard normal, seed 0): the default scan (every measure, its
  importance on ``--importance-samples`` images) against ``--measure ablation --no-per-layer``;
  the default scan again on twice the images (peak memory against the number of images).
* ``r20``: the reference ResNet-20 of bench/speed.py on 1,024 digits, the default scan.
* ``real`` (with ``--real MODEL``): a real classifier's default scan on the synthetic images.

``--before DIR`` also runs every sdaudit command with ``PYTHONPATH=DIR`` (an older checkout's
root, e.g. made by ``git archive``) in the same rounds. Every sdaudit run writes its JSON
report; the estimate each printed (``run.estimate``) is compared with its wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def prepare(out: Path, images: int) -> dict[str, str]:
    import torch

    sys.path.insert(0, str(HERE))
    import speed
    from resnet import resnet50

    out.mkdir(parents=True, exist_ok=True)
    paths = {"r50": str(out / "resnet50.onnx")}
    if not Path(paths["r50"]).exists():
        torch.manual_seed(0)
        speed._export(resnet50().eval(), torch.zeros(1, 3, 224, 224), paths["r50"])
    rng = np.random.default_rng(0)
    big = rng.standard_normal((2 * images, 3, 224, 224), dtype=np.float32)
    for n in (images, 2 * images):
        p = out / f"synthetic224-{n}.npz"
        if not p.exists():
            np.savez(p, x=big[:n])
        paths[f"data{n}"] = str(p)
    (out / "r20").mkdir(exist_ok=True)
    paths.update({k: v for k, v in speed.prepare(out / "r20").items()
                  if k in ("resnet20", "data1024")})
    return paths


def run(cmd: list[str], pythonpath: str | None) -> dict[str, float]:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err[-2000:]}")
    return {"wall_s": wall, "peak_mib": usage.ru_maxrss / 1024}


def scan(model: str, data: str, report: Path, extra: list[str],
         pythonpath: str | None) -> dict[str, object]:
    cmd = [sys.executable, "-m", "sdaudit", "scan", model, "--data", data, "--device", "cpu",
           "--json", str(report), "-q", *extra]
    result: dict[str, object] = {**run(cmd, pythonpath), "command": " ".join(cmd[2:])}
    d = json.loads(report.read_text())
    est = d["run"].get("estimate")
    if est is not None:
        result["estimate_s"] = est["total_s"]
        result["by_measure"] = est["by_measure"]
        result["error"] = est["total_s"] / float(result["wall_s"]) - 1.0  # type: ignore[arg-type]
    result["in_run_s"] = d["run"]["duration_s"]
    result["auc"] = d["summary"]["ablation_auc"]
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("/tmp/sdaudit-scale"))
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--importance-samples", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--real", default=None, help="a real classifier at 3×224×224 (e.g. "
                    "bench/real_model.py's PP-LCNet): its default scan on the synthetic images")
    ap.add_argument("--before", default=None, help="root of an older checkout to compare")
    ap.add_argument("--after", default=None, help="root of the checkout to measure (default: "
                    "the installed sdaudit)")
    ap.add_argument("--before-cases", default="r20", help="comma-separated name prefixes of the "
                    "cases --before runs (the old default scan of the ResNet-50 takes hours)")
    ap.add_argument("--skip", default="", help="comma-separated: r50, r50mem, r20")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    paths = prepare(args.out, args.images)
    skip = set(args.skip.split(","))
    n = args.images
    imp = ["--importance-samples", str(args.importance_samples)]
    cases: list[tuple[str, str, str, list[str]]] = []
    if "r50" not in skip:
        cases += [("r50 joint only", paths["r50"], paths[f"data{n}"],
                   ["--measure", "ablation", "--no-per-layer"]),
                  ("r50 default", paths["r50"], paths[f"data{n}"], imp)]
    if "r50mem" not in skip:
        cases.append((f"r50 default, {2 * n} images", paths["r50"], paths[f"data{2 * n}"], imp))
    if args.real and "real" not in skip:
        cases.append(("real default", args.real, paths[f"data{n}"], []))
    if "r20" not in skip:
        cases.append(("r20 default", paths["resnet20"], paths["data1024"], []))
    versions = [("after", args.after)] + ([("before", args.before)] if args.before else [])
    results: dict[str, list[dict[str, object]]] = {}
    for r in range(args.rounds):
        for name, model, data, extra in cases:
            for version, pythonpath in versions:
                if version == "before" and not any(
                        name.startswith(p) for p in args.before_cases.split(",")):
                    continue
                # the older version may not know the new flags: it runs its own default
                flags = extra if version == "after" else [
                    f for f in extra if not f.startswith("--importance") and
                    f != str(args.importance_samples)]
                key = f"{name} ({version})"
                report = args.out / f"{key.replace(' ', '_').replace(',', '')}-{r}.json"
                res = scan(model, data, report, flags, pythonpath)
                results.setdefault(key, []).append(res)
                print(f"{key}: {json.dumps(res)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
