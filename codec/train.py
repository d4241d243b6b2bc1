"""``python -m codec.train codec=NAME``: rate-distortion training of any registered codec (Hydra).

L = R + lmbda * 255^2 * D, with R the estimated bits per pixel of every latent (sum of -log2
likelihoods) and D an MSE on RGB (CompressAI's convention) or on YCbCr weighted
Y:Cb:Cr = 6:1:1 (JPEG AI's), optionally mixed with 1 - MS-SSIM
(:class:`codec.engine.RateDistortion`); ``loss.objective`` names another objective, e.g.
``loss=toderici`` (:class:`codec.engine.ResidualL1`) for the recurrent codec whose rate is its
iteration count (codec.models.toderici). The teacher (``python -m teacher``) and students
(``python -m student``) are this command with other config defaults; distillation and
pruning build other objectives and train through the same :class:`codec.engine.Trainer`
(exact resume, NaN guard, real-bitstream validation, checkpoints, wandb).

``trainer.init_from=PATH`` starts a *new* run (step 0, fresh optimizer) from a checkpoint's
architecture and weights, e.g. a pruned student whose widths differ from any preset; it is not
a resume: ``trainer.resume`` continues an interrupted run from its own ``last.ckpt``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from codec.base import Codec
from codec.config import codec_from_config
from codec.engine import (CHECKPOINT_NAME, Trainer, TrainingDiverged, learning_rate, make_objective,
                          model_from_checkpoint, rd_loss, validate)

__all__ = ["run", "build_model", "rd_loss", "TrainingDiverged", "learning_rate", "validate", "CHECKPOINT_NAME"]


def build_model(cfg) -> tuple[Codec, dict]:
    """The run's starting model: from ``trainer.init_from`` (its architecture and weights) or
    from ``cfg.codec`` with weights drawn from ``cfg.seed``. Returns (model, provenance)."""
    init = cfg.trainer.get("init_from")
    if init:
        rates = cfg.get("codec", {}).get("rates") if cfg.get("codec") else None
        model, provenance = model_from_checkpoint(init, rates=rates)
        asked = cfg.get("codec", {}).get("name") if cfg.get("codec") else None
        if asked and asked != model.registry_name:
            print(f"trainer.init_from={init}: architecture {model.registry_name!r} from the checkpoint "
                  f"(codec={asked} is ignored)")
        return model, provenance
    torch.manual_seed(int(cfg.seed))  # initial weights
    return codec_from_config(cfg.codec), {}


def run(cfg, out_dir: str | os.PathLike | None = None) -> dict:
    """Train per ``cfg`` (codec, data, trainer, loss, logger, seed); returns the summary.

    ``out_dir`` (default: the Hydra run directory) receives ``last.ckpt``, ``metrics.jsonl``
    and ``summary.json``; an existing ``last.ckpt`` there is resumed (``trainer.resume=auto``).
    """
    if out_dir is None:
        from hydra.core.hydra_config import HydraConfig

        out_dir = HydraConfig.get().runtime.output_dir
    model, provenance = build_model(cfg)
    return Trainer(cfg, model, make_objective(cfg.loss, model), Path(out_dir), meta=provenance).fit()


def main() -> None:
    import hydra

    @hydra.main(version_base=None, config_path="pkg://conf", config_name="train")
    def _main(cfg) -> None:
        run(cfg)

    _main()


if __name__ == "__main__":
    main()
