"""Folders of images: listing, header checks, and the full-image dataset for evaluation.

Training crops are not made here: they come from :mod:`codec.data.sampler`, whose
samplers draw every crop from a generator seeded per training step (what makes resume
exact). :class:`ImageFolderDataset` yields whole images, for evaluation and for
building those samplers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from codec.image import ImageReadError, read_image, to_tensor

__all__ = [
    "DataError",
    "DataWarning",
    "IMAGE_SUFFIXES",
    "list_images",
    "ImageFolderDataset",
]

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".pnm", ".webp"})

_SETUP_HINT = (
    "set data.train_dir / data.eval_dir to a folder of PNG/JPEG/PPM/WebP images, "
    "or build one with `python -m codec.data prepare OUT_DIR`"
)


class DataError(ValueError):
    """A dataset or data source cannot be used; the message names it and the fix."""


class DataWarning(UserWarning):
    """A single file was skipped; the dataset goes on without it."""


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


def _display_size(im: Image.Image) -> tuple[int, int]:
    """(W, H) as a viewer shows the picture: EXIF orientations 5-8 swap the sides,
    as :func:`codec.image.read_image` does when it applies the orientation."""
    orientation = im.getexif().get(0x0112)
    w, h = im.size
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


class ImageFolderDataset(Dataset):
    """Images from a folder (recursive) or an explicit list of files, as float tensors.

    Each item is the full image, a float32 3xHxW tensor in [0, 1], no crop and no
    flip (for evaluation; use batch_size=1 when sizes differ). Training crops come
    from :func:`codec.data.make_sampler` (:class:`codec.data.CropSampler`), the one
    crop path, seeded per step; this dataset used to make crops of its own
    (``train=True``) from torch's global generator, which a resumed run cannot
    reproduce. ``train=True``, or a ``crop_size`` without ``train=False``, now raises
    ValueError rather than silently returning full images where crops were meant;
    ``crop_size`` with ``train=False`` is accepted and ignored, so that the older
    call ``ImageFolderDataset(folder, crop_size, train=False)`` keeps working.

    Files are checked when the dataset is built, by opening their headers: an
    unreadable file is skipped with a :class:`DataWarning`, and a missing folder,
    an empty folder, or a folder with no readable image raises :class:`DataError`
    saying what to set or run. A file that passes the header check but fails to
    decode later is also skipped with a warning (the next image is returned).

    ``cache=True`` keeps decoded images in memory (uint8), which pays off when the
    images are read many times; each DataLoader worker holds its own copy.
    """

    def __init__(
        self,
        root_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
        crop_size: int | tuple[int, int] | None = None,
        train: bool | None = None,
        *,
        cache: bool = False,
    ) -> None:
        if train or (crop_size is not None and train is None):
            raise ValueError(
                "ImageFolderDataset yields full images and no longer makes training crops; "
                "use codec.data.make_sampler (or CropSampler) for crops, or pass train=False"
            )
        self.train = False
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
            return to_tensor(rgb)[0]
        raise DataError(f"every image in {self.source} failed to decode; {_SETUP_HINT}")

    def _load(self, i: int) -> np.ndarray:
        if i in self._cached:
            return self._cached[i]
        rgb = read_image(self.paths[i])
        if self.cache:
            self._cached[i] = rgb
        return rgb


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
