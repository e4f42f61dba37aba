"""Small digit classifiers for exercising ``sdaudit`` end to end.

The nets here are deliberately tiny (sklearn's 8×8 digits, 1,200 training images) so that
they train on two CPU cores in well under a minute, yet big enough to *memorize* fully
random labels. That is the property the single-direction experiments of Morcos et al.
(ICLR 2018) need: the same architecture is trained to ~100 % training accuracy on labels
with increasing corruption, and the nets that memorize more are expected to depend more on
single units.

Every random draw takes an explicit seed so that samples and benchmarks are reproducible.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

N_TRAIN = 1200
"""Training images per split; the remaining 597 of the 1,797 digits are the test set."""

N_CLASSES = 10


def load_digits_split(
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return ``(x_train, y_train, x_test, y_test)`` from sklearn's 8×8 digits.

    ``x`` is float32 ``[N, 1, 8, 8]`` scaled to ``[0, 1]`` (the raw pixels are 0..16), ``y``
    is int64. The split is stratified so that both halves keep the class balance, with
    exactly 1,200 training images and 597 test images; it depends only on ``seed``.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images.astype(np.float32) / np.float32(16.0))[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, train_size=N_TRAIN, stratify=y, random_state=seed, shuffle=True
    )
    return (
        np.ascontiguousarray(x_train, dtype=np.float32),
        np.ascontiguousarray(y_train, dtype=np.int64),
        np.ascontiguousarray(x_test, dtype=np.float32),
        np.ascontiguousarray(y_test, dtype=np.int64),
    )


def make_mlp(hidden: int = 256, depth: int = 3, seed: int = 0) -> nn.Sequential:
    """A ReLU MLP on flattened ``[N, 64]`` inputs: ``depth`` hidden layers of ``hidden`` units.

    Built as a flat ``nn.Sequential`` (no Flatten: the input is already flat) so that the
    legacy ONNX exporter names the ReLU outputs after their module index, e.g.
    ``/1/Relu_output_0``, ``/3/Relu_output_0``, ``/5/Relu_output_0``. The weights are drawn
    from a private RNG seeded with ``seed``; the global torch RNG is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        width = 64
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, N_CLASSES))
        return nn.Sequential(*layers)


def make_cnn(batchnorm: bool = False, seed: int = 0) -> nn.Sequential:
    """A small conv net for ``[N, 1, 8, 8]`` inputs, as one flat ``nn.Sequential``.

    Two 32-channel 3×3 convs, a 2×2 max-pool (8×8 → 4×4), two 64-channel 3×3 convs, then a
    128-unit dense layer. With ``batchnorm=True`` a BatchNorm2d follows each conv (before the
    ReLU); the exporter folds it into the conv in eval mode. Weights come from a private RNG
    seeded with ``seed``.
    """

    def conv(c_in: int, c_out: int) -> list[nn.Module]:
        block: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)]
        if batchnorm:
            block.append(nn.BatchNorm2d(c_out))
        block.append(nn.ReLU())
        return block

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            *conv(1, 32),
            *conv(32, 32),
            nn.MaxPool2d(2),
            *conv(32, 64),
            *conv(64, 64),
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 128),
            nn.ReLU(),
            nn.Linear(128, N_CLASSES),
        )


def corrupt_labels(
    y: np.ndarray, fraction: float, seed: int, n_classes: int = N_CLASSES
) -> np.ndarray:
    """Return a copy of ``y`` with ``fraction`` of the labels replaced by random ones.

    This is the protocol of Zhang et al. (2017) used by Morcos et al. (2018): a seeded
    random subset of ``round(fraction * N)`` examples gets labels drawn uniformly from all
    ``n_classes`` classes, so a replaced label equals the true one with probability
    ``1 / n_classes``. ``fraction=1`` therefore gives fully random labels.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    rng = np.random.default_rng(seed)
    out = np.array(y, dtype=np.int64, copy=True)
    n_corrupt = round(fraction * len(out))
    idx = rng.choice(len(out), size=n_corrupt, replace=False)
    out[idx] = rng.integers(0, n_classes, size=n_corrupt)
    return out


def accuracy(model: nn.Module, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor) -> float:
    """Accuracy of ``model`` in eval mode (as exported), computed in one batch."""
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        acc = (model(xt).argmax(dim=1) == yt).float().mean().item()
    model.train(was_training)
    return float(acc)


def train(  # noqa: PLR0917, RUF100 - positional signature is the documented API
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    epochs: int,
    lr: float,
    seed: int,
    batch_size: int = 64,
    *,
    target_acc: float = 0.995,
    check_every: int = 5,
    history: list[tuple[int, float]] | None = None,
) -> float:
    """Train ``model`` with Adam until training accuracy reaches ``target_acc``.

    ``epochs`` is a cap, not a fixed count: every ``check_every`` epochs the accuracy on the
    whole training set is measured in eval mode (the mode the net is exported in) and
    training stops once it reaches ``target_acc``. There is no dropout, weight decay or
    augmentation, because the label-noise experiment needs nets that can memorize random
    labels. The minibatch order comes from a generator seeded with ``seed``. Returns the
    final training accuracy (in eval mode); if ``history`` is given, each measured
    ``(epoch, accuracy)`` pair is appended to it.
    """
    torch.set_num_threads(2)
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.int64)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    n = len(xt)
    acc = accuracy(model, xt, yt)
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen)
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        if epoch % check_every == 0 or epoch == epochs:
            acc = accuracy(model, xt, yt)
            if history is not None:
                history.append((epoch, acc))
            if acc >= target_acc:
                break
    model.eval()
    return acc


def export_onnx(
    model: nn.Module,
    path: str | Path,
    example_input: np.ndarray | torch.Tensor,
    opset: int = 17,
    *,
    check_input: np.ndarray | torch.Tensor | None = None,
    tol: float = 1e-5,
) -> float:
    """Export ``model`` to ONNX with the legacy TorchScript exporter and verify it.

    The legacy exporter (``dynamo=False``) is used because it names intermediate tensors
    after the module path (``/1/Relu_output_0``), which keeps the sample graphs readable
    and their layer names stable. The graph has input ``input``, output ``logits`` and a
    dynamic batch axis. After export, onnxruntime (CPU) is run on ``check_input`` (default
    ``example_input``; pass the training data) and compared with torch; raises
    ``RuntimeError`` if any logit differs by more than ``tol`` times the scale of its row
    (the example's largest absolute logit, or 1 if that is smaller). The scale is per row,
    not per element, because a logit near zero is the difference of large float32 sums and
    carries their rounding error: memorizing nets have logits of 30–70 and differ from
    onnxruntime by ~2e-5 absolute (~1e-6 relative). Returns the largest absolute difference.
    """
    import onnxruntime as ort

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    example = torch.as_tensor(example_input, dtype=torch.float32)
    with warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is deprecated; it still works.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (example,),
            str(path),
            dynamo=False,
            export_params=True,
            opset_version=opset,
            do_constant_folding=True,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )

    check = torch.as_tensor(example if check_input is None else check_input, dtype=torch.float32)
    with torch.no_grad():
        expected = model(check).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"input": check.numpy()})[0]
    diff = np.abs(got - expected)
    max_diff = float(diff.max()) if diff.size else 0.0
    scale = np.maximum(1.0, np.abs(expected).max(axis=-1, keepdims=True))
    if not np.all(diff <= tol * scale):
        raise RuntimeError(
            f"onnxruntime output of {path} differs from torch by up to {max_diff:.3g} (tol {tol})"
        )
    return max_diff


def relu_outputs(path: str | Path) -> list[str]:
    """Names of the tensors produced by ``Relu`` nodes of an ONNX file, in graph order."""
    import onnx

    model = onnx.load(str(path))
    return [out for node in model.graph.node if node.op_type == "Relu" for out in node.output]


def flatten(x: np.ndarray) -> np.ndarray:
    """``[N, 1, 8, 8]`` → ``[N, 64]`` (the MLP's input layout), float32 and contiguous."""
    return np.ascontiguousarray(x.reshape(len(x), -1), dtype=np.float32)


def model_input(arch: str, x: np.ndarray) -> np.ndarray:
    """``x`` in the input layout of ``arch``: flat for ``mlp``, ``[N, 1, 8, 8]`` for ``cnn``."""
    if arch == "mlp":
        return flatten(x)
    if arch in ("cnn", "cnn-bn"):
        return np.ascontiguousarray(x, dtype=np.float32)
    raise ValueError(f"unknown arch {arch!r}")


ARCHS: Sequence[str] = ("mlp", "cnn", "cnn-bn")
"""Architectures :func:`make_model` knows; ``cnn-bn`` is the CNN with BatchNorm."""

LEARNING_RATE = 1e-3
"""Adam step size; memorizes 1,200 random labels in ~60 (MLP) to ~90 (CNN) epochs."""

MAX_EPOCHS: dict[str, int] = {"mlp": 500, "cnn": 300, "cnn-bn": 300}
"""Epoch caps for :func:`train`; clean labels stop after ~5–10 epochs, random ones < 100."""


def make_model(arch: str, seed: int = 0) -> nn.Sequential:
    """Build ``arch`` (one of :data:`ARCHS`) with weights drawn from ``seed``."""
    if arch == "mlp":
        return make_mlp(seed=seed)
    if arch in ("cnn", "cnn-bn"):
        return make_cnn(batchnorm=arch == "cnn-bn", seed=seed)
    raise ValueError(f"unknown arch {arch!r}; expected one of {', '.join(ARCHS)}")
