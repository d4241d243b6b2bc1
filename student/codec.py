"""StudentCodec: a transform choice x a context choice x widths, behind the Codec contract.

::

    x (RGB) -> g_a -> y -> h_a -> z -> [factorized] -> z_hat -> h_s -> hyper features (H/16)
                      y -> [context schedule: steps k = 1..S]                      |
                             hyper[phases_k] + context_k(y_hat decoded so far) -> entropy_parameters_k
                             -> io.gaussian -> y_hat[phases_k]
               y_hat -> g_s -> x_hat (RGB)

Students keep the teacher's interface: RGB in, bitstream, RGB out, YCbCr 4:2:0 inside
(student.transforms). The context (student.context) is checkerboard (2 decoder passes) or
multi-scale progressive (``1 + levels * stages`` passes); one loop, :func:`code_latent`, serves
the encoder, the decoder and ``forward``, so the three cannot drift apart. Both coding passes
run on one thread (:func:`single_threaded`), so neither the bitstream nor the decoded image
depends on the thread count.

Config (all JSON-like, stored in checkpoints and hashed into bitstreams)::

    transform: {...}        student.transforms.TransformSpec   (student.zoo.TRANSFORMS)
    context: {...}          student.context.build_context      (student.zoo.CONTEXTS)
    widths: [w0, w1, w2, w3]  main-transform channels at H/2, H/4, H/8, H/16 (g_a and g_s)
    latent: M               channels of y (H/16)
    hyper: C_z              channels of z (H/64)
    hyper_width: int        channels of h_a / h_s at H/32
    entropy_width: int      hyper features at H/16 and hidden width of the entropy parameters
    layer_widths: {...}     optional per-layer, per-side overrides of the four above and of the
                            context width (student.widths.LayerWidths); absent: not recorded
"""
from __future__ import annotations

import copy

import torch

from codec.base import Codec, CodecOutput, Side, coding_threads
from codec.entropy import FactorizedPrior, GaussianConditional, quantize
from student.context import EntropyParameters, Lattice, build_context, code_latent, context_schedule, take_phases
from student.transforms import Analysis, HyperAnalysis, HyperSynthesis, Synthesis, TransformSpec
from student.blocks import InvertedResidual, ShuffleUnit, SubPixelUp
from student.widths import LEVELS, LayerWidths

__all__ = ["StudentCodec", "single_threaded"]


#: The passes run on one thread, also when called directly (profiler timing, tests):
#: codec.base.coding_threads explains why; compress/decompress use the same guard.
single_threaded = coding_threads


class StudentCodec(Codec):
    """Built from a ``transform`` dict, a ``context`` dict and widths (module docstring); the
    registry entries live in student.zoo."""

    parts = {
        "g_a": Side.ENCODER,
        "h_a": Side.ENCODER,
        "h_s": Side.BOTH,
        "context": Side.BOTH,
        "entropy_parameters": Side.BOTH,
        "g_s": Side.DECODER,
    }

    def __init__(self, transform: dict, context: dict, widths, latent: int = 128, hyper: int = 64,
                 hyper_width: int = 96, entropy_width: int = 128, layer_widths: dict | None = None):
        super().__init__()
        spec = TransformSpec.from_config(copy.deepcopy(dict(transform)))
        context = copy.deepcopy(dict(context))
        schedule = context_schedule(context)
        self.latent, self.hyper = int(latent), int(hyper)
        lw = LayerWidths.resolve(spec, [bool(s.known) for s in schedule], widths, hyper_width, entropy_width,
                                 context.get("width", 64), layer_widths)
        self.g_a = Analysis(spec, lw, self.latent)
        self.h_a = HyperAnalysis(spec, self.latent, lw, self.hyper)
        self.h_s = HyperSynthesis(spec, self.hyper, lw)
        self.context = build_context(context, self.latent, lw.context)
        self.entropy_parameters = EntropyParameters(self.context.schedule, self.latent, lw.hyper_features,
                                                    lw.context, lw.entropy_parameters)
        self.g_s = Synthesis(spec, lw, self.latent)
        self.entropy_bottleneck = FactorizedPrior(self.hyper)
        self.gaussian_conditional = GaussianConditional()
        # y is at H/16 and z at H/64; the context's coarsest grid divides y once more.
        self.stride = max(64, 16 * self.context.max_stride)

    def layer_widths(self) -> LayerWidths:
        """Every width as the layers now hold it, read from their shapes.

        For pruning, which changes layers in place: its result is recorded as the config's
        ``layer_widths``, from which the model is rebuilt (loading never reads widths from
        weights). On a model built from config it returns what the config resolved to.
        """
        def mid(block):
            if isinstance(block, InvertedResidual):
                return block.conv_pw.out_channels
            if isinstance(block, ShuffleUnit):
                return block.right[0].out_channels
            return None

        def up_width(up: SubPixelUp) -> int:
            return up.conv_dw.weight.shape[0] if isinstance(up.conv_dw, torch.nn.Conv2d) else \
                up.conv_pw.out_channels // (up.shuffle.upscale_factor ** 2)

        a_levels = list(self.g_a)[1:1 + LEVELS]
        g_a = [a_levels[0][0].conv_pw.out_channels] + [lvl[0].conv_pw.out_channels for lvl in a_levels[1:]]
        g_a_blocks = [[mid(b) for b in a_levels[0][2:]]] + [[mid(b) for b in lvl[1:]] for lvl in a_levels[1:]]
        s_levels = list(self.g_s)[:LEVELS]  # H/16 first
        g_s = [s_levels[0][0].out_channels] + [up_width(lvl[0]) for lvl in s_levels[1:]]
        g_s_blocks = [[mid(b) for b in s_levels[0][2:]]] + [[mid(b) for b in lvl[1:]] for lvl in s_levels[1:]]
        return LayerWidths(
            g_a=tuple(g_a), g_s=tuple(reversed(g_s)),
            g_a_blocks=tuple(map(tuple, g_a_blocks)), g_s_blocks=tuple(map(tuple, reversed(g_s_blocks))),
            h_a=self.h_a[0].conv_pw.out_channels, h_a_blocks=tuple(mid(b) for b in list(self.h_a)[1:-1]),
            h_s=up_width(self.h_s[0]), h_s_blocks=tuple(mid(b) for b in list(self.h_s)[1:-1]),
            hyper_features=up_width(self.h_s[-1]),
            entropy_parameters=tuple(net[0].out_channels for net in self.entropy_parameters.nets),
            context=tuple(self.context.step_widths()),
        )

    @property
    def gain_channels(self) -> int:
        return self.latent

    @property
    def steps(self) -> int:
        """Decoder passes of the context model (checkerboard 2, MSP 1 + levels * stages)."""
        return self.context.steps

    def _z_shape(self, size) -> torch.Size:
        return torch.Size((1, self.hyper, size[0] // 64, size[1] // 64))

    # -- training path ------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> CodecOutput:
        self.check_forward_input(x)
        y = self.analysis_latent("y", lambda: self.gain_y(self.g_a(x)))
        z = self.analysis_latent("z", lambda: self.h_a(y))
        z_hat = quantize(z, "noise" if self.training else "round")
        hyper = self.h_s(z_hat)
        likelihoods, scales, means = Lattice(), Lattice(), Lattice()

        def code_step(k, step, s, m):
            y_k = take_phases(y, step.stride, step.phases)
            if self.training:
                lik = self.gaussian_conditional.likelihood(quantize(y_k, "noise"), s, m)
                y_hat_k = quantize(y_k, "ste", m)
            else:
                y_hat_k = quantize(y_k, "round", m)
                lik = self.gaussian_conditional.likelihood(y_hat_k, s, m)
            likelihoods.put(step, lik)
            scales.put(step, s)
            means.put(step, m)
            return y_hat_k

        y_hat = code_latent(self.context, self.entropy_parameters, hyper, code_step)
        taps = {"y": y, "z": z, "hyper": hyper, "scales": scales.full(), "means": means.full()}
        x_hat = self.g_s(self.ungain_y(y_hat), taps)
        return {"x_hat": x_hat,
                "likelihoods": {"y": likelihoods.full(), "z": self.entropy_bottleneck.likelihood(z_hat)},
                "taps": taps}

    # -- coding passes ------------------------------------------------------------------------
    def encoder_pass(self, x, io):
        with single_threaded():
            self._encoder_pass(x, io)

    def decoder_pass(self, io, size):
        with single_threaded():
            return self._decoder_pass(io, size)

    def _encoder_pass(self, x, io):
        y = self.analysis_latent("y", lambda: self.gain_y(self.g_a(x)))
        z = self.analysis_latent("z", lambda: self.h_a(y))
        z_hat = io.factorized("z", self.entropy_bottleneck, z, self._z_shape(x.shape[-2:]))

        def code_step(k, step, scales, means):
            return io.gaussian("y", self.gaussian_conditional, take_phases(y, step.stride, step.phases), scales, means)

        code_latent(self.context, self.entropy_parameters, self.h_s(z_hat), code_step)

    def _decoder_pass(self, io, size):
        z_hat = io.factorized("z", self.entropy_bottleneck, None, self._z_shape(size))

        def code_step(k, step, scales, means):
            return io.gaussian("y", self.gaussian_conditional, None, scales, means)

        y_hat = code_latent(self.context, self.entropy_parameters, self.h_s(z_hat), code_step)
        return self.g_s(self.ungain_y(y_hat))
