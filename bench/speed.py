"""Speed benchmark: sdaudit against the PyTorch-hooks way, a naive ONNX Runtime loop, and the floor.

    python bench/speed.py --out /tmp/sdaudit-speed --write docs/performance.md

The reference sweep (issue 6): ResNet-20 at 3×32×32 (trained briefly on digits upsampled to
32×32), 1,024 images, the outputs of the last three residual blocks ablated jointly,
10 fractions × 5 draws (50 configurations + the unablated one). Each method runs in its own
process, one after another, so wall time and peak memory (ru_maxrss) are its own:

  a. sdaudit  `sdaudit scan --measure ablation --no-per-layer` (the whole CLI run);
  a′. masked  the same with --no-prune (every configuration through the masked suffix);
  b. hooks    PyTorch forward hooks zeroing channels, a full forward per configuration;
  c. naive    ONNX Runtime running the whole instrumented model per configuration;
  d. floor    ONNX Runtime running the prefix once and the masked suffix once per
              configuration (the same sessions sdaudit builds), nothing else.

It also runs sdaudit on 10,240 images (memory flatness), on 512/2,048 images (the cost model),
and on a ResNet-18 at 224×224 with 1,000 synthetic images.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
FRACTIONS = tuple(round(i / 10, 1) for i in range(10))
DRAWS = 5
SEED = 0
BATCH = 256


# -- preparation (torch) ------------------------------------------------------------------------
def _digits32(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Digits upsampled to 3×32×32 in [0, 1], the first ``n`` (repeating the set if needed)."""
    import torch
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images[:, None] / 16.0, dtype=torch.float32)
    x = torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)
    x = x.repeat(1, 3, 1, 1).numpy()
    y = d.target.astype(np.int64)
    reps = -(-n // len(x))
    return np.concatenate([x] * reps)[:n], np.concatenate([y] * reps)[:n]


def prepare(out: Path) -> dict[str, str]:
    import torch

    sys.path.insert(0, str(HERE))
    from resnet import resnet18, resnet20

    torch.manual_seed(SEED)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    paths = {"resnet20": str(out / "resnet20.onnx"), "resnet20_pt": str(out / "resnet20.pt"),
             "resnet18": str(out / "resnet18.onnx")}
    if not Path(paths["resnet20"]).exists():
        x, y = _digits32(1200)
        net = resnet20()
        opt = torch.optim.Adam(net.parameters(), lr=2e-3)
        xt, yt = torch.tensor(x), torch.tensor(y)
        gen = torch.Generator().manual_seed(SEED)
        for _ in range(6):
            net.train()
            perm = torch.randperm(len(xt), generator=gen)
            for i in range(0, len(xt), 64):
                idx = perm[i:i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
                opt.step()
        net.eval()
        torch.save(net.state_dict(), paths["resnet20_pt"])
        _export(net, torch.zeros(1, 3, 32, 32), paths["resnet20"])
    for n in (512, 1024, 2048, 10240):
        p = out / f"digits32-{n}.npz"
        if not p.exists():
            x, y = _digits32(n)
            np.savez(p, x=x, y=y)
        paths[f"data{n}"] = str(p)
    if not Path(paths["resnet18"]).exists():
        net = resnet18().eval()
        _export(net, torch.zeros(1, 3, 224, 224), paths["resnet18"])
    p = out / "synthetic224-1000.npz"
    if not p.exists():
        rng = np.random.default_rng(SEED)
        np.savez(p, x=rng.standard_normal((1000, 3, 224, 224), dtype=np.float32))
    paths["data224"] = str(p)
    return paths


def _export(net: object, example: object, path: str) -> None:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (example,), path, dynamo=False, input_names=["input"],
                          output_names=["logits"], opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})


def block_outputs(onnx_path: str, count: int = 3) -> list[str]:
    """ONNX names of the last ``count`` residual-block outputs (the Relu after each Add)."""
    import onnx

    model = onnx.load(onnx_path)
    adds = {o for n in model.graph.node if n.op_type == "Add" for o in n.output}
    outs = [n.output[0] for n in model.graph.node if n.op_type == "Relu" and n.input[0] in adds]
    return outs[-count:]


def masks_for(units: int) -> np.ndarray:
    """The same 1 + 50 masks sdaudit draws for --seed 0 (joint random ablation)."""
    from sdaudit.analysis.draws import permutation_masks

    rows, _ = permutation_masks(np.random.SeedSequence(SEED).spawn(3)[0], np.arange(units), units,
                                FRACTIONS, 0, DRAWS)
    return np.concatenate([np.ones((1, units), np.float32), rows])


def curve(correct: np.ndarray, n: int) -> list[float]:
    acc = correct[1:].reshape(DRAWS, len(FRACTIONS)) / n
    return acc.mean(axis=0).round(4).tolist()


# -- the methods (each in its own process) -----------------------------------------------------
def run_hooks(args: argparse.Namespace) -> dict[str, object]:
    import torch

    sys.path.insert(0, str(HERE))
    from resnet import resnet20

    torch.set_num_threads(len(os.sched_getaffinity(0)))
    net = resnet20()
    net.load_state_dict(torch.load(args.torch_weights, weights_only=True))
    net.eval()
    data = np.load(args.data)
    x, y = torch.tensor(data["x"]), torch.tensor(data["y"])
    blocks = [net.blocks[i].out_relu for i in (6, 7, 8)]
    sizes = [64, 64, 64]
    masks = torch.tensor(masks_for(sum(sizes)))
    current = {"mask": masks[0]}
    offsets = np.cumsum([0, *sizes])

    def hook(i: int):
        def apply(_module, _inputs, output):
            m = current["mask"][offsets[i]:offsets[i + 1]]
            return output * m[None, :, None, None]
        return apply

    for i, module in enumerate(blocks):
        module.register_forward_hook(hook(i))
    t0 = time.perf_counter()
    correct = np.zeros(len(masks))
    with torch.inference_mode():
        for c in range(len(masks)):
            current["mask"] = masks[c]
            for s in range(0, len(x), BATCH):
                pred = net(x[s:s + BATCH]).argmax(1)
                correct[c] += int((pred == y[s:s + BATCH]).sum())
    return {"seconds": time.perf_counter() - t0, "curve": curve(correct, len(x))}


def _sdaudit_models(args: argparse.Namespace) -> tuple[object, object, list[str]]:
    from sdaudit.model.layers import discover_layers, select_layers
    from sdaudit.model.load import load_model
    from sdaudit.rewrite.instrument import instrument

    loaded = load_model(args.model)
    layers = select_layers(discover_layers(loaded.proto), ",".join(args.layers))
    inst = instrument(loaded.proto, layers, noise=False, stats=False, verify=False)
    return loaded, inst, [la.name for la in layers]


def run_naive(args: argparse.Namespace) -> dict[str, object]:
    from sdaudit.ort import make_session

    _, inst, _ = _sdaudit_models(args)
    data = np.load(args.data)
    x, y = data["x"], data["y"]
    sess = make_session(inst.model.SerializeToString(), "cpu")
    masks = masks_for(sum(la.channels for la in inst.layers))
    offsets = np.cumsum([0, *[la.channels for la in inst.layers]])
    t0 = time.perf_counter()
    correct = np.zeros(len(masks))
    for c, mask in enumerate(masks):
        feeds = {name: mask[None, offsets[i]:offsets[i + 1]]
                 for i, name in enumerate(inst.mask_inputs)}
        for s in range(0, len(x), BATCH):
            out = sess.run(["logits"], {"input": x[s:s + BATCH], **feeds})[0]
            correct[c] += int((out.argmax(1) == y[s:s + BATCH]).sum())
    return {"seconds": time.perf_counter() - t0, "curve": curve(correct, len(x))}


def run_floor(args: argparse.Namespace) -> dict[str, object]:
    from sdaudit.ort import make_session
    from sdaudit.rewrite.split import split

    _, inst, _ = _sdaudit_models(args)
    parts = split(inst, ("logits",))
    x = np.load(args.data)["x"]
    prefix = make_session(parts.prefix.SerializeToString(), "cpu", spin=False)  # as sdaudit
    suffix = make_session(parts.suffix.SerializeToString(), "cpu")
    masks = masks_for(sum(la.channels for la in inst.layers))
    offsets = np.cumsum([0, *[la.channels for la in inst.layers]])
    feeds_per_config = [{name: mask[None, offsets[i]:offsets[i + 1]]
                         for i, name in enumerate(inst.mask_inputs)} for mask in masks]
    names = list(parts.prefix_outputs)
    t0 = time.perf_counter()
    for s in range(0, len(x), BATCH):
        cut = dict(zip(names, prefix.run(names, {"input": x[s:s + BATCH]}), strict=True))
        for feeds in feeds_per_config:
            suffix.run(["logits"], {**cut, **feeds})
    return {"seconds": time.perf_counter() - t0}


def run_sdaudit(args: argparse.Namespace, prune: bool = True) -> dict[str, object]:
    """The CLI as a user runs it (pruned suffixes where they pay); ``prune=False``: --no-prune."""
    cmd = [str(Path(sys.executable).with_name("sdaudit")), "scan", args.model, "--data", args.data,
           "--measure", "ablation", "--no-per-layer", "--layers", ",".join(args.layers),
           "--draws", str(DRAWS), "--fractions", ",".join(str(f) for f in FRACTIONS),
           "--seed", str(SEED), "--device", "cpu", "--format", "json", "-q",
           *([] if prune else ["--no-prune"])]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - t0
    report = json.loads(done.stdout)
    return {"seconds": seconds, "curve": [round(v, 4) for v in report["ablation"]["accuracy_mean"]],
            "auc": report["summary"]["ablation_auc"], "run_s": report["run"]["duration_s"],
            "samples": report["data"]["samples"],
            "pruned": report["runtime"].get("pruned_configurations", 0)}


def run_masked(args: argparse.Namespace) -> dict[str, object]:
    """sdaudit without pruned suffixes: every configuration runs the masked suffix."""
    return run_sdaudit(args, prune=False)


METHODS = {"hooks": run_hooks, "naive": run_naive, "floor": run_floor, "sdaudit": run_sdaudit,
           "masked": run_masked}


def measure(method: str, model: str, data: str, layers: list[str], weights: str = "") -> dict:
    """Run one method in a fresh process; its wall time, peak memory and curve."""
    cmd = [sys.executable, __file__, "--worker", method, "--model", model, "--data", data,
           "--layers", ",".join(layers), "--torch-weights", weights]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    process_s = time.perf_counter() - t0
    if status != 0:
        raise SystemExit(f"{method} failed")
    result = json.loads(out.strip().splitlines()[-1])
    # A child's own children (the sdaudit CLI) count in RUSAGE_CHILDREN of the child, which
    # wait4 reports as the larger of the two.
    result["peak_mib"] = round(usage.ru_maxrss / 1024, 1)
    # The whole process: interpreter start, imports (torch, onnxruntime), loading the model and
    # data, the sweep. For sdaudit that is its own CLI process ("seconds").
    result["process_s"] = result["seconds"] if method in ("sdaudit", "masked") else process_s
    return result


def _median_run(runs: list[dict]) -> dict:
    """The run with the median wall time, with every round's times beside it."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    median = dict(ordered[(len(ordered) - 1) // 2])
    median["rounds_s"] = [round(r["seconds"], 2) for r in runs]
    median["rounds_process_s"] = [round(r.get("process_s", r["seconds"]), 2) for r in runs]
    return median


def machine() -> str:
    import onnxruntime

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {len(os.sched_getaffinity(0))} cores usable, "
            f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
            f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="/tmp/sdaudit-speed")
    parser.add_argument("--write", help="write the markdown table here (docs/performance.md)")
    parser.add_argument("--worker", choices=sorted(METHODS), help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--layers", help=argparse.SUPPRESS)
    parser.add_argument("--torch-weights", default="", help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds of the methods on the reference sweep (median shown)")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: hooks,r18")
    parser.add_argument("--only-r18", action="store_true",
                        help="rerun only the ResNet-18 part, reusing OUT/results.json for the rest")
    parser.add_argument("--from-results", action="store_true",
                        help="write the table from OUT/results.json without running anything")
    args = parser.parse_args()
    if args.worker:
        args.layers = args.layers.split(",")
        print(json.dumps(METHODS[args.worker](args)))
        return 0

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "results.json"
    if args.from_results or args.only_r18:
        results = json.loads(saved.read_text())
        results["scaling"] = {int(k): v for k, v in results["scaling"].items()}
    else:
        results = {}
    skip = set(args.skip.split(",")) - {""}
    if not args.from_results:
        paths = prepare(out)
        if not args.only_r18:
            layers = block_outputs(paths["resnet20"])
            # Rounds of all the methods, interleaved, so that drift in the machine's speed
            # (other tenants) hits every method alike; each row reports its median round.
            runs: dict[str, list[dict]] = {}
            for _ in range(args.repeat):
                for method in ("sdaudit", "masked", "floor", "naive", "hooks"):
                    if method in skip:
                        continue
                    runs.setdefault(method, []).append(measure(
                        method, paths["resnet20"], paths["data1024"], layers,
                        paths["resnet20_pt"]))
                    print(method, runs[method][-1], flush=True)
            rows = {m: _median_run(r) for m, r in runs.items()}
            scaling = {n: measure("sdaudit", paths["resnet20"], paths[f"data{n}"], layers)
                       for n in (512, 2048, 10240)}
            scaling[1024] = rows["sdaudit"]
            earlier = json.loads(saved.read_text()) if saved.exists() else {}
            results = {"rows": rows, "scaling": scaling, "layers": layers,
                       # --skip r18 keeps the earlier ResNet-18 rows (with their date)
                       "r18": earlier.get("r18"), "r18_when": earlier.get("r18_when")}
        if "r18" not in skip:
            r18_layers = block_outputs(paths["resnet18"])
            results["r18"] = {m: measure(m, paths["resnet18"], paths["data224"], r18_layers)
                              for m in ("sdaudit", "floor")}
            results["r18_when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            print("resnet18", results["r18"], flush=True)
        saved.write_text(json.dumps(results, indent=1))
    text = report(results["rows"], results["scaling"], results["r18"], results["layers"],
                  results.get("r18_when"))
    print(text)
    if args.write:
        Path(args.write).write_text(text)
    return 0


def cost_model(scaling: dict) -> list[str]:
    """Wall time = a + b · images, fitted by least squares (relative) over the measured sizes."""
    sizes = np.array(sorted(scaling), dtype=float)
    times = np.array([scaling[int(n)]["seconds"] for n in sizes])
    # Relative errors weigh alike (weights 1/t): a plain fit lets the largest size, whose
    # run is longest and most exposed to drift in the machine's speed, set the line alone.
    b, a = np.polyfit(sizes, times, 1, w=1.0 / times)
    lines = ["", "### Cost model", "",
             "The work is images × configurations × the suffix's cost per image, plus one prefix "
             "and one statistics run per image, plus a fixed start (imports, rewriting, sessions):",
             "", "    T(N) ≈ T₀ + N · (t_prefix + (1 + C) · t_suffix)", "",
             f"with C the distinct configurations. Fitted over the sizes above: T₀ = {a:.2f} s, "
             f"{1000 * b:.2f} ms per image (≈ {1000 * b / 46:.3f} ms per image and run, the prefix included, "
             "over 45 distinct configurations + the statistics run):", "",
             "| images | measured (s) | model (s) | error |", "|---:|---:|---:|---:|"]
    for n, t in zip(sizes, times, strict=True):
        pred = a + b * n
        lines.append(f"| {int(n):,} | {t:.2f} | {pred:.2f} | {100 * (pred - t) / t:+.1f} % |")
    return lines


def report(rows: dict, scaling: dict, r18: dict | None, layers: list[str],
           r18_when: str | None = None) -> str:
    configs = 1 + DRAWS * len(FRACTIONS)
    lines = [
        "# Performance", "",
        "Measured by `python bench/speed.py --write docs/performance.md` on " + machine() + ".", "",
        "## The reference sweep", "",
        f"ResNet-20 at 3×32×32 (trained briefly on digits upsampled to 32×32), 1,024 images, the "
        f"outputs of the last three residual blocks ({', '.join(f'`{name}`' for name in layers)}) "
        f"ablated jointly, {len(FRACTIONS)} fractions × {DRAWS} draws + the unablated model = "
        f"{configs} configurations. Each method in its own process; peak memory is the process's "
        "maximum resident set. The methods ran in interleaved rounds; each row is the "
        "method's median round, every round's time beside it.", "",
        "Two times per method: the *timed part* is the sweep loop alone (model, sessions and "
        "data ready) for b, c, d, and the whole CLI run (start-up, loading, rewriting, checking, "
        "the unablated statistics, the sweep, the report) for sdaudit; the *whole process* is "
        "from interpreter start to exit for every method (for the hooks: importing torch, "
        "building the net, loading the data).", "",
        "| method | timed part (s) | whole process (s) | images × configurations / s | "
        "peak memory (MiB) | × floor | rounds, timed part (s) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    floor = rows.get("floor", {}).get("seconds")
    for name, label in (("sdaudit", "a. sdaudit scan --measure ablation (whole CLI run)"),
                        ("masked", "a′. the same with --no-prune (masked suffixes only)"),
                        ("hooks", "b. PyTorch forward hooks, full forward per configuration"),
                        ("naive", "c. ONNX Runtime, whole instrumented model per configuration"),
                        ("floor", "d. floor: prefix once, suffix once per configuration")):
        if name not in rows:
            continue
        r = rows[name]
        ratio = f"{r['seconds'] / floor:.2f}" if floor else "–"
        whole = f"{r['process_s']:.2f}" if "process_s" in r else "–"
        rounds = ", ".join(f"{t:.2f}" for t in r.get("rounds_s", [r["seconds"]]))
        lines.append(f"| {label} | {r['seconds']:.2f} | {whole} | "
                     f"{1024 * configs / r['seconds']:,.0f} | {r['peak_mib']:.0f} | {ratio} | "
                     f"{rounds} |")
    if "hooks" in rows:
        hooks = rows["hooks"]["seconds"]
        sd = rows["sdaudit"]["seconds"]
        vs_hooks, vs_floor = sd / hooks, sd / floor
        like = sd / rows["hooks"].get("process_s", hooks)

        def verdict(v: float, limit: float) -> str:
            return "met" if v <= limit else "NOT met"

        lines += ["", f"Against the hooks, like for like (whole process against whole process): "
                  f"sdaudit takes {like:.3f} × the time (target ≤ 0.1: {verdict(like, 0.1)}). "
                  f"Strictly (sdaudit's whole run against the hooks' sweep loop alone): "
                  f"{vs_hooks:.3f} × ({verdict(vs_hooks, 0.1)}). Against the floor: "
                  f"{vs_floor:.2f} × (target ≤ 1.3: {verdict(vs_floor, 1.3)}). "
                  f"The floor's loop itself takes {floor / hooks:.3f} × the hooks' loop"
                  + (", so on this machine the 0.1 target asks for less work than the floor does: "
                     "fewer than one suffix run per configuration, or cheaper suffix runs than "
                     "the floor's masked ones (sdaudit's pruned suffixes are such runs; see "
                     "below). "
                     if floor / hooks > 0.1 else
                     ", so on this machine the strict reading asks sdaudit's whole run (start-up, "
                     "rewriting and checking the graph, the unablated statistics) to cost about "
                     "what the floor's bare loop does. ")
                  + "sdaudit goes below the floor by doing less than it: identical "
                  "configurations run once (the five draws at fraction 0 and the unablated model "
                  "are one run, taken from the statistics run: 45 suffix runs per chunk where the "
                  "floor does 51), and configurations that ablate enough channels run as pruned "
                  "suffixes that neither read nor compute the ablated channels"
                  + (f" ({rows['sdaudit'].get('pruned', 0)} of the 45 here; "
                     f"{rows['masked']['seconds']:.2f} s with --no-prune, row a′, "
                     f"{rows['masked']['seconds'] / floor:.2f} × the floor)"
                     if "masked" in rows else "")
                  + ". ONNX Runtime's times repeat within about ±5 % on this shared "
                  "machine; PyTorch's vary far more from round to round (every round is shown)."]
        sd_rounds, hk_rounds = rows["sdaudit"].get("rounds_s"), rows["hooks"].get("rounds_s")
        if sd_rounds and hk_rounds and len(sd_rounds) == len(hk_rounds) > 1:
            strict = [a / b for a, b in zip(sd_rounds, hk_rounds, strict=True)]
            like_r = [a / b for a, b in zip(sd_rounds, rows["hooks"]["rounds_process_s"],
                                            strict=True)]
            floor_r = [a / b for a, b in zip(rows["floor"]["rounds_s"], hk_rounds, strict=True)]
            lines += ["", "Round by round (same round, same machine state), sdaudit ÷ hooks: "
                      f"like for like {', '.join(f'{v:.3f}' for v in like_r)}; strictly "
                      f"{', '.join(f'{v:.3f}' for v in strict)}; the floor's loop ÷ the hooks' "
                      f"loop {', '.join(f'{v:.3f}' for v in floor_r)}."]
    lines += ["", "Accuracy curves (mean over draws, fractions 0 … 0.9):", ""]
    for name in ("sdaudit", "masked", "hooks", "naive"):
        if name in rows:
            lines.append(f"- {name}: {rows[name]['curve']}")
    if {"sdaudit", "hooks", "naive"} <= rows.keys():
        worst = max(abs(a - b) for m in ("masked", "hooks", "naive") if m in rows
                    for a, b in zip(rows["sdaudit"]["curve"], rows[m]["curve"], strict=True))
        lines.append(f"\nLargest difference between the curves: {worst:.4f} (target ≤ 0.05).")
    lines += ["", "## Scaling and memory", "",
              "sdaudit on the same sweep with more images (the digits repeated):", "",
              "| images | wall time (s) | in-run time (s) | peak memory (MiB) | s per 1,000 images |",
              "|---:|---:|---:|---:|---:|"]
    for n, r in sorted(scaling.items()):
        lines.append(f"| {n:,} | {r['seconds']:.2f} | {r['run_s']:.2f} | {r['peak_mib']:.0f} | "
                     f"{1000 * r['run_s'] / n:.2f} |")
    if 1024 in scaling and 10240 in scaling:
        grow = scaling[10240]["peak_mib"] / scaling[1024]["peak_mib"] - 1
        lines.append(f"\nPeak memory grows {100 * grow:+.1f} % from 1,024 to 10,240 images "
                     "(target: within 10 %).")
    lines += cost_model(scaling)
    lines += ["", "## What makes it fast (and what did not)", "",
              "- The prefix (everything no mask can change) runs once per chunk; each configuration "
              "runs only the suffix, masks fed as inputs (no session rebuilt).",
              "- Identical configurations run once; the unablated row comes from the statistics run.",
              "- A configuration that leaves the first selected layers intact (one layer alone, "
              "one unit) runs only the suffix from the first layer it perturbs, its cut taken "
              "from the statistics run: a default scan of the reference model with its three "
              "block outputs took 32.6 s instead of 51.8 s with every configuration run from "
              "the first layer, identical reports (`python bench/levels.py`). The reference "
              "sweep (joint ablation only) does not use it.",
              "- Sessions: all graph optimizations (ONNX Runtime's NCHWc convolutions), threads = "
              "usable cores. The prefix and statistics sessions do not spin idle threads: spinning, "
              "they held a core during the next session's run (4 statistics runs: 313 → 170 ms).",
              "- typer < 0.29: 0.29 builds a pydantic validator per option per call (+0.2 s per "
              "command).",
              "- Per configuration, Python only adds counts (per-class counts by bincount).",
              "- Stacking configurations in one batch: on this CPU the per-row cost is flat in the "
              "batch size, so it only helps small chunks (fixed 256-row runs).",
              "- Tried, no gain: 2 sessions × 1 thread in parallel (= 1 × 2 threads); chunks of "
              "512/1,024 (same time, more memory); computing only the kept channels of the first "
              "convolution after a mask (Gather + a convolution with runtime weights: ONNX Runtime "
              "loses its prepacked NCHWc kernels, 23 ms vs 17 ms at 64 of 64 channels, 16 vs 17 at "
              "32); thread affinities and denormals-as-zero (within noise). The mask multiply "
              "costs 4.5 % of a suffix run (ONNX Runtime reorders around it out of NCHWc).",
              "- Pruned suffixes (below the floor): with zero ablation an ablated channel is "
              "zero, so a configuration that ablates enough channels runs a graph that neither "
              "reads nor computes them — convolutions reading a masked tensor get their input "
              "columns sliced, convolutions whose outputs are ablated later (through ReLU and "
              "the residual Add) their output rows, channel-wise operations run on the live "
              "channels (sdaudit/rewrite/prune.py; docs/method.md). The pruned configurations "
              "of a pass run as a few ONNX models (up to 48 configurations and 64 MB of weights "
              "each) with a branch per configuration, chained so that "
              "one branch ends before the next begins (unchained, ONNX Runtime kept the "
              "activations of many branches alive together and peak memory grew with their "
              "number), one run per model and chunk: one thread pool, one call. An earlier "
              "attempt with a session per configuration (45 sessions, inputs pruned only) was "
              "slower than masking (5.77 s + 0.19 s to build against 5.19 s): 45 thread pools "
              "took turns on the cores."
              + (f" Here: {rows['sdaudit'].get('pruned', 0)} of the 45 configurations ran "
                 f"pruned; the whole run took {rows['sdaudit']['seconds']:.2f} s against "
                 f"{rows['masked']['seconds']:.2f} s with --no-prune (peak memory "
                 f"{rows['sdaudit']['peak_mib']:.0f} against {rows['masked']['peak_mib']:.0f} "
                 "MiB: the pruned weights, prepacked, and one branch's activations). By default "
                 "sdaudit prunes only where the expected saving outweighs building the graphs "
                 "(on the 200-image PP-LCNet scan of docs/real-model.md it does not)."
                 if "masked" in rows else ""),
              "- Noise sweeps: the standard-normal draw is an input of the noise graph, drawn once "
              "per chunk and draw and shared by the noise levels (common random numbers; "
              "docs/method.md). On the reference model, `sdaudit scan resnet20.onnx --data "
              "digits32-1024.npz --measure noise --layers <the three above> --device cpu` "
              "(6 levels × 5 draws) took 9.84 s with a fresh in-graph draw per run and 6.2 s "
              "with the shared draws; noise AUC 0.7681 and 0.7674.",
              "- CUDA: IO binding (each chunk's cut copied to the GPU once for all its "
              "configurations) and `--precision fp16` (checked on the first chunk, ≤ 0.5 % "
              "changed predictions, else fp32). `bench/gpu.sh` measures both on a GPU; see below."]
    if r18:
        lines += ["", "## ResNet-18 at 224×224", "",
                  "Random weights, 1,000 synthetic images (unlabelled: predictions stand in), the "
                  "last three residual-block outputs, the same 51 configurations. sdaudit sizes "
                  "its chunks to about 32 MiB of input (55 images here); the floor runs batches "
                  f"of {BATCH}. (`bench/speed.py --only-r18` reruns this part alone"
                  f"{'; measured ' + r18_when if r18_when else ''}.)", "",
                  "| method | wall time (s) | peak memory (MiB) |", "|---|---:|---:|"]
        for m, r in r18.items():
            lines.append(f"| {m} | {r['seconds']:.2f} | {r['peak_mib']:.0f} |")
        pruned = r18.get("sdaudit", {}).get("pruned")
        if pruned is not None:
            lines += ["", f"{pruned} of the 45 configurations ran pruned: the pruned weights of "
                      "a pass are capped at 256 MB (each configuration's pruned copy of the "
                      "last stage is about 15 MB here), which costs memory — ONNX Runtime holds "
                      "them and their prepacked copies — and the rest run masked. `--no-prune` "
                      "keeps the memory of the masked sweep (1,323 MiB, 238.0 s when measured "
                      "before pruning, 2026-11-27 10:49 UTC)."]
    lines += ["", "## GPU", "",
              "`bash bench/gpu.sh` runs the reference sweep on the CPU and with CUDA (IO binding on "
              "and off, fp32 and fp16; the noise sweep in fp32 and fp16) and a ResNet-50 at 224² on "
              "5,000 synthetic images (fp32 and fp16), prints a table, and fails unless CPU and "
              "CUDA curves agree within 0.01, IO binding moves them by at most 0.002 (separate "
              "processes may pick different cuDNN kernels), and fp16 stays within 0.005 of fp32. "
              "It has not run on a GPU yet (no session so far had a GPU machine); `DEVICE=cpu "
              "R50_IMAGES=16 bash bench/gpu.sh` runs the same script on the CPU, where all five "
              "checks pass (differences 0.0000, 0.0000, 0.0002, 0.0000, 0.0000)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
