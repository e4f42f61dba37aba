"""``sdaudit layers MODEL``: list the activation tensors that can be audited."""

from __future__ import annotations

import json

import typer

from sdaudit.cli.common import InputShapeOpt, LayersOpt, ModelArg, boundary


def layers(
    model: ModelArg,
    as_json: bool = typer.Option(False, "--json", help="Print JSON on stdout."),
    select: LayersOpt = "all",
    input_shape: InputShapeOpt = None,
) -> None:
    """List every auditable activation tensor; the default selection is marked."""
    with boundary():
        from sdaudit.model.layers import discover_layers, select_layers
        from sdaudit.model.load import load_model, parse_input_shapes

        loaded = load_model(model, parse_input_shapes(input_shape), require_static=False)
        found = select_layers(discover_layers(loaded.proto), select)
        if as_json:
            payload = {
                "model": str(model),
                "inputs": [s.to_dict() for s in loaded.inputs],
                "outputs": [s.to_dict() for s in loaded.outputs],
                "layers": [layer.to_dict() for layer in found],
            }
            typer.echo(json.dumps(payload, indent=2))
            return
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Auditable layers of {model}", box=box.SIMPLE_HEAD)
        for col in ("", "tensor", "op", "kind", "shape", "channel axis", "units", "depth"):
            table.add_column(col, justify="right" if col in ("units", "depth", "channel axis")
                             else "left")
        for layer in found:
            shape = "×".join(str(d) if isinstance(d, int) else (d or "?") for d in layer.shape)
            table.add_row("✓" if layer.default else "", layer.name, layer.op_type, layer.kind,
                          shape, str(layer.channel_axis), str(layer.channels), str(layer.depth))
        console = Console(highlight=False)
        console.print(table)
        console.print("✓ = default selection (the paper's: every hidden activation of an MLP, "
                      "the last three conv activation layers of a conv net)")
