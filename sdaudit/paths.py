"""Every path a command reads and every path it writes, checked together before any work.

sdaudit never modifies what a user gave. A write target is refused (exit 2, one line naming both
flags) when it

- is one of the command's inputs (the model, each of its external-data files, the data, the
  selectivity data, labels, class names, the loader script, the baseline, compare's reports), or
  lies inside an input folder (an image of ``--data``);
- is the same file as another write target;
- exists and is not a regular file (a folder, a device such as /dev/full, a fifo, a socket),
  symbolic links followed;
- lies in a folder that does not exist or cannot be written.

Files are compared by resolved path and, where both exist, by (device, inode): symbolic and hard
links, ``./x`` against ``x`` and case-insensitive file systems are all caught.

Pre-condition of :meth:`PathPlan.check`: nothing has been written yet. Post-condition: every
write target can be created or replaced without touching any input or another output.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from sdaudit.errors import BadFlagError


@dataclass(frozen=True)
class Use:
    """One path and the flag (or argument) that gave it, as the user wrote both."""

    flag: str
    path: Path

    def shown(self) -> str:
        return f"{self.flag} {str(self.path)!r}"


def real_path(path: Path) -> Path:
    """The path with symbolic links and ``..`` resolved (the file a write would replace)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: keep the absolute path, the check refuses it
        return path.absolute()


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a fifo"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def model_reads(model: Path, writes: tuple[Use, ...] = (), flag: str = "MODEL") -> tuple[Use, ...]:
    """The model file and each external-data file it names (read from the graph, weights not
    loaded). External data lie in the model's folder (load_model refuses others), so the graph
    is parsed only where an existing write target lies there too. A model that cannot be parsed
    names none: loading it fails later with its own message."""
    uses = [Use(flag, model)]
    from sdaudit.model.torch_convert import TORCH_SUFFIXES

    folder = real_path(model).parent
    near = any(_stat(w.path) is not None and real_path(w.path).is_relative_to(folder)
               for w in writes)
    if not near or model.suffix.lower() in TORCH_SUFFIXES or not model.is_file():
        return tuple(uses)
    try:
        import onnx
        from onnx.external_data_helper import _get_all_tensors, uses_external_data

        proto = onnx.load(str(model), load_external_data=False)
        locations = sorted({
            next((e.value for e in t.external_data if e.key == "location"), "")
            for t in _get_all_tensors(proto) if uses_external_data(t)} - {""})
    except Exception:  # not a readable model: load_model says why, later
        return tuple(uses)
    uses.extend(Use(f"external data of {flag}", model.parent / loc) for loc in locations)
    return tuple(uses)


@dataclass(frozen=True)
class PathPlan:
    """What one command reads and what it will write."""

    reads: tuple[Use, ...]
    writes: tuple[Use, ...]

    def check(self) -> None:
        """Refuse any write that could touch an input, another output or a non-file."""
        for i, out in enumerate(self.writes):
            self._check_target(out)
            target, target_stat = real_path(out.path), _stat(out.path)
            for other in self.writes[:i]:
                if _same(target, target_stat, other.path):
                    raise BadFlagError(
                        f"{out.shown()} and {other.shown()} name the same file",
                        f"give {out.flag} and {other.flag} different paths")
            if target_stat is None:  # a new file cannot be any existing input
                continue
            for read in self.reads:
                if _same(target, target_stat, read.path) or _inside(target, read.path):
                    what = ("is also" if not _inside(target, read.path)
                            else "lies inside the folder of")
                    raise BadFlagError(
                        f"{out.shown()} {what} {read.shown()}; sdaudit never overwrites what "
                        "it reads", f"choose another path for {out.flag}")

    @staticmethod
    def _check_target(out: Use) -> None:
        target = real_path(out.path)
        folder = target.parent
        status = _stat(out.path)
        if status is not None and not stat.S_ISREG(status.st_mode):
            raise BadFlagError(f"{out.shown()} is {_kind(status.st_mode)}, not a regular file",
                               f"give {out.flag} a file path")
        if not folder.is_dir():
            raise BadFlagError(f"{out.shown()}: folder {_folder(out.path, folder)!r} does not exist",
                               "create it first, or choose another path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise BadFlagError(f"{out.shown()}: folder {_folder(out.path, folder)!r} is not writable",
                               "choose another path")


def _folder(given: Path, real_folder: Path) -> str:
    """The folder as the user wrote it, or the real one where a link leads elsewhere."""
    return str(given.parent) if real_path(given.parent) == real_folder else str(real_folder)


def _same(target: Path, target_stat: os.stat_result | None, other: Path) -> bool:
    if target == real_path(other):
        return True
    other_stat = _stat(other)
    return (target_stat is not None and other_stat is not None
            and (target_stat.st_dev, target_stat.st_ino) == (other_stat.st_dev, other_stat.st_ino))


def _inside(target: Path, read: Path) -> bool:
    """Whether an existing write target lies in a folder the command reads (an image of --data)."""
    folder = real_path(read)
    return folder.is_dir() and target != folder and target.is_relative_to(folder)
