"""Bjontegaard metrics against answers known without running bench.bd.

Curves whose quality is linear in log(rate) are fitted exactly by both the cubic
and the pchip method, so their BD values follow from the construction: a rate
factor s gives (s - 1) * 100 %, a quality offset d gives d.
"""

import math

import numpy as np
import pytest

from bench.bd import METHODS, bd_psnr, bd_rate, bd_table

# A typical learned-codec curve, deliberately not linear in log-rate.
ANCHOR = [(0.12, 29.1), (0.21, 31.0), (0.37, 33.2), (0.62, 35.3), (0.95, 37.2), (1.41, 39.0)]


def scaled(curve, rate_factor=1.0, quality_offset=0.0):
    return [(r * rate_factor, q + quality_offset) for r, q in curve]


def on_line(log_rates, slope=4.0, intercept=36.0):
    """Points with quality = slope * log(rate) + intercept."""
    return [(math.exp(lr), slope * lr + intercept) for lr in log_rates]


@pytest.mark.parametrize("method", METHODS)
def test_identical_curves_are_zero(method):
    assert bd_rate(ANCHOR, ANCHOR, method) == pytest.approx(0.0, abs=1e-9)
    assert bd_psnr(ANCHOR, ANCHOR, method) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("factor, expected", [(0.9, -10.0), (1.1, 10.0), (0.5, -50.0)])
def test_constant_rate_factor(method, factor, expected):
    assert bd_rate(ANCHOR, scaled(ANCHOR, rate_factor=factor), method) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_constant_quality_offset(method):
    assert bd_psnr(ANCHOR, scaled(ANCHOR, quality_offset=0.5), method) == pytest.approx(0.5, abs=1e-6)
    assert bd_psnr(ANCHOR, scaled(ANCHOR, quality_offset=-1.25), method) == pytest.approx(-1.25, abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_lower_rate_is_higher_quality_at_equal_rate(method):
    # Same rate saving seen from the other axis: sign must agree.
    test = scaled(ANCHOR, rate_factor=0.8)
    assert bd_rate(ANCHOR, test, method) == pytest.approx(-20.0, abs=1e-6)
    assert bd_psnr(ANCHOR, test, method) > 0


@pytest.mark.parametrize("method", METHODS)
def test_unsorted_points_give_the_same_answer(method):
    test = scaled(ANCHOR, rate_factor=0.93, quality_offset=0.1)
    shuffled = [test[i] for i in (3, 0, 5, 1, 4, 2)]
    assert bd_rate(ANCHOR[::-1], shuffled, method) == pytest.approx(bd_rate(ANCHOR, test, method), abs=1e-12)
    assert bd_psnr(ANCHOR[::-1], shuffled, method) == pytest.approx(bd_psnr(ANCHOR, test, method), abs=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_partial_overlap(method):
    # Anchor covers log-rate [-2, 0.5]; the test codec saves 20 % and is sampled
    # at other, higher rates, so only part of the quality range is shared.
    anchor = on_line(np.linspace(-2.0, 0.5, 6))
    test = [(r * 0.8, q) for r, q in on_line(np.linspace(-1.0, 1.5, 5))]
    assert bd_rate(anchor, test, method) == pytest.approx(-20.0, abs=1e-6)
    # At equal rate the test is 4 * log(1 / 0.8) dB better (slope 4 per neper).
    assert bd_psnr(anchor, test, method) == pytest.approx(4.0 * math.log(1 / 0.8), abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_rate_gap_that_varies_with_quality(method):
    # log r_anchor(q) = (q - 30) / 4 and log r_test(q) = log r_anchor(q) + 0.1 - 0.01 (q - 30):
    # both linear in q, so both fits are exact, and the mean gap over q in [30, 40]
    # is 0.1 - 0.01 * 5 = 0.05.
    qs = np.linspace(30.0, 40.0, 5)
    anchor = [(math.exp((q - 30) / 4), q) for q in qs]
    test = [(math.exp((q - 30) / 4 + 0.1 - 0.01 * (q - 30)), q) for q in qs]
    assert bd_rate(anchor, test, method) == pytest.approx((math.exp(0.05) - 1) * 100, abs=1e-6)


def test_cubic_matches_the_vceg_m33_formula():
    """The textbook computation: np.polyfit / np.polyint on log-rate vs PSNR."""
    test = [(0.14, 29.5), (0.22, 31.4), (0.41, 33.9), (0.66, 35.8), (0.99, 37.4), (1.52, 39.5)]

    def reference(a, t):
        a, t = np.asarray(a), np.asarray(t)
        pa = np.polyfit(a[:, 1], np.log(a[:, 0]), 3)
        pt = np.polyfit(t[:, 1], np.log(t[:, 0]), 3)
        lo, hi = max(a[:, 1].min(), t[:, 1].min()), min(a[:, 1].max(), t[:, 1].max())
        ia, it = np.polyint(pa), np.polyint(pt)
        diff = (np.polyval(it, hi) - np.polyval(it, lo) - np.polyval(ia, hi) + np.polyval(ia, lo)) / (hi - lo)
        return (np.exp(diff) - 1) * 100

    assert bd_rate(ANCHOR, test, "cubic") == pytest.approx(reference(ANCHOR, test), abs=1e-9)


def test_pchip_and_cubic_agree_on_smooth_curves():
    test = [(0.14, 29.5), (0.22, 31.4), (0.41, 33.9), (0.66, 35.8), (0.99, 37.4), (1.52, 39.5)]
    assert bd_rate(ANCHOR, test, "pchip") == pytest.approx(bd_rate(ANCHOR, test, "cubic"), abs=1.0)


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("method", METHODS)
def test_fewer_than_four_points(method):
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(ANCHOR[:3], ANCHOR, method)
    with pytest.raises(ValueError, match="test curve: 3 points"):
        bd_psnr(ANCHOR, ANCHOR[:3], method)


@pytest.mark.parametrize("method", METHODS)
def test_non_overlapping_curves(method):
    high = scaled(ANCHOR, rate_factor=100.0, quality_offset=20.0)
    with pytest.raises(ValueError, match="do not overlap in quality"):
        bd_rate(ANCHOR, high, method)
    with pytest.raises(ValueError, match="do not overlap in log-rate"):
        bd_psnr(ANCHOR, high, method)


def test_non_positive_rate():
    with pytest.raises(ValueError, match="rates must be > 0"):
        bd_rate(ANCHOR, [(0.0, 30.0)] + ANCHOR[1:])
    with pytest.raises(ValueError, match="anchor curve: rates must be > 0"):
        bd_psnr([(-0.1, 30.0)] + ANCHOR[1:], ANCHOR)


def test_nan_rejected():
    with pytest.raises(ValueError, match="NaN"):
        bd_rate(ANCHOR, ANCHOR[:-1] + [(1.4, float("nan"))])


def test_unknown_method():
    with pytest.raises(ValueError, match="unknown BD method 'akima'"):
        bd_rate(ANCHOR, ANCHOR, "akima")


def test_duplicate_quality_rejected_by_pchip():
    dup = ANCHOR[:-1] + [(1.6, ANCHOR[-2][1])]
    with pytest.raises(ValueError, match="duplicate"):
        bd_rate(ANCHOR, dup, "pchip")


def test_malformed_points():
    with pytest.raises(ValueError, match="pairs"):
        bd_rate([(0.1, 30.0, 1.0)] * 4, ANCHOR)


# -------------------------------------------------------------------------- table


def test_bd_table():
    curves = {
        "teacher": ANCHOR,
        "student": scaled(ANCHOR, rate_factor=0.9),
        "short": ANCHOR[:3],
        "far": scaled(ANCHOR, quality_offset=50.0),
    }
    table = bd_table(curves, "teacher", method="pchip")
    assert list(table) == ["teacher", "student", "short", "far"]
    assert table["teacher"] == {"bd_rate": pytest.approx(0.0, abs=1e-9), "reason": None}
    assert table["student"]["bd_rate"] == pytest.approx(-10.0, abs=1e-6)
    assert table["short"]["bd_rate"] is None and "at least 4" in table["short"]["reason"]
    assert table["far"]["bd_rate"] is None and "overlap" in table["far"]["reason"]


def test_bd_table_unknown_anchor():
    with pytest.raises(ValueError, match="anchor 'vvc' is not among the curves"):
        bd_table({"jpeg": ANCHOR}, "vvc")
