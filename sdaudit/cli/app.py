"""The ``sdaudit`` typer app. Commands import the library lazily: ``--help`` stays instant."""

from __future__ import annotations

import typer

from sdaudit._version import __version__
from sdaudit.cli.instrument import instrument
from sdaudit.cli.layers import layers
from sdaudit.cli.scan import scan

app = typer.Typer(
    name="sdaudit",
    help="Audit exported neural networks for reliance on single directions "
    "(Morcos et al., ICLR 2018): ablate channels, add unit-scaled noise, measure selectivity.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sdaudit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """sdaudit: is this exported model leaning on single units?"""


app.command("layers")(layers)
app.command("instrument")(instrument)
app.command("scan")(scan)


def main() -> None:
    app(prog_name="sdaudit")
