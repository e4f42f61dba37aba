"""Shared option declarations and the error boundary of every command."""

from __future__ import annotations

import math
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from sdaudit.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    BadFlagError,
    SdauditError,
    TerminatedError,
    first_line,
)

ModelArg = Annotated[Path, typer.Argument(
    help="The model: an .onnx file (or TorchScript .pt / torch.export .pt2, with sdaudit[torch]).",
    show_default=False, metavar="MODEL")]
LayersOpt = Annotated[
    str,
    typer.Option(
        "--layers", "-l",
        help="Which activation tensors: default (the paper's choice), all, last:N, first:N, "
        "or comma-separated tensor names and glob patterns.",
    ),
]
InputShapeOpt = Annotated[
    str | None,
    typer.Option("--input-shape", help="Input shape where the model leaves it open, e.g. "
                 "1,3,224,224 (or name:1,3,224,224;other:...).", show_default=False),
]


def err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


class StdoutClosedError(BrokenPipeError):
    """The reader of stdout went away (`| head`): not an error of the audit."""


def silence_stdout() -> None:
    """Point stdout at /dev/null once its reader is gone, so that nothing written later (or
    flushed at exit) raises again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def write_stdout(text: str) -> None:
    """Write to stdout; a closed pipe raises :class:`StdoutClosedError`."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise StdoutClosedError from None


PIPED_WIDTH = 120  # columns when stdout is no terminal (a CI log, `| cat`) and COLUMNS is unset


def piped_width(stream: Any) -> int | None:
    """The width to render at: None on a terminal (rich asks it), else $COLUMNS where set, else
    :data:`PIPED_WIDTH` (rich's own fallback, 80, cut the layer table's AUC column)."""
    import os

    try:
        if stream.isatty():
            return None
    except (AttributeError, ValueError):  # a closed or odd stream: treat it as no terminal
        pass
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else PIPED_WIDTH


def out_console() -> Any:
    """A rich console on stdout whose reader may leave (`| head`): a closed pipe raises
    :class:`StdoutClosedError` for the command to handle (rich's own handler exits with 1, which is
    the gate-failed code)."""
    from rich.console import Console

    console = Console(highlight=False, width=piped_width(sys.stdout))

    def broken_pipe() -> None:
        raise StdoutClosedError

    console.on_broken_pipe = broken_pipe  # type: ignore[method-assign]
    return console


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise BadFlagError(f"{flag} {text!r} is not a comma-separated list of numbers",
                           f"e.g. {flag} 0,0.1,0.5") from None
    if not values:
        raise BadFlagError(f"{flag} is empty", f"e.g. {flag} 0,0.1,0.5")
    if not all(math.isfinite(v) for v in values):
        raise BadFlagError(f"{flag} {text!r} holds a value that is not a finite number",
                           f"e.g. {flag} 0,0.1,0.5")
    return values


OnError = Callable[[int, str], None]


@contextmanager
def boundary(on_error: OnError | None = None) -> Iterator[None]:
    """User errors → one line on stderr, exit 2; Ctrl-C → 130; SIGTERM → 143; bugs → traceback,
    exit 3. ``on_error(exit code, message)`` runs first (scan writes its JUnit or Markdown error
    document to stdout there)."""

    def fail(code: int, message: str) -> typer.Exit:
        if on_error is not None:
            try:
                on_error(code, message)
            except StdoutClosedError:
                silence_stdout()
        return typer.Exit(code)

    try:
        yield
    except (typer.Exit, StdoutClosedError):  # a closed stdout is cli.app's to handle
        raise
    except SdauditError as exc:
        print(f"sdaudit: error: {exc}", file=sys.stderr)
        raise fail(exc.exit_code, f"sdaudit: error: {exc}") from None
    except TerminatedError:
        print("sdaudit: terminated", file=sys.stderr)
        raise fail(EXIT_TERMINATED, "sdaudit: terminated (SIGTERM)") from None
    except KeyboardInterrupt:
        print("sdaudit: interrupted", file=sys.stderr)
        raise fail(EXIT_INTERRUPTED, "sdaudit: interrupted") from None
    except Exception as exc:
        traceback.print_exc()
        print("sdaudit: internal error: this is a bug in sdaudit; please report it with the "
              "traceback above", file=sys.stderr)
        raise fail(EXIT_INTERNAL, f"sdaudit: internal error ({type(exc).__name__}: "
                   f"{first_line(exc)}); the traceback is on stderr") from None
