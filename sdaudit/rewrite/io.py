"""Writing models: the instrumented model of ``sdaudit instrument``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sdaudit.paths import real_path

if TYPE_CHECKING:
    import onnx

    from sdaudit.outputs import Outputs


@dataclass(frozen=True)
class InstrumentSummary:
    layers: tuple[str, ...]
    rows: tuple[tuple[str, str, str | None, str], ...]
    max_diff: float


PROTOBUF_LIMIT = (2 << 30) - 1


def _stage_with_external_data(outputs: Outputs, model: onnx.ModelProto, out: Path,
                              weights: Path) -> None:
    """The model and its weights file, written in a private folder beside ``out`` and staged
    together (onnx writes the weights under their final name, so not in place)."""
    import shutil
    import tempfile

    import onnx

    folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=real_path(out).parent))
    try:
        onnx.save_model(model, str(folder / out.name), save_as_external_data=True,
                        location=weights.name)
        outputs.adopt("--output", folder / out.name, out)
        outputs.adopt("--output's weights", folder / weights.name, weights)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def save_instrumented(model: Path, out: Path, select: str, *, noise: bool = True, seed: int = 0,
                      input_shape: str | None = None) -> InstrumentSummary:
    from sdaudit.config import MAX_SEED
    from sdaudit.errors import BadFlagError
    from sdaudit.model.layers import discover_layers, select_layers
    from sdaudit.model.load import load_model, parse_input_shapes
    from sdaudit.outputs import Outputs
    from sdaudit.paths import PathPlan, Use, model_reads
    from sdaudit.rewrite.instrument import instrument, verify_equivalence

    if not 0 <= seed <= MAX_SEED:
        raise BadFlagError(f"--seed {seed}: seeds are integers from 0 to 2^63 − 1", "e.g. --seed 0")
    weights = out.with_name(out.name + ".data")  # beside the model, past protobuf's 2 GB limit
    writes = (Use("--output", out), Use("--output's weights", weights))
    plan = PathPlan(model_reads(model, writes), writes[:1])
    plan.check()
    loaded = load_model(model, parse_input_shapes(input_shape))
    layers = select_layers(discover_layers(loaded.proto), select)
    inst = instrument(loaded.proto, layers, noise=noise, stats=True, seed=seed, verify=False)
    max_diff = verify_equivalence(loaded.proto, inst)
    with Outputs() as outputs:
        if inst.model.ByteSize() < PROTOBUF_LIMIT:
            outputs.stage("--output", out, inst.model.SerializeToString())
        else:
            PathPlan(plan.reads, (*plan.writes, Use("--output's weights", weights))).check()
            _stage_with_external_data(outputs, inst.model, out, weights)
        outputs.commit()
    rows = tuple(
        (layer.name, inst.mask_inputs[i], inst.noise_inputs[i] if inst.noise_inputs else None,
         inst.mean_outputs[i])
        for i, layer in enumerate(inst.layers)
    )
    return InstrumentSummary(tuple(layer.name for layer in layers), rows, max_diff)
