"""Half precision for the sweep: the suffix's weights and activations in float16.

Only the sweep suffix (the part that runs once per configuration) is converted; the prefix and
the statistics run stay in float32, so unit statistics and the unablated baseline are exact.
Inputs and outputs keep their float32 types (casts inside the graph): the cut tensors, masks
and noise controls are fed exactly as for the float32 suffix.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from sdaudit.errors import RewriteError, first_line

if TYPE_CHECKING:
    import onnx

# Ops that stay in float32: random draws (their dtype attribute fixes the output type) and the
# ONNX Runtime converter's own list of ops without float16 kernels.
KEEP_FP32 = ("RandomNormalLike", "RandomNormal", "RandomUniform", "Multinomial")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with float16 weights and activations, float32 inputs and outputs.

    Pre-condition: a float32 model. Post-condition: same inputs and outputs (names, float32),
    values within float16's precision; the engine checks it on the first chunk (at most 0.5 %
    of the unablated predictions may change, else the sweep goes back to fp32)."""
    try:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16
    except ImportError as exc:  # pragma: no cover - every onnxruntime wheel ships it
        raise RewriteError(f"the float16 converter of onnxruntime is missing ({exc})",
                           "use --precision fp32") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return convert_float_to_float16(
                model, keep_io_types=True, op_block_list=[*DEFAULT_OP_BLOCK_LIST, *KEEP_FP32])
    except Exception as exc:
        raise RewriteError(f"cannot convert the model to float16: {first_line(exc)}",
                           "use --precision fp32") from None
