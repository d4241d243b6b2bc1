"""The training engine's open parts: objectives with their own trainables, init_from, config checks."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf

from codec.checkpoint import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from codec.engine import Objective, RateDistortion, Trainer, rd_loss
from codec.registry import create_codec
from codec.train import run


def cfg_for(codec: dict, **over) -> OmegaConf:
    cfg = OmegaConf.create({
        "codec": codec, "seed": 0,
        "data": {"train_dir": None, "eval_dir": None, "crop_size": 64, "max_eval_images": 1},
        "trainer": {"max_steps": 10, "batch_size": 2, "lr": 1e-3, "lr_decay_at": [], "grad_clip": 1.0,
                    "checkpoint_every": 5, "val_every": 0, "log_every": 1, "device": "cpu", "resume": "auto",
                    "progress": False, "threads": None, "init_from": None},
        "loss": {"distortion": "rgb_mse", "lmbda": 0.01}, "logger": {"name": "none"}})
    return OmegaConf.merge(cfg, OmegaConf.create(over))


def _losses(run_dir: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


class AdapterObjective(Objective):
    """RD plus a term through a trainable 1x1 adapter on the student's latent (as latent KD
    does): the adapter trains with the model and lives in the objective, not the model."""

    def __init__(self, loss_cfg, latent: int):
        super().__init__()
        self.loss_cfg = loss_cfg
        self.adapter = nn.Conv2d(latent, 4, 1)

    def forward(self, model, x):
        out = model(x)
        terms = rd_loss(out, x, self.loss_cfg)
        terms["adapter"] = (self.adapter(out["taps"]["y"]).mean() - 1.0) ** 2
        terms["loss"] = terms["loss"] + terms["adapter"]
        return terms


def _fit_adapter(cfg, out_dir):
    torch.manual_seed(0)
    model = create_codec("student_tiny")
    objective = AdapterObjective(cfg.loss, model.latent)
    return Trainer(cfg, model, objective, out_dir).fit(), objective


def test_objective_trainables_live_in_the_training_state_and_resume_exactly(tmp_path):
    cfg = cfg_for({"name": "student_tiny"})
    _, objective = _fit_adapter(cfg, tmp_path / "straight")
    blob = read_checkpoint(tmp_path / "straight" / "last.ckpt")
    run(cfg_for({"name": "student_tiny"}), tmp_path / "scratch")
    scratch = read_checkpoint(tmp_path / "scratch" / "last.ckpt")
    # a finished run's checkpoint is a plain one: the same keys as a scratch run's, no adapter
    assert set(blob) == set(scratch) and "objective" not in blob and "optimizer" not in blob
    assert set(blob["state_dict"]) == set(scratch["state_dict"])
    state = torch.load(tmp_path / "straight" / "last.state", weights_only=True)
    assert state["step"] == 10 and set(state["objective"]) == {"adapter.weight", "adapter.bias"}
    torch.manual_seed(0)
    assert not torch.equal(state["objective"]["adapter.weight"], AdapterObjective(cfg.loss, 16).adapter.weight)
    load_checkpoint(tmp_path / "straight" / "last.ckpt")  # a plain student checkpoint

    # finish at 5, extend to 10: same curve as the straight run, which needs the adapter (and
    # its Adam moments) restored from last.state, not re-drawn
    _fit_adapter(cfg_for({"name": "student_tiny"}, trainer={"max_steps": 5}), tmp_path / "split")
    summary, _ = _fit_adapter(cfg, tmp_path / "split")
    assert summary["resumed_from"] == 5
    assert _losses(tmp_path / "split") == _losses(tmp_path / "straight")


def test_resuming_an_objective_with_state_from_a_checkpoint_without_it_is_refused(tmp_path):
    run(cfg_for({"name": "student_tiny"}, trainer={"max_steps": 2}), tmp_path)
    with pytest.raises(CheckpointError, match="objective has trainable state"):
        _fit_adapter(cfg_for({"name": "student_tiny"}, trainer={"max_steps": 4}), tmp_path)


def test_init_from_starts_a_new_run_from_another_architecture(tmp_path):
    """A checkpoint whose config differs from the run's codec (as a pruned one does): the run
    takes its architecture and weights, starts at step 0 with a fresh optimizer, and a rerun of
    the same command resumes the run's own last.ckpt."""
    torch.manual_seed(1)
    pruned = create_codec("student_tiny", layer_widths={"g_s": [4, 6, 8, 10], "entropy_parameters": [8] * 5})
    save_checkpoint(tmp_path / "pruned.ckpt", pruned, meta={"step": 777}, step=777,
                    optimizer={"state": {}, "param_groups": []})
    cfg = cfg_for({"name": "student_dw_ckbd"},
                  trainer={"max_steps": 3, "lr": 1e-12, "init_from": str(tmp_path / "pruned.ckpt")})
    summary = run(cfg, tmp_path / "run")
    assert summary["resumed_from"] == 0 and summary["init_from"] == str(tmp_path / "pruned.ckpt")
    assert sorted(_losses(tmp_path / "run")) == [1, 2, 3]
    model, blob = load_checkpoint(tmp_path / "run" / "last.ckpt")
    assert blob["codec"] == "student_tiny" and blob["config"] == pruned.config
    assert blob["meta"]["init_from_sha256"] and blob["step"] == 3
    for (name, a), b in zip(model.state_dict().items(), pruned.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)  # lr 1e-12: still the init weights

    cfg.trainer.max_steps = 5
    again = run(cfg, tmp_path / "run")
    assert again["resumed_from"] == 3


def test_a_run_stopped_mid_way_resumes_from_the_state_inside_last_ckpt(tmp_path, monkeypatch):
    cfg = cfg_for({"name": "student_tiny"})
    _fit_adapter(cfg, tmp_path / "straight")
    real, calls = AdapterObjective.forward, {"n": 0}

    def dies_at_step_7(self, model, x):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return real(self, model, x)

    monkeypatch.setattr(AdapterObjective, "forward", dies_at_step_7)
    with pytest.raises(KeyboardInterrupt):
        _fit_adapter(cfg, tmp_path / "stopped")
    blob = read_checkpoint(tmp_path / "stopped" / "last.ckpt")
    assert blob["step"] == 5 and set(blob["objective"]) == {"adapter.weight", "adapter.bias"} and blob["optimizer"]
    assert not (tmp_path / "stopped" / "last.state").exists()
    monkeypatch.setattr(AdapterObjective, "forward", real)
    assert _fit_adapter(cfg, tmp_path / "stopped")[0]["resumed_from"] == 5
    assert _losses(tmp_path / "stopped") == _losses(tmp_path / "straight")


def test_resume_from_a_weights_only_checkpoint_points_to_init_from(tmp_path):
    save_checkpoint(tmp_path / "w.ckpt", create_codec("student_tiny"))
    cfg = cfg_for({"name": "student_tiny"}, trainer={"resume": str(tmp_path / "w.ckpt")})
    with pytest.raises(CheckpointError, match="trainer.init_from="):
        run(cfg, tmp_path / "run")


@pytest.mark.parametrize("over,match", [
    ({"trainer": {"max_steps": 0}}, "trainer.max_steps"),
    ({"trainer": {"batch_size": -1}}, "trainer.batch_size"),
    ({"trainer": {"lr": 0.0}}, "trainer.lr"),
    ({"trainer": {"lr_decay_at": [1.5]}}, "lr_decay_at"),
    ({"loss": {"distortion": "l1"}}, "loss.distortion"),
    ({"loss": {"lmbda": -0.01}}, "loss.lmbda"),
    ({"logger": {"name": "tensorboard"}}, "logger.name"),
    ({"data": {"sampler": "disk"}}, "data.sampler"),
])
def test_bad_config_values_are_refused_before_training(tmp_path, over, match):
    with pytest.raises(ValueError, match=match):
        run(cfg_for({"name": "student_tiny"}, **over), tmp_path)
    assert not (tmp_path / "last.ckpt").exists()


def test_rate_distortion_objective_is_the_rd_loss():
    torch.manual_seed(0)
    model = create_codec("student_tiny").train()
    x = torch.rand(2, 3, 64, 64)
    cfg = OmegaConf.create({"distortion": "ycbcr_mse", "lmbda": 0.0067, "ycbcr_weights": [6, 1, 1]})
    torch.manual_seed(3)
    a = RateDistortion(cfg)(model, x)
    torch.manual_seed(3)
    b = rd_loss(model(x), x, cfg)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    d = ((a["distortion"] * 255**2) * 0.0067 + a["bpp"])
    torch.testing.assert_close(a["loss"], d)


@pytest.mark.parametrize("app", ["train", "teacher", "train_student", "distill"])
def test_every_training_app_takes_init_from_and_the_sampler_keys(app):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="conf", version_base=None):
        cfg = compose(app, overrides=["trainer.init_from=/some/pruned.ckpt", "data.sampler=stream", "data.workers=2"])
    assert cfg.trainer.init_from == "/some/pruned.ckpt" and cfg.data.sampler == "stream" and cfg.data.workers == 2
