"""Classical image codecs for the rate-distortion benchmark, as a small registry.

Every codec is a :class:`ClassicalCodec`: ``encode(rgb, q) -> bytes`` and
``decode(bytes) -> rgb`` on ``HxWx3`` uint8 arrays, a default ``qualities`` sweep
ordered from the lowest to the highest rate, and ``available() -> (ok, reason)``
so the benchmark can skip what this machine lacks and say why. The bytes are the
whole file each library writes (container included), so bpp = 8 * len / (H * W).

The settings are the ones a fair comparison on RGB PSNR needs. A classical codec
compared on defaults is often crippled without anyone noticing (AVIF tuned for a
perceptual metric, JPEG 2000 with the reversible 5/3 wavelet or without the
colour transform, x265 with psycho-visual tuning and 2 kB of version SEI),
which would make any learned codec look better than it is. Each class docstring
says what is set, what is left at the library default, and why. ``settings()``
returns the same as a dict for the results JSON.

Percentages quoted below were measured once while writing this module, on one
768x512 photo (matplotlib's ``grace_hopper.jpg``, Lanczos-resized and cropped),
as pchip BD-rate on RGB PSNR (:mod:`bench.bd`): orders of magnitude, not results.

Registry: :func:`list_classical` and :func:`get_classical`.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "AvifCodec",
    "ClassicalCodec",
    "CodecUnavailableError",
    "HevcIntraCodec",
    "Jpeg2000Codec",
    "JpegCodec",
    "JpegXlCodec",
    "WebpCodec",
    "get_classical",
    "list_classical",
    "rgb_to_ycbcr_bt709",
    "ycbcr_to_rgb_bt709",
]


class CodecUnavailableError(RuntimeError):
    """The codec's library or binary is missing on this machine."""


def _check_rgb(rgb: np.ndarray, codec: str) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"{codec}: expected a numpy array HxWx3 uint8, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(
            f"{codec}: expected an HxWx3 uint8 RGB array, got shape {rgb.shape} dtype {rgb.dtype}; "
            "convert with np.asarray(Image.open(path).convert('RGB'))"
        )
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"{codec}: empty image of shape {rgb.shape}")
    return np.ascontiguousarray(rgb)


def _as_rgb_out(arr: np.ndarray, codec: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise RuntimeError(
            f"{codec}: decoder returned shape {arr.shape} dtype {arr.dtype}, expected HxWx3 uint8"
        )
    return np.ascontiguousarray(arr)


class ClassicalCodec(ABC):
    """One classical codec with fixed settings and a single quality knob.

    ``qualities`` is ordered from the lowest to the highest rate; for knobs where
    a smaller number means more bits (QP, Butteraugli distance) the numbers go
    down along the list. ``knob`` names the knob and its direction.
    """

    name: str = ""
    knob: str = ""
    default_qualities: tuple[float, ...] = ()

    def __init__(self, qualities: Sequence[float] | None = None) -> None:
        qs = tuple(self.default_qualities if qualities is None else qualities)
        if len(qs) == 0:
            raise ValueError(f"{self.name}: empty quality list")
        self.qualities: tuple[float, ...] = qs

    @abstractmethod
    def available(self) -> tuple[bool, str]:
        """(True, "") when encode/decode can run here, else (False, why not)."""

    @abstractmethod
    def _encode(self, rgb: np.ndarray, q: float) -> bytes: ...

    @abstractmethod
    def _decode(self, data: bytes) -> np.ndarray: ...

    @abstractmethod
    def settings(self) -> dict[str, Any]:
        """The fixed encoder settings, for the results JSON."""

    def _require(self) -> None:
        ok, reason = self.available()
        if not ok:
            raise CodecUnavailableError(f"{self.name} is not available here: {reason}")

    def encode(self, rgb: np.ndarray, q: float) -> bytes:
        """Compress an HxWx3 uint8 RGB image at quality knob ``q``."""
        self._require()
        return bytes(self._encode(_check_rgb(rgb, self.name), q))

    def decode(self, data: bytes) -> np.ndarray:
        """Decompress to an HxWx3 uint8 RGB image."""
        self._require()
        return _as_rgb_out(self._decode(bytes(data)), self.name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, qualities={list(self.qualities)})"


# --------------------------------------------------------------------------- Pillow


def _pillow_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pillow_has(feature: str) -> tuple[bool, str]:
    try:
        from PIL import features
    except ImportError:
        return False, "Pillow is not installed (pip install Pillow)"
    if not features.check(feature):
        return False, f"this Pillow build has no {feature} support"
    return True, ""


class JpegCodec(ClassicalCodec):
    """JPEG (libjpeg / libjpeg-turbo through Pillow), baseline 4:2:0.

    Set: ``quality=q`` (IJG scaling of the Annex K tables), ``subsampling=2``
    (4:2:0, what virtually every JPEG in the wild uses) and ``optimize=True``
    (per-image optimal Huffman tables: free bits, 5.8 % BD-rate). The bytes are
    exactly what ``Image.save(buf, "JPEG", quality=q, subsampling=2, optimize=True)``
    writes. Not set: progressive mode, trellis quantization (mozjpeg only), so
    this is plain libjpeg-turbo JPEG, the usual "JPEG" anchor.
    """

    name = "jpeg"
    knob = "Pillow JPEG quality 1..95 (higher = more bits)"
    default_qualities = (10, 20, 35, 50, 65, 80, 90, 95)

    def available(self) -> tuple[bool, str]:
        return _pillow_has("jpg")

    def _encode(self, rgb: np.ndarray, q: float) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=int(q), subsampling=2, optimize=True)
        return buf.getvalue()

    def _decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)

    def settings(self) -> dict[str, Any]:
        return {"library": "Pillow/libjpeg", "subsampling": "4:2:0", "optimize": True, "knob": self.knob}


class WebpCodec(ClassicalCodec):
    """WebP lossy (libwebp through Pillow).

    Set: ``quality=q``, ``method=6`` (slowest, best RD search; the default 4 costs
    1.3 % BD-rate), ``lossless=False``. Lossy WebP is VP8 intra and always 4:2:0 in
    limited-range BT.601: the format offers no 4:4:4, so that handicap is WebP's own.
    Not set: ``use_sharp_yuv`` (helps perceived chroma edges, not PSNR).
    Note: ``imagecodecs.webp_encode`` with ``lossless`` left at None writes a
    *lossless* file here, one more reason to go through Pillow.
    """

    name = "webp"
    knob = "libwebp quality 0..100 (higher = more bits)"
    default_qualities = (5, 20, 35, 50, 65, 80, 90, 95)

    def available(self) -> tuple[bool, str]:
        return _pillow_has("webp")

    def _encode(self, rgb: np.ndarray, q: float) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, "WEBP", quality=int(q), method=6, lossless=False)
        return buf.getvalue()

    def _decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)

    def settings(self) -> dict[str, Any]:
        return {"library": "Pillow/libwebp", "method": 6, "lossless": False, "subsampling": "4:2:0 (format)",
                "knob": self.knob}


class AvifCodec(ClassicalCodec):
    """AVIF (AV1 intra, libaom through libavif through Pillow), 4:4:4, tune=psnr.

    Set: ``quality=q`` (libavif 0..100, mapped to the AV1 quantizer), ``codec="aom"``,
    ``subsampling="4:4:4"`` (no chroma decimation: the benchmark scores RGB PSNR,
    and HEVC is run 4:4:4 too), ``range="full"``,
    ``advanced={"tune": "psnr"}`` and ``speed`` (default 4).

    Why Pillow and not ``imagecodecs.avif_encode``: imagecodecs exposes no
    codec-specific options, so libaom keeps libavif's default perceptual tuning;
    on the test photo that costs about 15 % BD-rate against ``tune=psnr``
    (libavif 1.4; the same loss as Pillow without ``advanced``).

    Why speed 4: speed 6 (Pillow's default) is 8 % BD-rate worse and speed 8 is
    10 % worse than 6; speed 4 takes about 1.5 s per 768x512 encode, 6x speed 6.
    Slower speeds were not measured. Pass ``speed=`` to change it.

    Left at Pillow/libavif defaults: the RGB->YCbCr matrix (BT.601, full range,
    which only moves bits between channels), automatic tiling (single tile at
    768x512), 8-bit depth. The HEIF container and AV1 headers take about 300 bytes
    (a flat 64x64 image codes to 302), 0.006 bpp at 768x512, counted.
    """

    name = "avif"
    knob = "libavif quality 0..100 (higher = more bits)"
    default_qualities = (10, 25, 40, 55, 70, 82, 90)

    def __init__(self, qualities: Sequence[float] | None = None, speed: int = 4) -> None:
        super().__init__(qualities)
        if not 0 <= int(speed) <= 10:
            raise ValueError(f"avif: speed must be in 0..10 (0 slowest/best), got {speed}")
        self.speed = int(speed)

    def available(self) -> tuple[bool, str]:
        ok, reason = _pillow_has("avif")
        if not ok:
            hint = "needs Pillow >= 11.2 built with libavif; imagecodecs cannot set tune=psnr"
            return False, f"{reason} ({hint})"
        from PIL import AvifImagePlugin

        # Pillow has no public query for the encoders its libavif was built with.
        avif = getattr(AvifImagePlugin, "_avif", None)
        if avif is None or not avif.encoder_codec_available("aom"):
            return False, "Pillow's libavif has no aom encoder (needed for tune=psnr)"
        return True, ""

    def _encode(self, rgb: np.ndarray, q: float) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(
            buf,
            "AVIF",
            quality=int(q),
            speed=self.speed,
            subsampling="4:4:4",
            codec="aom",
            range="full",
            advanced={"tune": "psnr"},
        )
        return buf.getvalue()

    def _decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)

    def settings(self) -> dict[str, Any]:
        return {"library": "Pillow/libavif/libaom", "subsampling": "4:4:4", "tune": "psnr",
                "speed": self.speed, "range": "full", "matrix": "BT.601 (Pillow default)", "knob": self.knob}


# ----------------------------------------------------------------------- imagecodecs


def _imagecodecs_has(attr: str) -> tuple[bool, str]:
    try:
        import imagecodecs
    except ImportError:
        return False, "imagecodecs is not installed (pip install imagecodecs)"
    if not getattr(imagecodecs, attr).available:
        return False, f"this imagecodecs build has no {attr} codec"
    return True, ""


class Jpeg2000Codec(ClassicalCodec):
    """JPEG 2000 (OpenJPEG through Pillow), lossy, rate-controlled.

    Set: ``irreversible=True`` (the 9/7 wavelet; the reversible 5/3 one is meant for
    lossless), ``mct=1`` (the irreversible colour transform, RGB->YCbCr), ``no_jp2=True``
    (raw J2K codestream, no JP2 boxes), ``quality_mode="rates"`` with one quality layer:
    OpenJPEG's rate allocator cuts the code-block passes at the target size, with the
    rate-distortion optimal truncation JPEG 2000 is built around. The knob is the target in
    bits per pixel (the compression ratio passed is 24 / bpp, for 8-bit RGB). OpenJPEG's
    fixed-quality mode (a PSNR target, ``imagecodecs.jpeg2k_encode(level=...)``), which this
    bench used before, stops the allocator far from the optimum: on the eval photos it needs
    more than twice the bits for a lower PSNR.
    Left at default: one tile, 64x64 code blocks, 5 wavelet levels (fewer on small images).
    """

    name = "jpeg2000"
    knob = "OpenJPEG rate-controlled target in bits per pixel (higher = more bits)"
    default_qualities = (0.06, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0, 1.5)

    def available(self) -> tuple[bool, str]:
        return _pillow_has("jpg_2000")

    def _encode(self, rgb: np.ndarray, q: float) -> bytes:
        from PIL import Image

        if not q > 0:
            raise ValueError(f"jpeg2000: the target bpp must be > 0, got {q}")
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG2000", quality_mode="rates", quality_layers=[24.0 / float(q)],
                                  irreversible=True, mct=1, no_jp2=True)
        return buf.getvalue()

    def _decode(self, data: bytes) -> np.ndarray:
        return _pillow_decode(data)

    def settings(self) -> dict[str, Any]:
        return {"library": "Pillow/OpenJPEG", "wavelet": "9/7 irreversible", "mct": True,
                "codecformat": "J2K", "rate_control": "rates (target bpp, one quality layer)", "knob": self.knob}


class JpegXlCodec(ClassicalCodec):
    """JPEG XL (libjxl through ``imagecodecs.jpegxl_encode``), VarDCT lossy.

    Set: ``distance=q`` (Butteraugli distance, libjxl's native knob: 1.0 is
    "visually lossless", larger = fewer bits) and ``effort=7`` (libjxl's default
    and the usual benchmark setting; effort 9 was 0.8 % *worse* in PSNR and 6x slower).
    Left at default: XYB colour space (JPEG XL's own, not selectable per metric),
    bare codestream without container. JPEG XL optimises a perceptual metric by
    design and has no PSNR tuning, so expect it to look worse in PSNR than it does.
    """

    name = "jpegxl"
    knob = "libjxl Butteraugli distance (lower = more bits)"
    default_qualities = (12.0, 8.0, 5.0, 3.0, 2.0, 1.3, 0.8, 0.5)

    def __init__(self, qualities: Sequence[float] | None = None, effort: int = 7) -> None:
        super().__init__(qualities)
        if not 1 <= int(effort) <= 10:
            raise ValueError(f"jpegxl: effort must be in 1..10, got {effort}")
        self.effort = int(effort)

    def available(self) -> tuple[bool, str]:
        return _imagecodecs_has("JPEGXL")

    def _encode(self, rgb: np.ndarray, q: float) -> bytes:
        import imagecodecs

        if not q > 0:
            raise ValueError(f"jpegxl: distance must be > 0 for lossy coding, got {q}")
        return imagecodecs.jpegxl_encode(rgb, distance=float(q), effort=self.effort)

    def _decode(self, data: bytes) -> np.ndarray:
        import imagecodecs

        return imagecodecs.jpegxl_decode(data)

    def settings(self) -> dict[str, Any]:
        return {"library": "imagecodecs/libjxl", "effort": self.effort, "mode": "VarDCT (lossy)",
                "knob": self.knob}


# ---------------------------------------------------------------------- HEVC intra

# BT.709 luma weights (ITU-R BT.709-6, item 3.2). Full range: Y in [0, 255] and
# Cb, Cr centred on 128 with the full 8-bit swing, as JPEG does with BT.601.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB


def rgb_to_ycbcr_bt709(rgb: np.ndarray) -> np.ndarray:
    """RGB uint8 -> full-range BT.709 YCbCr uint8 (HxWx3), rounded and clipped."""
    x = rgb.astype(np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = _KR * r + _KG * g + _KB * b
    cb = (b - y) / (2.0 * (1.0 - _KB)) + 128.0
    cr = (r - y) / (2.0 * (1.0 - _KR)) + 128.0
    return np.clip(np.rint(np.stack([y, cb, cr], axis=-1)), 0, 255).astype(np.uint8)


def ycbcr_to_rgb_bt709(ycc: np.ndarray) -> np.ndarray:
    """Full-range BT.709 YCbCr uint8 -> RGB uint8 (HxWx3), the inverse of the above."""
    x = ycc.astype(np.float64)
    y, cb, cr = x[..., 0], x[..., 1] - 128.0, x[..., 2] - 128.0
    r = y + 2.0 * (1.0 - _KR) * cr
    b = y + 2.0 * (1.0 - _KB) * cb
    g = (y - _KR * r - _KB * b) / _KG
    return np.clip(np.rint(np.stack([r, g, b], axis=-1)), 0, 255).astype(np.uint8)


def _read_y4m_444(data: bytes) -> np.ndarray:
    """First frame of a YUV4MPEG2 stream in 8-bit 4:4:4, as HxWx3 (Y, Cb, Cr)."""
    header_end = data.find(b"\n")
    if not data.startswith(b"YUV4MPEG2") or header_end < 0:
        raise RuntimeError("hevc: ffmpeg did not write a YUV4MPEG2 stream")
    tokens = data[:header_end].split()[1:]
    fields = {t[:1]: t[1:] for t in tokens}
    width, height = int(fields[b"W"]), int(fields[b"H"])
    colour = fields.get(b"C", b"420jpeg")
    if colour != b"444":  # 444p10 etc. are high bit depth, 444alpha has a 4th plane
        raise RuntimeError(f"hevc: expected 8-bit 4:4:4 from ffmpeg, got y4m colourspace C{colour.decode()}")
    frame_start = data.index(b"\n", header_end + 1) + 1  # skip the "FRAME ..." line
    n = width * height * 3
    planes = np.frombuffer(data, dtype=np.uint8, count=n, offset=frame_start)
    return planes.reshape(3, height, width).transpose(1, 2, 0)


class HevcIntraCodec(ClassicalCodec):
    """HEVC intra, 4:4:4 8-bit, x265 to encode and ffmpeg to decode (both external).

    Encode: RGB -> full-range BT.709 YCbCr 4:4:4 (see :func:`rgb_to_ycbcr_bt709`),
    written as raw planar ``i444``, then::

        x265 --input-csp i444 --input-depth 8 --preset slow --tune psnr
             --keyint 1 --frames 1 --qp Q --no-info

    ``--tune psnr`` turns off psycho-visual RDO and adaptive quantization,
    ``--keyint 1 --frames 1`` make a single intra picture, ``--qp`` is a fixed QP
    (the knob; the JVET/CTC way to sweep rate), ``--no-info`` drops the SEI with the
    x265 version and full command line (2.2 kB here, 0.05 bpp at 768x512), which
    would otherwise be counted as bits.
    ``--preset slow``: ``veryslow`` was within 0.1 % BD-rate of it on the test photo.
    This is x265, not the HM reference encoder, which is usually better in intra.
    ``--ctu`` is 64 unless the image is smaller (x265 needs one whole CTU).
    8-bit YCbCr rounding alone caps the RGB round trip at about 53 dB PSNR, well
    above the benchmark's rates.

    The bitstream is untagged (no VUI range/matrix) on purpose: it is only read
    back by :meth:`decode`, and an untagged stream keeps ffmpeg from inserting a
    range or matrix conversion. Decode: ``ffmpeg -f hevc -i x -f yuv4mpegpipe
    -pix_fmt yuv444p``, then the inverse BT.709 full-range conversion. The bytes
    are the raw Annex-B stream (VPS/SPS/PPS + one slice), no container.

    ``available()`` is True only when both binaries are found on PATH (or at the
    paths passed in): Debian/Ubuntu ``apt-get install x265 ffmpeg``.
    """

    name = "hevc"
    knob = "x265 fixed QP 0..51 (lower = more bits)"
    default_qualities = (47, 42, 37, 32, 27, 22, 17)

    def __init__(
        self,
        qualities: Sequence[float] | None = None,
        preset: str = "slow",
        x265: str = "x265",
        ffmpeg: str = "ffmpeg",
    ) -> None:
        super().__init__(qualities)
        self.preset = preset
        self.x265 = x265
        self.ffmpeg = ffmpeg

    def available(self) -> tuple[bool, str]:
        if shutil.which(self.x265) is None:
            return False, f"{self.x265} not on PATH (apt-get install x265)"
        if shutil.which(self.ffmpeg) is None:
            return False, f"{self.ffmpeg} not on PATH, needed to decode HEVC (apt-get install ffmpeg)"
        return True, ""

    def _encode(self, rgb: np.ndarray, q: float) -> bytes:
        qp = int(q)
        if not 0 <= qp <= 51 or qp != q:
            raise ValueError(f"hevc: QP must be an integer in 0..51, got {q}")
        height, width = rgb.shape[:2]
        # x265 needs the picture to hold one CTU; keep the usual 64 whenever the
        # image allows it, so benchmark-size images are coded with default CTUs.
        ctu = next((c for c in (64, 32, 16) if min(height, width) >= c), None)
        if ctu is None:
            raise ValueError(f"hevc: x265 needs an image of at least 16x16 pixels, got {width}x{height}")
        planar = np.ascontiguousarray(rgb_to_ycbcr_bt709(rgb).transpose(2, 0, 1))
        with tempfile.TemporaryDirectory(prefix="vmuc_hevc_") as tmp:
            src, dst = Path(tmp) / "in.yuv", Path(tmp) / "out.hevc"
            src.write_bytes(planar.tobytes())
            cmd = [
                shutil.which(self.x265) or self.x265,
                "--input", str(src), "--input-res", f"{width}x{height}",
                "--input-csp", "i444", "--input-depth", "8", "--output-depth", "8", "--fps", "1",
                "--preset", self.preset, "--tune", "psnr",
                "--keyint", "1", "--frames", "1", "--qp", str(qp), "--ctu", str(ctu),
                "--no-info", "--no-progress", "--log-level", "error",
                "--output", str(dst),
            ]  # fmt: skip
            _run(cmd, "x265")
            return dst.read_bytes()

    def _decode(self, data: bytes) -> np.ndarray:
        with tempfile.TemporaryDirectory(prefix="vmuc_hevc_") as tmp:
            src, dst = Path(tmp) / "in.hevc", Path(tmp) / "out.y4m"
            src.write_bytes(data)
            cmd = [
                shutil.which(self.ffmpeg) or self.ffmpeg,
                "-nostdin", "-v", "error", "-y", "-f", "hevc", "-i", str(src),
                "-frames:v", "1", "-f", "yuv4mpegpipe", "-pix_fmt", "yuv444p", str(dst),
            ]  # fmt: skip
            _run(cmd, "ffmpeg")
            ycc = _read_y4m_444(dst.read_bytes())
        return ycbcr_to_rgb_bt709(ycc)

    def settings(self) -> dict[str, Any]:
        return {"encoder": "x265", "decoder": "ffmpeg", "chroma": "4:4:4", "colour": "BT.709 full range",
                "preset": self.preset, "tune": "psnr", "intra_only": True, "rate_control": "fixed QP",
                "knob": self.knob}


def _run(cmd: list[str], tool: str) -> None:
    proc = subprocess.run(cmd, capture_output=True, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"{tool} failed (exit {proc.returncode}): {' '.join(cmd)}\n{err}")


# ------------------------------------------------------------------------- registry

_FACTORIES: dict[str, Callable[..., ClassicalCodec]] = {
    JpegCodec.name: JpegCodec,
    Jpeg2000Codec.name: Jpeg2000Codec,
    WebpCodec.name: WebpCodec,
    AvifCodec.name: AvifCodec,
    JpegXlCodec.name: JpegXlCodec,
    HevcIntraCodec.name: HevcIntraCodec,
}


def list_classical(available_only: bool = False) -> list[str]:
    """Names of the registered classical codecs (only the usable ones if asked)."""
    names = list(_FACTORIES)
    if available_only:
        names = [n for n in names if _FACTORIES[n]().available()[0]]
    return names


def get_classical(name: str, **kwargs: Any) -> ClassicalCodec:
    """A fresh codec by name; ``kwargs`` go to its constructor (``qualities``, ``speed``...)."""
    try:
        factory = _FACTORIES[name]
    except KeyError:
        raise ValueError(
            f"unknown classical codec {name!r}; known: {', '.join(_FACTORIES)}"
        ) from None
    return factory(**kwargs)
