"""Variable rate with gain units (codec.gain): one model, every rate point."""
from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

from codec.bitstream import BitstreamError, unpack
from codec.checkpoint import load_checkpoint
from codec.engine.objectives import rd_loss
from codec.gain import GainUnits
from codec.registry import create_codec
from codec.train import run as train_run
from tests.conftest import live_latents, tiny_config

REPO = Path(__file__).resolve().parents[1]
RATES = [0.002, 0.008, 0.032]
FAMILIES = ["student_tiny", "vmuc_tiny", "factorized", "hyperprior", "mean_scale_hyperprior"]
FAST = ["trainer.batch_size=3", "data.crop_size=64", "trainer.log_every=1", "trainer.progress=false",
        "trainer.checkpoint_every=0", "data.max_eval_images=1", "logger=none", "trainer.lr_decay_at=[]"]


def vr(name: str, rates=RATES):
    return create_codec(name, rates=rates, **(tiny_config(name) or {}))


def compose_cfg(config: str, overrides: list[str]):
    with initialize_config_module(config_module="conf", version_base=None):
        return compose(config, overrides=overrides)


# ------------------------------------------------------------------------------- gain units
def test_gains_interpolate_exponentially_between_trained_points():
    g = GainUnits(RATES, 4)
    with torch.no_grad():
        g.log_gain.copy_(torch.log(torch.tensor([[1.0, 2, 3, 4], [4, 8, 12, 16], [16, 2, 1, 0.5]])))
    y = torch.ones(4, 4, 1, 1)
    out = g(y, torch.tensor([0.0, 1.0, 0.5, 1.75]))[..., 0, 0]
    torch.testing.assert_close(out[0], torch.tensor([1.0, 2, 3, 4]))
    torch.testing.assert_close(out[1], torch.tensor([4.0, 8, 12, 16]))
    torch.testing.assert_close(out[2], torch.tensor([2.0, 4, 6, 8]))  # sqrt(g0 * g1)
    torch.testing.assert_close(out[3], torch.tensor([4 ** 0.25 * 16 ** 0.75, 8 ** 0.25 * 2 ** 0.75,
                                                     12 ** 0.25, 16 ** 0.25 * 0.5 ** 0.75]))


def test_gains_start_at_the_square_root_of_the_lambda_ratio():
    g = GainUnits(RATES, 3)
    torch.testing.assert_close(g.log_gain.exp()[:, 0], torch.tensor([0.5, 1.0, 2.0]))
    torch.testing.assert_close(g.log_inverse_gain.exp()[:, 0], torch.tensor([2.0, 1.0, 0.5]))


@pytest.mark.parametrize("rates, match", [([0.01], "at least 2"), ([0.01, 0.01], "strictly increasing"),
                                          ([0.02, 0.01], "strictly increasing"), ([-1, 0.01], "positive"),
                                          ("0.01", "list"), (["a", "b"], "numbers")])
def test_bad_rates_are_refused(rates, match):
    with pytest.raises(ValueError, match=match):
        create_codec("student_tiny", rates=rates, **tiny_config("student_tiny"))


def test_without_rates_a_codec_is_exactly_the_fixed_rate_one():
    fixed = create_codec("student_dw_ckbd")
    assert "rates" not in fixed.config and fixed.rates is None
    assert not any("gain" in k for k in fixed.state_dict())
    # hash of the zoo config measured before variable rate existed (commit a50779c)
    assert fixed.config_hash().hex() == "2d176109903d535d"
    model = create_codec("student_dw_ckbd", rates=[0.0018, 0.0035, 0.0067, 0.013])
    assert model.config["rates"] == [0.0018, 0.0035, 0.0067, 0.013]
    assert {k for k in model.state_dict() if "gain" in k} == {"gain.log_gain", "gain.log_inverse_gain"}
    assert model.gain.log_gain.shape == (4, 160)


# ------------------------------------------------------------------------------- coding
@pytest.mark.parametrize("name", FAMILIES)
def test_every_rate_round_trips_and_the_header_carries_it(name, smooth_image):
    torch.manual_seed(0)
    model = live_latents(vr(name)).eval()
    x = smooth_image(40, 72)
    for rate in (0, 0.5, 1.25, 2):
        data = model.compress(x, rate=rate)
        header, _ = unpack(data)
        assert data[4] == 3 and header.rate == rate
        ref, _ = model.reconstruct(x, rate=rate)
        assert torch.equal(model.decompress(data), ref)


def test_streams_of_earlier_format_versions_still_decode(smooth_image):
    """Versions 1 (fixed rate) and 2 (variable rate) coded Gaussian symbols one by one under
    QuantizedGaussian; this build writes version 3 (tables by scale index) and reads all three."""
    from codec.bitstream import Header, pack

    torch.manual_seed(0)
    x = smooth_image(40, 72)
    for model, rate, version in ((live_latents(create_codec("hyperprior", N=8, M=8)).eval(), None, 1),
                                 (live_latents(vr("student_tiny")).eval(), 1.5, 2)):
        recorder, _ = model.encode_symbols(x, rate)
        infos, payloads = recorder.to_streams(legacy_gaussian=True)
        old = pack(Header(model.registry_name, model.config_hash(), 40, 72, tuple(infos), recorder.symbol_crc(),
                          rate, None, version), payloads)
        new = model.compress(x, rate=rate)
        assert old[4] == version and new[4] == 3 and old != new
        ref, _ = model.reconstruct(x, rate=rate)
        assert torch.equal(model.decompress(old), ref) and torch.equal(model.decompress(new), ref)
        # an old payload read as version 3 (or a new one as version 1) fails a check instead of decoding wrongly
        with pytest.raises(BitstreamError):
            model.decompress(pack(Header(model.registry_name, model.config_hash(), 40, 72, tuple(infos),
                                         recorder.symbol_crc(), rate, None, 3), payloads))
    with pytest.raises(ValueError, match="version 1 cannot carry"):
        pack(Header("x", b"\0" * 8, 1, 1, (), 0, 1.0, None, 1), [])


def test_larger_gains_give_more_bytes_at_every_rate_step(smooth_image):
    torch.manual_seed(0)
    model = live_latents(vr("hyperprior", [0.001, 0.004, 0.016, 0.064])).eval()
    with torch.no_grad():  # gains 1/4, 1, 4, 16: a strictly finer quantization of y at each point
        model.gain.log_gain.copy_(torch.log(torch.tensor([0.25, 1, 4, 16]))[:, None].expand_as(model.gain.log_gain))
    x = smooth_image(64, 64)
    sizes = [len(model.compress(x, rate=r)) for r in (0, 0.5, 1, 1.5, 2, 2.5, 3)]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)


def test_rates_are_checked_on_both_sides(smooth_image):
    model = vr("student_tiny").eval()
    x = smooth_image(40, 40)
    for bad in (-0.1, 2.01, math.nan, "a"):
        with pytest.raises(ValueError, match="rate"):
            model.compress(x, rate=bad)
    with pytest.raises(ValueError, match="variable-rate model"):
        model.compress(x)
    fixed = create_codec("student_tiny", **tiny_config("student_tiny")).eval()
    with pytest.raises(ValueError, match="fixed-rate model"):
        fixed.compress(x, rate=1)
    data = bytearray(model.compress(x, rate=1))
    with pytest.raises(BitstreamError, match="another architecture config"):  # rates are part of the config
        fixed.decompress(bytes(data))
    # a header claiming rate 7 (its CRC fixed up) is refused before decoding
    header_end = data.index(struct.pack("<f", 1.0)) + 4
    data[header_end - 4:header_end] = struct.pack("<f", 7.0)
    import zlib
    data[header_end:header_end + 4] = struct.pack("<I", zlib.crc32(bytes(data[:header_end])))
    with pytest.raises(BitstreamError, match=r"rate 7.0 is outside \[0, 2\]"):
        model.decompress(bytes(data))


def test_every_truncation_and_flip_of_a_variable_rate_stream_is_an_error(smooth_image):
    torch.manual_seed(0)
    model = live_latents(vr("hyperprior")).eval()
    data = model.compress(smooth_image(40, 40), rate=1.5)
    header_len = len(data) - sum(s.length for s in unpack(data)[0].streams)
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            model.decompress(data[:n])
    for bit in range(8 * header_len):
        flipped = bytearray(data)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(BitstreamError):
            model.decompress(bytes(flipped))


def test_cli_rate(tmp_path, smooth_image):
    from codec.checkpoint import save_checkpoint
    from codec.image import to_uint8, write_png

    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "vr.ckpt", live_latents(vr("student_tiny")))
    fixed = save_checkpoint(tmp_path / "fixed.ckpt", create_codec("student_tiny", **tiny_config("student_tiny")))
    write_png(tmp_path / "in.png", to_uint8(smooth_image(48, 64)))

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "codec", *map(str, args)], capture_output=True, text=True,
                              cwd=REPO, timeout=300)

    r = cli("compress", tmp_path / "in.png", tmp_path / "a.bin", "--checkpoint", ckpt, "--rate", "0.5")
    assert r.returncode == 0 and "at rate 0.5" in r.stdout, r.stderr
    assert unpack((tmp_path / "a.bin").read_bytes())[0].rate == 0.5
    r = cli("decompress", tmp_path / "a.bin", tmp_path / "a.png", "--checkpoint", ckpt)
    assert r.returncode == 0, r.stderr
    r = cli("compress", tmp_path / "in.png", tmp_path / "d.bin", "--checkpoint", ckpt)
    assert r.returncode == 0 and unpack((tmp_path / "d.bin").read_bytes())[0].rate == 1.0  # the middle point
    for args, match in (((ckpt, "--rate", "3"), "outside [0, 2]"), ((fixed, "--rate", "1"), "fixed-rate model")):
        r = cli("compress", tmp_path / "in.png", tmp_path / "bad.bin", "--checkpoint", *args)
        assert r.returncode == 2 and match in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not (tmp_path / "bad.bin").exists()


# ------------------------------------------------------------------------------- training
def test_per_crop_lambdas_give_the_fixed_rate_loss_when_they_are_equal(smooth_image):
    torch.manual_seed(0)
    model = create_codec("hyperprior", N=8, M=8).train()
    x = torch.cat([smooth_image(64, 64, seed=s) for s in range(3)])
    out = model(x)
    for cfg in ({"lmbda": 0.01, "distortion": "rgb_mse"},
                {"lmbda": 0.01, "distortion": "ycbcr_mse", "ycbcr_weights": [6, 1, 1], "ms_ssim_weight": 0.0}):
        a = rd_loss(out, x, cfg)
        b = rd_loss(out, x, cfg, lmbda=torch.full((3,), 0.01))
        for k in ("loss", "bpp", "distortion", "bpp_y", "bpp_z"):
            torch.testing.assert_close(a[k], b[k])
    # unequal lambdas: the mean of each crop's own R + lambda * 255^2 * D, computed here by hand
    lm = torch.tensor([0.001, 0.01, 0.1])
    b = rd_loss(out, x, {"lmbda": 0.5, "distortion": "rgb_mse"}, lmbda=lm)
    per_crop = [rd_loss({"x_hat": out["x_hat"][i:i + 1], "likelihoods": {k: v[i:i + 1] for k, v in out["likelihoods"].items()}},
                        x[i:i + 1], {"lmbda": float(lm[i]), "distortion": "rgb_mse"})["loss"] for i in range(3)]
    torch.testing.assert_close(b["loss"], torch.stack(per_crop).mean())


@pytest.fixture(scope="module")
def vr_student(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("vr")
    cfg = compose_cfg("train_student", ["codec=student_tiny", f"codec.rates={RATES}", *FAST, "trainer.max_steps=4",
                                        "trainer.val_every=4"])
    summary = train_run(cfg, d)
    return d, summary


def test_training_validates_every_trained_point_and_resumes_exactly(vr_student, tmp_path):
    d, summary = vr_student
    val = summary["val"]
    for i in range(3):
        assert {f"bpp@{i}", f"psnr_rgb@{i}", f"psnr_ycbcr@{i}"} <= set(val)
    assert math.isclose(val["bpp"], sum(val[f"bpp@{i}"] for i in range(3)) / 3)
    model, blob = load_checkpoint(d / "last.ckpt")
    assert model.rates == tuple(RATES)
    cfg = lambda n: compose_cfg("train_student", ["codec=student_tiny", f"codec.rates={RATES}", *FAST,  # noqa: E731
                                                  f"trainer.max_steps={n}", "trainer.val_every=0"])
    train_run(cfg(2), tmp_path / "split")
    assert train_run(cfg(4), tmp_path / "split")["resumed_from"] == 2

    def losses(run):
        return [(r["step"], r["loss"]) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
                if "loss" in r]

    assert losses(tmp_path / "split") == losses(d)


def test_profiler_counts_gains_as_free_and_says_so():
    from profiling.counter import profile_codec

    model = vr("student_tiny")
    fixed = create_codec("student_tiny", **tiny_config("student_tiny"))
    a, b = profile_codec(model, (128, 128), wall_runs=0), profile_codec(fixed, (128, 128), wall_runs=0)
    for side in ("encoder", "decoder"):
        assert a[side]["kmac_per_px"] == b[side]["kmac_per_px"]
        assert a[side]["parts"]["gain"]["kmac_per_px"] == 0 and a[side]["parts"]["gain"]["calls"] == 1
    assert any("gain units" in n and "free" in n for n in a["notes"])


# ------------------------------------------------------------------------------- distill, prune, bench
def test_distillation_asks_the_teacher_for_the_students_rate(vr_student, tmp_path):
    from distill.run import run as distill_run
    from distill.cache import CacheMismatch
    from distill.teacher import RateMismatch

    d, _ = vr_student
    over = [*FAST, "trainer.max_steps=2", "trainer.val_every=0", "distill.gate.before_training=false",
            "distill.gate.after_training=false", "distill/loss=full", "distill.loss.latent=0", "distill.loss.entropy=0"]
    # a variable-rate student from a variable-rate teacher with the same points: runs
    s = distill_run(compose_cfg("distill", [*over, "codec=student_tiny", f"codec.rates={RATES}", f"teacher={d / 'last.ckpt'}"]),
                    tmp_path / "vr")
    assert s["steps"] == 2
    # other points: refused
    with pytest.raises(RateMismatch, match="same rates"):
        distill_run(compose_cfg("distill", [*over, "codec=student_tiny", "codec.rates=[0.001,0.002]",
                                            f"teacher={d / 'last.ckpt'}"]), tmp_path / "x")
    # a fixed-rate student at one of the teacher's lambdas: the teacher runs at that point
    s = distill_run(compose_cfg("distill", [*over, "codec=student_tiny", "loss.beta=0.032", f"teacher={d / 'last.ckpt'}"]),
                    tmp_path / "fixed")
    assert s["steps"] == 2
    with pytest.raises(RateMismatch, match="none of them"):
        distill_run(compose_cfg("distill", [*over, "codec=student_tiny", "loss.beta=0.05", f"teacher={d / 'last.ckpt'}"]),
                    tmp_path / "y")
    with pytest.raises(CacheMismatch, match="variable-rate student"):
        distill_run(compose_cfg("distill", [*over, "codec=student_tiny", f"codec.rates={RATES}", f"teacher={d / 'last.ckpt'}",
                                            f"distill.cache={tmp_path / 'cache'}"]), tmp_path / "z")


def test_teacher_runs_at_each_crops_rate(vr_student):
    from distill.objective import Distillation, kd_weights
    from distill.teacher import load_teacher, teacher_outputs

    d, _ = vr_student
    teacher, _ = load_teacher(d / "last.ckpt")
    x = torch.rand(3, 3, 64, 64)
    both = teacher_outputs(teacher, x, [], torch.tensor([0.0, 2.0, 1.0]))["y"]
    for i, r in enumerate((0, 2, 1)):
        torch.testing.assert_close(both[i:i + 1], teacher_outputs(teacher, x[i:i + 1], [], r)["y"])


def test_prune_takes_a_variable_rate_student(vr_student, tmp_path):
    from prune.run import run as prune_run

    d, _ = vr_student
    model, _ = load_checkpoint(d / "last.ckpt")
    from profiling.counter import profile_codec

    dec = profile_codec(model, (128, 128), wall_runs=0)["decoder"]["kmac_per_px"]
    base = ["prune.steps=1", "prune.finetune_steps=1", *FAST, "trainer.val_every=0", "target.resolution=128x128",
            f"checkpoint={d / 'last.ckpt'}"]
    s = prune_run(compose_cfg("prune", [*base, f"target.decoder_kmac={0.9 * dec}"]), tmp_path / "p")
    pruned, _ = load_checkpoint(tmp_path / "p" / "last.ckpt")
    assert pruned.rates == tuple(RATES) and s["rows"][-1]["decoder_kmac_per_px"] <= 0.9 * dec
    assert pruned.decompress(pruned.compress(torch.rand(1, 3, 64, 64), rate=1.5)).shape == (1, 3, 64, 64)
    # prune.latent=true: the latent shrinks and each rate's gains go with the removed channels
    prune_run(compose_cfg("prune", [*base, "prune.latent=true", "prune.round_to=2", f"target.decoder_kmac={0.8 * dec}"]),
              tmp_path / "q")
    cut, _ = load_checkpoint(tmp_path / "q" / "last.ckpt")
    assert cut.rates == tuple(RATES) and cut.latent < model.latent
    assert cut.gain.log_gain.shape == (len(RATES), cut.latent)
    assert cut.decompress(cut.compress(torch.rand(1, 3, 64, 64), rate=1.5)).shape == (1, 3, 64, 64)


def test_bench_draws_one_curve_from_one_checkpoint(vr_student, tmp_path):
    from bench.measure import BenchError, measure_learned, resolve_learned
    from codec.data import builtin_images
    from bench.measure import load_eval_set

    d, _ = vr_student
    images, _ = load_eval_set("builtin", 1)
    curve = resolve_learned([str(d / "last.ckpt")])[0]
    points, rows = measure_learned(curve, images, warmup=False, progress=False)
    assert [p["rate"] for p in points] == [0, 0.5, 1, 1.5, 2]
    assert [p["lmbda"] for p in points][::2] == pytest.approx(RATES)
    assert points[1]["lmbda"] == pytest.approx(math.sqrt(RATES[0] * RATES[1]))
    points, rows = measure_learned(curve, images, warmup=False, progress=False, rates=[2, 0.25])
    assert [p["rate"] for p in points] == [2, 0.25] and len(rows) == 2
    with pytest.raises(BenchError, match="outside"):
        measure_learned(curve, images, warmup=False, progress=False, rates=[5])


def test_variable_rate_summary_on_constructed_curves(tmp_path):
    from bench.variable_rate import main, monotone_in_rate

    def result(name, bpps, psnrs, rates=None):
        rows = [{"image": im, "rate": None if rates is None else rates[i], "bpp": b * (1 + k), "rate_point": i}
                for i, b in enumerate(bpps) for k, im in enumerate(("a", "b"))]
        return {"name": name, "command": f"bench {name}", "images": rows,
                "rate_points": [{"rate": None if rates is None else r, "lmbda": 0.01, "checkpoint": None}
                                for r in (rates or [None] * len(bpps))],
                "results": {"bpp": bpps, "psnr-rgb": psnrs, "psnr-ycbcr": [q + 3 for q in psnrs],
                            "ms-ssim-rgb": [0.9] * len(bpps)}}

    fixed = result("fixed", [0.1, 0.2, 0.4, 0.8], [28.0, 31.0, 34.0, 37.0])
    variable = result("variable", [0.09, 0.18, 0.36, 0.72], [28.0, 31.0, 34.0, 37.0], rates=[0, 1, 2, 3])
    (tmp_path / "v.json").write_text(json.dumps(variable))
    (tmp_path / "f.json").write_text(json.dumps(fixed))
    assert main([str(tmp_path / "v.json"), str(tmp_path / "f.json")]) == 0
    s = json.loads((tmp_path / "variable_rate.json").read_text())
    for key in ("psnr-rgb/pchip", "psnr-rgb/cubic", "psnr-ycbcr/pchip"):
        assert s["bd_against_fixed"][key]["bd_rate"] == pytest.approx(-10.0)  # every rate times 0.9
    assert s["all_images_monotone"] is True
    rows = variable["images"] + [{"image": "c", "rate": 0, "bpp": 0.5}, {"image": "c", "rate": 1, "bpp": 0.5}]
    assert monotone_in_rate(rows) == {"a": True, "b": True, "c": False}
    with pytest.raises(ValueError, match="no rate"):
        monotone_in_rate(fixed["images"])
    assert main([str(tmp_path / "f.json"), str(tmp_path / "f.json")]) == 2


def test_init_from_a_fixed_rate_checkpoint_with_rates_gives_a_variable_rate_model(tmp_path):
    from codec.checkpoint import CheckpointError, save_checkpoint
    from codec.engine.checkpoints import model_from_checkpoint

    torch.manual_seed(0)
    fixed = create_codec("student_tiny", **tiny_config("student_tiny"))
    ckpt = save_checkpoint(tmp_path / "fixed.ckpt", fixed)
    model, prov = model_from_checkpoint(ckpt, rates=RATES)
    assert model.rates == tuple(RATES) and prov["init_from_rates"] == RATES
    for k, v in fixed.state_dict().items():
        assert torch.equal(model.state_dict()[k], v)
    vr_ckpt = save_checkpoint(tmp_path / "vr.ckpt", model)
    with pytest.raises(CheckpointError, match="does not contain them all"):
        model_from_checkpoint(vr_ckpt, rates=[0.001, 0.002])
    assert model_from_checkpoint(vr_ckpt)[0].rates == tuple(RATES)
    cfg = compose_cfg("train_student", ["codec=student_tiny", f"codec.rates={RATES}", *FAST, "trainer.max_steps=1",
                                        "trainer.val_every=0", f"trainer.init_from={ckpt}"])
    train_run(cfg, tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "last.ckpt")[0].rates == tuple(RATES)


def test_init_from_a_variable_rate_checkpoint_adds_rate_points(tmp_path):
    """Extending a variable-rate model's rates keeps its weights and its gains at its own rates;
    a new rate starts from the nearest trained point's gains times sqrt(new / nearest)."""
    import math

    from codec.checkpoint import save_checkpoint
    from codec.engine.checkpoints import model_from_checkpoint

    torch.manual_seed(0)
    vr = create_codec("student_tiny", **{**tiny_config("student_tiny"), "rates": RATES})
    with torch.no_grad():  # trained gains differ per channel, unlike their start
        vr.gain.log_gain.add_(0.1 * torch.randn_like(vr.gain.log_gain))
        vr.gain.log_inverse_gain.add_(0.1 * torch.randn_like(vr.gain.log_inverse_gain))
    ckpt = save_checkpoint(tmp_path / "vr.ckpt", vr)
    wider = [RATES[0] / 2, *RATES, RATES[-1] * 4]
    model, prov = model_from_checkpoint(ckpt, rates=wider)
    assert model.rates == tuple(wider) and prov["init_from_rates"] == wider
    for k, v in vr.state_dict().items():
        if not k.startswith("gain."):
            assert torch.equal(model.state_dict()[k], v), k
    g, ig = model.gain.log_gain, model.gain.log_inverse_gain
    for i in range(len(RATES)):
        assert torch.equal(g[i + 1], vr.gain.log_gain[i]) and torch.equal(ig[i + 1], vr.gain.log_inverse_gain[i])
    torch.testing.assert_close(g[0], vr.gain.log_gain[0] + 0.5 * math.log(0.5))
    torch.testing.assert_close(ig[-1], vr.gain.log_inverse_gain[-1] - 0.5 * math.log(4.0))
    # the new top point codes at more bits than the old top one, the new bottom one at fewer
    from tests.conftest import live_latents

    live_latents(model.eval())
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 9, 9), size=(64, 64), mode="bilinear")
    sizes = [len(model.compress(x, rate=r)) for r in range(len(wider))]
    assert sizes[-1] > sizes[-2] and sizes[0] < sizes[1], sizes
