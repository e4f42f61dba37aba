"""``scan --config FILE`` and ``[tool.sdaudit]`` in ./pyproject.toml: scan's flags as TOML keys.

Keys are the long flag names without dashes (``fail-under = 0.6``; ``fail_under`` also reads),
``no-per-layer = true`` style negations included; flags that take comma-separated values take a
TOML array as well (``fractions = [0, 0.1, 0.5]``). Precedence: the command line, then the file,
then the built-in default. A relative path in a file is relative to that file's folder. An
unknown key, or a value the flag would refuse, is exit 2 naming the file and the key.

The values are handed to click as the command's ``default_map`` by an eager ``--config``
callback, so they go through the same conversion and checks as the flags themselves, and click
records where each came from (:func:`setting_sources`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

PYPROJECT = "pyproject.toml"
META_KEY = "sdaudit.config"  # ctx.meta: where the settings came from (a str) or None


def _toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with path.open("rb") as fh:
        return tomllib.load(fh)


def _usage_error(ctx: Any, message: str) -> Exception:
    from typer._click import exceptions

    return exceptions.UsageError(message, ctx)


def _flag_table(ctx: Any) -> dict[str, tuple[Any, bool]]:
    """``{key: (parameter, negated)}`` for every option of the command: ``fail-under`` and
    ``fail_under`` for ``--fail-under``, ``no-per-layer`` for ``--no-per-layer``."""
    table: dict[str, tuple[Any, bool]] = {}
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name == "config_file":
            continue
        for opts, negated in ((param.opts, False), (param.secondary_opts, True)):
            for opt in opts:
                if opt.startswith("--"):
                    key = opt[2:]
                    table[key] = (param, negated)
                    table[key.replace("-", "_")] = (param, negated)
        table.setdefault(param.name, (param, False))
    return table


def _value(param: Any, value: Any, folder: Path) -> Any:
    """A TOML value as the flag would read it: arrays joined by commas, relative paths taken
    from the file's folder."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    type_name = type(param.type).__name__
    if isinstance(value, str) and (type_name.endswith("Path") or param.name == "data_loader_script"):
        path = Path(value).expanduser()
        return str(path if path.is_absolute() else folder / path)
    return value


def load(ctx: Any, path: Path | None) -> Path | None:
    """The ``--config`` callback: read FILE, or ./pyproject.toml's ``[tool.sdaudit]`` when no
    FILE is given, into ``ctx.default_map``."""
    source: str | None = None
    table: dict[str, Any] = {}
    if path is not None:
        source = f"--config {path}"
        if not path.is_file():
            raise _usage_error(ctx, f"{source}: no such file")
        try:
            table = _toml(path)
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise _usage_error(ctx, f"{source}: not valid TOML ({exc})") from None
        # A pyproject.toml given as --config is read at its [tool.sdaudit] table.
        if path.name == PYPROJECT:
            table = table.get("tool", {}).get("sdaudit", {})
    elif Path(PYPROJECT).is_file():
        try:
            table = _toml(Path(PYPROJECT)).get("tool", {}).get("sdaudit", {})
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise _usage_error(ctx, f"./{PYPROJECT}: not valid TOML ({exc})") from None
        if table:
            source = f"{PYPROJECT} [tool.sdaudit]"
            path = Path(PYPROJECT)
    if not isinstance(table, dict):
        raise _usage_error(ctx, f"{source}: [tool.sdaudit] must be a table of scan flags")
    ctx.meta[META_KEY] = source
    if not table:
        return path
    flags = _flag_table(ctx)
    folder = (path or Path(PYPROJECT)).resolve().parent
    defaults: dict[str, Any] = {}
    for key, raw in table.items():
        if key not in flags:
            near = difflib.get_close_matches(key, [k for k in flags if "_" not in k], n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise _usage_error(ctx, f"{source}: unknown key {key!r}{hint} (keys are scan's "
                               "flags without dashes, e.g. fail-under = 0.6)")
        param, negated = flags[key]
        if isinstance(raw, dict):
            raise _usage_error(ctx, f"{source}: {key!r} is a table; give it a value")
        if negated and not isinstance(raw, bool):
            raise _usage_error(ctx, f"{source}: {key!r} takes true or false")
        value = _value(param, (not raw) if negated else raw, folder)
        try:
            param.type_cast_value(ctx, value)
        except Exception as exc:  # click's BadParameter: its message names the problem
            message = getattr(exc, "message", None) or str(exc)
            raise _usage_error(ctx, f"{source}: {key} = {raw!r}: {message}") from None
        if param.name in defaults:
            raise _usage_error(ctx, f"{source}: {key!r} sets {param.opts[0]} a second time")
        defaults[param.name] = value
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    return path


def setting_sources(ctx: Any) -> dict[str, Any]:
    """What the report records: the configuration file (or null) and, for every setting not
    left at its default, where it came from ("command line" or the file)."""
    from typer._click.core import ParameterSource

    source = ctx.meta.get(META_KEY)
    sources: dict[str, str] = {}
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name == "config_file":
            continue
        how = ctx.get_parameter_source(param.name)
        key = param.opts[0].lstrip("-") if param.opts[0].startswith("--") else param.name
        if how is ParameterSource.COMMANDLINE:
            sources[key] = "command line"
        elif how is ParameterSource.DEFAULT_MAP:
            sources[key] = str(source)
        elif how is ParameterSource.ENVIRONMENT:
            sources[key] = "environment"
    return {"config": source, "sources": sources}
