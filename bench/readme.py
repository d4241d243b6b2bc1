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


def _curves(folder: Path) -> dict[str, dict]:
    """The bench results in ``folder`` by curve name (bench.results.load_results); {} without it."""
    from bench.results import load_results

    return {r["name"]: r for r in load_results(folder)} if folder.is_dir() else {}


def _bd_overlap(anchor: dict, test: dict, key: str = "psnr-rgb") -> tuple[float | None, float, float]:
    """BD-rate (pchip) of the ``test`` results against the ``anchor`` ones on ``key`` (None when
    the curves do not overlap) and the range of ``key`` the two share."""
    from bench.bd import bd_rate

    lo, hi = max(min(anchor[key]), min(test[key])), min(max(anchor[key]), max(test[key]))
    try:
        return bd_rate(list(zip(anchor["bpp"], anchor[key])), list(zip(test["bpp"], test[key])), "pchip"), lo, hi
    except ValueError:
        return None, lo, hi


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
    out += _prune_rate_points(results)
    return "\n".join(out).strip() or "_no pruning results yet_"


def _prune_rate_points(results: Path) -> list[str]:
    """The pruned student and its from-scratch twin as curves (results/prune/vr, each made
    variable-rate by the same extra training) with their BD-rates from the bench results."""
    runs = {name: _load(results / "prune" / "vr" / run / "summary.json")
            for name, run in (("pruned_vr", "dw2x_to_35x"), ("scratch_vr", "dw2x_to_35x_scratch"))}
    curves = {name: _load(results / "bench" / f"{name}.json") for name in (*runs, "jpeg", "avif")}
    if not all(runs.values()) or not all(curves.values()):
        return []
    out = ["Both at four rate points: each checkpoint above (the pruned one and the one trained from scratch) "
           "made variable-rate with `trainer.init_from` + `codec.rates` and trained the same further steps "
           f"(`{runs['pruned_vr']['command']}`; the same for the scratch one), then benchmarked on the eval set "
           f"(`{curves['pruned_vr']['command']}`). BD-rate, pchip:", "",
           "| model | steps in all | bpp range | PSNR-RGB range | vs JPEG (PSNR-RGB) | vs AVIF (PSNR-YCbCr) |",
           "|---|---:|---|---|---:|---:|"]
    prior = {"pruned_vr": _load(results / "prune" / "dw2x_to_35x" / "prune.json"),
             "scratch_vr": _load(results / "prune" / "dw2x_to_35x_scratch" / "summary.json")}

    def bd(anchor, test, key):
        value = _bd_overlap(curves[anchor]["results"], test["results"], key)[0]
        return "n/a (no overlap)" if value is None else f"{value:+.1f} %"

    for name, run in runs.items():
        c = curves[name]["results"]
        if name == "pruned_vr":
            teacher = _load(results / "train" / "teacher_dw2x" / "beta_0.0067" / "summary.json") or {}
            pc = prior[name]["prune"]
            before = (teacher.get("steps") or 0) + int(pc["steps"]) * int(pc["finetune_steps"])
        else:
            before = prior[name]["steps"]
        out.append(f"| `{name}` | {before} + {run['steps']} | {min(c['bpp']):.3f}-{max(c['bpp']):.3f} | "
                   f"{min(c['psnr-rgb']):.2f}-{max(c['psnr-rgb']):.2f} | {bd('jpeg', curves[name], 'psnr-rgb')} | "
                   f"{bd('avif', curves[name], 'psnr-ycbcr')} |")
    return out + ["", "Both are points on the report's Pareto figure (`results/REPORT.md`).", ""]


def variable_rate(results: Path) -> str:
    """One variable-rate model against four fixed-rate ones (``python -m bench.variable_rate``)."""
    blob = _load(results / "variable_rate" / "bench" / "variable_rate.json")
    if blob is None:
        return "_no variable-rate results yet: see results/variable_rate/README.md_"
    v, f = blob["variable"], blob["fixed"]

    def summary_of(ckpt):
        run = _load(Path(ckpt).parent / "summary.json") if ckpt else None
        return f"{run['steps']} steps, {run['seconds'] / 60:.0f} min" if run else "?"

    out = [f"`{v['name']}` (one checkpoint, {summary_of(v['points'][0]['checkpoint'])}) against `{f['name']}` "
           f"({len(f['points'])} checkpoints, {', '.join(summary_of(p['checkpoint']) for p in f['points'])}); "
           f"bench commands `{v['command']}` and `{f['command']}`; summary `{blob['command']}`.", "",
           "| curve | R | lambda | bpp | PSNR-RGB | PSNR-YCbCr | MS-SSIM |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, curve in ((v["name"], v), (f["name"], f)):
        for p in curve["points"]:
            rate = "" if p["rate"] is None else f"{p['rate']:g}"
            out.append(f"| {name} | {rate} | {p['lmbda']:.4g} | {p['bpp']:.4f} | {p['psnr-rgb']:.2f} | "
                       f"{p['psnr-ycbcr']:.2f} | {p['ms-ssim-rgb']:.4f} |")
    bd = blob["bd_against_fixed"]

    def cell(key):
        r = bd[key]
        return "n/a" if r["bd_rate"] is None else f"{r['bd_rate']:+.2f} % ({r['bd_psnr']:+.2f} dB)"

    out += ["", f"BD-rate (BD-PSNR) of the variable-rate curve against the fixed-rate one: PSNR-RGB "
            f"{cell('psnr-rgb/pchip')} (pchip), {cell('psnr-rgb/cubic')} (cubic); PSNR-YCbCr "
            f"{cell('psnr-ycbcr/pchip')} (pchip), {cell('psnr-ycbcr/cubic')} (cubic). "
            f"bpp strictly increasing in R on every eval image: **{blob['all_images_monotone']}** "
            f"({sum(blob['bpp_strictly_increasing_in_rate'].values())} of {len(blob['bpp_strictly_increasing_in_rate'])})."]
    return "\n".join(out)


_BACKENDS = {"pytorch": "PyTorch", "onnxruntime": "ONNX Runtime", "native": "native"}


def speed(results: Path) -> str:
    """Decode and encode wall time side by side, the targets, and one student's per-part
    breakdown (``python -m bench.speed``, results/speed/speed.json)."""
    blob = _load(results / "speed" / "speed.json")
    if blob is None:
        return "_no speed results yet: `python -m bench.speed`_"
    ev = blob["eval_set"]
    sizes = sorted({f"{w}x{h}" for w, h in ev["sizes"]})
    backends = [b for b in _BACKENDS if any(b in row["decode_ms"] for row in blob["codecs"])]
    load = lambda v: " / ".join(f"{x:.2f}" for x in v)  # noqa: E731
    out = [f"`{blob['command']}` ({blob['date']}): {blob['threads']} thread(s), {ev['count']} image(s) "
           f"{', '.join(sizes)} from `{ev['dir']}`, one warm-up round then {blob['rounds']} interleaved rounds, "
           f"median per codec; the process could use {blob.get('cpu_affinity') or blob['cpus']} of {blob['cpus']} CPUs "
           f"({blob['machine']}); load average (1 / 5 / 15 min) "
           f"{load(blob['load_average_before'])} before and {load(blob['load_average_after'])} after. "
           f"Learned codecs code with their inference form, in PyTorch or with their one-side parts in ONNX "
           f"Runtime; `untrained` ones have random weights (their neural time is the trained layers', their rate and "
           f"entropy-coding time are not). Classical codecs run at the quality closest in bytes to "
           f"`{blob['targets']['student']}` on each image.", "",
           "| codec | weights | bpp | PSNR-RGB | "
           + " | ".join(f"encode ms {_BACKENDS[b]} | decode ms {_BACKENDS[b]}" for b in backends)
           + " | " + " | ".join(f"{blob['teacher']} / codec, {_BACKENDS[b]}" for b in backends if b != "native") + " |",
           "|---|---|---:|---:|" + "---:|" * (2 * len(backends) + len([b for b in backends if b != "native"]))]
    ratios = blob["teacher_over_codec_decode"]

    def ms(row, key, b):
        value = row[key] if isinstance(row[key], dict) else {"native": row[key]}  # older files: one encode time
        return f"{value[b]:.1f}" if b in value else ""

    for row in blob["codecs"]:
        weights = "" if row["kind"] != "learned" else ("trained" if row["trained"] else "untrained")
        if row.get("rate") is not None and row.get("trained"):
            weights += f", rate {row['rate']:g}"
        cells = [c for b in backends for c in (ms(row, "encode_ms", b), ms(row, "decode_ms", b))]
        rat = [f"{ratios[row['label']][b]:.2f}x" if row["label"] in ratios and b in ratios[row["label"]] else ""
               for b in backends if b != "native"]
        out.append(f"| `{row['label']}` | {weights} | {row['bpp']:.4f} | {row['psnr_rgb']:.2f} | "
                   + " | ".join(cells + rat) + " |")
    t = blob["targets"]

    def verdict(measured, target, met, unit, fmt):
        if isinstance(measured, dict):
            return "; ".join(f"{_BACKENDS[b]} {fmt.format(v)}{unit} ({'met' if met[b] else 'not met'})"
                             for b, v in measured.items())
        return f"{fmt.format(measured)}{unit} ({'met' if met else 'not met'})"

    for t in [t, *blob.get("other_trained_targets", {}).values()]:
        d, e, r = t["decode_ms"], t["encode_ms"], t["teacher_over_student_decode"]
        out += ["", f"Targets for `{t['student']}` ({'trained' if t['trained'] else 'untrained'}, {t['bpp']:.3f} bpp): "
                f"decode <= {d['target']:g} ms: {verdict(d['measured'], d['target'], d['met'], ' ms', '{:.1f}')}. "
                f"Encode <= {e['target']:g} ms: {verdict(e['measured'], e['target'], e['met'], ' ms', '{:.1f}')}. "
                f"Teacher / student decode >= {r['target']:g}x: "
                f"{verdict(r['measured'], r['target'], r['met'], 'x', '{:.2f}')}."]
    b = blob["breakdown"]
    order = ["g_a", "h_a", "record z", "rANS decode z", "h_s", "context", "entropy_parameters", "scale index",
             "record y", "rANS decode y", "rANS encode"]
    out += ["", f"Where the time goes, `{b['codec']}` on `{b['image']}` ({b['bytes']} bytes), median ms of "
            f"{b['rounds']} rounds, every decode reading the same stream; `plain` runs the one-side parts (analysis, "
            f"synthesis) as trained, `pytorch` their inference form as `compress`/`decompress` run it (the analysis in "
            f"channels-last layout), `pytorch nchw` the form in the default layout, `pytorch channels_last` the form "
            f"in channels-last layout on both sides, `onnxruntime` the form's ONNX graphs; the parts both sides run "
            f"are PyTorch in all of them."]
    for side in ("encode", "decode"):
        cols = [c for c in b["ms"] if c.split(" ", 1)[0] == side]
        if not cols:
            continue
        seen = list(dict.fromkeys(k for c in cols for k in b["ms"][c] if k not in ("other", "total")))
        keys = [k for k in order if k in seen] + [k for k in seen if k not in order] + ["other", "total"]
        out += ["", f"| {side} | " + " | ".join(c.split(" ", 1)[1] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
        for k in keys:
            cells = [f"{b['ms'][c][k]:.1f}" if b["ms"][c].get(k) is not None else "" for c in cols]
            out.append(f"| {k} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def overfit(results: Path) -> str:
    """Latent overfitting (codec.overfit): each ``+overfit N`` curve against its feed-forward one
    (results/overfit/bench/overfit.json from ``python -m bench ... overfit_steps=[...]``), the
    encoder's kMAC/px with N steps (results/overfit/profile/*/profile.json), and the tuning on
    training images (results/overfit/tune_*.json)."""
    from omegaconf import OmegaConf

    from profiling.overfit import overfit_encoder_kmac

    base = results / "overfit"
    table = _load(base / "bench" / "overfit.json")
    if not table or not table.get("rows"):
        return "_no overfitting results yet: `python -m bench ... overfit_steps=[100,500] out_dir=results/overfit/bench`_"
    curves = _curves(base / "bench")
    out = []
    for name in dict.fromkeys(row["base"] for row in table["rows"]):
        rows = [r for r in table["rows"] if r["base"] == name]
        ev = curves[rows[0]["name"]]["eval_set"]
        cmd = curves[rows[0]["name"]]["command"]
        res = curves[name]["results"] if name in curves else None
        flat = ""
        if res and len(res["bpp"]) > 1:
            flat = (f" The feed-forward curve goes from {res['bpp'][0]:.3f} to {res['bpp'][-1]:.3f} bpp for "
                    f"{res['psnr-ycbcr'][0]:.2f} to {res['psnr-ycbcr'][-1]:.2f} dB PSNR-YCbCr: on a curve this flat a "
                    f"fraction of a dB is worth a large share of the rate, so BD-PSNR (quality at equal rate) is the "
                    f"steadier figure.")
        threads = curves[rows[0]["name"]].get("environment", {}).get("bench_threads")
        threads = "" if threads is None else f", {threads} thread{'s' if threads != 1 else ''}"
        out += [f"`{name}`, {ev['count']} images of `{ev['dir']}` ({', '.join(ev['names'])}); real "
                f"bitstreams{threads}, encode time per image includes the overfitting (`{cmd}`).{flat}", "",
                "| N | method | lr | BD-rate PSNR-YCbCr vs N=0 | BD-rate PSNR-RGB vs N=0 | BD-PSNR-YCbCr | BD-PSNR-RGB | "
                "encode s/image (median) |",
                "|---:|---|---:|---:|---:|---:|---:|---:|",
                f"| 0 | feed-forward | | | | | | {rows[0]['encode_median_s_feed_forward']:.2f} |"]
        for r in rows:
            n_pts = len(r["points"])

            def bd(cell, unit="%"):
                if cell is None or cell["value"] is None:
                    return f"n/a ({n_pts} rate point{'s' if n_pts > 1 else ''})"
                return f"{cell['value']:+.2f} %" if unit == "%" else f"{cell['value']:+.3f} dB"

            out.append(f"| {r['steps']} | {r['method']} | {r['lr']:g} | {bd(r['bd_rate_psnr_ycbcr_pchip'])} | "
                       f"{bd(r['bd_rate_psnr_rgb_pchip'])} | {bd(r.get('bd_psnr_ycbcr_pchip'), 'dB')} | "
                       f"{bd(r.get('bd_psnr_rgb_pchip'), 'dB')} | {r['encode_median_s']:.2f} |")
        out += ["", "| rate point (lambda) | N | bpp | dbpp | dPSNR-YCbCr (dB) | dPSNR-RGB (dB) | RD loss | vs N=0 |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            for p in r["points"]:
                lm = p["rate_point"].get("lmbda")
                rd = "n/a" if p["rd_loss"] is None else f"{p['rd_loss']:.4f}"
                drd = "n/a" if p["d_rd_loss_percent"] is None else f"{p['d_rd_loss_percent']:+.2f} %"
                out.append(f"| {'' if lm is None else f'{lm:g}'} | {r['steps']} | {p['bpp']:.4f} | "
                           f"{p['d_bpp_percent']:+.2f} % | {p['d_psnr_ycbcr']:+.3f} | {p['d_psnr_rgb']:+.3f} | {rd} | {drd} |")
        out.append("")
    profiles = [(d.name, _load(d / "profile.json")) for d in sorted((base / "profile").glob("*")) if d.is_dir()]
    profiles = [(n, p) for n, p in profiles if p and p.get("encoder_overfit")]
    if profiles:
        steps = sorted({0, 100, *(p["encoder_overfit"]["steps"] for _, p in profiles)})
        w, h = profiles[0][1]["resolution"]
        out += [f"Encoder kMAC/px with N overfitting steps at {w}x{h} (feed-forward + N x step + overhead; a step "
                f"is one real step counted with torch.utils.flop_counter, forward and backward; the gate judges "
                f"N = 0); the decoder is unchanged:", "",
                "| model | step = forward + backward | " + " | ".join(f"N = {n}" for n in steps)
                + " | decoder | step wall ms (1 thread) | command |",
                "|---|---:|" + "---:|" * (len(steps) + 2) + "---|"]
        for n, p in profiles:
            e = p["encoder_overfit"]
            overrides = base / "profile" / n / ".hydra" / "overrides.yaml"
            cmd = ("python -m profiling " + " ".join(str(o) for o in OmegaConf.load(overrides))) \
                if overrides.exists() else ""
            wall = "" if e.get("step_wall_ms") is None else f"{e['step_wall_ms']:.0f}"
            out.append(f"| `{n}` | {e['step_kmac_per_px']:.2f} = {e['step_forward_kmac_per_px']:.2f} + "
                       f"{e['step_backward_kmac_per_px']:.2f} | "
                       + " | ".join(f"{overfit_encoder_kmac(e, s):.1f}" for s in steps)
                       + f" | {p['decoder']['kmac_per_px']:.2f} | {wall} | `{cmd}` |")
        out.append("")
    tunes = [_load(p) for p in sorted(base.glob("tune_*.json"))]
    tunes = [t for t in tunes if t]
    if tunes:
        out += ["Defaults chosen on training images, never the eval set: mean change of the real RD loss "
                "(bytes and 8-bit decode) per method:lr:", ""]
        for t in tunes:
            steps = t["rows"][0]["steps"]
            cells = ", ".join(f"{k} {v:+.1%}" for k, v in t["mean_rd_loss_change"].items())
            n = len({r["image"] for r in t["rows"]})
            out.append(f"- N = {steps}, {n} training image{'s' if n > 1 else ''}: {cells} (`{t['command']}`)")
    return "\n".join(out).strip()


def default_model(results: Path) -> str:
    """What the shipped default model is (codec/assets/default.ckpt) and where it stands on the
    eval set (its bench curve, results/bench/default_model.json, with BD-rates in bd.json)."""
    from codec.checkpoint import read_checkpoint, training_config
    from codec.default import DEFAULT_CHECKPOINT

    if not DEFAULT_CHECKPOINT.exists():
        return "_no default model shipped yet: `python -m codec ship --checkpoint CKPT`_"
    blob = read_checkpoint(DEFAULT_CHECKPOINT)
    meta, cfg = blob.get("meta") or {}, blob["config"]
    trained = training_config(blob)
    steps = (trained.get("trainer") or {}).get("max_steps")
    text = (f"The default model is `{blob['codec']}`" + (f" with {len(cfg['rates'])} rate points (betas "
            f"{', '.join(f'{r:g}' for r in cfg['rates'])})" if cfg.get("rates") else "") +
            (" and per-layer widths (`codec.layer_widths`)" if cfg.get("layer_widths") else "") +
            f", {DEFAULT_CHECKPOINT.stat().st_size / 1e6:.1f} MB of float16 weights, trained for {steps} steps on "
            f"this project's 2-core CPU (`{_repo_path(meta.get('source'))}`){_init_chain(trained, steps)}.")
    if cfg.get("rates"):
        text += f" `--rate R` takes R in [0, {len(cfg['rates']) - 1}]; the default is {len(cfg['rates']) // 2}."
    bench = _load(results / "bench" / "default_model.json")
    if bench:
        r = bench["results"]
        text += (f" On the eval images it spans {min(r['psnr-rgb']):.2f} to {max(r['psnr-rgb']):.2f} dB PSNR-RGB at "
                 f"{min(r['bpp']):.3f} to {max(r['bpp']):.3f} bpp (`{bench.get('command', '')}`).")
        text += " " + _bd_against_classical(results, r)
    return text


def _repo_path(path) -> str:
    """``path`` relative to the working directory when it lies inside it (runs record absolute ones)."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except (TypeError, ValueError):
        return str(path)


def _init_chain(trained: dict, steps) -> str:
    """Where a training started when it started from another checkpoint (``trainer.init_from``),
    link by link: each checkpoint's run folder's summary.json (steps), and the checkpoint itself
    (when on this machine) for the link before it; '' for a training from scratch."""
    from codec.checkpoint import CheckpointError, read_checkpoint, training_config

    links, total, cfg, seen = [], steps, trained, set()
    while (init := (cfg.get("trainer") or {}).get("init_from")) and init not in seen:
        seen.add(init)
        summary = _load(Path(init).parent / "summary.json")
        n = summary.get("steps") if summary else None
        how = (f", distilled from `{_repo_path(summary['teacher_path'])}` (KD preset "
               f"`{(summary.get('distill_loss') or {}).get('name')}`)") if summary and summary.get("teacher_path") else ""
        links.append(f"`{_repo_path(init)}`" + (f" ({n} steps{how})" if n is not None else " (steps unknown)"))
        total = total + n if n is not None and total is not None else None
        try:
            cfg = training_config(read_checkpoint(init))
        except CheckpointError:  # not on this machine (or unreadable): the chain ends with its summary
            break
    if not links:
        return ""
    return (", starting from " + ", which started from ".join(links)
            + (f": {total} steps in all" if total is not None else ""))


def _bd_against_classical(results: Path, r: dict) -> str:
    """BD-rate (PSNR-RGB, pchip) against each classical codec of results/bench, with the PSNR
    range the two curves share (a win over a sliver of overlap says little)."""
    cells = []
    for name in ("jpeg", "webp", "avif"):
        c = _load(results / "bench" / f"{name}.json")
        if not c:
            continue
        v, lo, hi = _bd_overlap(c["results"], r)
        cells.append(f"{name} n/a (no overlap)" if v is None else f"{name} {v:+.1f} % (over {lo:.2f}-{hi:.2f} dB)")
    return ("BD-rate, PSNR-RGB, pchip, against " + "; ".join(cells) + ".") if cells else ""


def _bd_cell(anchor: dict, test: dict) -> str:
    """BD-rate (PSNR-RGB, pchip) of ``test`` against ``anchor`` with the PSNR range both share."""
    v, lo, hi = _bd_overlap(anchor, test)
    return "n/a (no overlap)" if v is None else f"{v:+.1f} % ({lo:.2f}-{hi:.2f})"


def learned_curves(results: Path) -> str:
    """Every learned curve of results/bench beside the classical anchors: its span and its
    BD-rate against JPEG, WebP and AVIF with the PSNR range each pair shares."""
    curves = _curves(results / "bench")
    anchors = [(n, curves[n]["results"]) for n in ("jpeg", "webp", "avif") if n in curves]
    learned = [c for c in curves.values() if c["kind"] == "learned"]
    if not learned or not anchors:
        return "_no learned and classical curves in results/bench yet: see results/bench/run.sh_"
    ev = learned[0]["eval_set"]
    out = [f"Every learned curve of `results/bench` ({ev['count']} eval images of `{ev['dir']}`, real bytes; "
           "commands in `results/bench/run.sh` and each JSON). BD-rate, PSNR-RGB, pchip, negative = fewer bits "
           "than the classical codec, with the PSNR-RGB range (dB) the two curves share: a figure over a narrow "
           "overlap says little.", "",
           "| curve | codec | points | bpp | PSNR-RGB (dB) | " + " | ".join(f"vs {n}" for n, _ in anchors) + " |",
           "|---|---|---:|---:|---:|" + "---:|" * len(anchors)]
    for c in sorted(learned, key=lambda c: c["name"]):
        r = c["results"]
        out.append(f"| `{c['name']}` | `{c['codec']}` | {len(r['bpp'])} | {min(r['bpp']):.3f} - {max(r['bpp']):.3f} | "
                   f"{min(r['psnr-rgb']):.2f} - {max(r['psnr-rgb']):.2f} | "
                   + " | ".join(_bd_cell(a, r) for _, a in anchors) + " |")
    return "\n".join(out + _learned_matrix(learned))


def _learned_matrix(learned: list[dict]) -> list[str]:
    """The learned curves against each other: BD-rate of each row against each column, among
    the curves that share a PSNR range with at least one other (the rest are named)."""
    named = sorted(learned, key=lambda c: c["name"])
    cells = {(a["name"], b["name"]): _bd_overlap(b["results"], a["results"]) for a in named for b in named if a is not b}
    shown = [c for c in named if any(cells[(c["name"], o["name"])][0] is not None for o in named if o is not c)]
    if len(shown) < 2:
        return []
    alone = [c["name"] for c in named if c not in shown]
    out = ["", "The learned curves against each other: BD-rate (PSNR-RGB, pchip) of the row's curve against the "
           "column's, with the PSNR-RGB range (dB) both share; negative = the row needs fewer bits."
           + (f" Not shown (no overlap with any other): {', '.join(f'`{n}`' for n in alone)}." if alone else ""), "",
           "| row vs column | " + " | ".join(f"`{c['name']}`" for c in shown) + " |", "|---|" + "---:|" * len(shown)]
    for a in shown:
        row = []
        for b in shown:
            if a is b:
                row.append("")
                continue
            v, lo, hi = cells[(a["name"], b["name"])]
            row.append("n/a" if v is None else f"{v:+.1f} % ({lo:.2f}-{hi:.2f})")
        out.append(f"| `{a['name']}` | " + " | ".join(row) + " |")
    return out


def toderici(results: Path) -> str:
    """The recurrent baseline (codec.models.toderici): its training run, its RD curve beside JPEG
    (one checkpoint, one point per iteration count K) and its kMAC/px at every K, from
    results/toderici/{train/summary.json, bench/*.json, profile.json, profile_paper/profile.json}."""
    base = results / "toderici"
    run = _load(base / "train" / "summary.json")
    if run is None:
        return "_no toderici results yet: see README, Recurrent baseline_"
    resumed = run.get("resumed_from") or 0
    out = [f"Training, CPU (one thread on a 2-core machine shared with other jobs), {run['steps']} steps: "
           f"`{run['command']}`"
           + (f"; steps 0-{resumed} ran first under a longer `trainer.max_steps` and the command shown resumed them "
              f"(same batches and learning rate as an uninterrupted run: the decay step lies after {resumed}); the "
              f"resumed part took {run['seconds']:.0f} s" if resumed else f"; {run['seconds']:.0f} s")
           + ". Validation with real bitstreams on the eval images at every K:", "",
           "| K | bpp | PSNR-RGB (dB) | MS-SSIM |", "|---:|---:|---:|---:|"]
    val = run.get("val") or {}
    ks = sorted(int(k.split("@")[1]) for k in val if k.startswith("bpp@"))
    for k in ks:
        out.append(f"| {k} | {val[f'bpp@{k}']:.4f} | {val[f'psnr_rgb@{k}']:.2f} | {val[f'ms_ssim@{k}']:.4f} |")
    curves = _curves(base / "bench")
    learned = [c for c in curves.values() if c["kind"] == "learned"]
    if learned:
        ev = learned[0]["eval_set"]
        out += ["", f"RD on the {ev['count']} eval images (`{ev['dir']}`), real bytes, means over images "
                f"(`{learned[0]['command']}`; report: `results/toderici/REPORT.md`). Decode ms: median wall time, "
                f"1 thread, on a CPU shared with other jobs (the report says how busy it was):", "",
                "| codec | rate point | bpp | PSNR-RGB (dB) | PSNR-YCbCr (dB) | MS-SSIM | decode ms |",
                "|---|---|---:|---:|---:|---:|---:|"]
        for c in sorted(curves.values(), key=lambda c: c["kind"] != "learned"):
            res = c["results"]
            for i, point in enumerate(c["rate_points"]):
                label = f"K={point['rate']:g}" if point.get("rate") is not None else f"q={point.get('quality')}"
                out.append(f"| `{c['name']}` | {label} | {res['bpp'][i]:.4f} | {res['psnr-rgb'][i]:.2f} | "
                           f"{res['psnr-ycbcr'][i]:.2f} | {res['ms-ssim-rgb'][i]:.4f} | "
                           f"{1000 * res['decoding_time'][i]:.0f} |")
    for run_dir, title in (("", "the trained model"), ("profile_paper", "the paper's widths")):
        prof = _load(base / run_dir / "profile.json")
        if not prof or not prof.get("by_rate"):
            continue
        w, h = prof["resolution"]
        out += ["", f"kMAC/px at every K, {title} (`{prof['label']}`) at {w}x{h}"
                + (f" (`{prof['command']} hydra.run.dir={(Path('results/toderici') / run_dir).as_posix()}`)"
                   if prof.get("command") else "") + ":", "",
                "| K | encoder kMAC/px | decoder kMAC/px | decoder calls of `g_s` |", "|---:|---:|---:|---:|"]
        for row in prof["by_rate"]:
            out.append(f"| {row['rate']:g} | {row['encoder']['kmac_per_px']:.2f} | {row['decoder']['kmac_per_px']:.2f} | "
                       f"{row['decoder']['parts']['g_s']['calls']} |")
    return "\n".join(out)


def _span(val: dict, key: str, fmt: str) -> str:
    """A variable-rate run's ``key@0 .. key@K-1`` as "first - last", a fixed-rate run's ``key``."""
    points = sorted(int(k.split("@")[1]) for k in val if k.startswith(f"{key}@"))
    if points:
        return f"{val[f'{key}@{points[0]}']:{fmt}} - {val[f'{key}@{points[-1]}']:{fmt}}"
    return f"{val[key]:{fmt}}" if key in val else ""


def runs(results: Path) -> str:
    """Every training run under ``results/`` (each ``summary.json`` the engine writes at the end
    of a run): its codec, steps, wall time and final validation, the command in its file."""
    rows = []
    for f in sorted(results.rglob("summary.json")):
        s = _load(f)
        if not isinstance(s, dict) or not {"command", "steps", "seconds"} <= s.keys():
            continue
        val = s.get("val") or {}
        rates = sum(k.startswith("bpp@") for k in val)
        resumed = s.get("resumed_from") or 0
        rows.append(f"| `{f.parent.relative_to(results).as_posix()}` | `{s.get('codec', '')}` | {s['steps']} | "
                    f"{s['seconds'] / 60:.1f}" + (f" (from step {resumed})" if resumed else "") + f" | "
                    f"{rates or 1} | {_span(val, 'bpp', '.3f')} | {_span(val, 'psnr_rgb', '.2f')} |")
    if not rows:
        return "_no training runs yet: every `python -m student|teacher|distill|prune` run writes summary.json_"
    return "\n".join([
        f"{len(rows)} training runs, each with the exact command, steps, wall time and final validation in "
        "`results/RUN/summary.json` (validation: real bitstreams on the eval set; a variable-rate run at each "
        "trained rate point, lowest to highest). Wall time is the last process's, on the shared 2-core CPU; a run "
        "resumed from a checkpoint counts from its resume step.", "",
        "| run (under `results/`) | codec | steps | minutes | rate points | bpp | PSNR-RGB (dB) |",
        "|---|---|---:|---:|---:|---:|---:|", *rows])


def recipe(results: Path) -> str:
    """The CPU recipe sweep at equal wall time (``python -m bench.recipe results/recipe``)."""
    blob = _load(results / "recipe" / "recipe.json")
    if blob is None:
        return "_no recipe sweep yet: `bash results/recipe/run.sh NAME ...`, then `python -m bench.recipe results/recipe`_"
    from bench.recipe import to_markdown

    rows = blob["rows"]
    minutes = sorted({r["max_minutes"] for r in rows if r.get("max_minutes")})
    ranked = sorted((r for r in rows if r["rd_loss"] is not None), key=lambda r: r["rd_loss"])
    lead = (f"{len(rows)} recipes of `{rows[0]['codec']}` from scratch at lambda {rows[0]['lmbda']:g}, each "
            f"{' / '.join(f'{m:g}' for m in minutes)} min of one core (`trainer.max_minutes`, constant learning "
            f"rate), two at a time beside other work on the 2-core CPU (`results/recipe/run.sh`); measured by "
            f"`{blob['command']}` on real bitstreams of the eval set.")
    tail = ""
    if ranked:
        tail = (f"\n\nLowest RD loss on real bits: `{ranked[0]['run']}`"
                + (f", then `{ranked[1]['run']}` (+{100 * (ranked[1]['rd_loss'] / ranked[0]['rd_loss'] - 1):.1f} %)"
                   if len(ranked) > 1 else "")
                + f"; highest: `{ranked[-1]['run']}` (+{100 * (ranked[-1]['rd_loss'] / ranked[0]['rd_loss'] - 1):.1f} %).")
    return lead + "\n\n" + to_markdown(rows, blob.get("reference_name")) + tail


_ZOO_METHODS = {"scratch": "from scratch", "distill": "distilled", "prune": "pruned from a wider model"}
#: zoo6 runs listed only where they exist: checkerboard students made for decoding speed (issue 13)
_ZOO_EXTRA = {"fast": "the distilled one, pruned for speed",
              "fast_latent": "the distilled one, pruned for speed, latent included",
              "narrow": "distilled, narrow, for speed"}


def _zoo_steps(results: Path, student: str, method: str) -> str:
    """Student steps of a zoo6 run: the engine's summary, or pruning's steps x fine-tuning steps."""
    run = results / "zoo6" / student / method
    summary, pruned = _load(run / "summary.json"), _load(run / "prune.json")
    if pruned and pruned.get("prune"):
        p = pruned["prune"]
        steps = f"{int(p['steps']) * int(p['finetune_steps'])} ({p['steps']} x {p['finetune_steps']})"
        source = Path(str(pruned.get("source", ""))).parent.name  # a zoo6 sibling run: its own steps come first
        parent = _load(results / "zoo6" / student / source / "summary.json") if method in _ZOO_EXTRA else None
        return f"{parent['steps']} + {steps}" if parent else steps
    return str(summary["steps"]) if summary else "?"


def zoo_students(results: Path) -> str:
    """The zoo students of results/zoo6 (checkerboard and MSP, each from scratch, distilled and
    pruned at equal student steps): span, decoder kMAC/px, BD-rates against the teacher, the
    scratch twin and the classical codecs."""
    curves = _curves(results / "bench")
    teacher = curves.get("teacher_dw2x_vr")
    classical = [n for n in ("jpeg", "webp", "avif") if n in curves]
    rows = []
    for student, context in (("ckbd", "checkerboard"), ("msp", "multi-scale progressive")):
        twin = curves.get(f"zoo6_{student}_scratch")
        for method, how in {**_ZOO_METHODS, **_ZOO_EXTRA}.items():
            name = f"zoo6_{student}_{method}"
            c = curves.get(name)
            if c is None and method in _ZOO_EXTRA:
                continue
            if c is None:
                rows.append(f"| `{name}` | {context} | {how} | not benched yet |" + " |" * (5 + len(classical)))
                continue
            r = c["results"]
            cfg = c.get("config") or {}
            widths = (cfg.get("layer_widths") or {}).get("g_s") or cfg.get("widths")  # a pruned config's own
            if method in _ZOO_EXTRA and all(isinstance(v, int) for v in widths or [None]):
                how += f" (synthesis widths {'/'.join(map(str, widths))}, latent {cfg.get('latent')})"
            prof = _load(results / "profile" / name / "profile.json")
            kmac = f"{prof['decoder']['kmac_per_px']:.3f}" if prof else "?"
            cells = [_bd_cell(teacher["results"], r) if teacher else "",
                     "" if method == "scratch" or twin is None else _bd_cell(twin["results"], r)]
            cells += [_bd_cell(curves[n]["results"], r) for n in classical]
            rows.append(f"| `{name}` | {context} | {how} | {_zoo_steps(results, student, method)} | {kmac} | "
                        f"{min(r['bpp']):.3f} - {max(r['bpp']):.3f} | {min(r['psnr-rgb']):.2f} - {max(r['psnr-rgb']):.2f} | "
                        + " | ".join(cells) + " |")
    if not any(f"zoo6_{s}_{m}" in curves for s in ("ckbd", "msp") for m in _ZOO_METHODS):
        return "_no zoo students benched yet: `bash results/zoo6/run.sh STAGE`, then results/bench/run.sh_"
    rates = next((c["config"]["rates"] for n, c in sorted(curves.items())
                  if n.startswith("zoo6_") and (c.get("config") or {}).get("rates")), [])
    return "\n".join([
        f"Two zoo students, {len(rates)} rates each (betas {', '.join(f'{b:g}' for b in rates)}), trained three ways at equal student steps "
        "(`results/zoo6/run.sh`): from scratch, distilled from the variable-rate mid-size teacher "
        "`teacher_dw2x_vr`, and pruned to the 35x budget from a wider model of the same family (the checkerboard "
        "student from that teacher, the MSP one from a wide MSP student trained from scratch); rows marked \"for speed\" "
        "are the checkerboard students made for decoding time (README \"Speed\"). Benched on the eval "
        "set with real bytes (`results/bench/run.sh`). BD-rate, PSNR-RGB, pchip, with the PSNR-RGB range (dB) both "
        "curves share; negative = fewer bits than the column's curve.", "",
        "| curve | context | trained | student steps | decoder kMAC/px | bpp | PSNR-RGB (dB) | vs teacher | "
        "vs its scratch twin | " + " | ".join(f"vs {n}" for n in classical) + " |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(classical), *rows])


SECTIONS = {"default-model": default_model, "teacher-profile": teacher_profile, "zoo": zoo, "training": training, "runs": runs, "learned-curves": learned_curves, "distill": distill, "prune": prune,
            "variable-rate": variable_rate, "speed": speed, "recipe": recipe, "zoo-students": zoo_students,
            "overfit": overfit, "toderici": toderici}


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
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.readme", description=__doc__.split("\n\n")[0].split(": ", 1)[1])
    p.add_argument("readme", nargs="?", default="README.md", help="the README to update (default: README.md)")
    p.add_argument("results", nargs="?", default="results", help="the results folder (default: results)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    readme = Path(args.readme)
    if not readme.is_file():
        print(f"error: {readme} is not a file", file=sys.stderr)
        return 2
    print(f"updated {readme}: {', '.join(update(readme, Path(args.results))) or 'no markers found'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
