"""Latent overfitting in the benchmark: the slow encoder (codec.overfit) as its own curve.

``python -m bench learned=[...] overfit_steps=[100,500]`` measures every learned curve with the
feed-forward encoder and, for each N, again with N overfitting steps per image (same checkpoints,
same decoder, real bitstreams), labelled ``"LABEL +overfit N"``. Its JSON records the encoder
settings under ``"encoder"``. The report compares each such curve with its feed-forward curve
(:func:`overfit_table`, written to ``overfit.json``): BD-rate and BD-PSNR when both have 4 rate points,
and per rate point the bpp and PSNR deltas, the real RD loss (bytes and the decoded 8-bit image,
at the checkpoint's own trade-off) and the encode time.
"""
from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.bd import bd_psnr, bd_rate
from bench.results import BenchError

__all__ = ["OverfitEncoder", "overfit_label", "parse_overfit_steps", "overfit_table", "overfit_markdown"]

_SUFFIX = " +overfit "


@dataclass(frozen=True)
class OverfitEncoder:
    """The slow encoder's settings: N steps of ``method`` at Adam step ``lr`` (codec.overfit)."""

    steps: int
    lr: float
    method: str

    def record(self, loss_cfg: dict | None) -> dict:
        return {"overfit_steps": self.steps, "overfit_lr": self.lr, "overfit_method": self.method,
                "loss": loss_cfg}


def overfit_label(label: str, steps: int) -> str:
    return f"{label}{_SUFFIX}{steps}"


def parse_overfit_steps(value) -> list[int]:
    """``overfit_steps``: null, N or [N, ...] -> the sorted distinct N > 0 (0 is the feed-forward
    curve, which is always measured)."""
    if value is None:
        return []
    values = [value] if isinstance(value, (int, float, str)) else list(value)
    out = set()
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise BenchError(f"overfit_steps={value!r}: give whole numbers of overfitting steps >= 0, "
                             "e.g. overfit_steps=[100,500]")
        if v:
            out.add(v)
    return sorted(out)


def _rd_losses(result: dict, loss_cfg: dict | None) -> list[float | None]:
    """Mean over images of bpp + lmbda 255^2 D per rate point, D from the decoded 8-bit image
    in the loss's space (RGB MSE, or YCbCr 6:1:1 MSE); None where it cannot be computed."""
    cfg = loss_cfg or {}
    kind = cfg.get("distortion", "rgb_mse")
    if cfg.get("ms_ssim_weight") or (kind == "ycbcr_mse" and list(cfg.get("ycbcr_weights", (6, 1, 1))) != [6, 1, 1]):
        return [None] * len(result["rate_points"])
    key = "psnr_rgb" if kind == "rgb_mse" else "psnr_ycbcr"
    out = []
    for i, point in enumerate(result["rate_points"]):
        lmbda = point.get("lmbda")
        rows = [r for r in result["images"] if r["rate_point"] == i]
        if lmbda is None or not rows or any(r.get(key) is None for r in rows):
            out.append(None)
            continue
        out.append(statistics.fmean(r["bpp"] + lmbda * 255.0**2 * 10 ** (-r[key] / 10) for r in rows))
    return out


def _bd(anchor: dict, test: dict, metric: str, fn=bd_rate) -> dict:
    curve = lambda r: list(zip(r["results"]["bpp"], r["results"][metric]))  # noqa: E731
    try:
        return {"value": fn(curve(anchor), curve(test), method="pchip"), "reason": None}
    except ValueError as e:
        return {"value": None, "reason": str(e)}


def _point_key(point: dict) -> tuple:
    return (point.get("checkpoint"), point.get("rate"))


def overfit_table(results: Sequence[dict]) -> dict:
    """``{"rows": [...]}``: one row per overfit curve whose feed-forward curve is among the results."""
    by_name = {r["name"]: r for r in results}
    rows = []
    for r in results:
        enc = r.get("encoder") or {}
        if not enc.get("overfit_steps") or _SUFFIX not in r["name"]:
            continue
        base_name = r["name"].rsplit(_SUFFIX, 1)[0]
        base = by_name.get(base_name)
        if base is None:
            continue
        loss_cfg = enc.get("loss")
        base_loss, test_loss = _rd_losses(base, loss_cfg), _rd_losses(r, loss_cfg)
        base_index = {_point_key(p): i for i, p in enumerate(base["rate_points"])}
        points = []
        for i, point in enumerate(r["rate_points"]):
            j = base_index.get(_point_key(point))
            if j is None:
                continue
            b, t = base["results"], r["results"]
            points.append({
                "rate_point": point, "bpp": t["bpp"][i], "bpp_feed_forward": b["bpp"][j],
                "d_bpp_percent": 100.0 * (t["bpp"][i] / b["bpp"][j] - 1.0),
                "d_psnr_rgb": t["psnr-rgb"][i] - b["psnr-rgb"][j],
                "d_psnr_ycbcr": t["psnr-ycbcr"][i] - b["psnr-ycbcr"][j],
                "rd_loss": test_loss[i], "rd_loss_feed_forward": base_loss[j],
                "d_rd_loss_percent": None if test_loss[i] is None or base_loss[j] is None
                else 100.0 * (test_loss[i] / base_loss[j] - 1.0),
                "encode_s": t["encoding_time"][i], "encode_s_feed_forward": b["encoding_time"][j],
            })
        points.sort(key=lambda p: (p["rate_point"].get("lmbda") is None, p["rate_point"].get("lmbda") or 0.0))
        enc_times = [row["encode_s"] for row in r["images"]]
        base_times = [row["encode_s"] for row in base["images"]]
        rows.append({
            "name": r["name"], "base": base_name, "steps": enc["overfit_steps"], "lr": enc.get("overfit_lr"),
            "method": enc.get("overfit_method"), "points": points, "images": r["eval_set"].get("count"),
            "bd_rate_psnr_rgb_pchip": _bd(base, r, "psnr-rgb"),
            "bd_rate_psnr_ycbcr_pchip": _bd(base, r, "psnr-ycbcr"),
            # quality at equal rate: the telling figure when the curve is flat (a dB costs much rate)
            "bd_psnr_rgb_pchip": _bd(base, r, "psnr-rgb", bd_psnr),
            "bd_psnr_ycbcr_pchip": _bd(base, r, "psnr-ycbcr", bd_psnr),
            "encode_median_s": statistics.median(enc_times), "encode_median_s_feed_forward": statistics.median(base_times),
            "same_images": (r.get("eval_set") or {}).get("fingerprint") == (base.get("eval_set") or {}).get("fingerprint"),
        })
    rows.sort(key=lambda row: (row["base"], row["steps"]))
    return {"rows": rows}


def _f(v, fmt: str) -> str:
    return "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def _bd_md(cell: dict, unit: str = "%") -> str:
    if cell["value"] is not None:
        return f"{cell['value']:+.2f} {unit}" if unit == "%" else f"{cell['value']:+.3f} {unit}"
    return "n/a (needs 4 points)" if "at least" in (cell["reason"] or "") else "n/a"


def overfit_markdown(table: dict) -> list[str]:
    """The report's section on overfit curves (empty when there is none)."""
    if not table["rows"]:
        return []
    L = ["## Encoder-side latent overfitting", "",
         "Each `+overfit N` curve is its feed-forward curve's checkpoints with the latents of every image optimized "
         "for N steps at encode time (codec.overfit; weights frozen, decoder unchanged, ordinary bitstreams). "
         "BD-rate and BD-PSNR (pchip) against the feed-forward curve; RD loss = bpp + lmbda 255^2 D of the real bytes and the "
         "decoded 8-bit image, at each checkpoint's training lmbda and distortion; encode time per image "
         "(overfitting included; median). The decoder and its kMAC/px are the feed-forward curve's; the encoder's "
         "kMAC/px with N steps: `python -m profiling checkpoint=... encoder.overfit_steps=N`.", "",
         "| curve | N | method | lr | BD-rate PSNR-RGB | BD-rate PSNR-YCbCr | BD-PSNR-RGB | BD-PSNR-YCbCr | encode [s] "
         "| feed-forward encode [s] |",
         "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table["rows"]:
        L.append(f"| `{row['name']}` | {row['steps']} | {row['method']} | {_f(row['lr'], 'g')} | "
                 f"{_bd_md(row['bd_rate_psnr_rgb_pchip'])} | {_bd_md(row['bd_rate_psnr_ycbcr_pchip'])} | "
                 f"{_bd_md(row['bd_psnr_rgb_pchip'], 'dB')} | {_bd_md(row['bd_psnr_ycbcr_pchip'], 'dB')} | "
                 f"{_f(row['encode_median_s'], '.2f')} | {_f(row['encode_median_s_feed_forward'], '.2f')} |")
    L += ["", "Per rate point:", "",
          "| curve | rate point | bpp | dbpp | dPSNR-RGB [dB] | dPSNR-YCbCr [dB] | RD loss | feed-forward RD loss | dRD loss |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in table["rows"]:
        for p in row["points"]:
            rp = p["rate_point"]
            where = rp.get("checkpoint", "?") + (f" @ {rp['rate']:g}" if rp.get("rate") is not None else "")
            L.append(f"| `{row['name']}` | `{where}` | {_f(p['bpp'], '.4f')} | {_f(p['d_bpp_percent'], '+.2f')} % | "
                     f"{_f(p['d_psnr_rgb'], '+.3f')} | {_f(p['d_psnr_ycbcr'], '+.3f')} | {_f(p['rd_loss'], '.4f')} | "
                     f"{_f(p['rd_loss_feed_forward'], '.4f')} | {_f(p['d_rd_loss_percent'], '+.2f')} % |")
    if not all(row["same_images"] for row in table["rows"]):
        L += ["", "**Warning: some overfit curves were measured on other images than their feed-forward curve.**"]
    return L + [""]
