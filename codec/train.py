"""The one training loop: ``python -m codec.train codec=NAME`` (Hydra).

Rate-distortion training of any registered codec, L = R + lmbda * 255^2 * D, with R the
estimated bits per pixel of every latent (sum of -log2 likelihoods) and D an MSE: on RGB
(CompressAI's convention) or on YCbCr weighted Y:Cb:Cr = 6:1:1 (JPEG AI's), optionally
mixed with 1 - MS-SSIM. The teacher (``python -m teacher``) and students
(``python -m student``) run this same loop with their own config defaults.

What makes it a tool rather than a script:

* **Exact resume.** The batch and the quantization noise of step s are drawn from generators
  seeded with (seed, s, rank), and the learning rate is a pure function of s, so a run killed
  at any point (SIGKILL included) and resumed from ``last.ckpt`` follows the same loss curve
  as an uninterrupted one. Checkpoints are written atomically.
* **NaN guard.** A non-finite loss or gradient stops the run with a message naming the step;
  the last checkpoint on disk is the last good one (it is never overwritten by a bad state).
* **Validation with real bitstreams** (bpp from bytes, PSNR, MS-SSIM) every ``val_every``.
* CPU or CUDA chosen automatically; several GPUs through ``torchrun`` (DistributedDataParallel);
  wandb logging, offline unless ``logger.mode=online``; ``logger=none`` for no logger.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.base import Codec
from codec.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from codec.config import codec_from_config

__all__ = ["run", "rd_loss", "TrainingDiverged", "ImagePool", "learning_rate", "validate"]

CHECKPOINT_NAME = "last.ckpt"


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN/inf; the message names the step and the last good checkpoint."""


# --------------------------------------------------------------------------------------------
# data


class ImagePool:
    """Training images held in memory as uint8, cropped by an explicit generator.

    Drawing every crop from a generator seeded per step (instead of a DataLoader's global RNG
    and worker state) is what makes resume exact.
    """

    def __init__(self, images: list[torch.Tensor], crop_size: int):
        if not images:
            raise ValueError("ImagePool: no training images")
        self.crop_size = int(crop_size)
        self.images = []
        for img in images:  # 3xHxW float [0,1] -> uint8, padded up to the crop size
            u8 = (img.clamp(0, 1) * 255).round().to(torch.uint8)
            h, w = u8.shape[-2:]
            if h < crop_size or w < crop_size:
                u8 = F.pad(u8[None].float(), (0, max(0, crop_size - w), 0, max(0, crop_size - h)),
                           mode="replicate")[0].to(torch.uint8)
            self.images.append(u8)

    @classmethod
    def from_folder(cls, folder: str | None, crop_size: int) -> "ImagePool":
        from codec.data import ImageFolderDataset, builtin_images

        ds = ImageFolderDataset(folder if folder else builtin_images(), crop_size, train=False)
        return cls([ds[i] for i in range(len(ds))], crop_size)

    def sample(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        c = self.crop_size
        out = []
        for _ in range(batch_size):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=generator))]
            h, w = img.shape[-2:]
            top = int(torch.randint(h - c + 1, (1,), generator=generator))
            left = int(torch.randint(w - c + 1, (1,), generator=generator))
            crop = img[:, top:top + c, left:left + c]
            if bool(torch.randint(2, (1,), generator=generator)):
                crop = crop.flip(-1)
            out.append(crop)
        return torch.stack(out).float() / 255.0


def eval_paths(folder: str | None, limit: int | None) -> list[Path]:
    from codec.data import builtin_images, list_images

    paths = list_images(folder) if folder else builtin_images()
    return paths[:limit] if limit else paths


# --------------------------------------------------------------------------------------------
# loss


def rd_loss(out: dict, x: torch.Tensor, loss_cfg) -> dict[str, torch.Tensor]:
    """L = bpp + lmbda * 255^2 * D; returns every term for logging."""
    from codec.image import rgb_to_ycbcr

    num_pixels = x.shape[0] * x.shape[-2] * x.shape[-1]
    rates = {k: torch.log(v).sum() / (-math.log(2) * num_pixels) for k, v in out["likelihoods"].items()}
    bpp = sum(rates.values())
    x_hat = out["x_hat"]
    mse_rgb = F.mse_loss(x_hat, x)
    kind = loss_cfg.get("distortion", "rgb_mse")
    if kind == "rgb_mse":
        distortion = mse_rgb
    elif kind == "ycbcr_mse":
        w = torch.tensor(list(loss_cfg.get("ycbcr_weights", (6, 1, 1))), dtype=x.dtype, device=x.device)
        per_channel = ((rgb_to_ycbcr(x_hat) - rgb_to_ycbcr(x)) ** 2).mean(dim=(0, 2, 3))
        distortion = (per_channel * w).sum() / w.sum()
    else:
        raise ValueError(f"loss.distortion={kind!r}: use rgb_mse or ycbcr_mse")
    terms = {"bpp": bpp, "mse": mse_rgb, "distortion": distortion}
    d_term = 255.0**2 * distortion
    ms_w = float(loss_cfg.get("ms_ssim_weight", 0.0))
    if ms_w > 0:
        from pytorch_msssim import ms_ssim

        msssim = ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=True)
        terms["ms_ssim"] = msssim
        # 1 - MS-SSIM scaled so that both terms weigh alike near 30 dB (JPEG AI's mixed loss)
        d_term = (1 - ms_w) * d_term + ms_w * float(loss_cfg.get("ms_ssim_scale", 1000.0)) * (1 - msssim)
    terms["loss"] = bpp + float(loss_cfg["lmbda"]) * d_term
    for k, v in rates.items():
        terms[f"bpp_{k}"] = v
    return terms


def learning_rate(step: int, trainer_cfg) -> float:
    """Step decay at fractions of max_steps (VMuC/CompressAI-style), a pure function of step."""
    lr = float(trainer_cfg.lr)
    for frac in trainer_cfg.get("lr_decay_at", []) or []:
        if step >= int(float(frac) * int(trainer_cfg.max_steps)):
            lr *= float(trainer_cfg.get("lr_gamma", 0.1))
    warmup = int(trainer_cfg.get("warmup_steps", 0) or 0)
    if warmup and step < warmup:
        lr *= (step + 1) / warmup
    return lr


# --------------------------------------------------------------------------------------------
# validation with real bitstreams


@torch.no_grad()
def validate(model: Codec, paths: list[Path]) -> dict[str, float]:
    """Compress and decompress every image for real; bpp from the bitstream length."""
    from codec.image import read_image, to_tensor, to_uint8
    from codec.metrics import ms_ssim_rgb, psnr_rgb

    model = copy.deepcopy(model).cpu().float().eval()
    rows = []
    for p in paths:
        rgb = read_image(p)
        x = to_tensor(rgb)
        t0 = time.perf_counter()
        data = model.compress(x)
        t1 = time.perf_counter()
        rec = to_uint8(model.decompress(data))
        t2 = time.perf_counter()
        h, w = rgb.shape[:2]
        rows.append({"bpp": 8 * len(data) / (h * w), "psnr_rgb": psnr_rgb(rgb, rec), "ms_ssim": ms_ssim_rgb(rgb, rec),
                     "enc_s": t1 - t0, "dec_s": t2 - t1})
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]} if rows else {}


# --------------------------------------------------------------------------------------------
# logging


class _Logger:
    def __init__(self, cfg, out_dir: Path, rank: int):
        self.wandb = None
        self.metrics = out_dir / "metrics.jsonl"
        self.rank = rank
        name = cfg.get("logger", {}).get("name", "none") if cfg.get("logger") else "none"
        if rank == 0 and name == "wandb":
            import wandb
            from omegaconf import OmegaConf

            lc = cfg.logger
            os.environ.setdefault("WANDB_MODE", str(lc.get("mode", "offline")))
            os.environ.setdefault("WANDB_SILENT", "true")
            self.wandb = wandb.init(project=lc.get("project", "vmuc-lite"), dir=str(out_dir),
                                    name=lc.get("run_name") or out_dir.name, group=lc.get("group"),
                                    config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")
        elif name not in ("wandb", "none"):
            raise ValueError(f"logger.name={name!r}: use wandb or none")

    def log(self, row: dict) -> None:
        if self.rank != 0:
            return
        with self.metrics.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def truncate(self, step: int) -> None:
        """On resume, forget rows logged after the checkpoint (they will be logged again)."""
        if self.rank != 0 or not self.metrics.exists():
            return
        rows = [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]
        self.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()  # one finish per (multirun) job, or the next job logs into this run
            self.wandb = None


# --------------------------------------------------------------------------------------------
# the loop


def _device(cfg_device: str, local_rank: int) -> torch.device:
    if cfg_device in (None, "auto"):
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    return torch.device(cfg_device)


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (int(seed) * 1_000_003 + step * 7919 + rank * 104_729) % (2**63)


def command_line() -> str:
    """The command as typed: ``python -m PKG args...`` for a package's __main__ or a module."""
    import sys

    prog = Path(sys.argv[0])
    if prog.name == "__main__.py":
        prog_name = f"python -m {prog.parent.name}"
    elif prog.suffix == ".py" and prog.parent.name in ("codec", "teacher", "student", "bench", "profiling"):
        prog_name = f"python -m {prog.parent.name}.{prog.stem}"
    else:
        prog_name = str(prog)
    return " ".join([prog_name, *sys.argv[1:]])


def run(cfg, out_dir: str | os.PathLike | None = None) -> dict:
    """Train per ``cfg`` (codec, data, trainer, loss, logger, seed); returns a summary dict.

    ``out_dir`` (default: the Hydra run directory) receives ``last.ckpt``, ``metrics.jsonl`` and
    ``summary.json``. An existing ``last.ckpt`` there is resumed (``trainer.resume=auto``).
    """
    from omegaconf import OmegaConf
    from tqdm import tqdm

    if out_dir is None:
        from hydra.core.hydra_config import HydraConfig

        out_dir = HydraConfig.get().runtime.output_dir
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tc = cfg.trainer
    if tc.get("threads"):
        torch.set_num_threads(int(tc.threads))

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(tc.get("device", "auto"), local_rank)
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)

    torch.manual_seed(int(cfg.seed))  # initial weights
    model = codec_from_config(cfg.codec).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(tc.lr))
    ckpt_path = out_dir / CHECKPOINT_NAME
    start_step = 0
    resume = tc.get("resume", "auto")
    if resume and resume != "never":
        src = ckpt_path if resume == "auto" else Path(resume)
        if src.exists() or resume != "auto":
            blob = read_checkpoint(src)
            if blob["codec"] != model.registry_name or blob["config"] != model.config:
                raise ValueError(f"cannot resume from {src}: it holds {blob['codec']!r} with another config; "
                                 f"use a fresh hydra.run.dir or trainer.resume=never")
            model.load_state_dict(blob["state_dict"])
            optimizer.load_state_dict(blob["optimizer"])
            start_step = int(blob["step"])
            if rank == 0:
                print(f"resumed from {src} at step {start_step}")
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    pool = ImagePool.from_folder(cfg.data.get("train_dir"), int(cfg.data.crop_size))
    val_paths = eval_paths(cfg.data.get("eval_dir"), cfg.data.get("max_eval_images"))
    logger = _Logger(cfg, out_dir, rank)
    logger.truncate(start_step)
    meta_cfg = OmegaConf.to_container(cfg, resolve=True)
    max_steps = int(tc.max_steps)
    log_every = max(1, int(tc.get("log_every", 10)))
    ckpt_every = int(tc.get("checkpoint_every", 0) or 0)
    val_every = int(tc.get("val_every", 0) or 0)
    clip = float(tc.get("grad_clip", 0) or 0)
    val_metrics: dict = {}
    t_start = time.perf_counter()

    def save(step: int) -> None:
        if rank == 0:
            save_checkpoint(ckpt_path, model, meta={"step": step, "config": meta_cfg, "val": val_metrics,
                                                    "torch": str(torch.__version__)},
                            optimizer=optimizer.state_dict(), step=step)

    try:
        bar = tqdm(range(start_step, max_steps), initial=start_step, total=max_steps, desc=f"train {model.registry_name}",
                   disable=rank != 0 or not tc.get("progress", True), dynamic_ncols=True)
        if tc.get("val_at_start", False) and start_step == 0 and rank == 0:
            logger.log({"step": 0, **{f"val/{k}": v for k, v in validate(model, val_paths).items()}})
        model.train()
        for step in bar:
            gen = torch.Generator().manual_seed(_step_seed(cfg.seed, step, rank))
            x = pool.sample(int(tc.batch_size), gen).to(device)
            torch.manual_seed(_step_seed(cfg.seed, step, rank) + 1)  # quantization noise
            if device.type == "cuda":
                torch.cuda.manual_seed(_step_seed(cfg.seed, step, rank) + 1)
            lr = learning_rate(step, tc)
            for group in optimizer.param_groups:
                group["lr"] = lr
            terms = rd_loss(net(x), x, cfg.loss)
            loss = terms["loss"]
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} at step {step}; "
                                       f"last good checkpoint: {ckpt_path if ckpt_path.exists() else 'none written yet'}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
            if not torch.isfinite(grad_norm):
                raise TrainingDiverged(f"gradient norm became {grad_norm.item()} at step {step}; "
                                       f"last good checkpoint: {ckpt_path if ckpt_path.exists() else 'none written yet'}")
            optimizer.step()
            done = step + 1
            if done % log_every == 0 or done == max_steps:
                row = {"step": done, "lr": lr, **{k: float(v.detach()) for k, v in terms.items()},
                       "psnr": float(-10 * torch.log10(terms["mse"].detach().clamp_min(1e-12)))}
                logger.log(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", bpp=f"{row['bpp']:.3f}", psnr=f"{row['psnr']:.2f}")
            if val_every and (done % val_every == 0 or done == max_steps) and rank == 0:
                val_metrics = validate(model, val_paths)
                logger.log({"step": done, **{f"val/{k}": v for k, v in val_metrics.items()}})
            if (ckpt_every and done % ckpt_every == 0) or done == max_steps:
                save(done)
    finally:
        logger.finish()
    summary = {"codec": model.registry_name, "command": command_line(), "steps": max_steps, "resumed_from": start_step,
               "seconds": time.perf_counter() - t_start, "val": val_metrics, "checkpoint": str(ckpt_path)}
    if rank == 0:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    import hydra

    @hydra.main(version_base=None, config_path="pkg://conf", config_name="train")
    def _main(cfg) -> None:
        run(cfg)

    _main()


if __name__ == "__main__":
    main()
