"""The teacher trains with the shared engine: the VMuC loss lowers in 50 CPU steps."""
from __future__ import annotations

import json

import pytest
from hydra import compose, initialize_config_module

from codec.train import run


def compose_cfg(config_name: str, overrides: list[str]):
    with initialize_config_module(config_module="conf", version_base=None):
        return compose(config_name=config_name, overrides=overrides)


def test_teacher_config_is_the_vmuc_recipe():
    cfg = compose_cfg("teacher", [])
    assert cfg.codec.name == "vmuc"
    assert cfg.loss.distortion == "ycbcr_mse" and list(cfg.loss.ycbcr_weights) == [6, 1, 1]
    assert cfg.loss.lmbda == cfg.loss.beta


def test_fifty_cpu_steps_at_128_crops_lower_the_vmuc_loss(tmp_path):
    cfg = compose_cfg("teacher", [
        "codec=vmuc_tiny", "trainer.max_steps=50", "trainer.batch_size=4", "data.crop_size=128", "trainer.lr=1e-3",
        "trainer.checkpoint_every=0", "trainer.val_every=0", "trainer.log_every=1", "trainer.progress=false",
        "trainer.device=cpu", "logger=none"])
    run(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 50
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    assert (tmp_path / "last.ckpt").exists()


@pytest.mark.parametrize("config_name", ["train", "teacher", "train_student"])
def test_every_training_config_composes(config_name):
    cfg = compose_cfg(config_name, ["logger=none"])
    assert cfg.trainer.max_steps > 0 and "lmbda" in cfg.loss
