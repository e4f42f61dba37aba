"""Run `sdaudit scan` from a benchmark script without letting one failure lose the others."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any


def run_scan(cmd: list[str], timeout: float, report: str | Path | None = None,
             ok_codes: tuple[int, ...] = (0,)) -> tuple[dict[str, Any] | None, str | None, float]:
    """(report, error, seconds). The report is read from ``report`` if given, else from stdout
    (``--format json`` prints nothing else there). Never raises: a missing executable, a failing
    scan or an unreadable report comes back as ``error``."""
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
    seconds = time.perf_counter() - start
    if proc.returncode not in ok_codes:
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-3:]
        return None, f"exit status {proc.returncode}: {' | '.join(tail)}", seconds
    try:
        text = Path(report).read_text(encoding="utf-8") if report else proc.stdout
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    except (OSError, ValueError, TypeError) as exc:
        return None, f"unexpected report ({type(exc).__name__}: {exc})", seconds
    return data, None, seconds
