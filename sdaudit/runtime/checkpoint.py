"""Finished units' counts on disk, fingerprinted, so that an interrupted audit resumes.

``--checkpoint DIR`` holds::

    DIR/sdaudit-checkpoint.json        the fingerprint: model, data, configuration, chunk size
    DIR/pass-<digest>/unit-000007.npz  one finished unit's counts (numbers only, no pickles)

A pass's folder is named by the digest of its configuration set (masks, noise, histogram bins,
fill values), so a pass whose configurations depend on an earlier pass's numbers finds its units
only when those numbers are the same. Each unit file is written to a temporary name and renamed
(atomic on POSIX): a run killed at any point leaves whole units or none. A unit is read back only
if the chunk it was computed on has the same digest as the chunk read now.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sdaudit.errors import BadFlagError, DataError

if TYPE_CHECKING:
    from sdaudit.runtime.counts import UnitResult, Work

MANIFEST = "sdaudit-checkpoint.json"
FORMAT = 1


def digest(*parts: Any) -> str:
    """sha256 over arrays (their dtype, shape and bytes) and JSON-able values, in order."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def _write_atomic(path: Path, write: Any) -> None:
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class Checkpoint:
    """A checkpoint folder for one audit (``fingerprint``: its model, data and configuration).

    Pre-condition of a resume: the folder's fingerprint is this audit's (else exit 2)."""

    def __init__(self, folder: str | Path, fingerprint: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.fingerprint = digest(fingerprint)
        manifest = self.folder / MANIFEST
        if self.folder.exists() and not self.folder.is_dir():
            raise BadFlagError(f"--checkpoint {str(folder)!r} is a file",
                               "give a folder (it is created if missing)")
        if manifest.exists():
            try:
                held = json.loads(manifest.read_text())
            except (OSError, ValueError) as exc:
                raise DataError(f"--checkpoint {str(folder)!r}: unreadable {MANIFEST} ({exc})",
                                "give another folder, or remove this one") from None
            if held.get("fingerprint") != self.fingerprint:
                raise DataError(
                    f"--checkpoint {str(folder)!r} holds another audit (another model, data "
                    "or configuration)", "give a new folder, or rerun with the same model, data "
                    "and options")
        elif self.folder.exists() and any(self.folder.iterdir()):
            raise BadFlagError(f"--checkpoint {str(folder)!r} is a folder with other files",
                               "give an empty or new folder (sdaudit writes nothing into "
                               "folders it did not make)")
        else:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                body = json.dumps({"format": FORMAT, "fingerprint": self.fingerprint,
                                   "of": fingerprint}, indent=1, default=str).encode()
                _write_atomic(manifest, lambda f: f.write(body))
            except OSError as exc:
                raise BadFlagError(f"--checkpoint {str(folder)!r} cannot be written ({exc})",
                                   "give a folder you can write to") from None

    def pass_store(self, work: Work) -> PassStore:
        configs = work.configs
        hist = work.hist
        key = digest(
            work.stats, work.samples, work.observe,
            None if hist is None else [hist.bins], *(() if hist is None else (hist.lo, hist.hi)),
            *(() if configs is None else (configs.masks, configs.noise_sd)),
            None if configs is None or configs.noise_draw is None else np.asarray(
                configs.noise_draw),
            *(() if work.unit_mean is None else (work.unit_mean,)),
            *(a for spec in (work.moments, work.noise_moments) if spec
              for name in sorted(spec) for a in (name, spec[name].rows, spec[name].weights)))
        return PassStore(self.folder / f"pass-{key[:20]}")


class PassStore:
    """The finished units of one pass."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(exist_ok=True)

    def _path(self, index: int) -> Path:
        return self.folder / f"unit-{index:06d}.npz"

    def save(self, unit: UnitResult, chunk: str) -> None:
        """Write ``unit``'s counts, computed on the chunk of digest ``chunk``."""
        rates = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                 for k, v in unit.rates.items()}
        meta = {"index": unit.index, "samples": unit.samples, "rates": rates,
                "probabilities": unit.probabilities, "num_classes": unit.num_classes,
                "positions": unit.positions, "chunk": chunk}
        arrays = {f"counts.{k}": v for k, v in unit.counts.to_arrays().items()}
        for i, v in enumerate(unit.observed or ()):
            arrays[f"observed.{i}"] = v
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        _write_atomic(self._path(unit.index), lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]

    def load(self, index: int, chunk: str) -> UnitResult | None:
        """Chunk ``index``'s counts where they were saved for this very chunk (digest
        ``chunk``), else None."""
        from sdaudit.runtime.counts import PassResult, UnitResult

        path = self._path(index)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (OSError, ValueError, KeyError) as exc:  # a damaged file: run the unit again
            del exc
            return None
        if meta.get("chunk") != chunk:
            raise DataError(f"the checkpoint's unit {index} was computed on other data than "
                            f"chunk {index} of --data", "give a new --checkpoint folder")
        counts = PassResult.from_arrays({k.split(".", 1)[1]: v for k, v in arrays.items()
                                         if k.startswith("counts.")})
        seen = sorted((int(k.split(".")[1]), v) for k, v in arrays.items()
                      if k.startswith("observed."))
        observed = tuple(v for _, v in seen) or None
        return UnitResult(index, counts, int(meta["samples"]), dict(meta["rates"]),
                          bool(meta["probabilities"]), int(meta["num_classes"]), resumed=True,
                          observed=observed, positions=int(meta.get("positions", 1)))
