"""Validation with real bitstreams: bpp from the length of the bytes, never from likelihoods."""
from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np
import torch

from codec.base import Codec

__all__ = ["validate", "eval_paths"]


def eval_paths(folder: str | None, limit: int | None) -> list[Path]:
    """The validation images: every image of ``folder`` (sorted), or the built-in ones."""
    from codec.data import builtin_images, list_images

    paths = list_images(folder) if folder else builtin_images()
    return paths[:limit] if limit else paths


@torch.no_grad()
def validate(model: Codec, paths: list[Path]) -> dict[str, float]:
    """Compress and decompress every image for real; mean bpp (from bytes), PSNR-RGB,
    PSNR-YCbCr (6:1:1), MS-SSIM and encode / decode seconds over the images.

    A variable-rate model is measured at every trained rate point (``model.trained_rates()``):
    the keys ``bpp@0``, ``psnr_rgb@0``, ... per point, and the plain keys averaged over the
    points. Runs on a float32 CPU copy of the model (the coding passes require it; codec.base),
    so the training model, its device and its train/eval mode are left untouched.
    """
    model = copy.deepcopy(model).cpu().float().eval()
    rates = model.trained_rates()
    if rates == [None]:
        return _measure(model, paths, None)
    per_point = {r: _measure(model, paths, r) for r in rates}
    out = {k: float(np.mean([m[k] for m in per_point.values()])) for k in next(iter(per_point.values()))}
    for r, metrics in per_point.items():
        out.update({f"{k}@{r:g}": v for k, v in metrics.items()})
    return out


def _measure(model: Codec, paths: list[Path], rate) -> dict[str, float]:
    from codec.image import read_image, to_tensor, to_uint8
    from codec.metrics import ms_ssim_rgb, psnr_rgb, psnr_ycbcr

    rows = []
    for p in paths:
        rgb = read_image(p)
        x = to_tensor(rgb)
        t0 = time.perf_counter()
        data = model.compress(x, rate=rate)
        t1 = time.perf_counter()
        rec = to_uint8(model.decompress(data))
        t2 = time.perf_counter()
        h, w = rgb.shape[:2]
        rows.append({"bpp": 8 * len(data) / (h * w), "psnr_rgb": psnr_rgb(rgb, rec), "psnr_ycbcr": psnr_ycbcr(rgb, rec),
                     "ms_ssim": ms_ssim_rgb(rgb, rec), "enc_s": t1 - t0, "dec_s": t2 - t1})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}
