"""Long checks, deselected by default (pyproject.toml: addopts = "-m 'not slow'"); run them with
``python -m pytest -q -m slow``.

* every registered codec at its full default widths (the zoo students, the teacher, the Ballé
  baselines) codes real photographs at 768x512, 512x768 and 1280x720 (padded), with symbols
  that are not all zero, and ``decompress(compress(x))`` equals ``reconstruct(x)`` exactly;
* a tiny student trained for 300 steps by ``python -m codec.train`` gets a lower
  rate-distortion cost and a higher PSNR from real bitstreams than at step 0, and its
  checkpoint codes a 768x512 photograph through ``python -m codec compress/decompress``
  exactly as ``reconstruct`` predicts.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

from codec.image import read_image, to_tensor
from codec.registry import create_codec, list_codecs
from tests.conftest import live_latents

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PHOTO = Path(matplotlib.__file__).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
SIZES = [(512, 768), (768, 512), (720, 1280)]  # (H, W): the eval size, portrait, HD (padded to 768)


def photo(height: int, width: int) -> torch.Tensor:
    """The matplotlib sample photograph, Lanczos-resized to cover H x W and centre-cropped (what
    ``python -m codec.data prepare`` does to eval images)."""
    im = Image.fromarray(read_image(PHOTO))
    scale = max(width / im.width, height / im.height)
    im = im.resize((math.ceil(im.width * scale), math.ceil(im.height * scale)), Image.LANCZOS)
    left, top = (im.width - width) // 2, (im.height - height) // 2
    return to_tensor(np.array(im.crop((left, top, left + width, top + height))))


# toderici has no latent y (binary codes, tests/test_toderici.py) and, at its registry widths, 16
# iterations of about 0.5 MMAC/px each on each side: here at full width, at K = 2, on the eval size.
@pytest.mark.parametrize("name", list_codecs())
def test_every_codec_at_full_width_codes_real_photos_exactly(name):
    torch.manual_seed(0)
    model = live_latents(create_codec(name).eval())  # the registry defaults: full widths
    for height, width in SIZES[:1] if name == "toderici" else SIZES:
        x = photo(height, width)
        assert x.shape == (1, 3, height, width)
        rate = 2 if name == "toderici" else None
        data = model.compress(x, rate=rate)
        decoded = model.decompress(data)
        reference, recorder = model.reconstruct(x, rate=rate)
        assert decoded.shape == x.shape
        assert torch.equal(decoded, reference), f"{name} at {width}x{height}: decode != encoder-side reconstruction"
        if name == "toderici":  # both signs in every iteration's codes
            assert all(set(np.unique(c.symbols)) == {-1, 1} for c in recorder.calls), f"{name}: constant codes"
            continue
        nonzero = [float((c.symbols != 0).mean()) for c in recorder.calls if c.stream == "y"]
        assert nonzero and min(nonzero) > 0.05, f"{name} at {width}x{height}: symbols almost all zero {nonzero}"


TRAIN_STEPS, VAL_EVERY, LMBDA = 300, 100, 0.01


def _rd_cost(row: dict) -> float:
    """bpp + lmbda * 255^2 * MSE (MSE of [0, 1] images, from the mean PSNR-RGB): the training
    loss with the real rate and the real distortion of the validation bitstreams."""
    return row["val/bpp"] + LMBDA * 255**2 * 10 ** (-row["val/psnr_rgb"] / 10)


def test_a_tiny_student_trained_300_steps_improves_on_real_bitstreams_and_codes_by_the_cli(tmp_path):
    from codec.checkpoint import load_checkpoint
    from codec.image import to_uint8, write_png

    run_dir = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "codec.train", "codec=student_tiny", f"trainer.max_steps={TRAIN_STEPS}",
                    "trainer.batch_size=8", "data.crop_size=128", "trainer.lr=1e-3", "trainer.lr_decay_at=[0.9]",
                    "trainer.val_at_start=true", f"trainer.val_every={VAL_EVERY}", "trainer.checkpoint_every=100",
                    "trainer.log_every=50", "trainer.progress=false", "trainer.threads=1", f"loss.lmbda={LMBDA}",
                    "logger=none", f"hydra.run.dir={run_dir}"],
                   cwd=REPO, check=True, capture_output=True, timeout=1200)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = {r["step"]: r for r in rows if "val/bpp" in r}
    assert sorted(val) == list(range(0, TRAIN_STEPS + 1, VAL_EVERY))
    cost = [_rd_cost(val[s]) for s in sorted(val)]
    # Validation compresses and decompresses for real: the rate is the length of the bytes.
    assert all(b < a for a, b in zip(cost, cost[1:])), f"the real RD cost does not fall at every validation: {cost}"
    first, last = val[0], val[TRAIN_STEPS]
    assert last["val/psnr_rgb"] >= first["val/psnr_rgb"] + 5, (first, last)
    assert last["val/ms_ssim"] > first["val/ms_ssim"] + 0.2, (first, last)
    assert 0 < last["val/bpp"] < 2, last  # it spends bits now, and not absurdly many

    # The trained checkpoint (real, non-zero symbols) through the command line at 768x512.
    model, blob = load_checkpoint(run_dir / "last.ckpt")
    assert blob["step"] == TRAIN_STEPS
    x = photo(512, 768)
    write_png(tmp_path / "photo.png", to_uint8(x))
    x = to_tensor(read_image(tmp_path / "photo.png"))
    for args in (["compress", str(tmp_path / "photo.png"), str(tmp_path / "photo.bin")],
                 ["decompress", str(tmp_path / "photo.bin"), str(tmp_path / "decoded.png")]):
        subprocess.run([sys.executable, "-m", "codec", *args, "--checkpoint", str(run_dir / "last.ckpt")],
                       cwd=REPO, check=True, capture_output=True, timeout=300)
    data = (tmp_path / "photo.bin").read_bytes()
    assert data == model.compress(x), "the command and this process encode other bytes"
    reference, recorder = model.reconstruct(x)
    assert all((c.symbols != 0).any() for c in recorder.calls if c.stream == "y")
    assert np.array_equal(read_image(tmp_path / "decoded.png"), to_uint8(reference))
    assert 0 < 8 * len(data) / (512 * 768) < 2
