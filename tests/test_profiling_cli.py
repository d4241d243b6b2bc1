"""The gate verdict and the three commands (Hydra configs composed once, shrunk to CPU smoke runs)."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module

import profiling
from codec.registry import create_codec
from profiling import ProfileError, gate, profile_codec
from profiling.cli import parse_resolution, run_gate, run_profile, run_zoo, teacher_codec

ROOT = Path(__file__).resolve().parents[1]
SMALL = "resolution=64x64"


def _compose(name: str, overrides: list[str]):
    with initialize_config_module(config_module="conf", version_base=None):
        return compose(name, overrides=overrides)


def _run(module: str, *args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args, f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def tiny_and_wide():
    torch.manual_seed(0)
    tiny = profile_codec(create_codec("hyperprior", N=8, M=8), (128, 128), wall_runs=0, strict=True)
    wide = profile_codec(create_codec("hyperprior"), (128, 128), wall_runs=0, strict=True)
    return tiny, wide


# ------------------------------------------------------------------------------- the verdict
def test_gate_fails_a_codec_against_itself(tiny_and_wide):
    _, wide = tiny_and_wide
    row = gate(wide, wide, target=35)
    assert row["encoder_ratio"] == pytest.approx(1.0) and row["decoder_ratio"] == pytest.approx(1.0)
    assert not row["encoder_passed"] and not row["decoder_passed"] and not row["passed"]


def test_gate_passes_a_tiny_codec_against_a_wide_one(tiny_and_wide):
    tiny, wide = tiny_and_wide
    row = gate(tiny, wide, target=35)
    assert row["encoder_ratio"] >= 35 and row["decoder_ratio"] >= 35 and row["passed"]
    assert row["student"] == "hyperprior(M=8,N=8)" and row["teacher"] == "hyperprior"
    assert row["encoder_ratio"] == pytest.approx(wide["encoder"]["kmac_per_px"] / tiny["encoder"]["kmac_per_px"])
    assert {"student", "teacher", "target", "encoder_ratio", "decoder_ratio", "passed"} <= set(row)


def test_gate_needs_both_sides(tiny_and_wide):
    tiny, wide = tiny_and_wide
    lopsided = json.loads(json.dumps(tiny))
    lopsided["decoder"]["kmac_per_px"] = wide["decoder"]["kmac_per_px"] / 10  # only 10x on the decoder side
    row = gate(lopsided, wide, target=35)
    assert row["encoder_passed"] and not row["decoder_passed"] and not row["passed"]


def test_gate_refuses_untrustworthy_or_mismatched_profiles(tiny_and_wide):
    tiny, wide = tiny_and_wide
    broken = dict(tiny, problems=["encoder side: unsupported ops: aten::sort x1"])
    with pytest.raises(ProfileError, match="cannot be trusted"):
        gate(broken, wide)
    with pytest.raises(ValueError, match="same resolution"):
        gate(tiny, dict(wide, resolution=[768, 512]))
    empty = json.loads(json.dumps(tiny))
    empty["decoder"]["kmac_per_px"] = 0.0
    with pytest.raises(ProfileError, match="without MACs"):
        gate(empty, wide)
    with pytest.raises(ValueError, match="positive"):
        gate(tiny, wide, target=0)


def test_gate_command_module_cannot_shadow_the_function():
    with pytest.raises(ImportError, match="from profiling import gate"):
        importlib.import_module("profiling.gate")
    assert callable(profiling.gate)


@pytest.mark.parametrize("value, expected", [("768x512", (768, 512)), ("1000X664", (1000, 664)),
                                             ([1280, 768], (1280, 768)), (None, (768, 512))])
def test_parse_resolution(value, expected):
    assert parse_resolution(value) == expected


@pytest.mark.parametrize("value", ["768", "axb", "0x5", [1, 2, 3]])
def test_parse_resolution_rejects(value):
    with pytest.raises(ValueError, match="resolution"):
        parse_resolution(value)


# ------------------------------------------------------------------------------ the commands
def test_every_primary_config_composes_with_a_student():
    for name in ("profile", "gate"):
        cfg = _compose(name, ["codec=student"])
        assert cfg.codec.transform.block and cfg.codec.context.kind  # ${student.*} resolved


def test_profile_command_writes_profile_json(tmp_path):
    proc = _run("profiling", "codec=hyperprior", "codec.N=8", "codec.M=12", "resolution=100x70", "wall_runs=1",
                tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "g_a" in proc.stdout and "kMAC/px" in proc.stdout and "padding" in proc.stdout
    profile = json.loads((tmp_path / "run" / "profile.json").read_text())
    assert profile["codec"] == "hyperprior" and profile["resolution"] == [100, 70]
    assert profile["padded_resolution"] == [128, 128]
    for side in ("encoder", "decoder"):
        s = profile[side]
        for key in ("kmac_per_px", "effective_kmac_per_px", "elementwise_kops_per_px", "wall_ms"):
            assert isinstance(s[key], float), key
        assert isinstance(s["params"], int) and isinstance(s["threads"], int)
        assert all(set(p) >= {"kmac_per_px", "calls"} for p in s["parts"].values())


def test_run_profile_from_a_checkpoint(tmp_path):
    from codec.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "tiny.pt", create_codec("hyperprior", N=8, M=8))
    cfg = _compose("profile", [SMALL, "wall_runs=0", f"checkpoint={path}"])
    profile = run_profile(cfg, tmp_path / "out")
    assert profile["label"] == "hyperprior(M=8,N=8)" and profile["checkpoint"] == str(path)
    assert (tmp_path / "out" / "profile.json").is_file()


def test_teacher_comes_from_its_codec_config_with_overrides():
    assert teacher_codec(_compose("gate", ["teacher=hyperprior"])).config == {"N": 128, "M": 192}
    cfg = _compose("gate", ["teacher=hyperprior", "+teacher_config.N=16"])
    assert teacher_codec(cfg).config == {"N": 16, "M": 192}


def test_run_gate_writes_gate_json(tmp_path):
    cfg = _compose("gate", ["codec=hyperprior", "codec.N=8", "codec.M=8", "teacher=hyperprior", SMALL])
    row = run_gate(cfg, tmp_path)
    assert row["passed"]
    written = json.loads((tmp_path / "gate.json").read_text())
    assert {"student", "teacher", "target", "encoder_ratio", "decoder_ratio", "passed"} <= set(written)
    assert written["target"] == 35


def test_gate_command_exit_status(tmp_path):
    passing = _run("profiling.gate", "codec=hyperprior", "codec.N=8", "codec.M=8", "teacher=hyperprior", SMALL,
                   tmp_path=tmp_path / "pass")
    assert passing.returncode == 0, passing.stderr
    assert "PASSED" in passing.stdout
    assert json.loads((tmp_path / "pass" / "run" / "gate.json").read_text())["passed"] is True
    failing = _run("profiling.gate", "codec=hyperprior", "teacher=hyperprior", SMALL, tmp_path=tmp_path / "fail")
    assert failing.returncode == 1, failing.stderr
    assert "FAILED" in failing.stdout and "FAIL" in failing.stdout
    assert json.loads((tmp_path / "fail" / "run" / "gate.json").read_text())["passed"] is False


def test_run_zoo_sorts_by_decoder_kmac_and_reports_errors(tmp_path):
    students = "students=[{name:hyperprior,N:16,M:16},{name:hyperprior,N:8,M:8},{name:factorized,N:8,M:8},no_such_codec]"
    cfg = _compose("zoo", ["teacher=hyperprior", students, SMALL, "wall_runs=0", f"results_dir={tmp_path / 'results'}"])
    rows = run_zoo(cfg, tmp_path / "run", command="python -m profiling.zoo ...")
    assert [r["student"] for r in rows] == ["factorized(M=8,N=8)", "hyperprior(M=8,N=8)", "hyperprior(M=16,N=16)",
                                            "no_such_codec"]
    decoder = [r["decoder_kmac_per_px"] for r in rows[:3]]
    assert decoder == sorted(decoder)
    assert all(r["encoder_kmac_per_px"] > 0 and r["passed"] in (True, False) for r in rows[:3])
    assert "unknown codec" in rows[3]["error"] and rows[3]["passed"] is False
    assert json.loads((tmp_path / "run" / "zoo.json").read_text()) == rows
    md = (tmp_path / "results" / "zoo.md").read_text()
    assert "python -m profiling.zoo ..." in md and "| hyperprior(M=8,N=8) |" in md


def test_zoo_defaults_to_registered_students(tmp_path):
    cfg = _compose("zoo", ["teacher=hyperprior", "student_pattern=mean_scale_*", SMALL, "wall_runs=0",
                           f"results_dir={tmp_path}"])
    rows = run_zoo(cfg, tmp_path)
    assert [r["student"] for r in rows] == ["mean_scale_hyperprior"]
    cfg = _compose("zoo", ["teacher=hyperprior", "student_pattern=nothing_*", SMALL, f"results_dir={tmp_path}"])
    with pytest.raises(ValueError, match="no registered codec matches"):
        run_zoo(cfg, tmp_path)


def test_zoo_command(tmp_path):
    proc = _run("profiling.zoo", "teacher=hyperprior", "students=[{name:hyperprior,N:8,M:8}]", SMALL,
                "wall_runs=1", f"results_dir={tmp_path / 'results'}", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "run" / "zoo.json").read_text())
    assert isinstance(rows, list) and rows[0]["passed"] is True
    assert "students=[{name:hyperprior,N:8,M:8}]" in (tmp_path / "results" / "zoo.md").read_text()
