"""codec.image: reading edge cases, atomic writing, tensors, padding, BT.709 colour."""

import os

import imagecodecs
import numpy as np
import pytest
import torch
from PIL import Image

from codec.image import (
    KB,
    KR,
    ImageReadError,
    ImageWarning,
    crop,
    downsample_420,
    pad_to_stride,
    read_image,
    rgb_to_ycbcr,
    to_tensor,
    to_uint8,
    upsample_420,
    write_png,
    ycbcr_to_rgb,
)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _rgb(rng, h=6, w=5):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------- reading


def test_rgb_png_round_trip(tmp_path, rng):
    a = _rgb(rng)
    write_png(tmp_path / "a.png", a)
    out = read_image(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.shape == (6, 5, 3)
    np.testing.assert_array_equal(out, a)


def test_rgba_warns_naming_file_and_drops_alpha(tmp_path, rng):
    a = _rgb(rng)
    rgba = np.concatenate([a, np.full((6, 5, 1), 7, np.uint8)], axis=2)
    path = tmp_path / "with_alpha.png"
    Image.fromarray(rgba, "RGBA").save(path)
    with pytest.warns(ImageWarning, match="with_alpha.png"):
        out = read_image(path)
    np.testing.assert_array_equal(out, a)


def test_palette_with_transparency_warns(tmp_path):
    im = Image.new("P", (4, 3), 1)
    im.putpalette([0, 0, 0, 200, 10, 30] + [0] * 762)
    path = tmp_path / "pal.png"
    im.save(path, transparency=0)
    with pytest.warns(ImageWarning, match="pal.png"):
        out = read_image(path)
    assert (out == np.array([200, 10, 30], np.uint8)).all()


def test_greyscale_is_replicated(tmp_path, rng):
    g = rng.integers(0, 256, (7, 3), dtype=np.uint8)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    assert out.shape == (7, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g)


def _expected_8bit(v16):
    return np.floor(v16.astype(np.float64) * 255 / 65535 + 0.5).astype(np.uint8)


def test_16bit_rgb_png_is_rounded_not_truncated(tmp_path):
    # 997 -> 3.88: rounding gives 4, Pillow's own 16-bit RGB path would give 3
    values = np.array([0, 997, 128, 32896, 257 * 200, 65535, 65407, 12345], np.uint16)
    a = np.stack([values, values[::-1], np.roll(values, 3)], axis=1).reshape(2, 4, 3)
    (tmp_path / "deep.png").write_bytes(imagecodecs.png_encode(a))
    out = read_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(out, _expected_8bit(a))
    assert out[0, 1, 0] == 4 and out[1, 0, 0] == 200


def test_16bit_grey_png(tmp_path):
    g = np.array([[0, 65535, 997], [32896, 1, 40000]], np.uint16)
    (tmp_path / "grey16.png").write_bytes(imagecodecs.png_encode(g))
    out = read_image(tmp_path / "grey16.png")
    assert out.shape == (2, 3, 3)
    np.testing.assert_array_equal(out[..., 1], _expected_8bit(g))


def test_16bit_rgba_png_warns_and_drops_alpha(tmp_path):
    a = np.full((2, 2, 4), 65535, np.uint16)
    a[..., 0] = 997
    (tmp_path / "rgba16.png").write_bytes(imagecodecs.png_encode(a))
    with pytest.warns(ImageWarning, match="rgba16.png"):
        out = read_image(tmp_path / "rgba16.png")
    assert out.shape == (2, 2, 3) and (out[..., 0] == 4).all() and (out[..., 1] == 255).all()


def test_exif_orientation_is_applied(tmp_path):
    # stored 40 wide x 20 high, bright block top-left; orientation 6 = rotate 90 deg
    # clockwise to display, so the picture is 20 wide x 40 high, block top-right
    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:10, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif.tobytes(), quality=95)
    out = read_image(path)
    assert out.shape == (40, 20, 3)
    assert out[:10, 10:].mean() > 200 and out[:10, :10].mean() < 50


def test_ppm_is_read(tmp_path, rng):
    a = _rgb(rng)
    Image.fromarray(a).save(tmp_path / "a.ppm")
    np.testing.assert_array_equal(read_image(tmp_path / "a.ppm"), a)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.png", None, "no such file"),
        ("empty.png", b"", "empty"),
        ("notes.png", b"this is not an image at all", "not a recognised image"),
        ("cut.png", "truncated", "unreadable"),
    ],
)
def test_read_errors_name_the_file(tmp_path, rng, name, content, message):
    path = tmp_path / name
    if content == "truncated":
        write_png(path, _rgb(rng, 64, 64))
        path.write_bytes(path.read_bytes()[:200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as info:
        read_image(path)
    assert name in str(info.value)


def test_directory_is_not_an_image(tmp_path):
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


# --------------------------------------------------------------------------- writing


def test_write_png_failure_leaves_no_partial_file(tmp_path, rng, monkeypatch):
    target = tmp_path / "out.png"
    write_png(target, _rgb(rng))
    before = target.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, _rgb(rng))
    assert target.read_bytes() == before  # old file intact
    assert os.listdir(tmp_path) == ["out.png"]  # temporary file removed


def test_write_png_rejects_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        write_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- tensors


def test_tensor_round_trip_is_exact(rng):
    a = _rgb(rng, 9, 11)
    t = to_tensor(a)
    assert t.shape == (1, 3, 9, 11) and t.dtype == torch.float32
    assert 0.0 <= t.min() and t.max() <= 1.0
    np.testing.assert_array_equal(to_uint8(t), a)


def test_to_uint8_clamps_and_rounds():
    t = torch.tensor([-0.2, 1.3, 0.4 / 255, 1.6 / 255]).view(1, 1, 1, 4).expand(1, 3, 1, 4)
    out = to_uint8(t)
    assert out.shape == (1, 4, 3)
    assert out[0, :, 0].tolist() == [0, 255, 0, 2]


def test_one_pixel_image_pads_and_crops_back(rng):
    a = _rgb(rng, 1, 1)
    x = to_tensor(a)
    padded, size = pad_to_stride(x, 64)
    assert padded.shape == (1, 3, 64, 64) and size == (1, 1)
    assert torch.equal(padded, x.expand(1, 3, 64, 64))  # replicate padding
    np.testing.assert_array_equal(to_uint8(crop(padded, size)), a)


def test_pad_to_stride_only_when_needed(rng):
    x = to_tensor(_rgb(rng, 32, 17))
    padded, size = pad_to_stride(x, 16)
    assert padded.shape[-2:] == (32, 32) and size == (32, 17)
    assert torch.equal(padded[..., :17], x)
    assert torch.equal(padded[..., 17:], x[..., 16:17].expand(1, 3, 32, 15))
    with pytest.raises(ValueError):
        pad_to_stride(x[0], 16)
    with pytest.raises(ValueError):
        crop(x, (33, 17))


# --------------------------------------------------------------------------- colour


def test_ycbcr_round_trip():
    x = torch.rand(2, 3, 16, 8, generator=torch.Generator().manual_seed(0))
    assert (ycbcr_to_rgb(rgb_to_ycbcr(x)) - x).abs().max() < 1e-5
    y = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    assert (rgb_to_ycbcr(ycbcr_to_rgb(y)) - y).abs().max() < 1e-5


@pytest.mark.parametrize(
    "rgb, ycbcr",
    [
        ((1.0, 1.0, 1.0), (1.0, 0.5, 0.5)),
        ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5)),
        # BT.709: Y = 0.2126 R + 0.7152 G + 0.0722 B; Cb = (B-Y)/1.8556 + 0.5;
        # Cr = (R-Y)/1.5748 + 0.5
        ((1.0, 0.0, 0.0), (0.2126, 0.5 - 0.2126 / 1.8556, 1.0)),
        ((0.0, 0.0, 1.0), (0.0722, 1.0, 0.5 - 0.0722 / 1.5748)),
        ((0.0, 1.0, 0.0), (0.7152, 0.5 - 0.7152 / 1.8556, 0.5 - 0.7152 / 1.5748)),
    ],
)
def test_bt709_known_values(rgb, ycbcr):
    assert (KR, KB) == (0.2126, 0.0722)
    x = torch.tensor(rgb, dtype=torch.float64).view(1, 3, 1, 1)
    got = rgb_to_ycbcr(x).flatten().tolist()
    assert got == pytest.approx(ycbcr, abs=1e-12)


def test_420_shapes_and_flat_chroma_survives():
    c = torch.full((1, 2, 8, 6), 0.3)
    small = downsample_420(c)
    assert small.shape == (1, 2, 4, 3)
    back = upsample_420(small)
    assert back.shape == (1, 2, 8, 6)
    assert torch.allclose(back, c)


def test_420_averages_2x2_blocks():
    c = torch.arange(16.0).view(1, 1, 4, 4).repeat(1, 2, 1, 1)
    assert downsample_420(c)[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]]


def test_420_odd_size_is_an_error():
    with pytest.raises(ValueError, match="even"):
        downsample_420(torch.zeros(1, 2, 5, 4))
    with pytest.raises(ValueError):
        downsample_420(torch.zeros(1, 3, 4, 4))
