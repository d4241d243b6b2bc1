"""Latent overfitting (codec.overfit): better RD loss, ordinary streams, determinism, CLI, profiler, bench."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from codec.__main__ import main as codec_main
from codec.bitstream import unpack
from codec.checkpoint import load_checkpoint, save_checkpoint
from codec.engine.objectives import rd_loss
from codec.entropy import quantize, rounding
from codec.image import crop, pad_to_stride
from codec.overfit import (LatentOverfitter, check_overfit_args, compress_latents, compress_overfit,
                           overfit_latents, sga_temperature)
from codec.registry import create_codec
from profiling.counter import profile_codec, sample_image
from profiling.overfit import dispatch_macs, overfit_encoder_kmac, profile_overfit

LOSS = {"distortion": "ycbcr_mse", "ycbcr_weights": [6, 1, 1], "lmbda": 0.01, "ms_ssim_weight": 0.0}
CODECS = [("student_tiny", {}), ("vmuc_tiny", {}), ("mean_scale_hyperprior", {"N": 8, "M": 12}),
          ("factorized", {"N": 8, "M": 12})]


def _model(name, **config):
    torch.manual_seed(0)
    return create_codec(name, **config).eval()


@pytest.fixture(scope="module")
def image():
    return sample_image(70, 100, seed=3)  # not a multiple of the stride: padding is exercised


def _plain_rd_loss(model, x, latents=None):
    """The estimated RD loss as the codec's own eval forward computes it (hard rounding, no
    stand-in): independent of codec.overfit's machinery."""
    xp, _ = pad_to_stride(x, model.stride)
    with torch.no_grad():
        if latents is None:
            out = model(xp)
        else:
            with model.given_latents(**latents):
                out = model(xp)
    x_hat = crop(out["x_hat"], tuple(x.shape[-2:])).clamp(0, 1)
    return float(rd_loss({"x_hat": x_hat, "likelihoods": out["likelihoods"]}, x, LOSS)["loss"])


@pytest.mark.parametrize("name,config", CODECS, ids=[c[0] for c in CODECS])
def test_rd_loss_no_worse_and_stream_decodes_unchanged(name, config, image):
    model = _model(name, **config)
    start = _plain_rd_loss(model, image)
    result = overfit_latents(model, image, 6, 0.05, loss_cfg=LOSS, method="ste")
    assert result.initial["loss"] == pytest.approx(start, rel=1e-5)  # step 0 is the feed-forward encoder
    assert _plain_rd_loss(model, image, result.latents) == pytest.approx(result.final["loss"], rel=1e-5)
    assert result.final["loss"] <= result.initial["loss"]
    data = compress_latents(model, image, result.latents)
    with model.given_latents(**result.latents):
        expected, _ = model.reconstruct(image)
    assert torch.equal(model.decompress(data), expected)  # the unchanged decoder reads it exactly
    header, _ = unpack(data)
    assert header.codec == model.registry_name and header.config_hash == model.config_hash()


def test_overfitting_lowers_the_rd_loss_of_a_trained_model(image):
    """A student trained a few steps on this image: 20 SGA steps lower the estimated RD loss."""
    model = _model("student_tiny").train()
    image = image[..., :64, :64]
    xp, _ = pad_to_stride(image, model.stride)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(20):
        loss = rd_loss(model(xp), xp, LOSS)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    result = overfit_latents(model, image, 20, 0.02, loss_cfg=LOSS, method="sga")
    assert result.final["loss"] < result.initial["loss"]
    assert _plain_rd_loss(model, image, result.latents) < _plain_rd_loss(model, image)


def test_fresh_decoder_from_the_checkpoint(tmp_path, image):
    model = _model("student_tiny")
    path = save_checkpoint(tmp_path / "m.ckpt", model, meta={"config": {"loss": LOSS}})
    data = compress_overfit(model, image, 4, 0.05, loss_cfg=LOSS, method="sga")
    fresh, _ = load_checkpoint(path)
    assert torch.equal(fresh.decompress(data), model.decompress(data))


def test_identical_bytes_and_zero_steps_is_the_feed_forward_encoder(image):
    model = _model("student_tiny")
    runs = [compress_overfit(model, image, 5, 0.05, loss_cfg=LOSS, method="sga", seed=1) for _ in range(2)]
    assert runs[0] == runs[1]
    assert compress_overfit(model, image, 0, loss_cfg=LOSS) == model.compress(image)


def test_variable_rate_uses_the_rate_lmbda(image):
    model = _model("student_tiny", rates=[0.002, 0.02])
    run = LatentOverfitter(model, image, 2, rate=0.5, loss_cfg=LOSS)
    assert run.loss_cfg["lmbda"] == pytest.approx(math.sqrt(0.002 * 0.02), rel=1e-6)  # log-linear
    data = compress_overfit(model, image, 3, 0.05, rate=0.5, loss_cfg=LOSS)
    assert unpack(data)[0].rate == pytest.approx(0.5)
    assert model.decompress(data).shape == image.shape


def test_soft_roundings():
    c = torch.linspace(-3, 3, 101, requires_grad=True)
    from codec.overfit import _sga_round, _ste_round

    with rounding(_ste_round):
        q = quantize(c, "round")
    assert torch.equal(q, torch.round(c.detach()))
    q.sum().backward()
    assert torch.equal(c.grad, torch.ones_like(c))
    s = _sga_round(0.3, torch.Generator().manual_seed(0))(c.detach())
    assert bool(((s >= torch.floor(c.detach())) & (s <= torch.floor(c.detach()) + 1)).all())
    assert quantize(c.detach(), "round").equal(torch.round(c.detach()))  # outside the context: hard rounding
    assert sga_temperature(0, 100) == 0.5 and sga_temperature(99, 100) == pytest.approx(0.5 * math.exp(-1.3))


@pytest.mark.parametrize("steps,lr,words", [(-1, 0.01, "steps"), (5, 0.0, "lr"), (5, -1.0, "lr"),
                                            (5, float("nan"), "lr"), (2.5, 0.01, "steps")])
def test_bad_args_refused(steps, lr, words, image):
    with pytest.raises(ValueError, match=words):
        check_overfit_args(steps, lr)
    with pytest.raises(ValueError, match=words):
        overfit_latents(_model("student_tiny"), image, steps, lr, loss_cfg=LOSS)


def test_no_lmbda_is_refused(image):
    with pytest.raises(ValueError, match="overfit-lmbda"):
        overfit_latents(_model("student_tiny"), image, 2, loss_cfg={"distortion": "rgb_mse"})


# ------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("overfit_cli")
    ckpt = save_checkpoint(d / "m.ckpt", _model("student_tiny"), meta={"config": {"loss": LOSS}})
    rgb = (np.random.default_rng(0).random((40, 52, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(d / "in.png")
    return d, ckpt


def test_cli_overfit_round_trip(cli_setup, capsys):
    d, ckpt = cli_setup
    assert codec_main(["compress", str(d / "in.png"), str(d / "o.bin"), "--checkpoint", str(ckpt),
                       "--overfit-steps", "3", "--overfit-lr", "0.05", "--overfit-method", "sga"]) == 0
    out = capsys.readouterr().out
    assert "overfit 3 steps (sga, lr 0.05, lmbda 0.01)" in out and "estimated RD loss" in out
    assert codec_main(["decompress", str(d / "o.bin"), str(d / "o.png"), "--checkpoint", str(ckpt)]) == 0


@pytest.mark.parametrize("args,words", [(["--overfit-steps", "-3"], "steps"), (["--overfit-lr", "0"], "lr"),
                                        (["--overfit-steps", "2", "--overfit-lr", "-0.1"], "lr")])
def test_cli_bad_args_exit_2_without_output(cli_setup, capsys, args, words):
    d, ckpt = cli_setup
    out = d / "bad.bin"
    assert codec_main(["compress", str(d / "in.png"), str(out), "--checkpoint", str(ckpt), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and words in err[0]
    assert not out.exists() and not list(d.glob(".bad.bin*"))


# -------------------------------------------------------------------------------- profiler
def test_profiler_overfit_count_is_feed_forward_plus_n_steps(image):
    model = _model("student_tiny")
    steps = 3
    image = image[..., :64, :64]
    ff = profile_codec(model, image=image, wall_runs=0, strict=True)["encoder"]["kmac_per_px"]
    entry = profile_overfit(model, steps, ff, image=image, loss_cfg=LOSS)
    assert entry["kmac_per_px"] == pytest.approx(ff + steps * entry["step_kmac_per_px"] + entry["overhead_kmac_per_px"],
                                                 rel=1e-12)
    assert entry["step_kmac_per_px"] == pytest.approx(entry["step_forward_kmac_per_px"] + entry["step_backward_kmac_per_px"])
    assert 0 < entry["step_backward_kmac_per_px"] and overfit_encoder_kmac(entry, 0) == ff
    # the formula equals what a real run executes: overfitting, then the coding pass from its latents
    holder = {}

    def real_run():
        holder["r"] = overfit_latents(model, image, steps, loss_cfg=LOSS)
        with model.given_latents(**holder["r"].latents), torch.no_grad():
            model.encode_symbols(image)

    pixels = 1000.0 * image.shape[-2] * image.shape[-1]
    assert dispatch_macs(real_run) / pixels == pytest.approx(entry["kmac_per_px"], rel=1e-9)


def test_gate_command_reports_overfitting_beside_the_verdict(tmp_path):
    import json

    from hydra import compose, initialize_config_module

    from profiling.cli import run_gate

    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose("gate", overrides=["codec=student_tiny", "resolution=64x64", "encoder.overfit_steps=7",
                                         "teacher=vmuc_tiny", "target=0.5"])
    row = run_gate(cfg, tmp_path)
    student = json.loads((tmp_path / "student_profile.json").read_text())
    over = student["encoder_overfit"]
    assert over["steps"] == 7 and over["feed_forward_kmac_per_px"] == student["encoder"]["kmac_per_px"]
    assert row["student_kmac_per_px"]["encoder"] == student["encoder"]["kmac_per_px"]  # the verdict's figure
    assert row["encoder_overfit"]["kmac_per_px"] == over["kmac_per_px"] > student["encoder"]["kmac_per_px"]
    assert "not judged" in row["encoder_overfit"]["gate"]


# ----------------------------------------------------------------------------------- bench
def test_bench_overfit_curve(tmp_path):
    from hydra import compose, initialize_config_module

    from bench.cli import run_bench
    from bench.results import load_results

    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    rgb = (sample_image(48, 64, seed=5)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(eval_dir / "a.png")
    paths = []
    for i, lmbda in enumerate((0.002, 0.02)):
        cfg = {**LOSS, "lmbda": lmbda}
        paths.append(str(save_checkpoint(tmp_path / f"s{i}.ckpt", _model("student_tiny"),
                                         meta={"config": {"loss": cfg}})))
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose("bench", overrides=[f"data.eval_dir={eval_dir}", f"learned={{tiny:[{paths[0]},{paths[1]}]}}",
                                          "overfit_steps=[0,2]", "overfit_method=sga", f"out_dir={tmp_path / 'out'}",
                                          "progress=false", "warmup=false"])
    run_bench(cfg)
    results = {r["name"]: r for r in load_results(tmp_path / "out")}
    assert set(results) == {"tiny", "tiny +overfit 2"}
    over = results["tiny +overfit 2"]
    assert over["encoder"]["overfit_steps"] == 2 and over["encoder"]["overfit_method"] == "sga"
    assert all(r["overfit_est_loss"] <= r["overfit_est_loss_0"] for r in over["images"])
    import json

    table = json.loads((tmp_path / "out" / "overfit.json").read_text())
    (row,) = table["rows"]
    assert row["base"] == "tiny" and len(row["points"]) == 2 and row["bd_rate_psnr_rgb_pchip"]["value"] is None
