"""``python -m bench.readme``: regenerate the README's result tables from ``results/``.

Each table sits between ``<!-- results:KEY -->`` and ``<!-- /results:KEY -->`` markers and is
rebuilt from the JSON the benchmark, profiler and training commands wrote, with the command
that produced it; the README never holds a number typed by hand.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def _load(path: Path):
    return json.loads(path.read_text()) if path.exists() else None


def _val_rows(run_dir: Path) -> list[dict]:
    f = run_dir / "metrics.jsonl"
    if not f.exists():
        return []
    return [r for r in (json.loads(line) for line in f.read_text().splitlines() if line.strip()) if "val/bpp" in r]


def teacher_profile(results: Path) -> str:
    prof = _load(results / "profile" / "vmuc" / "profile.json")
    if prof is None:
        return "_no teacher profile yet: `python -m profiling codec=vmuc hydra.run.dir=results/profile/vmuc`_"
    w, h = prof["resolution"]
    lines = [f"Teacher `vmuc` at {w}x{h} (`python -m profiling codec=vmuc hydra.run.dir=results/profile/vmuc`):", "",
             "| side | part | calls | kMAC/px | effective kMAC/px | params |", "|---|---|---:|---:|---:|---:|"]
    for side in ("encoder", "decoder"):
        for part, row in prof[side]["parts"].items():
            lines.append(f"| {side} | `{part}` | {row['calls']} | {row['kmac_per_px']:.2f} | "
                         f"{row.get('effective_kmac_per_px', row['kmac_per_px']):.2f} | {row.get('params', '')} |")
        s = prof[side]
        lines.append(f"| **{side}** | **total** | | **{s['kmac_per_px']:.2f}** | {s['effective_kmac_per_px']:.2f} | {s['params']} |")
    return "\n".join(lines)


def zoo(results: Path) -> str:
    md = results / "profile" / "zoo.md"
    return md.read_text().strip() if md.exists() else "_no zoo table yet: `python -m profiling.zoo teacher=vmuc`_"


def training(results: Path) -> str:
    out = []
    base = results / "train" / "baselines"
    if base.exists():
        out += ["Baselines, N=32, M=48, 128x128 crops, batch 8, lambda 0.01, on the built-in images, CPU "
                "(`python -m codec.train codec=NAME codec.N=32 codec.M=48 trainer.max_steps=400 ... "
                "trainer.val_at_start=true hydra.run.dir=results/train/baselines/NAME`; the exact command is in "
                "each `summary.json`). Real bitstreams on 3 built-in images:", "",
                "| codec | step | bpp | PSNR-RGB (dB) | MS-SSIM |", "|---|---:|---:|---:|---:|"]
        for d in sorted(p for p in base.iterdir() if p.is_dir()):
            for r in _val_rows(d):
                out.append(f"| `{d.name}` | {r['step']} | {r['val/bpp']:.3f} | {r['val/psnr_rgb']:.2f} | {r['val/ms_ssim']:.3f} |")
        out.append("")
    for name, title in (("teacher_cpu", "Teacher `vmuc`"), ("student_cpu", "Student")):
        d = results / "train" / name
        if not d.exists():
            continue
        runs = sorted(p for p in d.iterdir() if p.is_dir() and (p / "summary.json").exists())
        if not runs:
            continue
        cmd = _load(runs[0] / "summary.json").get("command", "")
        out += [f"{title}, CPU (2 cores), honestly short: `{cmd}`. Validation with real bitstreams on the "
                "8 eval images (768x512) from `python -m codec.data prepare`:", "",
                "| run | steps | seconds | bpp | PSNR-RGB (dB) | MS-SSIM |", "|---|---:|---:|---:|---:|---:|"]
        for r in runs:
            s = _load(r / "summary.json")
            v = s.get("val") or {}
            if v:
                out.append(f"| {r.name} | {s['steps']} | {s['seconds']:.0f} | {v['bpp']:.3f} | {v['psnr_rgb']:.2f} | "
                           f"{v['ms_ssim']:.3f} |")
        out.append("")
    speed = _load(results / "train_speed.json")
    if speed:
        out += [f"Training speed side by side (`{speed['command']}`; batch {speed['batch_size']}, "
                f"{speed['crop']}x{speed['crop']} crops, {speed['threads']} threads, median of {speed['rounds']} rounds):",
                "", "| codec | steps/s | speed-up | params |", "|---|---:|---:|---:|"]
        for name, r in speed["codecs"].items():
            out.append(f"| `{name}` | {r['steps_per_s']:.3f} | {r['speedup_vs_first']:.1f}x | {r['params']} |")
    return "\n".join(out).strip() or "_no training results yet_"


def distill(results: Path) -> str:
    """The CPU distillation evidence: the teacher's run, the student runs at equal steps, and
    the steps/s of scratch, live-teacher and cached-teacher training side by side."""
    from distill.summary import collect, fmt as f, rows_with_gains

    out = []
    for tdir in sorted((results / "train").glob("teacher_*/*")):
        if tdir.parent.name == "teacher_cpu":  # the vmuc runs, in the training section
            continue
        s = _load(tdir / "summary.json")
        if not s:
            continue
        resumed = f", resumed at step {s['resumed_from']}" if s.get("resumed_from") else ""
        out += [f"Teacher `{tdir.parent.name}/{tdir.name}` ({s['steps']} steps; the last process ran "
                f"{s['seconds'] / 60:.0f} min on one core{resumed}; `{s['command']}`), validation with real "
                f"bitstreams on the 8 eval images:", "",
                "| step | bpp | PSNR-RGB (dB) | PSNR-YCbCr (dB) | MS-SSIM |", "|---:|---:|---:|---:|---:|"]
        out += [f"| {r['step']} | {r['val/bpp']:.4f} | {r['val/psnr_rgb']:.2f} | {r['val/psnr_ycbcr']:.2f} | "
                f"{r['val/ms_ssim']:.4f} |" for r in _val_rows(tdir)]
        out.append("")
    for sweep in sorted(p for p in (results / "distill").glob("*") if p.is_dir()):
        rows = rows_with_gains(collect(sweep))
        if not rows:
            continue
        first = _load(sweep / rows[0]["run"] / "summary.json")
        out += [f"Students `{sweep.name}`, same seed and steps, validation with real bitstreams on the 8 eval images "
                f"(each run's command is in its `summary.json`, e.g. `{first['command']}`):", "",
                "| preset | student | steps | bpp | PSNR-RGB | PSNR-YCbCr | RD loss | vs `none`: dPSNR-YCbCr | dbpp | "
                "RD loss | dec kMAC/px | gate |",
                "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|"]
        for r in sorted(rows, key=lambda r: r["preset"] != "none"):
            g = r["gain_over_none"]
            out.append(f"| {r['preset']} | `{r['student']}` | {r['steps']} | {f(r['bpp'], '.4f')} | "
                       f"{f(r['psnr_rgb'], '.2f')} | {f(r['psnr_ycbcr'], '.2f')} | {f(r['val_rd_loss'], '.4f')} | "
                       f"{f(g.get('d_psnr_ycbcr'), '+.2f')} | {f(g.get('d_bpp'), '+.4f')} | "
                       f"{f(g.get('rd_loss_change'), '+.1%')} | {f(r['decoder_kmac_per_px'], '.3f')} | "
                       f"{ {True: 'PASS', False: 'FAIL', None: ''}[r['gate_passed']] } |")
        out.append("")
    speed = _load(results / "distill" / "train_speed.json")
    if speed:
        out += [f"Distillation steps/s side by side (`{speed['command']}`; batch {speed['batch_size']}, "
                f"{speed['crop']}x{speed['crop']} crops, {speed['threads']} thread(s), median of {speed['rounds']} "
                f"rounds):", "", "| run | steps/s | vs scratch |", "|---|---:|---:|"]
        for name, r in speed["codecs"].items():
            out.append(f"| `{name}` | {r['steps_per_s']:.3f} | {r['speedup_vs_first']:.2f}x |")
    return "\n".join(out).strip() or "_no distillation results yet_"


def prune(results: Path) -> str:
    """Each pruning run's steps (prune.json), and the same architecture trained from scratch
    (``results/prune/<run>_scratch``) when there is one."""
    out = []
    for run in sorted(p for p in (results / "prune").glob("*") if (p / "prune.json").exists()):
        blob = _load(run / "prune.json")
        rows, cmd = blob["rows"], blob.get("command", "")
        out += [f"Pruning run `{run.name}`" + (f" (`{cmd}`)" if cmd else "") + "; validation with real bitstreams "
                "on the 8 eval images after each step's fine-tuning:", "",
                "| step | ratio | enc kMAC/px | dec kMAC/px | params | bpp | PSNR-RGB | PSNR-YCbCr |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            out.append(f"| {r['step']} | {r.get('ratio', 0):.3f} | {r['encoder_kmac_per_px']:.3f} | "
                       f"{r['decoder_kmac_per_px']:.3f} | {r['params']} | {r.get('bpp') or 0:.4f} | "
                       f"{r.get('psnr_rgb') or 0:.2f} | {r.get('psnr_ycbcr') or 0:.2f} |")
        scratch = _load(results / "prune" / f"{run.name}_scratch" / "summary.json")
        if scratch and scratch.get("val"):
            v = scratch["val"]
            out += ["", f"The pruned architecture trained from scratch ({scratch['steps']} steps; "
                    f"`{scratch['command']}`): bpp {v['bpp']:.4f}, PSNR-RGB {v['psnr_rgb']:.2f} dB, "
                    f"PSNR-YCbCr {v['psnr_ycbcr']:.2f} dB."]
        out.append("")
    return "\n".join(out).strip() or "_no pruning results yet_"


SECTIONS = {"teacher-profile": teacher_profile, "zoo": zoo, "training": training, "distill": distill, "prune": prune}


def update(readme: Path, results: Path) -> list[str]:
    text = readme.read_text()
    done = []
    for key, fn in SECTIONS.items():
        pattern = re.compile(rf"(<!-- results:{key} -->\n).*?(<!-- /results:{key} -->)", re.S)
        if pattern.search(text):
            body = fn(results)
            text = pattern.sub(lambda m: m.group(1) + body + "\n" + m.group(2), text)
            done.append(key)
    readme.write_text(text)
    return done


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    readme = Path(argv[0]) if argv else Path("README.md")
    results = Path(argv[1]) if len(argv) > 1 else Path("results")
    print(f"updated {readme}: {', '.join(update(readme, results)) or 'no markers found'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
