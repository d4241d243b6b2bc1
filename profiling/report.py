"""Readable tables of profiles, gate verdicts and the zoo (plain text and markdown)."""
from __future__ import annotations

from profiling.counter import SIDES

__all__ = ["format_table", "format_profile", "format_overfit", "format_rates", "format_gate", "format_zoo", "zoo_markdown"]


def format_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """Columns padded to their widest cell; ``align`` has one 'l' or 'r' per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(row, widths, align)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths])] + [line(r) for r in cells[1:]])


def _f(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_profile(profile: dict) -> str:
    w, h = profile["resolution"]
    wp, hp = profile["padded_resolution"]
    lines = [f"{profile['label']} at {w}x{h} (padded to {wp}x{hp}: {100 * profile['padding_share']:.2f} % of the "
             f"MACs are padding)"]
    rows = []
    for side in SIDES:
        s = profile[side]
        for i, (part, p) in enumerate(s["parts"].items()):
            rows.append([side if i == 0 else "", part, p["calls"], _f(p["kmac_per_px"]),
                         _f(p["effective_kmac_per_px"]), _f(p["elementwise_kops_per_px"]), p["params"]])
        if abs(s["unattributed_kmac_per_px"]) > 1e-12:
            rows.append(["", "(outside parts)", "", _f(s["unattributed_kmac_per_px"]), "", "", ""])
        rows.append(["", "total", "", _f(s["kmac_per_px"]), _f(s["effective_kmac_per_px"]),
                     _f(s["elementwise_kops_per_px"]), s["params"]])
    lines.append(format_table(["side", "part", "calls", "kMAC/px", "effective", "elementwise kOPs/px", "params"],
                              rows, "llrrrrr"))
    lines.append("padding: " + ", ".join(f"{side} {_f(profile[side]['padding_kmac_per_px'])} kMAC/px"
                                         for side in SIDES))
    timing = []
    for side in SIDES:
        s = profile[side]
        if s["wall_ms"] is not None:
            coding = "" if s["entropy_coding_ms"] is None else f" + entropy coding {s['entropy_coding_ms']:.1f} ms"
            timing.append(f"{side} pass {s['wall_ms']:.1f} ms{coding}")
    if timing:
        lines.append(f"wall time (median, CPU, {profile['encoder']['threads']} threads; information, "
                     f"not the gate): " + "; ".join(timing))
    for problem in profile["problems"]:
        lines.append(f"WARNING: {problem}")
    for note in profile["notes"]:
        lines.append(f"note: {note}")
    if profile.get("encoder_overfit"):
        lines.append(format_overfit(profile["encoder_overfit"]))
    if profile.get("by_rate"):
        lines += ["", format_rates(profile)]
    return "\n".join(lines)


def format_rates(profile: dict) -> str:
    """kMAC/px per side and calls per part at each rate of ``profile["by_rate"]``."""
    parts = list(dict.fromkeys(p for row in profile["by_rate"] for side in SIDES for p in row[side]["parts"]))
    rows = []
    for row in profile["by_rate"]:
        enc, dec = row["encoder"], row["decoder"]
        calls = [f"{enc['parts'].get(p, {}).get('calls', 0)}/{dec['parts'].get(p, {}).get('calls', 0)}" for p in parts]
        timing = [_f(s["wall_ms"], 1) if s["wall_ms"] is not None else "-" for s in (enc, dec)]
        rows.append([f"{row['rate']:g}", _f(enc["kmac_per_px"]), _f(dec["kmac_per_px"]), *calls, *timing])
    return "per rate:\n" + format_table(["rate", "encoder kMAC/px", "decoder kMAC/px",
                                         *(f"{p} calls enc/dec" for p in parts), "encoder ms", "decoder ms"], rows)


def format_overfit(entry: dict) -> str:
    """The encoder with N latent-overfitting steps (profiling.overfit), beside the gate."""
    wall = "" if entry.get("step_wall_ms") is None else \
        f", {entry['step_wall_ms']:.0f} ms per step ({entry['threads']} threads)"
    return (f"encoder with {entry['steps']} overfitting steps ({entry['method']}): {_f(entry['kmac_per_px'])} kMAC/px = "
            f"feed-forward {_f(entry['feed_forward_kmac_per_px'])} + {entry['steps']} x step "
            f"{_f(entry['step_kmac_per_px'])} (forward {_f(entry['step_forward_kmac_per_px'])} + backward "
            f"{_f(entry['step_backward_kmac_per_px'])}) + overhead {_f(entry['overhead_kmac_per_px'])} "
            f"(2 loss evaluations + coding pass from the latents){wall}\n"
            f"  counted: {entry['counting']}\n  {entry['gate']}")


def format_gate(row: dict) -> str:
    w, h = row["resolution"]
    lines = [f"gate: student {row['student']} vs teacher {row['teacher']} at {w}x{h}, target {row['target']:g}x"]
    rows = [[side, _f(row["teacher_kmac_per_px"][side]), _f(row["student_kmac_per_px"][side]),
             f"{row[f'{side}_ratio']:.2f}x", "PASS" if row[f"{side}_passed"] else "FAIL"] for side in SIDES]
    lines.append(format_table(["side", "teacher kMAC/px", "student kMAC/px", "teacher/student", "verdict"], rows,
                              "lrrrl"))
    lines.append(("PASSED" if row["passed"] else "FAILED") + f": teacher/student >= {row['target']:g} is required "
                 "on both sides")
    if row.get("encoder_overfit"):
        over = row["encoder_overfit"]
        lines.append(format_overfit(over) + f"\n  teacher/student with overfitting: {over['ratio']:.2f}x (not judged)")
    return "\n".join(lines)


def _zoo_rows(rows: list[dict]) -> list[list]:
    out = []
    for r in rows:
        if r.get("error"):
            out.append([r["student"], "-", "-", "-", "-", f"ERROR: {r['error']}"])
            continue
        out.append([r["student"], _f(r["encoder_kmac_per_px"]), _f(r["decoder_kmac_per_px"]),
                    f"{r['encoder_ratio']:.1f}x", f"{r['decoder_ratio']:.1f}x", "PASS" if r["passed"] else "FAIL"])
    return out


_ZOO_HEADERS = ["student", "encoder kMAC/px", "decoder kMAC/px", "encoder ratio", "decoder ratio", "gate"]


def format_zoo(rows: list[dict], teacher: dict, target: float) -> str:
    head = (f"zoo against teacher {teacher['label']} (encoder {_f(teacher['encoder']['kmac_per_px'])}, decoder "
            f"{_f(teacher['decoder']['kmac_per_px'])} kMAC/px), target {target:g}x, sorted by decoder kMAC/px")
    return head + "\n" + format_table(_ZOO_HEADERS, _zoo_rows(rows), "lrrrrl")


def zoo_markdown(rows: list[dict], teacher: dict, target: float, command: str) -> str:
    w, h = teacher["resolution"]
    lines = [
        "# Student zoo: kMAC/px and the gate",
        "",
        f"Generated by `{command}`. Teacher `{teacher['label']}`: encoder "
        f"{_f(teacher['encoder']['kmac_per_px'])}, decoder {_f(teacher['decoder']['kmac_per_px'])} kMAC/px at "
        f"{w}x{h}. A student passes when teacher/student >= {target:g} on both sides (executed MACs).",
        "",
        "| " + " | ".join(_ZOO_HEADERS) + " |",
        "|" + "|".join(["---"] + ["---:"] * 4 + [":---:"]) + "|",
    ]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in _zoo_rows(rows)]
    return "\n".join(lines) + "\n"
