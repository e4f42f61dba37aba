"""The ``sdaudit`` typer app. Commands import the library lazily: ``--help`` stays instant."""

from __future__ import annotations

import typer

from sdaudit._version import __version__
from sdaudit.cli.common import StdoutClosedError, silence_stdout
from sdaudit.cli.compare import compare
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
app.command("compare")(compare)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; usage errors are one line on stderr (exit 2)."""
    import sys

    try:  # typer ≥ 0.20 vendors click; older versions use it directly
        from typer._click import exceptions as click_exceptions
    except ImportError:  # pragma: no cover
        from click import exceptions as click_exceptions  # type: ignore[no-redef]

    try:
        result = app(args=argv, prog_name="sdaudit", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except click_exceptions.NoArgsIsHelpError as exc:
        print(exc.ctx.get_help() if exc.ctx else "", file=sys.stderr)
        return 2
    except click_exceptions.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "sdaudit"
        print(f"sdaudit: error: {exc.format_message()} (see `{command} --help`)", file=sys.stderr)
        return 2
    except StdoutClosedError:  # the reader of stdout went away (`| head`): nothing to add
        silence_stdout()
        return 0
    except (typer.Abort, KeyboardInterrupt):
        print("sdaudit: interrupted", file=sys.stderr)
        return 130
    return int(result) if isinstance(result, int) else 0


def main() -> None:
    import sys

    sys.exit(run())
