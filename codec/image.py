"""Image I/O, tensor conversion, padding and the BT.709 YCbCr 4:2:0 colour path.

Every codec in this project takes 8-bit RGB in and gives 8-bit RGB out, and codes
YCbCr 4:2:0 inside (as the JPEG AI verification model does). This module is the one
place where files become arrays, arrays become tensors, and RGB becomes YCbCr, so
that the teacher, the students, the benchmark and the data command all see the same
pixels:

    file --read_image--> uint8 HxWx3 --to_tensor--> float 1x3xHxW in [0, 1]
         --pad_to_stride--> --rgb_to_ycbcr--> Y (1 ch) + CbCr --downsample_420--> ...
    ... --upsample_420--> --ycbcr_to_rgb--> --crop--> --to_uint8--> --write_png--> file

Reading is deliberately strict about what it returns (always uint8 RGB, orientation
applied) and loud about what it throws away (alpha, 16-bit precision), because a
benchmark that silently compares an image against a differently oriented or
differently quantized copy of itself produces wrong numbers that look plausible.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "ImageReadError",
    "ImageWarning",
    "read_image",
    "write_png",
    "to_tensor",
    "to_uint8",
    "pad_to_stride",
    "crop",
    "KR",
    "KB",
    "rgb_to_ycbcr",
    "ycbcr_to_rgb",
    "downsample_420",
    "upsample_420",
]

# ITU-R BT.709 luma coefficients. KG = 1 - KR - KB. Full range: Y in [0, 1],
# Cb/Cr in [0, 1] centred on 0.5 (no 16..235 studio swing, since the codec works on
# full-range 8-bit RGB and must reproduce it exactly).
KR = 0.2126
KB = 0.0722
KG = 1.0 - KR - KB

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# EXIF orientation tag value -> the Pillow transpose that undoes it; same table as
# PIL.ImageOps.exif_transpose, needed for the 16-bit path where the pixels do not
# come from Pillow.
_EXIF_ORIENTATION = 0x0112
_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class ImageReadError(ValueError):
    """An image file could not be turned into 8-bit RGB; the message names the file."""


class ImageWarning(UserWarning):
    """Information was dropped while reading an image (alpha channel)."""


# --------------------------------------------------------------------------- reading


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read PNG, JPEG, PPM/PGM or WebP into a uint8 array of shape HxWx3 (RGB).

    Normalisation, in this order:

    - EXIF orientation is applied, so the array is the picture as a viewer shows it
      (phone JPEGs are often stored sideways with orientation 6).
    - 16-bit data is scaled to 8 bit with rounding, ``round(v * 255 / 65535)``.
      Pillow opens 16-bit RGB PNGs as 8-bit RGB by dropping the low byte (a
      truncation, biased by up to one code value), so 16-bit PNGs are decoded with
      ``imagecodecs.png_decode`` instead; 16-bit greyscale (Pillow modes ``I;16*``
      and ``I``, which Pillow fills on a 0..65535 scale) is scaled the same way.
    - An alpha channel (RGBA, LA, PA, palette with a transparent colour) is dropped
      and an :class:`ImageWarning` names the file: codecs here code three channels,
      and compositing onto some background would invent pixel values.
    - Greyscale is replicated to three channels.

    Raises :class:`ImageReadError` naming the file for a missing file, a directory,
    an empty file, data that is not a recognised image, a truncated or corrupt
    image, and an image with zero width or height.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{path}: no such file")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image file")
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: file is empty (0 bytes)")
        with Image.open(path) as im:
            if im.width == 0 or im.height == 0:
                raise ImageReadError(f"{path}: image has zero size ({im.width}x{im.height})")
            if im.format == "PNG" and _png_bit_depth(path) == 16:
                rgb = _read_png16(path, im)
            else:
                rgb = _pil_to_rgb8(path, ImageOps.exif_transpose(im))
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not a recognised image (expected PNG, JPEG, PPM or WebP)"
        ) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"{path}: unreadable image ({exc})") from exc
    rgb = np.ascontiguousarray(rgb)
    # arrays exported by Pillow are read-only; callers expect an array they own
    return rgb if rgb.flags.writeable else rgb.copy()


def _png_bit_depth(path: Path) -> int:
    """Bit depth byte of the IHDR chunk, which the PNG spec fixes at offset 24."""
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return 8
    return head[24]


def _scale16(a: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 with round-half-up; exact in float64 for every input."""
    a = np.clip(a.astype(np.float64), 0, 65535)
    return np.floor(a * (255.0 / 65535.0) + 0.5).astype(np.uint8)


def _drop_alpha_warning(path: Path, mode: str) -> None:
    warnings.warn(f"{path}: alpha channel dropped (mode {mode})", ImageWarning, stacklevel=4)


def _read_png16(path: Path, im: Image.Image) -> np.ndarray:
    """Decode a 16-bit PNG at full precision, then scale to 8 bit and orient."""
    import imagecodecs  # imported here: only 16-bit PNGs need it

    data = imagecodecs.png_decode(path.read_bytes())
    if data.ndim == 2:
        data = data[..., None]
    channels = data.shape[2]
    if channels in (2, 4):  # grey+alpha, RGBA
        _drop_alpha_warning(path, "LA" if channels == 2 else "RGBA")
        data = data[..., : channels - 1]
    rgb8 = _scale16(data)
    if rgb8.shape[2] == 1:
        rgb8 = np.repeat(rgb8, 3, axis=2)
    orientation = im.getexif().get(_EXIF_ORIENTATION)
    method = _ORIENTATION_TRANSPOSE.get(orientation)
    if method is not None:
        rgb8 = np.asarray(Image.fromarray(rgb8).transpose(method))
    return rgb8


def _pil_to_rgb8(path: Path, im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = _scale16(np.asarray(im))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode == "P" and "transparency" in im.info
    ):
        _drop_alpha_warning(path, mode)
        if mode in ("LA", "La"):
            grey = np.asarray(im.convert("LA"))[..., 0]
            return np.repeat(grey[..., None], 3, axis=2)
        # via RGBA: un-premultiplies RGBa and resolves the palette
        return np.asarray(im.convert("RGBA"))[..., :3]
    if mode in ("1", "L"):
        grey = np.asarray(im.convert("L"))
        return np.repeat(grey[..., None], 3, axis=2)
    if mode != "RGB":  # P without transparency, CMYK, YCbCr, LAB, F, ...
        im = im.convert("RGB")
    return np.asarray(im)


# --------------------------------------------------------------------------- writing


def write_png(path: str | os.PathLike, rgb_uint8: np.ndarray, *, compress_level: int = 6) -> None:
    """Write a uint8 HxWx3 array as PNG, atomically.

    The image goes to a temporary file in the destination folder and is renamed over
    ``path`` with ``os.replace`` (atomic on POSIX and Windows within one file
    system), so an interrupted run or a concurrent reader never sees a half-written
    PNG, and a cache that checks "file exists" never trusts a partial one.
    """
    path = Path(path)
    rgb = np.asarray(rgb_uint8)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"write_png({path}): expected a uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}"
        )
    if not path.parent.is_dir():
        raise FileNotFoundError(f"write_png({path}): folder {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            Image.fromarray(np.ascontiguousarray(rgb), mode="RGB").save(
                f, format="PNG", compress_level=compress_level
            )
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# --------------------------------------------------------------------------- tensors


def to_tensor(rgb_uint8: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 1x3xHxW in [0, 1] (a copy; the array is not shared)."""
    rgb = np.asarray(rgb_uint8)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"to_tensor: expected a uint8 HxWx3 array, got {rgb.dtype} {rgb.shape}")
    # torch.tensor copies (and accepts read-only arrays, which from_numpy warns about)
    t = torch.tensor(np.ascontiguousarray(rgb)).permute(2, 0, 1).unsqueeze(0)
    return t.to(torch.float32).div_(255.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """float 1x3xHxW (or 3xHxW) in [0, 1] -> uint8 HxWx3, clamped and rounded.

    Rounding (not truncation) makes ``to_uint8(to_tensor(a)) == a`` exactly, and
    clamping is needed because a decoder's output overshoots [0, 1].
    """
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(f"to_uint8: expected a batch of one image, got shape {tuple(x.shape)}")
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"to_uint8: expected 1x3xHxW or 3xHxW, got shape {tuple(x.shape)}")
    # one HxWx3 float copy, then in place: no uint8 transpose, no temporaries of clamp / mul /
    # round (faster side by side, most of all on a loaded machine)
    hwc = x.detach().to("cpu", torch.float32).permute(1, 2, 0).clone(memory_format=torch.contiguous_format)
    return hwc.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8).numpy()


def pad_to_stride(x: torch.Tensor, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad a 1xCxHxW tensor at the bottom and right up to multiples of ``stride``.

    Replicate padding (repeating the last row/column) rather than zeros: a constant
    continuation of the border costs almost no bits and creates no false edge for
    the transform to spend rate on. Unlike reflect padding it works for any pad
    width, including a 1x1 image padded to 64x64. Returns the padded tensor and the
    original (H, W) for :func:`crop`.
    """
    if x.dim() != 4:
        raise ValueError(f"pad_to_stride: expected NxCxHxW, got shape {tuple(x.shape)}")
    if int(stride) != stride or stride < 1:
        raise ValueError(f"pad_to_stride: stride must be a positive integer, got {stride!r}")
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if h == 0 or w == 0:
        raise ValueError(f"pad_to_stride: empty image of size {h}x{w}")
    pad_h, pad_w = (-h) % stride, (-w) % stride
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x, (h, w)


def crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_stride`: keep the top-left ``size = (H, W)`` pixels."""
    h, w = size
    if h > x.shape[-2] or w > x.shape[-1]:
        raise ValueError(f"crop: size {h}x{w} is larger than the tensor {tuple(x.shape)}")
    return x[..., :h, :w]


# --------------------------------------------------------------------------- colour


def _check_three_channels(x: torch.Tensor, fn: str) -> None:
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{fn}: expected (B x) 3 x H x W, got shape {tuple(x.shape)}")


def rgb_to_ycbcr(x: torch.Tensor) -> torch.Tensor:
    """RGB -> YCbCr, ITU-R BT.709, full range, on [0, 1] tensors (B x) 3 x H x W.

    Y = KR R + KG G + KB B, Cb = (B - Y) / (2 (1 - KB)) + 0.5,
    Cr = (R - Y) / (2 (1 - KR)) + 0.5. BT.709 is what the JPEG AI verification model
    codes in. Written with elementwise ops (not a 3x3 matmul) so the kMAC/px profiler
    does not count a colour conversion as network MACs.
    """
    _check_three_channels(x, "rgb_to_ycbcr")
    r, g, b = x.unbind(dim=-3)
    y = KR * r + KG * g + KB * b
    cb = (b - y) / (2.0 * (1.0 - KB)) + 0.5
    cr = (r - y) / (2.0 * (1.0 - KR)) + 0.5
    return torch.stack((y, cb, cr), dim=-3)


def ycbcr_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Exact algebraic inverse of :func:`rgb_to_ycbcr` (BT.709 full range). No clamping:
    callers clamp once, at :func:`to_uint8`, so the round trip is lossless in float."""
    _check_three_channels(x, "ycbcr_to_rgb")
    y, cb, cr = x.unbind(dim=-3)
    r = y + 2.0 * (1.0 - KR) * (cr - 0.5)
    b = y + 2.0 * (1.0 - KB) * (cb - 0.5)
    g = (y - KR * r - KB * b) / KG
    return torch.stack((r, g, b), dim=-3)


def downsample_420(c: torch.Tensor) -> torch.Tensor:
    """Chroma Bx2xHxW -> Bx2x(H/2)x(W/2) by 2x2 averaging.

    The average sits at the centre of each 2x2 block (JPEG/JFIF "centred" chroma
    siting), which is also where :func:`upsample_420` assumes the samples are. H and
    W must be even: the codecs pad the image to their stride (a multiple of 2)
    before converting, and silently dropping an odd row here would lose pixels.
    """
    if c.dim() != 4 or c.shape[1] != 2:
        raise ValueError(f"downsample_420: expected Bx2xHxW chroma, got shape {tuple(c.shape)}")
    h, w = c.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(
            f"downsample_420: H and W must be even, got {h}x{w}; pad with pad_to_stride first"
        )
    return F.avg_pool2d(c, kernel_size=2, stride=2)


def upsample_420(c: torch.Tensor) -> torch.Tensor:
    """Chroma Bx2xhxw -> Bx2x2hx2w, bilinear with ``align_corners=False``.

    Bilinear rather than nearest: nearest makes 2x2 blocks whose edges show in
    saturated regions and cost PSNR on Cb/Cr at no saving. ``align_corners=False``
    treats each low-resolution sample as the centre of a 2x2 block, which matches the
    siting produced by :func:`downsample_420`: each output pixel mixes its own block's
    sample with weight 0.75 and the neighbour's with 0.25 per axis, and the border
    samples are replicated.
    """
    if c.dim() != 4 or c.shape[1] != 2:
        raise ValueError(f"upsample_420: expected Bx2xhxw chroma, got shape {tuple(c.shape)}")
    return F.interpolate(c, scale_factor=2, mode="bilinear", align_corners=False)
