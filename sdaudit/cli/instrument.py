"""``sdaudit instrument MODEL -o OUT``: write the model with mask and noise inputs."""

from __future__ import annotations

from pathlib import Path

import typer

from sdaudit.cli.common import InputShapeOpt, LayersOpt, ModelArg, boundary


def instrument(
    model: ModelArg,
    out: Path = typer.Option(..., "--output", "-o", help="Where to write the instrumented model."),
    select: LayersOpt = "default",
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Add the noise inputs."),
    seed: int = typer.Option(0, help="Seed of the in-graph noise generators."),
    input_shape: InputShapeOpt = None,
) -> None:
    """Add a per-channel mask input, a noise input and a spatial-mean output at each layer.

    Feed ones to the masks and zeros to the noise inputs and the model computes what it did
    before (checked before writing); a 0 in a mask switches that channel off.
    """
    with boundary():
        from sdaudit.rewrite.io import save_instrumented

        summary = save_instrumented(model, out, select, noise=noise, seed=seed,
                                    input_shape=input_shape)
        typer.echo(f"wrote {out}: {len(summary.layers)} layers instrumented; "
                   f"all-ones masks reproduce the outputs (max difference {summary.max_diff:.2g})")
        for layer, mask, noise_name, mean in summary.rows:
            typer.echo(f"  {layer}: input {mask!r}" + (f", input {noise_name!r}" if noise_name
                                                        else "") + f", output {mean!r}")
