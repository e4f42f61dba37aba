"""Train the two sample digit nets on clean labels and write the files under ``samples/``.

Run from the repository root::

    python samples/make_samples.py [--out samples/]

Everything is seeded (split, weights, minibatch order), so rerunning the script on the same
torch build reproduces the same nets. The outputs are small enough to commit (< 3 MB) and
give ``sdaudit`` a real MLP and a real CNN, with their data in every layout it reads.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from digits import (
    LEARNING_RATE,
    MAX_EPOCHS,
    accuracy,
    export_onnx,
    load_digits_split,
    make_model,
    model_input,
    relu_outputs,
    train,
)
from PIL import Image

SEED = 0


def write_pngs(x: np.ndarray, y: np.ndarray, root: Path) -> None:
    """Write ``x`` as 8-bit grayscale PNGs under ``root/<class>/<index>.png``.

    The pixel is ``round(x * 255)``, so reading a PNG and dividing by 255 recovers ``x`` to
    within 0.5/255. ``<index>`` is the row in ``digits-train.npz``, zero-padded to four digits
    so that a sorted directory listing is in data order.
    """
    if root.exists():
        shutil.rmtree(root)
    for cls in range(10):
        (root / str(cls)).mkdir(parents=True)
    pixels = np.rint(x[:, 0] * 255.0).clip(0, 255).astype(np.uint8)
    for index, (img, label) in enumerate(zip(pixels, y, strict=True)):
        Image.fromarray(img).save(root / str(int(label)) / f"{index:04d}.png")


def readme(results: dict[str, dict[str, Any]], total_bytes: int) -> str:
    """The text of ``samples/README.md``, with the accuracies measured in this run."""
    rows = "\n".join(
        f"| `{r['file']}` | {r['input']} | {r['epochs']} | {r['train_acc']:.4f} | "
        f"{r['test_acc']:.4f} |"
        for r in results.values()
    )
    return f"""# Sample models and data

Small, real networks for trying `sdaudit` and for its slower tests. They are trained on
scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes) with clean labels.

Made with (from the repository root, torch {torch.__version__}, CPU):

```
python samples/make_samples.py --out samples/
```

The script is seeded throughout (split, weight init and minibatch order all use seed {SEED}).

| file | input | epochs | train acc | test acc |
|------|-------|-------:|----------:|---------:|
{rows}

Training stops at the first check (every 5 epochs) where the training accuracy reaches
99.5 %; Adam, learning rate {LEARNING_RATE:g}, batch 64, no dropout, no weight decay.

## Files

- `digits-mlp.onnx` — MLP, `input` `[batch, 64]` → 3 × (Linear 256, ReLU) → Linear 10 →
  `logits` `[batch, 10]`. ReLU outputs: {", ".join(f"`{n}`" for n in results["mlp"]["relus"])}.
- `digits-cnn.onnx` — CNN, `input` `[batch, 1, 8, 8]` → Conv 32, Conv 32, MaxPool 2,
  Conv 64, Conv 64 (3×3, pad 1, each followed by ReLU) → Flatten → Linear 128, ReLU →
  Linear 10 → `logits`. ReLU outputs: {", ".join(f"`{n}`" for n in results["cnn"]["relus"])}.
- `digits-train.npz` — `x` float32 `[1200, 1, 8, 8]` in [0, 1] (raw pixels / 16), `y` int64
  `[1200]`: the training images (stratified split, seed {SEED}).
- `digits-test.npz` — the same for the 597 held-out images.
- `digits-train-flat.npz`, `digits-test-flat.npz` — the same with `x` reshaped to `[N, 64]`,
  the MLP's input layout.
- `digits-png/<class>/<index>.png` — the 1,200 training images as 8-bit grayscale PNGs,
  pixel = round(x × 255); `<index>` is the row in `digits-train.npz`.

Both ONNX files come from torch's legacy TorchScript exporter (`dynamo=False`), opset 17,
with a dynamic batch axis and constant folding; the script checks that onnxruntime
reproduces the torch logits on the training data to 1e-5, relative to each example's
largest logit.

Total size: {total_bytes / 1e6:.2f} MB.
"""


def main() -> None:
    """Train, export, check and write all sample files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    args = parser.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    x_train, y_train, x_test, y_test = load_digits_split(seed=SEED)
    np.savez(out / "digits-train.npz", x=x_train, y=y_train)
    np.savez(out / "digits-test.npz", x=x_test, y=y_test)
    np.savez(out / "digits-train-flat.npz", x=model_input("mlp", x_train), y=y_train)
    np.savez(out / "digits-test-flat.npz", x=model_input("mlp", x_test), y=y_test)
    write_pngs(x_train, y_train, out / "digits-png")

    results: dict[str, dict[str, Any]] = {}
    for arch in ("mlp", "cnn"):
        xi_train, xi_test = model_input(arch, x_train), model_input(arch, x_test)
        model = make_model(arch, seed=SEED)
        history: list[tuple[int, float]] = []
        start = time.perf_counter()
        train_acc = train(
            model, xi_train, y_train, MAX_EPOCHS[arch], LEARNING_RATE, SEED, history=history
        )
        seconds = time.perf_counter() - start
        test_acc = accuracy(model, xi_test, y_test)
        path = out / f"digits-{arch}.onnx"
        max_diff = export_onnx(model, path, xi_train[:2], check_input=xi_train)
        relus = relu_outputs(path)
        epochs = history[-1][0] if history else 0
        print(
            f"{arch}: train acc {train_acc:.4f}  test acc {test_acc:.4f}  "
            f"({epochs} epochs, {seconds:.1f} s; onnxruntime max |diff| {max_diff:.2g})"
        )
        print(f"  {path.name} Relu outputs: {', '.join(relus)}")
        results[arch] = {
            "file": path.name,
            "input": "`[batch, 64]`" if arch == "mlp" else "`[batch, 1, 8, 8]`",
            "epochs": epochs,
            "train_acc": train_acc,
            "test_acc": test_acc,
            "relus": relus,
        }

    written = [p for p in out.rglob("digits*") if p.is_file() and p.suffix in (".onnx", ".npz")]
    written += list((out / "digits-png").rglob("*.png"))
    total = sum(p.stat().st_size for p in written)
    (out / "README.md").write_text(readme(results, total), encoding="utf-8")
    print(f"wrote {out} ({total / 1e6:.2f} MB of models and data)")


if __name__ == "__main__":
    main()
