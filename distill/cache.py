"""Teacher-output cache: ``python -m distill.cache teacher=PATH cache.crops=N data.crop_size=C out=DIR``.

On a CPU the teacher's forward pass costs many times the student's, so a live-teacher KD step
is dominated by the teacher. The cache runs the teacher once over N crops drawn with the
training engine's seeded sampler and stores what the KD losses read (reconstruction, latent,
entropy parameters, the feature taps asked for) as float16 memory-mapped ``.npy`` arrays, the
crops themselves as uint8 (exact), and a manifest. ``python -m distill ... distill.cache=DIR``
then trains without loading the teacher; one cache serves a whole sweep of students.

The manifest records the teacher checkpoint's SHA-256, its rate point, the crop size, the seed,
a fingerprint of the training images (names and bytes) and N; a run whose teacher, crop size,
rate point or data folder differs is refused with a message naming the difference.

A training step draws its B crops from the N cached ones with the step's generator (indices
``randint(N, (B,))``), so resume stays exact; keep N well above steps x batch / a few to avoid
overfitting the cached crops.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

from distill.teacher import TeacherInfo, load_teacher, teacher_outputs

__all__ = ["build_cache", "TeacherCache", "CacheMismatch", "data_fingerprint", "MANIFEST"]

MANIFEST = "manifest.json"
FORMAT = "vmuc-lite-teacher-cache/1"


class CacheMismatch(ValueError):
    """A cache made for another teacher, rate point, crop size or data folder."""


def data_fingerprint(train_dir: str | None) -> str:
    """SHA-256 over the training images' relative names and bytes (the built-in set if None)."""
    from codec.data import builtin_images, list_images

    paths = list_images(train_dir) if train_dir else builtin_images()
    root = Path(train_dir) if train_dir else None
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(str(p.relative_to(root) if root else p.name).encode() + b"\0")
        h.update(Path(p).read_bytes())
    return h.hexdigest()


def _chunk_seed(seed: int, chunk: int) -> int:
    from codec.engine.loop import step_seed

    return step_seed(seed, chunk, rank=0)


def build_cache(teacher_path: str, data_cfg, crops: int, out_dir: str | os.PathLike, seed: int = 0,
                features: list[str] = (), chunk: int = 16, progress: bool = True) -> dict:
    """Run the teacher over ``crops`` crops and write the cache; returns the manifest."""
    from tqdm import tqdm

    from codec.data import make_sampler

    if int(crops) < 1:
        raise ValueError(f"cache.crops must be >= 1, got {crops}")
    teacher, info = load_teacher(teacher_path)
    if teacher.rates is not None:
        raise ValueError(f"teacher {teacher_path} is variable-rate: a cache holds one rate point, and distillation "
                         f"from a variable-rate teacher runs it live at each crop's rate (drop the cache)")
    crop = int(data_cfg["crop_size"])
    if crop % teacher.stride:
        raise ValueError(f"data.crop_size={crop} must be a multiple of the teacher's stride {teacher.stride}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).unlink(missing_ok=True)  # no manifest until every array is complete
    arrays: dict[str, np.memmap] = {}
    sampler = make_sampler(data_cfg)
    try:
        with torch.no_grad():
            bar = tqdm(total=crops, desc="teacher cache", unit="crop", disable=not progress)
            for c, start in enumerate(range(0, crops, chunk)):
                n = min(chunk, crops - start)
                x = sampler.sample(n, torch.Generator().manual_seed(_chunk_seed(seed, c)))
                outputs = {"x": (x * 255).round().to(torch.uint8), **teacher_outputs(teacher, x, list(features))}
                for key, value in outputs.items():
                    if key not in arrays:
                        dtype = np.uint8 if key == "x" else np.float16
                        arrays[key] = np.lib.format.open_memmap(out / f"{_file(key)}.npy", mode="w+", dtype=dtype,
                                                                shape=(crops, *value.shape[1:]))
                    arrays[key][start:start + n] = value.numpy().astype(arrays[key].dtype)
                bar.update(n)
            bar.close()
    finally:
        sampler.close()
    for a in arrays.values():
        a.flush()
    manifest = {"format": FORMAT, "teacher": info.path, "teacher_sha256": info.sha256, "teacher_codec": info.codec,
                "teacher_lmbda": info.lmbda, "teacher_distortion": info.distortion, "crop_size": crop,
                "crops": int(crops), "seed": int(seed), "chunk": int(chunk),
                "train_dir": data_cfg.get("train_dir"), "data_fingerprint": data_fingerprint(data_cfg.get("train_dir")),
                "keys": {k: {"file": f"{_file(k)}.npy", "shape": list(a.shape[1:]), "dtype": str(a.dtype)}
                         for k, a in arrays.items()},
                "features": list(features)}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def _file(key: str) -> str:
    return key.replace("tap:", "tap_").replace(".", "_")


class TeacherCache:
    """A cache opened for a run: checked against the run's teacher and data, then sampled."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise CacheMismatch(f"{self.path} is not a complete teacher cache (no {MANIFEST}); build one with "
                                f"python -m distill.cache teacher=PATH out={self.path}")
        self.manifest = json.loads(mf.read_text())
        if self.manifest.get("format") != FORMAT:
            raise CacheMismatch(f"{mf}: not a {FORMAT} manifest")
        self.arrays = {k: np.load(self.path / v["file"], mmap_mode="r") for k, v in self.manifest["keys"].items()}
        self.n = int(self.manifest["crops"])

    def check(self, *, teacher: TeacherInfo | None, lmbda: float, crop_size: int, train_dir: str | None,
              features: list[str], allow_rate_mismatch: bool = False) -> None:
        """Refuse a cache made for another teacher, rate point, crop size, data or taps."""
        m = self.manifest
        problems = []
        if teacher is not None and teacher.sha256 != m["teacher_sha256"]:
            problems.append(f"teacher {teacher.path} (sha256 {teacher.sha256[:12]}) is not the cache's "
                            f"{m['teacher']} (sha256 {m['teacher_sha256'][:12]})")
        if not allow_rate_mismatch and (m["teacher_lmbda"] is None or abs(m["teacher_lmbda"] - float(lmbda)) > 1e-9 * lmbda):
            problems.append(f"rate point: the cache's teacher has lmbda/beta={m['teacher_lmbda']}, this run {lmbda:g}")
        if int(crop_size) != m["crop_size"]:
            problems.append(f"crop size: cache {m['crop_size']}, this run data.crop_size={crop_size}")
        fp = data_fingerprint(train_dir)
        if fp != m["data_fingerprint"]:
            problems.append(f"data: the cache was drawn from {m['train_dir'] or 'the built-in images'}, this run's "
                            f"data.train_dir={train_dir or 'built-in'} holds other images")
        missing = [t for t in features if f"tap:{t}" not in self.arrays]
        if missing:
            problems.append(f"taps {missing} are not cached (cached: {m['features']})")
        if problems:
            raise CacheMismatch(f"teacher cache {self.path} does not fit this run: " + "; ".join(problems))

    def channels(self) -> dict[str, int]:
        return {k: v["shape"][0] for k, v in self.manifest["keys"].items() if k != "x"}

    def batches(self, batch_size: int):
        """The engine's batch source: step's generator -> B cached crops and their targets."""

        def draw(step: int, gen: torch.Generator) -> dict:
            idx = torch.randint(self.n, (batch_size,), generator=gen).numpy()
            x = torch.from_numpy(np.ascontiguousarray(self.arrays["x"][idx])).float() / 255.0
            teacher = {k: torch.from_numpy(np.ascontiguousarray(a[idx])).float()
                       for k, a in self.arrays.items() if k != "x"}
            return {"x": x, "teacher": teacher}

        return draw


def main(argv=None) -> None:
    import hydra

    @hydra.main(version_base=None, config_path="pkg://conf", config_name="distill_cache")
    def _main(cfg) -> None:
        from codec.checkpoint import CheckpointError

        try:
            manifest = build_cache(cfg.teacher, cfg.data, int(cfg.cache.crops), cfg.out, seed=int(cfg.seed),
                                   features=list(cfg.cache.features or []), chunk=int(cfg.cache.chunk),
                                   progress=bool(cfg.cache.progress))
        except (CheckpointError, ValueError) as e:
            print(f"distill.cache: {e}", file=sys.stderr)
            sys.exit(2)
        size = sum((Path(cfg.out) / v["file"]).stat().st_size for v in manifest["keys"].values())
        print(f"wrote {manifest['crops']} crops of {manifest['crop_size']}^2 from {manifest['teacher']} "
              f"to {cfg.out} ({size / 2**20:.1f} MiB)")

    _main()


if __name__ == "__main__":
    main()
