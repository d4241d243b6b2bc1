"""``toderici``: the recurrent variable-rate codec of Toderici, Vincent, Johnston, Hwang, Minnen,
Shor, Covell, "Full resolution image compression with recurrent neural networks", CVPR 2017.

One model serves every rate: the encoder codes the residual of the previous iteration, so
running k iterations spends k x ``bits`` bits per 16x16 block before entropy coding, and a
stream of k + 1 iterations begins with the stream of k (progressive; :meth:`TodericiCodec.truncate`)::

    x' = x - 0.5,  r_0 = x'
    for t = 1..k:   b_t     = B(E_t(r_{t-1}))            in {-1, 1}^(bits x H/16 x W/16)
                    x'_t    = D_t(b_t)                    one-shot reconstruction (gamma = 0)
                    r_t     = x' - x'_t
    x_hat = x'_k + 0.5

E (``g_a``) and D (``g_s``) are convolutional recurrent networks whose hidden states carry
over the iterations (the subscript t); the cells are LSTM or GRU (``cell``). Layer shapes are
the paper's Figure 1 as its widely used PyTorch reference lays it out: E-Conv 3x3/2 to 64,
E-RNN 3x3/2 to 256, 512, 512 (hidden kernels 1x1); binarizer 1x1 to ``bits`` = 32 with tanh
and sign; D-Conv 1x1 to 512, D-RNN 3x3 to 512, 512, 256, 128 (hidden kernels 1x1, 1x1, 3x3,
3x3) each followed by depth-to-space x2, D-Conv 1x1 to 3 with tanh / 2.

Training (``loss=toderici``, :class:`codec.engine.ResidualL1`) unrolls every iteration with a
stochastic binarizer (b = 1 with probability (1 + t) / 2, gradient straight through) and
minimizes the paper's L1 of the residual summed over the iterations; coding uses sign(t).
The rate is the iteration count K in 1..``iterations`` (``compress(x, rate=K)``, written into
the header); the binary codes of each iteration are their own stream, entropy-coded with an
adaptive binary model per channel whose probabilities are stored in the stream
(``io.binary``, codec.coding). Cost grows with K: the decoder side runs ``g_s`` K times, the
encoder side ``g_a`` and the binarizer K times and ``g_s`` K - 1 times (the last
reconstruction is not needed to code anything); the decoder turns features into an image once,
at the last iteration, the encoder at each of its K - 1 (``RecurrentSynthesis.image``).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from codec.base import Codec, CodecOutput, Side
from codec.registry import register_codec

__all__ = ["ConvLSTMCell", "ConvGRUCell", "RecurrentAnalysis", "Binarizer", "RecurrentSynthesis", "TodericiCodec",
           "CELLS", "binarize"]


class ConvLSTMCell(nn.Module):
    """Convolutional LSTM (Shi et al. 2015): gates from a conv of the input (``kernel_size``,
    ``stride``) plus a conv of the hidden state (``hidden_kernel_size``); state (h, c).

    The hidden conv runs at every step, on zeros at the first, so every iteration costs the
    same MACs (executed MACs, docs/DESIGN.md rule 3)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, hidden_kernel_size: int = 1):
        super().__init__()
        self.out_chs = out_chs
        self.conv_ih = nn.Conv2d(in_chs, 4 * out_chs, kernel_size, stride, kernel_size // 2)
        self.conv_hh = nn.Conv2d(out_chs, 4 * out_chs, hidden_kernel_size, 1, hidden_kernel_size // 2, bias=False)
        with torch.no_grad():  # forget gate open at the start (Jozefowicz et al. 2015)
            self.conv_ih.bias[out_chs:2 * out_chs].fill_(1.0)

    def forward(self, x: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        xi = self.conv_ih(x)
        if state is None:
            h = c = xi.new_zeros(xi.shape[0], self.out_chs, xi.shape[-2], xi.shape[-1])
        else:
            h, c = state
        i, f, g, o = (xi + self.conv_hh(h)).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class ConvGRUCell(nn.Module):
    """Convolutional GRU (the paper's other cell): update and reset gates from the input and
    hidden convs, the candidate from the input and a conv of the reset hidden state; state (h,)."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int = 3, stride: int = 1, hidden_kernel_size: int = 1):
        super().__init__()
        self.out_chs = out_chs
        pad = hidden_kernel_size // 2
        self.conv_ih = nn.Conv2d(in_chs, 3 * out_chs, kernel_size, stride, kernel_size // 2)
        self.conv_hh = nn.Conv2d(out_chs, 2 * out_chs, hidden_kernel_size, 1, pad, bias=False)
        self.conv_hn = nn.Conv2d(out_chs, out_chs, hidden_kernel_size, 1, pad, bias=False)

    def forward(self, x: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        xz, xr, xn = self.conv_ih(x).chunk(3, dim=1)
        h = xz.new_zeros(xz.shape) if state is None else state[0]
        hz, hr = self.conv_hh(h).chunk(2, dim=1)
        z, r = torch.sigmoid(xz + hz), torch.sigmoid(xr + hr)
        n = torch.tanh(xn + self.conv_hn(r * h))
        h = (1 - z) * h + z * n
        return h, (h,)


CELLS = {"lstm": ConvLSTMCell, "gru": ConvGRUCell}


class RecurrentAnalysis(nn.Module):
    """E: a 3x3/2 conv, then three recurrent cells with 3x3/2 input kernels: H -> H/16."""

    def __init__(self, widths, cell: str):
        super().__init__()
        e0, e1, e2, e3 = widths
        Cell = CELLS[cell]
        self.conv = nn.Conv2d(3, e0, 3, 2, 1)
        self.rnn1 = Cell(e0, e1, 3, 2, 1)
        self.rnn2 = Cell(e1, e2, 3, 2, 1)
        self.rnn3 = Cell(e2, e3, 3, 2, 1)

    def forward(self, r: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        state = state or (None, None, None)
        x = self.conv(r)
        new = []
        for rnn, s in zip((self.rnn1, self.rnn2, self.rnn3), state):
            x, s = rnn(x, s)
            new.append(s)
        return x, tuple(new)


class Binarizer(nn.Module):
    """B: a 1x1 conv to ``bits`` channels and tanh; the sign is taken by the symbol I/O
    (coding) or :func:`binarize` (training)."""

    def __init__(self, in_chs: int, bits: int):
        super().__init__()
        self.conv = nn.Conv2d(in_chs, bits, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


def binarize(t: torch.Tensor, stochastic: bool) -> torch.Tensor:
    """{-1, 1} codes of t in [-1, 1]: sign (0 -> 1, as the coder's) or, for training, 1 with
    probability (1 + t) / 2 (unbiased: E[b] = t), with the gradient passed straight through."""
    if stochastic:
        b = torch.where(torch.rand_like(t) < (1 + t) / 2, 1.0, -1.0).to(t.dtype)
    else:
        b = torch.where(t >= 0, 1.0, -1.0).to(t.dtype)
    return t + (b - t).detach()


class RecurrentSynthesis(nn.Module):
    """D: a 1x1 conv, four recurrent cells each followed by depth-to-space x2 (H/16 -> H)
    (``forward``: features and the new state), then :meth:`image`, a 1x1 conv to RGB with
    tanh / 2 (the reconstruction of x - 0.5), computed only where an image is needed: at every
    iteration of the encoder (for the residual), at the last one of the decoder."""

    def __init__(self, bits: int, widths, cell: str):
        super().__init__()
        d0, d1, d2, d3, d4 = widths
        Cell = CELLS[cell]
        self.conv_in = nn.Conv2d(bits, d0, 1)
        self.rnn1 = Cell(d0, d1, 3, 1, 1)
        self.rnn2 = Cell(d1 // 4, d2, 3, 1, 1)
        self.rnn3 = Cell(d2 // 4, d3, 3, 1, 3)
        self.rnn4 = Cell(d3 // 4, d4, 3, 1, 3)
        self.conv_out = nn.Conv2d(d4 // 4, 3, 1)

    def forward(self, b: torch.Tensor, state: tuple | None) -> tuple[torch.Tensor, tuple]:
        state = state or (None, None, None, None)
        x = self.conv_in(b)
        new = []
        for rnn, s in zip((self.rnn1, self.rnn2, self.rnn3, self.rnn4), state):
            x, s = rnn(x, s)
            new.append(s)
            x = F.pixel_shuffle(x, 2)
        return x, tuple(new)

    def image(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv_out(features)) / 2


class TodericiCodec(Codec):
    """Recurrent residual codec; the rate is the iteration count K in 1..``iterations``."""

    parts = {"g_a": Side.ENCODER, "binarizer": Side.ENCODER, "g_s": Side.BOTH}
    stride = 16
    #: trained by codec.engine.ResidualL1 (loss=toderici), not by the rate-distortion loss
    training_objective = "residual_l1"
    #: K iterations cost K x one iteration (the profiler reports every K)
    cost_depends_on_rate = True

    def __init__(self, cell: str, iterations: int, bits: int, encoder_widths, decoder_widths):
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"toderici: cell={cell!r}; use one of {sorted(CELLS)}")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or not 1 <= iterations <= 255:
            raise ValueError(f"toderici: iterations={iterations!r} must be a whole number in 1..255 "
                             "(one bitstream stream per iteration; the header holds at most 255)")
        if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
            raise ValueError(f"toderici: bits={bits!r} must be a whole number >= 1 (binary codes per position)")
        if len(encoder_widths) != 4 or len(decoder_widths) != 5:
            raise ValueError(f"toderici: encoder_widths has 4 entries (E-Conv, E-RNN 1..3) and decoder_widths 5 "
                             f"(D-Conv, D-RNN 1..4), got {list(encoder_widths)} and {list(decoder_widths)}")
        if any(w % 4 for w in decoder_widths[1:]):
            raise ValueError(f"toderici: decoder_widths[1:] must be multiples of 4 (depth-to-space x2), "
                             f"got {list(decoder_widths)}")
        self.cell, self.iterations, self.bits = cell, iterations, bits
        self.g_a = RecurrentAnalysis(encoder_widths, cell)
        self.binarizer = Binarizer(encoder_widths[-1], bits)
        self.g_s = RecurrentSynthesis(bits, decoder_widths, cell)

    # -- rate: the iteration count ---------------------------------------------------------
    @property
    def rate_points(self) -> int:
        """The trained maximum number of iterations."""
        return self.iterations

    def check_rate(self, rate) -> float:
        """K, a whole number in 1..``iterations``, as the header stores it (None: every
        trained iteration)."""
        if rate is None:
            return float(self.iterations)
        k = None
        if not isinstance(rate, bool):
            try:
                value = float(rate)
            except (TypeError, ValueError):
                value = None
            if value is not None and value.is_integer():
                k = int(value)
        if k is None or not 1 <= k <= self.iterations:
            raise ValueError(f"{self.registry_name}: rate {rate!r} is not an iteration count; give a whole number "
                             f"K from 1 to {self.iterations} (the trained iterations; K x {self.bits} bits per "
                             f"16x16 block before entropy coding)")
        return float(k)

    def default_rate(self) -> float:
        return float(self.iterations)

    def trained_rates(self) -> list[float]:
        """Every iteration count 1..``iterations`` (validation and the bench measure each)."""
        return [float(k) for k in range(1, self.iterations + 1)]

    def bench_rates(self) -> list[float]:
        return self.trained_rates()

    def _active_iterations(self) -> int:
        """K for the pass being run: the ``at_rate`` value, or every trained iteration."""
        if self._rate is None:
            return self.iterations
        if torch.is_tensor(self._rate):
            raise ValueError(f"{self.registry_name}: one iteration count per batch is not supported; "
                             "run the batch inside `with model.at_rate(K):` with a number")
        return int(self._rate)

    def code_shape(self, size: tuple[int, int]) -> torch.Size:
        """Shape of one iteration's binary codes for a padded size (H, W)."""
        return torch.Size((1, self.bits, size[0] // 16, size[1] // 16))

    # -- passes ------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> CodecOutput:
        """Every iteration (or K inside ``at_rate(K)``); ``taps["x_hats"]`` stacks the K
        reconstructions (K x B x 3 x H x W) for the loss summed over iterations."""
        self.check_forward_input(x)
        target = x - 0.5
        r, enc, dec = target, None, None
        x_hats, codes = [], []
        for _ in range(self._active_iterations()):
            f, enc = self.g_a(r, enc)
            b = binarize(self.binarizer(f), stochastic=self.training)
            features, dec = self.g_s(b, dec)
            y = self.g_s.image(features)
            r = target - y
            x_hats.append(y + 0.5)
            codes.append(b)
        return {"x_hat": x_hats[-1], "likelihoods": {},
                "taps": {"x_hats": torch.stack(x_hats), "codes": torch.stack(codes)}}

    def encoder_pass(self, x, io):
        k = self._active_iterations()
        target = x - 0.5
        r, enc, dec = target, None, None
        shape = self.code_shape(x.shape[-2:])
        for t in range(1, k + 1):
            f, enc = self.g_a(r, enc)
            b = io.binary(f"b{t}", self.binarizer, self.binarizer(f), shape)
            if t < k:  # the last reconstruction codes nothing
                features, dec = self.g_s(b, dec)
                r = target - self.g_s.image(features)

    def decoder_pass(self, io, size):
        shape = self.code_shape(size)
        dec = None
        for t in range(1, self._active_iterations() + 1):
            b = io.binary(f"b{t}", self.binarizer, None, shape)
            features, dec = self.g_s(b, dec)
        return self.g_s.image(features) + 0.5

    # -- progressive streams ---------------------------------------------------------------
    def truncate(self, data: bytes, iterations) -> bytes:
        """The first ``iterations`` iterations of a bitstream of this model: byte for byte the
        stream ``compress(x, rate=iterations)`` writes (each iteration is its own stream with
        its own probabilities, and the encoder is causal), made without any neural work."""
        from codec.bitstream import BitstreamError, Header, pack, unpack
        from codec.coding import BitstreamDecoder

        header, payloads = unpack(data)
        if header.codec != self.registry_name or header.config_hash != self.config_hash():
            raise BitstreamError(f"bitstream was made by another codec or config ({header.codec!r}, hash "
                                 f"{header.config_hash.hex()}), this model is {self.registry_name!r} "
                                 f"(hash {self.config_hash().hex()})")
        have = int(self.check_rate(header.rate)) if header.rate is not None else 0
        k = int(self.check_rate(iterations))
        if k > have:
            raise ValueError(f"{self.registry_name}: the stream holds {have} iterations, cannot keep {k}")
        names = [s.name for s in header.streams]
        if names != [f"b{t}" for t in range(1, have + 1)]:
            raise BitstreamError(f"bitstream streams {names} are not the iterations b1..b{have}")
        reader = BitstreamDecoder(header.streams, payloads)
        shape = self.code_shape(self.padded_size(header.height, header.width))
        crc_k = 0
        for t in range(1, have + 1):
            reader.binary(f"b{t}", self.binarizer, None, shape)
            if t == k:
                crc_k = reader.symbol_crc
        reader.finish(header.symbol_crc)  # the whole stream is intact before any of it is kept
        kept = Header(header.codec, header.config_hash, header.height, header.width, tuple(header.streams[:k]),
                      crc_k, float(k), header.weights_hash)
        return pack(kept, payloads[:k])


@register_codec("toderici")
def toderici(cell: str = "lstm", iterations: int = 16, bits: int = 32,
             encoder_widths: tuple = (64, 256, 512, 512),
             decoder_widths: tuple = (512, 512, 512, 256, 128)) -> Codec:
    return TodericiCodec(cell, iterations, bits, list(encoder_widths), list(decoder_widths))
