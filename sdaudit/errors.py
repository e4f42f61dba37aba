"""The one exception hierarchy of sdaudit.

Every error a user can cause is an :class:`SdauditError` that carries the exit code and a hint
naming the fix; the CLI boundary prints it as one line on stderr, without a traceback.
Anything else that escapes is a bug and keeps its traceback (exit code 3).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT)
EXIT_TERMINATED = 143  # SIGTERM: a CI runner's timeout or a cancelled job


class SdauditError(Exception):
    """A problem with what the user gave (flags, model, data): exit code 2."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message

    def __reduce__(self) -> tuple[type, tuple[str, str | None]]:
        # Raised in a Ray worker, it comes back to the driver whole (message and hint).
        return (type(self), (self.message, self.hint))


class BadFlagError(SdauditError):
    """A command-line option or configuration value is invalid."""


class ModelError(SdauditError):
    """The model file cannot be read, is not a valid model, or cannot be run."""


class LayerSelectionError(SdauditError):
    """A --layers specification selects nothing or names unknown tensors."""


class DataError(SdauditError):
    """The data cannot be read or does not fit the model."""


class RewriteError(SdauditError):
    """A graph pass could not establish its post-condition on this model."""


class TerminatedError(KeyboardInterrupt):
    """SIGTERM arrived (``sdaudit`` exits 143). A KeyboardInterrupt, so that every clean-up that
    runs on Ctrl-C (temporary report files, progress bars) runs on it too."""


class InternalError(Exception):
    """A broken invariant inside sdaudit: a bug, reported with its traceback (exit code 3)."""

    exit_code = EXIT_INTERNAL


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type where it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def ort_message(exc: BaseException, limit: int = 1000) -> str:
    """ONNX Runtime's message whole, on one line: without its colour codes and its
    ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :`` prefix (the part a user can act on)."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc))
    text = re.sub(r"^\s*\[ONNXRuntimeError\]\s*:\s*\d+\s*:\s*[A-Z_]+\s*:\s*", "", text)
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    if not text:
        return type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"
