"""Training crops: one crop sampler, held in memory or streamed from disk, seeded per step.

Every training crop in the project comes from here. A batch is ``batch_size`` square
``crop_size`` crops, each from a uniformly chosen image at a uniformly chosen position,
flipped left-right with probability 1/2 (random crops of a large photo pool, as in
Ballé et al. 2018, "Variational image compression with a scale hyperprior", ICLR, and
the learned codecs after it). Images smaller than the crop are replicate-padded at the
bottom and right: edge pixels repeated add no false texture.

**Why an explicit generator.** ``sample(batch_size, generator)`` draws everything from
the ``torch.Generator`` it is given, and the trainer seeds one per step from
(seed, step, rank). The batch of step s is then a pure function of s and the image
list, so a run killed at any point and resumed from its checkpoint sees the same
batches as an uninterrupted one. A DataLoader's global RNG and per-worker seeds would
not give that. The draws per crop are, in this order, each one
``torch.randint(n, (1,), generator=generator)``:

    image index (n = number of images), top (n = H - c + 1), left (n = W - c + 1),
    flip (n = 2)

where H x W is the image size after padding up to the crop. This order is a contract:
it is the one the former ``codec.train.ImagePool`` used, so runs keep their batches
(tests/test_sampler.py keeps a copy of ImagePool to compare against), and both
samplers below share it (:func:`draw_crops`), so they return the same batches.

Two samplers, same batches:

* :class:`CropSampler` (``data.sampler=memory``, the default) decodes every image once
  and holds it as uint8 (3 bytes per pixel); a step costs only the crop copies.
* :class:`StreamingCropSampler` (``data.sampler=stream``) is for training sets that do
  not fit in memory. It reads only the image *sizes* at construction (file headers,
  EXIF orientation applied, as :func:`codec.image.read_image` applies it), draws the
  crop parameters in the training process from the same generator in the same order,
  and decodes on demand, in ``workers`` processes (0: in the training process). For the
  same generator it returns bit-identical batches to :class:`CropSampler`, so a run can
  switch between the two, and resume stays exact. The price is one full decode per
  crop; with large PNGs use a few workers.

:func:`make_sampler` builds either from the ``data`` config node.
"""

from __future__ import annotations

import math
import os
import signal
import struct
import warnings
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from codec.data.folder import DataError, ImageFolderDataset, _display_size
from codec.image import ImageReadError, ImageWarning, read_image

__all__ = [
    "SAMPLERS",
    "Crop",
    "draw_crops",
    "training_paths",
    "CropSampler",
    "StreamingCropSampler",
    "make_sampler",
]

#: Allowed values of ``data.sampler``.
SAMPLERS = ("memory", "stream")


class Crop(NamedTuple):
    """One crop of a batch: which image, where, and whether it is flipped left-right."""

    index: int
    top: int
    left: int
    flip: bool


def draw_crops(
    sizes: Sequence[tuple[int, int]], crop_size: int, batch_size: int, generator: torch.Generator
) -> list[Crop]:
    """The crops of one batch, drawn from ``generator`` in the fixed order (see the module
    docstring). ``sizes`` are the (H, W) of the images *after* padding up to the crop,
    so every H, W >= ``crop_size``."""
    c = crop_size
    crops = []
    for _ in range(batch_size):
        index = int(torch.randint(len(sizes), (1,), generator=generator))
        h, w = sizes[index]
        top = int(torch.randint(h - c + 1, (1,), generator=generator))
        left = int(torch.randint(w - c + 1, (1,), generator=generator))
        flip = bool(torch.randint(2, (1,), generator=generator))
        crops.append(Crop(index, top, left, flip))
    return crops


def training_paths(train_dir: str | os.PathLike | None) -> list[Path]:
    """The training images: every readable image under ``train_dir`` (recursive, sorted),
    or the built-in tiny set when ``train_dir`` is None or empty.

    Files whose header cannot be read are skipped with a :class:`DataWarning` (this is
    :class:`ImageFolderDataset`'s check), so both samplers see the same list."""
    if not train_dir:
        from codec.data.builtin import builtin_images

        return list(ImageFolderDataset(builtin_images()).paths)
    return list(ImageFolderDataset(train_dir).paths)


def _check_crop_size(crop_size: Any) -> int:
    if isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer)) or crop_size < 1:
        raise ValueError(f"crop_size must be a positive integer, got {crop_size!r}")
    return int(crop_size)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _padded(h: int, w: int, c: int) -> tuple[int, int]:
    return max(h, c), max(w, c)


# --------------------------------------------------------------------------- in memory


class CropSampler:
    """Training images held in memory as uint8 (3xHxW, padded up to the crop), cropped by
    an explicit generator; ``data.sampler=memory``.

    ``images``: uint8 HxWx3 arrays (what :func:`codec.image.read_image` returns), or
    3xHxW tensors, uint8 or float in [0, 1] (float is rounded to uint8, as the former
    ``codec.train.ImagePool`` did). ``paths`` optionally names their files.

    ``sample(batch_size, generator)`` returns float32 (B, 3, c, c) in [0, 1], contiguous,
    on the CPU, drawn as described in :mod:`codec.data.sampler`.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray | torch.Tensor],
        crop_size: int,
        *,
        paths: Sequence[str | os.PathLike] | None = None,
    ) -> None:
        self.crop_size = c = _check_crop_size(crop_size)
        if len(images) == 0:
            raise DataError("CropSampler: no training images")
        if paths is not None and len(paths) != len(images):
            raise ValueError(f"CropSampler: {len(paths)} paths for {len(images)} images")
        self.paths = [Path(p) for p in paths] if paths is not None else None
        self.images: list[torch.Tensor] = []
        for img in images:
            u8 = _as_uint8_chw(img)
            h, w = u8.shape[-2:]
            if h < c or w < c:
                u8 = F.pad(u8[None].float(), (0, max(0, c - w), 0, max(0, c - h)),
                           mode="replicate")[0].to(torch.uint8)
            self.images.append(u8)
        self.sizes = [tuple(img.shape[-2:]) for img in self.images]

    @classmethod
    def from_paths(cls, paths: Sequence[str | os.PathLike], crop_size: int) -> "CropSampler":
        """Decode every file now. A file that fails to decode raises :class:`DataError`
        naming it, rather than being dropped or replaced: the streaming sampler must see
        the same image list to give the same batches, and it cannot drop a file it only
        finds broken in the middle of a run. (The former ``codec.train.ImagePool`` used
        the next image twice instead, with a warning.)"""
        _check_crop_size(crop_size)
        images = []
        for p in paths:
            try:
                images.append(read_image(p))
            except ImageReadError as exc:
                raise DataError(f"training image failed to decode: {exc}; fix or remove the file") from exc
        return cls(images, crop_size, paths=paths)

    @classmethod
    def from_folder(cls, train_dir: str | os.PathLike | None, crop_size: int) -> "CropSampler":
        """Every image under ``train_dir``, or the built-in set when it is None."""
        return cls.from_paths(training_paths(train_dir), crop_size)

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"CropSampler({len(self)} images, crop_size={self.crop_size})"

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        c = self.crop_size
        out = []
        for k in draw_crops(self.sizes, c, _check_batch_size(batch_size), generator):
            crop = self.images[k.index][:, k.top:k.top + c, k.left:k.left + c]
            if k.flip:
                crop = crop.flip(-1)
            out.append(crop)
        return torch.stack(out).float() / 255.0

    def close(self) -> None:
        """Nothing to release; here so that both samplers can be used alike."""

    def __enter__(self) -> "CropSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _as_uint8_chw(img: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(img, np.ndarray):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"CropSampler: expected uint8 HxWx3 arrays, got {img.dtype} {img.shape}")
        return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous()
    if not isinstance(img, torch.Tensor) or img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"CropSampler: expected 3xHxW tensors, got {getattr(img, 'shape', type(img))}")
    if img.dtype == torch.uint8:
        return img.contiguous()
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


# --------------------------------------------------------------------------- streaming


def _header(path: Path) -> tuple[int, int, str | None]:
    """(H, W) as :func:`read_image` will return it (EXIF orientation applied) and the
    mode if it carries alpha, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            if im.format == "PNG" and not _png_may_carry_orientation(path):
                w, h = im.size  # nothing in the file can rotate it
            else:
                # Pillow decodes a PNG here, to find chunks stored after the pixel data
                w, h = _display_size(im)
            alpha = im.mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
                im.mode == "P" and "transparency" in im.info
            )
            return h, w, im.mode if alpha else None
    except Exception as exc:  # noqa: BLE001 -- any failure means "not usable", reported
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Text chunks Pillow reads an orientation from (Image.getexif): ImageMagick's raw EXIF
# profile and XMP's tiff:Orientation.
_PNG_ORIENTATION_KEYS = (b"Raw profile type exif", b"XML:com.adobe.xmp")


def _png_may_carry_orientation(path: Path) -> bool:
    """False only when a walk over the chunk headers of a PNG (pixel data skipped, not
    decoded) reaches IEND without meeting an ``eXIf`` chunk or a text chunk Pillow reads
    an orientation from. Why: Pillow's ``getexif()`` on a PNG decodes the whole image,
    because EXIF may come after the pixel data; for a large training set that would be
    a full decode of every file just to build the streaming sampler. Anything unusual
    (a truncated file, a chunk that runs past the end) returns True and leaves the
    answer to Pillow."""
    with open(path, "rb") as f:
        if f.read(8) != _PNG_SIGNATURE:
            return True
        while True:
            head = f.read(8)
            if len(head) < 8:
                return True
            length, kind = struct.unpack(">I4s", head)
            if kind == b"IEND":
                return False
            if kind == b"eXIf":
                return True
            if kind in (b"tEXt", b"zTXt", b"iTXt"):
                key = f.read(min(length, 80)).split(b"\0", 1)[0]
                if key in _PNG_ORIENTATION_KEYS:
                    return True
                f.seek(length - min(length, 80) + 4, os.SEEK_CUR)
            else:
                f.seek(length + 4, os.SEEK_CUR)


class _Job(NamedTuple):
    path: str
    size: tuple[int, int]  # (H, W) before padding, from the header
    crop_size: int
    top: int
    left: int
    flip: bool


def _decode_crop(job: _Job) -> np.ndarray:
    """Decode one file and cut one crop: uint8 (c, c, 3). Top-level so a worker process
    can run it; the result is the same pixels :class:`CropSampler` would give."""
    with warnings.catch_warnings():
        # a dropped alpha channel was reported once, when the sampler was built
        warnings.simplefilter("ignore", ImageWarning)
        try:
            rgb = read_image(job.path)
        except ImageReadError as exc:
            raise DataError(
                f"training image failed to decode: {exc}. Fix or remove the file and start the "
                "run again (it resumes from its last checkpoint); no other image is substituted, "
                "since that would change this and every later batch"
            ) from exc
    h, w = job.size
    if rgb.shape[:2] != (h, w):
        raise DataError(
            f"{job.path}: decoded as {rgb.shape[1]}x{rgb.shape[0]} but its header said {w}x{h} "
            "when the sampler was built; the file changed during training"
        )
    c = job.crop_size
    if h < c or w < c:
        rgb = np.pad(rgb, ((0, max(0, c - h)), (0, max(0, c - w)), (0, 0)), mode="edge")
    crop = rgb[job.top:job.top + c, job.left:job.left + c]
    if job.flip:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def _worker_init() -> None:
    # Ctrl-C goes to the whole process group; the training process handles it and shuts
    # the workers down, instead of every worker printing a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _shutdown(pool) -> None:
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


class StreamingCropSampler:
    """Crops decoded on demand from image files; ``data.sampler=stream``.

    Returns, for the same generator, bit-identical batches to :class:`CropSampler` over
    the same files (the crop parameters are drawn here, in the calling process, by
    :func:`draw_crops`, from the sizes read from the file headers at construction; only
    decoding and cutting happen in the workers). Memory holds the file list and sizes,
    and one decoded image per worker at a time.

    ``workers``: processes that decode the crops of a batch in parallel (``spawn``
    start method: safe with torch's threads and CUDA in the parent); 0 decodes in the
    calling process. Call :meth:`close` (or use ``with``) to stop them; they are also
    stopped when the sampler is garbage-collected and at interpreter exit. As with any
    ``spawn`` pool, each worker process imports the main module again, so a script (not
    ``python -m codec.train`` and the like, which are guarded) must build the sampler
    under ``if __name__ == "__main__":``.

    A file that fails to decode mid-training raises :class:`DataError` naming it. It
    is not replaced by another image: that would silently change this batch and, since
    the memory sampler or a resumed run would not make the same substitution, break
    exact resume. A file whose decoded size no longer matches its header (replaced
    during the run) raises too.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], crop_size: int, *, workers: int = 0) -> None:
        self.crop_size = c = _check_crop_size(crop_size)
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
            raise ValueError(f"workers must be an integer >= 0, got {workers!r}")
        self.workers = int(workers)
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise DataError("StreamingCropSampler: no training images")
        self._raw_sizes: list[tuple[int, int]] = []
        for p in self.paths:
            h, w, alpha_mode = _header(p)
            if alpha_mode is not None:
                warnings.warn(f"{p}: alpha channel dropped (mode {alpha_mode})", ImageWarning, stacklevel=2)
            self._raw_sizes.append((h, w))
        self.sizes = [_padded(h, w, c) for h, w in self._raw_sizes]
        self._pool = None
        if self.workers:
            import concurrent.futures
            import multiprocessing

            self._pool = concurrent.futures.ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
            )
        self._finalizer = weakref.finalize(self, _shutdown, self._pool)

    @classmethod
    def from_folder(
        cls, train_dir: str | os.PathLike | None, crop_size: int, *, workers: int = 0
    ) -> "StreamingCropSampler":
        """Every image under ``train_dir``, or the built-in set when it is None."""
        return cls(training_paths(train_dir), crop_size, workers=workers)

    def __len__(self) -> int:
        return len(self.paths)

    def __repr__(self) -> str:
        return f"StreamingCropSampler({len(self)} images, crop_size={self.crop_size}, workers={self.workers})"

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        c = self.crop_size
        crops = draw_crops(self.sizes, c, _check_batch_size(batch_size), generator)
        jobs = [_Job(str(self.paths[k.index]), self._raw_sizes[k.index], c, k.top, k.left, k.flip) for k in crops]
        if self.workers:
            if not self._finalizer.alive:
                raise RuntimeError("StreamingCropSampler.sample() after close()")
            chunk = math.ceil(len(jobs) / self.workers)
            arrays = list(self._pool.map(_decode_crop, jobs, chunksize=chunk))
        else:
            arrays = [_decode_crop(job) for job in jobs]
        # (B, c, c, 3) -> contiguous (B, 3, c, c): same values and layout as CropSampler
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().float() / 255.0

    def close(self) -> None:
        """Stop the worker processes and wait for them; safe to call twice."""
        self._finalizer()

    def __enter__(self) -> "StreamingCropSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# --------------------------------------------------------------------------- config


def make_sampler(data_cfg: Mapping[str, Any] | Any) -> CropSampler | StreamingCropSampler:
    """The training crop sampler for a ``data`` config node (OmegaConf or a plain dict).

    Keys: ``train_dir`` (None: the built-in images), ``crop_size`` (required),
    ``sampler`` (``memory`` or ``stream``; default ``memory``), ``workers`` (decoding
    processes for ``stream``; default 0, in the training process). Other keys
    (``eval_dir``, ...) are ignored. A bad value raises ValueError naming the key and
    what it may be.
    """
    kind = data_cfg.get("sampler", "memory")
    if not isinstance(kind, str) or kind not in SAMPLERS:
        raise ValueError(
            f"data.sampler={kind!r}: use 'memory' (decode every image once and keep it in "
            "memory) or 'stream' (decode on demand, for training sets larger than memory)"
        )
    workers = data_cfg.get("workers", 0)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 0:
        raise ValueError(f"data.workers={workers!r}: use an integer >= 0 (0: decode in the training process)")
    if kind == "memory" and workers:
        raise ValueError(
            f"data.workers={workers} is for data.sampler=stream; the memory sampler decodes "
            "once at start-up. Set data.workers=0, or data.sampler=stream"
        )
    crop_size = data_cfg.get("crop_size")
    if isinstance(crop_size, bool) or not isinstance(crop_size, (int, np.integer)) or crop_size < 1:
        raise ValueError(f"data.crop_size={crop_size!r}: use a positive integer (pixels)")
    train_dir = data_cfg.get("train_dir")
    if kind == "memory":
        return CropSampler.from_folder(train_dir, int(crop_size))
    return StreamingCropSampler.from_folder(train_dir, int(crop_size), workers=int(workers))
