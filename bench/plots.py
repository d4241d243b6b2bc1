"""The benchmark's figures, as PNG: rate-distortion curves and the compute/efficiency Pareto.

Drawn with matplotlib's object API (``Figure`` + Agg canvas), never ``pyplot``: no global
figure state, no GUI backend, safe in tests and on headless machines.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ParetoPoint", "ms_ssim_db", "pareto_plot", "rd_plot"]

_ROLE_ORDER = {"teacher": 0, "student": 1, "learned": 2, "classical": 3}


def ms_ssim_db(value: float | None) -> float | None:
    """MS-SSIM on the dB scale of the learned-compression literature: -10 log10(1 - MS-SSIM)."""
    if value is None or not math.isfinite(value):
        return None
    return float("inf") if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def _figure(width: float = 7.5, height: float = 5.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    fig.savefig(tmp, format="png", bbox_inches="tight")
    os.replace(tmp, path)
    return path


def rd_plot(results: Sequence[dict], roles: dict[str, str], metric: str, path: str | os.PathLike) -> Path:
    """Quality against bpp, one curve per codec; ``metric`` is ``"psnr-rgb"`` or ``"ms-ssim-rgb"``
    (drawn in dB). Learned codecs are solid lines with dots, classical ones dashed with squares,
    the teacher thickest."""
    fig = _figure()
    ax = fig.add_subplot()
    ordered = sorted(results, key=lambda r: (_ROLE_ORDER.get(roles.get(r["name"], "classical"), 9), r["name"]))
    for r in ordered:
        xs = r["results"]["bpp"]
        ys = r["results"][metric]
        if metric == "ms-ssim-rgb":
            ys = [ms_ssim_db(v) for v in ys]
        pts = [(x, y) for x, y in zip(xs, ys) if x is not None and y is not None and math.isfinite(y)]
        if not pts:
            continue
        role = roles.get(r["name"], "classical")
        style = {"linestyle": "--", "marker": "s", "linewidth": 1.2, "markersize": 4} if role == "classical" else \
                {"linestyle": "-", "marker": "o", "linewidth": 2.6 if role == "teacher" else 1.6, "markersize": 5}
        label = f"{r['name']} ({role})" if role in ("teacher", "student") else r["name"]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=label, **style)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("PSNR-RGB [dB]" if metric == "psnr-rgb" else "MS-SSIM-RGB [dB]  (-10 log10(1 - MS-SSIM))")
    ax.set_title(("PSNR-RGB" if metric == "psnr-rgb" else "MS-SSIM (RGB)") + " against rate")
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.35)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a curve
    return _save(fig, path)


@dataclass(frozen=True)
class ParetoPoint:
    label: str
    decoder_kmac_per_px: float
    bd_rate: float  # percent against the teacher, PSNR-RGB
    role: str  # "teacher" or "student"


def pareto_plot(points: Sequence[ParetoPoint], budget: float | None, target: float,
                path: str | os.PathLike, ylabel: str = "BD-rate vs teacher, PSNR-RGB, pchip [%]  (lower is better)") -> Path:
    """BD-rate against the teacher (y) over decoder kMAC/px (x, log axis), with the budget line.

    ``budget`` = teacher decoder kMAC/px / target; students left of it pass the decoder side of
    the gate. Lower-left is better: fewer MACs, fewer bits.
    """
    fig = _figure(7.5, 5.0)
    ax = fig.add_subplot()
    xs = [p.decoder_kmac_per_px for p in points]
    for p in points:
        if p.role == "teacher":
            ax.scatter([p.decoder_kmac_per_px], [p.bd_rate], marker="*", s=220, color="tab:red", zorder=3,
                       label="teacher")
        else:
            ok = budget is None or p.decoder_kmac_per_px <= budget
            ax.scatter([p.decoder_kmac_per_px], [p.bd_rate], marker="o", s=50, zorder=3,
                       color="tab:blue" if ok else "tab:gray")
        ax.annotate(p.label, (p.decoder_kmac_per_px, p.bd_rate), textcoords="offset points", xytext=(6, 5),
                    fontsize=8)
    ax.set_xscale("log")
    lo, hi = min(xs + ([budget] if budget else [])), max(xs + ([budget] if budget else []))
    ax.set_xlim(lo / 2.0, hi * 2.0)
    if budget is not None:
        ax.axvline(budget, color="tab:green", linestyle="--", linewidth=1.5,
                   label=f"{target:g}x budget: {budget:.3g} kMAC/px")
    ax.axhline(0.0, color="black", linewidth=0.8, alpha=0.6)
    ax.margins(y=0.15)  # room for the point labels
    ax.set_xlabel("decoder kMAC/px (log scale; executed MACs at the profiled resolution)")
    ax.set_ylabel(ylabel)
    ax.set_title("Decoder compute against compression efficiency")
    ax.grid(True, which="both", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(fontsize=8, loc="best")
    return _save(fig, path)
