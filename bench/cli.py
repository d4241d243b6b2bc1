"""``python -m bench``: measure codecs on an image folder and rebuild the report (Hydra app, conf/bench.yaml)::

    python -m bench data.eval_dir=data/prepared/eval classical=[jpeg,jpeg2000,webp,avif,jpegxl,hevc] \\
        learned=[results/checkpoints/vmuc_*.ckpt,results/checkpoints/student_dw_ckbd_*.ckpt]
    python -m bench learned={NAME:[CKPT,...]} overfit_steps=[100,500]    # + the slow encoder (codec.overfit)

Each codec asked for is measured and written to ``out_dir/<label>.json`` (replacing an older
file of the same codec); codecs not asked for keep their JSON, and the report is rebuilt over
every JSON in ``out_dir``. So adding trained checkpoints later is ``python -m bench
learned=[...]``: the classical curves are not recomputed.

:func:`run_bench` is the command without Hydra (tests call it on a composed config).
"""
from __future__ import annotations

import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import hydra
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.overfit import OverfitEncoder, overfit_label, parse_overfit_steps
from bench.results import BenchError, curve_result, environment, result_path, write_json

__all__ = ["run_bench", "bench_app"]


def _plain(node):
    if isinstance(node, (DictConfig, ListConfig)):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _classical_codecs(cfg: DictConfig) -> list:
    from bench.classical import get_classical, list_classical
    from bench.measure import subsample

    names = _plain(cfg.get("classical")) or []
    if isinstance(names, str):
        names = [names]
    qualities = _plain(cfg.get("classical_qualities")) or {}
    options = _plain(cfg.get("classical_options")) or {}
    for key in list(qualities) + list(options):
        if key not in list_classical():
            raise BenchError(f"classical_qualities/classical_options name {key!r}, not a classical codec; "
                             f"known: {', '.join(list_classical())}")
    codecs = []
    for name in names:
        if name not in list_classical():
            raise BenchError(f"classical={name!r} is not a classical codec; known: {', '.join(list_classical())}")
        kwargs = dict(options.get(name) or {})
        probe = get_classical(name, **kwargs)
        qs = list(qualities.get(name) or probe.qualities)
        try:
            codecs.append(get_classical(name, qualities=subsample(qs, cfg.get("max_qualities")), **kwargs))
        except (TypeError, ValueError) as e:
            raise BenchError(f"classical codec {name}: {e}") from None
    return codecs


def _description(kind: str, what: str, eval_set: dict) -> str:
    return f"{what}; {kind}; {eval_set['count']} images of {eval_set['dir']}"


def _limit_library_threads(threads: int | None) -> None:
    """Pillow's AVIF plugin (libaom, dav1d) uses every core unless told; the bench times each
    codec on ``threads`` cores. imagecodecs' JPEG XL / JPEG 2000 keep their own defaults (the
    speed table shows CPU/wall, which exposes any extra core)."""
    if not threads:
        return
    try:
        from PIL import AvifImagePlugin

        AvifImagePlugin.DEFAULT_MAX_THREADS = int(threads)
    except ImportError:
        pass


def _update_skipped(out_dir: Path, skipped: dict[str, str], measured: list[str], command: str) -> None:
    import json

    path = out_dir / "skipped.json"
    data = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    for name in measured:
        data.pop(name, None)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    for name, reason in skipped.items():
        data[name] = {"reason": reason, "command": command, "date": now}
    if data:
        write_json(path, data)
    else:
        path.unlink(missing_ok=True)


def _overfit_encoders(cfg: DictConfig) -> list:
    """``overfit_steps=[N, ...]``: one slow-encoder curve per N > 0 for every learned curve."""
    from codec.overfit import DEFAULT_LR, DEFAULT_METHOD, check_overfit_args

    steps = parse_overfit_steps(_plain(cfg.get("overfit_steps")))
    lr = cfg.get("overfit_lr") if cfg.get("overfit_lr") is not None else DEFAULT_LR
    method = cfg.get("overfit_method") or DEFAULT_METHOD
    try:
        return [OverfitEncoder(*check_overfit_args(n, lr, method)) for n in steps]
    except ValueError as e:
        raise BenchError(str(e)) from None


def _loss_config(path) -> dict | None:
    from codec.checkpoint import read_checkpoint
    from codec.overfit import checkpoint_loss_config

    return checkpoint_loss_config(read_checkpoint(path))


def report_settings(cfg: DictConfig) -> dict:
    return {
        "anchor_teacher": cfg.get("anchor_teacher"),
        "student_pattern": cfg.get("student_pattern"),
        "anchor_classical": cfg.get("anchor_classical"),
        "profiles": tuple(_plain(cfg.get("profiles")) or ()),
        "profile_dir": cfg.get("profile_dir"),
        "target": cfg.get("target"),
        "gate_teacher": cfg.get("gate_teacher"),
    }


def run_bench(cfg: DictConfig, command: str = "python -m bench") -> dict:
    """Measure every codec of ``cfg``, write its JSON, rebuild the report.

    Returns ``{"written": [json paths], "skipped": {name: why}, "report": path}``.
    Everything that can be checked before measuring (codec names, checkpoints, images) is
    checked first, so a typo fails in a second, not after an hour of AVIF encodes.
    """
    import torch

    from bench.measure import load_eval_set, measure_classical, measure_learned, resolve_learned
    from bench.report import build_report

    threads = cfg.get("threads")
    if threads:
        torch.set_num_threads(int(threads))
    _limit_library_threads(threads)
    classical = _classical_codecs(cfg)
    learned = resolve_learned(_plain(cfg.get("learned")))
    if not classical and not learned:
        raise BenchError("nothing to measure: pass classical=[jpeg,webp,...] and/or learned=[CKPT_OR_GLOB,...] "
                         "(python -m bench.report rebuilds the report from existing results)")
    overfits = _overfit_encoders(cfg)
    labels = [c.name for c in classical] + [c.label for c in learned]
    labels += [overfit_label(c.label, o.steps) for c in learned for o in overfits]
    clash = sorted({lab for lab in labels if labels.count(lab) > 1})
    if clash:
        raise BenchError(f"two codecs of this run are labelled {clash}; label learned curves with "
                         "learned={LABEL: [...]}")
    skipped = {}
    for c in classical:
        ok, why = c.available()
        if not ok:
            if not cfg.get("skip_unavailable", True):
                raise BenchError(f"classical codec {c.name} is not available here: {why} "
                                 "(or pass skip_unavailable=true to skip it)")
            skipped[c.name] = why
            print(f"skipping {c.name}: {why}", file=sys.stderr)
    classical = [c for c in classical if c.name not in skipped]
    images, eval_set = load_eval_set(cfg.data.get("eval_dir"), cfg.data.get("max_images"))

    out_dir = Path(cfg.out_dir)
    bench_threads = int(threads) if threads else None
    progress, warmup = bool(cfg.get("progress", True)), bool(cfg.get("warmup", True))
    written = []
    for c in classical:
        env = environment(bench_threads)  # per codec: the load average is the one it was timed under
        rate_points, rows = measure_classical(c, images, warmup=warmup, progress=progress)
        result = curve_result(c.name, _description("classical", c.__doc__.strip().splitlines()[0].rstrip("."), eval_set),
                              "classical", c.name, c.settings(), rate_points, rows, eval_set, command, env)
        written.append(write_json(result_path(out_dir, c.name), result))
    for curve, overfit in [(c, o) for c in learned for o in [None, *overfits]]:
        env = environment(bench_threads)
        rate_points, rows = measure_learned(curve, images, warmup=warmup, progress=progress, rates=_plain(cfg.get("rates")),
                                            overfit=overfit)
        n = len(curve.checkpoints)
        what = f"learned codec {curve.profile_label}, {n} checkpoint{'s' if n > 1 else ''}" + \
            (f", {len(rate_points)} rates" if len(rate_points) > n else "")
        label, extra = curve.label, {}
        if overfit is not None:  # the slow encoder: its own curve (bench.overfit)
            label = overfit_label(curve.label, overfit.steps)
            what += f", latents overfitted {overfit.steps} steps per image ({overfit.method}, lr {overfit.lr:g})"
            extra["encoder"] = overfit.record(_loss_config(curve.checkpoints[0]))
        result = curve_result(label, _description("learned", what, eval_set), "learned", curve.codec,
                              curve.config, rate_points, rows, eval_set, command, env,
                              profile_label=curve.profile_label, **extra)
        written.append(write_json(result_path(out_dir, label), result))
    _update_skipped(out_dir, skipped, labels, command)
    for p in written:
        print(f"wrote {p}")
    report = build_report(out_dir, cfg.get("report"), **report_settings(cfg))
    print(f"wrote {report}")
    return {"written": written, "skipped": skipped, "report": report}


def _command() -> str:
    return " ".join(["python -m bench", *(shlex.quote(a) for a in sys.argv[1:])])


@hydra.main(version_base=None, config_path="pkg://conf", config_name="bench")
def bench_app(cfg: DictConfig) -> None:
    from codec.checkpoint import CheckpointError
    from codec.data import DataError

    try:
        run_bench(cfg, _command())
    except (BenchError, CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
