"""Classical codec registry: exact JPEG bytes, round trips, rate ordering, HEVC plumbing."""

import io

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from bench.classical import (
    ClassicalCodec,
    CodecUnavailableError,
    HevcIntraCodec,
    _read_y4m_444,
    get_classical,
    list_classical,
    rgb_to_ycbcr_bt709,
    ycbcr_to_rgb_bt709,
)

ALL_CODECS = ["jpeg", "jpeg2000", "webp", "avif", "jpegxl", "hevc"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """64x48 smooth random colour image with a little grain (photo-like, compressible)."""
    rng = np.random.default_rng(0)
    smooth = gaussian_filter(rng.normal(size=(48, 64, 3)), sigma=(3, 3, 0)) * 350 + 128
    return np.clip(smooth + rng.normal(size=smooth.shape) * 3, 0, 255).astype(np.uint8)


def usable(name: str) -> ClassicalCodec:
    codec = get_classical(name)
    ok, reason = codec.available()
    if not ok:
        pytest.skip(f"{name} unavailable: {reason}")
    return codec


# ----------------------------------------------------------------------- registry


def test_registry_lists_every_codec():
    assert list_classical() == ALL_CODECS
    assert set(list_classical(available_only=True)) <= set(ALL_CODECS)


def test_unknown_codec_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown classical codec 'vvc'.*jpeg, jpeg2000, webp"):
        get_classical("vvc")


@pytest.mark.parametrize("name", ALL_CODECS)
def test_codec_declares_a_sweep(name):
    codec = get_classical(name)
    assert codec.name == name
    assert len(codec.qualities) >= 6
    assert codec.knob and isinstance(codec.settings(), dict)
    ok, reason = codec.available()
    assert isinstance(ok, bool) and (ok or reason)


def test_constructor_overrides():
    assert get_classical("jpeg", qualities=[30, 60]).qualities == (30, 60)
    assert get_classical("avif", speed=6).settings()["speed"] == 6
    with pytest.raises(ValueError, match="speed must be in 0..10"):
        get_classical("avif", speed=11)


# --------------------------------------------------------------------------- JPEG


@pytest.mark.parametrize("q", [10, 50, 90])
def test_jpeg_bytes_are_exactly_pillows(image, q):
    codec = usable("jpeg")
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=q, subsampling=2, optimize=True)
    assert codec.encode(image, q) == buf.getvalue()


def test_jpeg_is_420(image):
    codec = usable("jpeg")
    from PIL import JpegImagePlugin

    with Image.open(io.BytesIO(codec.encode(image, 75))) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0


# ---------------------------------------------------------------------- all codecs


@pytest.mark.parametrize("name", ALL_CODECS)
def test_round_trip_and_rate_ordering(image, name):
    codec = usable(name)
    # 128x96: on 64x48 a J2K codestream's headers alone exceed its lowest targets
    image = np.repeat(np.repeat(image, 2, axis=0), 2, axis=1)
    qs = codec.qualities
    picks = [qs[0], qs[len(qs) // 2], qs[-1]]  # lowest, middle, highest rate
    sizes, psnrs = [], []
    for q in picks:
        data = codec.encode(image, q)
        assert isinstance(data, bytes) and len(data) > 0
        rec = codec.decode(data)
        assert rec.shape == image.shape and rec.dtype == np.uint8
        sizes.append(len(data))
        psnrs.append(psnr(image, rec))
    assert sizes[0] < sizes[1] < sizes[2], f"{name}: bytes along {picks}: {sizes}"
    assert psnrs[0] < psnrs[1] < psnrs[2], f"{name}: PSNR along {picks}: {psnrs}"
    assert psnrs[2] > 33, f"{name}: highest-rate point is only {psnrs[2]:.1f} dB"


@pytest.mark.parametrize("name", ALL_CODECS)
def test_odd_size_round_trip(name):
    codec = usable(name)
    odd = np.random.default_rng(1).integers(0, 256, size=(33, 47, 3), dtype=np.uint8)
    assert codec.decode(codec.encode(odd, codec.qualities[-1])).shape == odd.shape


@pytest.mark.parametrize("bad", [np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32),
                                 np.zeros((8, 8, 4), np.uint8)])
def test_rejects_non_rgb_uint8(bad):
    codec = usable("jpeg")
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        codec.encode(bad, 50)


# --------------------------------------------------------------------------- HEVC


def test_hevc_unavailable_reason():
    codec = HevcIntraCodec(x265="no-such-x265-binary")
    ok, reason = codec.available()
    assert not ok and reason.startswith("no-such-x265-binary not on PATH")
    with pytest.raises(CodecUnavailableError, match="hevc is not available"):
        codec.encode(np.zeros((16, 16, 3), np.uint8), 32)


def test_bt709_full_range_known_values():
    rgb = np.array([[[255, 255, 255], [0, 0, 0], [0, 0, 255], [128, 128, 128]]], np.uint8)
    ycc = rgb_to_ycbcr_bt709(rgb)
    assert ycc[0, 0].tolist() == [255, 128, 128]
    assert ycc[0, 1].tolist() == [0, 128, 128]
    # Blue: Y = 0.0722 * 255 = 18.41; Cb = (255 - 18.41) / 1.8556 + 128 = 255.5 -> 255 after clip;
    # Cr = (0 - 18.41) / 1.5748 + 128 = 116.31.
    assert ycc[0, 2].tolist() == [18, 255, 116]
    assert ycc[0, 3].tolist() == [128, 128, 128]


def test_bt709_round_trip_within_rounding():
    rgb = np.random.default_rng(2).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    back = ycbcr_to_rgb_bt709(rgb_to_ycbcr_bt709(rgb))
    assert np.abs(back.astype(int) - rgb).max() <= 2
    assert psnr(rgb, back) > 50


def test_read_y4m_444():
    ycc = np.random.default_rng(3).integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    planar = ycc.transpose(2, 0, 1).tobytes()
    stream = b"YUV4MPEG2 W7 H5 F25:1 Ip A1:1 C444 XYSCSS=444\nFRAME\n" + planar
    assert np.array_equal(_read_y4m_444(stream), ycc)
    with pytest.raises(RuntimeError, match="C420jpeg"):
        _read_y4m_444(b"YUV4MPEG2 W7 H5 C420jpeg\nFRAME\n" + planar)


def test_jpeg2000_is_rate_controlled_to_its_target_bpp():
    """The knob is a bit budget: OpenJPEG's rate allocator lands at or just under it."""
    codec = usable("jpeg2000")
    rng = np.random.default_rng(1)
    photo = np.clip(gaussian_filter(rng.normal(size=(256, 256, 3)), sigma=(2, 2, 0)) * 400 + 128
                    + rng.normal(size=(256, 256, 3)) * 4, 0, 255).astype(np.uint8)
    for target in (0.25, 0.5, 1.0):
        bpp = 8 * len(codec.encode(photo, target)) / (256 * 256)
        assert 0.85 * target <= bpp <= 1.02 * target, (target, bpp)
    with pytest.raises(ValueError, match="target bpp"):
        codec.encode(photo, 0)
