"""codec.metrics: PSNR against hand-computed MSEs, MS-SSIM small-image fallbacks, bpp."""

import math

import numpy as np
import pytest
import pytorch_msssim
import torch

from codec.metrics import (
    MS_SSIM_WEIGHTS,
    _ms_ssim_scales,
    _num_scales,
    bpp,
    ms_ssim_rgb,
    psnr_rgb,
    psnr_ycbcr,
)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """The SSIM convolutions here are tiny: with several intra-op threads on a busy
    CI machine they spend seconds waiting for each other, with one they take ms."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_psnr_rgb_hand_computed():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 10  # one error of 10 over 48 samples: MSE = 100 / 48
    assert psnr_rgb(a, b) == pytest.approx(10 * math.log10(255**2 * 48 / 100), abs=1e-12)


def test_psnr_identical_is_inf():
    a = np.full((3, 5, 3), 17, np.uint8)
    assert psnr_rgb(a, a) == float("inf")
    assert psnr_ycbcr(a, a) == float("inf")


def test_psnr_ycbcr_grey_shift_only_moves_luma():
    a = np.full((4, 4, 3), 100, np.uint8)
    b = np.full((4, 4, 3), 110, np.uint8)
    # dY = 10, dCb = dCr = 0 -> weighted MSE = 6 * 100 / 8 = 75
    assert psnr_ycbcr(a, b) == pytest.approx(10 * math.log10(255**2 / 75), abs=1e-9)


def test_psnr_ycbcr_blue_error_hand_computed():
    a = np.full((2, 3, 3), 50, np.uint8)
    b = a.copy()
    b[..., 2] = 70  # +20 on blue only
    d_y = 0.0722 * 20  # 1.444
    d_cb = (20 - d_y) / 1.8556  # 10.0
    d_cr = (0 - d_y) / 1.5748
    assert d_cb == pytest.approx(10.0)
    weighted = (6 * d_y**2 + d_cb**2 + d_cr**2) / 8
    assert psnr_ycbcr(a, b) == pytest.approx(10 * math.log10(255**2 / weighted), abs=1e-9)
    # luma only: PSNR of dY alone
    assert psnr_ycbcr(a, b, weights=(1, 0, 0)) == pytest.approx(
        10 * math.log10(255**2 / d_y**2), abs=1e-9
    )


def test_psnr_rejects_mismatch_and_floats():
    a = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        psnr_rgb(a, np.zeros((4, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        psnr_rgb(a, a.astype(np.float32))
    with pytest.raises(ValueError, match="weights"):
        psnr_ycbcr(a, a, weights=(1, 1))


@pytest.mark.parametrize("shape", [(300, 300), (100, 37), (8, 8), (1, 1), (1, 40), (161, 170)])
def test_ms_ssim_identical_is_one(shape):
    a = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    assert ms_ssim_rgb(a, a) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("shape", [(200, 170), (100, 37), (8, 8), (2, 2)])
def test_ms_ssim_drops_with_noise(shape):
    rng = np.random.default_rng(1)
    a = rng.integers(40, 216, shape + (3,), dtype=np.uint8)
    small = (a + rng.integers(-5, 6, a.shape)).astype(np.uint8)
    large = (a + rng.integers(-40, 41, a.shape)).astype(np.uint8)
    s_small, s_large = ms_ssim_rgb(a, small), ms_ssim_rgb(a, large)
    assert 0.0 <= s_large < s_small < 1.0


@pytest.mark.parametrize(
    "side, scales", [(10, 0), (11, 1), (20, 1), (21, 2), (41, 3), (81, 4), (160, 4), (161, 5)]
)
def test_number_of_scales(side, scales):
    assert _num_scales(side) == scales


def test_few_scale_path_matches_library_at_five_scales():
    # guards the use of pytorch_msssim's private _ssim in the small-image path
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (1, 3, 170, 181)).astype(np.float32)
    b = np.clip(a + rng.integers(-20, 21, a.shape), 0, 255).astype(np.float32)
    x, y = torch.from_numpy(a), torch.from_numpy(b)
    ours = _ms_ssim_scales(x, y, MS_SSIM_WEIGHTS)
    theirs = float(pytorch_msssim.ms_ssim(x, y, data_range=255))
    assert ours == pytest.approx(theirs, abs=1e-7)


def test_bpp():
    assert bpp(1000, 100, 80) == 1.0
    assert bpp(0, 4, 4) == 0.0
    with pytest.raises(ValueError):
        bpp(10, 0, 4)
