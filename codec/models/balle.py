"""The Balle / Minnen baselines the field measures against.

* ``factorized``: Balle, Laparra, Simoncelli, "End-to-end optimized image compression",
  ICLR 2017 (GDN transforms, factorized prior on y).
* ``hyperprior``: Balle, Minnen, Singh, Hwang, Johnston, "Variational image compression with
  a scale hyperprior", ICLR 2018::

      x -> g_a -> y -> h_a(|y|) -> z -> [factorized] -> z_hat -> h_s -> sigma
                   y -> [N(0, sigma)] -> y_hat -> g_s -> x_hat

* ``mean_scale_hyperprior``: Minnen, Balle, Toderici, "Joint autoregressive and hierarchical
  priors for learned image compression", NeurIPS 2018, without the autoregressive context:
  h_s predicts both mu and sigma.

Layer shapes follow CompressAI's reference models, so ``hyperprior(N=128, M=192)`` costs
43.54 kMAC/px on the decoder side and 44.90 on the encoder side (docs/DESIGN.md sanity figure).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from codec.base import Codec, CodecOutput, Side
from codec.entropy import FactorizedPrior, GaussianConditional, quantize
from codec.layers import GDN, conv, deconv
from codec.registry import register_codec

__all__ = ["FactorizedPriorCodec", "ScaleHyperprior", "MeanScaleHyperprior"]


def analysis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(conv(3, N), GDN(N), conv(N, N), GDN(N), conv(N, N), GDN(N), conv(N, M))


def synthesis(N: int, M: int) -> nn.Sequential:
    return nn.Sequential(
        deconv(M, N), GDN(N, inverse=True), deconv(N, N), GDN(N, inverse=True),
        deconv(N, N), GDN(N, inverse=True), deconv(N, 3),
    )


class FactorizedPriorCodec(Codec):
    """Balle 2017: y coded with a learned factorized density, no side information."""

    parts = {"g_a": Side.ENCODER, "g_s": Side.DECODER}
    stride = 16

    def __init__(self, N: int, M: int):
        super().__init__()
        self.N, self.M = N, M
        self.g_a = analysis(N, M)
        self.g_s = synthesis(N, M)
        self.entropy_bottleneck = FactorizedPrior(M)

    def forward(self, x: torch.Tensor) -> CodecOutput:
        self.check_forward_input(x)
        y = self.analysis_latent("y", lambda: self.gain_y(self.g_a(x)))
        y_hat = quantize(y, "noise" if self.training else "round")
        x_hat = self.g_s(self.ungain_y(y_hat))
        return {"x_hat": x_hat, "likelihoods": {"y": self.entropy_bottleneck.likelihood(y_hat)}, "taps": {"y": y}}

    @property
    def gain_channels(self) -> int:
        return self.M

    def _latent_shape(self, size):
        return torch.Size((1, self.M, size[0] // 16, size[1] // 16))

    def encoder_pass(self, x, io):
        y = self.analysis_latent("y", lambda: self.gain_y(self.g_a(x)))
        io.factorized("y", self.entropy_bottleneck, y, self._latent_shape(x.shape[-2:]))

    def decoder_pass(self, io, size):
        y_hat = io.factorized("y", self.entropy_bottleneck, None, self._latent_shape(size))
        return self.g_s(self.ungain_y(y_hat))


class ScaleHyperprior(Codec):
    """Balle 2018: a hyper-latent z carries the scales of a zero-mean Gaussian for y."""

    parts = {"g_a": Side.ENCODER, "h_a": Side.ENCODER, "h_s": Side.BOTH, "g_s": Side.DECODER}
    stride = 64
    mean_scale = False

    def __init__(self, N: int, M: int):
        super().__init__()
        self.N, self.M = N, M
        self.g_a = analysis(N, M)
        self.g_s = synthesis(N, M)
        self.h_a = self._hyper_analysis(N, M)
        self.h_s = self._hyper_synthesis(N, M)
        self.entropy_bottleneck = FactorizedPrior(N)
        self.gaussian_conditional = GaussianConditional()

    @property
    def gain_channels(self) -> int:
        return self.M

    @staticmethod
    def _hyper_analysis(N, M):
        return nn.Sequential(conv(M, N, 3, 1), nn.ReLU(), conv(N, N), nn.ReLU(), conv(N, N))

    @staticmethod
    def _hyper_synthesis(N, M):
        return nn.Sequential(deconv(N, N), nn.ReLU(), deconv(N, N), nn.ReLU(),
                             conv(N, M, 3, 1), nn.ReLU())

    def _hyper_input(self, y):
        return torch.abs(y)

    def _params(self, z_hat):
        """-> (scales, means or None)"""
        return self.h_s(z_hat), None

    def _z_shape(self, size):
        return torch.Size((1, self.N, size[0] // 64, size[1] // 64))

    def forward(self, x: torch.Tensor) -> CodecOutput:
        self.check_forward_input(x)
        y = self.analysis_latent("y", lambda: self.gain_y(self.g_a(x)))
        z = self.analysis_latent("z", lambda: self.h_a(self._hyper_input(y)))
        z_hat = quantize(z, "noise" if self.training else "round")
        scales, means = self._params(z_hat)
        if self.training:
            y_for_rate = quantize(y, "noise")
            y_hat = quantize(y, "ste", means) if self.mean_scale else y_for_rate
        else:
            y_hat = y_for_rate = quantize(y, "round", means)
        x_hat = self.g_s(self.ungain_y(y_hat))
        likelihoods = {"y": self.gaussian_conditional.likelihood(y_for_rate, scales, means),
                       "z": self.entropy_bottleneck.likelihood(z_hat)}
        taps = {"y": y, "z": z, "scales": scales}
        if means is not None:
            taps["means"] = means
        return {"x_hat": x_hat, "likelihoods": likelihoods, "taps": taps}

    def encoder_pass(self, x, io):
        y = self.analysis_latent("y", lambda: self.gain_y(self.g_a(x)))
        z = self.analysis_latent("z", lambda: self.h_a(self._hyper_input(y)))
        z_hat = io.factorized("z", self.entropy_bottleneck, z, self._z_shape(x.shape[-2:]))
        scales, means = self._params(z_hat)
        io.gaussian("y", self.gaussian_conditional, y, scales, means)

    def decoder_pass(self, io, size):
        z_hat = io.factorized("z", self.entropy_bottleneck, None, self._z_shape(size))
        scales, means = self._params(z_hat)
        y_hat = io.gaussian("y", self.gaussian_conditional, None, scales, means)
        return self.g_s(self.ungain_y(y_hat))


class MeanScaleHyperprior(ScaleHyperprior):
    """Minnen 2018's hyperprior: h_s predicts mean and scale; y is quantized around the mean."""

    mean_scale = True

    @staticmethod
    def _hyper_analysis(N, M):
        return nn.Sequential(conv(M, N, 3, 1), nn.LeakyReLU(), conv(N, N), nn.LeakyReLU(),
                             conv(N, N))

    @staticmethod
    def _hyper_synthesis(N, M):
        return nn.Sequential(deconv(N, M), nn.LeakyReLU(), deconv(M, M * 3 // 2),
                             nn.LeakyReLU(), conv(M * 3 // 2, M * 2, 3, 1))

    def _hyper_input(self, y):
        return y

    def _params(self, z_hat):
        scales, means = self.h_s(z_hat).chunk(2, dim=1)
        return scales, means


@register_codec("factorized")
def factorized(N: int = 128, M: int = 192) -> Codec:
    return FactorizedPriorCodec(N, M)


@register_codec("hyperprior")
def hyperprior(N: int = 128, M: int = 192) -> Codec:
    return ScaleHyperprior(N, M)


@register_codec("mean_scale_hyperprior")
def mean_scale_hyperprior(N: int = 128, M: int = 192) -> Codec:
    return MeanScaleHyperprior(N, M)
