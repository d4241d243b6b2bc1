"""toderici (Toderici et al. 2017): the iteration count K is the rate. Bits grow linearly with K,
streams are progressive, real bytes round-trip, a bad K is refused, the profiler's counts grow
with K as the layer shapes say, and the engine trains it with the paper's loss."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from codec.bitstream import BitstreamError, unpack
from codec.checkpoint import save_checkpoint
from codec.engine import RateDistortion, ResidualL1, make_objective
from codec.registry import create_codec
from profiling import profile_codec

K_MAX = 3
TINY = {"iterations": K_MAX, "bits": 4, "encoder_widths": [4, 8, 8, 8], "decoder_widths": [8, 8, 8, 8, 8]}


def tiny(cell: str = "lstm", **over):
    torch.manual_seed(0)
    model = create_codec("toderici", **{**TINY, "cell": cell, **over}).eval()
    with torch.no_grad():  # random weights give binarizer outputs near 0: spread them so codes vary
        model.binarizer.conv.weight.mul_(20)
    return model


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.fixture
def image(smooth_image):
    return smooth_image(37, 50, seed=1)  # padded to 48 x 64: codes are 3 x 4 per channel


def test_bits_before_entropy_coding_grow_linearly_with_k(model, image):
    per_iteration = TINY["bits"] * (48 // 16) * (64 // 16)
    for k in range(1, K_MAX + 1):
        recorder, _ = model.encode_symbols(image, rate=k)
        assert [c.stream for c in recorder.calls] == [f"b{t}" for t in range(1, k + 1)]
        assert all(c.kind == "binary" and set(np.unique(c.symbols)) <= {-1, 1} for c in recorder.calls)
        assert sum(c.symbols.size for c in recorder.calls) == k * per_iteration
    assert all(set(np.unique(c.symbols)) == {-1, 1} for c in model.encode_symbols(image, rate=K_MAX)[0].calls)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_real_bytes_round_trip_exactly_at_every_k(cell, image):
    model = tiny(cell)
    sizes = []
    for k in range(1, K_MAX + 1):
        data = model.compress(image, rate=k)
        header, _ = unpack(data)
        assert header.rate == k and [s.name for s in header.streams] == [f"b{t}" for t in range(1, k + 1)]
        reference, _ = model.reconstruct(image, rate=k)
        assert torch.equal(model.decompress(data), reference)
        with torch.no_grad(), model.at_rate(k):  # eval forward: the same K iterations, sign binarizer
            from codec.image import crop, pad_to_stride
            x_hat = crop(model(pad_to_stride(image, 16)[0])["x_hat"], image.shape[-2:]).clamp(0, 1)
        torch.testing.assert_close(x_hat, reference, atol=1e-5, rtol=0)
        sizes.append(len(data))
    assert sizes == sorted(sizes) and len(set(sizes)) == K_MAX
    assert model.compress(image) == model.compress(image, rate=K_MAX)  # no rate: every trained iteration


def test_the_first_k_iterations_of_a_k_plus_1_stream_are_the_k_stream(model, image):
    for k in range(1, K_MAX):
        longer = model.compress(image, rate=k + 1)
        cut = model.truncate(longer, k)
        assert cut == model.compress(image, rate=k)
        assert torch.equal(model.decompress(cut), model.reconstruct(image, rate=k)[0])
        assert len(cut) < len(longer)
    with pytest.raises(ValueError, match="holds 2 iterations"):
        model.truncate(model.compress(image, rate=2), 3)


def test_entropy_coding_spends_fewer_bits_than_the_raw_codes_on_skewed_codes(smooth_image):
    model = tiny()
    with torch.no_grad():  # every code of channels 0 and 1 is +1: a per-channel model codes them almost for free
        model.binarizer.conv.weight[:2].zero_()
    recorder, _ = model.encode_symbols(smooth_image(128, 128), rate=K_MAX)
    _, payloads = recorder.to_streams()
    raw_bits = recorder.calls[0].symbols.size  # 4 channels x 8 x 8
    assert all(8 * len(p) < 0.8 * raw_bits for p in payloads), [len(p) for p in payloads]


def test_damaged_streams_are_refused(model, image):
    data = model.compress(image, rate=2)
    header, payloads = unpack(data)
    start = len(data) - sum(len(p) for p in payloads)
    for pos in range(start, len(data), 3):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(BitstreamError):
            model.decompress(bytes(bad))
    with pytest.raises(BitstreamError):
        model.decompress(data[:-4])


@pytest.mark.parametrize("bad", [0, K_MAX + 1, 1.5, -1, "two", True, float("nan")])
def test_a_bad_k_is_refused(model, image, bad):
    with pytest.raises(ValueError, match=f"from 1 to {K_MAX}"):
        model.check_rate(bad)
    with pytest.raises(ValueError, match="iteration count"):
        model.compress(image, rate=bad)
    with pytest.raises(ValueError):
        with model.at_rate(bad):
            pass


def test_the_cli_refuses_a_bad_rate_and_leaves_no_output(model, tmp_path, capsys):
    from codec.__main__ import main

    ckpt = save_checkpoint(tmp_path / "t.ckpt", model)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((37, 50, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    for rate in ("0", str(K_MAX + 1), "1.5"):
        out = tmp_path / f"out_{rate}.bin"
        assert main(["compress", str(tmp_path / "in.png"), str(out), "--checkpoint", str(ckpt), "--rate", rate]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "iteration count" in err[0] and f"1 to {K_MAX}" in err[0], err
        assert not out.exists() and not list(tmp_path.glob(".out_*"))
    out = tmp_path / "ok.bin"
    assert main(["compress", str(tmp_path / "in.png"), str(out), "--checkpoint", str(ckpt), "--rate", "2"]) == 0
    assert "at rate 2" in capsys.readouterr().out
    assert unpack(out.read_bytes())[0].rate == 2
    assert main(["decompress", str(out), str(tmp_path / "ok.png"), "--checkpoint", str(ckpt)]) == 0


# ------------------------------------------------------------------------------------ profiler
def _conv(k: int, c_in: int, c_out: int, positions: int) -> int:
    return k * k * c_in * c_out * positions


def _cell(kind: str, k: int, hk: int, c_in: int, c_out: int, positions: int) -> int:
    """MACs of one step of a conv LSTM (4 gates from input and hidden convs) or conv GRU (3 from
    the input conv; update/reset gates from one hidden conv, the candidate from another)."""
    if kind == "lstm":
        return _conv(k, c_in, 4 * c_out, positions) + _conv(hk, c_out, 4 * c_out, positions)
    return _conv(k, c_in, 3 * c_out, positions) + _conv(hk, c_out, 2 * c_out, positions) + \
        _conv(hk, c_out, c_out, positions)


def _hand_counts(kind: str, h: int, w: int) -> dict[str, int]:
    """One iteration of each piece, from the paper's layer table (not from the modules)."""
    e0, e1, e2, e3 = TINY["encoder_widths"]
    d0, d1, d2, d3, d4 = TINY["decoder_widths"]
    bits = TINY["bits"]
    at = {s: (h // s) * (w // s) for s in (1, 2, 4, 8, 16)}
    analysis = (_conv(3, 3, e0, at[2]) + _cell(kind, 3, 1, e0, e1, at[4]) + _cell(kind, 3, 1, e1, e2, at[8])
                + _cell(kind, 3, 1, e2, e3, at[16]))
    synthesis = (_conv(1, bits, d0, at[16]) + _cell(kind, 3, 1, d0, d1, at[16]) + _cell(kind, 3, 1, d1 // 4, d2, at[8])
                 + _cell(kind, 3, 3, d2 // 4, d3, at[4]) + _cell(kind, 3, 3, d3 // 4, d4, at[2]))
    return {"g_a": analysis, "binarizer": _conv(1, e3, bits, at[16]), "g_s": synthesis,
            "image": _conv(1, d4 // 4, 3, at[1])}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_profiler_counts_grow_with_k_as_the_layer_shapes_say(cell, smooth_image):
    model = tiny(cell)
    h, w = 32, 48
    one = _hand_counts(cell, h, w)
    for k in range(1, K_MAX + 1):
        p = profile_codec(model, image=smooth_image(h, w), wall_runs=0, strict=True, rate=k)
        decoder = k * one["g_s"] + one["image"]  # features every iteration, the image once
        encoder = k * (one["g_a"] + one["binarizer"]) + (k - 1) * (one["g_s"] + one["image"])
        assert p["decoder"]["kmac_per_px"] * 1000 * h * w == pytest.approx(decoder, rel=1e-12)
        assert p["encoder"]["kmac_per_px"] * 1000 * h * w == pytest.approx(encoder, rel=1e-12)
        assert p["decoder"]["parts"]["g_s"]["calls"] == k
        calls = {part: row["calls"] for part, row in p["encoder"]["parts"].items()}
        assert calls == {"g_a": k, "binarizer": k, "g_s": k - 1}  # at K = 1 the encoder needs no reconstruction
        assert p["encoder"]["unattributed_kmac_per_px"] == pytest.approx(0, abs=1e-12)


def test_python_m_profiling_reports_every_k(tmp_path):
    from profiling.cli import run_profile

    cfg = OmegaConf.create({"codec": {"name": "toderici", **TINY}, "resolution": "48x32", "wall_runs": 0,
                            "strict": True, "rates": None, "checkpoint": None, "threads": None})
    profile = run_profile(cfg, tmp_path)
    rows = profile["by_rate"]
    assert [r["rate"] for r in rows] == [1.0, 2.0, 3.0] and profile["rate"] == K_MAX
    dec = [r["decoder"]["kmac_per_px"] for r in rows]
    step = dec[1] - dec[0]
    assert step > 0 and dec[2] - dec[1] == pytest.approx(step)  # linear in K
    assert profile["decoder"]["kmac_per_px"] == pytest.approx(dec[-1])  # the top level is K_max
    assert (tmp_path / "profile.json").is_file()
    assert run_profile(OmegaConf.merge(cfg, {"rates": [2]}), tmp_path)["by_rate"][0]["rate"] == 2.0
    with pytest.raises(ValueError, match="iteration count"):
        run_profile(OmegaConf.merge(cfg, {"rates": [0]}), tmp_path)


# ------------------------------------------------------------------------------------ training
def test_the_paper_loss_sums_the_l1_of_every_residual():
    model = tiny().train()
    x = torch.rand(2, 3, 32, 32)
    torch.manual_seed(5)
    terms = ResidualL1()(model, x)
    torch.manual_seed(5)
    x_hats = model(x)["taps"]["x_hats"]
    assert x_hats.shape == (K_MAX, 2, 3, 32, 32)
    expected = sum((x_hats[t] - x).abs().mean() for t in range(K_MAX))
    torch.testing.assert_close(terms["loss"], expected)
    assert terms["bpp_raw"] == pytest.approx(K_MAX * TINY["bits"] / 256)
    terms["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())  # the straight-through binarizer passes gradients


def test_each_codec_trains_with_its_own_objective():
    assert isinstance(make_objective(OmegaConf.create({"objective": "residual_l1"}), tiny()), ResidualL1)
    with pytest.raises(ValueError, match="loss=toderici"):
        make_objective(OmegaConf.create({"distortion": "rgb_mse", "lmbda": 0.01}), tiny())
    hyperprior = create_codec("hyperprior", N=8, M=8)
    with pytest.raises(ValueError, match="loss=rd"):
        make_objective(OmegaConf.create({"objective": "residual_l1"}), hyperprior)
    assert isinstance(make_objective(OmegaConf.create({"lmbda": 0.01}), hyperprior), RateDistortion)


def test_codec_train_runs_it_and_validates_every_k(tmp_path):
    from codec.train import run

    cfg = OmegaConf.create({
        "codec": {"name": "toderici", **TINY, "iterations": 2}, "seed": 0,
        "data": {"train_dir": None, "eval_dir": None, "crop_size": 32, "max_eval_images": 1},
        "trainer": {"max_steps": 3, "batch_size": 2, "lr": 1e-3, "lr_decay_at": [], "grad_clip": 1.0,
                    "checkpoint_every": 0, "val_every": 3, "log_every": 1, "device": "cpu", "resume": "auto",
                    "progress": False, "threads": None},
        "loss": {"objective": "residual_l1"}, "logger": {"name": "none"}})
    summary = run(cfg, tmp_path)
    assert {"bpp@1", "bpp@2", "psnr_rgb@1", "psnr_rgb@2"} <= set(summary["val"])
    assert summary["val"]["bpp@1"] < summary["val"]["bpp@2"]


def test_the_hydra_configs_mirror_the_entry_defaults():
    from importlib import resources

    from codec.registry import resolve_config

    node = OmegaConf.to_container(OmegaConf.load(resources.files("conf") / "codec" / "toderici.yaml"))
    assert node.pop("name") == "toderici" and node == resolve_config("toderici", {})
    loss = OmegaConf.load(resources.files("conf") / "loss" / "toderici.yaml")
    assert isinstance(make_objective(loss, create_codec("toderici", **TINY)), ResidualL1)
