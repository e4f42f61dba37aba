"""The ``sdaudit`` typer app. Commands import the library lazily: ``--help`` stays instant."""

from __future__ import annotations

import typer

from sdaudit._version import __version__
from sdaudit.cli.common import StdoutClosedError, silence_stdout
from sdaudit.cli.compare import compare
from sdaudit.cli.instrument import instrument
from sdaudit.cli.layers import layers
from sdaudit.cli.scan import scan
from sdaudit.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, EXIT_USAGE, TerminatedError

app = typer.Typer(
    name="sdaudit",
    help="Audit exported neural networks for reliance on single directions "
    "(Morcos et al., ICLR 2018): ablate channels, add unit-scaled noise, measure selectivity.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
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


def run(argv: list[str] | None = None) -> int:  # noqa: PLR0911 - one return per outcome
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
        message = f"sdaudit: error: {exc.format_message()} (see `{command} --help`)"
        print(message, file=sys.stderr)
        _error_document(argv if argv is not None else sys.argv[1:], EXIT_USAGE, message)
        return EXIT_USAGE
    except StdoutClosedError:  # the reader of stdout went away (`| head`): nothing to add
        silence_stdout()
        return 0
    except TerminatedError:
        print("sdaudit: terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except (typer.Abort, KeyboardInterrupt):
        print("sdaudit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result) if isinstance(result, int) else 0


def _error_document(argv: list[str], code: int, message: str) -> None:
    """A flag typer rejects stops `scan` before it starts: a CI step that asked for
    ``--format junit|markdown`` still gets a valid document saying why."""
    if not argv or argv[0] != "scan":
        return
    fmt = None
    for i, arg in enumerate(argv):
        if arg == "--format" and i + 1 < len(argv):
            fmt = argv[i + 1]
        elif arg.startswith("--format="):
            fmt = arg.split("=", 1)[1]
    model = next((a for a in argv[1:] if not a.startswith("-")), "?")
    if fmt in ("junit", "markdown"):
        from sdaudit.cli.scan import error_document

        error_document(fmt, model)(code, message)


def _terminate(*_signal: object) -> None:
    raise TerminatedError


def main() -> None:
    import signal
    import sys

    # A CI runner's timeout or a cancelled job sends SIGTERM: exit 143 the way Ctrl-C exits
    # 130, with temporary files removed and a JUnit/Markdown error document written.
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(run())
