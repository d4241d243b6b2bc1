"""``python -m distill.summary SWEEP_DIR``: one row per distillation run of a sweep.

Reads every ``summary.json`` under SWEEP_DIR (a Hydra multirun directory, or any folder of run
directories), prints a markdown table and writes ``SWEEP_DIR/distill_summary.md`` and
``.json``: student, transform, context, KD preset, steps, encoder / decoder kMAC/px, the gate,
validation bpp and PSNR from real bitstreams, and the gain over the ``none`` run of the same
student architecture at the same steps and rate point (PSNR and bpp differences, and the
relative change of the validation RD loss, negative = better).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["collect", "rows_with_gains", "to_markdown", "fmt", "main"]


def collect(sweep_dir: str | Path) -> list[dict]:
    rows = []
    for path in sorted(Path(sweep_dir).rglob("summary.json")):
        s = json.loads(path.read_text())
        if "distill_loss" not in s:
            continue  # not a distillation run
        val = s.get("val") or {}
        rows.append({
            "run": str(path.parent.relative_to(sweep_dir)), "student": s.get("codec"), "transform": s.get("transform"),
            "context": s.get("context"), "preset": s["distill_loss"].get("name"), "steps": s.get("steps"),
            "lmbda": s.get("lmbda"), "architecture_hash": s.get("architecture_hash"),
            "encoder_kmac_per_px": s.get("encoder_kmac_per_px"), "decoder_kmac_per_px": s.get("decoder_kmac_per_px"),
            "gate_passed": s.get("gate_passed"), "bpp": val.get("bpp"), "psnr_rgb": val.get("psnr_rgb"),
            "psnr_ycbcr": val.get("psnr_ycbcr"), "val_rd_loss": s.get("val_rd_loss"),
            "teacher": s.get("teacher_path"), "wandb_group": s.get("wandb_group"),
        })
    return rows


def rows_with_gains(rows: list[dict]) -> list[dict]:
    """Add the gain over the ``none`` run of the same architecture, steps and rate point."""
    baselines = {(r["student"], r["architecture_hash"], r["steps"], r["lmbda"]): r for r in rows if r["preset"] == "none"}
    out = []
    for r in rows:
        base = baselines.get((r["student"], r["architecture_hash"], r["steps"], r["lmbda"]))
        gain = {}
        if base is not None and r is not base and None not in (r["bpp"], base["bpp"]):
            gain = {"d_psnr_ycbcr": r["psnr_ycbcr"] - base["psnr_ycbcr"], "d_psnr_rgb": r["psnr_rgb"] - base["psnr_rgb"],
                    "d_bpp": r["bpp"] - base["bpp"]}
            if r["val_rd_loss"] and base["val_rd_loss"]:
                gain["rd_loss_change"] = r["val_rd_loss"] / base["val_rd_loss"] - 1
        out.append({**r, "gain_over_none": gain})
    return out


def fmt(value, spec: str) -> str:
    """``format(value, spec)``, or an empty cell for a missing value."""
    return "" if value is None else format(value, spec)


def to_markdown(rows: list[dict]) -> str:
    head = ("| run | student | transform | context | preset | steps | enc kMAC/px | dec kMAC/px | gate | bpp | "
            "PSNR-RGB | PSNR-YCbCr | RD loss | vs none: dPSNR-YCbCr | dbpp | RD loss |\n"
            "|---|---|---|---|---|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|\n")
    lines = []
    for r in rows:
        g = r["gain_over_none"]
        gate = {True: "PASS", False: "FAIL", None: ""}[r["gate_passed"]]
        lines.append(f"| {r['run']} | {r['student']} | {r['transform'] or ''} | {r['context'] or ''} | {r['preset']} | "
                     f"{r['steps']} | {fmt(r['encoder_kmac_per_px'], '.3f')} | {fmt(r['decoder_kmac_per_px'], '.3f')} | "
                     f"{gate} | {fmt(r['bpp'], '.4f')} | {fmt(r['psnr_rgb'], '.2f')} | {fmt(r['psnr_ycbcr'], '.2f')} | "
                     f"{fmt(r['val_rd_loss'], '.4f')} | {fmt(g.get('d_psnr_ycbcr'), '+.2f')} | {fmt(g.get('d_bpp'), '+.4f')} | "
                     f"{fmt(g.get('rd_loss_change'), '+.1%')} |")
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m distill.summary", description=__doc__.splitlines()[0])
    ap.add_argument("sweep_dir")
    args = ap.parse_args(argv)
    root = Path(args.sweep_dir)
    if not root.is_dir():
        print(f"distill.summary: {root} is not a directory", file=sys.stderr)
        return 2
    rows = rows_with_gains(collect(root))
    if not rows:
        print(f"distill.summary: no distillation run (summary.json with distill_loss) under {root}", file=sys.stderr)
        return 2
    md = to_markdown(rows)
    (root / "distill_summary.md").write_text(md)
    (root / "distill_summary.json").write_text(json.dumps(rows, indent=2))
    print(md)
    print(f"wrote {root / 'distill_summary.md'} and {root / 'distill_summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
