"""``python -m bench.recipe SWEEP_DIR [--reference results/bench/jpeg.json]``: compare training
recipes (learning rate, warm-up, batch, crop) trained for equal wall time.

Every run directory under SWEEP_DIR that holds a ``last.ckpt`` is one recipe. A run that
stopped at ``trainer.max_minutes`` has no final validation, so this command measures each
checkpoint itself with the trainer's own validation (``codec.engine.validation.validate``:
real bitstreams, bpp from bytes) on ``--eval-dir`` and caches the result beside the checkpoint
(``recipe_val.json``, keyed by the checkpoint's SHA-256, so a resumed or retrained run is
measured again). One row per run: its Hydra overrides, steps, wall time, crops and pixels seen,
validation bpp / PSNR-RGB / PSNR-YCbCr, the RD loss on real bits (``bpp + lmbda 255^2 MSE``,
the MSE in the loss's own space) and the PSNR-RGB gap to the reference curve (JPEG by default)
at the run's own bpp, interpolated (pchip in log bpp) and never extrapolated. Lower RD loss and
a larger gap are better. Writes ``SWEEP_DIR/recipe.json`` and ``recipe.md``.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

__all__ = ["psnr_gap", "collect", "to_markdown", "main"]


def psnr_gap(curve: dict, bpp: float, psnr: float, key: str = "psnr-rgb") -> float | None:
    """``psnr`` minus the reference ``curve``'s PSNR at ``bpp`` (a bench JSON's ``results``),
    interpolated with pchip in log bpp; None outside the curve's bpp range."""
    from scipy.interpolate import PchipInterpolator

    pts = sorted(zip(curve["bpp"], curve[key]))
    x = np.log([p[0] for p in pts])
    y = np.array([p[1] for p in pts], dtype=float)
    if len(pts) < 2 or not x[0] <= np.log(bpp) <= x[-1]:
        return None
    return float(psnr - PchipInterpolator(x, y)(np.log(bpp)))


def _yaml(path: Path):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.load(path), resolve=True) if path.is_file() else None


def _validation(run: Path, eval_dir: str | None, evaluate: bool) -> dict | None:
    from codec.checkpoint import file_sha256

    ckpt = run / "last.ckpt"
    sha = file_sha256(ckpt)
    cache = run / "recipe_val.json"
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("checkpoint_sha256") == sha and cached.get("eval_dir") == eval_dir:
            return cached["val"]
    if not evaluate:
        return None
    from codec.checkpoint import load_checkpoint
    from codec.engine.validation import eval_paths, validate

    model, _ = load_checkpoint(ckpt)
    val = validate(model, eval_paths(eval_dir, None))
    cache.write_text(json.dumps({"checkpoint_sha256": sha, "eval_dir": eval_dir, "val": val}, indent=2))
    return val


def collect(sweep_dir: str | Path, reference: dict | None, eval_dir: str | None = None,
            evaluate: bool = True) -> list[dict]:
    """One row per run directory under ``sweep_dir`` that holds ``last.ckpt`` (sorted by path)."""
    from distill.run import val_rd_loss

    sweep_dir = Path(sweep_dir)
    rows = []
    for ckpt in sorted(sweep_dir.rglob("last.ckpt")):
        run = ckpt.parent
        cfg = _yaml(run / ".hydra" / "config.yaml")
        if cfg is None:
            raise ValueError(f"{run}: no .hydra/config.yaml; bench.recipe reads each run's Hydra config")
        summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").is_file() else {}
        from codec.checkpoint import read_checkpoint

        steps = int(read_checkpoint(ckpt).get("step") or summary.get("steps") or 0)
        val = (summary.get("val") or None) if summary.get("steps") == steps else None
        val = val or _validation(run, eval_dir, evaluate)
        tc, dc = cfg["trainer"], cfg["data"]
        seconds = summary.get("seconds") if summary.get("steps") == steps and not summary.get("resumed_from") else None
        row = {"run": run.relative_to(sweep_dir).as_posix(), "codec": cfg["codec"]["name"],
               "overrides": _yaml(run / ".hydra" / "overrides.yaml") or [],
               "lr": tc["lr"], "warmup_steps": tc.get("warmup_steps", 0), "batch_size": tc["batch_size"],
               "crop_size": dc["crop_size"], "max_minutes": tc.get("max_minutes"), "steps": steps,
               "seconds": seconds, "crops": steps * tc["batch_size"],
               "megapixels": steps * tc["batch_size"] * dc["crop_size"] ** 2 / 1e6, "lmbda": cfg["loss"].get("lmbda"),
               "val": val, "rd_loss": val_rd_loss(val or {}, cfg["loss"]),
               "psnr_gap": (psnr_gap(reference["results"], val["bpp"], val["psnr_rgb"])
                            if reference and val else None)}
        rows.append(row)
    if not rows:
        raise ValueError(f"{sweep_dir}: no run directory with a last.ckpt")
    return rows


def _f(v, spec: str) -> str:
    return "" if v is None else format(v, spec)


def to_markdown(rows: list[dict], reference_name: str | None) -> str:
    best = min((r["rd_loss"] for r in rows if r["rd_loss"] is not None), default=None)
    lines = ["| run | lr | warm-up | batch | crop | steps | minutes | crops seen | Mpixels seen | bpp | PSNR-RGB | "
             f"PSNR-YCbCr | RD loss | dB vs {reference_name or 'reference'} |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        v = r["val"] or {}
        loss = _f(r["rd_loss"], ".4f")
        if best is not None and r["rd_loss"] == best:
            loss = f"**{loss}**"
        lines.append(f"| `{r['run']}` | {r['lr']:g} | {r['warmup_steps']} | {r['batch_size']} | {r['crop_size']} | "
                     f"{r['steps']} | {_f(r['seconds'] and r['seconds'] / 60, '.1f')} | {r['crops']} | "
                     f"{r['megapixels']:.1f} | {_f(v.get('bpp'), '.3f')} | {_f(v.get('psnr_rgb'), '.2f')} | "
                     f"{_f(v.get('psnr_ycbcr'), '.2f')} | {loss} | {_f(r['psnr_gap'], '+.2f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.recipe", description=__doc__.split("\n\n")[0])
    p.add_argument("sweep_dir")
    p.add_argument("--reference", default="results/bench/jpeg.json",
                   help="a bench JSON whose PSNR-RGB curve each run is compared with at its own bpp")
    p.add_argument("--eval-dir", default="data/prepared/eval", help="images to validate stopped runs on")
    p.add_argument("--no-evaluate", action="store_true", help="only use validations already made")
    args = p.parse_args(argv)
    try:
        reference = json.loads(Path(args.reference).read_text()) if args.reference else None
        rows = collect(args.sweep_dir, reference, args.eval_dir, evaluate=not args.no_evaluate)
    except (OSError, ValueError) as e:
        print(f"bench.recipe: {e}", file=sys.stderr)
        return 2
    command = "python -m bench.recipe " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    name = reference.get("name") if reference else None
    out = Path(args.sweep_dir)
    (out / "recipe.json").write_text(json.dumps({"command": command, "reference": args.reference, "reference_name": name,
                                                 "eval_dir": args.eval_dir, "rows": rows}, indent=2))
    table = to_markdown(rows, name)
    (out / "recipe.md").write_text(f"`{command}`\n\n{table}\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
