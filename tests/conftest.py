"""Shared fixtures: tiny codecs and tiny images, all on the CPU."""
from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
# Tiny models gain nothing from threads, and on a shared 2-core machine threads only contend.
torch.set_num_threads(1)

#: Tiny architecture configs used wherever a test needs "every registered codec".
#: A codec registered without an entry here (or a *_tiny preset) fails test_every_codec_has_tiny_config.
TINY_CONFIGS: dict[str, dict] = {
    "factorized": {"N": 8, "M": 12},
    "hyperprior": {"N": 8, "M": 12},
    "mean_scale_hyperprior": {"N": 8, "M": 12},
    "vmuc": {"luma_channels": 16, "chroma_channels": 8, "hyper_channels": 8, "luma_analysis_channels": [8, 8, 8],
             "luma_synthesis_channels": [8, 8, 8], "chroma_analysis_channels": [8, 8],
             "chroma_synthesis_channels": [8, 8], "hyper_synthesis_channels": [16, 16], "hyper_feature_channels": 16,
             "context_channels": 16, "fusion_channels": [16, 16]},
    "toderici": {"iterations": 2, "bits": 4, "encoder_widths": [4, 8, 8, 8], "decoder_widths": [8, 8, 8, 8, 8]},
}


def tiny_config(name: str) -> dict | None:
    if name in TINY_CONFIGS:
        return TINY_CONFIGS[name]
    if name.endswith("tiny"):
        return {}
    if name.startswith("student"):
        from student.zoo import TINY_WIDTHS

        return dict(TINY_WIDTHS)
    return None


def live_latents(model):
    """Random weights give latents within +-0.5, so every symbol is zero and encoder and decoder
    cannot disagree about any: scale the last conv / linear of every encoder-only part (20x for
    the analysis transforms, 3x for the hyper analysis) so that the symbols span several
    integers. Callers check that they do."""
    layers = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    with torch.no_grad():
        for part in model.parts_on("encoder"):
            if part in model.parts_on("decoder"):
                continue
            last = [m for m in getattr(model, part).modules() if isinstance(m, layers)][-1]
            gain = 3.0 if part.startswith("h_") else 20.0
            last.weight.mul_(gain)
            if last.bias is not None:
                last.bias.mul_(gain)
    return model


@pytest.fixture
def smooth_image():
    """A smooth random image (codecs behave on it like on photos, unlike on white noise)."""

    def make(h: int, w: int, seed: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(1, 3, max(1, h // 8 + 1), max(1, w // 8 + 1), generator=g)
        x = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
        return (x + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)

    return make


@pytest.fixture(scope="session")
def teacher_profile() -> dict:
    """The teacher ``vmuc`` (its registry defaults, as conf/codec/vmuc.yaml) profiled by the
    profiler at 768x512, strict, once per session: what ``python -m profiling.gate teacher=vmuc``
    compares students with (about 6 s on one core)."""
    from codec.registry import create_codec
    from profiling import profile_codec

    torch.manual_seed(0)
    return profile_codec(create_codec("vmuc"), (768, 512), wall_runs=0, strict=True)
