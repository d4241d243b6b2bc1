"""Baselines from the seed papers; importing this module registers them."""
from codec.models.balle import FactorizedPriorCodec, ScaleHyperprior, MeanScaleHyperprior  # noqa: F401
from codec.models.toderici import TodericiCodec  # noqa: F401
