"""The fast coding path (codec.rans), inference forms (codec.inference) and bench.speed: the same
symbols and bytes as straightforward references, round trips for every codec family, caches
that cannot go stale. No test here times anything: speed is measured by ``python -m bench.speed``."""
from __future__ import annotations

import copy
import json
import math

import constriction
import numpy as np
import pytest
import torch

from codec import rans
from codec.bitstream import BitstreamError
from codec.entropy import FactorizedPrior, GaussianConditional
from codec.inference import inference_copy, one_side_parts
from codec.registry import create_codec, list_codecs
from tests.conftest import live_latents, tiny_config


def _prior(channels=5, seed=0) -> FactorizedPrior:
    torch.manual_seed(seed)
    prior = FactorizedPrior(channels)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return prior


def _words(coder) -> np.ndarray:
    return coder.get_compressed().copy()


# --------------------------------------------------------------------------- factorized prior
def _per_channel_reference(pmf: np.ndarray, symbols: np.ndarray, bound: int) -> np.ndarray:
    """The coder as it was: one Categorical model and one call per channel, last channel first."""
    coder = constriction.stream.stack.AnsCoder()
    for c in reversed(range(symbols.shape[0])):
        coder.encode_reverse(symbols[c] + bound, constriction.stream.model.Categorical(pmf[c], perfect=False))
    return _words(coder)


@pytest.mark.parametrize("row_entries", [rans.MAX_ROW_ENTRIES, 7], ids=["one call", "many calls"])
def test_factorized_one_call_gives_the_bytes_of_one_call_per_channel(row_entries, monkeypatch):
    monkeypatch.setattr(rans, "MAX_ROW_ENTRIES", row_entries)
    prior, bound = _prior(), 6
    g = np.random.default_rng(0)
    symbols = np.clip(np.rint(g.normal(0, 2, (5, 37))), -bound, bound).astype(np.int32)
    reference = _per_channel_reference(prior.pmf_table(bound), symbols, bound)

    coder = constriction.stream.stack.AnsCoder()
    rans.encode_factorized(coder, prior, symbols, bound)
    assert np.array_equal(_words(coder), reference)
    decoder = constriction.stream.stack.AnsCoder(reference)
    assert np.array_equal(rans.decode_factorized(decoder, prior, 5, 37, bound), symbols)
    assert decoder.is_empty()


def test_factorized_table_follows_the_parameters():
    """Fine-tuning in place changes the table the coder uses: no stale cache."""
    prior, bound = _prior(), 4
    symbols = np.array([[0, 1, -1, 4], [2, 0, 0, -4], [1, 1, 1, 1], [0, 0, 0, 0], [-3, 3, 0, 1]], np.int32)
    before = constriction.stream.stack.AnsCoder()
    rans.encode_factorized(before, prior, symbols, bound)
    with torch.no_grad():
        prior.biases[-1].add_(1.5)
    after = constriction.stream.stack.AnsCoder()
    rans.encode_factorized(after, prior, symbols, bound)
    assert np.array_equal(_words(after), _per_channel_reference(prior.pmf_table(bound), symbols, bound))
    assert not np.array_equal(_words(before), _words(after))


def test_model_cache_is_bounded_keyed_by_content_and_not_copied():
    prior = _prior()
    for bound in range(1, rans.ModelCache.size + 5):
        rans._factorized_table(prior, bound)
    assert len(rans.model_cache(prior)) == rans.ModelCache.size
    twin = copy.deepcopy(prior)
    assert len(rans.model_cache(twin)) == 0
    assert np.array_equal(rans._factorized_table(twin, 3), rans._factorized_table(prior, 3))
    loaded = FactorizedPrior(5)
    loaded.load_state_dict(prior.state_dict())
    assert rans.content_digest(loaded.parameters()) == rans.content_digest(prior.parameters())


# ---------------------------------------------------------------------- Gaussian conditional
def test_gaussian_table_is_the_normal_mass_of_unit_bins():
    from scipy.stats import norm

    scales = np.array([0.11, 0.7, 3.0, 40.0])
    table = rans.gaussian_table(scales, 16)
    v = np.arange(-16, 17)
    expected = norm.cdf((v[None] + 0.5) / scales[:, None]) - norm.cdf((v[None] - 0.5) / scales[:, None])
    assert np.allclose(table, expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("table", [None, (0.1, 0.1001, 0.1002, 5.0)], ids=["default table", "close entries"])
def test_scale_index_is_searchsorted_on_every_kind_of_float(table):
    conditional = GaussianConditional(scale_table=table)
    t = conditional.scale_table
    g = torch.Generator().manual_seed(0)
    values = torch.cat([
        torch.rand(20000, generator=g) * 300, torch.rand(20000, generator=g).exp() * 1e-3, -torch.rand(100, generator=g),
        t, torch.nextafter(t, torch.full_like(t, 1e9)), torch.nextafter(t, torch.zeros_like(t)),
        torch.tensor([0.0, -0.0, float("inf"), -float("inf"), float("nan"), -float("nan"), 1e-45, 3e38]),
        torch.randint(-2**31, 2**31 - 1, (50000,), dtype=torch.int32, generator=g).view(torch.float32),  # any bits
    ]).reshape(1, -1, 1, 1)
    reference = torch.searchsorted(t, values.contiguous(), right=False).clamp(0, len(t) - 1)
    assert torch.equal(conditional.scale_index(values), reference)
    traced = torch.jit.trace(lambda v: conditional.scale_index(v), (values,), check_trace=False)  # as the profiler
    assert torch.equal(traced(values), reference)


@pytest.mark.parametrize("bound", [1, 9, 300, rans.MAX_TABLE_BOUND + 1], ids=lambda b: f"bound{b}")
def test_gaussian_symbols_round_trip(bound):
    conditional = GaussianConditional()
    g = np.random.default_rng(bound)
    indexes = g.integers(0, len(conditional.scale_table), 500)
    stds = conditional.scale_table.double().numpy()[indexes]
    symbols = np.clip(np.rint(g.normal(0, stds)), -bound, bound).astype(np.int32)
    symbols[0] = bound
    coder = constriction.stream.stack.AnsCoder()
    rans.encode_gaussian(coder, conditional, symbols, indexes, bound)
    decoder = constriction.stream.stack.AnsCoder(coder.get_compressed())
    assert np.array_equal(rans.decode_gaussian(decoder, conditional, indexes, bound), symbols)
    assert decoder.is_empty()


def test_tabulated_gaussian_costs_what_the_quantized_gaussian_costs():
    """The tables change the bytes, not the rate: compare with constriction's own Gaussian."""
    conditional = GaussianConditional()
    g = np.random.default_rng(1)
    indexes = g.integers(0, 40, 20000)
    stds = conditional.scale_table.double().numpy()[indexes]
    symbols = np.clip(np.rint(g.normal(0, stds)), -30, 30).astype(np.int32)
    ours = constriction.stream.stack.AnsCoder()
    rans.encode_gaussian(ours, conditional, symbols, indexes, 30)
    theirs = constriction.stream.stack.AnsCoder()
    theirs.encode_reverse(symbols, constriction.stream.model.QuantizedGaussian(-30, 30), np.zeros_like(stds), stds)
    assert abs(ours.num_bits() / theirs.num_bits() - 1) < 0.01


# -------------------------------------------------------------------------- every codec family
def _tiny(name):
    cfg = tiny_config(name)
    if cfg is None:
        pytest.skip(f"{name} has no tiny config")
    torch.manual_seed(0)
    return live_latents(create_codec(name, **cfg).eval())


@pytest.mark.parametrize("name", list_codecs())
def test_plain_and_inference_forms_read_each_others_streams(name, smooth_image):
    """Folding only one-side parts leaves the scale indices alone: a stream of either form
    decodes with the other (symbol CRC), to the same image up to float rounding; and the
    inference form's own decode equals its encoder-side reconstruction exactly."""
    plain = _tiny(name)
    fast = inference_copy(plain)
    x = smooth_image(100, 70, seed=3)
    rate = plain.default_rate()
    plain_stream, fast_stream = plain.compress(x, rate=rate), fast.compress(x, rate=rate)
    image = plain.decompress(plain_stream)
    # float rounding only: far below an 8-bit level (1/255)
    assert torch.allclose(fast.decompress(plain_stream), image, atol=1e-3)
    assert torch.allclose(plain.decompress(fast_stream), fast.decompress(fast_stream), atol=1e-3)
    assert torch.equal(fast.decompress(fast_stream), fast.reconstruct(x, rate=rate)[0])
    for part, side in plain.parts.items():  # what both sides run is untouched
        if side.value == "both":
            a, b = getattr(plain, part), getattr(fast, part)
            assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]
            assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_inference_copy_replaces_layers_of_one_side_parts_only():
    from codec.inference import InferenceGDN, SubPixelConv, UnshuffleConv
    from student.blocks import PixelUnshuffleDown, SimplifiedGDN, SubPixelUp

    plain = create_codec("student_shuffle_msp", **tiny_config("student_shuffle_msp"))
    fast = inference_copy(plain)
    assert one_side_parts(plain) == ["g_a", "h_a", "g_s"]
    kinds = {type(m) for p in one_side_parts(fast) for m in getattr(fast, p).modules()}
    assert not kinds & {SimplifiedGDN, SubPixelUp, PixelUnshuffleDown}
    assert {InferenceGDN, SubPixelConv, UnshuffleConv} <= kinds
    assert any(isinstance(m, SubPixelUp) for m in fast.h_s.modules())  # h_s runs on both sides
    assert not any(p.requires_grad for p in fast.parameters()) and not fast.training
    assert fast.config_hash() == plain.config_hash() and inference_copy(fast) is fast


@pytest.mark.parametrize("preset", ["student_dw_ckbd", "student_shuffle_ckbd"])
def test_folded_transforms_compute_what_the_trained_ones_compute(preset):
    """Grouped and ungrouped resampling, per-channel and full GDN."""
    torch.manual_seed(1)
    plain = create_codec(preset, **tiny_config(preset)).eval()
    with torch.no_grad():  # biases and GDN parameters away from their initial values
        for p in plain.parameters():
            p.add_(0.05 * torch.randn_like(p))
        fast = inference_copy(plain)
        x = torch.rand(1, 3, 64, 128)
        y = plain.g_a(x)
        assert torch.allclose(fast.g_a(x), y, rtol=1e-4, atol=1e-5)
        assert torch.allclose(fast.h_a(y), plain.h_a(y), rtol=1e-4, atol=1e-5)
        assert torch.allclose(fast.g_s(y), plain.g_s(y), rtol=1e-4, atol=1e-4)


def test_teacher_gdn_is_folded(smooth_image):
    from codec.inference import InferenceGDN
    from codec.layers import GDN

    plain = create_codec("vmuc_tiny").eval()
    fast = inference_copy(plain)
    assert not any(isinstance(m, GDN) for m in fast.g_s_y.modules())
    assert any(isinstance(m, InferenceGDN) for m in fast.g_a_y.modules())
    x = smooth_image(64, 64)
    with torch.no_grad():
        luma = torch.randn(1, 16, 4, 4)
        assert torch.allclose(fast.g_s_y(luma), plain.g_s_y(luma), rtol=1e-5, atol=1e-6)
    assert torch.equal(fast.decompress(plain.compress(x)), fast.reconstruct(x)[0])


def test_a_damaged_stream_is_still_an_error_with_the_tables(smooth_image):
    model = _tiny("student_tiny")
    data = bytearray(model.compress(smooth_image(64, 64)))
    data[-3] ^= 0x10
    with pytest.raises(BitstreamError):
        inference_copy(model).decompress(bytes(data))


# ---------------------------------------------------------------------------------- bench.speed
def test_bench_speed_writes_what_the_readme_reads(tmp_path):
    from bench import readme, speed

    out = tmp_path / "speed" / "speed.json"
    argv = ["--teacher", "vmuc_tiny", "--students", "student_tiny", "--images", "builtin", "--max-images", "1",
            "--rounds", "1", "--classical", "jpeg", "--quality", "jpeg=50", "--out", str(out)]
    assert speed.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["command"].startswith("python -m bench.speed --teacher vmuc_tiny")
    assert result["threads"] == 1 and len(result["load_average_before"]) == 3
    labels = [row["label"] for row in result["codecs"]]
    assert labels == ["vmuc_tiny", "student_tiny", "jpeg"]
    student = result["codecs"][1]
    assert set(student["decode_ms"]) == {"pytorch", "onnxruntime"} and student["trained"] is False
    assert all(math.isfinite(v) and v > 0 for v in student["decode_ms"].values())
    parts = result["breakdown"]["ms"]["decode onnxruntime"]
    expected = {"rANS decode z", "rANS decode y", "scale index", "h_s", "context", "entropy_parameters", "g_s"}
    assert expected <= set(parts)
    variants = ("plain", "pytorch", "pytorch nchw", "pytorch channels_last", "onnxruntime")
    assert set(result["breakdown"]["ms"]) == {f"{side} {v}" for side in ("encode", "decode") for v in variants}
    assert set(student["encode_ms"]) == {"pytorch", "onnxruntime"}
    section = readme.speed(tmp_path)
    assert "python -m bench.speed --teacher vmuc_tiny" in section and "student_tiny" in section


def test_bench_speed_refuses_bad_arguments(tmp_path, capsys):
    from bench import speed

    argv = ["--teacher", "vmuc_tiny", "--students", "no_such_codec", "--images", "builtin",
            "--out", str(tmp_path / "s.json")]
    assert speed.main(argv) == 2
    assert "neither a checkpoint file nor a registered codec" in capsys.readouterr().err
    assert speed.main(["--rounds", "0"]) == 2


def test_bench_speed_codes_a_trained_variable_rate_checkpoint_at_the_rate_asked(tmp_path):
    """--rate reaches the coder: the top rate of a two-rate model spends more bytes than the
    bottom one, each row records its rate, and a rate the model lacks is a clean error."""
    from bench import readme, speed
    from codec.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = live_latents(create_codec("student_tiny", rates=[0.001, 0.05], **tiny_config("student_tiny")))
    ckpt = save_checkpoint(tmp_path / "vr.ckpt", model)
    rows = {}
    for rate in (0, 1):
        out = tmp_path / f"r{rate}" / "speed" / "speed.json"
        argv = ["--teacher", "vmuc_tiny", "--students", "student_tiny", "--checkpoint", str(ckpt), "--rate", str(rate),
                "--images", "builtin", "--max-images", "1", "--rounds", "1", "--backends", "pytorch",
                "--classical", "jpeg", "--quality", "jpeg=50", "--out", str(out)]
        assert speed.main(argv) == 0
        rows[rate] = json.loads(out.read_text())["codecs"][1]
        assert rows[rate]["trained"] and rows[rate]["rate"] == rate
        assert f"trained, rate {rate}" in readme.speed(out.parent.parent)
    assert rows[1]["bpp"] > rows[0]["bpp"]
    assert speed.main(argv[:-1] + [str(tmp_path / "bad.json")] + ["--rate", "7"]) == 2
    assert not (tmp_path / "bad.json").exists()


def test_bench_speed_gives_every_trained_student_its_targets(tmp_path):
    """Two trained checkpoints of one codec are two rows with their own labels; the breakdown
    student's verdict is ``targets``, the other's is in ``other_trained_targets``, and the README
    section states both, each with its own measured decode time."""
    from bench import readme, speed
    from codec.checkpoint import save_checkpoint

    paths = []
    for seed, name in ((0, "a"), (1, "b")):
        torch.manual_seed(seed)
        paths.append(save_checkpoint(tmp_path / name / "last.ckpt",
                                     create_codec("student_tiny", **tiny_config("student_tiny"))))
    out = tmp_path / "speed" / "speed.json"
    argv = ["--teacher", "vmuc_tiny", "--students", "", "--checkpoint", str(paths[0]), "--checkpoint", str(paths[1]),
            "--breakdown", "student_tiny@b", "--images", "builtin", "--max-images", "1", "--rounds", "1",
            "--backends", "pytorch", "--classical", "", "--out", str(out)]
    assert speed.main(argv) == 0
    result = json.loads(out.read_text())
    assert [r["label"] for r in result["codecs"]] == ["vmuc_tiny", "student_tiny@a", "student_tiny@b"]
    assert result["targets"]["student"] == "student_tiny@b"
    assert list(result["other_trained_targets"]) == ["student_tiny@a"]
    other = result["other_trained_targets"]["student_tiny@a"]
    decode = result["codecs"][1]["decode_ms"]["pytorch"]
    assert other["decode_ms"]["measured"]["pytorch"] == decode
    assert other["decode_ms"]["met"]["pytorch"] == (decode <= 40.0)
    section = readme.speed(tmp_path)
    assert "Targets for `student_tiny@b`" in section and "Targets for `student_tiny@a`" in section
    assert f"PyTorch {decode:.1f} ms" in section
