"""The training engine: exact resume after SIGKILL, NaN guard, real bits vs the estimate."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from codec.checkpoint import load_checkpoint, read_checkpoint
from codec.image import pad_to_stride, read_image, to_tensor
from codec.engine import RateDistortion
from codec.train import TrainingDiverged, run

REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(**over) -> OmegaConf:
    cfg = OmegaConf.create({
        "codec": {"name": "hyperprior", "N": 8, "M": 8}, "seed": 0,
        "data": {"train_dir": None, "eval_dir": None, "crop_size": 64, "max_eval_images": 2},
        "trainer": {"max_steps": 20, "batch_size": 2, "lr": 1e-3, "lr_decay_at": [], "grad_clip": 1.0,
                    "checkpoint_every": 5, "val_every": 0, "log_every": 1, "device": "cpu", "resume": "auto",
                    "progress": False, "threads": None},
        "loss": {"distortion": "rgb_mse", "lmbda": 0.01}, "logger": {"name": "none"}})
    return OmegaConf.merge(cfg, OmegaConf.create(over))


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _cmd(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "codec.train", "codec=hyperprior", "codec.N=8", "codec.M=8",
            "trainer.max_steps=120", "trainer.checkpoint_every=15", "trainer.log_every=1", "trainer.val_every=0",
            "trainer.batch_size=2", "data.crop_size=64", "trainer.threads=1", "trainer.progress=false",
            "logger=none", f"hydra.run.dir={run_dir}"]


def test_sigkill_and_resume_follow_the_uninterrupted_curve(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_cmd(straight), check=True, env=env, capture_output=True, timeout=300)

    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = killed / "last.ckpt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if ckpt.exists() and read_checkpoint(ckpt)["step"] >= 30:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = read_checkpoint(ckpt)["step"]
    assert 30 <= killed_at < 120

    resumed = subprocess.run(_cmd(killed), check=True, env=env, capture_output=True, text=True, timeout=300)
    assert f"resumed from {ckpt} at step {killed_at}" in resumed.stdout
    a, b = _losses(straight), _losses(killed)
    assert sorted(a) == sorted(b) == list(range(1, 121))
    assert a == b  # bit-identical loss curve, before and after the kill


def test_nan_guard_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    real = RateDistortion.forward
    calls = {"n": 0}

    def poisoned(self, model, x):
        terms = real(self, model, x)
        calls["n"] += 1
        if calls["n"] == 8:  # step index 7
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(RateDistortion, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan at step 7; last good checkpoint: .*last.ckpt"):
        run(tiny_cfg(), tmp_path)
    model, blob = load_checkpoint(tmp_path / "last.ckpt")
    assert blob["step"] == 5
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_loss_goes_down_and_checkpoint_decodes(tmp_path):
    summary = run(tiny_cfg(**{"trainer": {"max_steps": 60, "checkpoint_every": 0, "val_every": 60, "log_every": 1}}),
                  tmp_path)
    losses = _losses(tmp_path)
    first, last = sum(losses[s] for s in range(1, 11)) / 10, sum(losses[s] for s in range(51, 61)) / 10
    assert last < first
    assert summary["val"]["bpp"] > 0 and summary["val"]["psnr_rgb"] > 0


@pytest.fixture(scope="module")
def trained_hyperprior(tmp_path_factory):
    d = tmp_path_factory.mktemp("hp")
    cfg = tiny_cfg(**{"codec": {"N": 16, "M": 16},
                      "trainer": {"max_steps": 300, "batch_size": 4, "checkpoint_every": 0, "log_every": 50},
                      "data": {"crop_size": 128}})
    run(cfg, d)
    model, _ = load_checkpoint(d / "last.ckpt")
    return model


def test_real_bits_match_the_likelihood_estimate(trained_hyperprior):
    from codec.data import builtin_images

    model = trained_hyperprior
    for path in builtin_images()[:3]:
        x = to_tensor(read_image(path))
        data = model.compress(x)
        with torch.no_grad():
            out = model(pad_to_stride(x, model.stride)[0])
        est_bytes = sum(float(-torch.log2(v).sum()) for v in out["likelihoods"].values()) / 8
        assert abs(len(data) - est_bytes) <= 0.02 * est_bytes + 64, (path.name, len(data), est_bytes)
        assert not math.isclose(len(data), est_bytes, rel_tol=1e-9)  # measured, not copied


def test_two_process_distributed_data_parallel_on_cpu(tmp_path):
    """torchrun + DistributedDataParallel (gloo on the CPU): both ranks step, rank 0 saves."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "-m", "codec.train",
           "codec=hyperprior", "codec.N=8", "codec.M=8", "trainer.max_steps=4", "trainer.batch_size=2",
           "data.crop_size=64", "trainer.val_every=0", "trainer.checkpoint_every=2", "trainer.log_every=1",
           "trainer.progress=false", "logger=none", f"hydra.run.dir={tmp_path}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    assert sorted(_losses(tmp_path)) == [1, 2, 3, 4]  # one log, from rank 0 only
    model, blob = load_checkpoint(tmp_path / "last.ckpt")
    assert blob["step"] == 4


def test_multirun_logs_one_finished_offline_wandb_run_per_job(tmp_path):
    """Each Hydra multirun job gets its own wandb run, finished before the next job starts."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    cmd = [sys.executable, "-m", "codec.train", "-m", "loss.lmbda=0.01,0.02", "codec=hyperprior", "codec.N=8",
           "codec.M=8", "trainer.max_steps=2", "trainer.batch_size=1", "data.crop_size=64", "trainer.val_every=0",
           "trainer.log_every=1", "trainer.progress=false", f"hydra.sweep.dir={tmp_path}", "hydra.sweep.subdir=${loss.lmbda}"]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    for job in ("0.01", "0.02"):
        runs = list((tmp_path / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs
        assert list(runs[0].glob("*.wandb")), "no wandb log written"
        assert (tmp_path / job / "last.ckpt").exists()


def test_max_minutes_stops_saves_and_the_rerun_resumes_the_same_curve(tmp_path):
    over = {"trainer": {"max_steps": 6, "checkpoint_every": 0}}
    run(tiny_cfg(**over), tmp_path / "straight")
    s = run(tiny_cfg(trainer={"max_steps": 6, "checkpoint_every": 0, "max_minutes": 1e-9}), tmp_path / "boxed")
    assert s["stopped_at_time_limit"] and s["steps"] == 1 and read_checkpoint(tmp_path / "boxed" / "last.ckpt")["step"] == 1
    assert run(tiny_cfg(**over), tmp_path / "boxed")["resumed_from"] == 1
    assert _losses(tmp_path / "boxed") == _losses(tmp_path / "straight")
    for bad in (0, -1, "ten", True):
        with pytest.raises(ValueError, match="trainer.max_minutes"):
            run(tiny_cfg(trainer={"max_minutes": bad}), tmp_path / "bad")
