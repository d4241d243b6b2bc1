"""Run logging: ``metrics.jsonl`` in the run directory (the record results/ keeps) and wandb.

wandb runs offline into the run directory unless ``logger.mode=online`` (or ``WANDB_MODE``);
``logger=none`` logs to the JSON lines only. Only rank 0 writes. Each Hydra multirun job
finishes its own wandb run, or the next job would log into it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["RunLog"]


class RunLog:
    def __init__(self, cfg, out_dir: Path, rank: int = 0, extra_config: dict | None = None):
        self.wandb = None
        self.metrics = Path(out_dir) / "metrics.jsonl"
        self.rank = rank
        logger_cfg = cfg.get("logger") if hasattr(cfg, "get") else None
        name = logger_cfg.get("name", "none") if logger_cfg else "none"
        if name not in ("wandb", "none"):
            raise ValueError(f"logger.name={name!r}: use wandb or none (conf/logger/*.yaml)")
        if rank == 0 and name == "wandb":
            import wandb
            from omegaconf import OmegaConf

            os.environ.setdefault("WANDB_MODE", str(logger_cfg.get("mode", "offline")))
            os.environ.setdefault("WANDB_SILENT", "true")
            config = OmegaConf.to_container(cfg, resolve=True)
            config.update(extra_config or {})
            self.wandb = wandb.init(project=logger_cfg.get("project", "vmuc-lite"), dir=str(out_dir),
                                    name=logger_cfg.get("run_name") or Path(out_dir).name, group=logger_cfg.get("group"),
                                    config=config, reinit="finish_previous")

    def log(self, row: dict) -> None:
        """Append one row (it must hold ``step``)."""
        if self.rank != 0:
            return
        with self.metrics.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in row.items() if k != "step"}, step=row["step"])

    def summary(self, values: dict) -> None:
        """Run-level values (final metrics, kMAC/px, the gate verdict) for the wandb summary."""
        if self.wandb is not None:
            for k, v in values.items():
                self.wandb.summary[k] = v

    def truncate(self, step: int) -> None:
        """On resume, forget rows logged after the checkpoint (they will be logged again)."""
        if self.rank != 0 or not self.metrics.exists():
            return
        rows = [json.loads(line) for line in self.metrics.read_text().splitlines() if line.strip()]
        self.metrics.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step))

    def finish(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()
            self.wandb = None
