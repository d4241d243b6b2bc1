"""The training engine: one loop (:mod:`~codec.engine.loop`) that takes objectives
(:mod:`~codec.engine.objectives`), with checkpointing, validation and logging as separate
pieces. ``python -m codec.train`` (rate-distortion), the teacher and student commands,
distillation and pruning's fine-tuning all train through :class:`Trainer`."""
from codec.engine.checkpoints import CHECKPOINT_NAME, RunCheckpoint, model_from_checkpoint
from codec.engine.loop import Trainer, TrainingDiverged, command_line, learning_rate, step_seed
from codec.engine.objectives import (OBJECTIVES, Objective, RateDistortion, ResidualL1, distortion, make_objective,
                                     rd_loss, rate_terms)
from codec.engine.run_log import RunLog
from codec.engine.validation import eval_paths, validate

__all__ = ["Trainer", "TrainingDiverged", "Objective", "RateDistortion", "ResidualL1", "OBJECTIVES", "make_objective",
           "rd_loss", "rate_terms", "distortion",
           "RunCheckpoint", "RunLog", "CHECKPOINT_NAME", "model_from_checkpoint", "validate", "eval_paths",
           "learning_rate", "step_seed", "command_line"]
