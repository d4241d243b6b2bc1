"""The VMuC-like teacher: a YCbCr 4:2:0 two-branch hyperprior codec with a 4-stage spatial context.

Follows what is published about the JPEG AI verification model (VMuC, 1st stage; docs/DESIGN.md,
"Teacher (VMuC-like)"). Dataflow, with H x W the padded image (a multiple of 64)::

    RGB -> YCbCr (BT.709) -> Y (1 x H)  --g_a_y-->  y_luma   (160 x H/16) --+
                          -> CbCr 4:2:0 (2 x H/2) --g_a_uv--> y_chroma (96 x H/16) --+--> y (256 x H/16)
    y --h_a--> z (192 x H/64) --[factorized prior]--> z_hat --h_s--> hyper (512 x H/16)

    y is split into 4 subsets by position parity (row % 2, col % 2) and coded in 4 stages,
    in the order (0,0), (1,1), (0,1), (1,0):

        for stage k = 0..3:
            ctx_k            = context(y_hat_0 .. y_hat_{k-1}, k)       # None for k = 0
            scales, means    = entropy_parameters(hyper_k, ctx_k, k)     # "prediction fusion"
            y_hat_k          = [N(means, scales)] coded / decoded

    y_hat_luma --g_s_y--> Y_hat (1 x H)
    concat(y_hat_chroma, y_hat_luma) --g_s_uv--> CbCr_hat (2 x H/2)
    Y_hat, upsample_420(CbCr_hat) -> YCbCr -> RGB x_hat

Design notes (the why):

* The context and the fusion run on the *sub-grids* (H/32 x W/32 each, one per parity
  subset), not on the whole latent grid with undecoded positions zeroed: stage k's context
  reads the already decoded sub-grids stacked as channels (k x 256), so every executed MAC
  is needed and the decoder pays for no zeros: the profiler's effective count equals the
  executed one, as for every codec without masked taps. Neighbours
  stay neighbours: sub-grid cell (i, j) of subset (a, b) sits at latent (2i + a, 2j + b),
  so a 3x3 conv over the stacked sub-grids sees the 8 latent neighbours and more.
* Each stage has its own context and fusion weights (stage 0 fuses the hyperprior alone,
  stage 3 sees three decoded subsets); one ``context`` part and one ``entropy_parameters``
  part hold them and are called once per stage, on both sides (docs/DESIGN.md rule 4).
* ``forward`` runs the same 4 stages as the coder, sequentially: the context of stage k
  reads y_hat of stages < k quantized around *their* means (round(y - mu) + mu, the
  symbol convention of codec.coding), so eval ``forward`` reproduces the decoded image up to
  float error. It costs what a parallel masked pass costs, since each stage only touches
  its quarter of the latent.
* Chroma synthesis reads the luma latent (VMuC's cross-component design); luma synthesis
  does not read chroma.

Taps returned by ``forward`` (all batch-first):

==============  ======================  =====================================================
``y``           B x 256 x H/16 x W/16   joint latent before quantization (luma channels first)
``y_hat``       B x 256 x H/16 x W/16   quantized latent fed to the synthesis
``z``           B x 192 x H/64 x W/64   hyper latent before quantization
``hyper``       B x 512 x H/16 x W/16   h_s features (the hyperprior's prediction)
``means``       B x 256 x H/16 x W/16   predicted means, all 4 stages merged back
``scales``      B x 256 x H/16 x W/16   predicted scales, all 4 stages merged back
``x_hat_ycbcr`` B x 3 x H x W           YCbCr reconstruction, chroma upsampled (for the
                                        6:1:1 YCbCr MSE; luma is channel 0)
``x_hat_cbcr``  B x 2 x H/2 x W/2       chroma reconstruction at its coded 4:2:0 resolution
``g_s_y.k``     B x s_k x H/2^(3-k)     luma synthesis features after IGDN k (k = 0, 1, 2), for
                                        feature distillation
==============  ======================  =====================================================

``x_hat`` itself is RGB, so compress / decompress / forward all speak RGB (Codec contract).
Channel counts above are the ``vmuc`` defaults; every width is a keyword of the entry
functions, recorded in the codec config (checkpoints, bitstream headers).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from codec.base import Codec, CodecOutput, Side
from codec.entropy import FactorizedPrior, GaussianConditional, quantize
from codec.image import downsample_420, rgb_to_ycbcr, upsample_420, ycbcr_to_rgb
from codec.layers import GDN, conv, deconv
from codec.registry import register_codec

__all__ = ["VMuC", "MultiStageContext", "PredictionFusion", "STAGE_OFFSETS", "split_2x2", "merge_2x2",
           "vmuc", "vmuc_tiny"]

#: (row parity, column parity) of the positions decoded at each stage. Stage 1 takes the
#: diagonal neighbours of stage 0, so stages 2 and 3 each find decoded latents on all four
#: sides (a 2x2 split ordered like two nested checkerboards).
STAGE_OFFSETS: tuple[tuple[int, int], ...] = ((0, 0), (1, 1), (0, 1), (1, 0))


def split_2x2(t: torch.Tensor) -> list[torch.Tensor]:
    """B x C x 2h x 2w -> the 4 parity sub-grids (B x C x h x w each) in stage order."""
    return [t[..., a::2, b::2] for a, b in STAGE_OFFSETS]


def merge_2x2(subsets: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`split_2x2`: interleave 4 sub-grids (stage order) into one grid.

    Written as a pixel shuffle (data movement, no MACs) so autograd and tracing see one op.
    """
    if len(subsets) != len(STAGE_OFFSETS):
        raise ValueError(f"merge_2x2: need {len(STAGE_OFFSETS)} sub-grids, got {len(subsets)}")
    by_offset = [None] * 4
    for (a, b), s in zip(STAGE_OFFSETS, subsets):
        by_offset[2 * a + b] = s  # pixel_shuffle reads channel c*4 + 2*row + col
    bsz, c, h, w = subsets[0].shape
    return F.pixel_shuffle(torch.stack(by_offset, dim=2).reshape(bsz, c * 4, h, w), 2)


class MultiStageContext(nn.Module):
    """Spatial context of the 4-stage 2x2 split: stage k (k >= 1) predicts features for its
    sub-grid from the k sub-grids decoded before it, stacked as channels.

    Stage 0 has nothing decoded yet and returns ``None`` (its entropy parameters come from the
    hyperprior alone); it is still a call, so both sides call the part once per stage.
    """

    def __init__(self, latent_channels: int, channels: int, stages: int = len(STAGE_OFFSETS)):
        super().__init__()
        self.latent_channels = latent_channels
        self.channels = channels
        self.stages = stages
        self.stage_nets = nn.ModuleList(
            nn.Sequential(conv(k * latent_channels, channels, 3, 1), nn.LeakyReLU(),
                          conv(channels, channels, 3, 1))
            for k in range(1, stages)
        )

    def forward(self, decoded: Sequence[torch.Tensor], stage: int) -> torch.Tensor | None:
        if len(decoded) != stage:
            raise ValueError(f"MultiStageContext: stage {stage} reads {stage} decoded sub-grids, got {len(decoded)}")
        if stage == 0:
            return None
        return self.stage_nets[stage - 1](torch.cat(list(decoded), dim=1))


class PredictionFusion(nn.Module):
    """VMuC's prediction fusion: per stage, 1x1 convs fuse the hyperprior's features with the
    context's and output (scales, means) of that stage's sub-grid."""

    def __init__(self, hyper_channels: int, context_channels: int, latent_channels: int,
                 hidden: Sequence[int], stages: int = len(STAGE_OFFSETS)):
        super().__init__()
        if len(hidden) != 2:
            raise ValueError(f"PredictionFusion: fusion_channels needs 2 widths, got {list(hidden)}")
        self.latent_channels = latent_channels
        h1, h2 = (int(c) for c in hidden)
        self.stage_nets = nn.ModuleList(
            nn.Sequential(conv(hyper_channels + (context_channels if k else 0), h1, 1, 1), nn.LeakyReLU(),
                          conv(h1, h2, 1, 1), nn.LeakyReLU(),
                          conv(h2, 2 * latent_channels, 1, 1))
            for k in range(stages)
        )

    def forward(self, hyper: torch.Tensor, context: torch.Tensor | None, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = hyper if context is None else torch.cat((hyper, context), dim=1)
        scales, means = self.stage_nets[stage](features).chunk(2, dim=1)
        return scales, means


def _widths(name: str, values: Sequence[int], n: int) -> list[int]:
    widths = [int(v) for v in values]
    if len(widths) != n or min(widths) < 1:
        raise ValueError(f"vmuc config: {name} needs {n} positive widths, got {list(values)}")
    return widths


class VMuC(Codec):
    """VMuC-like teacher (see the module docstring for the dataflow and the taps)."""

    parts = {
        "g_a_y": Side.ENCODER, "g_a_uv": Side.ENCODER, "h_a": Side.ENCODER,
        "h_s": Side.BOTH, "context": Side.BOTH, "entropy_parameters": Side.BOTH,
        "g_s_y": Side.DECODER, "g_s_uv": Side.DECODER,
    }
    stride = 64

    def __init__(self, luma_channels: int, chroma_channels: int, hyper_channels: int,
                 luma_analysis_channels: Sequence[int], luma_synthesis_channels: Sequence[int],
                 chroma_analysis_channels: Sequence[int], chroma_synthesis_channels: Sequence[int],
                 hyper_synthesis_channels: Sequence[int], hyper_feature_channels: int,
                 context_channels: int, fusion_channels: Sequence[int]):
        super().__init__()
        Ly, Lc, N = int(luma_channels), int(chroma_channels), int(hyper_channels)
        M = Ly + Lc
        self.luma_channels, self.chroma_channels, self.hyper_channels, self.latent_channels = Ly, Lc, N, M
        a1, a2, a3 = _widths("luma_analysis_channels", luma_analysis_channels, 3)
        s1, s2, s3 = _widths("luma_synthesis_channels", luma_synthesis_channels, 3)
        ca1, ca2 = _widths("chroma_analysis_channels", chroma_analysis_channels, 2)
        cs1, cs2 = _widths("chroma_synthesis_channels", chroma_synthesis_channels, 2)
        h1, h2 = _widths("hyper_synthesis_channels", hyper_synthesis_channels, 2)
        F_h = int(hyper_feature_channels)

        # Luma: 1 x H -> Ly x H/16 (4 stride-2 convs); chroma: 2 x H/2 -> Lc x H/16 (3).
        self.g_a_y = nn.Sequential(conv(1, a1), GDN(a1), conv(a1, a2), GDN(a2), conv(a2, a3), GDN(a3), conv(a3, Ly))
        self.g_a_uv = nn.Sequential(conv(2, ca1), GDN(ca1), conv(ca1, ca2), GDN(ca2), conv(ca2, Lc))
        self.g_s_y = nn.Sequential(
            deconv(Ly, s1), GDN(s1, inverse=True), deconv(s1, s2), GDN(s2, inverse=True),
            deconv(s2, s3), GDN(s3, inverse=True), deconv(s3, 1),
        )
        # Chroma synthesis reads the chroma latent and the luma latent (cross-component).
        self.g_s_uv = nn.Sequential(
            deconv(Lc + Ly, cs1), GDN(cs1, inverse=True), deconv(cs1, cs2), GDN(cs2, inverse=True), deconv(cs2, 2),
        )
        # Minnen 2018's mean-scale hyper transforms; h_s outputs features, not parameters:
        # the fusion turns them (with the context) into means and scales per stage.
        self.h_a = nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(), conv(N, N), nn.LeakyReLU(),
                                 conv(N, N))
        self.h_s = nn.Sequential(deconv(N, h1), nn.LeakyReLU(), deconv(h1, h2), nn.LeakyReLU(),
                                 conv(h2, F_h, 3, 1))
        self.context = MultiStageContext(M, int(context_channels))
        self.entropy_parameters = PredictionFusion(F_h, int(context_channels), M, fusion_channels)
        self.entropy_bottleneck = FactorizedPrior(N)
        self.gaussian_conditional = GaussianConditional()

    @property
    def gain_channels(self) -> int:
        return self.latent_channels

    # -- colour path ------------------------------------------------------------------------
    @staticmethod
    def _to_planes(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """RGB B x 3 x H x W -> (Y B x 1 x H x W, CbCr B x 2 x H/2 x W/2)."""
        ycbcr = rgb_to_ycbcr(x)
        return ycbcr[:, :1], downsample_420(ycbcr[:, 1:])

    def _analysis(self, x: torch.Tensor) -> torch.Tensor:
        luma, chroma = self._to_planes(x)
        return self.gain_y(torch.cat((self.g_a_y(luma), self.g_a_uv(chroma)), dim=1))

    def _synthesis(self, y_hat: torch.Tensor, taps: dict | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (RGB x_hat, YCbCr x_hat with upsampled chroma, CbCr at 4:2:0); with a ``taps``
        dict, also the luma synthesis features after each IGDN (``g_s_y.0`` at H/8, ``g_s_y.1``
        at H/4, ``g_s_y.2`` at H/2), which feature distillation reads."""
        y_hat = self.ungain_y(y_hat)
        y_luma, y_chroma = y_hat[:, : self.luma_channels], y_hat[:, self.luma_channels:]
        if taps is None:
            luma = self.g_s_y(y_luma)
        else:
            luma = y_luma
            for i, layer in enumerate(self.g_s_y):
                luma = layer(luma)
                if isinstance(layer, GDN):
                    taps[f"g_s_y.{i // 2}"] = luma
        cbcr = self.g_s_uv(torch.cat((y_chroma, y_luma), dim=1))
        ycbcr = torch.cat((luma, upsample_420(cbcr)), dim=1)
        return ycbcr_to_rgb(ycbcr), ycbcr, cbcr

    def _z_shape(self, size: tuple[int, int]) -> torch.Size:
        return torch.Size((1, self.hyper_channels, size[0] // 64, size[1] // 64))

    # -- the three passes ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> CodecOutput:
        self.check_forward_input(x)
        y = self.analysis_latent("y", lambda: self._analysis(x))
        z = self.analysis_latent("z", lambda: self.h_a(y))
        z_hat = quantize(z, "noise" if self.training else "round")
        hyper = self.h_s(z_hat)
        hyper_k, y_k = split_2x2(hyper), split_2x2(y)
        decoded, rate_input, scales_k, means_k = [], [], [], []
        for stage in range(len(STAGE_OFFSETS)):
            ctx = self.context(decoded, stage)
            scales, means = self.entropy_parameters(hyper_k[stage], ctx, stage)
            if self.training:
                # noise for the rate, straight-through rounding around the mean for what the
                # context and the synthesis see (what the decoder will have).
                rate_input.append(quantize(y_k[stage], "noise"))
                decoded.append(quantize(y_k[stage], "ste", means))
            else:
                decoded.append(quantize(y_k[stage], "round", means))
                rate_input.append(decoded[-1])
            scales_k.append(scales)
            means_k.append(means)
        y_hat, scales, means = merge_2x2(decoded), merge_2x2(scales_k), merge_2x2(means_k)
        taps = {"y": y, "y_hat": y_hat, "z": z, "hyper": hyper, "means": means, "scales": scales}
        x_hat, x_hat_ycbcr, x_hat_cbcr = self._synthesis(y_hat, taps)
        likelihoods = {"y": self.gaussian_conditional.likelihood(merge_2x2(rate_input), scales, means),
                       "z": self.entropy_bottleneck.likelihood(z_hat)}
        taps.update(x_hat_ycbcr=x_hat_ycbcr, x_hat_cbcr=x_hat_cbcr)
        return {"x_hat": x_hat, "likelihoods": likelihoods, "taps": taps}

    def _code_latent(self, io, z: torch.Tensor | None, y: torch.Tensor | None, size: tuple[int, int]) -> torch.Tensor:
        """The entropy-coding half shared by both sides: z, then the 4 stages of y.

        The encoder passes ``z`` and ``y``, the decoder ``None``; the sequence of neural calls
        and symbol I/O calls is identical on both sides by construction.
        """
        z_hat = io.factorized("z", self.entropy_bottleneck, z, self._z_shape(size))
        hyper_k = split_2x2(self.h_s(z_hat))
        y_k = split_2x2(y) if y is not None else [None] * len(STAGE_OFFSETS)
        decoded = []
        for stage in range(len(STAGE_OFFSETS)):
            ctx = self.context(decoded, stage)
            scales, means = self.entropy_parameters(hyper_k[stage], ctx, stage)
            decoded.append(io.gaussian("y", self.gaussian_conditional, y_k[stage], scales, means))
        return merge_2x2(decoded)

    def encoder_pass(self, x: torch.Tensor, io) -> None:
        y = self.analysis_latent("y", lambda: self._analysis(x))
        self._code_latent(io, self.analysis_latent("z", lambda: self.h_a(y)), y, tuple(x.shape[-2:]))

    def decoder_pass(self, io, size: tuple[int, int]) -> torch.Tensor:
        y_hat = self._code_latent(io, None, None, size)
        return self._synthesis(y_hat)[0]


@register_codec("vmuc")
def vmuc(luma_channels: int = 160, chroma_channels: int = 96, hyper_channels: int = 192,
         luma_analysis_channels: Sequence[int] = (96, 160, 192),
         luma_synthesis_channels: Sequence[int] = (192, 160, 96),
         chroma_analysis_channels: Sequence[int] = (64, 96),
         chroma_synthesis_channels: Sequence[int] = (96, 64),
         hyper_synthesis_channels: Sequence[int] = (256, 384),
         hyper_feature_channels: int = 512,
         context_channels: int = 256,
         fusion_channels: Sequence[int] = (640, 512)) -> Codec:
    """The teacher: decoder side ~69 kMAC/px at 768x512 (VMuC 1st stage); widths in the order
    the data flows (analysis: full resolution first; synthesis: latent first)."""
    return VMuC(**locals())


@register_codec("vmuc_tiny")
def vmuc_tiny(luma_channels: int = 16, chroma_channels: int = 8, hyper_channels: int = 8,
              luma_analysis_channels: Sequence[int] = (8, 8, 8),
              luma_synthesis_channels: Sequence[int] = (8, 8, 8),
              chroma_analysis_channels: Sequence[int] = (8, 8),
              chroma_synthesis_channels: Sequence[int] = (8, 8),
              hyper_synthesis_channels: Sequence[int] = (16, 16),
              hyper_feature_channels: int = 16,
              context_channels: int = 16,
              fusion_channels: Sequence[int] = (16, 16)) -> Codec:
    """The teacher's structure at toy widths, for tests and CPU smoke runs."""
    return VMuC(**locals())
