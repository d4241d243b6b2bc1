"""The results files of the benchmark: one JSON per codec, in the CompressAI results layout.

CompressAI's ``compressai.utils.eval_model`` writes ``{"name", "description", "results":
{"psnr-rgb": [...], "ms-ssim-rgb": [...], "bpp": [...], ...}}`` with one entry per rate point;
plotting scripts and papers read that shape. A bench JSON is that, sorted by bpp, plus what is
needed to trust and redo the numbers::

    {
      "name": "jpeg",                      # the curve's label (file name: <slug(name)>.json)
      "description": "...",
      "results": {"bpp", "psnr-rgb", "psnr-ycbcr", "ms-ssim-rgb",
                  "encoding_time", "decoding_time"},    # means over images, one per rate point
      "format": "vmuc-lite-bench/1",
      "kind": "classical" | "learned",
      "codec": registry name or classical codec name,
      "config": architecture config (learned) | encoder settings (classical),
      "profile_label": the profiler's label of the architecture (learned only),
      "rate_points": [{"quality": q} | {"checkpoint", "lmbda", "step"}, ...],  # same order
      "images": [{"image", "rate_point", "height", "width", "bytes", "bpp", "psnr_rgb",
                  "psnr_ycbcr", "ms_ssim_rgb", "encode_s", "decode_s", "decode_cpu_s"}, ...],
      "eval_set": {"dir", "count", "names", "fingerprint"},
      "command": "python -m bench ...", "environment": {...}, "date": ISO 8601
    }

Means are over per-image values (CompressAI averages per-image PSNR, not the PSNR of the mean
MSE). A non-finite value (a lossless image gives infinite PSNR) is written as ``null``.
"""
from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BENCH_FORMAT", "BenchError", "METRICS", "RESULT_KEYS", "curve_result", "environment", "load_results",
           "result_path", "slug", "write_json"]

BENCH_FORMAT = "vmuc-lite-bench/1"

#: per-image row key -> CompressAI results key, for the quantities averaged per rate point.
METRICS = {
    "bpp": "bpp",
    "psnr_rgb": "psnr-rgb",
    "psnr_ycbcr": "psnr-ycbcr",
    "ms_ssim_rgb": "ms-ssim-rgb",
    "encode_s": "encoding_time",
    "decode_s": "decoding_time",
}
RESULT_KEYS = tuple(METRICS.values())


class BenchError(ValueError):
    """The benchmark cannot run as asked (no images, bad checkpoint, bad option); says what to fix."""


def slug(label: str) -> str:
    """A file-name-safe form of a curve label: ``hyperprior(M=12,N=8)`` -> ``hyperprior_M-12_N-8``."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", label.replace("=", "-")).strip("._")
    return s or "codec"


def result_path(out_dir: str | os.PathLike, label: str) -> Path:
    return Path(out_dir) / f"{slug(label)}.json"


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        obj = obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return _finite(obj)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Strict JSON (no NaN/Infinity), written atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(_jsonable(obj), indent=1, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path


def _mean(values: Iterable[float | None]) -> float | None:
    vals = list(values)
    if any(v is None or not math.isfinite(v) for v in vals) or not vals:
        return None
    return float(np.mean(vals))


def curve_result(
    name: str,
    description: str,
    kind: str,
    codec: str,
    config: dict,
    rate_points: list[dict],
    rows: list[dict],
    eval_set: dict,
    command: str,
    env: dict,
    **extra: Any,
) -> dict:
    """Average the per-image ``rows`` per rate point and sort the rate points by mean bpp.

    ``rows[i]["rate_point"]`` indexes ``rate_points``; after sorting it indexes the sorted list.
    """
    per_point = []
    for i, point in enumerate(rate_points):
        mine = [r for r in rows if r["rate_point"] == i]
        if not mine:
            raise BenchError(f"{name}: rate point {point} has no measured image")
        per_point.append((i, point, {key: _mean(r[row_key] for r in mine) for row_key, key in METRICS.items()}))
    per_point.sort(key=lambda p: p[2]["bpp"])
    new_index = {old: new for new, (old, _, _) in enumerate(per_point)}
    images = sorted(({**r, "rate_point": new_index[r["rate_point"]]} for r in rows),
                    key=lambda r: (r["rate_point"], r["image"]))
    return {
        "name": name,
        "description": description,
        "results": {key: [p[2][key] for p in per_point] for key in RESULT_KEYS},
        "format": BENCH_FORMAT,
        "kind": kind,
        "codec": codec,
        "config": config,
        **extra,
        "rate_points": [p[1] for p in per_point],
        "images": images,
        "eval_set": eval_set,
        "command": command,
        "environment": env,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def load_results(out_dir: str | os.PathLike) -> list[dict]:
    """Every bench JSON in ``out_dir`` (other JSON files, such as speed.json, are skipped).

    Each result gets ``"_file"``: its file name, for the report's provenance section.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise BenchError(f"results folder {out_dir} does not exist; run `python -m bench ...` first "
                         "(it writes one JSON per codec there)")
    results = []
    for path in sorted(out_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise BenchError(f"{path}: not readable JSON ({e}); delete it or rerun its codec") from None
        if not isinstance(data, dict) or data.get("format") != BENCH_FORMAT:
            continue
        missing = [k for k in ("name", "results", "images", "kind") if k not in data]
        if missing:
            raise BenchError(f"{path}: bench result without {missing}; rerun its codec")
        data["_file"] = path.name
        results.append(data)
    return results


# ----------------------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(module)
    except Exception:
        return None


def environment(threads: int | None = None) -> dict:
    """What the timings depend on: CPU, thread counts, library versions."""
    import torch

    env = {
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "bench_threads": threads,
        "python": platform.python_version(),
        "platform": platform.platform(),
        # other work on the machine skews wall times; a load well above cpu_count flags it
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    for pkg in ("torch", "numpy", "Pillow", "imagecodecs", "constriction", "pytorch-msssim"):
        env[pkg] = _version(pkg)
    try:
        from PIL import features

        env["libjpeg"] = features.version("jpg")
        env["libwebp"] = features.version("webp")
        env["libavif"] = features.version("avif")
    except Exception:  # an older Pillow without these queries
        pass
    return env
