"""Student transforms built from a ``transform`` config: analysis, synthesis, hyper paths.

Colour path, as the teacher's (docs/DESIGN.md, Students): RGB -> YCbCr BT.709 -> 4:2:0, then the
luma plane is packed by a 2x2 pixel unshuffle and stacked with Cb and Cr, so a joint branch
sees 6 channels at H/2 and no layer ever runs at full resolution::

    g_a:  RGB -> [Y unshuffled (4) | CbCr 4:2:0 (2)] - 0.5          6 ch   H/2
          stem (depthwise-separable 6 -> w0) + act, blocks          w0     H/2
          down (depthwise, pixel unshuffle, 1x1) + act, blocks      w1     H/4
          down + act, blocks                                        w2     H/8
          down + act, blocks, 1x1 -> latent                         M      H/16
    g_s:  the mirror, with sub-pixel up-sampling (1x1, pixel shuffle, depthwise) and the
          inverse normalization; 1x1 w0 -> 6 at H/2, unpacked to YCbCr, chroma up-sampled,
          converted to RGB.

Cost per level is ~ w_i^2 / 4^(i+1) per pixel, so with widths doubling per level every
resampling layer costs about the same and capacity is cheapest at H/16 (docs/DESIGN.md).

A transform config (the choices: ``student.zoo.TRANSFORMS``, Hydra group ``student/transform``)::

    block: depthwise          # stage block: depthwise | inverted_residual | shuffle (student.blocks)
    depths: [0, 1, 1, 2]      # analysis blocks per level H/2, H/4, H/8, H/16
    synthesis_depths: null    # synthesis blocks per level (null: same as depths)
    kernel_size: 3            # depthwise kernel of the blocks
    exp_ratio: 1              # block expansion (depth multiplier for depthwise)
    act: relu                 # nonlinearity inside blocks
    resample_act: gdn         # after stem / down (synthesis: its inverse, after 1x1 in / up);
                              # one name, or a list of 4 (one per level)
    resample_kernel: 3        # depthwise kernel of down / up
    resample_groups: 1        # groups of the down / up pointwise convs
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn as nn
import torch.nn.functional as F

from codec.image import downsample_420, rgb_to_ycbcr, upsample_420, ycbcr_to_rgb
from student.blocks import (ACTS, BLOCKS, DepthwiseSeparable, PixelUnshuffleDown, SubPixelUp, create_block, init_conv,
                            inverse_act, make_act)
from student.widths import LEVELS, LayerWidths

__all__ = ["TransformSpec", "PackYCbCr420", "UnpackYCbCr420", "Analysis", "Synthesis", "HyperAnalysis",
           "HyperSynthesis", "LEVELS"]

@dataclass(frozen=True)
class TransformSpec:
    block: str = "depthwise"
    depths: tuple[int, ...] = (0, 1, 1, 2)
    synthesis_depths: tuple[int, ...] | None = None
    kernel_size: int = 3
    exp_ratio: float = 1
    act: str = "relu"
    resample_act: str | tuple[str, ...] = "gdn"
    resample_kernel: int = 3
    resample_groups: int = 1

    @classmethod
    def from_config(cls, config: dict) -> "TransformSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(config) - known
        if unknown:
            raise ValueError(f"student transform config: unknown keys {sorted(unknown)}; known: {sorted(known)} "
                             f"(choices: student.zoo.TRANSFORMS)")
        cfg = dict(config)
        for key in ("depths", "synthesis_depths"):
            if cfg.get(key) is not None:
                cfg[key] = tuple(int(d) for d in cfg[key])
        if isinstance(cfg.get("resample_act"), (list, tuple)):
            cfg["resample_act"] = tuple(cfg["resample_act"])
        spec = cls(**cfg)
        spec.validate()
        return spec

    def validate(self) -> None:
        where = "student transform config"
        if self.block not in BLOCKS:
            raise ValueError(f"{where}: block {self.block!r} unknown; use one of {', '.join(BLOCKS)}")
        for key in ("depths", "synthesis_depths"):
            d = getattr(self, key)
            if d is not None and (len(d) != LEVELS or min(d) < 0):
                raise ValueError(f"{where}: {key} needs {LEVELS} counts >= 0 (levels H/2, H/4, H/8, H/16), got {list(d)}")
        if self.act not in ACTS:
            raise ValueError(f"{where}: act {self.act!r} unknown; use one of {', '.join(ACTS)}")
        acts = self.resample_acts
        if len(acts) != LEVELS or any(a not in ACTS for a in acts):
            raise ValueError(f"{where}: resample_act must be one of {', '.join(ACTS)} or a list of {LEVELS} of them "
                             f"(levels H/2, H/4, H/8, H/16), got {self.resample_act!r}")

    @property
    def resample_acts(self) -> tuple[str, ...]:
        """Analysis activation after the stem / each down, per level (synthesis: the inverse)."""
        a = self.resample_act
        return (a,) * LEVELS if isinstance(a, str) else tuple(a)

    @property
    def decoder_depths(self) -> tuple[int, ...]:
        return self.synthesis_depths if self.synthesis_depths is not None else self.depths

    def blocks(self, chs: int, mids, act: str) -> list[nn.Module]:
        """Stage blocks of width ``chs``, one per entry of ``mids`` (each block's hidden width;
        None: the block type's own, from exp_ratio)."""
        return [create_block(self.block, in_chs=chs, out_chs=chs, kernel_size=self.kernel_size, stride=1,
                             exp_ratio=self.exp_ratio, act=act, mid_chs=m) for m in mids]


class PackYCbCr420(nn.Module):
    """RGB (B, 3, H, W) -> (B, 6, H/2, W/2): 2x2-unshuffled Y, then Cb, Cr 4:2:0, centred on 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ycc = rgb_to_ycbcr(x)
        luma = F.pixel_unshuffle(ycc[:, :1], 2)
        return torch.cat((luma, downsample_420(ycc[:, 1:])), dim=1) - 0.5


class UnpackYCbCr420(nn.Module):
    """(B, 6, H/2, W/2) -> (RGB full resolution, YCbCr full resolution, Y, CbCr 4:2:0)."""

    def forward(self, packed: torch.Tensor):
        packed = packed + 0.5
        luma = F.pixel_shuffle(packed[:, :4], 2)
        chroma = packed[:, 4:]
        ycc = torch.cat((luma, upsample_420(chroma)), dim=1)
        return ycbcr_to_rgb(ycc), ycc, luma, chroma


class GraphRGBTail(nn.Module):
    """The synthesis' last 1x1 conv and :class:`UnpackYCbCr420` as an ONNX graph is best given
    them (:meth:`Synthesis.graph_form`): BT.709 is linear and bilinear up-sampling keeps
    constants, so the conv writes the four luma phases (with the +0.5 offset) and the three RGB
    offsets of the chroma (``R - Y``, ``G - Y``, ``B - Y``) at half resolution, and
    RGB = pixel_shuffle(luma) + up-sampled offsets: one depth-to-space of one channel, one
    three-channel resize and one broadcast add replace the unpacking, the concatenation and the
    per-plane colour arithmetic at full resolution. The same function up to rounding."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.out_channels != 6 or conv.kernel_size != (1, 1) or conv.bias is None:
            raise ValueError("GraphRGBTail: needs the synthesis' 1x1 conv to the 6 packed channels")
        w, b = conv.weight.detach()[:, :, 0, 0].double(), conv.bias.detach().double()
        # RGB - Y per unit of Cb and of Cr, read off ycbcr_to_rgb itself (neutral chroma is 0.5)
        unit = torch.tensor([[0.0, 1.5, 0.5], [0.0, 0.5, 1.5]], dtype=torch.float64)[:, :, None, None]
        offsets = ycbcr_to_rgb(unit)[:, :, 0, 0].T  # (RGB, [Cb, Cr])

        def rows(m):  # the luma rows (+0.5 below), then R-Y, G-Y, B-Y from Cb (row 4) and Cr (row 5)
            return torch.cat((m[:4], offsets @ m[4:6]))

        self.conv = nn.Conv2d(conv.in_channels, 7, 1)
        self.conv.weight.data = rows(w)[:, :, None, None].float().contiguous()
        self.conv.bias.data = (rows(b) + torch.tensor([0.5] * 4 + [0.0] * 3, dtype=torch.float64)).float()
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.conv(x)
        return F.pixel_shuffle(p[:, :4], 2) + F.interpolate(p[:, 4:], scale_factor=2, mode="bilinear",
                                                             align_corners=False)


class Analysis(nn.Sequential):
    """``g_a``: RGB -> latent (B, M, H/16, W/16); see the module docstring. Widths from
    ``lw.g_a`` (levels) and ``lw.g_a_blocks`` (hidden widths of the stage blocks)."""

    def __init__(self, spec: TransformSpec, lw: LayerWidths, latent: int):
        w, mids = lw.g_a, lw.g_a_blocks
        levels = [nn.Sequential(DepthwiseSeparable(6, w[0], spec.resample_kernel, act="identity"),
                                make_act(spec.resample_acts[0], w[0]), *spec.blocks(w[0], mids[0], spec.act))]
        for i in range(1, LEVELS):
            levels.append(nn.Sequential(
                PixelUnshuffleDown(w[i - 1], w[i], spec.resample_kernel, 2, act=spec.resample_acts[i],
                                   groups=spec.resample_groups),
                *spec.blocks(w[i], mids[i], spec.act)))
        super().__init__(PackYCbCr420(), *levels, init_conv(nn.Conv2d(w[-1], latent, 1)))


class Synthesis(nn.Sequential):
    """``g_s``: latent -> RGB. Children 0..3 are the levels H/16, H/8, H/4, H/2 (taps
    ``g_s.0`` .. ``g_s.3``), 4 the 1x1 to the packed 6 channels, 5 the colour unpacking.
    Widths from ``lw.g_s`` and ``lw.g_s_blocks`` (listed H/2 first, like ``g_a``'s)."""

    tap_names = ("g_s.0", "g_s.1", "g_s.2", "g_s.3")

    def __init__(self, spec: TransformSpec, lw: LayerWidths, latent: int):
        w, mids = lw.g_s, lw.g_s_blocks
        acts = [inverse_act(a) for a in spec.resample_acts]
        levels = [nn.Sequential(init_conv(nn.Conv2d(latent, w[-1], 1)), make_act(acts[-1], w[-1]),
                                *spec.blocks(w[-1], mids[-1], spec.act))]
        for i in reversed(range(LEVELS - 1)):
            levels.append(nn.Sequential(
                SubPixelUp(w[i + 1], w[i], spec.resample_kernel, 2, act=acts[i], groups=spec.resample_groups),
                *spec.blocks(w[i], mids[i], spec.act)))
        super().__init__(*levels, init_conv(nn.Conv2d(w[0], 6, 1)), UnpackYCbCr420())

    def forward(self, y_hat: torch.Tensor, taps: dict | None = None) -> torch.Tensor:
        """RGB x_hat; with a ``taps`` dict, also fills the level outputs and the YCbCr output."""
        x = y_hat
        modules = list(self)
        for i, module in enumerate(modules[:-1]):
            x = module(x)
            if taps is not None and i < len(self.tap_names):
                taps[self.tap_names[i]] = x
        rgb, ycc, luma, chroma = modules[-1](x)
        if taps is not None:
            taps.update(x_hat_ycbcr=ycc, x_hat_y=luma, x_hat_cbcr=chroma)
        return rgb

    def graph_form(self) -> nn.Module:
        """The same synthesis (RGB only, no taps) with its colour tail as :class:`GraphRGBTail`,
        for ONNX graphs (codec.inference.graph_form); PyTorch keeps the unpacking as trained."""
        modules = list(self)
        return nn.Sequential(*modules[:-2], GraphRGBTail(modules[-2]))


class HyperAnalysis(nn.Sequential):
    """``h_a``: y (M, H/16) -> down -> block -> down -> z (C_z, H/64)."""

    def __init__(self, spec: TransformSpec, latent: int, lw: LayerWidths, hyper: int):
        k = spec.resample_kernel
        super().__init__(PixelUnshuffleDown(latent, lw.h_a, k, 2, act="relu"),
                         *spec.blocks(lw.h_a, lw.h_a_blocks, "relu"),
                         PixelUnshuffleDown(lw.h_a, hyper, k, 2, act="identity"))


class HyperSynthesis(nn.Sequential):
    """``h_s``: z_hat (C_z, H/64) -> up -> block -> up -> hyper features (C_h, H/16), which the
    entropy parameters read at the positions each context step codes."""

    def __init__(self, spec: TransformSpec, hyper: int, lw: LayerWidths):
        k = spec.resample_kernel
        super().__init__(SubPixelUp(hyper, lw.h_s, k, 2, act="relu"),
                         *spec.blocks(lw.h_s, lw.h_s_blocks, "relu"),
                         SubPixelUp(lw.h_s, lw.hyper_features, k, 2, act="relu"))
