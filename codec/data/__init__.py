"""Training and evaluation images.

Three ways to get images, from least to most work:

1. :func:`builtin_images` (:mod:`codec.data.builtin`) -- six-odd 256x256 crops of
   photographs that ship inside installed wheels. No network, no preparation: enough
   for smoke tests and CPU demos, far too little to train a codec.
2. Any folder of PNG/JPEG/PPM/WebP files (:mod:`codec.data.folder`).
3. ``python -m codec.data prepare OUT_DIR`` (:mod:`codec.data.preparation`) -- builds
   ``OUT_DIR/train``, ``OUT_DIR/eval`` and ``OUT_DIR/reserved`` from Debian wallpaper
   packages and wheel sample photos; :mod:`codec.data.reserved` lists the pictures kept
   for independent evaluation.

Training crops come from one sampler, :func:`make_sampler` (:mod:`codec.data.sampler`):
in memory or streamed from disk, every crop drawn from a generator seeded per step.
Evaluation reads whole images (:func:`list_images`, :class:`ImageFolderDataset`).
"""

from codec.data.builtin import builtin_images, cache_dir
from codec.data.folder import (
    IMAGE_SUFFIXES,
    DataError,
    DataWarning,
    ImageFolderDataset,
    list_images,
)
from codec.data.preparation import (
    DEB_PACKAGES,
    WHEEL_PACKAGES,
    PrepareSummary,
    fetch_debs,
    fetch_wheels,
    main,
    prepare,
)
from codec.data.reserved import RESERVED_NAMES, RESERVED_SUBSTRINGS, is_reserved
from codec.data.sampler import (
    SAMPLERS,
    CropSampler,
    StreamingCropSampler,
    make_sampler,
    training_paths,
)

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
    "SAMPLERS",
    "CropSampler",
    "StreamingCropSampler",
    "make_sampler",
    "training_paths",
]
