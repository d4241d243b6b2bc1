"""Build the benchmark report from the results JSON only: ``python -m bench.report [RESULTS_DIR]``.

Reads every per-codec JSON in RESULTS_DIR (default ``results/bench``) and writes, from those and
nothing else (plus the profiler's JSON for the Pareto figure):

- ``RESULTS_DIR/bd.json``: BD-rate of every codec against the teacher and against AVIF;
- ``RESULTS_DIR/speed.json``: median decode/encode wall time per codec, ratios to the teacher;
- ``RESULTS_DIR/overfit.json``: each ``+overfit N`` curve against its feed-forward curve (bench.overfit);
- ``RESULTS_DIR/rd_psnr_rgb.png``, ``rd_ms_ssim_rgb.png``: RD curves;
- ``RESULTS_DIR/pareto.png``: decoder kMAC/px against BD-rate vs the teacher (when profiled);
- the report (default ``RESULTS_DIR/../REPORT.md``): all of it as tables, with the exact
  command behind every JSON.

``python -m bench`` calls :func:`build_report` after measuring, so a rerun with a few codecs
rebuilds the report over every codec whose JSON is in the folder.

Roles: the **teacher** is the learned curve whose label (or registry name) matches
``--teacher`` (default ``vmuc*``); **students** match ``--students`` (default ``student*``).
BD-rate is on PSNR-RGB with the piecewise-cubic (pchip, JVET CTC) fit as the main figure and
the VCEG-M33 cubic beside it; PSNR-YCbCr 6:1:1 and MS-SSIM (in dB) BD-rates use pchip. BD
metrics need 4 rate points per curve; with fewer the cell says so.
"""
from __future__ import annotations

import argparse
import fnmatch
import math
import os
import shlex
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.bd import bd_psnr, bd_rate
from bench.overfit import overfit_markdown, overfit_table
from bench.plots import ParetoPoint, ms_ssim_db, pareto_plot, rd_plot
from bench.profiles import load_profiles, match_profile
from bench.results import BenchError, load_results, write_json

__all__ = ["DEFAULTS", "assign_roles", "bd_tables", "build_report", "speed_table", "main"]

#: build_report's settings and their defaults (python -m bench passes its config values).
DEFAULTS = {
    "anchor_teacher": "vmuc*",
    "student_pattern": "student*",
    "anchor_classical": "avif",
    "profiles": (),
    "profile_dir": "results/profile",
    "target": 35.0,
    "gate_teacher": None,
}

#: BD columns: (key, metric in the results, fit, label in the report)
BD_COLUMNS = (
    ("psnr_rgb_pchip", "psnr-rgb", "pchip", "BD-rate PSNR-RGB (pchip)"),
    ("psnr_rgb_cubic", "psnr-rgb", "cubic", "BD-rate PSNR-RGB (cubic)"),
    ("psnr_ycbcr_pchip", "psnr-ycbcr", "pchip", "BD-rate PSNR-YCbCr 6:1:1 (pchip)"),
    ("ms_ssim_pchip", "ms-ssim-rgb", "pchip", "BD-rate MS-SSIM dB (pchip)"),
)
PLOTS = {"psnr-rgb": "rd_psnr_rgb.png", "ms-ssim-rgb": "rd_ms_ssim_rgb.png"}
PARETO = "pareto.png"


# ----------------------------------------------------------------------------------- roles


def _matches(result: dict, pattern: str) -> bool:
    return fnmatch.fnmatchcase(result["name"], pattern) or fnmatch.fnmatchcase(str(result.get("codec", "")), pattern)


def assign_roles(results: Sequence[dict], anchor_teacher: str | None, student_pattern: str | None
                 ) -> tuple[str | None, dict[str, str], list[str]]:
    """-> (teacher label or None, {label: teacher|student|learned|classical}, notes)."""
    notes = []
    learned = [r for r in results if r["kind"] == "learned"]
    teacher = None
    if anchor_teacher:
        found = sorted((r for r in learned if _matches(r, anchor_teacher)),
                       key=lambda r: (r["name"] != anchor_teacher, r.get("codec") != anchor_teacher, r["name"]))
        if found:
            teacher = found[0]["name"]
            if len(found) > 1:
                notes.append(f"several learned curves match the teacher pattern `{anchor_teacher}` "
                             f"({', '.join(r['name'] for r in found)}); the teacher is `{teacher}` "
                             "(choose with anchor_teacher=LABEL)")
    roles = {}
    for r in results:
        if r["kind"] != "learned":
            roles[r["name"]] = "classical"
        elif r["name"] == teacher:
            roles[r["name"]] = "teacher"
        elif student_pattern and _matches(r, student_pattern):
            roles[r["name"]] = "student"
        else:
            roles[r["name"]] = "learned"
    return teacher, roles, notes


# ------------------------------------------------------------------------------ BD metrics


def _curve(result: dict, metric: str) -> list[tuple[float, float]]:
    ys = result["results"][metric]
    if metric == "ms-ssim-rgb":
        ys = [ms_ssim_db(v) for v in ys]
    return [(b, float("nan") if y is None else y) for b, y in zip(result["results"]["bpp"], ys)]


def _reason(message: str) -> str:
    if "BD metrics need at least" in message:
        return "n/a (needs 4 points)"
    if "do not overlap" in message:
        return "n/a (no overlap)"
    if "NaN or infinite" in message:
        return "n/a (non-finite values)"
    return "n/a"


def bd_tables(results: Sequence[dict], anchors: dict[str, str | None]) -> dict:
    """``{anchor_role: {"anchor": label|None, "rows": {label: {column: {"value", "reason"}}}}}``.

    Columns are :data:`BD_COLUMNS` plus ``bd_psnr_rgb_pchip`` (dB at equal rate).
    """
    by_name = {r["name"]: r for r in results}
    out = {}
    for role, anchor in anchors.items():
        table = {"anchor": anchor, "rows": {}}
        if anchor is not None and anchor in by_name:
            a = by_name[anchor]
            for r in results:
                if r["name"] == anchor:
                    continue
                row = {}
                for key, metric, method, _ in BD_COLUMNS:
                    row[key] = _bd_cell(bd_rate, _curve(a, metric), _curve(r, metric), method)
                row["bd_psnr_rgb_pchip"] = _bd_cell(bd_psnr, _curve(a, "psnr-rgb"), _curve(r, "psnr-rgb"), "pchip")
                table["rows"][r["name"]] = row
        out[role] = table
    return out


def _bd_cell(fn, anchor, test, method) -> dict:
    try:
        value = fn(anchor, test, method=method)
    except ValueError as e:
        return {"value": None, "reason": str(e)}
    return {"value": value, "reason": None}


# ----------------------------------------------------------------------------------- speed


def speed_table(results: Sequence[dict], teacher: str | None) -> dict:
    """Median decode and encode wall time per codec over all its images and rate points.

    ``decode_speedup_vs_teacher`` = teacher's median / this codec's median (> 1: faster).
    ``decode_cpu_per_wall`` > 1 means the decoder used more than one core.
    """
    rows = []
    for r in results:
        images = r["images"]
        dec = [row["decode_s"] for row in images]
        enc = [row["encode_s"] for row in images]
        cpu = [row.get("decode_cpu_s") for row in images if row.get("decode_cpu_s") is not None]
        env = r.get("environment") or {}
        rows.append({
            "name": r["name"],
            "kind": r["kind"],
            "samples": len(dec),
            "decode_median_s": statistics.median(dec),
            "encode_median_s": statistics.median(enc),
            "decode_cpu_per_wall": (sum(cpu) / sum(dec)) if cpu and sum(dec) > 0 else None,
            "cpu": env.get("cpu"),
            "threads": env.get("bench_threads"),
            "date": r.get("date"),
        })
    t = next((row for row in rows if row["name"] == teacher), None)
    for row in rows:
        if t is not None:
            row["decode_time_ratio_to_teacher"] = row["decode_median_s"] / t["decode_median_s"]
            row["decode_speedup_vs_teacher"] = t["decode_median_s"] / row["decode_median_s"]
        else:
            row["decode_time_ratio_to_teacher"] = row["decode_speedup_vs_teacher"] = None
    rows.sort(key=lambda row: row["decode_median_s"])
    cpus = sorted({str(row["cpu"]) for row in rows})
    threads = sorted({str(row["threads"]) for row in rows})
    notes = []
    if len(cpus) > 1:
        notes.append(f"timings come from different CPUs ({'; '.join(cpus)}): ratios across them are not comparable")
    if len(threads) > 1:
        notes.append(f"codecs were timed with different thread settings ({', '.join(threads)})")
    busy = [(r["name"], (r.get("environment") or {}).get("loadavg_1min"), (r.get("environment") or {}).get("cpu_count"))
            for r in results]
    busy = [(n, load, cpus) for n, load, cpus in busy if load is not None and cpus and load > cpus]
    waited = [row["name"] for row in rows if row["decode_cpu_per_wall"] is not None and row["decode_cpu_per_wall"] < 0.8]
    if waited:
        notes.append(f"decode CPU/wall below 0.8 for {', '.join(waited)}: the decoder waited for a "
                     "CPU (other work on the machine), so its wall time is inflated; rerun it on an idle machine")
    if busy:
        worst = max(busy, key=lambda b: b[1] / b[2])
        notes.append(f"{len(busy)} of {len(rows)} codecs were timed on a busy machine (1-min load average above "
                     f"the CPU count, up to {worst[1]:.1f} on {worst[2]} CPUs): their wall times are inflated and "
                     "noisy; rerun on an idle machine for timings to quote")
    return {"teacher": teacher, "rows": rows, "notes": notes}


# --------------------------------------------------------------------------------- markdown


def _f(v, digits: int = 2, unit: str = "") -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}{unit}"


def _bd_md(cell: dict, percent: bool = True) -> str:
    if cell["value"] is None:
        return _reason(cell["reason"] or "")
    return f"{cell['value']:+.2f} %" if percent else f"{cell['value']:+.3f} dB"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def _cell(text: str) -> str:
    """A pipe would end a markdown table cell, even inside a code span."""
    return str(text).replace("|", "\\|")


def _rel(path: Path, start: Path) -> str:
    return Path(os.path.relpath(path.resolve(), start.resolve())).as_posix()


def _point_label(result: dict, point: dict) -> str:
    if "quality" in point:
        return f"q={point['quality']:g}" if isinstance(point["quality"], (int, float)) else f"q={point['quality']}"
    path = Path(point.get("checkpoint", "?"))
    names = [Path(p.get("checkpoint", "?")).name for p in result["rate_points"]]
    name = path.name if names.count(path.name) == 1 else f"{path.parent.name}/{path.name}"  # run dirs of last.ckpt
    if point.get("rate") is not None:  # one checkpoint, several rates (variable rate)
        name = f"{name} @ rate {point['rate']:g}"
    lm = point.get("lmbda")
    return f"{name} (λ={lm:g})" if isinstance(lm, (int, float)) else name


def report_command(out_dir: str, report: str | None, settings: dict) -> str:
    """The ``python -m bench.report`` line that rebuilds the report with these settings."""
    parts = ["python -m bench.report", shlex.quote(str(out_dir))]
    if report is not None:
        parts += ["--report", shlex.quote(str(report))]
    flags = {"anchor_teacher": "--teacher", "student_pattern": "--students", "anchor_classical": "--anchor",
             "profile_dir": "--profile-dir", "target": "--target", "gate_teacher": "--gate-teacher"}
    for key, flag in flags.items():
        if settings[key] != DEFAULTS[key]:
            parts += [flag, shlex.quote(str(settings[key]))]
    for p in settings["profiles"]:
        parts += ["--profile", shlex.quote(str(p))]
    return " ".join(parts)


# ----------------------------------------------------------------------------------- build


def build_report(out_dir: str | os.PathLike = "results/bench", report: str | os.PathLike | None = None,
                 **settings) -> Path:
    """Write bd.json, speed.json, the plots and the report from the JSON in ``out_dir``.

    ``settings``: the keys of :data:`DEFAULTS`. Returns the report's path.
    """
    unknown = set(settings) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"build_report: unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s = {**DEFAULTS, **{k: v for k, v in settings.items() if v is not None}}
    s["profiles"] = tuple(s["profiles"] or ())
    s["target"] = float(s["target"])
    out = Path(out_dir)
    report_path = Path(report) if report is not None else out.parent / "REPORT.md"
    results = load_results(out)
    if not results:
        raise BenchError(f"no bench result in {out}: run `python -m bench classical=[...] learned=[...]` first")
    results.sort(key=lambda r: (r["kind"] != "learned", r["name"]))
    teacher, roles, notes = assign_roles(results, s["anchor_teacher"], s["student_pattern"])
    order = {"teacher": 0, "student": 1, "learned": 2, "classical": 3}
    results.sort(key=lambda r: (order[roles[r["name"]]], r["name"]))
    names = [r["name"] for r in results]
    anchor_classical = s["anchor_classical"] if s["anchor_classical"] in names else None

    bd = bd_tables(results, {"teacher": teacher, "classical": anchor_classical})
    speed = speed_table(results, teacher)
    overfit = overfit_table(results)  # slow-encoder curves against their feed-forward curves (bench.overfit)
    if overfit["rows"]:
        write_json(out / "overfit.json", overfit)
    else:
        (out / "overfit.json").unlink(missing_ok=True)
    write_json(out / "bd.json", {"command": report_command(str(out_dir), None if report is None else str(report), s),
                                 "roles": roles, "anchors": {"teacher": teacher, "classical": anchor_classical},
                                 "columns": [c[0] for c in BD_COLUMNS] + ["bd_psnr_rgb_pchip"], "tables": bd})
    write_json(out / "speed.json", speed)
    for metric, fname in PLOTS.items():
        rd_plot(results, roles, metric, out / fname)

    pareto_md = _pareto(results, roles, teacher, bd, s, out, report_path) + overfit_markdown(overfit)
    lines = _markdown(results, roles, teacher, anchor_classical, bd, speed, notes, pareto_md, s, out, report_path,
                      report_command(str(out_dir), None if report is None else str(report), s))
    report_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = report_path.with_name(f".{report_path.name}.{os.getpid()}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, report_path)
    return report_path


#: BD-rate columns the Pareto figure may plot, in order of preference
PARETO_METRICS = (("psnr_rgb_pchip", "PSNR-RGB"), ("psnr_ycbcr_pchip", "PSNR-YCbCr 6:1:1"))


def pareto_reference(results, roles, bd) -> tuple[str, str, str] | None:
    """(anchor role, BD column, metric name) of the Pareto figure's y axis: BD-rate against the
    teacher where a student has one, else against the classical anchor; PSNR-RGB where a
    student has one, else PSNR-YCbCr (curves of models trained briefly on a CPU may not overlap
    the teacher's or the anchor's PSNR-RGB range at all). None when no student has any."""
    students = [r["name"] for r in results if roles[r["name"]] == "student"]
    for role in ("teacher", "classical"):
        rows = bd.get(role, {}).get("rows", {})
        for key, metric in PARETO_METRICS:
            if any(rows.get(n, {}).get(key, {}).get("value") is not None for n in students):
                return role, key, metric
    return None


def gate_profile(gate: str, results, entries):
    """The profile whose decoder kMAC/px sets the budget line: that of the bench curve labelled
    (or of the codec named) ``gate``, else a profile of a codec or label of that name."""
    entries = list(entries)
    curve = next((r for r in results if r["name"] == gate), None) or \
        next((r for r in results if r.get("codec") == gate), None)
    found = match_profile(curve, entries) if curve is not None else None
    return found or next((e for e in entries if gate in (e.codec, e.label)), None)


def _pareto(results, roles, teacher, bd, s, out: Path, report_path: Path) -> list[str]:
    """The Pareto section: the figure when possible, else why not."""
    lines = ["## Decoder compute against compression efficiency", ""]
    stale = out / PARETO
    entries, notes = load_profiles(s["profiles"], s["profile_dir"])
    where = ", ".join([f"`{p}`" for p in s["profiles"]] + [f"`{s['profile_dir']}/**/*.json`"])

    def skip(why: str) -> list[str]:
        stale.unlink(missing_ok=True)
        return lines + [f"Skipped: {why}", ""] + [f"- {n}" for n in notes] + ([""] if notes else [])

    if teacher is None:
        return skip("no teacher among the results, so there is no compute budget to plot against.")
    if not entries:
        return skip(f"no profile found in {where}. Profile the teacher and the students with "
                    "`python -m profiling.zoo teacher=vmuc` (writes results/profile/zoo.json) or pass "
                    "`profiles=[.../profile.json]`.")
    ref = pareto_reference(results, roles, bd)
    if ref is None:
        return skip("no student has a BD-rate against the teacher or the classical anchor.")
    role, key, metric = ref
    anchor = bd[role]["anchor"]
    by_name = {r["name"]: r for r in results}
    t_profile = match_profile(by_name[teacher], entries)
    points, rows, missing = [], [], []
    gate, g_profile = teacher, t_profile
    if s["gate_teacher"] not in (None, teacher):
        gate, g_profile = s["gate_teacher"], gate_profile(s["gate_teacher"], results, entries)
        if g_profile is None:
            return skip(f"the gate teacher `{gate}` has no profile (a bench curve of that label or codec with a "
                        f"profile, or a profile of that codec, in {where})")
        rows.append([f"`{gate}` (gate)", _f(g_profile.decoder_kmac_per_px, 2), _f(g_profile.encoder_kmac_per_px, 2),
                     "", "", f"`{g_profile.source}`"])
    budget = g_profile.decoder_kmac_per_px / s["target"] if g_profile else None
    if t_profile:
        t_cell = {"value": 0.0, "reason": None} if role == "teacher" else bd[role]["rows"][teacher][key]
        if t_cell["value"] is not None:
            points.append(ParetoPoint(teacher, t_profile.decoder_kmac_per_px, t_cell["value"], "teacher"))
        rows.append([f"`{teacher}` (teacher)", _f(t_profile.decoder_kmac_per_px, 2), _f(t_profile.encoder_kmac_per_px, 2),
                     "0 (anchor)" if role == "teacher" else _bd_md(t_cell), "", f"`{t_profile.source}`"])
    else:
        notes.append(f"the teacher `{teacher}` has no profile: no budget line")
    for r in results:
        if roles[r["name"]] != "student":
            continue
        prof = match_profile(r, entries)
        cell = bd[role]["rows"][r["name"]][key]
        if prof is None:
            missing.append(f"`{r['name']}` has no profile")
            continue
        under = "" if budget is None else ("yes" if prof.decoder_kmac_per_px <= budget else "no")
        rows.append([f"`{r['name']}`", _f(prof.decoder_kmac_per_px, 3), _f(prof.encoder_kmac_per_px, 3),
                     _bd_md(cell), under, f"`{prof.source}`"])
        if cell["value"] is None:
            missing.append(f"`{r['name']}`: BD-rate {_reason(cell['reason'] or '')}")
            continue
        points.append(ParetoPoint(r["name"], prof.decoder_kmac_per_px, cell["value"], "student"))
    if not any(p.role == "student" for p in points):
        return skip("no student has both a profile and a BD-rate.") + [f"- {m}" for m in missing] + \
            ([""] if missing else [])
    against = f"`{anchor}`" + (" (the teacher)" if role == "teacher" else " (the classical anchor)")
    ylabel = f"BD-rate vs {anchor}, {metric}, pchip [%]  (lower is better)"
    pareto_plot(points, budget, s["target"], out / PARETO, ylabel=ylabel)
    alt = "the teacher" if role == "teacher" else anchor
    lines += [f"![decoder kMAC/px against BD-rate vs {alt}]({_rel(out / PARETO, report_path.parent)})", ""]
    if role != "teacher":
        lines += [f"No student's curve overlaps the teacher's, so the y axis is the BD-rate against {against}.", ""]
    if budget is not None:
        whose = "teacher" if gate == teacher else f"gate teacher `{gate}`"
        lines += [f"Budget line: {whose} decoder {g_profile.decoder_kmac_per_px:.2f} kMAC/px / {s['target']:g} = "
                  f"**{budget:.3f} kMAC/px**. BD-rate: {metric}, pchip, against {against}.", ""]
    lines += _table(["codec", "decoder kMAC/px", "encoder kMAC/px", f"BD-rate vs {anchor} ({metric})",
                     "decoder under budget", "profile"], rows)
    lines += [""] + [f"- {n}" for n in notes + missing] + ([""] if notes or missing else [])
    return lines


def _markdown(results, roles, teacher, anchor_classical, bd, speed, notes, pareto_md, s, out: Path,
              report_path: Path, command: str) -> list[str]:
    here = report_path.parent
    out_rel = _rel(out, here)
    L = ["# vmuc-lite benchmark report", "",
         f"Generated from the JSON files in `{out.as_posix()}/` by `{command}`; do not edit by hand. "
         "Every number below is a mean over the evaluation images of a real bitstream "
         "(bpp = 8 x bytes / (H x W), container and headers counted) and of the decoded 8-bit image.", ""]

    sets = {}
    for r in results:
        es = r.get("eval_set") or {}
        sets.setdefault(es.get("fingerprint"), (es, []))[1].append(r["name"])
    for fp, (es, members) in sets.items():
        sizes = sorted({f"{w}x{h}" for w, h in es.get("sizes", [])})
        who = "" if len(sets) == 1 else f" (for {', '.join(f'`{m}`' for m in members)})"
        L.append(f"- Evaluation set{who}: {es.get('count', '?')} images from `{es.get('dir', '?')}` "
                 f"({', '.join(sizes) or '?'}), fingerprint `{str(fp)[:12]}`.")
    if len(sets) > 1:
        L.append("- **Warning: the codecs were not all measured on the same images; BD-rates between "
                 "different sets are meaningless. Rerun them on one `data.eval_dir`.**")
    L.append(f"- Teacher: `{teacher}`" if teacher else
             f"- Teacher: none (no learned curve matches `{s['anchor_teacher']}`); BD-rate against the teacher is omitted.")
    students = [r["name"] for r in results if roles[r["name"]] == "student"]
    L.append(f"- Students: {', '.join(f'`{n}`' for n in students) or 'none'}")
    L.append(f"- Classical anchor: `{anchor_classical}`" if anchor_classical else
             f"- Classical anchor: `{s['anchor_classical']}` was not measured; BD-rate against it is omitted.")
    L += [f"- {n}" for n in notes]
    L.append("")

    L += ["## Rate-distortion curves", "",
          f"![PSNR-RGB against bpp]({out_rel}/{PLOTS['psnr-rgb']})", "",
          f"![MS-SSIM against bpp]({out_rel}/{PLOTS['ms-ssim-rgb']})", ""]

    L += ["## BD-rate", "",
          "Bjontegaard delta rate (bench/bd.py): the average bit-rate difference at equal quality over the "
          "quality range both curves cover; negative = fewer bits than the anchor. pchip is the piecewise-cubic "
          "fit of the JVET common test conditions (the figure to quote), cubic the original VCEG-M33 fit. "
          "MS-SSIM is fitted in dB, -10 log10(1 - MS-SSIM). BD-PSNR is the quality gap at equal rate. "
          "BD metrics need 4 rate points per curve.", ""]
    for role, title in (("teacher", "the teacher"), ("classical", "AVIF")):
        table = bd[role]
        anchor = table["anchor"]
        if role == "classical":
            title = f"`{anchor or s['anchor_classical']}`"
        else:
            title = f"the teacher `{anchor}`" if anchor else "the teacher"
        L += [f"### Against {title}", ""]
        if anchor is None:
            L += ["Not computed: the anchor is not among the results.", ""]
            continue
        header = ["codec", "role", "points"] + [c[3] for c in BD_COLUMNS] + ["BD-PSNR-RGB (pchip)"]
        rows = []
        for r in results:
            if r["name"] == anchor:
                continue
            cells = table["rows"][r["name"]]
            rows.append([f"`{r['name']}`", roles[r["name"]], len(r["results"]["bpp"])]
                        + [_bd_md(cells[c[0]]) for c in BD_COLUMNS] + [_bd_md(cells["bd_psnr_rgb_pchip"], False)])
        L += _table(header, rows) + [""]

    L += pareto_md

    L += ["## Decode speed, side by side", "",
          "Median wall time of `decompress` (learned) or of the library decoder (classical) over every image "
          "and rate point, on the CPU named below; CPU/wall > 1 means the decoder used more than one core, "
          "< 1 that it waited for a CPU (a busy machine). "
          "Learned codecs run with the thread count recorded in their JSON (`threads=`).", ""]
    rows = []
    for row in speed["rows"]:
        ratio = "" if row["decode_speedup_vs_teacher"] is None else f"{row['decode_speedup_vs_teacher']:.2f}x"
        rows.append([f"`{row['name']}`", roles[row["name"]], _f(row["decode_median_s"] * 1000, 1),
                     ratio, _f(row["decode_cpu_per_wall"], 2), _f(row["encode_median_s"] * 1000, 1),
                     row["samples"], row["threads"]])
    speed_header = "speed-up vs teacher" if teacher else "speed-up vs teacher (no teacher)"
    L += _table(["codec", "role", "decode median [ms]", speed_header, "decode CPU/wall",
                 "encode median [ms]", "samples", "threads"], rows)
    cpus = sorted({str(row["cpu"]) for row in speed["rows"]})
    L += ["", f"CPU: {'; '.join(cpus)}."] + [f"- **{n}**" for n in speed["notes"]] + [""]

    L += ["## Per-codec results", ""]
    for r in results:
        L += [f"### `{r['name']}` ({roles[r['name']]})", "", r.get("description", ""), ""]
        res = r["results"]
        rows = []
        for i, point in enumerate(r["rate_points"]):
            rows.append([_point_label(r, point), _f(res["bpp"][i], 4), _f(res["psnr-rgb"][i], 2),
                         _f(res["psnr-ycbcr"][i], 2), _f(res["ms-ssim-rgb"][i], 4),
                         _f(res["encoding_time"][i] * 1000, 1), _f(res["decoding_time"][i] * 1000, 1)])
        L += _table(["rate point", "bpp", "PSNR-RGB [dB]", "PSNR-YCbCr [dB]", "MS-SSIM", "encode [ms]",
                     "decode [ms]"], rows) + [""]

    skipped = _skipped(out)
    if skipped:
        L += ["## Codecs asked for but not measured", ""]
        L += [f"- `{name}`: {v.get('reason')} (asked by `{v.get('command')}`)" for name, v in sorted(skipped.items())]
        L.append("")

    L += ["## How these files were made", "",
          "Each results JSON records the exact command line and environment that produced it:", ""]
    rows = [[f"`{out_rel}/{r['_file']}`", f"`{_cell(r.get('command', '?'))}`", r.get("date", "?")] for r in results]
    L += _table(["file", "command", "date (UTC)"], rows)
    derived = ", ".join(f"`{out_rel}/{f}`" for f in ["bd.json", "speed.json", *PLOTS.values()]
                        + ([PARETO] if (out / PARETO).exists() else []))
    L += ["", f"{derived} and this report: `{command}` (also run at the end of every `python -m bench`).", ""]
    return L


def _skipped(out: Path) -> dict:
    import json

    path = out / "skipped.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# -------------------------------------------------------------------------------- command


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report",
                                description="Rebuild the benchmark report (tables, plots, bd.json, speed.json) "
                                            "from the per-codec JSON written by `python -m bench`.")
    p.add_argument("results_dir", nargs="?", default="results/bench",
                   help="folder of the per-codec JSON (default results/bench)")
    p.add_argument("--report", default=None, help="report path (default RESULTS_DIR/../REPORT.md)")
    p.add_argument("--teacher", default=DEFAULTS["anchor_teacher"],
                   help=f"label or pattern of the teacher curve (default {DEFAULTS['anchor_teacher']})")
    p.add_argument("--students", default=DEFAULTS["student_pattern"],
                   help=f"pattern of the student curves (default {DEFAULTS['student_pattern']})")
    p.add_argument("--anchor", default=DEFAULTS["anchor_classical"],
                   help=f"classical anchor (default {DEFAULTS['anchor_classical']})")
    p.add_argument("--profile", action="append", default=[], help="a profiler JSON (repeatable)")
    p.add_argument("--profile-dir", default=DEFAULTS["profile_dir"],
                   help=f"folder searched for profiler JSON (default {DEFAULTS['profile_dir']})")
    p.add_argument("--target", type=float, default=DEFAULTS["target"], help="compute reduction target (default 35)")
    p.add_argument("--gate-teacher", default=None, metavar="LABEL",
                   help="the curve or codec whose decoder kMAC/px / target is the budget line (default: the teacher)")
    args = p.parse_args(argv)
    try:
        path = build_report(args.results_dir, args.report, anchor_teacher=args.teacher,
                            student_pattern=args.students, anchor_classical=args.anchor, profiles=args.profile,
                            profile_dir=args.profile_dir, target=args.target, gate_teacher=args.gate_teacher)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
