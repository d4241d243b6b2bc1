"""Bjontegaard delta rate and delta quality between two rate-distortion curves.

G. Bjontegaard, "Calculation of average PSNR differences between RD-curves",
ITU-T SG16 Q.6 VCEG-M33, 2001: fit each curve, integrate the fits over the
interval where both curves have data, and take the average gap.

- **BD-rate** compares log(rate) at equal quality: log(rate) is fitted as a
  function of quality, integrated over the overlapping *quality* interval, and the
  average log-rate difference ``d`` becomes ``(exp(d) - 1) * 100`` percent.
  Negative means the test codec needs fewer bits than the anchor.
- **BD-PSNR** (BD-quality) compares quality at equal rate: quality is fitted as a
  function of log(rate) over the overlapping *log-rate* interval; the result is
  in the quality's unit (dB for PSNR). Positive means the test is better.

Two fits are offered:

- ``"cubic"``: one least-squares cubic polynomial per curve (``np.polyfit``, degree
  3), the original VCEG-M33 spreadsheet. With more than 4 points it does not pass
  through them, and it can overshoot between points.
- ``"pchip"``: a piecewise cubic Hermite interpolant through the sorted points
  (``scipy.interpolate.PchipInterpolator``), monotone between samples, integrated
  exactly. This is the piecewise-cubic variant of the JVET common test conditions
  (JVET-K1010 / JCTVC-L1100 BD-rate spreadsheets) and the one to quote next to
  published VVC/JPEG AI numbers.

Both fits are exact for curves that differ by a constant rate factor or a constant
quality offset, so "every rate times 0.9" gives -10 % under either.

Curves are lists of ``(bpp, quality)`` points, in any order. Rate may be in any
unit (bpp, bytes) as long as both curves use the same one: only ratios matter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["METHODS", "bd_psnr", "bd_rate", "bd_table"]

METHODS = ("cubic", "pchip")

# A cubic has 4 coefficients; fewer points leave the cubic fit undetermined, and
# the pchip variant is held to the same minimum so both methods accept the same
# inputs (the CTC convention is 4 rate points per curve).
_MIN_POINTS = 4

Curve = Sequence[tuple[float, float]]


def _as_curve(points: Curve, label: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one curve and return (log_rate, quality), sorted by rate."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{label} curve: expected a list of (bpp, quality) pairs ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(
            f"{label} curve: expected a list of (bpp, quality) pairs, got an array of shape {arr.shape}"
        )
    if arr.shape[0] < _MIN_POINTS:
        raise ValueError(
            f"{label} curve: {arr.shape[0]} points, BD metrics need at least {_MIN_POINTS} "
            "(a cubic has 4 coefficients); add rate points"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{label} curve: contains NaN or infinite values: {arr.tolist()}")
    rate, quality = arr[:, 0], arr[:, 1]
    if np.any(rate <= 0):
        raise ValueError(
            f"{label} curve: rates must be > 0 (BD metrics work on log-rate), got {rate.tolist()}"
        )
    order = np.argsort(rate, kind="stable")
    return np.log(rate[order]), quality[order]


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown BD method {method!r}; choose one of {', '.join(METHODS)}")


def _overlap(a: np.ndarray, b: np.ndarray, what: str) -> tuple[float, float]:
    lo = max(a.min(), b.min())
    hi = min(a.max(), b.max())
    if not hi > lo:
        raise ValueError(
            f"the anchor and test curves do not overlap in {what} "
            f"(anchor [{a.min():.4g}, {a.max():.4g}], test [{b.min():.4g}, {b.max():.4g}]); "
            "BD metrics only compare curves over a shared interval: add rate points so they overlap"
        )
    return float(lo), float(hi)


def _mean_over(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str, label: str) -> float:
    """Average of the fitted y(x) over [lo, hi]."""
    if method == "cubic":
        poly = np.polynomial.Polynomial.fit(x, y, 3)  # scaled domain: well conditioned
        integral = poly.integ()
        area = integral(hi) - integral(lo)
    else:
        order = np.argsort(x, kind="stable")
        xs, ys = x[order], y[order]
        if np.any(np.diff(xs) == 0):
            dup = np.unique(xs[1:][np.diff(xs) == 0])
            raise ValueError(
                f"{label} curve: duplicate abscissa values {dup.tolist()} for the pchip fit "
                "(an interpolant needs strictly increasing x); drop or merge the repeated points"
            )
        area = PchipInterpolator(xs, ys).integrate(lo, hi)
    return float(area) / (hi - lo)


def bd_rate(anchor: Curve, test: Curve, method: str = "cubic") -> float:
    """BD-rate of ``test`` against ``anchor``, in percent (negative = test saves bits).

    log(rate) is fitted as a function of quality on each curve and the fits are
    averaged over the quality interval both curves cover.
    """
    _check_method(method)
    a_lr, a_q = _as_curve(anchor, "anchor")
    t_lr, t_q = _as_curve(test, "test")
    lo, hi = _overlap(a_q, t_q, "quality")
    a_mean = _mean_over(a_q, a_lr, lo, hi, method, "anchor")
    t_mean = _mean_over(t_q, t_lr, lo, hi, method, "test")
    return (math.exp(t_mean - a_mean) - 1.0) * 100.0


def bd_psnr(anchor: Curve, test: Curve, method: str = "cubic") -> float:
    """BD-quality of ``test`` against ``anchor`` in the quality's unit (dB for PSNR).

    Quality is fitted as a function of log(rate) on each curve and the fits are
    averaged over the log-rate interval both curves cover. Positive = test better.
    """
    _check_method(method)
    a_lr, a_q = _as_curve(anchor, "anchor")
    t_lr, t_q = _as_curve(test, "test")
    lo, hi = _overlap(a_lr, t_lr, "log-rate")
    a_mean = _mean_over(a_lr, a_q, lo, hi, method, "anchor")
    t_mean = _mean_over(t_lr, t_q, lo, hi, method, "test")
    return t_mean - a_mean


def bd_table(
    curves: Mapping[str, Curve], anchor_name: str, method: str = "cubic"
) -> dict[str, dict[str, float | str | None]]:
    """BD-rate of every curve against ``curves[anchor_name]``, for the report.

    Returns ``{name: {"bd_rate": percent or None, "reason": None or why not}}``,
    one entry per curve (the anchor gets 0.0). A curve that cannot be compared
    (too few points, no overlap, bad values) gets ``bd_rate=None`` and the error
    message as ``reason`` instead of failing the whole table.
    """
    _check_method(method)
    if anchor_name not in curves:
        raise ValueError(
            f"anchor {anchor_name!r} is not among the curves ({', '.join(sorted(curves)) or 'none'})"
        )
    anchor = curves[anchor_name]
    table: dict[str, dict[str, float | str | None]] = {}
    for name, curve in curves.items():
        try:
            value = bd_rate(anchor, curve, method=method)
        except ValueError as exc:
            table[name] = {"bd_rate": None, "reason": str(exc)}
        else:
            table[name] = {"bd_rate": value, "reason": None}
    return table
