"""Comparing report trees whose floats come from different but equivalent computations."""

from __future__ import annotations

import math
from typing import Any

# Two runs of the same float32 graph through different ONNX Runtime paths (IO binding, a
# fallback session, another onnxruntime release) may sum in another order: per value about
# eps32 · √(terms) ≈ 1.2e-7 · 32 for a thousand samples, so 1e-5 relative. ABS covers values
# that are 0 in one run and a rounding error in the other; reports keep 7 significant digits.
REL = 1e-5
ABS = 1e-7


def assert_reports_close(a: Any, b: Any, path: str = "", rel: float = REL,
                         abs_tol: float = ABS) -> None:
    """Same keys, lengths, strings, booleans and integers; floats within ``rel``/``abs_tol``."""
    if isinstance(a, dict):
        assert isinstance(b, dict), f"{path}: {b!r} is no object"
        assert a.keys() == b.keys(), f"{path}: keys differ"
        for key in a:
            assert_reports_close(a[key], b[key], f"{path}.{key}", rel, abs_tol)
    elif isinstance(a, list):
        assert isinstance(b, list), f"{path}: {b!r} is no list"
        assert len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_reports_close(x, y, f"{path}[{i}]", rel, abs_tol)
    elif isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float), f"{path}: {a!r} is no number"
        assert isinstance(b, int | float), f"{path}: {b!r} is no number"
        assert math.isclose(a, b, rel_tol=rel, abs_tol=abs_tol), f"{path}: {a} vs {b}"
    else:
        assert a == b, f"{path}: {a!r} vs {b!r}"
