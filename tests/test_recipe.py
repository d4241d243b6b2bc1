"""bench.recipe: recipes compared at equal wall time, measured on real bitstreams."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from bench import recipe


def test_psnr_gap_on_a_curve_linear_in_log_bpp():
    # PSNR = 30 + 5 ln(bpp / 0.1): pchip reproduces a straight line exactly
    bpps = [0.1, 0.2, 0.4, 0.8]
    curve = {"bpp": bpps, "psnr-rgb": [30 + 5 * math.log(b / 0.1) for b in bpps]}
    assert recipe.psnr_gap(curve, 0.3, 33.0) == pytest.approx(33.0 - (30 + 5 * math.log(3)), abs=1e-9)
    assert recipe.psnr_gap(curve, 0.1, 30.0) == pytest.approx(0.0, abs=1e-9)
    assert recipe.psnr_gap(curve, 0.05, 30.0) is None  # never extrapolated
    assert recipe.psnr_gap(curve, 0.9, 30.0) is None


def test_rd_loss_in_the_loss_space():
    from distill.run import val_rd_loss  # what bench.recipe ranks by

    val = {"bpp": 0.2, "psnr_ycbcr": 30.0, "psnr_rgb": 20.0}
    # 0.2 + 0.01 * 255^2 * 10^-3
    assert val_rd_loss(val, {"distortion": "ycbcr_mse", "lmbda": 0.01}) == pytest.approx(0.85025)
    assert val_rd_loss(val, {"distortion": "mse", "lmbda": 0.01}) == pytest.approx(0.2 + 6.5025)
    assert val_rd_loss({}, {"lmbda": 0.01}) is None


def _run_dir(root, name, seed, lr=5e-4):
    from codec.checkpoint import save_checkpoint
    from codec.registry import create_codec
    from tests.conftest import tiny_config

    torch.manual_seed(seed)
    model = create_codec("student_tiny", **tiny_config("student_tiny"))
    run = root / name
    save_checkpoint(run / "last.ckpt", model, step=7)
    cfg = {"codec": {"name": "student_tiny"}, "trainer": {"lr": lr, "batch_size": 4, "warmup_steps": 0, "max_minutes": 1},
           "data": {"crop_size": 64}, "loss": {"distortion": "ycbcr_mse", "lmbda": 0.0067}}
    (run / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(cfg), run / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create([f"trainer.lr={lr}"]), run / ".hydra" / "overrides.yaml")
    return model


def test_collect_measures_stopped_runs_with_real_bytes_and_caches(tmp_path, smooth_image, monkeypatch):
    from codec.image import read_image, to_tensor

    evals = tmp_path / "eval"
    evals.mkdir()
    for i in range(2):
        rgb = (smooth_image(48, 80, seed=i)[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(rgb).save(evals / f"{i}.png")
    sweep = tmp_path / "sweep"
    model = _run_dir(sweep, "a", seed=0)
    _run_dir(sweep, "b", seed=1, lr=1e-3)
    rows = recipe.collect(sweep, None, str(evals))
    assert [r["run"] for r in rows] == ["a", "b"] and [r["lr"] for r in rows] == [5e-4, 1e-3]
    assert rows[0]["steps"] == 7 and rows[0]["crops"] == 28 and rows[0]["megapixels"] == pytest.approx(28 * 64 * 64 / 1e6)
    # bpp from the bytes the model writes, computed here independently
    model.eval()
    bpp = np.mean([8 * len(model.compress(to_tensor(read_image(p)))) / (48 * 80) for p in sorted(evals.iterdir())])
    assert rows[0]["val"]["bpp"] == pytest.approx(bpp)
    assert rows[0]["rd_loss"] == pytest.approx(rows[0]["val"]["bpp"] + 0.0067 * 255.0**2 * 10 ** (-rows[0]["val"]["psnr_ycbcr"] / 10))

    # the cache answers while the checkpoint is unchanged; a new checkpoint is measured again
    def boom(*a, **k):
        raise AssertionError("validated again")

    monkeypatch.setattr("codec.engine.validation.validate", boom)
    assert recipe.collect(sweep, None, str(evals))[0]["val"] == rows[0]["val"]
    _run_dir(tmp_path / "again", "a", seed=2)
    (sweep / "a" / "last.ckpt").write_bytes((tmp_path / "again" / "a" / "last.ckpt").read_bytes())
    with pytest.raises(AssertionError, match="validated again"):
        recipe.collect(sweep, None, str(evals))


def test_cli_writes_the_table_and_refuses_an_empty_folder(tmp_path, capsys, smooth_image):
    assert recipe.main([str(tmp_path), "--reference", ""]) == 2
    assert "no run directory with a last.ckpt" in capsys.readouterr().err
    sweep = tmp_path / "sweep"
    _run_dir(sweep, "a", seed=0)
    (sweep / "a" / "recipe_val.json").write_text(json.dumps({"checkpoint_sha256": None, "eval_dir": None, "val": {}}))
    ref = tmp_path / "jpeg.json"
    ref.write_text(json.dumps({"name": "jpeg", "results": {"bpp": [0.1, 1.0], "psnr-rgb": [25.0, 35.0]}}))
    # no validation cached for this checkpoint and evaluation off: the row has no metrics, and says so
    assert recipe.main([str(sweep), "--reference", str(ref), "--no-evaluate"]) == 0
    out = json.loads((sweep / "recipe.json").read_text())
    assert out["rows"][0]["val"] is None and out["rows"][0]["psnr_gap"] is None
    assert "dB vs jpeg" in (sweep / "recipe.md").read_text()


def test_readme_section_ranks_by_rd_loss(tmp_path):
    from bench.readme import recipe as section

    assert "no recipe sweep yet" in section(tmp_path)
    row = {"codec": "student_dw_ckbd", "lmbda": 0.0067, "max_minutes": 8, "lr": 5e-4, "warmup_steps": 0, "batch_size": 8,
           "crop_size": 128, "steps": 100, "seconds": 480.0, "crops": 800, "megapixels": 13.1,
           "val": {"bpp": 0.2, "psnr_rgb": 28.0, "psnr_ycbcr": 31.0}, "psnr_gap": -1.0}
    rows = [{**row, "run": "base", "rd_loss": 1.1}, {**row, "run": "lr1e-3", "rd_loss": 1.0},
            {**row, "run": "c256", "rd_loss": 1.21}]
    (tmp_path / "recipe").mkdir()
    (tmp_path / "recipe" / "recipe.json").write_text(json.dumps({"command": "python -m bench.recipe x", "rows": rows}))
    text = section(tmp_path)
    assert "`lr1e-3`, then `base` (+10.0 %)" in text and "highest: `c256` (+21.0 %)" in text
    assert "| `lr1e-3` | 0.0005 | 0 | 8 | 128 | 100 | 8.0 | 800 | 13.1 | 0.200 | 28.00 | 31.00 | **1.0000** | -1.00 |" in text
