"""The report on synthetic results: BD tables, roles, speed ratios, and the Pareto figure read
from synthetic profiler JSON in each of the shapes the profiler writes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.profiles import load_profiles, match_profile
from bench.report import assign_roles, build_report
from bench.results import curve_result, result_path, write_json

PNG = b"\x89PNG\r\n\x1a\n"
EVAL = {"dir": "synthetic", "count": 1, "names": ["a.png"], "sizes": [[768, 512]], "fingerprint": "f" * 40}
TEACHER_CONFIG = {"luma_channels": 160}


def _write(out: Path, name: str, kind: str, codec: str, config: dict, points: list[tuple[float, float]],
           decode_s: float = 0.1) -> dict:
    """A bench JSON with one image per rate point, at the given (bpp, PSNR) points."""
    rate_points = [{"quality": i} if kind == "classical" else {"checkpoint": f"{name}_{i}.ckpt", "lmbda": 0.01 * (i + 1)}
                   for i in range(len(points))]
    rows = [{"image": "a.png", "rate_point": i, "height": 512, "width": 768, "bytes": int(b * 768 * 512 / 8),
             "bpp": b, "psnr_rgb": q, "psnr_ycbcr": q + 2.0, "ms_ssim_rgb": 1.0 - 10 ** (-q / 20.0),
             "encode_s": 2 * decode_s, "decode_s": decode_s, "decode_cpu_s": decode_s}
            for i, (b, q) in enumerate(points)]
    extra = {"profile_label": name} if kind == "learned" else {}
    result = curve_result(name, f"synthetic {name}", kind, codec, config, rate_points, rows, EVAL,
                          f"python -m bench SYNTH-{name}", {"cpu": "test cpu", "bench_threads": 1}, **extra)
    write_json(result_path(out, name), result)
    return result


TEACHER_POINTS = [(0.1, 30.0), (0.2, 32.5), (0.4, 35.0), (0.8, 37.5), (1.6, 40.0)]


def _scaled(factor: float) -> list[tuple[float, float]]:
    return [(b * factor, q) for b, q in TEACHER_POINTS]


@pytest.fixture
def synthetic(tmp_path):
    out = tmp_path / "results" / "bench"
    _write(out, "vmuc", "learned", "vmuc", TEACHER_CONFIG, TEACHER_POINTS, decode_s=2.0)
    _write(out, "student_fast", "learned", "student_dw_ckbd", {"widths": [16, 32]}, _scaled(1.10), decode_s=0.1)
    _write(out, "student_slow", "learned", "student_dw_msp", {"widths": [24, 48]}, _scaled(1.05), decode_s=0.5)
    _write(out, "student_two_points", "learned", "student_shuffle_ckbd", {}, _scaled(1.0)[:2])
    _write(out, "avif", "classical", "avif", {"speed": 4}, _scaled(1.25), decode_s=0.02)
    return tmp_path, out


def _profiles(profile_dir: Path) -> None:
    """Teacher as a profile.json, one student as a zoo results file, one as a bare row list."""
    profile_dir.mkdir(parents=True)
    (profile_dir / "profile.json").write_text(json.dumps({
        "codec": "vmuc", "label": "vmuc", "config": TEACHER_CONFIG, "resolution": [768, 512],
        "encoder": {"kmac_per_px": 80.0}, "decoder": {"kmac_per_px": 70.0}}))
    row = {"student": "student_dw_ckbd(widths=[16,32])", "teacher": "vmuc", "target": 35.0, "encoder_ratio": 40.0,
           "decoder_ratio": 50.0, "passed": True, "codec": "student_dw_ckbd", "config": {"widths": [16, 32]},
           "encoder_kmac_per_px": 2.0, "decoder_kmac_per_px": 1.4, "resolution": [768, 512]}
    (profile_dir / "zoo").mkdir()
    (profile_dir / "zoo" / "zoo.json").write_text(json.dumps({"command": "python -m profiling.zoo", "rows": [row]}))
    (profile_dir / "rows.json").write_text(json.dumps([{
        "student": "student_slow", "teacher": "vmuc", "target": 35.0, "encoder_ratio": 20.0, "decoder_ratio": 25.0,
        "passed": False, "encoder_kmac_per_px": 4.0, "decoder_kmac_per_px": 2.8},
        {"student": "student_two_points", "teacher": "vmuc", "target": 35.0, "encoder_ratio": 70.0,
         "decoder_ratio": 70.0, "passed": True, "encoder_kmac_per_px": 1.0, "decoder_kmac_per_px": 1.0}]))
    (profile_dir / "unrelated.json").write_text(json.dumps({"something": "else"}))


def test_pareto_figure_from_synthetic_profiles(synthetic):
    root, out = synthetic
    _profiles(root / "results" / "profile")
    report = build_report(out, profile_dir=root / "results" / "profile")
    assert report == root / "results" / "REPORT.md"
    assert (out / "pareto.png").read_bytes()[:8] == PNG
    text = report.read_text()
    assert "![decoder kMAC/px against BD-rate vs the teacher](bench/pareto.png)" in text
    assert "70.00 kMAC/px / 35 = **2.000 kMAC/px**" in text
    # student_fast: matched by architecture through the zoo row, under budget; student_slow by label, over it
    assert "| `student_fast` | 1.400 | 2.000 | +10.00 % | yes |" in text
    assert "| `student_slow` | 2.800 | 4.000 | +5.00 % | no |" in text
    assert "`student_two_points`: BD-rate n/a (needs 4 points)" in text


def test_bd_tables_against_teacher_and_avif(synthetic):
    root, out = synthetic
    build_report(out, profile_dir=root / "none")
    bd = json.loads((out / "bd.json").read_text())
    assert bd["anchors"] == {"teacher": "vmuc", "classical": "avif"}
    t = bd["tables"]["teacher"]["rows"]
    for col in ("psnr_rgb_pchip", "psnr_rgb_cubic", "psnr_ycbcr_pchip", "ms_ssim_pchip"):
        assert t["student_fast"][col]["value"] == pytest.approx(10.0, abs=1e-6), col
        assert t["avif"][col]["value"] == pytest.approx(25.0, abs=1e-6), col
    assert t["student_two_points"]["psnr_rgb_pchip"]["value"] is None
    assert bd["tables"]["classical"]["rows"]["vmuc"]["psnr_rgb_pchip"]["value"] == pytest.approx(-20.0, abs=1e-6)
    assert "vmuc" not in t and "avif" not in bd["tables"]["classical"]["rows"]
    text = (root / "results" / "REPORT.md").read_text()
    assert "### Against the teacher `vmuc`" in text and "### Against `avif`" in text
    assert "| `student_fast` | student | 5 | +10.00 % | +10.00 % |" in text
    assert "Skipped: no profile found" in text and not (out / "pareto.png").exists()


def test_speed_ratios_to_the_teacher(synthetic):
    root, out = synthetic
    build_report(out, profile_dir=root / "none")
    speed = {r["name"]: r for r in json.loads((out / "speed.json").read_text())["rows"]}
    assert speed["student_fast"]["decode_speedup_vs_teacher"] == pytest.approx(20.0)
    assert speed["avif"]["decode_time_ratio_to_teacher"] == pytest.approx(0.01)
    assert speed["vmuc"]["decode_median_s"] == pytest.approx(2.0)
    text = (root / "results" / "REPORT.md").read_text()
    assert "| `student_fast` | student | 100.0 | 20.00x |" in text


def test_roles_follow_the_patterns(synthetic):
    _, out = synthetic
    from bench.results import load_results

    results = load_results(out)
    teacher, roles, notes = assign_roles(results, "vmuc*", "student*")
    assert teacher == "vmuc" and roles["avif"] == "classical" and roles["student_fast"] == "student"
    teacher, roles, notes = assign_roles(results, "student*", "none")
    assert teacher == "student_fast" and notes and roles["student_slow"] == "learned"


def test_profile_matching_prefers_architecture_then_label(tmp_path):
    _profiles(tmp_path / "p")
    entries, notes = load_profiles([tmp_path / "missing.json"], tmp_path / "p")
    assert notes == [f"profile file {tmp_path / 'missing.json'} does not exist"]
    fast = {"name": "renamed", "codec": "student_dw_ckbd", "config": {"widths": [16, 32]}}
    assert match_profile(fast, entries).decoder_kmac_per_px == 1.4
    teacher = {"name": "vmuc", "codec": "vmuc", "config": {"other": 1}}
    assert match_profile(teacher, entries).decoder_kmac_per_px == 70.0  # by label
    assert match_profile({"name": "nobody", "codec": "x", "config": {}}, entries) is None


def test_speed_flags_a_decoder_that_waited_for_a_cpu(tmp_path):
    out = tmp_path / "bench"
    result = _write(out, "vmuc", "learned", "vmuc", TEACHER_CONFIG, TEACHER_POINTS, decode_s=2.0)
    for row in result["images"]:
        row["decode_cpu_s"] = 0.5 * row["decode_s"]  # descheduled half the time
    result["environment"].update(loadavg_1min=6.0, cpu_count=2)
    write_json(out / "vmuc.json", result)
    build_report(out, profile_dir=tmp_path / "none")
    speed = json.loads((out / "speed.json").read_text())
    assert speed["rows"][0]["decode_cpu_per_wall"] == pytest.approx(0.5)
    assert any("CPU/wall below 0.8 for vmuc" in n for n in speed["notes"])
    assert any("busy machine" in n and "6.0 on 2 CPUs" in n for n in speed["notes"])


def test_pareto_reference_prefers_the_teacher_then_the_anchor_and_psnr_rgb_then_ycbcr():
    from bench.report import pareto_reference

    results = [{"name": n} for n in ("t", "s1", "s2", "avif")]
    roles = {"t": "teacher", "s1": "student", "s2": "student", "avif": "classical"}

    def cell(v):
        return {"value": v, "reason": None if v is not None else "no overlap"}

    def table(rgb, ycc):
        return {"s1": {"psnr_rgb_pchip": cell(rgb), "psnr_ycbcr_pchip": cell(ycc)},
                "s2": {"psnr_rgb_pchip": cell(None), "psnr_ycbcr_pchip": cell(None)}}

    bd = {"teacher": {"anchor": "t", "rows": table(None, None)}, "classical": {"anchor": "avif", "rows": table(None, 5.0)}}
    assert pareto_reference(results, roles, bd) == ("classical", "psnr_ycbcr_pchip", "PSNR-YCbCr 6:1:1")
    bd["classical"]["rows"] = table(7.0, 5.0)
    assert pareto_reference(results, roles, bd) == ("classical", "psnr_rgb_pchip", "PSNR-RGB")
    bd["teacher"]["rows"] = table(None, -3.0)
    assert pareto_reference(results, roles, bd) == ("teacher", "psnr_ycbcr_pchip", "PSNR-YCbCr 6:1:1")
    bd["teacher"]["rows"] = table(-2.0, -3.0)
    assert pareto_reference(results, roles, bd) == ("teacher", "psnr_rgb_pchip", "PSNR-RGB")
    bd = {"teacher": {"anchor": "t", "rows": table(None, None)}, "classical": {"anchor": "avif", "rows": table(None, None)}}
    assert pareto_reference(results, roles, bd) is None


def test_gate_teacher_sets_the_budget_line_while_another_curve_is_the_rd_teacher(synthetic):
    """A mid-size RD teacher (student_slow's curve) with the budget of vmuc's profile: the line is
    70 / 35 = 2 kMAC/px, BD-rates are against the RD teacher; a gate without a profile is said."""
    root, out = synthetic
    _profiles(root / "results" / "profile")
    build_report(out, profile_dir=root / "results" / "profile", anchor_teacher="student_slow", gate_teacher="vmuc")
    text = (root / "results" / "REPORT.md").read_text()
    assert "Budget line: gate teacher `vmuc` decoder 70.00 kMAC/px / 35 = **2.000 kMAC/px**" in text
    assert "| `vmuc` (gate) | 70.00 | 80.00 |" in text
    # student_fast spends 1.10 / 1.05 of the RD teacher's bits: +4.76 %, and its 1.4 kMAC/px is under 2
    assert "| `student_fast` | 1.400 | 2.000 | +4.76 % | yes |" in text
    command = json.loads((out / "bd.json").read_text())["command"]
    assert "--teacher student_slow" in command and command.endswith("--gate-teacher vmuc")
    build_report(out, profile_dir=root / "results" / "profile", anchor_teacher="student_slow", gate_teacher="nothing")
    assert "Skipped: the gate teacher `nothing` has no profile" in (root / "results" / "REPORT.md").read_text()
