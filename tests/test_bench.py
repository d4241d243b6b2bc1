"""The benchmark end to end at toy scale (the CI run), its JSON layout, its report and its errors.

Toy scale: 2 built-in 256x256 images, JPEG and WebP at 2 qualities, one tiny learned codec
(untrained mean_scale_hyperprior N=8 M=12, two seeds = two "rate points").
"""
from __future__ import annotations

import io
import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from PIL import Image

from bench.cli import run_bench
from bench.measure import resolve_learned, subsample
from bench.report import build_report, main as report_main
from bench.results import BENCH_FORMAT, BenchError, load_results, slug
from codec.checkpoint import save_checkpoint
from codec.data import builtin_images
from codec.image import read_image
from codec.registry import create_codec

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
TOY = "mean_scale_hyperprior(M=12,N=8)"


def _compose(overrides: list[str]):
    with initialize_config_module(config_module="conf", version_base=None):
        return compose("bench", overrides=overrides)


def _save_tiny(path: Path, seed: int, lmbda: float, **config) -> Path:
    torch.manual_seed(seed)
    model = create_codec("mean_scale_hyperprior", **{"N": 8, "M": 12, **config})
    return save_checkpoint(path, model, meta={"step": 0, "config": {"loss": {"lmbda": lmbda}}})


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """The CI toy bench, run once in-process; returns (root, run_bench's answer)."""
    root = tmp_path_factory.mktemp("bench")
    eval_dir = root / "eval"
    eval_dir.mkdir()
    for p in builtin_images()[:2]:
        shutil.copy(p, eval_dir / p.name)
    for i, lmbda in enumerate((0.0018, 0.0067)):
        _save_tiny(root / "ckpt" / f"toy_{i}.ckpt", seed=i, lmbda=lmbda)
    cfg = _compose([f"data.eval_dir={eval_dir}", "classical=[jpeg,webp]", "max_qualities=2",
                    f"learned=[{root}/ckpt/*.ckpt]", f"out_dir={root}/results/bench", "progress=false",
                    "anchor_teacher=mean_scale*", f"profile_dir={root}/results/profile"])
    answer = run_bench(cfg, command="python -m bench TOY")
    return root, answer


# ----------------------------------------------------------------------------- the toy run


def test_toy_bench_writes_one_compressai_json_per_codec(toy):
    root, answer = toy
    out = root / "results" / "bench"
    assert sorted(p.name for p in answer["written"]) == sorted(["jpeg.json", "webp.json", f"{slug(TOY)}.json"])
    for path in answer["written"]:
        data = json.loads(path.read_text())
        assert data["format"] == BENCH_FORMAT and isinstance(data["description"], str) and data["description"]
        res = data["results"]
        for key in ("bpp", "psnr-rgb", "psnr-ycbcr", "ms-ssim-rgb", "encoding_time", "decoding_time"):
            assert len(res[key]) == 2, key
        assert res["bpp"] == sorted(res["bpp"])
        assert len(data["images"]) == 2 * 2  # images x rate points
        assert data["command"] == "python -m bench TOY"
        assert data["environment"]["torch_threads"] == 1 and data["environment"]["cpu"]
        assert data["eval_set"]["count"] == 2 and len(data["eval_set"]["fingerprint"]) == 40
        for i, point_bpp in enumerate(res["bpp"]):
            rows = [r for r in data["images"] if r["rate_point"] == i]
            assert point_bpp == pytest.approx(np.mean([r["bpp"] for r in rows]))
    assert {r["name"] for r in load_results(out)} == {"jpeg", "webp", TOY}


def test_recorded_jpeg_bytes_are_what_pillow_writes(toy):
    root, _ = toy
    data = json.loads((root / "results" / "bench" / "jpeg.json").read_text())
    assert [p["quality"] for p in data["rate_points"]] == [10, 95]  # the ends of the default sweep
    for row in data["images"]:
        rgb = read_image(root / "eval" / row["image"])
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=int(row["quality"]), subsampling=2, optimize=True)
        assert row["bytes"] == len(buf.getvalue())
        assert row["bpp"] == 8 * row["bytes"] / (row["height"] * row["width"])
        assert (row["height"], row["width"]) == rgb.shape[:2]
        assert row["decode_s"] > 0 and row["encode_s"] > 0 and 0 < row["ms_ssim_rgb"] <= 1


def test_learned_checkpoints_are_one_curve_with_their_lambdas(toy):
    root, _ = toy
    data = json.loads((root / "results" / "bench" / f"{slug(TOY)}.json").read_text())
    assert data["kind"] == "learned" and data["codec"] == "mean_scale_hyperprior"
    assert data["config"] == {"N": 8, "M": 12} and data["profile_label"] == TOY
    assert sorted(p["lmbda"] for p in data["rate_points"]) == [0.0018, 0.0067]
    assert {Path(p["checkpoint"]).name for p in data["rate_points"]} == {"toy_0.ckpt", "toy_1.ckpt"}
    assert all(r["bytes"] > 0 and r["bpp"] == 8 * r["bytes"] / (256 * 256) for r in data["images"])


def test_report_builds_lists_the_commands_and_the_plots_exist(toy):
    root, answer = toy
    report = root / "results" / "REPORT.md"
    assert answer["report"] == report
    text = report.read_text()
    assert "python -m bench TOY" in text
    assert "python -m bench.report" in text
    assert "n/a (needs 4 points)" in text  # 2 qualities: documented behaviour of the BD table
    assert "`avif` was not measured" in text
    assert "Skipped: no profile found" in text  # no profiler JSON: no Pareto figure
    for name in ("rd_psnr_rgb.png", "rd_ms_ssim_rgb.png"):
        png = root / "results" / "bench" / name
        assert png.read_bytes()[:8] == PNG
        assert f"(bench/{name})" in text  # linked relative to the report
    speed = json.loads((root / "results" / "bench" / "speed.json").read_text())
    assert speed["teacher"] == TOY
    by_name = {r["name"]: r for r in speed["rows"]}
    assert by_name[TOY]["decode_speedup_vs_teacher"] == pytest.approx(1.0)
    jpeg = by_name["jpeg"]
    assert jpeg["decode_speedup_vs_teacher"] == pytest.approx(by_name[TOY]["decode_median_s"] / jpeg["decode_median_s"])


def test_rerun_with_learned_only_keeps_the_classical_json(toy, tmp_path):
    root, _ = toy
    out = tmp_path / "bench"
    shutil.copytree(root / "results" / "bench", out)
    before = (out / "jpeg.json").read_bytes()
    cfg = _compose([f"data.eval_dir={root / 'eval'}", f"learned={{toy_b:[{root}/ckpt/toy_1.ckpt,{root}/ckpt/toy_0.ckpt]}}",
                    f"out_dir={out}", "progress=false", "warmup=false", f"profile_dir={tmp_path / 'none'}"])
    answer = run_bench(cfg, command="python -m bench RERUN")
    assert [p.name for p in answer["written"]] == ["toy_b.json"]
    assert (out / "jpeg.json").read_bytes() == before
    text = (tmp_path / "REPORT.md").read_text()
    assert "python -m bench RERUN" in text and "python -m bench TOY" in text
    assert "Teacher: none" in text  # no curve matches vmuc*


def test_bench_report_command_rebuilds_from_json_only(toy, tmp_path, capsys):
    root, _ = toy
    out = tmp_path / "bench"
    shutil.copytree(root / "results" / "bench", out)
    for f in ("bd.json", "speed.json", "rd_psnr_rgb.png"):
        (out / f).unlink()
    report = tmp_path / "elsewhere" / "R.md"
    assert report_main([str(out), "--report", str(report), "--teacher", "mean_scale*"]) == 0
    assert (out / "bd.json").is_file() and (out / "speed.json").is_file() and (out / "rd_psnr_rgb.png").is_file()
    text = report.read_text()
    assert "(../bench/rd_psnr_rgb.png)" in text and "python -m bench TOY" in text
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- errors


@pytest.mark.parametrize("case, message", [
    ("missing_dir", "does not exist"),
    ("empty_dir", "holds no image"),
    ("bad_checkpoint", "not a readable vmuc-lite checkpoint"),
    ("no_glob_match", "no checkpoint matches"),
    ("nothing", "nothing to measure"),
    ("unknown_classical", "not a classical codec"),
])
def test_clear_errors_before_measuring(tmp_path, case, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    over = {
        "missing_dir": ["data.eval_dir=" + str(tmp_path / "nope"), "classical=[jpeg]"],
        "empty_dir": ["data.eval_dir=" + str(tmp_path / "empty"), "classical=[jpeg]"],
        "bad_checkpoint": ["data.eval_dir=builtin", f"learned=[{tmp_path / 'bad.ckpt'}]"],
        "no_glob_match": ["data.eval_dir=builtin", f"learned=[{tmp_path}/*.pt]"],
        "nothing": ["data.eval_dir=builtin"],
        "unknown_classical": ["data.eval_dir=builtin", "classical=[jpeg,bpg]"],
    }[case]
    cfg = _compose([*over, f"out_dir={tmp_path / 'out'}", "progress=false"])
    with pytest.raises(BenchError, match=message):
        run_bench(cfg)
    assert not (tmp_path / "out").exists()


def test_command_line_toy_run_records_its_command(toy, tmp_path):
    """The CI toy bench through the real entry point: Hydra overrides in, JSON with argv out."""
    root, _ = toy
    args = [f"data.eval_dir={root / 'eval'}", "classical=[jpeg]", "max_qualities=2",
            f"learned={{tiny:[{root}/ckpt/*.ckpt]}}", f"out_dir={tmp_path / 'bench'}", "progress=false",
            "anchor_teacher=tiny", f"hydra.run.dir={tmp_path / 'run'}"]
    proc = subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "bench" / "jpeg.json").read_text())
    assert data["command"] == "python -m bench " + " ".join(shlex.quote(a) for a in args)
    text = (tmp_path / "REPORT.md").read_text()
    assert data["command"] in text and "Teacher: `tiny`" in text


def test_command_line_error_is_one_line_and_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", f"data.eval_dir={tmp_path / 'nope'}", "classical=[jpeg]",
                           f"out_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: data.eval_dir=") and "does not exist" in lines[0]


# ------------------------------------------------------------------------------ small parts


def test_subsample_keeps_the_ends_evenly():
    assert subsample([10, 20, 35, 50, 65, 80, 90, 95], 2) == [10, 95]
    assert subsample([10, 20, 35, 50, 65, 80, 90, 95], 4) == [10, 35, 80, 95]
    assert subsample([1, 2, 3], None) == [1, 2, 3] and subsample([1, 2, 3], 9) == [1, 2, 3]
    with pytest.raises(BenchError):
        subsample([1, 2], 0)


def test_resolve_learned_groups_by_architecture_and_orders_by_lambda(tmp_path):
    a1 = _save_tiny(tmp_path / "a1.ckpt", 0, 0.05)
    a0 = _save_tiny(tmp_path / "a0.ckpt", 1, 0.01)
    b = _save_tiny(tmp_path / "b.ckpt", 2, 0.01, N=4)
    curves = resolve_learned([str(tmp_path / "*.ckpt"), str(a1)])  # a1 twice: counted once
    assert [(c.label, [p.name for p in c.checkpoints]) for c in curves] == [
        (TOY, ["a0.ckpt", "a1.ckpt"]), ("mean_scale_hyperprior(M=12,N=4)", ["b.ckpt"])]
    named = resolve_learned({"mine": [str(a0), str(a1)]})
    assert [(c.label, len(c.checkpoints)) for c in named] == [("mine", 2)]
    with pytest.raises(BenchError, match="two architectures"):
        resolve_learned({"mine": [str(a0), str(b)]})
