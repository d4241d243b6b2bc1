"""Real bitstreams of every registered codec: exact round trips, determinism across processes,
one coding thread."""
from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from codec.bitstream import BitstreamError
from codec.registry import create_codec, list_codecs
from tests.conftest import live_latents, tiny_config

SIZES = [(64, 64), (100, 37), (257, 129), (1, 1)]
CODECS = list_codecs()
REPO = Path(__file__).resolve().parents[1]


def test_every_codec_has_tiny_config():
    missing = [n for n in CODECS if tiny_config(n) is None]
    assert not missing, f"add a tiny config for {missing} in tests/conftest.py (TINY_CONFIGS) or register a *_tiny preset"


def _tiny(name):
    cfg = tiny_config(name)
    if cfg is None:
        pytest.skip(f"{name} has no tiny config")
    torch.manual_seed(0)
    return create_codec(name, **cfg).eval()


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_decompress_equals_encoder_side_reconstruction(name, size, smooth_image):
    model = _tiny(name)
    x = smooth_image(*size)
    data = model.compress(x)
    decoded = model.decompress(data)
    reference, _ = model.reconstruct(x)
    assert decoded.shape == x.shape
    assert torch.equal(decoded, reference)


def test_coding_runs_in_eval_mode_and_gives_each_module_its_mode_back(smooth_image):
    """compress / decompress / reconstruct code in eval mode (hooks see every module in eval),
    and afterwards exactly the modules that were training train again: a model left partly in
    training mode keeps that mix."""
    model = _tiny("student_tiny").train()
    frozen = [m for m in model.modules() if m is not model][::2]
    for m in frozen:
        m.training = False
    before = {name: m.training for name, m in model.named_modules()}
    seen = []
    handles = [m.register_forward_pre_hook(lambda mod, args: seen.append(mod.training)) for m in model.modules()]
    x = smooth_image(32, 48)
    data = model.compress(x)
    model.decompress(data)
    model.reconstruct(x)
    for h in handles:
        h.remove()
    assert seen and not any(seen)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert any(before.values()) and not all(before.values())


# ------------------------------------------------------------------------------------ threads
# oneDNN's convolutions differ in the last ulp with the thread count, so the coding passes run on
# one thread (codec.base.coding_threads) whatever the caller set, and give the caller its setting
# back. Comparing outputs at 1 and 2 threads only fails where the kernels happen to differ on
# the machine at hand; hooks on every layer check the guarantee itself, on any machine.
CALLER_THREADS = 2
LAYERS = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class _Boom(Exception):
    pass


@contextlib.contextmanager
def _threads_seen(model):
    """Pre-hooks on every module of every part; yields a list that fills with
    (part, module type, torch.get_num_threads()) for every call."""
    seen: list = []
    handles = [module.register_forward_pre_hook(
                   lambda m, args, part=part: seen.append((part, type(m), torch.get_num_threads())))
               for part in model.parts for module in getattr(model, part).modules()]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _caller_threads(n):
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("name", CODECS)
def test_coding_passes_run_on_one_thread_and_give_the_caller_its_setting_back(name, smooth_image):
    model = _tiny(name)
    x = smooth_image(100, 77, seed=3)
    data = model.compress(x)
    calls = {"compress": (lambda: model.compress(x), model.parts_on("encoder")),
             "decompress": (lambda: model.decompress(data), model.parts_on("decoder")),
             "reconstruct": (lambda: model.reconstruct(x), list(model.parts))}
    with _caller_threads(CALLER_THREADS):
        for what, (call, parts) in calls.items():
            with _threads_seen(model) as seen:
                call()
            assert torch.get_num_threads() == CALLER_THREADS, f"{what} did not restore the caller's thread count"
            assert set(parts) <= {part for part, _, _ in seen}, f"{what}: the hooks missed parts"
            assert any(issubclass(kind, LAYERS) for _, kind, _ in seen), f"{what}: no conv or linear layer seen"
            wrong = sorted({(part, kind.__name__, n) for part, kind, n in seen if n != 1})
            assert not wrong, f"{what} ran layers on more than one thread: {wrong}"


@pytest.mark.parametrize("name", CODECS)
def test_a_coding_pass_that_raises_gives_the_caller_its_thread_count_back(name, smooth_image):
    model = _tiny(name)
    x = smooth_image(64, 64)
    data = model.compress(x)

    def boom(module, args):
        raise _Boom

    for what, call, part in (("compress", lambda: model.compress(x), model.parts_on("encoder")[-1]),
                             ("decompress", lambda: model.decompress(data), model.parts_on("decoder")[-1])):
        handle = getattr(model, part).register_forward_pre_hook(boom)
        try:
            with _caller_threads(CALLER_THREADS):
                with pytest.raises(_Boom):
                    call()
                assert torch.get_num_threads() == CALLER_THREADS, f"{what} failed and left the thread count changed"
        finally:
            handle.remove()


_ENCODE_ELSEWHERE = """
import sys
from pathlib import Path
import torch
from codec.checkpoint import load_checkpoint
torch.set_num_threads(int(sys.argv[2]))
folder = Path(sys.argv[1])
x = torch.load(folder / "image.pt")
for ckpt in sorted(folder.glob("*.ckpt")):
    model, _ = load_checkpoint(ckpt)
    (folder / (ckpt.stem + ".bin")).write_bytes(model.compress(x))
    torch.save(model.reconstruct(x)[0], folder / (ckpt.stem + ".rec.pt"))
    assert torch.get_num_threads() == int(sys.argv[2])
"""


def test_a_bitstream_made_in_another_process_at_2_threads_decodes_here_at_1(tmp_path, smooth_image):
    """The real use: one process encodes (here at 2 threads), another decodes (at 1). Same
    bytes as an encoder here, and the decode equals the other process's encoder-side
    reconstruction to the bit, for every codec, with symbols that are not all zero."""
    from codec.checkpoint import save_checkpoint

    x = smooth_image(128, 192, seed=5)
    torch.save(x, tmp_path / "image.pt")
    models = {}
    for name in CODECS:
        models[name] = live_latents(_tiny(name))
        _, recorder = models[name].reconstruct(x)
        assert all(c.symbols.any() for c in recorder.calls if c.kind == "gaussian"), f"{name}: all-zero symbols"
        save_checkpoint(tmp_path / f"{name}.ckpt", models[name])
    subprocess.run([sys.executable, "-c", _ENCODE_ELSEWHERE, str(tmp_path), str(CALLER_THREADS)], check=True,
                   cwd=REPO, capture_output=True, timeout=300)
    assert torch.get_num_threads() == 1
    wrong = []
    for name, model in models.items():
        data = (tmp_path / f"{name}.bin").read_bytes()
        if model.compress(x) != data:
            wrong.append(f"{name}: another process encodes other bytes")
        try:
            decoded = model.decompress(data)
        except BitstreamError as e:  # the symbol CRC: encoder and decoder disagree
            wrong.append(f"{name}: {e}")
            continue
        if not torch.equal(decoded, torch.load(tmp_path / f"{name}.rec.pt")):
            wrong.append(f"{name}: the decode differs from the other process's encoder-side reconstruction")
    assert not wrong, wrong


def test_eval_forward_matches_decode_for_baselines(smooth_image):
    for name in ("factorized", "hyperprior", "mean_scale_hyperprior"):
        model = _tiny(name)
        x = smooth_image(64, 128)
        decoded = model.decompress(model.compress(x))
        with torch.no_grad():
            x_hat = model(x)["x_hat"].clamp(0, 1)
        assert torch.allclose(decoded, x_hat, atol=1e-5), name


def test_compress_rejects_bad_input():
    model = _tiny("hyperprior")
    with pytest.raises(ValueError, match="1x3xHxW"):
        model.compress(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="1x3xHxW"):
        model.compress(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError, match="multiples of 64"):
        model(torch.rand(1, 3, 60, 64))
