"""The three commands, as Hydra apps over the package configs ``conf/{profile,gate,zoo}.yaml``::

    python -m profiling codec=NAME [resolution=WxH] [checkpoint=PATH] [rates=[R,...]] [codec.KEY=VALUE ...]
    python -m profiling.gate codec=STUDENT teacher=TEACHER [target=35] [+teacher_config.KEY=VALUE] [encoder.overfit_steps=N]
    python -m profiling.zoo teacher=TEACHER [students=[NAME,...]] [resolution=WxH]

Each ``run_*`` function is the command without Hydra (tests call them on composed configs);
outputs go to the Hydra run directory, never to the working directory (Hydra >= 1.2 does not
change it).
"""
from __future__ import annotations

import json
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from codec.base import Codec
from codec.config import codec_from_config, load_codec
from codec.registry import create_codec, list_codecs
from profiling.counter import DEFAULT_RESOLUTION, ProfileError, codec_label, profile_codec
from profiling.report import format_gate, format_profile, format_zoo, zoo_markdown
from profiling.verdict import gate

__all__ = ["parse_resolution", "teacher_codec", "profile_rates", "run_profile", "run_gate", "run_zoo",
           "profile_app", "gate_app", "zoo_app"]


def parse_resolution(value: Any) -> tuple[int, int]:
    """``"768x512"``, ``[768, 512]`` or ``None`` (768x512) -> (W, H)."""
    if value is None:
        return DEFAULT_RESOLUTION
    if isinstance(value, (list, tuple, ListConfig)) and len(value) == 2:
        w, h = value
    elif isinstance(value, str) and value.lower().count("x") == 1:
        w, h = value.lower().split("x")
    else:
        raise ValueError(f"resolution={value!r}: write it as WxH, e.g. resolution=768x512")
    try:
        w, h = int(w), int(h)
    except ValueError:
        raise ValueError(f"resolution={value!r}: W and H must be integers, e.g. resolution=1000x664") from None
    if w < 1 or h < 1:
        raise ValueError(f"resolution={value!r}: W and H must be positive")
    return w, h


def _set_threads(cfg: DictConfig) -> None:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _codec_yaml(name: str) -> DictConfig | None:
    path = resources.files("conf") / "codec" / f"{name}.yaml"
    return OmegaConf.create(path.read_text()) if path.is_file() else None


def teacher_codec(cfg: DictConfig) -> Codec:
    """``teacher_checkpoint`` if given; else ``conf/codec/<teacher>.yaml`` (or the registry
    defaults when there is no such file) updated with ``teacher_config``."""
    if cfg.get("teacher_checkpoint"):
        return load_codec(checkpoint=cfg.teacher_checkpoint)
    name = cfg.get("teacher")
    if not name:
        raise ValueError("no teacher: pass teacher=NAME (a registered codec) or teacher_checkpoint=PATH")
    node = _codec_yaml(name) or OmegaConf.create({"name": name})
    node = OmegaConf.merge(node, cfg.get("teacher_config") or {})
    # Resolve the teacher's interpolations (student configs read ${student.*}) against this config.
    root = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(root, False)
    root["_teacher_codec"] = node
    return codec_from_config(OmegaConf.to_container(root["_teacher_codec"], resolve=True))


def _profile(codec: Codec, cfg: DictConfig, strict: bool, **kwargs) -> dict:
    return profile_codec(codec, parse_resolution(cfg.get("resolution")), wall_runs=int(cfg.get("wall_runs", 0)),
                         strict=strict, **kwargs)


def profile_rates(codec: Codec, rates: Any = None) -> list[float]:
    """The rates ``python -m profiling`` reports one by one: ``rates`` as given (each checked
    by the codec), or, when None, every trained rate of a codec whose MACs depend on its rate
    (``Codec.cost_depends_on_rate``: toderici's iteration count) and none otherwise."""
    if rates is None:
        return list(codec.trained_rates()) if getattr(codec, "cost_depends_on_rate", False) else []
    rates = [rates] if isinstance(rates, (int, float, str)) else list(rates)
    return [codec.check_rate(r) for r in rates]


def _overfit_steps(cfg: DictConfig) -> int:
    steps = (cfg.get("encoder") or {}).get("overfit_steps") or 0
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"encoder.overfit_steps={steps!r}: give a whole number of latent-overfitting steps >= 0")
    return steps


def _add_overfit(profile: dict, codec: Codec, cfg: DictConfig) -> None:
    """With ``encoder.overfit_steps=N`` > 0: the encoder's cost with N latent-overfitting steps
    (profiling.overfit) as ``profile["encoder_overfit"]``, beside the feed-forward figure, which
    stays the one the gate judges."""
    steps = _overfit_steps(cfg)
    if not steps:
        return
    from codec.checkpoint import read_checkpoint
    from codec.overfit import checkpoint_loss_config
    from profiling.overfit import profile_overfit

    checkpoint = cfg.get("checkpoint")
    loss_cfg = checkpoint_loss_config(read_checkpoint(checkpoint)) if checkpoint else None
    profile["encoder_overfit"] = profile_overfit(
        codec.eval(), steps, profile["encoder"]["kmac_per_px"], parse_resolution(cfg.get("resolution")),
        rate=profile.get("rate"), loss_cfg=loss_cfg, wall_runs=int(cfg.get("wall_runs", 0)))


def run_profile(cfg: DictConfig, output_dir: str | os.PathLike, command: str | None = None) -> dict:
    _set_threads(cfg)
    _overfit_steps(cfg)
    codec = load_codec(cfg.codec, cfg.get("checkpoint"))
    strict = bool(cfg.get("strict", False))
    profile = _profile(codec, cfg, strict)
    profile["checkpoint"] = cfg.get("checkpoint")
    if command:
        profile["command"] = command
    _add_overfit(profile, codec, cfg)
    rates = profile_rates(codec, _plain(cfg.get("rates")))
    if rates:  # kMAC/px per rate (docs/DESIGN.md, rule 4: a part run k times counts k times)
        profile["by_rate"] = []
        for rate in rates:
            at = _profile(codec, cfg, strict, rate=rate)
            profile["by_rate"].append({"rate": rate, **{side: at[side] for side in ("encoder", "decoder")},
                                       "problems": at["problems"]})
    print(format_profile(profile))
    _write_json(Path(output_dir) / "profile.json", profile)
    print(f"wrote {Path(output_dir) / 'profile.json'}")
    return profile


def run_gate(cfg: DictConfig, output_dir: str | os.PathLike) -> dict:
    _set_threads(cfg)
    strict = bool(cfg.get("strict", True))
    _overfit_steps(cfg)
    codec = load_codec(cfg.codec, cfg.get("checkpoint"))
    student = _profile(codec, cfg, strict)
    teacher = _profile(teacher_codec(cfg), cfg, strict)
    row = gate(student, teacher, cfg.target)
    _add_overfit(student, codec, cfg)
    if "encoder_overfit" in student:  # beside the verdict, which stays the feed-forward encoder's
        over = student["encoder_overfit"]
        row["encoder_overfit"] = {**over, "ratio": teacher["encoder"]["kmac_per_px"] / over["kmac_per_px"]}
    print(format_gate(row))
    out = Path(output_dir)
    _write_json(out / "gate.json", row)
    _write_json(out / "student_profile.json", student)
    _write_json(out / "teacher_profile.json", teacher)
    print(f"wrote {out / 'gate.json'}")
    return row


def _student_specs(cfg: DictConfig) -> list:
    if cfg.get("students") is None:
        names = list_codecs(cfg.student_pattern)
        if not names:
            raise ValueError(f"no registered codec matches student_pattern={cfg.student_pattern!r}: register "
                             "students in student/zoo.py, or list them with students=[NAME,...]")
        return names
    specs = OmegaConf.to_container(cfg.students, resolve=True)
    if not isinstance(specs, list) or not specs:
        raise ValueError(f"students={cfg.students}: give a non-empty list of codec names, "
                         "{name: NAME, KEY: VALUE} configs or {checkpoint: PATH}")
    return specs


def _build_student(spec) -> Codec:
    if isinstance(spec, str):
        return load_codec(checkpoint=spec) if Path(spec).is_file() else create_codec(spec)
    if isinstance(spec, dict) and "checkpoint" in spec:
        return load_codec(checkpoint=spec["checkpoint"])
    if isinstance(spec, dict):
        return codec_from_config(spec)
    raise ValueError(f"students: cannot build a codec from {spec!r}")


def run_zoo(cfg: DictConfig, output_dir: str | os.PathLike, command: str = "python -m profiling.zoo") -> list[dict]:
    _set_threads(cfg)
    strict = bool(cfg.get("strict", True))
    teacher = _profile(teacher_codec(cfg), cfg, strict)
    rows = []
    for spec in _student_specs(cfg):
        label = spec if isinstance(spec, str) else json.dumps(spec, sort_keys=True)
        try:
            codec = _build_student(spec)
            label = codec_label(codec)
            profile = _profile(codec, cfg, strict)
            row = gate(profile, teacher, cfg.target)
        except (ProfileError, ValueError, TypeError, KeyError, RuntimeError) as e:
            rows.append({"student": label, "teacher": teacher["label"], "target": float(cfg.target),
                         "encoder_ratio": None, "decoder_ratio": None, "passed": False,
                         "encoder_kmac_per_px": None, "decoder_kmac_per_px": None,
                         "error": f"{type(e).__name__}: {e}"})
            continue
        row["codec"], row["config"] = profile["codec"], profile["config"]
        for side in ("encoder", "decoder"):
            row[f"{side}_kmac_per_px"] = profile[side]["kmac_per_px"]
            row[f"{side}_effective_kmac_per_px"] = profile[side]["effective_kmac_per_px"]
            row[f"{side}_wall_ms"] = profile[side]["wall_ms"]
        rows.append(row)
    rows.sort(key=lambda r: (r["decoder_kmac_per_px"] is None, r["decoder_kmac_per_px"] or 0.0, r["student"]))
    print(format_zoo(rows, teacher, float(cfg.target)))
    _write_json(Path(output_dir) / "zoo.json", rows)
    results = Path(cfg.results_dir)
    results.mkdir(parents=True, exist_ok=True)
    (results / "zoo.md").write_text(zoo_markdown(rows, teacher, float(cfg.target), command))
    _write_json(results / "zoo.json", {"command": command, "teacher": teacher, "rows": rows})
    print(f"wrote {Path(output_dir) / 'zoo.json'} and {results / 'zoo.md'}")
    return rows


def _run_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir


def _command(module: str) -> str:
    from hydra.core.hydra_config import HydraConfig

    return " ".join([f"python -m {module}", *HydraConfig.get().overrides.task])


@hydra.main(version_base=None, config_path="pkg://conf", config_name="profile")
def profile_app(cfg: DictConfig) -> None:
    run_profile(cfg, _run_dir(), _command("profiling"))


@hydra.main(version_base=None, config_path="pkg://conf", config_name="gate")
def gate_app(cfg: DictConfig) -> None:
    row = run_gate(cfg, _run_dir())
    sys.exit(0 if row["passed"] else 1)


@hydra.main(version_base=None, config_path="pkg://conf", config_name="zoo")
def zoo_app(cfg: DictConfig) -> None:
    rows = run_zoo(cfg, _run_dir(), _command("profiling.zoo"))
    sys.exit(1 if any(r.get("error") for r in rows) else 0)
