"""Students (student/): exact round trips, decoder pass counts, the kMAC/px budget, and every
block's MAC count checked by hand.

MACs are counted with fvcore as the profiler does (executed MACs of ``encoder_pass`` with a
SymbolRecorder and of ``decoder_pass`` with the recorder's replay, per pixel of the image
before padding); the official gate is ``python -m profiling.gate codec=NAME teacher=vmuc``.
"""
from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch
import torch.nn as nn
from fvcore.nn import FlopCountAnalysis

from codec.coding import BitstreamDecoder, SymbolRecorder
from codec.image import crop, pad_to_stride
from codec.registry import create_codec, list_codecs
from student.blocks import (DepthwiseSeparable, InvertedResidual, PixelUnshuffleDown, ShuffleUnit, SimplifiedGDN,
                            SubPixelUp, channel_shuffle)
from student.codec import StudentCodec, single_threaded
from student.context import (EntropyParameters, Lattice, PhaseContext, checkerboard_schedule, progressive_schedule,
                             take_phases)
from student.zoo import CONTEXTS, TINY_WIDTHS, TRANSFORMS

STUDENTS = list_codecs("student*")
PRESETS = list_codecs("student_*")
SIZES = [(64, 64), (100, 37), (1, 1), (257, 129)]

#: docs/DESIGN.md: teacher/student >= 35 on both sides, the teacher's kMAC/px at 768x512 as the
#: profiler counts them (the ``teacher_profile`` fixture, tests/conftest.py).
TARGET = 35.0
SIDES = ("encoder", "decoder")

logging.getLogger("fvcore").setLevel(logging.ERROR)


def _smooth(h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 8 + 1, w // 8 + 1, generator=g)
    x = nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(1, 3, h, w, generator=g)).clamp(0, 1)


def _model(name: str, **config) -> StudentCodec:
    torch.manual_seed(0)
    return create_codec(name, **config).eval()


# ------------------------------------------------------------------------- MAC counting helper
def _macs(module: nn.Module, *inputs) -> int:
    """fvcore's executed MACs; interpolation is not a MAC (docs/DESIGN.md rule 1)."""
    with torch.no_grad():
        fca = FlopCountAnalysis(module, inputs).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        fca.set_op_handle("aten::upsample_bilinear2d", None)
        return int(fca.total())


class _KeepIO:
    """Symbol I/O proxy keeping every tensor given to or returned by the coder as a trace
    output: the coder reads them through .numpy(), which the tracer cannot follow."""

    def __init__(self, io):
        self.io, self.kept = io, []

    def factorized(self, stream, prior, z, shape):
        out = self.io.factorized(stream, prior, z, shape)
        self.kept += [t for t in (z, out) if t is not None]
        return out

    def gaussian(self, stream, conditional, y, scales, means=None):
        out = self.io.gaussian(stream, conditional, y, scales, means)
        self.kept += [t for t in (y, scales, means, out) if t is not None]
        return out


class _Pass(nn.Module):
    def __init__(self, model, side, xp, recorder=None):
        super().__init__()
        self.model, self.side, self.xp, self.recorder = model, side, xp, recorder

    def forward(self, unused):
        if self.side == "encoder":
            io = _KeepIO(SymbolRecorder())
            self.model.encoder_pass(self.xp, io)
            return tuple(io.kept)
        io = _KeepIO(self.recorder.replay())
        return (self.model.decoder_pass(io, tuple(self.xp.shape[-2:])), *io.kept)


def side_macs(model: StudentCodec, height: int = 512, width: int = 768) -> dict[str, FlopCountAnalysis]:
    """fvcore analyses of both coding passes on a ``height`` x ``width`` image."""
    model.eval()
    x = _smooth(height, width)
    xp, _ = pad_to_stride(x, model.stride)
    recorder, _ = model.encode_symbols(x)
    out = {}
    for side in ("encoder", "decoder"):
        fca = FlopCountAnalysis(_Pass(model, side, xp, recorder), (torch.zeros(1),))
        fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        fca.set_op_handle("aten::upsample_bilinear2d", None)
        out[side] = fca
    return out


def kmac_per_px(model: StudentCodec, height: int = 512, width: int = 768) -> dict[str, float]:
    return {side: fca.total() / (height * width) / 1000 for side, fca in side_macs(model, height, width).items()}


# ------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("name", STUDENTS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_decompress_equals_encoder_side_reconstruction(name, size):
    model = _model(name)
    x = _smooth(*size)
    decoded = model.decompress(model.compress(x))
    reference, _ = model.reconstruct(x)
    assert decoded.shape == x.shape
    assert torch.equal(decoded, reference)


@pytest.mark.parametrize("name", STUDENTS)
def test_eval_forward_agrees_with_decode(name):
    model = _model(name)
    x = _smooth(100, 77, seed=1)
    decoded = model.decompress(model.compress(x))
    xp, _ = pad_to_stride(x, model.stride)
    with torch.no_grad(), single_threaded():  # the coding passes run on one thread
        out = model(xp)
    assert torch.allclose(crop(out["x_hat"], (100, 77)).clamp(0, 1), decoded, atol=1e-4)


@pytest.mark.parametrize("name", STUDENTS)
def test_coding_passes_called_directly_run_on_one_thread(name):
    """student.codec.single_threaded guards encoder_pass and decoder_pass themselves, not only
    compress/decompress (tests/test_codec_roundtrip.py checks those for every codec): the
    profiler and the tests call the passes directly. Every layer sees one thread; the caller
    gets its setting back."""
    model = _model(name)
    xp, _ = pad_to_stride(_smooth(64, 128, seed=2), model.stride)
    seen: list = []
    hooks = [module.register_forward_pre_hook(lambda m, a, part=part: seen.append((part, torch.get_num_threads())))
             for part in model.parts for module in getattr(model, part).modules()]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        recorder = SymbolRecorder()
        with torch.no_grad():
            model.encoder_pass(xp, recorder)
            assert torch.get_num_threads() == 2, "encoder_pass must restore the caller's thread count"
            model.decoder_pass(recorder.replay(), tuple(xp.shape[-2:]))
            assert torch.get_num_threads() == 2, "decoder_pass must restore the caller's thread count"
    finally:
        torch.set_num_threads(threads)
        for h in hooks:
            h.remove()
    assert {part for part, _ in seen} == set(model.parts)
    assert {n for _, n in seen} == {1}, sorted({(part, n) for part, n in seen if n != 1})


def test_every_transform_and_context_combination_round_trips():
    for transform in TRANSFORMS:
        for context in CONTEXTS:
            model = _model("student", transform=TRANSFORMS[transform], context=CONTEXTS[context], **TINY_WIDTHS)
            x = _smooth(70, 90)
            assert torch.equal(model.decompress(model.compress(x)), model.reconstruct(x)[0]), (transform, context)


@pytest.mark.parametrize("levels,stages", [(1, 1), (1, 3), (3, 2)])
def test_progressive_variants_round_trip_and_set_the_stride(levels, stages):
    model = _model("student", context=dict(CONTEXTS["msp"], levels=levels, stages=stages), **TINY_WIDTHS)
    assert model.stride == max(64, 16 * 2**levels)
    assert model.steps == 1 + levels * stages
    for size in ((1, 1), (130, 260)):
        x = _smooth(*size)
        assert torch.equal(model.decompress(model.compress(x)), model.reconstruct(x)[0])


# ------------------------------------------------------------------------ decoder pass counts
def _decode_counting(model, data, monkeypatch) -> Counter:
    calls: Counter = Counter()
    hooks = [getattr(model, part).register_forward_pre_hook(lambda m, a, part=part: calls.update([part]))
             for part in model.parts]
    real = BitstreamDecoder.gaussian

    def gaussian(self, *args, **kwargs):
        calls["io.gaussian"] += 1
        return real(self, *args, **kwargs)

    monkeypatch.setattr(BitstreamDecoder, "gaussian", gaussian)
    try:
        model.decompress(data)
    finally:
        for h in hooks:
            h.remove()
        monkeypatch.undo()
    return calls


@pytest.mark.parametrize("name", STUDENTS)
def test_decoder_pass_counts_match_a_real_decompress(name, monkeypatch):
    model = _model(name)
    if model.context.kind == "checkerboard":
        assert model.steps == 2
    else:
        assert model.steps == 1 + model.context.levels * model.context.stages
    calls = _decode_counting(model, model.compress(_smooth(96, 160)), monkeypatch)
    assert calls["entropy_parameters"] == calls["io.gaussian"] == model.steps
    assert calls["context"] == model.steps - 1  # the first step is coded from the hyperprior alone
    assert calls["h_s"] == calls["g_s"] == 1
    assert "g_a" not in calls and "h_a" not in calls


def test_checkerboard_decodes_in_two_passes(monkeypatch):
    model = _model("student_dw_ckbd", **TINY_WIDTHS)
    calls = _decode_counting(model, model.compress(_smooth(64, 64)), monkeypatch)
    assert (calls["entropy_parameters"], calls["context"], calls["io.gaussian"]) == (2, 1, 2)


def test_progressive_step_count_does_not_grow_with_the_image(monkeypatch):
    model = _model("student_tiny")
    counts = []
    for size in ((256, 256), (768, 1024)):
        calls = _decode_counting(model, model.compress(_smooth(*size)), monkeypatch)
        counts.append((calls["entropy_parameters"], calls["context"], calls["io.gaussian"]))
    assert counts[0] == counts[1] == (5, 4, 5)


# ----------------------------------------------------------------------------- the schedules
@pytest.mark.parametrize("schedule", [checkerboard_schedule()] + [progressive_schedule(levels, stages)
                                      for levels in (1, 2, 3) for stages in (1, 2, 3)])
def test_a_schedule_codes_every_position_once_from_decoded_context_only(schedule):
    h = w = 2 * max(s.stride for s in schedule)
    step_of = torch.full((h, w), -1)
    for k, step in enumerate(schedule):
        for i, j in step.phases:
            block = step_of[i::step.stride, j::step.stride]
            assert bool((block == -1).all()), f"step {k} codes positions coded before"
            step_of[i::step.stride, j::step.stride] = k
        for i, j in step.known:
            known = step_of[i::step.stride, j::step.stride]
            assert bool(((known >= 0) & (known < k)).all()), f"step {k} reads a phase not decoded yet"
    assert bool((step_of >= 0).all()), "some positions are never coded"
    assert [s.stride for s in schedule] == sorted((s.stride for s in schedule), reverse=True), "coarse scales first"


@pytest.mark.parametrize("grad", [True, False], ids=["training (pixel shuffle)", "coding (strided copies)"])
def test_lattice_reassembles_what_take_phases_split(grad):
    y = torch.randn(2, 3, 16, 24)
    for schedule in (checkerboard_schedule(), progressive_schedule(3, 2)):
        lattice = Lattice()
        with torch.set_grad_enabled(grad):
            for step in schedule:
                lattice.put(step, take_phases(y, step.stride, step.phases))
            assert torch.equal(lattice.full(), y)
            assert torch.equal(lattice.get(2, (1, 1)), y[..., 1::2, 1::2])


# ------------------------------------------------------------------------------ the kMAC budget
@pytest.fixture(scope="module")
def budget(teacher_profile) -> dict[str, float]:
    """kMAC/px allowed per side: the profiled teacher over TARGET (about 1.99 / 1.95)."""
    assert teacher_profile["resolution"] == [768, 512] and not teacher_profile["problems"]
    return {side: teacher_profile[side]["kmac_per_px"] / TARGET for side in SIDES}


@pytest.mark.parametrize("name", STUDENTS)
def test_every_student_is_35x_below_the_teacher_on_both_sides(name, budget, teacher_profile):
    kmac = kmac_per_px(_model(name))  # at 768x512, like the teacher
    for side in SIDES:
        assert 0 < kmac[side] <= budget[side], (
            f"{name}: {kmac[side]:.3f} kMAC/px on the {side} side, budget {budget[side]:.3f} "
            f"(teacher {teacher_profile[side]['kmac_per_px']:.3f} / {TARGET})")


def test_context_and_entropy_parameters_run_only_where_a_symbol_is_coded():
    """Executed = effective: the context and entropy-parameter MACs of a decode are exactly
    (coded elements) x (per-element cost), no position computed twice or thrown away."""
    for context in ("checkerboard", "msp"):
        model = _model("student", context=CONTEXTS[context], **TINY_WIDTHS)
        fca = side_macs(model, 256, 256)["decoder"]
        by_module = fca.by_module()
        m, ch, e, cc = 16, 16, 16, model.context.width
        k2 = 9
        ep = ctx = 0
        h = w = 256 // 16
        for step in model.context.schedule:
            grid = (h // step.stride) * (w // step.stride)
            n_out, n_in = len(step.phases), len(step.known)
            ep += n_out * grid * ((ch + (cc if n_in else 0)) * e + e * 2 * m)
            if n_in:
                ctx += grid * (k2 * n_in * m * n_out + n_out * n_in * m * cc)
        assert by_module["model.entropy_parameters"] == ep
        assert by_module["model.context"] == ctx
        assert not any(hasattr(mod, "effective_fraction") for mod in model.modules())


# ------------------------------------------------------------------------ hand-checked blocks
H, W = 8, 12


def test_depthwise_separable_macs():
    # h*w*(9*C + C*C') for a 3x3 C -> C'
    assert _macs(DepthwiseSeparable(8, 12, 3), torch.randn(1, 8, H, W)) == H * W * (9 * 8 + 8 * 12)
    # depth multiplier e: k^2 C e + C e C'; stride 2 halves both sides
    assert _macs(DepthwiseSeparable(8, 12, 5, exp_ratio=2), torch.randn(1, 8, H, W)) == H * W * (25 * 16 + 16 * 12)
    assert _macs(DepthwiseSeparable(8, 12, 3, 2), torch.randn(1, 8, H, W)) == H // 2 * W // 2 * (9 * 8 + 8 * 12)


def test_inverted_residual_macs():
    m = 16  # 8 * exp_ratio 2
    assert _macs(InvertedResidual(8, 8, 3, exp_ratio=2), torch.randn(1, 8, H, W)) == H * W * (8 * m + 9 * m + m * 8)
    # with the full simplified GDN as activation: + 2 * m^2 per position
    assert (_macs(InvertedResidual(8, 8, 3, exp_ratio=2, act="gdn"), torch.randn(1, 8, H, W))
            == H * W * (8 * m + 9 * m + m * 8 + 2 * m * m))


def test_shuffle_unit_macs():
    # stride 1: half the channels (4) through pw 4->4, dw 3x3, pw 4->4
    assert _macs(ShuffleUnit(8, 8, 3), torch.randn(1, 8, H, W)) == H * W * (4 * 4 + 9 * 4 + 4 * 4)
    assert _macs(ShuffleUnit(8, 8, 3, exp_ratio=2), torch.randn(1, 8, H, W)) == H * W * (4 * 8 + 9 * 8 + 8 * 4)
    # stride 2, 8 -> 16: left dw(s2) 8 + pw 8->8; right pw 8->8 at the input resolution, dw(s2), pw 8->8
    out = H // 2 * W // 2
    assert _macs(ShuffleUnit(8, 16, 3, 2), torch.randn(1, 8, H, W)) == out * (9 * 8 + 8 * 8 + 9 * 8 + 8 * 8) + H * W * 64


def test_sub_pixel_up_and_unshuffle_down_macs():
    # up x2, 8 -> 4: pw 8 -> 16 at h x w, then dw 3x3 on 4 channels at 2h x 2w
    assert _macs(SubPixelUp(8, 4, 3, 2), torch.randn(1, 8, H, W)) == H * W * 8 * 16 + 4 * H * W * 9 * 4
    assert _macs(SubPixelUp(8, 4, 3, 2, groups=2), torch.randn(1, 8, H, W)) == H * W * 8 * 16 // 2 + 4 * H * W * 9 * 4
    assert _macs(SubPixelUp(8, 4, 1, 2), torch.randn(1, 8, H, W)) == H * W * 8 * 16  # a bare pixel shuffle: no MACs
    # down x2, 4 -> 8: dw 3x3 on 4 channels at h x w, then pw 16 -> 8 at h/2 x w/2
    assert _macs(PixelUnshuffleDown(4, 8, 3, 2), torch.randn(1, 4, H, W)) == H * W * 9 * 4 + H * W // 4 * 16 * 8
    assert (_macs(PixelUnshuffleDown(4, 8, 3, 2, groups=4), torch.randn(1, 4, H, W))
            == H * W * 9 * 4 + H * W // 4 * 16 * 8 // 4)


def test_simplified_gdn_macs_and_formula():
    x = torch.randn(1, 6, H, W)
    assert _macs(SimplifiedGDN(6), x) == H * W * 36
    assert _macs(SimplifiedGDN(6, diagonal=True), x) == H * W * 6
    gdn = SimplifiedGDN(6)
    with torch.no_grad():
        gdn.gamma.copy_(torch.rand(6, 6))
        gdn.beta.copy_(torch.rand(6) + 0.5)
        norm = gdn.beta.view(1, 6, 1, 1) + torch.einsum("ij,bjhw->bihw", gdn.gamma, x.abs())
        assert torch.allclose(gdn(x), x / norm, atol=1e-6)
        assert torch.allclose(SimplifiedGDN(6, inverse=True)(x), x * (1 + 0.1 * x.abs()), atol=1e-6)


def test_context_nets_macs():
    # checkerboard non-anchor step: 2 known phases of M=4 channels, 2 coded phases, width 6
    gh, gw = 4, 6
    net = PhaseContext(latent=4, n_in=2, n_out=2, width=6, kernel_size=3)
    assert _macs(net, torch.randn(1, 8, gh, gw)) == gh * gw * (9 * 8 * 2 + 2 * 8 * 6)
    # per-step widths: the anchor head (no context) hidden 9, the non-anchor head hidden 7
    ep = EntropyParameters(checkerboard_schedule(), latent=4, hyper_chs=5, context_chs=[None, 6], widths=[9, 7])
    hyper, ctx = torch.randn(2, 5, gh, gw), torch.randn(2, 6, gh, gw)  # 2 phases in the batch
    assert _macs(_Step(ep, 1), hyper, ctx) == 2 * gh * gw * ((5 + 6) * 7 + 7 * 8)
    assert _macs(_Step(ep, 0), hyper) == 2 * gh * gw * (5 * 9 + 9 * 8)


class _Step(nn.Module):
    def __init__(self, ep, step):
        super().__init__()
        self.ep, self.step = ep, step

    def forward(self, *args):
        return self.ep(self.step, *args)


def test_block_shapes_and_invariants():
    x = torch.randn(2, 8, H, W)
    assert SubPixelUp(8, 4, 3, 2)(x).shape == (2, 4, 2 * H, 2 * W)
    assert PixelUnshuffleDown(8, 16, 3, 2)(x).shape == (2, 16, H // 2, W // 2)
    assert ShuffleUnit(8, 12, 3, 2)(x).shape == (2, 12, H // 2, W // 2)
    # ShuffleNetV2: the first half passes through untouched, interleaved by the shuffle
    assert torch.equal(ShuffleUnit(8, 8)(x)[:, 0::2], x[:, :4])
    assert torch.equal(channel_shuffle(channel_shuffle(x, 2), 4), x)
    with pytest.raises(ValueError, match="even width"):
        ShuffleUnit(7, 7)
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        DepthwiseSeparable(8, 8, 4)


# ------------------------------------------------------------------------------ training path
def test_training_forward_outputs_and_gradients_reach_every_part():
    model = _model("student_shuffle_msp", **TINY_WIDTHS).train()
    x = torch.rand(2, 3, 64, 128)
    out = model(x)
    assert out["x_hat"].shape == x.shape
    assert out["likelihoods"]["y"].shape == (2, 16, 4, 8)
    assert out["likelihoods"]["z"].shape == (2, 8, 1, 2)
    taps = out["taps"]
    assert taps["x_hat_ycbcr"].shape == (2, 3, 64, 128)
    assert taps["x_hat_y"].shape == (2, 1, 64, 128) and taps["x_hat_cbcr"].shape == (2, 2, 32, 64)
    assert [taps[f"g_s.{i}"].shape[-1] for i in range(4)] == [8, 16, 32, 64]
    assert taps["scales"].shape == taps["means"].shape == taps["y"].shape
    rate = sum(-torch.log2(lik).sum() for lik in out["likelihoods"].values())
    (rate + 100 * nn.functional.mse_loss(out["x_hat"], x)).backward()
    for part in model.parts:
        grads = [p.grad for p in getattr(model, part).parameters()]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads), part


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match="unknown keys"):
        create_codec("student", transform=dict(TRANSFORMS["depthwise"], blocks="depthwise"))
    with pytest.raises(ValueError, match="block 'mbconv' unknown"):
        create_codec("student", transform=dict(TRANSFORMS["depthwise"], block="mbconv"))
    with pytest.raises(ValueError, match="'kind' must be one of"):
        create_codec("student", context={"kind": "autoregressive"})
    with pytest.raises(ValueError, match="depths needs 4"):
        create_codec("student", transform=dict(TRANSFORMS["depthwise"], depths=[1, 1]))


def test_checkpoint_rebuilds_the_student_from_its_config(tmp_path):
    from codec.checkpoint import load_checkpoint, save_checkpoint

    model = _model("student_shuffle_msp", **TINY_WIDTHS)
    path = save_checkpoint(tmp_path / "s.ckpt", model, {"note": "test"})
    loaded, _ = load_checkpoint(path)
    assert loaded.registry_name == "student_shuffle_msp" and loaded.config == model.config
    x = _smooth(64, 96)
    data = model.compress(x)
    assert loaded.compress(x) == data
    assert torch.equal(loaded.decompress(data), model.decompress(data))
