"""sdaudit: audit exported neural networks for reliance on single directions.

After Morcos et al., "On the importance of single directions for generalization" (ICLR 2018).
The public API is imported lazily so that ``import sdaudit`` (and ``sdaudit --help``) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sdaudit._version import __version__
from sdaudit.errors import SdauditError

if TYPE_CHECKING:
    from sdaudit.api import audit
    from sdaudit.config import AuditConfig
    from sdaudit.report.model import AuditReport

__all__ = ["AuditConfig", "AuditReport", "SdauditError", "__version__", "audit"]

_LAZY = {
    "audit": ("sdaudit.api", "audit"),
    "AuditConfig": ("sdaudit.config", "AuditConfig"),
    "AuditReport": ("sdaudit.report.model", "AuditReport"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'sdaudit' has no attribute {name!r}")
