"""Writing models: the instrumented model of ``sdaudit instrument``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sdaudit.errors import BadFlagError


@dataclass(frozen=True)
class InstrumentSummary:
    layers: tuple[str, ...]
    rows: tuple[tuple[str, str, str | None, str], ...]
    max_diff: float


def save_instrumented(model: Path, out: Path, select: str, *, noise: bool = True, seed: int = 0,
                      input_shape: str | None = None) -> InstrumentSummary:
    import onnx

    from sdaudit.model.layers import discover_layers, select_layers
    from sdaudit.model.load import load_model, parse_input_shapes
    from sdaudit.report.json_io import write_atomic
    from sdaudit.rewrite.instrument import instrument, verify_equivalence

    if out.exists() and model.exists() and out.resolve() == model.resolve():
        raise BadFlagError("--output is the input model; sdaudit never overwrites what you gave",
                           "choose another path for -o")
    if out.is_dir():
        raise BadFlagError(f"--output {str(out)!r} is a folder", "give a file name ending in .onnx")
    loaded = load_model(model, parse_input_shapes(input_shape))
    layers = select_layers(discover_layers(loaded.proto), select)
    inst = instrument(loaded.proto, layers, noise=noise, stats=True, seed=seed, verify=False)
    max_diff = verify_equivalence(loaded.proto, inst)
    data = inst.model.SerializeToString() if inst.model.ByteSize() < (2 << 30) - 1 else None
    if data is None:  # over protobuf's 2 GB limit: weights beside the model
        onnx.save_model(inst.model, str(out), save_as_external_data=True,
                        location=out.name + ".data")
    else:
        write_atomic(out, data)
    rows = tuple(
        (layer.name, inst.mask_inputs[i], inst.noise_inputs[i] if inst.noise_inputs else None,
         inst.mean_outputs[i])
        for i, layer in enumerate(inst.layers)
    )
    return InstrumentSummary(tuple(layer.name for layer in layers), rows, max_diff)
