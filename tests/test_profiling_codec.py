"""profile_codec on real codecs: the docs/DESIGN.md sanity figures, padding, parts and calls, and
a real decompress agreeing with the traced decoder pass."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from codec.base import Codec, Side
from codec.entropy import GaussianConditional
from codec.registry import create_codec, list_codecs
from profiling import ProfileError, profile_codec

SIDE_KEYS = {"kmac_per_px": float, "effective_kmac_per_px": float, "elementwise_kops_per_px": float, "params": int,
             "threads": int, "parts": dict}


class TwoStepContext(Codec):
    """Toy codec with a context part run once per half of the latent, on both sides (the way a
    checkerboard context runs twice): y = g_a(x) split in two channel halves; half 2 is coded
    with scales predicted by ``context`` from decoded half 1, half 1 from zeros."""

    parts = {"g_a": Side.ENCODER, "context": Side.BOTH, "g_s": Side.DECODER}
    stride = 4

    def __init__(self, M: int = 4, outside_conv: bool = False):
        super().__init__()
        self.M = M
        self.g_a = nn.Conv2d(3, 2 * M, 4, stride=4)
        self.context = nn.Conv2d(M, M, 3, padding=1)
        self.g_s = nn.ConvTranspose2d(2 * M, 3, 4, stride=4)
        self.gaussian_conditional = GaussianConditional()
        self.outside = nn.Parameter(torch.rand(3, 3, 1, 1)) if outside_conv else None

    def _scales(self, previous):
        return F.softplus(self.context(previous)) + 0.11

    def encoder_pass(self, x, io):
        y1, y2 = self.g_a(x).chunk(2, dim=1)
        y1_hat = io.gaussian("y", self.gaussian_conditional, y1, self._scales(torch.zeros_like(y1)))
        io.gaussian("y", self.gaussian_conditional, y2, self._scales(y1_hat))

    def decoder_pass(self, io, size):
        shape = (1, self.M, size[0] // 4, size[1] // 4)
        y1_hat = io.gaussian("y", self.gaussian_conditional, None, self._scales(torch.zeros(shape)))
        y2_hat = io.gaussian("y", self.gaussian_conditional, None, self._scales(y1_hat))
        x_hat = self.g_s(torch.cat([y1_hat, y2_hat], dim=1))
        if self.outside is not None:  # a layer that is not a part: its MACs still count
            x_hat = F.conv2d(x_hat, self.outside)
        return x_hat


@pytest.fixture(scope="module")
def hyperprior():
    torch.manual_seed(0)
    return create_codec("hyperprior", N=128, M=192).eval()


@pytest.mark.parametrize("resolution", [(768, 512), (1280, 768)], ids=lambda r: f"{r[0]}x{r[1]}")
def test_hyperprior_sanity_figures(hyperprior, resolution):
    profile = profile_codec(hyperprior, resolution, wall_runs=0, strict=True)
    assert profile["decoder"]["kmac_per_px"] == pytest.approx(43.54, rel=1e-3)
    assert profile["encoder"]["kmac_per_px"] == pytest.approx(44.90, rel=1e-3)
    # the hand figure, exactly: g_a = g_s = 42176, h_a = h_s = 1364 MAC/px at any multiple of 64
    enc, dec = profile["encoder"]["parts"], profile["decoder"]["parts"]
    assert enc["g_a"]["kmac_per_px"] == pytest.approx(42.176) and dec["g_s"]["kmac_per_px"] == pytest.approx(42.176)
    assert enc["h_a"]["kmac_per_px"] == pytest.approx(1.364) and enc["h_s"]["kmac_per_px"] == pytest.approx(1.364)
    assert set(enc) == {"g_a", "h_a", "h_s"} and set(dec) == {"h_s", "g_s"}
    assert all(p["calls"] == 1 for p in [*enc.values(), *dec.values()])
    assert profile["padding_share"] == 0 and profile["padded_resolution"] == list(resolution)
    for side in ("encoder", "decoder"):
        assert profile[side]["effective_kmac_per_px"] == pytest.approx(profile[side]["kmac_per_px"])
        assert profile[side]["unattributed_kmac_per_px"] == pytest.approx(0, abs=1e-12)
        assert profile[side]["elementwise_kops_per_px"] > 0  # GDN's (r)sqrt and products, rounding, ReLU
    assert profile["problems"] == []


def test_hyperprior_at_a_size_that_needs_padding(hyperprior):
    w, h = 1000, 664
    profile = profile_codec(hyperprior, (w, h), wall_runs=0, strict=True)
    wp, hp = 1024, 704  # next multiples of the stride, 64
    assert profile["padded_resolution"] == [wp, hp]
    share = 1 - (w * h) / (wp * hp)
    assert profile["padding_share"] == pytest.approx(share)
    # every layer's cost scales with the padded area: the figure is the 768x512 one x Hp Wp / (H W)
    assert profile["encoder"]["kmac_per_px"] == pytest.approx(44.904 * wp * hp / (w * h), rel=1e-9)
    assert profile["decoder"]["kmac_per_px"] == pytest.approx(43.540 * wp * hp / (w * h), rel=1e-9)
    for side in ("encoder", "decoder"):
        assert profile[side]["padding_kmac_per_px"] == pytest.approx(profile[side]["kmac_per_px"] * share)


def _conv_macs_of(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = fn()
    flops = counter.get_flop_counts()["Global"]
    return sum(n for op, n in flops.items() if "convolution" in str(op)) // 2, out


def test_the_padding_counted_is_the_padding_a_real_compress_computes(smooth_image):
    """At 1000x664 the real compress/decompress run exactly the convolutions the profile counts
    (the factorized prior's coding table is entropy coding, rule 5, hence convs only)."""
    torch.manual_seed(0)
    codec = create_codec("hyperprior", N=8, M=12).eval()
    w, h = 1000, 664
    x = smooth_image(h, w)
    profile = profile_codec(codec, image=x, wall_runs=0, strict=True)
    enc_macs, data = _conv_macs_of(lambda: codec.compress(x))
    dec_macs, x_hat = _conv_macs_of(lambda: codec.decompress(data))
    assert x_hat.shape == x.shape
    assert profile["encoder"]["kmac_per_px"] == pytest.approx(enc_macs / (w * h) / 1000, rel=1e-12)
    assert profile["decoder"]["kmac_per_px"] == pytest.approx(dec_macs / (w * h) / 1000, rel=1e-12)


def test_a_part_called_twice_counts_twice():
    M, h, w = 4, 32, 48
    profile = profile_codec(TwoStepContext(M), (w, h), wall_runs=0, strict=True)
    context_macs = M * M * 9 * (h // 4) * (w // 4)
    for side in ("encoder", "decoder"):
        part = profile[side]["parts"]["context"]
        assert part["calls"] == 2
        assert part["kmac_per_px"] * 1000 * h * w == pytest.approx(2 * context_macs)
    g_a = 2 * M * 3 * 16 * (h // 4) * (w // 4)
    g_s = 2 * M * 3 * 16 * (h // 4) * (w // 4)  # transposed: per input position
    assert profile["encoder"]["kmac_per_px"] * 1000 * h * w == pytest.approx(g_a + 2 * context_macs)
    assert profile["decoder"]["kmac_per_px"] * 1000 * h * w == pytest.approx(g_s + 2 * context_macs)


def _count_calls(codec: Codec, fn) -> dict[str, int]:
    calls = {name: 0 for name in codec.parts}
    hooks = [getattr(codec, name).register_forward_pre_hook(lambda m, a, name=name: calls.__setitem__(name, calls[name] + 1))
             for name in codec.parts]
    try:
        fn()
    finally:
        for hook in hooks:
            hook.remove()
    return calls


@pytest.mark.parametrize("make", [lambda: TwoStepContext(4), lambda: create_codec("hyperprior", N=8, M=12)],
                         ids=["two_step_context", "hyperprior"])
def test_real_decompress_calls_each_part_as_often_as_the_trace_says(make, smooth_image):
    torch.manual_seed(0)
    codec = make().eval()
    codec.registry_name = getattr(codec, "registry_name", "unregistered")
    x = smooth_image(40, 72)
    profile = profile_codec(codec, image=x, wall_runs=0, strict=True)
    data = codec.compress(x)
    real = _count_calls(codec, lambda: codec.decompress(data))
    traced = {name: profile["decoder"]["parts"].get(name, {"calls": 0})["calls"] for name in codec.parts}
    assert real == traced
    assert sum(real.values()) > 0
    real_encoder = _count_calls(codec, lambda: codec.compress(x))
    assert real_encoder == {name: profile["encoder"]["parts"].get(name, {"calls": 0})["calls"] for name in codec.parts}


def test_macs_outside_any_part_still_count_and_are_reported():
    M, h, w = 4, 16, 16
    plain = profile_codec(TwoStepContext(M), (w, h), wall_runs=0, strict=True)
    outside = profile_codec(TwoStepContext(M, outside_conv=True), (w, h), wall_runs=0, strict=True)
    extra = 3 * 3 * h * w / (1000 * h * w)
    assert outside["decoder"]["kmac_per_px"] == pytest.approx(plain["decoder"]["kmac_per_px"] + extra)
    assert outside["decoder"]["unattributed_kmac_per_px"] == pytest.approx(extra)
    assert any("outside any part" in n for n in outside["notes"])


def test_a_part_run_on_an_undeclared_side_is_reported():
    class Mislabelled(TwoStepContext):
        parts = {"g_a": Side.ENCODER, "context": Side.ENCODER, "g_s": Side.DECODER}

    profile = profile_codec(Mislabelled(4), (16, 16), wall_runs=0, strict=True)
    assert profile["decoder"]["parts"]["context"]["calls"] == 2  # counted where it really ran
    assert any("'context' ran 2x on the decoder side but is declared encoder" in n for n in profile["notes"])


def test_params_per_side_count_each_module_once():
    codec = create_codec("hyperprior", N=8, M=12)
    profile = profile_codec(codec, (64, 64), wall_runs=0)

    def n(module):
        return sum(p.numel() for p in module.parameters())

    assert profile["encoder"]["params"] == n(codec.g_a) + n(codec.h_a) + n(codec.h_s)
    assert profile["decoder"]["params"] == n(codec.h_s) + n(codec.g_s)


def test_profile_shape_and_wall_time():
    codec = create_codec("hyperprior", N=8, M=12)
    profile = profile_codec(codec, (70, 50), wall_runs=2)
    assert profile["codec"] == "hyperprior" and profile["resolution"] == [70, 50]
    assert profile["padded_resolution"] == [128, 64]
    for side in ("encoder", "decoder"):
        s = profile[side]
        for key, kind in SIDE_KEYS.items():
            assert isinstance(s[key], kind), (side, key)
        assert s["wall_ms"] > 0 and s["threads"] == torch.get_num_threads()
        assert s["entropy_coding_ms"] is not None and s["entropy_coding_ms"] >= 0
        for part in s["parts"].values():
            assert isinstance(part["kmac_per_px"], float) and isinstance(part["calls"], int)


def test_profile_leaves_the_training_flag_alone():
    codec = create_codec("hyperprior", N=8, M=12).train()
    profile_codec(codec, (64, 64), wall_runs=0)
    assert codec.training


@pytest.mark.parametrize("name", list_codecs())
def test_every_registered_codec_uses_only_classified_ops(name, smooth_image):
    """Strict mode on every codec of the registry, at its registered (full) widths on a small
    image that needs padding: an op nobody classified, or work escaping the trace, fails here."""
    torch.manual_seed(0)
    codec = create_codec(name)
    profile = profile_codec(codec, image=smooth_image(40, 72), wall_runs=0, strict=True)
    for side in ("encoder", "decoder"):
        assert profile[side]["kmac_per_px"] > 0
        assert profile[side]["unattributed_kmac_per_px"] == pytest.approx(0, abs=1e-9), \
            f"{name}: MACs outside any declared part on the {side} side"
        assert all(p["calls"] > 0 for p in profile[side]["parts"].values())
    assert codec.training  # profiling leaves the training flag as it found it


def test_strict_profile_raises_on_unclassified_op():
    class Sorting(TwoStepContext):
        def _scales(self, previous):
            return torch.sort(F.softplus(self.context(previous)), dim=1).values + 0.11

    with pytest.raises(ProfileError, match="aten::sort"):
        profile_codec(Sorting(4), (16, 16), wall_runs=0, strict=True)
    profile = profile_codec(Sorting(4), (16, 16), wall_runs=0, strict=False)
    assert any("aten::sort" in p for p in profile["problems"])
