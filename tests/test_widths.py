"""Per-layer widths: a student is described by its config down to every layer, and the zoo's
presets are exactly what they were (shapes, kMAC/px, config hashes)."""
from __future__ import annotations

import pytest
import torch

from codec.checkpoint import load_checkpoint, save_checkpoint
from codec.layers import GDN
from codec.registry import create_codec, list_codecs
from profiling.counter import profile_codec
from student.blocks import SimplifiedGDN
from student.zoo import TINY_WIDTHS, TRANSFORMS
from tests.conftest import tiny_config

#: config hashes of the presets measured on commit c70e0a2, before per-layer widths existed:
#: bitstreams and checkpoints made then must still match.
OLD_HASHES = {
    "student": "06956891e299383e", "student_dw_ckbd": "2d176109903d535d", "student_dw_msp": "5063a212229b7609",
    "student_shuffle_ckbd": "779927b883756d3a", "student_shuffle_msp": "ec9118c654e6af0b",
    "student_tiny": "614ae2550dc0f3c5", "vmuc": "f72b26e33128acab", "hyperprior": "5d618da5e7ef1898",
}
#: kMAC/px (encoder, decoder) at 768x512, measured by `python -m profiling.zoo` on commit c70e0a2.
OLD_KMAC = {"student_dw_ckbd": (1.815, 1.801), "student_shuffle_msp": (1.853, 1.840)}
RES = (768, 512)


def _kmac(model) -> tuple[float, float]:
    p = profile_codec(model.eval(), RES, wall_runs=0, strict=True)
    return p["encoder"]["kmac_per_px"], p["decoder"]["kmac_per_px"]


@pytest.mark.parametrize("name", sorted(OLD_HASHES))
def test_configs_and_hashes_of_existing_models_are_unchanged(name):
    model = create_codec(name)
    assert "layer_widths" not in model.config  # an unset optional key is not recorded
    assert model.config_hash().hex() == OLD_HASHES[name]


@pytest.mark.parametrize("name", sorted(OLD_KMAC))
def test_zoo_kmac_per_px_is_unchanged(name):
    enc, dec = _kmac(create_codec(name))
    assert (round(enc, 3), round(dec, 3)) == OLD_KMAC[name]


def test_entropy_parameter_width_per_step_changes_kmac_by_the_hand_count():
    """student_dw_ckbd, step 0 (anchors: half the 48x32 latent grid = 768 positions) with a
    hidden width of 64 instead of 128: per position (C_h + 0) * 64 + 64 * 2M fewer MACs,
    C_h = 128, M = 160: 64 * 128 + 64 * 320 = 28672, x 768 = 22,020,096 MACs over 768 x 512
    pixels = 0.056 kMAC/px less on each side."""
    base = _kmac(create_codec("student_dw_ckbd"))
    slim = _kmac(create_codec("student_dw_ckbd", layer_widths={"entropy_parameters": [64, 128]}))
    for side in (0, 1):
        assert base[side] - slim[side] == pytest.approx(22_020_096 / (768 * 512) / 1000, abs=1e-9)


def test_context_width_per_step_changes_kmac_by_the_hand_count():
    """Checkerboard step 1 with context width 32 instead of 64, on the stride-2 grid (24 x 16 =
    384 positions, n_in = n_out = 2 phases, M = 160): the grouped pointwise conv loses
    n_out * n_in * M * 32 = 20480 MACs per position (7,864,320), and the entropy-parameter
    head of step 1 reads 32 fewer channels at its 768 coded elements (32 * 128 each,
    3,145,728): 11,010,048 MACs = 0.028 kMAC/px."""
    base = _kmac(create_codec("student_dw_ckbd"))
    slim = _kmac(create_codec("student_dw_ckbd", layer_widths={"context": [None, 32]}))
    for side in (0, 1):
        assert base[side] - slim[side] == pytest.approx(11_010_048 / (768 * 512) / 1000, abs=1e-9)


PER_LAYER = {
    "g_a": [4, 6, 10, 14], "g_s": [6, 8, 12, 18], "g_a_blocks": [[], [3], [5], [7, 9]],
    "g_s_blocks": [[], [4], [5], [6, 11]], "h_a": 10, "h_a_blocks": [6], "h_s": 14, "h_s_blocks": [5],
    "hyper_features": 20, "entropy_parameters": [18, 22, 12, 16, 14], "context": [None, 6, 7, 8, 9],
}


def _per_layer_student():
    torch.manual_seed(0)
    return create_codec("student", transform=TRANSFORMS["inverted_residual"],
                        context=dict(kind="msp", width=8, kernel_size=3, levels=2, stages=2),
                        **TINY_WIDTHS, layer_widths=PER_LAYER)


def test_every_layer_width_is_taken_from_the_config():
    model = _per_layer_student()
    assert model.layer_widths().as_config() == PER_LAYER
    assert model.g_s[0][0].out_channels == 18 and model.g_a[1][0].conv_pw.out_channels == 4
    assert model.g_a[4][1].conv_pw.out_channels == 7  # H/16 analysis, first block's hidden width
    assert model.entropy_parameters.nets[2][0].out_channels == 12
    assert model.context.nets[4].conv_pw.out_channels == 2 * 9  # step 4 codes two phases (stages=2)


def test_shorthand_without_overrides_resolves_to_the_shared_widths():
    model = create_codec("student_shuffle_msp")
    lw = model.layer_widths()
    assert lw.g_a == lw.g_s == (24, 48, 96, 224)
    assert lw.h_a == lw.h_s == 96 and lw.hyper_features == 128
    assert lw.entropy_parameters == (128,) * 5 and lw.context == (None, 64, 64, 64, 64)
    assert lw.g_a_blocks[3] == (112, 112, 112)  # shuffle units: half the width, exp_ratio 1


def test_per_layer_checkpoint_rebuilds_from_config_and_round_trips(tmp_path):
    model = _per_layer_student().eval()
    save_checkpoint(tmp_path / "m.ckpt", model)
    blob = torch.load(tmp_path / "m.ckpt", weights_only=True)
    assert blob["config"]["layer_widths"] == PER_LAYER
    loaded, _ = load_checkpoint(tmp_path / "m.ckpt")
    x = torch.rand(1, 3, 70, 45)
    data = model.compress(x)
    assert loaded.compress(x) == data
    assert torch.equal(loaded.decompress(data), model.reconstruct(x)[0])


@pytest.mark.parametrize("layer_widths,match", [
    ({"g_z": [1]}, "unknown keys"),
    ({"g_a": [4, 8, 12]}, "need 4 widths"),
    ({"context": [8, 8, 8, 8, 8]}, "step 0 reads no decoded phases"),
    ({"entropy_parameters": [16, 0, 16, 16, 16]}, "whole number >= 1"),
    ({"g_a_blocks": [[], [], [3], [4]]}, "DepthwiseSeparable: the hidden width"),
    ({"g_s_blocks": [[], [], [], []]}, r"layer_widths.g_s_blocks\[2\]: the level has 1 blocks"),
])
def test_bad_layer_widths_are_refused_with_the_key_named(layer_widths, match):
    with pytest.raises(ValueError, match=match):
        create_codec("student_tiny", layer_widths=layer_widths)


@pytest.mark.parametrize("make", [lambda: GDN(6), lambda: GDN(6, inverse=True), lambda: SimplifiedGDN(6),
                                  lambda: SimplifiedGDN(6, diagonal=True)], ids=["gdn", "igdn", "sgdn", "sgdn_diag"])
def test_gdn_widths_follow_the_parameters_after_pruning(make):
    """Cut channels as a pruner does (beta[keep], gamma[keep][:, keep]); where the cut channels
    do not feed the kept ones the kept outputs are unchanged."""
    torch.manual_seed(0)
    gdn = make()
    keep, cut = torch.tensor([0, 2, 5]), torch.tensor([1, 3, 4])
    with torch.no_grad():
        gdn.gamma.add_(torch.rand_like(gdn.gamma))
        if gdn.gamma.shape[1] > 1:
            gdn.gamma[keep[:, None], cut[None, :]] = 0.0
    x = torch.randn(2, 6, 5, 5)
    expected = gdn(x)[:, keep]
    with torch.no_grad():
        gdn.beta = torch.nn.Parameter(gdn.beta[keep])
        g = gdn.gamma[keep]
        gdn.gamma = torch.nn.Parameter(g[:, keep] if g.shape[1] > 1 else g)
    assert gdn.channels == 3
    torch.testing.assert_close(gdn(x[:, keep]), expected)


@pytest.mark.parametrize("name", list_codecs())
def test_no_activation_works_in_place(name):
    """torch-pruning mis-traces in-place ops and feature-distillation hooks would see their
    captured tensors overwritten."""
    model = create_codec(name, **tiny_config(name))
    inplace = [n for n, m in model.named_modules() if getattr(m, "inplace", False)]
    assert not inplace, inplace
