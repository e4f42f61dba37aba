"""A corpus of third-party models, rebuilt offline, audited with no flag the model or data imply.

Models (none written by this team; tools nobody here wrote made each file):

* ``ocr-cls``: PP-OCR's text-direction CNN ([N, 2]) shipped in PyPI's rapidocr-onnxruntime
  1.4.4 wheel (``pip download --no-deps``); ``ocr-cls-fp16``: the same through onnxruntime's
  float16 converter with ``keep_io_types=True`` (its node list comes out unsorted);
* ``ocr-rec``: PP-OCRv4's CTC text recogniser from that wheel, output [N, T, 6625] (a sequence);
* ``ocr-det``: PP-OCRv4's DBNet text detector from that wheel, output [N, 1, H, W] (a map);
* ``skl-mlp``: scikit-learn's MLPClassifier on digits through skl2onnx at its defaults (a
  ``label`` output and a ZipMap of probabilities);
* ``transformer``: a 2-layer torch TransformerEncoder on digits rows (8 tokens of 8 features)
  through ``torch.onnx.export(dynamo=True)``, audited with ``--layers all`` (sequence-first
  [L, N, C] and [N, L, C] hidden units, tokens as space); ``transformer-fp16``: the float16
  converter without ``keep_io_types`` (float16 inputs and outputs), its default layers
  (``--layers all`` on it crashes inside ONNX Runtime: a known, open problem).

Text-line images are rendered offline (seeded, PIL's default font). Labels: ocr-cls's 0/180
degree classes (a line turned upside down is class 1); digits labels for skl-mlp and the
transformer. For each model the script prints plain onnxruntime's figure (accuracy where there
are labels; for the sequence, the mean −log of the top probability per position, which is
sdaudit's unablated per-position loss; for the detector, the mean text probability) against
sdaudit's unablated figure, from ``sdaudit scan MODEL --data DATA --measure ablation --draws 2
--fractions 0,0.25,0.5 --format json -q`` (plus ``--layers all`` for the transformer).

    python bench/corpus.py --out /tmp/corpus [--wheel rapidocr_onnxruntime-1.4.4-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WHEEL = "rapidocr-onnxruntime==1.4.4"
IN_WHEEL = "rapidocr_onnxruntime/models/"
SCAN = ("--measure", "ablation", "--draws", "2", "--fractions", "0,0.25,0.5", "--format", "json",
        "-q")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def _lines(n: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """n seeded text lines as uint8 RGB [n, H, W, 3] (black words on white)."""
    rng = np.random.default_rng(seed)
    font = ImageFont.load_default(size=size[0] * 0.6) if hasattr(ImageFont, "load_default") \
        else ImageFont.load_default()
    out = np.empty((n, size[0], size[1], 3), np.uint8)
    for i in range(n):
        img = Image.new("RGB", (size[1], size[0]), "white")
        text = "".join(rng.choice(list(ALPHABET), int(rng.integers(6, 14))))
        ImageDraw.Draw(img).text((int(rng.integers(2, 12)), size[0] // 8), text, fill="black",
                                 font=font)
        out[i] = np.asarray(img)
    return out


def _chw(images: np.ndarray, mean: float | tuple, std: float | tuple) -> np.ndarray:
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _ort(model: Path, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})


def _scan(model: Path, data: Path, extra: tuple[str, ...] = ()) -> tuple[dict, float]:
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "sdaudit", "scan", str(model), "--data", str(data), *SCAN, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        raise SystemExit(f"sdaudit failed on {model.name}: {done.stderr.strip()[-500:]}")
    return json.loads(done.stdout), time.perf_counter() - t0


def _fp16(src: Path, dst: Path, keep_io_types: bool) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        onnx.save(convert_float_to_float16(onnx.load(str(src)), keep_io_types=keep_io_types),
                  str(dst))
    return dst


def build(out: Path, wheel: Path | None) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d",
                        str(out)], check=True, capture_output=True)
        wheel = next(out.glob("rapidocr_onnxruntime-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        for name in ("ch_ppocr_mobile_v2.0_cls_infer.onnx", "ch_PP-OCRv4_rec_infer.onnx",
                     "ch_PP-OCRv4_det_infer.onnx"):
            (out / name).write_bytes(zf.read(IN_WHEEL + name))
    rows = []

    # ocr-cls: upright (0) and turned (1) lines, the model's own 3×48×192, (x − 0.5) / 0.5
    lines = _lines(200, (48, 192), seed=0)
    y = np.arange(200) % 2
    lines[y == 1] = lines[y == 1][:, ::-1, ::-1]
    np.savez(out / "cls.npz", x=_chw(lines, 0.5, 0.5), y=y)
    cls = out / "ch_ppocr_mobile_v2.0_cls_infer.onnx"
    cls16 = _fp16(cls, out / "cls-fp16.onnx", keep_io_types=True)
    for name, model in (("ocr-cls", cls), ("ocr-cls-fp16", cls16)):
        x = np.load(out / "cls.npz")["x"]
        acc = float((_ort(model, x)[0].argmax(1) == y).mean())
        rep, secs = _scan(model, out / "cls.npz")
        rows.append(_row(name, model, rep, f"accuracy {acc:.4f}", rep["baseline"]["accuracy"],
                         secs, acc))

    # ocr-rec: 3×48×320 lines, (x − 0.5) / 0.5; no labels (per-position agreement)
    np.savez(out / "rec.npz", x=_chw(_lines(48, (48, 320), seed=1), 0.5, 0.5))
    rec = out / "ch_PP-OCRv4_rec_infer.onnx"
    probs = _ort(rec, np.load(out / "rec.npz")["x"])[0]
    nll = float(-np.log(np.clip(probs.max(-1), 1e-12, None)).mean())
    rep, secs = _scan(rec, out / "rec.npz")
    rows.append(_row("ocr-rec", rec, rep, f"per-position −log p_max {nll:.4f}",
                     rep["baseline"]["loss"], secs))

    # ocr-det: 3×96×320 pages of two lines, ImageNet mean/std as rapidocr uses for det
    pages = np.concatenate([_lines(24, (48, 320), seed=2), _lines(24, (48, 320), seed=3)], 1)
    np.savez(out / "det.npz", x=_chw(pages, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
    det = out / "ch_PP-OCRv4_det_infer.onnx"
    mean_p = float(_ort(det, np.load(out / "det.npz")["x"])[0].mean())
    rep, secs = _scan(det, out / "det.npz")
    rows.append(_row("ocr-det", det, rep, f"mean text probability {mean_p:.4f}",
                     rep["baseline"]["accuracy"], secs))

    # skl-mlp: skl2onnx at its defaults
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    xd, yd = load_digits(return_X_y=True)
    xd = (xd / 16).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0).fit(
            xd[:1200], yd[:1200])
    skl = out / "skl-mlp.onnx"
    skl.write_bytes(to_onnx(clf, xd[:1]).SerializeToString())
    np.savez(out / "digits-flat.npz", x=xd[1200:], y=yd[1200:])
    plain = _ort(skl, xd[1200:])
    acc = float((plain[0] == yd[1200:]).mean())
    rep, secs = _scan(skl, out / "digits-flat.npz")
    rows.append(_row("skl-mlp", skl, rep, f"accuracy {acc:.4f}", rep["baseline"]["accuracy"],
                     secs, acc))

    # transformer through the dynamo exporter, and its float16 conversion
    tr = _transformer(out / "transformer.onnx", xd.reshape(-1, 8, 8), yd)
    np.savez(out / "tokens.npz", x=xd[1200:].reshape(-1, 8, 8), y=yd[1200:])
    np.savez(out / "tokens-fp16.npz", x=xd[1200:].reshape(-1, 8, 8).astype(np.float16),
             y=yd[1200:])
    tr16 = _fp16(tr, out / "transformer-fp16.onnx", keep_io_types=False)
    # (the float16 one with its default layers: --layers all crashes inside ONNX Runtime there)
    for name, model, data, dtype, extra in (
            ("transformer", tr, "tokens.npz", np.float32, ("--layers", "all")),
            ("transformer-fp16", tr16, "tokens-fp16.npz", np.float16, ())):
        xt = xd[1200:].reshape(-1, 8, 8).astype(dtype)
        acc = float((_ort(model, xt)[0].argmax(1) == yd[1200:]).mean())
        rep, secs = _scan(model, out / data, extra)
        rows.append(_row(name, model, rep, f"accuracy {acc:.4f}", rep["baseline"]["accuracy"],
                         secs, acc))
    return rows


def _transformer(path: Path, x: np.ndarray, y: np.ndarray) -> Path:
    import torch

    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inp = torch.nn.Linear(8, 32)
            self.pos = torch.nn.Parameter(torch.zeros(1, 8, 32))
            layer = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
            self.enc = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = torch.nn.Linear(32, 10)

        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return self.head(self.enc(self.inp(t) + self.pos).mean(1))

    net = Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    xt, yt = torch.tensor(x[:1200]), torch.tensor(y[:1200])
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        perm = torch.randperm(1200, generator=gen)
        for i in range(0, 1200, 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xt[idx]), yt[idx]).backward()
            opt.step()
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (xt[:2],), str(path), dynamo=True, verbose=False,
                          dynamic_shapes={"t": {0: torch.export.Dim("batch")}})
    return path


def _row(name: str, model: Path, rep: dict, plain: str, unablated: float, secs: float,
         plain_acc: float | None = None) -> dict:
    metric = rep["model"].get("metric", {}).get("kind", "classification")
    return {"model": name, "file": model.name, "output": rep["model"]["output_used"],
            "metric": metric, "plain": plain, "unablated": unablated,
            "match": None if plain_acc is None else abs(plain_acc - unablated) <= 0.005,
            "layers": len(rep["layers"]), "auc": rep["summary"]["ablation_auc"],
            "seconds": round(secs, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/sdaudit-corpus"))
    parser.add_argument("--wheel", type=Path, default=None)
    args = parser.parse_args()
    rows = build(args.out, args.wheel)
    print("| model | output (metric) | plain onnxruntime | sdaudit unablated | within 0.005 | "
          "layers | ablation AUC | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        match = "—" if r["match"] is None else ("yes" if r["match"] else "NO")
        auc = "—" if r["auc"] is None else f"{r['auc']:.3f}"
        print(f"| {r['model']} | `{r['output']}` ({r['metric']}) | {r['plain']} | "
              f"{r['unablated']:.4f} | {match} | {r['layers']} | {auc} | {r['seconds']} |")


if __name__ == "__main__":
    main()
