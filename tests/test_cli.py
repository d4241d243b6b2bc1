"""python -m codec compress / decompress: success, and one clean error line on bad input."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from codec.checkpoint import save_checkpoint
from codec.image import read_image
from codec.registry import create_codec

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "codec", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=120)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    model = create_codec("mean_scale_hyperprior", N=8, M=12).eval()
    ckpt = save_checkpoint(d / "m.ckpt", model)
    other = save_checkpoint(d / "other.ckpt", create_codec("hyperprior", N=8, M=12))
    rng = np.random.default_rng(0)
    img = (rng.random((37, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(d / "in.png")
    return d, model, ckpt, other


def assert_clean_error(res, *words):
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_compress_decompress_round_trip(setup):
    d, model, ckpt, _ = setup
    res = cli("compress", d / "in.png", d / "out.bin", "--checkpoint", ckpt)
    assert res.returncode == 0, res.stderr
    assert "bpp" in res.stdout
    res = cli("decompress", d / "out.bin", d / "rec.png", "--checkpoint", ckpt)
    assert res.returncode == 0, res.stderr
    data = (d / "out.bin").read_bytes()
    expected = (model.decompress(data) * 255).round().to(torch.uint8)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(read_image(d / "rec.png"), expected)


def test_bad_inputs_exit_nonzero_with_one_line_and_no_output(setup):
    d, _, ckpt, other = setup
    (d / "not_image.png").write_bytes(b"this is not a png")
    cases = [
        (("compress", d / "missing.png", d / "o1.bin", "--checkpoint", ckpt), d / "o1.bin", ["missing.png"]),
        (("compress", d / "not_image.png", d / "o2.bin", "--checkpoint", ckpt), d / "o2.bin", ["not_image.png"]),
        (("compress", d / "in.png", d / "o3.bin", "--checkpoint", d / "nope.ckpt"), d / "o3.bin", ["nope.ckpt"]),
    ]
    good = d / "good.bin"
    assert cli("compress", d / "in.png", good, "--checkpoint", ckpt).returncode == 0
    data = good.read_bytes()
    (d / "trunc.bin").write_bytes(data[: len(data) // 2])
    (d / "empty.bin").write_bytes(b"")
    cases += [
        (("decompress", d / "trunc.bin", d / "r1.png", "--checkpoint", ckpt), d / "r1.png", ["truncated"]),
        (("decompress", d / "empty.bin", d / "r2.png", "--checkpoint", ckpt), d / "r2.png", ["empty"]),
        (("decompress", good, d / "r3.png", "--checkpoint", other), d / "r3.png", ["mean_scale_hyperprior"]),
        (("decompress", d / "missing.bin", d / "r4.png", "--checkpoint", ckpt), d / "r4.png", ["missing.bin"]),
        (("decompress", good, d / "r5.jpg", "--checkpoint", ckpt), d / "r5.jpg", [".png"]),
    ]
    for args, out, words in cases:
        res = cli(*args)
        assert_clean_error(res, *words)
        assert not out.exists(), f"{out} left behind"
        assert not list(d.glob(f".{out.name}*")), "temp file left behind"
