"""Distillation: KD terms, the objective on the engine, the teacher-output cache, the command,
sweeps (multirun + wandb groups, summary, Optuna, submitit)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from codec.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from codec.registry import create_codec
from codec.train import run as train_run
from distill.cache import CacheMismatch, TeacherCache, build_cache
from distill.losses import Adapter, entropy_kd, feature_kd, latent_kd, log_scales, output_kd
from distill.objective import Distillation, kd_weights, probe_channels
from distill.run import GateFailed, run
from distill.teacher import RateMismatch, load_teacher

REPO = Path(__file__).resolve().parents[1]
FAST = ["trainer.batch_size=2", "data.crop_size=64", "trainer.val_every=0", "trainer.log_every=1",
        "trainer.progress=false", "trainer.checkpoint_every=0", "data.max_eval_images=1", "logger=none",
        "distill.gate.before_training=false", "distill.gate.after_training=false"]


def compose_distill(overrides: list[str]):
    with initialize_config_module(config_module="conf", version_base=None):
        return compose("distill", overrides=overrides)


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    """A vmuc_tiny teacher trained a few steps at beta 0.0067 (the student default's rate point)."""
    d = tmp_path_factory.mktemp("teacher")
    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose("teacher", overrides=["codec=vmuc_tiny", "trainer.max_steps=3", "trainer.batch_size=2",
                                            "data.crop_size=64", "trainer.val_every=0", "trainer.progress=false",
                                            "logger=none"])
    train_run(cfg, d)
    return d / "last.ckpt"


# ------------------------------------------------------------------------------- KD terms
def test_each_kd_term_is_zero_on_equal_outputs_and_positive_otherwise():
    g = torch.Generator().manual_seed(0)
    x, y, s = torch.rand(2, 3, 16, 16, generator=g), torch.randn(2, 5, 4, 4, generator=g), torch.rand(2, 5, 4, 4, generator=g) + 0.2
    cfg = OmegaConf.create({"distortion": "ycbcr_mse", "ycbcr_weights": [6, 1, 1]})
    assert output_kd(x, x, cfg) == 0 and output_kd(x, x.flip(-1), cfg) > 0
    assert latent_kd(y, y) == 0 and latent_kd(y, y + 0.1) > 0
    assert entropy_kd(y, log_scales(s), y, s) == 0
    assert entropy_kd(y + 0.1, log_scales(s), y, s) > 0 and entropy_kd(y, log_scales(s * 2), y, s) > 0
    assert entropy_kd(None, log_scales(s), None, s) == 0  # a teacher without means: log-scales only
    assert feature_kd(y, y) == 0 and feature_kd(y, -y) > 0


def test_output_kd_is_measured_in_the_loss_space():
    """YCbCr 6:1:1: an error in luma costs 6x an error of the same size in Cr."""
    from codec.image import rgb_to_ycbcr, ycbcr_to_rgb

    cfg = OmegaConf.create({"distortion": "ycbcr_mse", "ycbcr_weights": [6, 1, 1]})
    base = rgb_to_ycbcr(torch.full((1, 3, 8, 8), 0.5))
    luma, cr = base.clone(), base.clone()
    luma[:, 0] += 0.01
    cr[:, 2] += 0.01
    ref = ycbcr_to_rgb(base)
    ratio = output_kd(ycbcr_to_rgb(luma), ref, cfg) / output_kd(ycbcr_to_rgb(cr), ref, cfg)
    assert ratio == pytest.approx(6.0, rel=1e-3)


def test_adapter_maps_channels_and_grid():
    a = Adapter(4, 7)
    assert a(torch.rand(2, 4, 8, 8), (16, 16)).shape == (2, 7, 16, 16)
    assert a(torch.rand(2, 4, 8, 8), (4, 4)).shape == (2, 7, 4, 4)
    same = Adapter(4, 4)
    x = torch.rand(1, 4, 5, 5)
    assert torch.equal(same(x, (5, 5)), x) and not list(same.parameters())


@pytest.mark.parametrize("node,match", [({"gt": 0}, "gt must be > 0"), ({"gt": 1, "latent": -1}, "latent must be >= 0"),
                                        ({"gt": 1, "latnet": 1}, "unknown keys")])
def test_bad_weights_are_refused(node, match):
    with pytest.raises(ValueError, match=match):
        kd_weights(node)


# ------------------------------------------------------------------------------- objective
def test_none_preset_is_exactly_the_scratch_objective():
    from codec.engine import RateDistortion

    torch.manual_seed(0)
    model = create_codec("student_tiny").train()
    loss_cfg = OmegaConf.create({"distortion": "ycbcr_mse", "ycbcr_weights": [6, 1, 1], "lmbda": 0.0067})
    kd = Distillation(loss_cfg, kd_weights({"gt": 1.0}), model, None)
    x = torch.rand(2, 3, 64, 64)
    torch.manual_seed(5)
    a = kd(model, x)["loss"]
    torch.manual_seed(5)
    assert torch.equal(a, RateDistortion(loss_cfg)(model, x)["loss"])
    assert not list(kd.parameters())


def test_cached_step_gives_the_live_teacher_loss_on_the_same_crops(teacher_ckpt, tmp_path):
    teacher, info = load_teacher(teacher_ckpt)
    data = {"train_dir": None, "crop_size": 64}
    build_cache(str(teacher_ckpt), data, crops=6, out_dir=tmp_path / "cache", features=["g_s_y.1"], progress=False)
    cache = TeacherCache(tmp_path / "cache")
    cache.check(teacher=info, lmbda=0.0067, crop_size=64, train_dir=None, features=["g_s_y.1"])
    batch = cache.batches(3)(0, torch.Generator().manual_seed(1))
    loss_cfg = OmegaConf.create({"distortion": "ycbcr_mse", "ycbcr_weights": [6, 1, 1], "lmbda": 0.0067})
    weights = kd_weights({"gt": 0.6, "output": 0.2, "latent": 0.2, "entropy": 0.1, "feature": 0.1})
    torch.manual_seed(0)
    student = create_codec("student_tiny").train()
    torch.manual_seed(1)
    live = Distillation(loss_cfg, weights, student, probe_channels(teacher, ["g_s_y.1"]), teacher=teacher,
                        features={"g_s.2": "g_s_y.1"})
    torch.manual_seed(1)
    cached = Distillation(loss_cfg, weights, student, cache.channels(), features={"g_s.2": "g_s_y.1"})
    torch.manual_seed(7)
    a = live(student, batch["x"])
    torch.manual_seed(7)
    b = cached(student, batch)
    for key in ("kd_output", "kd_latent", "kd_entropy", "kd_feature", "loss"):
        assert a[key] > 0
        torch.testing.assert_close(b[key], a[key], rtol=2e-3, atol=1e-4, msg=key)  # float16 storage


def test_foreign_cache_is_refused_naming_the_difference(teacher_ckpt, tmp_path):
    build_cache(str(teacher_ckpt), {"train_dir": None, "crop_size": 64}, crops=2, out_dir=tmp_path / "c",
                progress=False)
    cache = TeacherCache(tmp_path / "c")
    _, info = load_teacher(teacher_ckpt)
    other = create_codec("vmuc_tiny")
    save_checkpoint(tmp_path / "other.ckpt", other, meta={"config": {"loss": {"lmbda": 0.0067}}})
    _, other_info = load_teacher(tmp_path / "other.ckpt")
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    Image.new("RGB", (80, 80), (10, 20, 30)).save(photos / "a.png")
    cases = [(dict(teacher=other_info), "is not the cache's"), (dict(lmbda=0.013), "rate point"),
             (dict(crop_size=128), "crop size"), (dict(train_dir=str(photos)), "other images"),
             (dict(features=["g_s_y.0"]), "not cached")]
    for change, match in cases:
        kw = dict(teacher=info, lmbda=0.0067, crop_size=64, train_dir=None, features=[]) | change
        with pytest.raises(CacheMismatch, match=match):
            cache.check(**kw)
    with pytest.raises(CacheMismatch, match="not a complete teacher cache"):
        TeacherCache(tmp_path / "photos")


# ------------------------------------------------------------------------------- runs
def test_distilled_checkpoint_has_exactly_a_scratch_students_keys(teacher_ckpt, tmp_path):
    over = [*FAST, "codec=student_tiny", "trainer.max_steps=3", f"teacher={teacher_ckpt}"]
    run(compose_distill([*over, "distill/loss=full", "distill.loss.entropy=0.1"]), tmp_path / "kd")
    run(compose_distill([*over, "distill/loss=none"]), tmp_path / "none")
    kd, scratch = read_checkpoint(tmp_path / "kd" / "last.ckpt"), read_checkpoint(tmp_path / "none" / "last.ckpt")
    assert set(kd) == set(scratch)
    assert set(kd["state_dict"]) == set(scratch["state_dict"]) == set(create_codec("student_tiny").state_dict())
    state = torch.load(tmp_path / "kd" / "last.state", weights_only=True)
    assert any(k.startswith("latent_adapter") for k in state["objective"])  # the adapters were real, and trained
    assert kd["meta"]["teacher_sha256"] and kd["meta"]["distill_loss"]["name"] == "full"


def test_resumed_distillation_follows_the_uninterrupted_curve(teacher_ckpt, tmp_path):
    over = [*FAST, "codec=student_tiny", f"teacher={teacher_ckpt}", "distill/loss=full", "trainer.lr_decay_at=[]"]
    run(compose_distill([*over, "trainer.max_steps=6"]), tmp_path / "straight")
    run(compose_distill([*over, "trainer.max_steps=3"]), tmp_path / "split")
    assert run(compose_distill([*over, "trainer.max_steps=6"]), tmp_path / "split")["resumed_from"] == 3

    def losses(d):
        return [(r["step"], r["loss"], r["kd_latent"]) for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]

    assert losses(tmp_path / "split") == losses(tmp_path / "straight")


def test_rate_mismatch_and_bad_teachers_are_refused(teacher_ckpt, tmp_path):
    over = [*FAST, "codec=student_tiny", "trainer.max_steps=1"]
    with pytest.raises(RateMismatch, match=r"lmbda/beta=0.0067, the student at 0.013"):
        run(compose_distill([*over, f"teacher={teacher_ckpt}", "loss.beta=0.013"]), tmp_path / "a")
    run(compose_distill([*over, f"teacher={teacher_ckpt}", "loss.beta=0.013", "distill.allow_rate_mismatch=true"]),
        tmp_path / "b")
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    for teacher, match in ((tmp_path / "missing.ckpt", "does not exist"), (tmp_path / "junk.ckpt", "not a readable")):
        with pytest.raises(CheckpointError, match=match):
            run(compose_distill([*over, f"teacher={teacher}"]), tmp_path / "c")


def test_cli_gives_one_line_errors(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "distill", f"teacher={tmp_path / 'nope.ckpt'}", "codec=student_tiny", *FAST,
           f"hydra.run.dir={tmp_path / 'run'}"]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"distill: checkpoint {tmp_path / 'nope.ckpt'} does not exist"]


def test_a_student_that_fails_the_gate_is_refused_before_training(tmp_path):
    over = [*FAST, "codec=student_dw_ckbd", "+codec.layer_widths.g_s=[64,128,256,512]", "trainer.max_steps=1",
            "distill/loss=none", "distill.gate.before_training=true"]
    with pytest.raises(GateFailed, match="fails the 35x gate"):
        run(compose_distill(over), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_multirun_makes_one_wandb_run_per_job_in_one_group_and_the_summary_reads_them(teacher_ckpt, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    fast = [o for o in FAST if o != "logger=none"]
    cmd = [sys.executable, "-m", "distill", "-m", f"teacher={teacher_ckpt}", "codec=student_tiny",
           "distill/loss=none,full", "trainer.max_steps=2", *fast, "trainer.val_every=2",
           "distill.gate.after_training=true", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if (p / "summary.json").exists())
    assert len(jobs) == 2
    groups = {json.loads((j / "summary.json").read_text())["wandb_group"] for j in jobs}
    assert groups == {"sweep"}
    for j in jobs:
        runs = list((j / "wandb").glob("offline-run-*"))
        assert len(runs) == 1
        assert b"sweep" in next(runs[0].glob("*.wandb")).read_bytes()  # the group is in the run's record
    out = subprocess.run([sys.executable, "-m", "distill.summary", str(tmp_path / "sweep")], check=True, env=env,
                         capture_output=True, text=True, timeout=120)
    rows = json.loads((tmp_path / "sweep" / "distill_summary.json").read_text())
    assert sorted(r["preset"] for r in rows) == ["full", "none"]
    full = next(r for r in rows if r["preset"] == "full")
    assert full["gate_passed"] is True and full["decoder_kmac_per_px"] > 0
    assert set(full["gain_over_none"]) >= {"d_psnr_ycbcr", "d_bpp", "rd_loss_change"}
    assert "| full |" in out.stdout


def test_optuna_study_of_two_trials_on_tiny_models(teacher_ckpt, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "distill", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
           "hydra.sweeper.n_jobs=1", "hydra.sweeper.direction=minimize", "hydra.sweeper.sampler.seed=0",
           "distill.loss.latent=interval(0.0,0.5)", f"teacher={teacher_ckpt}", "codec=student_tiny",
           "trainer.max_steps=2", *FAST, "trainer.val_every=2", f"hydra.sweep.dir={tmp_path / 'study'}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    best = OmegaConf.load(tmp_path / "study" / "optimization_results.yaml")
    assert 0.0 <= best.best_params["distill.loss.latent"] <= 0.5 and best.best_value > 0


def test_submitit_local_launcher_runs_a_job(teacher_ckpt, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "distill", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
           f"teacher={teacher_ckpt}", "codec=student_tiny", "distill/loss=full", "trainer.max_steps=2", *FAST,
           f"hydra.sweep.dir={tmp_path / 'slurm'}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=600)
    assert list((tmp_path / "slurm").rglob("last.ckpt"))


def test_train_speed_measures_scratch_live_and_cached_distillation_side_by_side(teacher_ckpt, tmp_path):
    from bench.train_speed import main as speed_main

    out = tmp_path / "speed.json"
    assert speed_main(["student_tiny", "--teacher", str(teacher_ckpt), "--rounds", "1", "--steps", "1",
                       "--batch-size", "2", "--crop", "64", "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["codecs"]
    assert list(rows) == ["student_tiny", "student_tiny+kd-live", "student_tiny+kd-cache"]
    assert all(r["steps_per_s"] > 0 for r in rows.values())


def test_with_a_cache_every_preset_trains_on_the_cached_crops(teacher_ckpt, tmp_path, monkeypatch):
    """So the runs of a sweep see the same batches and differ only in their objective."""
    build_cache(str(teacher_ckpt), {"train_dir": None, "crop_size": 64}, crops=4, out_dir=tmp_path / "c",
                progress=False)
    seen = []
    real = Distillation.forward

    def spy(self, model, batch):
        seen.append(batch["x"].clone() if isinstance(batch, dict) else None)
        return real(self, model, batch)

    monkeypatch.setattr(Distillation, "forward", spy)
    over = [*FAST, "codec=student_tiny", "trainer.max_steps=2", f"teacher={teacher_ckpt}", f"distill.cache={tmp_path / 'c'}"]
    summaries = [run(compose_distill([*over, f"distill/loss={p}"]), tmp_path / p) for p in ("none", "full")]
    assert all(s["teacher_cache"] == str(tmp_path / "c") for s in summaries)
    assert all(x is not None for x in seen)
    cached = torch.from_numpy(TeacherCache(tmp_path / "c").arrays["x"][:]).float() / 255
    for x in seen:  # every batch is made of cached crops
        assert all(any(torch.equal(crop, c) for c in cached) for crop in x)
    assert torch.equal(seen[0], seen[2]) and torch.equal(seen[1], seen[3])  # none and full: the same batches
