"""The one reader of JSON reports: ``sdaudit compare``'s inputs and ``scan --baseline``.

A report is accepted when it is a JSON object whose ``schema_version`` has this sdaudit's major
version (minor versions only add fields, so reports of any 1.x are read), holds the fields its
readers use, and every field it has at the top two levels has the type the shipped schema
(sdaudit/report/schema.json) gives it. Anything else is a :class:`~sdaudit.errors.DataError`
naming the file, the flag and the fix.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any

from sdaudit.errors import DataError

MAJOR = "1"
_VERSION = re.compile(r"^(\d+)\.(\d+)$")
# (section, field): what compare and the gate read; a report without them cannot be used.
USED = (("model", "path"), ("model", "sha256"), ("summary", "ablation_auc"),
        ("baseline", "accuracy"), ("config", None), ("data", None))
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "boolean": (bool,),
    "integer": (int,), "number": (int, float), "null": (type(None),),
}


@functools.lru_cache(maxsize=1)
def _schema() -> dict[str, Any]:
    from sdaudit.report.json_io import load_schema

    return load_schema()


def _type_ok(value: Any, spec: dict[str, Any]) -> bool:
    kinds = spec.get("type")
    if kinds is None:
        return True
    names = [kinds] if isinstance(kinds, str) else list(kinds)
    if isinstance(value, bool):  # JSON booleans are not numbers
        return "boolean" in names
    return any(isinstance(value, _JSON_TYPES[n]) for n in names if n in _JSON_TYPES)


def _fail(flag: str, path: Path, problem: str) -> DataError:
    return DataError(f"{flag} {str(path)!r} {problem}",
                     "give a report written by `sdaudit scan --json`")


def read_report(path: str | Path, flag: str = "report") -> dict[str, Any]:
    """The report at ``path``, checked; ``flag`` names where it was given, for messages."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _fail(flag, p, "does not exist") from None
    except IsADirectoryError:
        raise _fail(flag, p, "is a folder") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(flag, p, f"is not a JSON report ({type(exc).__name__})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "summary" not in data:
        raise _fail(flag, p, "is not an sdaudit report")
    version = _VERSION.match(str(data["schema_version"]))
    if version is None or version.group(1) != MAJOR:
        raise DataError(f"{flag} {str(p)!r} has report schema {data['schema_version']}; this "
                        f"sdaudit reads schema {MAJOR}.x",
                        "re-run `sdaudit scan --json` with this version to get a comparable report")
    properties = _schema()["properties"]
    for section, field in USED:
        block = data.get(section)
        if not isinstance(block, dict) or (field is not None and field not in block):
            where = section if field is None else f"{section}.{field}"
            raise _fail(flag, p, f"is not a complete sdaudit report (no {where})")
    for section, value in data.items():
        spec = properties.get(section)
        if spec is None:
            continue  # a field of a later minor version
        if not _type_ok(value, spec):
            raise _fail(flag, p, f"is not a valid sdaudit report ({section} has the wrong type)")
        if isinstance(value, dict):
            for name, item in value.items():
                sub = spec.get("properties", {}).get(name)
                if sub is not None and not _type_ok(item, sub):
                    raise _fail(flag, p, f"is not a valid sdaudit report ({section}.{name} has "
                                "the wrong type)")
    ci = data["summary"].get("ablation_auc_ci")
    if ci is not None and (len(ci) != 2 or not all(_type_ok(v, {"type": ["number", "null"]})
                                                   for v in ci)):
        raise _fail(flag, p, "is not a valid sdaudit report (summary.ablation_auc_ci is not "
                    "two numbers)")
    return data


def ablation_auc(report: dict[str, Any], flag: str, path: str | Path) -> float:
    """The report's ablation AUC; a DataError where its scan measured none."""
    value = report["summary"]["ablation_auc"]
    if value is None:
        raise DataError(f"{flag} {str(path)!r} has no ablation AUC (its scan did not measure "
                        "ablation)", "give a report of a scan with ablation")
    return float(value)
