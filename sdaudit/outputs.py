"""All the files of one run, committed together: rendered to temporary files beside their targets,
renamed into place only once every one of them has been written whole.

Pre-condition of :meth:`Outputs.commit`: every output was staged (rendered and fsync'ed).
Post-condition: every target holds its new content, or — after any failure, an interrupt
included — every target is as it was before the run (new ones absent, replaced ones whole) and
no temporary file is left behind.

A new file gets the mode an ordinary new file would (0666 less the umask; temporary files are
created private); a replaced file keeps its mode. A target that is a symbolic link to a file is
written through: the link stays, the file it points to is replaced.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sdaudit.errors import SdauditError
from sdaudit.paths import real_path


@dataclass(frozen=True)
class _Staged:
    flag: str
    tmp: Path
    target: Path  # the real path (links resolved)


def _new_file_mode(target: Path) -> int:
    try:
        return os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _write_error(flag: str, target: Path, exc: OSError) -> SdauditError:
    reason = exc.strerror or type(exc).__name__
    return SdauditError(f"cannot write {flag} {str(target)!r}: {reason}",
                        "free some space, or choose another path")


class Outputs:
    """Stage outputs with :meth:`stage` (or :meth:`stage_with`), then :meth:`commit` them all.

    Used as a context manager, anything staged but not committed is removed on exit.
    """

    def __init__(self) -> None:
        self._staged: list[_Staged] = []

    def __enter__(self) -> Outputs:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.discard()

    def stage(self, flag: str, path: str | os.PathLike[str], content: str | bytes) -> None:
        """Write ``content`` to a temporary file beside ``path``."""
        data = content.encode("utf-8") if isinstance(content, str) else content

        def write(tmp: Path) -> None:
            with tmp.open("wb") as fh:
                fh.write(data)

        self.stage_with(flag, path, write)

    def stage_with(self, flag: str, path: str | os.PathLike[str],
                   produce: Callable[[Path], None]) -> None:
        """``produce(tmp)`` writes the output to ``tmp`` (a path beside the target)."""
        target = real_path(Path(path))
        folder = target.parent
        try:
            fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        except OSError as exc:
            raise _write_error(flag, target, exc) from None
        os.close(fd)
        tmp = Path(name)
        self._staged.append(_Staged(flag, tmp, target))
        try:
            produce(tmp)
            os.chmod(tmp, _new_file_mode(target))
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
        except OSError as exc:
            raise _write_error(flag, target, exc) from None

    def adopt(self, flag: str, produced: Path, path: str | os.PathLike[str]) -> None:
        """Stage a file something else wrote (in the target's folder) as the output ``path``."""
        self.stage_with(flag, path, lambda tmp: os.replace(produced, tmp))

    def commit(self) -> None:
        """Rename every staged file into place; on any failure undo the renames already done."""
        done: list[tuple[Path, Path | None]] = []
        try:
            for item in self._staged:
                backup = _keep_old(item.target)
                done.append((item.target, backup))
                try:
                    os.replace(item.tmp, item.target)
                except OSError as exc:
                    raise _write_error(item.flag, item.target, exc) from None
        except BaseException:
            for target, backup in reversed(done):
                if backup is not None:
                    os.replace(backup, target)
                else:
                    target.unlink(missing_ok=True)
            raise
        finally:
            for _, backup in done:
                if backup is not None:
                    backup.unlink(missing_ok=True)
            self.discard()

    def discard(self) -> None:
        for item in self._staged:
            item.tmp.unlink(missing_ok=True)
        self._staged.clear()


def _keep_old(target: Path) -> Path | None:
    """A second name for the file about to be replaced (a hard link, else a copy), so that a
    failed commit can put it back."""
    if not target.exists():
        return None
    backup = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.old")
    try:
        os.link(target, backup)
    except OSError:
        shutil.copy2(target, backup)
    return backup


def write_atomic(path: str | os.PathLike[str], content: str | bytes, flag: str = "output") -> None:
    """One output, written whole or not at all."""
    with Outputs() as outputs:
        outputs.stage(flag, path, content)
        outputs.commit()
