"""The shipped default model (codec.default): float16 weights, weights hash in the header,
decoding with no checkpoint argument."""
from __future__ import annotations

import pytest
import torch

from codec.bitstream import BitstreamError, unpack
from codec.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from codec.default import load_shipped, model_for_stream, ship, weights_hash
from codec.registry import create_codec
from tests.conftest import live_latents, tiny_config


@pytest.fixture
def shipped(tmp_path):
    torch.manual_seed(0)
    model = live_latents(create_codec("student_tiny", rates=[0.002, 0.008], **tiny_config("student_tiny")))
    src = save_checkpoint(tmp_path / "trained.ckpt", model, meta={"config": {"loss": {"distortion": "ycbcr_mse", "lmbda": 0.01}}})
    assets = tmp_path / "assets"
    path, wh = ship(src, assets / "default.ckpt")
    return model, path, wh, assets


def test_shipped_weights_are_float16_and_load_as_float32(shipped):
    model, path, wh, _ = shipped
    blob = read_checkpoint(path)
    floats = [v for v in blob["state_dict"].values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    loaded, _ = load_shipped(path)
    for k, v in loaded.state_dict().items():
        assert v.dtype == torch.float32
        torch.testing.assert_close(v, model.state_dict()[k].half().float(), rtol=0, atol=0)
    assert loaded.weights_hash == wh == weights_hash(loaded)


def test_shipped_model_keeps_its_training_loss(shipped):
    # overfitting and the bench's RD loss read the training loss: a shipped model must give its
    # source's (ycbcr_mse here), not fall back to the rgb_mse default
    from codec.checkpoint import training_lmbda
    from codec.overfit import checkpoint_loss_config

    _, path, _, _ = shipped
    blob = read_checkpoint(path)
    assert checkpoint_loss_config(blob) == {"distortion": "ycbcr_mse", "lmbda": 0.01}
    assert training_lmbda(blob) == 0.01


def test_weights_hash_changes_with_any_weight(shipped):
    _, path, wh, _ = shipped
    loaded, _ = load_shipped(path)
    with torch.no_grad():
        next(loaded.parameters()).view(-1)[0] += 1e-3
    assert weights_hash(loaded) != wh


def test_streams_name_the_shipped_weights_and_decode_without_a_checkpoint(shipped, smooth_image):
    _, path, wh, assets = shipped
    model, _ = load_shipped(path)
    x = smooth_image(48, 64)
    data = model.compress(x, rate=1)
    header, _ = unpack(data)
    assert header.weights_hash == wh and header.rate == 1.0
    decoder = model_for_stream(header, assets)
    assert torch.equal(decoder.decompress(data), model.reconstruct(x, rate=1)[0])


def test_a_stream_of_a_model_not_shipped_is_a_clear_error(shipped, smooth_image, tmp_path):
    _, path, _, assets = shipped
    other = create_codec("student_tiny", **tiny_config("student_tiny")).eval()
    data = other.compress(smooth_image(48, 64))
    with pytest.raises(BitstreamError, match="does not name its weights"):
        model_for_stream(unpack(data)[0], assets)
    other.weights_hash = weights_hash(other)
    data = other.compress(smooth_image(48, 64))
    with pytest.raises(BitstreamError, match=rf"'student_tiny' with config {other.config_hash().hex()} and weights "
                                             rf"{other.weights_hash.hex()}, which is not among the models shipped"):
        model_for_stream(unpack(data)[0], assets)
    # the shipped model refuses a stream that names other weights
    model, _ = load_shipped(path)
    same_arch = create_codec("student_tiny", rates=[0.002, 0.008], **tiny_config("student_tiny")).eval()
    same_arch.weights_hash = b"\x01" * 8
    with pytest.raises(BitstreamError, match="weights 0101010101010101"):
        model.decompress(same_arch.compress(smooth_image(48, 64), rate=0))


def test_no_shipped_model_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="ships none"):
        load_shipped(tmp_path / "none.ckpt")


def test_cli_codes_with_the_shipped_model_and_no_checkpoint_argument(shipped, smooth_image, tmp_path, monkeypatch,
                                                                      capsys):
    import codec.default
    from codec.__main__ import main
    from codec.image import read_image, to_uint8, write_png

    _, path, wh, assets = shipped
    monkeypatch.setattr(codec.default, "ASSETS", assets)
    monkeypatch.setattr(codec.default, "DEFAULT_CHECKPOINT", path)
    write_png(tmp_path / "in.png", to_uint8(smooth_image(48, 64)))
    assert main(["compress", str(tmp_path / "in.png"), str(tmp_path / "a.bin")]) == 0
    header, _ = unpack((tmp_path / "a.bin").read_bytes())
    assert header.weights_hash == wh and header.rate == 1.0  # the middle of the two points
    assert main(["decompress", str(tmp_path / "a.bin"), str(tmp_path / "a.png")]) == 0
    from codec.inference import inference_copy

    model, _ = load_shipped(path)
    ref = inference_copy(model).decompress((tmp_path / "a.bin").read_bytes())  # what the CLI decodes with
    assert (read_image(tmp_path / "a.png") == to_uint8(ref)).all()
    capsys.readouterr()
    # a stream from a model that is not shipped: a one-line error naming it, no output
    other = create_codec("student_tiny", **tiny_config("student_tiny")).eval()
    save_checkpoint(tmp_path / "other.ckpt", other)
    assert main(["compress", str(tmp_path / "in.png"), str(tmp_path / "b.bin"), "--checkpoint",
                 str(tmp_path / "other.ckpt")]) == 0
    assert main(["decompress", str(tmp_path / "b.bin"), str(tmp_path / "b.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'student_tiny'" in err[0] and "--checkpoint" in err[0]
    assert not (tmp_path / "b.png").exists()
    # shipping a checkpoint through the CLI
    assert main(["ship", str(tmp_path / "shipped2.ckpt"), "--checkpoint", str(tmp_path / "other.ckpt")]) == 0
    assert "float16" in capsys.readouterr().out
