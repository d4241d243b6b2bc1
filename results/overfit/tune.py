"""Choose the overfitting defaults (method, lr) on TRAINING images, never on the eval set.

python results/overfit/tune.py --checkpoint CKPT --steps 100 --out results/overfit/tune.json IMG...

Each image is centre-cropped to 768x512; for every (method, lr) the latents are optimized for
--steps steps, coded for real and decoded: bpp from the bytes, PSNR-YCbCr 6:1:1 of the 8-bit
decode, and the real RD loss bpp + lmbda * MSE_611 (8-bit scale, the checkpoint's loss).
"""
import argparse
import json
import shlex
import sys
import time

import torch

from codec.checkpoint import load_checkpoint
from codec.image import read_image, to_tensor, to_uint8
from codec.metrics import psnr_ycbcr
from codec.overfit import checkpoint_loss_config, compress_latents, overfit_latents


def centre_crop(rgb, h=512, w=768):
    H, W = rgb.shape[:2]
    top, left = max(0, (H - h) // 2), max(0, (W - w) // 2)
    return rgb[top:top + h, left:left + w]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("images", nargs="+")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--configs", default="ste:0.003,ste:0.01,ste:0.03,sga:0.01,sga:0.03")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    model, blob = load_checkpoint(args.checkpoint)
    loss_cfg = checkpoint_loss_config(blob)
    lmbda = float(loss_cfg["lmbda"])
    rows = []
    for path in args.images:
        rgb = centre_crop(read_image(path))
        x = to_tensor(rgb)
        h, w = rgb.shape[:2]

        def real(data):
            psnr = psnr_ycbcr(rgb, to_uint8(model.decompress(data)))
            bpp = 8 * len(data) / (h * w)
            return bpp, psnr, bpp + lmbda * 255.0 ** 2 * 10 ** (-psnr / 10)

        base = real(model.compress(x))
        for spec in args.configs.split(","):
            method, lr = spec.split(":")
            t0 = time.perf_counter()
            res = overfit_latents(model, x, args.steps, float(lr), loss_cfg=loss_cfg, method=method)
            data = compress_latents(model, x, res.latents)
            dt = time.perf_counter() - t0
            bpp, psnr, loss = real(data)
            row = {"image": path, "method": method, "lr": float(lr), "steps": args.steps, "seconds": dt,
                   "bpp": bpp, "psnr_ycbcr": psnr, "rd_loss": loss, "bpp_0": base[0], "psnr_ycbcr_0": base[1],
                   "rd_loss_0": base[2], "rd_loss_change": loss / base[2] - 1, "est_loss_0": res.initial["loss"],
                   "est_loss": res.final["loss"], "best_step": res.best_step}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {}
    for r in rows:
        summary.setdefault(f"{r['method']}:{r['lr']:g}", []).append(r["rd_loss_change"])
    summary = {k: sum(v) / len(v) for k, v in summary.items()}
    with open(args.out, "w") as f:
        json.dump({"command": " ".join(["python", *map(shlex.quote, sys.argv)]), "checkpoint": args.checkpoint,
                   "lmbda": lmbda, "mean_rd_loss_change": summary, "rows": rows}, f, indent=2)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
