"""Measure codecs on an image set: real bytes, distortion of the decoded file, wall times.

Every codec, learned or classical, is measured by the same function, :func:`measure_image`::

    rgb (uint8 HxWx3) --encode--> bytes --decode--> rgb_hat (uint8 HxWx3)
    bpp = 8 len(bytes) / (H W)      PSNR-RGB, PSNR-YCbCr 6:1:1, MS-SSIM on (rgb, rgb_hat)

so a learned codec is judged on what ``compress`` writes and ``decompress`` gives back after
rounding to 8 bits, exactly like a JPEG file. Encode and decode are timed separately with
``time.perf_counter`` (CompressAI's convention); the process CPU time of the decode is kept
beside its wall time, so a multi-threaded decoder shows up as CPU/wall > 1.

A learned codec is one curve over several checkpoints, one per rate point (one per lambda):
:func:`resolve_learned` groups the checkpoints it is given by architecture (registry name +
full config), the way training writes them.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from bench.classical import ClassicalCodec
from bench.results import BenchError
from codec.metrics import bpp, ms_ssim_rgb, psnr_rgb, psnr_ycbcr

__all__ = ["EvalImage", "LearnedCurve", "load_eval_set", "measure_image", "measure_classical", "measure_learned",
           "resolve_learned", "subsample"]


@dataclass(frozen=True)
class EvalImage:
    name: str  # path relative to the eval folder
    rgb: np.ndarray


# ------------------------------------------------------------------------------- images


def load_eval_set(eval_dir: str | os.PathLike | None, max_images: int | None = None) -> tuple[list[EvalImage], dict]:
    """Read every image of ``eval_dir`` (sorted; the first ``max_images`` if given).

    ``eval_dir="builtin"`` (or None) takes the tiny built-in set of :func:`codec.data.builtin_images`.
    Returns the images and the ``eval_set`` record: folder, names, sizes and a fingerprint of
    the pixels, so the report can tell when two codecs were measured on different images.
    """
    from codec.data import DataError, builtin_images, list_images
    from codec.image import ImageReadError, read_image

    if eval_dir is None or str(eval_dir) == "builtin":
        root, paths, where = None, builtin_images(), "builtin"
    else:
        root = Path(eval_dir)
        if not root.is_dir():
            what = "is not a folder" if root.exists() else "does not exist"
            raise BenchError(f"data.eval_dir={eval_dir} {what}; build the evaluation set with "
                             "`python -m codec.data prepare data/prepared` (it writes data/prepared/eval), "
                             "pass data.eval_dir=DIR, or data.eval_dir=builtin for the tiny built-in set")
        try:
            paths = list_images(root)
        except DataError as e:
            raise BenchError(str(e)) from None
        where = str(eval_dir)
    if not paths:
        raise BenchError(f"data.eval_dir={where} holds no image (PNG, JPEG, PPM/PGM, WebP); "
                         "point it at a folder of images")
    if max_images is not None:
        if int(max_images) < 1:
            raise BenchError(f"data.max_images={max_images}: must be >= 1 (or null for all)")
        paths = paths[: int(max_images)]
    images, digest = [], hashlib.sha1()
    for p in paths:
        try:
            rgb = read_image(p)
        except ImageReadError as e:
            raise BenchError(f"data.eval_dir={where}: {e}") from None
        name = p.relative_to(root).as_posix() if root is not None else p.name
        images.append(EvalImage(name, rgb))
        digest.update(name.encode() + b"\0" + str(rgb.shape).encode() + rgb.tobytes())
    eval_set = {
        "dir": where,
        "count": len(images),
        "names": [im.name for im in images],
        "sizes": [[int(im.rgb.shape[1]), int(im.rgb.shape[0])] for im in images],
        "fingerprint": digest.hexdigest(),
    }
    return images, eval_set


# ------------------------------------------------------------------------------ measuring


def measure_image(encode: Callable[[np.ndarray], bytes], decode: Callable[[bytes], np.ndarray],
                  rgb: np.ndarray, what: str) -> dict:
    """Encode, decode and score one image; ``what`` names codec and image in errors."""
    t0 = time.perf_counter()
    data = encode(rgb)
    t1 = time.perf_counter()
    c0 = time.process_time()
    t2 = time.perf_counter()
    out = decode(data)
    t3 = time.perf_counter()
    c1 = time.process_time()
    if out.shape != rgb.shape or out.dtype != np.uint8:
        raise BenchError(f"{what}: decoded image is {out.shape} {out.dtype}, the original {rgb.shape} uint8")
    h, w = rgb.shape[:2]
    return {
        "height": int(h),
        "width": int(w),
        "bytes": len(data),
        "bpp": bpp(len(data), h, w),
        "psnr_rgb": psnr_rgb(rgb, out),
        "psnr_ycbcr": psnr_ycbcr(rgb, out),
        "ms_ssim_rgb": ms_ssim_rgb(rgb, out),
        "encode_s": t1 - t0,
        "decode_s": t3 - t2,
        "decode_cpu_s": c1 - c0,
    }


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=True)


def subsample(qualities: Sequence[float], keep: int | None) -> list[float]:
    """``keep`` evenly spaced entries of a quality sweep, both ends included (toy runs)."""
    qs = list(qualities)
    if keep is None or keep >= len(qs):
        return qs
    if keep < 1:
        raise BenchError(f"max_qualities={keep}: must be >= 1 (or null for every quality)")
    if keep == 1:
        return [qs[len(qs) // 2]]
    return [qs[round(i * (len(qs) - 1) / (keep - 1))] for i in range(keep)]


def measure_classical(codec: ClassicalCodec, images: Sequence[EvalImage], *, warmup: bool = True,
                      progress: bool = True) -> tuple[list[dict], list[dict]]:
    """-> (rate_points, rows): one rate point per quality of ``codec.qualities``."""
    rate_points = [{"quality": q} for q in codec.qualities]
    rows = []
    bar = _bar(len(images) * len(rate_points), codec.name, progress)
    for i, q in enumerate(codec.qualities):
        if warmup:  # first-call costs (library loading, allocator growth) are not decode time
            codec.decode(codec.encode(images[0].rgb, q))
        for im in images:
            row = measure_image(lambda rgb: codec.encode(rgb, q), codec.decode, im.rgb, f"{codec.name} q={q} {im.name}")
            rows.append({"image": im.name, "rate_point": i, "quality": q, **row})
            bar.update()
    bar.close()
    return rate_points, rows


# -------------------------------------------------------------------------- learned codecs


@dataclass
class LearnedCurve:
    """Checkpoints of one architecture at different rate points: one codec curve."""

    label: str
    codec: str
    config: dict
    checkpoints: list[Path] = field(default_factory=list)
    profile_label: str = ""


def _expand(pattern: str) -> list[Path]:
    if glob.has_magic(pattern):
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
        if not found:
            raise BenchError(f"learned: no checkpoint matches {pattern!r}")
        return found
    path = Path(pattern)
    if not path.is_file():
        raise BenchError(f"learned: checkpoint {pattern} does not exist")
    return [path]


def resolve_learned(spec: Sequence[str] | Mapping[str, str | Sequence[str]] | None) -> list[LearnedCurve]:
    """Checkpoint paths/globs -> curves, one per architecture (registry name + config).

    ``spec`` is a list of paths or globs (each curve is labelled like the profiler labels the
    architecture: the registry name, plus the config keys that differ from its defaults), or a
    mapping ``{LABEL: path-or-glob or [paths/globs]}`` to name the curves yourself; under one
    label every checkpoint must be of the same architecture. Rate points are ordered by the
    training lambda (``meta.config.loss.lmbda``) where the checkpoints record it.
    """
    from codec.checkpoint import CheckpointError, read_checkpoint, training_lmbda
    from profiling.counter import codec_label

    if not spec:
        return []
    if isinstance(spec, str):
        spec = [spec]
    if isinstance(spec, Mapping):
        entries = [(str(label), [v] if isinstance(v, str) else list(v)) for label, v in spec.items()]
    else:
        entries = [(None, [str(v)]) for v in spec]
    curves: dict[tuple, LearnedCurve] = {}
    seen: set[Path] = set()
    lmbdas: dict[Path, float | None] = {}
    for label, patterns in entries:
        for pattern in patterns:
            for path in _expand(str(pattern)):
                if path.resolve() in seen:
                    continue
                seen.add(path.resolve())
                try:
                    blob = read_checkpoint(path)
                except CheckpointError as e:
                    raise BenchError(str(e)) from None
                arch = (blob["codec"], json.dumps(blob["config"], sort_keys=True))
                derived = codec_label(SimpleNamespace(registry_name=blob["codec"], config=blob["config"]))
                key = (label, *arch) if label is not None else (None, *arch)
                if label is not None:
                    other = [c for k, c in curves.items() if k[0] == label and k[1:] != arch]
                    if other:
                        raise BenchError(f"learned: label {label!r} holds checkpoints of two architectures "
                                         f"({other[0].profile_label} and {derived}, e.g. {path}); "
                                         "give each architecture its own label")
                curve = curves.setdefault(key, LearnedCurve(label or derived, blob["codec"], blob["config"],
                                                            profile_label=derived))
                curve.checkpoints.append(path)
                lmbdas[path] = training_lmbda(blob)
    out = list(curves.values())
    labels = [c.label for c in out]
    dup = sorted({lab for lab in labels if labels.count(lab) > 1})
    if dup:
        raise BenchError(f"learned: two curves are labelled {dup}; name them with learned={{LABEL: [...], ...}}")
    for c in out:
        c.checkpoints.sort(key=lambda p: (lmbdas[p] is None, lmbdas[p] or 0.0, str(p)))
    return out


def measure_learned(curve: LearnedCurve, images: Sequence[EvalImage], *, warmup: bool = True,
                    progress: bool = True, rates: Sequence[float] | None = None,
                    overfit=None) -> tuple[list[dict], list[dict]]:
    """-> (rate_points, rows): real bitstreams on the CPU in float32. A fixed-rate checkpoint
    is one rate point; a variable-rate one (``rates`` in its config, codec.gain) is one point per
    rate of ``rates`` (default: ``model.bench_rates()``, every trained point and the midpoints).
    ``overfit`` (bench.overfit.OverfitEncoder): the slow encoder, latents optimized per image
    (codec.overfit) at each checkpoint's own loss; its time counts as encode time."""
    from codec.checkpoint import CheckpointError, load_checkpoint, training_lmbda
    from codec.image import to_tensor, to_uint8
    from codec.overfit import checkpoint_loss_config, compress_latents, overfit_latents

    models = []
    for path in curve.checkpoints:
        try:
            model, blob = load_checkpoint(path)
        except CheckpointError as e:
            raise BenchError(str(e)) from None
        model = model.cpu().float().eval()
        if model.rate_points is None:
            points = [None]
        else:
            try:
                points = [model.check_rate(r) for r in rates] if rates else model.bench_rates()
            except ValueError as e:
                raise BenchError(f"rates: {e} ({path})") from None
        models.append((path, model, blob, points))
    rate_points, rows = [], []
    bar = _bar(len(images) * sum(len(m[3]) for m in models), curve.label, progress)
    for path, model, blob, points in models:
        meta = blob.get("meta") or {}
        for rate in points:
            i = len(rate_points)
            lmbda = training_lmbda(blob) if rate is None else model.rate_lmbda(rate)
            rate_points.append({"checkpoint": str(path), "lmbda": lmbda, "step": meta.get("step", blob.get("step")),
                                **({"rate": rate} if rate is not None else {})})

            stats: dict = {}

            def encode(rgb: np.ndarray, model=model, rate=rate, blob=blob, stats=stats) -> bytes:
                if overfit is None:
                    return model.compress(to_tensor(rgb), rate=rate)
                x = to_tensor(rgb)
                res = overfit_latents(model, x, overfit.steps, overfit.lr, rate, loss_cfg=checkpoint_loss_config(blob),
                                      method=overfit.method)
                stats.update(overfit_est_loss_0=res.initial["loss"], overfit_est_loss=res.final["loss"],
                             overfit_best_step=res.best_step)
                return compress_latents(model, x, res.latents, rate)

            def decode(data: bytes, model=model) -> np.ndarray:
                return to_uint8(model.decompress(data))

            if warmup:  # torch builds its conv kernels on the first call at a given size (a feed-forward
                # encode warms an overfitting run's layers too, without a whole run)
                decode(model.compress(to_tensor(images[0].rgb), rate=rate) if overfit else encode(images[0].rgb))
            where = f"{path}" if rate is None else f"{path} at rate {rate:g}"
            for im in images:
                row = measure_image(encode, decode, im.rgb, f"{curve.label} ({where}) {im.name}")
                rows.append({"image": im.name, "rate_point": i, "checkpoint": str(path),
                             **({"rate": rate} if rate is not None else {}), **row, **stats})
                bar.update()
    bar.close()
    return rate_points, rows
