"""Make a fixed batch dimension symbolic, so chunks and stacked configurations can run."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sdaudit.errors import ModelError

if TYPE_CHECKING:
    import onnx


def has_fixed_batch(model: onnx.ModelProto) -> bool:
    initializers = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        dims = vi.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value"):
            return True
    return False


def free_batch(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same model with a symbolic batch dimension; refuses where the graph hard-codes it.

    Post-condition: a batch of two gives what two batches of one give (atol 1e-5).
    """
    import onnx

    from sdaudit.ort import make_session
    from sdaudit.rewrite.instrument import probe_inputs

    new = onnx.ModelProto()
    new.CopyFrom(model)
    initializers = {i.name for i in new.graph.initializer}
    for vi in [*(i for i in new.graph.input if i.name not in initializers), *new.graph.output]:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].Clear()
            dims[0].dim_param = "batch"
    del new.graph.value_info[:]
    try:
        new = onnx.shape_inference.infer_shapes(new, strict_mode=False, data_prop=True)
        feeds = probe_inputs(new, batch=2, seed=1)
        ref = make_session(model.SerializeToString(), "cpu")
        sess = make_session(new.SerializeToString(), "cpu")
        name = new.graph.output[0].name
        both = sess.run([name], feeds)[0]
        singles = np.concatenate([
            ref.run([name], {k: v[i:i + 1] for k, v in feeds.items()})[0] for i in range(2)
        ])
        ok = both.shape == singles.shape and np.allclose(both, singles, atol=1e-5, rtol=1e-4)
    except Exception:
        ok = False
    if not ok:
        raise ModelError(
            "the model's batch size is fixed and its graph does not run with another batch size",
            "re-export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes=...))",
        )
    return new
