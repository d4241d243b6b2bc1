"""The built-in tiny image set: crops of photographs shipped inside installed wheels.

No network and no preparation, so tests, demos and a first ``python -m codec.train``
run work on a fresh install; far too little to train a codec.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from codec.data.folder import DataError
from codec.data.reserved import is_reserved
from codec.image import read_image, write_png

__all__ = ["cache_dir", "builtin_images"]


def cache_dir() -> Path:
    """Root of vmuc-lite's caches: ``$VMUC_CACHE`` if set, else ``~/.cache/vmuc-lite``.

    ``builtin/`` (built-in image crops) and ``downloads/`` (fetched .deb and .whl
    files) live under it.
    """
    env = os.environ.get("VMUC_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "vmuc-lite"


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
