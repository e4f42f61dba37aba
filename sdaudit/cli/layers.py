"""``sdaudit layers MODEL``: list the activation tensors that can be audited."""

from __future__ import annotations

import json

import typer

from sdaudit.cli.common import (
    InputShapeOpt,
    LayersOpt,
    ModelArg,
    boundary,
    out_console,
    write_stdout,
)


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
        from sdaudit.rewrite.instrument import MASK_SUFFIX

        controls = [s.name for s in loaded.inputs if s.name.endswith(MASK_SUFFIX)]
        if controls:
            from sdaudit.cli.common import err_console

            err_console().print(
                f"[yellow]warning: this model is instrumented already (input {controls[0]!r}); "
                "its layers include the added tensors: list the original model instead[/]")
        from sdaudit.model.outputs import for_output

        # The layers that reach the output a scan audits (labels, ZipMap and other heads cut).
        audited, choice = for_output(loaded, None)
        found = select_layers(discover_layers(audited.proto), select)
        if as_json:
            payload = {
                "model": str(model),
                "inputs": [s.to_dict() for s in loaded.inputs],
                "outputs": [s.to_dict() for s in loaded.outputs],
                "output_used": choice.name, "output_choice": choice.reason,
                "layers": [layer.to_dict() for layer in found],
            }
            write_stdout(json.dumps(payload, indent=2) + "\n")
            return
        from rich import box
        from rich.table import Table

        from sdaudit.report.terminal import show

        table = Table(title=f"Auditable layers of {model}", box=box.SIMPLE_HEAD)
        table.add_column("")
        table.add_column("tensor", overflow="fold", ratio=3)
        table.add_column("op", no_wrap=True)
        table.add_column("shape", overflow="fold", ratio=1)
        for col in ("axis", "units", "depth"):
            table.add_column(col, justify="right", no_wrap=True)
        for layer in found:
            shape = "×".join(str(d) if isinstance(d, int) else "N" if i == 0 else (d or "?")
                             for i, d in enumerate(layer.shape))
            op = layer.op_type if layer.kind == "activation" else f"{layer.op_type} (no act.)"
            table.add_row("✓" if layer.default else "", layer.name, op, shape,
                          str(layer.channel_axis), str(layer.channels), str(layer.depth))
        console = out_console()
        show(console, table)
        console.print(f"audited output: {choice.name} ({choice.reason})", markup=False,
                      soft_wrap=True)
        default = ("the default selection (the paper's: every hidden activation of an MLP, "
                   "the last three conv activation layers of a conv net)")
        if select == "all":
            console.print(f"✓ = {default}", markup=False, soft_wrap=True)
        else:  # the rows are what --layers chose; ✓ still marks the default's own choice
            console.print(f"listed: the {len(found)} layers --layers {select} selects; "
                          f"✓ = also in {default}", markup=False, soft_wrap=True)
