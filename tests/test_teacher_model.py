"""The VMuC-like teacher (teacher.models): real bitstreams, stage structure, forward/decode
agreement, and the decoder-side compute budget of docs/DESIGN.md ("Teacher (VMuC-like)")."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from codec.base import Side
from codec.coding import SymbolReplay
from codec.image import crop, pad_to_stride
from codec.registry import create_codec, list_codecs
from teacher.models import STAGE_OFFSETS, VMuC, merge_2x2, split_2x2


def _image(h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth image plus noise: gives the random-weight model latents of varied size."""
    g = torch.Generator().manual_seed(seed)
    yy = torch.linspace(0, 1, h).view(1, 1, h, 1)
    xx = torch.linspace(0, 1, w).view(1, 1, 1, w)
    base = torch.cat((yy * xx.expand(1, 1, h, w), (1 - yy).expand(1, 1, h, w), xx.expand(1, 1, h, w)), dim=1)
    return (0.8 * base + 0.2 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def _with_live_latents(model: VMuC) -> VMuC:
    """Random weights give latents within +-0.3: every symbol would round to zero and the tests
    would only exercise zeros. Scaling the last layers of g_a, h_a and the fusion makes y, z
    and the means span several integers, and the scales spread over the table."""
    with torch.no_grad():
        for layer, gain in ((model.g_a_y[-1], 40.0), (model.g_a_uv[-1], 40.0), (model.h_a[-1], 3.0)):
            layer.weight.mul_(gain)
            layer.bias.mul_(gain)
        for net in model.entropy_parameters.stage_nets:
            net[-1].weight.mul_(10.0)
    return model


@pytest.fixture(scope="module")
def tiny() -> VMuC:
    torch.manual_seed(0)
    return _with_live_latents(create_codec("vmuc_tiny")).eval()


def test_registered_with_declared_parts():
    assert {"vmuc", "vmuc_tiny"} <= set(list_codecs("vmuc*"))
    model = create_codec("vmuc_tiny")
    assert model.parts_on("decoder") == ["h_s", "context", "entropy_parameters", "g_s_y", "g_s_uv"]
    assert model.parts_on("encoder") == ["g_a_y", "g_a_uv", "h_a", "h_s", "context", "entropy_parameters"]
    assert model.parts["context"] is Side.BOTH


def test_context_effective_macs_are_measured_not_declared():
    """The context convolves decoded sub-grids only, so the profiler's effective count (from
    masks and needed positions, as for every codec) equals the executed one; no module of the
    teacher declares a fraction of its own."""
    from profiling.counter import profile_codec

    model = create_codec("vmuc_tiny").eval()
    assert not any(hasattr(m, "effective_fraction") for m in model.modules())
    part = profile_codec(model, (128, 128), wall_runs=0, strict=True)["decoder"]["parts"]["context"]
    assert part["calls"] == 4 and part["kmac_per_px"] > 0
    assert part["effective_kmac_per_px"] == part["kmac_per_px"]


def test_config_overrides_widths():
    model = create_codec("vmuc_tiny", luma_channels=12, luma_synthesis_channels=[6, 6, 4])
    assert model.config["luma_channels"] == 12 and model.config["luma_synthesis_channels"] == [6, 6, 4]
    assert model.g_s_y[-1].in_channels == 4 and model.g_a_y[-1].out_channels == 12


def test_bad_width_list_names_the_key():
    with pytest.raises(ValueError, match="luma_synthesis_channels"):
        create_codec("vmuc_tiny", luma_synthesis_channels=[8, 8])


def test_stages_cover_every_latent_position_once():
    grid = torch.arange(2 * 3 * 8 * 6, dtype=torch.float32).reshape(2, 3, 8, 6)
    hits = torch.zeros(8, 6, dtype=torch.long)
    for a, b in STAGE_OFFSETS:
        hits[a::2, b::2] += 1
    assert torch.equal(hits, torch.ones_like(hits))
    assert len(set(STAGE_OFFSETS)) == 4
    subsets = split_2x2(grid)
    assert [tuple(s.shape) for s in subsets] == [(2, 3, 4, 3)] * 4
    assert torch.equal(merge_2x2(subsets), grid)
    assert sorted(torch.cat([s.flatten() for s in subsets]).tolist()) == grid.flatten().tolist()


@pytest.mark.parametrize("size", [(64, 64), (100, 37), (1, 1), (130, 66)])
def test_decompress_equals_encoder_reconstruction(tiny, size):
    x = _image(*size, seed=size[0] * 1000 + size[1])
    data = tiny.compress(x)
    decoded = tiny.decompress(data)
    expected, recorder = tiny.reconstruct(x)
    assert decoded.shape == (1, 3, *size)
    assert torch.equal(decoded, expected)
    assert [(c.stream, c.kind) for c in recorder.calls] == [("z", "factorized")] + [("y", "gaussian")] * 4
    assert any(c.symbols.any() for c in recorder.calls[1:]), "all-zero symbols test nothing"


def test_eval_forward_matches_decode(tiny):
    x = _image(100, 130, seed=1)
    xp, _ = pad_to_stride(x, tiny.stride)
    with torch.no_grad():
        out = tiny(xp)
    decoded = tiny.decompress(tiny.compress(x))
    assert torch.allclose(crop(out["x_hat"], (100, 130)).clamp(0, 1), decoded, atol=1e-4)
    h, w = xp.shape[-2:]
    taps = out["taps"]
    assert taps["x_hat_ycbcr"].shape == (1, 3, h, w) and taps["x_hat_cbcr"].shape == (1, 2, h // 2, w // 2)
    assert taps["y"].shape == (1, 24, h // 16, w // 16) and taps["z"].shape == (1, 8, h // 64, w // 64)
    assert out["likelihoods"]["y"].shape == taps["y"].shape


def test_training_forward_backpropagates():
    model = create_codec("vmuc_tiny").train()
    out = model(_image(64, 128, seed=2))
    bits = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
    (bits + out["x_hat"].square().sum()).backward()
    for part in model.parts:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in getattr(model, part).parameters()), part


def test_decoder_calls_context_and_fusion_once_per_stage(tiny):
    data = tiny.compress(_image(64, 64))
    calls = {"context": [], "entropy_parameters": []}
    handles = [getattr(tiny, name).register_forward_hook(lambda m, args, out, name=name: calls[name].append(args[-1]))
               for name in calls]
    try:
        tiny.decompress(data)
    finally:
        for h in handles:
            h.remove()
    assert calls == {"context": [0, 1, 2, 3], "entropy_parameters": [0, 1, 2, 3]}


def test_decoder_side_kmac_per_px_is_vmuc_first_stage():
    """docs/DESIGN.md: the teacher's decoder side lands at 69 +- 5 kMAC/px at 768x512."""
    fvcore = pytest.importorskip("fvcore.nn")
    model = create_codec("vmuc").eval()
    height, width = 512, 768

    class DecoderSide(torch.nn.Module):
        def __init__(self, codec):
            super().__init__()
            self.codec = codec

        def forward(self, dummy):
            return self.codec.decoder_pass(SymbolReplay.zeros(), (height, width))

    with torch.no_grad():
        fca = fvcore.FlopCountAnalysis(DecoderSide(model), (torch.zeros(1),))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        kmac = fca.by_operator()["conv"] / (height * width) / 1000
    assert 64 <= kmac <= 74, kmac


@pytest.mark.parametrize("name", ["vmuc", "vmuc_tiny"])
def test_hydra_config_lists_every_keyword_with_its_default(name):
    omegaconf = pytest.importorskip("omegaconf")
    from codec.registry import resolve_config

    node = omegaconf.OmegaConf.to_container(
        omegaconf.OmegaConf.load(Path(__file__).parents[1] / "conf" / "codec" / f"{name}.yaml"))
    assert node.pop("name") == name
    assert node.pop("rates") is None  # variable rate (codec.gain): off, and then not recorded in the config
    assert node == resolve_config(name, {})
