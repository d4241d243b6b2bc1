"""Cheap blocks for student transforms, sharing one keyword vocabulary.

Every block takes ``in_chs, out_chs, kernel_size, stride, exp_ratio, act`` (the resampling
blocks also ``groups``; the stage blocks ``mid_chs``, an explicit hidden width that overrides
``exp_ratio``, so a pruned block is described by its config), as the blocks of timm's ``_efficientnet_blocks.py`` do, so a
transform is a list of (block name, keywords) and swapping the block type is a config
change. ``act`` is a name (:data:`ACTS`), which keeps architecture configs JSON-like.

MACs per *output* position (fvcore counts; activations, |x|, divides, pixel (un)shuffle and
channel shuffle are not MACs), for C = in_chs, C' = out_chs, k = kernel_size, e = exp_ratio,
s = stride, g = groups:

==========================  =======================================================
block                       MACs per output position
==========================  =======================================================
DepthwiseSeparable          k^2 C e + C e C'
InvertedResidual (s=1)      C m + k^2 m + m C'            (m = round(C e))
ShuffleUnit (s=1, C = C')   C/2 m + k^2 m + m C/2         (m = round(C/2 e))
ShuffleUnit (s=2)           k^2 C + C C'/2 + s^2 C m + k^2 m + m (C' - C'/2)   (m = round(C e))
SubPixelUp                  C C' / g + k^2 C'             (conv at the low resolution / s^2)
PixelUnshuffleDown          k^2 C s^2 + C s^2 C' / g
SimplifiedGDN               C^2 (full) or C (diagonal)
==========================  =======================================================

Weights start variance-preserving, resampling filters as the identity and residual branches
at zero (see "initialization" below): with PyTorch's default init a ~17-conv student barely
trains for its first thousands of steps.

Sub-pixel up-sampling follows Shi et al., "Real-time single image and video super-resolution
using an efficient sub-pixel convolutional neural network", CVPR 2016; the ShuffleNetV2 unit
Ma et al., ECCV 2018; the inverted residual Sandler et al., "MobileNetV2", CVPR 2018; the
simplified GDN Johnston et al., "Computationally efficient neural image compression", 2019.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from codec.layers import lower_bound

__all__ = [
    "ACTS", "BLOCKS", "make_act", "inverse_act", "create_block", "channel_shuffle", "init_conv", "init_delta",
    "act_gain",
    "SimplifiedGDN", "DepthwiseSeparable", "InvertedResidual", "ShuffleUnit", "SubPixelUp", "PixelUnshuffleDown",
]


# --------------------------------------------------------------------------------- activations
class SimplifiedGDN(nn.Module):
    r"""y_i = x_i / (beta_i + sum_j gamma_ij |x_j|)  (inverse: multiply instead of divide).

    Johnston, Eban, Gordon, Balle, "Computationally efficient neural image compression", 2019:
    GDN with the square and square root dropped keeps most of its rate-distortion benefit.
    The gamma product is a 1x1 convolution of |x| so fvcore counts it: C^2 MACs per position,
    or C with ``diagonal=True`` (per-channel gamma, a 1x1 conv with C groups), the variant
    that fits depthwise-heavy nets whose other layers cost O(C) per position.
    beta >= beta_min and gamma >= 0 are kept by a gradient-preserving lower bound.

    Widths are read from the parameters' shapes, never from a stored count, so a pruner that
    cuts ``beta[keep]`` and ``gamma[keep][:, keep]`` (``gamma[keep]`` when diagonal) leaves a
    working layer.
    """

    def __init__(self, channels: int, inverse: bool = False, diagonal: bool = False,
                 beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.inverse, self.diagonal, self.beta_min = inverse, diagonal, beta_min
        self.beta = nn.Parameter(torch.ones(channels))
        gamma = torch.full((channels, 1), gamma_init) if diagonal else gamma_init * torch.eye(channels)
        self.gamma = nn.Parameter(gamma)

    @property
    def channels(self) -> int:
        return self.beta.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.beta.shape[0]
        beta = lower_bound(self.beta, self.beta_min)
        gamma = lower_bound(self.gamma, 0.0)
        norm = F.conv2d(torch.abs(x), gamma.reshape(c, -1, 1, 1), beta, groups=c if self.diagonal else 1)
        return x * norm if self.inverse else x / norm

    def extra_repr(self) -> str:
        return f"{self.channels}, inverse={self.inverse}, diagonal={self.diagonal}"

    def inference_form(self) -> nn.Module:
        """The bounded beta and gamma computed once (codec.inference)."""
        from codec.inference import InferenceGDN

        beta = torch.clamp(self.beta.detach(), min=self.beta_min)
        gamma = torch.clamp(self.gamma.detach(), min=0.0)
        return InferenceGDN(beta, gamma.reshape(-1) if self.diagonal else gamma, self.inverse, "simplified")


#: activation names a config may use. Synthesis transforms use the inverse of the
#: analysis' normalization (:func:`inverse_act`).
ACTS = ("relu", "gdn", "igdn", "gdn_diag", "igdn_diag", "identity")


def make_act(name: str | None, channels: int) -> nn.Module:
    if name is None or name == "identity":
        return nn.Identity()
    if name == "relu":
        # never in place: torch-pruning mis-traces in-place ops, and forward hooks that capture
        # a conv's output for feature distillation would see it overwritten
        return nn.ReLU()
    if name in ("gdn", "igdn", "gdn_diag", "igdn_diag"):
        return SimplifiedGDN(channels, inverse=name.startswith("i"), diagonal=name.endswith("_diag"))
    raise ValueError(f"unknown activation {name!r}; use one of {', '.join(ACTS)}")


def inverse_act(name: str | None) -> str | None:
    """The synthesis-side counterpart of an analysis activation: gdn -> igdn, others unchanged."""
    return {"gdn": "igdn", "gdn_diag": "igdn_diag"}.get(name, name)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's channel shuffle: (B, g*n, H, W) -> channels reordered n-major (no MACs)."""
    if groups == 1:
        return x
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


# --------------------------------------------------------------------------------- initialization
# PyTorch's default conv init (kaiming_uniform, a=sqrt(5)) divides the variance by ~3 per conv.
# A student is ~17 thin convs from image to image, so at init the signal (and the gradient of
# the first layers) is ~1e-4 of what it should be and training crawls for thousands of steps.
# Instead: variance-preserving weights (He et al. 2015) with the gain of the nonlinearity that
# follows, depthwise resampling filters that start as the identity, and residual branches that
# start at zero (Goyal et al. 2017), so every block starts as the identity.
def act_gain(act: str | None) -> float:
    return math.sqrt(2.0) if act == "relu" else 1.0


def init_conv(conv: nn.Conv2d, gain: float = 1.0) -> nn.Conv2d:
    """weight ~ N(0, gain^2 / fan_in), bias 0 (fan_in = C_in/groups x k x k)."""
    nn.init.normal_(conv.weight, 0.0, gain / math.sqrt(conv.weight[0].numel()))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def init_delta(conv: nn.Conv2d) -> nn.Conv2d:
    """A depthwise conv that starts as the identity (each filter a centred delta)."""
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:, :, conv.weight.shape[2] // 2, conv.weight.shape[3] // 2] = 1.0
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _init_zero(conv: nn.Conv2d) -> nn.Conv2d:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def _dw(chs: int, kernel_size: int, stride: int = 1, multiplier: int = 1) -> nn.Conv2d:
    return nn.Conv2d(chs, chs * multiplier, kernel_size, stride, kernel_size // 2, groups=chs)


def _pw(in_chs: int, out_chs: int, groups: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_chs, out_chs, 1, groups=groups)


def _check(cls: str, in_chs: int, out_chs: int, kernel_size: int, stride: int) -> None:
    if in_chs < 1 or out_chs < 1:
        raise ValueError(f"{cls}: channels must be >= 1, got in_chs={in_chs}, out_chs={out_chs}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{cls}: kernel_size must be odd (same padding), got {kernel_size}")
    if stride < 1:
        raise ValueError(f"{cls}: stride must be >= 1, got {stride}")


def _mid(cls: str, mid_chs: int | None, default: int) -> int:
    if mid_chs is None:
        return default
    if not isinstance(mid_chs, int) or isinstance(mid_chs, bool) or mid_chs < 1:
        raise ValueError(f"{cls}: mid_chs (the hidden width) must be a whole number >= 1, got {mid_chs!r}")
    return mid_chs


# -------------------------------------------------------------------------------------- blocks
class DepthwiseSeparable(nn.Module):
    """Depthwise kxk (stride, depth multiplier ``exp_ratio``) -> act -> pointwise 1x1.

    Howard et al., "MobileNets", 2017. Residual when stride is 1 and in_chs == out_chs.
    MACs per output position: k^2 C e + C e C'.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1,
                 exp_ratio: float = 1, act: str | None = "relu", mid_chs: int | None = None):
        super().__init__()
        _check(type(self).__name__, in_chs, out_chs, kernel_size, stride)
        if mid_chs is not None and mid_chs != in_chs * exp_ratio:
            raise ValueError(f"DepthwiseSeparable: the hidden width is the depthwise conv's output, in_chs x exp_ratio "
                             f"= {in_chs * exp_ratio}, tied to the input; it cannot be set to {mid_chs}")
        if exp_ratio != int(exp_ratio) or exp_ratio < 1:
            raise ValueError(f"DepthwiseSeparable: exp_ratio is the depth multiplier, a whole number >= 1, got {exp_ratio}")
        e = int(exp_ratio)
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_dw = init_conv(_dw(in_chs, kernel_size, stride, e), act_gain(act))
        self.act = make_act(act, in_chs * e)
        self.conv_pw = _pw(in_chs * e, out_chs)
        _init_zero(self.conv_pw) if self.has_skip else init_conv(self.conv_pw)

    @staticmethod
    def default_mid(in_chs: int, out_chs: int, stride: int, exp_ratio: float) -> None:
        """No free hidden width: the depthwise conv's output count is tied to its input."""
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pw(self.act(self.conv_dw(x)))
        return x + y if self.has_skip else y


class InvertedResidual(nn.Module):
    """MobileNetV2 block: pointwise expand (x exp_ratio) -> act -> depthwise kxk (stride) -> act ->
    pointwise project; residual when stride is 1 and in_chs == out_chs.
    MACs per output position (stride 1): C m + k^2 m + m C', m = round(C e).
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1,
                 exp_ratio: float = 2, act: str | None = "relu", mid_chs: int | None = None):
        super().__init__()
        _check(type(self).__name__, in_chs, out_chs, kernel_size, stride)
        mid = _mid(type(self).__name__, mid_chs, self.default_mid(in_chs, out_chs, stride, exp_ratio))
        self.has_skip = stride == 1 and in_chs == out_chs
        self.conv_pw = init_conv(_pw(in_chs, mid), act_gain(act))
        self.act1 = make_act(act, mid)
        self.conv_dw = init_conv(_dw(mid, kernel_size, stride), act_gain(act))
        self.act2 = make_act(act, mid)
        self.conv_pwl = _pw(mid, out_chs)
        _init_zero(self.conv_pwl) if self.has_skip else init_conv(self.conv_pwl)

    @staticmethod
    def default_mid(in_chs: int, out_chs: int, stride: int, exp_ratio: float) -> int:
        return max(1, round(in_chs * exp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_pwl(self.act2(self.conv_dw(self.act1(self.conv_pw(x)))))
        return x + y if self.has_skip else y


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit (Ma et al., ECCV 2018): channel split, one branch transformed, concat,
    channel shuffle.

    Stride 1 with in_chs == out_chs: half the channels pass through untouched, the other half
    go through pointwise (x exp_ratio) -> act -> depthwise kxk -> pointwise -> act; so a unit
    costs about a quarter of a depthwise-separable block of the same width. Otherwise (stride
    2 or a width change) both branches see the whole input: depthwise (stride) -> pointwise,
    and pointwise -> depthwise (stride) -> pointwise, each giving half the output channels.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1,
                 exp_ratio: float = 1, act: str | None = "relu", mid_chs: int | None = None):
        super().__init__()
        _check(type(self).__name__, in_chs, out_chs, kernel_size, stride)
        self.split = stride == 1 and in_chs == out_chs
        if self.split:
            if in_chs % 2:
                raise ValueError(f"ShuffleUnit: the channel split needs an even width, got {in_chs}")
            branch_in = branch_out = in_chs // 2
            self.left = None
        else:
            if out_chs < 2:
                raise ValueError(f"ShuffleUnit: out_chs must be >= 2 (two branches), got {out_chs}")
            branch_in, branch_out = in_chs, out_chs - out_chs // 2
            self.left = nn.Sequential(init_conv(_dw(in_chs, kernel_size, stride)),
                                      init_conv(_pw(in_chs, out_chs // 2), act_gain(act)), make_act(act, out_chs // 2))
        mid = _mid(type(self).__name__, mid_chs, self.default_mid(in_chs, out_chs, stride, exp_ratio))
        self.right = nn.Sequential(init_conv(_pw(branch_in, mid), act_gain(act)), make_act(act, mid),
                                   init_conv(_dw(mid, kernel_size, stride)),
                                   init_conv(_pw(mid, branch_out), act_gain(act)), make_act(act, branch_out))

    @staticmethod
    def default_mid(in_chs: int, out_chs: int, stride: int, exp_ratio: float) -> int:
        branch_in = in_chs // 2 if stride == 1 and in_chs == out_chs else in_chs
        return max(1, round(branch_in * exp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.right(x2)), dim=1)
        else:
            out = torch.cat((self.left(x), self.right(x)), dim=1)
        return channel_shuffle(out, 2)


class SubPixelUp(nn.Module):
    """Sub-pixel up-sampling by ``stride``: pointwise C -> C' s^2 at the low resolution, pixel
    shuffle, then a depthwise kxk at the high resolution (it smooths the s x s blocks a bare
    pixel shuffle leaves), then act. ``groups`` makes the pointwise conv grouped (followed by a
    channel shuffle so the next grouped layer mixes groups). ``exp_ratio`` is accepted for the
    shared vocabulary and must be 1.
    MACs per output (high-resolution) position: C C' / g + k^2 C'.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 2,
                 exp_ratio: float = 1, act: str | None = None, groups: int = 1):
        super().__init__()
        _check(type(self).__name__, in_chs, out_chs, kernel_size, stride)
        if exp_ratio != 1:
            raise ValueError(f"SubPixelUp: exp_ratio must be 1, got {exp_ratio}")
        if in_chs % groups or out_chs % groups:
            raise ValueError(f"SubPixelUp: groups={groups} must divide in_chs={in_chs} and out_chs={out_chs}")
        self.groups = groups
        self.conv_pw = init_conv(_pw(in_chs, out_chs * stride * stride, groups))
        self.shuffle = nn.PixelShuffle(stride)
        self.conv_dw = init_delta(_dw(out_chs, kernel_size)) if kernel_size > 1 else nn.Identity()
        self.act = make_act(act, out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = channel_shuffle(self.shuffle(self.conv_pw(x)), self.groups)
        return self.act(self.conv_dw(x))

    def inference_form(self) -> nn.Module:
        """1x1 conv, pixel shuffle and channel shuffle as one transposed conv (codec.inference)."""
        from codec.inference import SubPixelConv, dense_grouped_1x1, shuffle_source

        r = self.shuffle.upscale_factor
        cout = self.conv_pw.out_channels // (r * r)
        source = shuffle_source(cout, self.groups) if self.groups > 1 else None
        return nn.Sequential(SubPixelConv(dense_grouped_1x1(self.conv_pw), self.conv_pw.bias, r, source),
                             self.conv_dw, self.act)


class PixelUnshuffleDown(nn.Module):
    """Inverse of :class:`SubPixelUp`: depthwise kxk at the high resolution, pixel unshuffle
    by ``stride`` (lossless space-to-depth), pointwise C s^2 -> C' (grouped with ``groups``,
    then a channel shuffle), then act. A strided conv would throw away 3/4 of the samples of
    a thin input; space-to-depth keeps them all.
    MACs per output (low-resolution) position: k^2 C s^2 + C s^2 C' / g.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 2,
                 exp_ratio: float = 1, act: str | None = None, groups: int = 1):
        super().__init__()
        _check(type(self).__name__, in_chs, out_chs, kernel_size, stride)
        if exp_ratio != 1:
            raise ValueError(f"PixelUnshuffleDown: exp_ratio must be 1, got {exp_ratio}")
        if (in_chs * stride * stride) % groups or out_chs % groups:
            raise ValueError(f"PixelUnshuffleDown: groups={groups} must divide in_chs*stride^2 and out_chs={out_chs}")
        self.groups = groups
        self.conv_dw = init_delta(_dw(in_chs, kernel_size)) if kernel_size > 1 else nn.Identity()
        self.unshuffle = nn.PixelUnshuffle(stride)
        self.conv_pw = init_conv(_pw(in_chs * stride * stride, out_chs, groups))
        self.act = make_act(act, out_chs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_pw(self.unshuffle(self.conv_dw(x)))
        return self.act(channel_shuffle(x, self.groups))

    def inference_form(self) -> nn.Module:
        """Pixel unshuffle, 1x1 conv and channel shuffle as one strided conv (codec.inference)."""
        from codec.inference import UnshuffleConv, shuffle_source

        source = shuffle_source(self.conv_pw.out_channels, self.groups) if self.groups > 1 else None
        return nn.Sequential(self.conv_dw, UnshuffleConv(self.conv_pw, self.unshuffle.downscale_factor, source),
                             self.act)


#: block names a transform config may use for its stage blocks.
BLOCKS: dict[str, type[nn.Module]] = {
    "depthwise": DepthwiseSeparable,
    "inverted_residual": InvertedResidual,
    "shuffle": ShuffleUnit,
}


def create_block(name: str, **kwargs) -> nn.Module:
    if name not in BLOCKS:
        raise ValueError(f"unknown block {name!r}; use one of {', '.join(BLOCKS)}")
    return BLOCKS[name](**kwargs)
