"""ONNX Runtime sessions: provider choice, threads pinned to the cores this process may use."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sdaudit.errors import BadFlagError, ModelError, ort_message

if TYPE_CHECKING:
    import onnxruntime as ort

DEVICES = ("auto", "cpu", "cuda")


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class RuntimeInfo:
    """What ran the model: recorded in every report."""

    device: str
    provider: str
    threads: int
    onnxruntime_version: str
    precision: str = "fp32"  # of the sweep suffix; prefix and statistics are always fp32
    io_binding: bool = False  # cut tensors bound on the device once per chunk
    prune: bool = False  # zero-ablation configurations may run as pruned suffixes
    pruned_configs: int = 0  # how many did

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "provider": self.provider,
            "threads": self.threads,
            "onnxruntime_version": self.onnxruntime_version,
            "precision": self.precision,
            "io_binding": self.io_binding,
            "prune": self.prune,
            "pruned_configurations": self.pruned_configs,
        }


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ModelError(
            f"onnxruntime cannot be imported ({exc})", "pip install onnxruntime-gpu"
        ) from None
    return onnxruntime


def _nvidia_device_present() -> bool:
    return any(os.path.exists(p) for p in ("/dev/nvidiactl", "/dev/nvidia0",
                                           "/proc/driver/nvidia/version"))


@functools.lru_cache(maxsize=1)
def cuda_usable() -> bool:
    """Whether a CUDA session really starts here (driver, CUDA and cuDNN libraries present).

    Checked once, silently: onnxruntime-gpu lists its CUDA provider even where the libraries it
    needs are missing, and its loader prints to stdout, which must stay clean for JSON.
    """
    ort_mod = _ort()
    if "CUDAExecutionProvider" not in ort_mod.get_available_providers():
        return False
    if not _nvidia_device_present():
        return False
    with contextlib.redirect_stdout(sys.stderr):
        if hasattr(ort_mod, "preload_dlls"):
            with contextlib.suppress(Exception):
                ort_mod.preload_dlls()
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            [helper.make_node("Identity", ["x"], ["y"])], "probe",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        options = ort_mod.SessionOptions()
        options.log_severity_level = 4
        try:
            sess = ort_mod.InferenceSession(model.SerializeToString(), sess_options=options,
                                            providers=["CUDAExecutionProvider"])
        except Exception:
            return False
    return bool(sess.get_providers()[0] == "CUDAExecutionProvider")


def resolve_providers(device: str) -> list[str]:
    if device not in DEVICES:
        raise BadFlagError(f"--device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if cuda_usable():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device == "cuda":
        raise BadFlagError(
            "--device cuda: CUDA is not usable here (no onnxruntime-gpu, no NVIDIA driver, or "
            "CUDA 13 / cuDNN 9 libraries missing)",
            "install onnxruntime-gpu with CUDA 13 and cuDNN 9, or use --device cpu",
        )
    return ["CPUExecutionProvider"]


def make_session(
    model_bytes: bytes, device: str = "cpu", threads: int | None = None, *, spin: bool = True,
    arena: bool = True,
) -> ort.InferenceSession:
    """A session with graph optimizations on and threads matched to the usable cores.

    ``spin=False`` for a session that runs once between runs of another (the prefix, the
    statistics run): its idle worker threads then sleep at once instead of spinning on the
    cores the next session's run needs. ``arena=False``: host memory goes back when a tensor
    is freed (for the many small sessions of pruned suffixes, whose arenas would each keep
    their peak).
    """
    ort_mod = _ort()
    options = ort_mod.SessionOptions()
    options.graph_optimization_level = ort_mod.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or usable_cores()
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # errors reach us as exceptions; stderr keeps one line
    if not arena:
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = resolve_providers(device)
    try:
        session = ort_mod.InferenceSession(model_bytes, sess_options=options, providers=providers)
    except Exception as exc:
        text = str(exc).strip()
        first = ort_message(exc)
        hint = "check that the model runs in onnxruntime"
        if "NOT_IMPLEMENTED" in text or "not implemented" in text.lower():
            hint = "this onnxruntime cannot run one of the model's ops; re-export with another opset"
        raise ModelError(f"ONNX Runtime cannot load the model: {first}", hint) from None
    if device == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise BadFlagError(
            "--device cuda: the CUDA provider failed to start (CUDA or cuDNN libraries missing?)",
            "install CUDA 13 and cuDNN 9, or use --device cpu",
        )
    return session


def runtime_info(session: ort.InferenceSession, device: str, threads: int) -> RuntimeInfo:
    ort_mod = _ort()
    provider = session.get_providers()[0]
    return RuntimeInfo(device, provider, threads, ort_mod.__version__)
