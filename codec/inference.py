"""Inference forms of a trained codec: cheaper layers where only one side runs them.

:func:`inference_copy` returns a copy of a codec in eval mode, without gradients, whose
**one-side parts** (those ``parts`` declares ``Side.ENCODER`` or ``Side.DECODER``: the analysis
``g_a``, the hyper analysis ``h_a``, the synthesis ``g_s``) have their layers replaced by
inference forms: every submodule with an ``inference_form()`` method is replaced by what it
returns, innermost first. The forms compute the same function up to float rounding:

* GDN and the simplified GDN (:class:`InferenceGDN`): the reparametrized beta and gamma
  (lower bounds, squares) are computed once instead of at every call; the per-channel
  simplified GDN becomes one fused multiply-add instead of a grouped 1x1 convolution.
* Sub-pixel up-sampling (1x1 conv, pixel shuffle, channel shuffle; :class:`SubPixelConv`):
  one transposed convolution with kernel = stride, which writes the shuffled layout directly;
  the position-dependent bias becomes the weights of a constant-one input channel.
* Pixel-unshuffle down-sampling (:class:`UnshuffleConv`): unshuffle, grouped 1x1 conv and
  channel shuffle become one strided convolution with kernel = stride.
* The encoder-only parts run in PyTorch's channels-last layout (:class:`ChannelsLast`,
  :data:`CHANNELS_LAST_SIDES`): it sped up the analysis in ``python -m bench.speed``'s
  breakdown and did not speed up the synthesis, which keeps the default layout.

A fold is kept only where it is faster in PyTorch and in ONNX Runtime alike (timed by hand,
layer by layer, at the sizes of a 768x512 image): folding the student's RGB tail (last 1x1
conv, 4:2:0 unpacking, BT.709) into a transposed conv and a three-channel bilinear
up-sampling was slower in both, so that tail stays as trained here. :func:`graph_form` holds
the rewrites kept for ONNX graphs only (the export's decoder-only parts).

**Why only one-side parts** (docs/DESIGN.md, "Speed"): the parts both sides run (``h_s``, the
context, the entropy parameters) compute the scale indices, which the encoder and the decoder
must derive bit for bit alike, including when one side runs a plain model and the other this
copy. Those parts are kept exactly as trained. A one-side part only changes which symbols the
encoder picks (``g_a``, ``h_a``) or the float image made from decoded symbols (``g_s``), so a
bitstream made by either form decodes with either form; the image differs by float rounding.

The copy keeps its registry name, config and config hash; ``compress`` / ``decompress`` and
the bitstream are those of :class:`codec.base.Codec`. It cannot be trained.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["inference_copy", "fold", "one_side_parts", "graph_form", "NCHWC_BLOCK", "ChannelsLast", "CHANNELS_LAST_SIDES", "InferenceGDN",
           "GraphDiagonalGDN",
           "SubPixelConv", "UnshuffleConv", "dense_grouped_1x1", "shuffle_source"]


def one_side_parts(model) -> list[str]:
    """The parts only the encoder or only the decoder runs, in declaration order."""
    return [name for name, side in model.parts.items() if side.value != "both"]


def fold(module: nn.Module) -> nn.Module:
    """Replace, innermost first, every submodule that has ``inference_form()`` by its form."""
    for name, child in list(module.named_children()):
        folded = fold(child)
        if folded is not child:
            setattr(module, name, folded)
    form = getattr(module, "inference_form", None)
    return form() if callable(form) else module


#: sides whose one-side parts run in channels-last layout by default: the encoder's (the
#: analysis gained in ``python -m bench.speed``'s breakdown, the synthesis did not)
CHANNELS_LAST_SIDES = ("encoder",)


@torch.no_grad()
def inference_copy(model, channels_last: bool | tuple[str, ...] = CHANNELS_LAST_SIDES):
    """A copy of ``model`` for coding only: eval mode, no gradients, one-side parts folded;
    the parts of the sides in ``channels_last`` (True: both, False: none) also run in
    PyTorch's channels-last layout. A copy made with the same setting is returned as is."""
    sides = ("encoder", "decoder") if channels_last is True else tuple(channels_last or ())
    if getattr(model, "inference_channels_last", None) == sides:
        return model
    out = copy.deepcopy(model).eval().requires_grad_(False)
    for name in one_side_parts(out):
        part = fold(getattr(out, name))
        setattr(out, name, ChannelsLast(part) if model.parts[name].value in sides else part)
    out.inference_channels_last = sides
    return out


class ChannelsLast(nn.Module):
    """Runs ``module`` with its weights and 4-D inputs in channels-last layout; outputs are
    returned contiguous (NCHW), as the rest of the codec expects."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module.to(memory_format=torch.channels_last)

    def forward(self, *args):
        to_nhwc = lambda t: t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t  # noqa: E731
        return _map_tensors(self.module(*_map_tensors(args, to_nhwc)), lambda t: t.contiguous())


def _map_tensors(x, fn):
    """``fn`` applied to every tensor in nested tuples and lists (recurrent parts pass states)."""
    if torch.is_tensor(x):
        return fn(x)
    if isinstance(x, (tuple, list)):
        return type(x)(_map_tensors(v, fn) for v in x)
    return x


# ------------------------------------------------------------------------------------- layers
class InferenceGDN(nn.Module):
    """GDN / IGDN with beta and gamma as they act, computed once.

    ``kind="balle"``: y = x * rsqrt(beta + gamma x^2) (inverse: sqrt), Balle et al. 2016.
    ``kind="simplified"``: y = x / (beta + gamma |x|) (inverse: multiply), Johnston et al. 2019;
    a ``gamma`` of shape (C,) is the per-channel variant, applied as one fused multiply-add.
    """

    def __init__(self, beta: torch.Tensor, gamma: torch.Tensor, inverse: bool, kind: str):
        super().__init__()
        if kind not in ("balle", "simplified"):
            raise ValueError(f"InferenceGDN: kind must be 'balle' or 'simplified', got {kind!r}")
        c = beta.shape[0]
        self.inverse, self.kind, self.diagonal = bool(inverse), kind, gamma.ndim == 1
        if self.diagonal:
            self.register_buffer("beta", beta.detach().reshape(1, c, 1, 1).clone())
            self.register_buffer("gamma", gamma.detach().reshape(1, c, 1, 1).clone())
        else:
            self.register_buffer("beta", beta.detach().clone())
            self.register_buffer("gamma", gamma.detach().reshape(c, c, 1, 1).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "balle":
            norm = F.conv2d(x * x, self.gamma, self.beta)
            return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))
        if self.diagonal:
            norm = torch.addcmul(self.beta, self.gamma, torch.abs(x))
        else:
            norm = F.conv2d(torch.abs(x), self.gamma, self.beta)
        return x * norm if self.inverse else x / norm

    def extra_repr(self) -> str:
        return f"{self.beta.numel()}, kind={self.kind}, inverse={self.inverse}, diagonal={self.diagonal}"


class GraphDiagonalGDN(nn.Module):
    """The per-channel simplified GDN as an ONNX graph is best given it (:func:`graph_form`):
    with ``|x| = 2 relu(x) - x``, ``beta + gamma |x| = (2 gamma) relu(x) + beta - gamma x``, two
    depthwise 1x1 convolutions and a multiply (inverse) or divide. ONNX Runtime's CPU layout
    pass (NCHWc) has no ``Abs``: the ``addcmul`` form costs two layout conversions of the
    full-resolution tensor around it, which this one avoids. The same function up to rounding."""

    def __init__(self, gdn: InferenceGDN):
        super().__init__()
        if not (gdn.kind == "simplified" and gdn.diagonal):
            raise ValueError("GraphDiagonalGDN: only the per-channel simplified GDN")
        c = gdn.beta.numel()
        gamma = gdn.gamma.reshape(c)
        self.inverse = gdn.inverse
        self.relu_part = nn.Conv2d(c, c, 1, groups=c)
        self.relu_part.weight.data = (2 * gamma).reshape(c, 1, 1, 1).clone()
        self.relu_part.bias.data = gdn.beta.reshape(c).clone()
        self.linear_part = nn.Conv2d(c, c, 1, groups=c, bias=False)
        self.linear_part.weight.data = (-gamma).reshape(c, 1, 1, 1).clone()
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = self.relu_part(F.relu(x)) + self.linear_part(x)
        return x * norm if self.inverse else x / norm


#: channels per block of ONNX Runtime's NCHWc layout with AVX-512 (8 with AVX2); a layer whose
#: width is not a multiple is padded to one in that layout
NCHWC_BLOCK = 16


def graph_form(module: nn.Module) -> nn.Module:
    """A copy of an inference-form part for ONNX export, in the form ONNX Runtime runs fastest:
    every inverse per-channel simplified GDN (:class:`InferenceGDN`) whose width is a multiple of
    :data:`NCHWC_BLOCK` becomes a :class:`GraphDiagonalGDN` (a narrower one would be padded to a
    block in that layout: slower for an 8-channel GDN, so it keeps ``Abs``), and every
    submodule with a ``graph_form()`` method is replaced by
    what it returns (innermost first; the student synthesis' colour tail). Used for the
    decoder-only parts, where each was faster in ONNX Runtime for the trained students
    (docs/DESIGN.md, "Speed"); PyTorch keeps the inference form."""

    def swap(m: nn.Module) -> nn.Module:
        for name, child in list(m.named_children()):
            new = swap(child)
            if new is not child:
                setattr(m, name, new)
        if (isinstance(m, InferenceGDN) and m.kind == "simplified" and m.diagonal and m.inverse
                and m.beta.numel() % NCHWC_BLOCK == 0):
            return GraphDiagonalGDN(m)
        form = getattr(m, "graph_form", None)
        return form() if callable(form) else m

    return swap(copy.deepcopy(module))


def dense_grouped_1x1(conv: nn.Conv2d) -> torch.Tensor:
    """The (out, in) matrix of a (possibly grouped) 1x1 convolution, zeros between groups."""
    w = conv.weight.detach()[:, :, 0, 0]
    g = conv.groups
    if g == 1:
        return w.clone()
    out_g, in_g = conv.out_channels // g, conv.in_channels // g
    dense = w.new_zeros(conv.out_channels, conv.in_channels)
    for k in range(g):
        dense[k * out_g:(k + 1) * out_g, k * in_g:(k + 1) * in_g] = w[k * out_g:(k + 1) * out_g]
    return dense


def shuffle_source(channels: int, groups: int) -> torch.Tensor:
    """For each output channel of ``student.blocks.channel_shuffle(x, groups)``, its input channel."""
    k = torch.arange(channels)
    n = channels // groups
    return (k % groups) * n + k // groups


class SubPixelConv(nn.Module):
    """1x1 conv C -> C' r^2, pixel shuffle by r and a channel permutation, as one transposed
    convolution (kernel r, stride r) over the input and a constant-one channel whose weights
    are the bias (the bias depends on the sub-pixel position, a transposed conv's does not)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
                 source: torch.Tensor | None = None):
        """``weight`` (C' r^2, C) and ``bias`` (C' r^2,) of the 1x1 conv; ``source[k]``: the
        channel after the pixel shuffle that becomes output channel k (None: identity)."""
        super().__init__()
        r = int(stride)
        rows, cin = weight.shape
        cout = rows // (r * r)
        w = weight.detach().reshape(cout, r, r, cin)
        b = (bias.detach() if bias is not None else weight.new_zeros(rows)).reshape(cout, r, r)
        if source is not None:
            w, b = w[source], b[source]
        self.up = nn.ConvTranspose2d(cin + 1, cout, r, r, bias=False)
        self.up.weight.data = torch.cat((w.permute(3, 0, 1, 2), b[None]), dim=0).contiguous()
        self.up.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.pad(x, (0, 0, 0, 0, 0, 1), value=1.0))


class UnshuffleConv(nn.Module):
    """Pixel unshuffle by r, a (grouped) 1x1 conv and a channel permutation, as one convolution
    with kernel r and stride r (the same MACs; no unshuffled copy in memory)."""

    def __init__(self, conv: nn.Conv2d, stride: int, source: torch.Tensor | None = None):
        super().__init__()
        r = int(stride)
        dense = dense_grouped_1x1(conv)  # (C', C r^2), input channel c r^2 + i r + j
        cout, rows = dense.shape
        bias = conv.bias.detach().clone() if conv.bias is not None else dense.new_zeros(cout)
        if source is not None:
            dense, bias = dense[source], bias[source]
        self.conv = nn.Conv2d(rows // (r * r), cout, r, r)
        self.conv.weight.data = dense.reshape(cout, rows // (r * r), r, r).contiguous()
        self.conv.bias.data = bias
        self.conv.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
