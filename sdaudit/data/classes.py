"""Class names and the mapping from folder names or label strings to the model's class index."""

from __future__ import annotations

import ast
import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from sdaudit.errors import DataError

if TYPE_CHECKING:
    import onnx

WNID = re.compile(r"^n\d{8}$")
IMAGENET_TABLE = Path(__file__).with_name("imagenet_classes.tsv")
# Metadata keys under which exporters store class names (PaddleClas/PaddleOCR, Ultralytics, ...).
METADATA_KEYS = ("names", "character", "classes", "labels", "class_names")


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(WordNet ids, names) of the 1,000 ImageNet classes in the standard index order."""
    wnids, names = [], []
    for line in IMAGENET_TABLE.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") or not line.strip():
            continue
        _, wnid, name = line.split("\t")
        wnids.append(wnid)
        names.append(name)
    return tuple(wnids), tuple(names)


def read_class_names(path: str | Path) -> tuple[str, ...]:
    """One name per line, in the model's output order (blank lines and #-comments skipped)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"--class-names {str(p)!r} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read --class-names {str(p)!r}: {exc}") from None
    names = tuple(line.strip() for line in text.splitlines()
                  if line.strip() and not line.lstrip().startswith("#"))
    if not names:
        raise DataError(f"--class-names {str(p)!r} holds no names", "write one name per line")
    if len(set(names)) != len(names):
        raise DataError(f"--class-names {str(p)!r} repeats a name", "names must be unique")
    return names


def _parse_names(value: str) -> tuple[str, ...] | None:  # noqa: PLR0911 - one return per format
    text = value.strip()
    if not text:
        return None
    if text[0] in "{[":
        try:
            parsed = json.loads(text)
        except ValueError:
            try:  # Ultralytics writes a Python dict literal; literal_eval evaluates no code
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return None
        if isinstance(parsed, dict):
            try:
                items = sorted(((int(k), str(v)) for k, v in parsed.items()), key=lambda kv: kv[0])
            except (TypeError, ValueError):
                return None
            if [k for k, _ in items] != list(range(len(items))):
                return None
            return tuple(v for _, v in items)
        if isinstance(parsed, list):
            return tuple(str(v) for v in parsed)
        return None
    if "\n" in text:
        return tuple(line.strip() for line in text.splitlines() if line.strip())
    return None


def names_from_metadata(model: onnx.ModelProto, num_classes: int | None) -> tuple[str, ...] | None:
    """Class names stored in the model's metadata, when their count matches the outputs."""
    props = {p.key: p.value for p in model.metadata_props}
    for key in METADATA_KEYS:
        if key in props:
            names = _parse_names(props[key])
            if names and (num_classes is None or len(names) == num_classes):
                return names
    return None


def map_folders(folders: list[str], names: tuple[str, ...] | None,
                num_classes: int | None) -> tuple[dict[str, int], tuple[str, ...], str]:
    """Class index for each sub-folder, the class names, and how they were matched.

    Order of preference: folders named after the given (or model) class names; ImageNet WordNet
    ids on a 1,000-class model; otherwise sorted folder names give the index.
    """
    if names is not None:
        index = {name: i for i, name in enumerate(names)}
        unknown = [f for f in folders if f not in index]
        if not unknown:
            return {f: index[f] for f in folders}, names, "class names"
        if all(f.isdigit() and int(f) < len(names) for f in folders):
            return {f: int(f) for f in folders}, names, "class indices"
    if folders and all(WNID.match(f) for f in folders) and num_classes in (1000, None):
        wnids, inet_names = imagenet_classes()
        lookup = {w: i for i, w in enumerate(wnids)}
        unknown_wnids = [f for f in folders if f not in lookup]
        if unknown_wnids:
            raise DataError(
                f"folder {unknown_wnids[0]!r} is not one of the 1,000 ImageNet classes",
                "ImageNet folders must be ILSVRC2012 WordNet ids (n01440764, ...)",
            )
        return {f: lookup[f] for f in folders}, inet_names, "imagenet wordnet ids"
    if names is not None:
        unknown = [f for f in folders if f not in names]
        raise DataError(
            f"class folder {unknown[0]!r} is not among the {len(names)} class names",
            "name each sub-folder after a class name (or its index), or drop --class-names",
        )
    ordered = sorted(folders)
    return {f: i for i, f in enumerate(ordered)}, tuple(ordered), "sorted folder names"


def read_labels_file(path: str | Path, names: tuple[str, ...] | None) -> dict[str, int]:
    """Labels of a flat image folder, by file name (with and without extension).

    Accepts "filename label" lines (label: index, class name or ImageNet WordNet id; separated by
    whitespace or a comma) and ImageNet's LOC_val_solution.csv (ImageId,PredictionString).
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"--labels {str(p)!r} does not exist", "check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read --labels {str(p)!r}: {exc}") from None
    wnids, _ = imagenet_classes()
    wnid_index = {w: i for i, w in enumerate(wnids)}
    name_index = {n: i for i, n in enumerate(names or ())}
    solution = bool(lines) and lines[0].replace(" ", "").lower().startswith("imageid,")
    labels: dict[str, int] = {}
    for number, raw in enumerate(lines[1:] if solution else lines, start=2 if solution else 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if solution:
            image, _, rest = line.partition(",")
            token = rest.split()[0] if rest.split() else ""
        else:
            parts = re.split(r"[,\s]+", line, maxsplit=1)
            if len(parts) != 2:
                raise DataError(f"--labels {str(p)!r} line {number}: expected 'filename label'",
                                "write one 'filename label' pair per line")
            image, token = parts[0], parts[1].strip()
        if token.lstrip("-").isdigit():
            label = int(token)
            if label < 0:
                raise DataError(f"--labels {str(p)!r} line {number}: label {label} is negative",
                                "labels are class indices 0..K-1")
        elif token in name_index:
            label = name_index[token]
        elif token in wnid_index:
            label = wnid_index[token]
        else:
            raise DataError(f"--labels {str(p)!r} line {number}: unknown label {token!r}",
                            "labels are class indices, class names or ImageNet WordNet ids")
        labels[image] = label
        labels.setdefault(Path(image).stem, label)
    if not labels:
        raise DataError(f"--labels {str(p)!r} holds no labels", "write 'filename label' lines")
    return labels
