"""ONNX export of the decoder-only parts and decoding through ONNX Runtime (codec.export)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from codec.checkpoint import save_checkpoint  # noqa: E402
from codec.export import ExportError, export_onnx, onnxruntime_codec  # noqa: E402
from codec.image import to_uint8  # noqa: E402
from codec.inference import inference_copy  # noqa: E402
from codec.registry import create_codec  # noqa: E402
from tests.conftest import live_latents, tiny_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _model(name="student_tiny", seed=0):
    torch.manual_seed(seed)
    model = live_latents(create_codec(name, **tiny_config(name)).eval())
    with torch.no_grad():  # biases and GDN parameters away from their initial values
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    model = _model()
    return model, folder, export_onnx(model, folder)


def test_export_writes_decoder_graphs_with_dynamic_size_and_a_manifest(exported):
    import onnx

    model, folder, manifest = exported
    assert sorted(p.name for p in folder.iterdir()) == ["g_a.onnx", "g_s.onnx", "h_a.onnx", "manifest.json"]
    sides = {p: e["side"] for p, e in manifest["parts"].items()}
    assert sides == {"g_s": "decoder", "g_a": "encoder", "h_a": "encoder"}
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert manifest["codec"] == "student_tiny" and manifest["config_hash"] == model.config_hash().hex()
    assert sorted(manifest["pytorch_parts"]) == ["context", "entropy_parameters", "h_s"]
    assert manifest["traced_at"] != manifest["checked_at"]
    graph = onnx.load(folder / "g_s.onnx").graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert isinstance(dims[2], str) and isinstance(dims[3], str)  # height and width are symbols


@pytest.mark.parametrize("size", [(64, 64), (100, 37), (257, 129)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_onnxruntime_decode_is_within_one_level_of_pytorch(exported, size, smooth_image):
    """Graphs traced at one size decode others: every pixel within one 8-bit level."""
    model, folder, _ = exported
    x = smooth_image(*size, seed=2)
    data = model.compress(x)
    reference = to_uint8(inference_copy(model).decompress(data)).astype(int)
    decoded = to_uint8(onnxruntime_codec(model, folder).decompress(data)).astype(int)
    assert decoded.shape == reference.shape
    assert np.abs(decoded - reference).max() <= 1


@pytest.mark.parametrize("name", ["vmuc_tiny", "hyperprior", "student_shuffle_ckbd"])
def test_other_families_export_and_decode(name, smooth_image):
    model = _model(name)
    ort_model = onnxruntime_codec(model)  # exported in memory
    x = smooth_image(70, 90, seed=1)
    data = model.compress(x)
    a = to_uint8(model.decompress(data)).astype(int)
    b = to_uint8(ort_model.decompress(data)).astype(int)
    assert np.abs(a - b).max() <= 1


@pytest.mark.parametrize("name", ["student_tiny", "vmuc_tiny"])
def test_an_onnxruntime_encoder_writes_ordinary_streams(name, smooth_image):
    """The encoder-only parts through ONNX Runtime: the stream decodes with the plain PyTorch
    model (symbol CRC), to nearly the image the PyTorch encoder's stream gives."""
    model = _model(name)
    encoder = onnxruntime_codec(model, sides=("encoder",))
    assert type(encoder.h_s) is type(model.h_s)  # both sides' parts stay PyTorch
    x = smooth_image(96, 80, seed=6)
    ours = to_uint8(model.decompress(encoder.compress(x))).astype(int)
    theirs = to_uint8(model.decompress(model.compress(x))).astype(int)
    assert np.mean(ours != theirs) < 0.05  # a latent within float error of a rounding boundary may flip


def test_a_folder_from_other_weights_or_no_folder_is_refused(exported, tmp_path):
    _, folder, _ = exported
    with pytest.raises(ExportError, match="other weights"):
        onnxruntime_codec(_model(seed=1), folder)
    with pytest.raises(ExportError, match="no manifest.json"):
        onnxruntime_codec(_model(), tmp_path)
    with pytest.raises(ExportError, match="not supported"):
        export_onnx(_model(), tmp_path / "x", fmt="tflite")


def test_missing_onnxruntime_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(ExportError, match="pip install onnxruntime"):
        onnxruntime_codec(_model())


_ENCODE_ELSEWHERE = """
import sys, torch
from codec.checkpoint import load_checkpoint
from codec.inference import inference_copy
torch.set_num_threads(int(sys.argv[2]))
folder = sys.argv[1]
model, _ = load_checkpoint(folder + "/m.ckpt")
x = torch.load(folder + "/x.pt")
open(folder + "/m.bin", "wb").write(inference_copy(model).compress(x))
"""


def test_cli_export_and_decode_a_stream_made_in_another_process(tmp_path, smooth_image, capsys):
    """Another process encodes with the inference form at 2 threads; here the plain model, the
    inference form and ONNX Runtime all decode it (same symbols: the CRC), within one level."""
    from codec.__main__ import main
    from codec.image import read_image

    model = _model()
    save_checkpoint(tmp_path / "m.ckpt", model)
    x = smooth_image(96, 160, seed=4)
    torch.save(x, tmp_path / "x.pt")
    subprocess.run([sys.executable, "-c", _ENCODE_ELSEWHERE, str(tmp_path), "2"], check=True, cwd=REPO,
                   capture_output=True, timeout=300)
    ckpt, stream = str(tmp_path / "m.ckpt"), str(tmp_path / "m.bin")
    assert main(["export", "--checkpoint", ckpt, "--format", "onnx", str(tmp_path / "onnx")]) == 0
    assert "kept in PyTorch: h_s, context, entropy_parameters" in capsys.readouterr().out
    assert main(["decompress", stream, str(tmp_path / "a.png"), "--checkpoint", ckpt]) == 0
    assert main(["decompress", stream, str(tmp_path / "b.png"), "--checkpoint", ckpt, "--backend", "onnxruntime",
                 "--onnx", str(tmp_path / "onnx")]) == 0
    assert main(["compress", str(tmp_path / "a.png"), str(tmp_path / "c.bin"), "--checkpoint", ckpt, "--backend",
                 "onnxruntime", "--onnx", str(tmp_path / "onnx")]) == 0
    assert main(["decompress", str(tmp_path / "c.bin"), str(tmp_path / "c.png"), "--checkpoint", ckpt]) == 0
    plain = to_uint8(model.decompress((tmp_path / "m.bin").read_bytes())).astype(int)
    for png in ("a.png", "b.png"):
        assert np.abs(read_image(tmp_path / png).astype(int) - plain).max() <= 1


def test_cli_refuses_bad_backend_format_and_options(tmp_path, capsys):
    from codec.__main__ import main

    with pytest.raises(SystemExit) as e:
        main(["decompress", "in.bin", "out.png", "--checkpoint", "c.ckpt", "--backend", "tensorrt"])
    assert e.value.code == 2 and "invalid choice: 'tensorrt'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["export", "--checkpoint", "c.ckpt", "--format", "tflite", str(tmp_path)])
    assert e.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err
    assert main(["decompress", "in.bin", str(tmp_path / "o.png"), "--checkpoint", "c.ckpt", "--onnx", "d"]) == 2
    assert "--onnx DIR is read by --backend onnxruntime only" in capsys.readouterr().err
    save_checkpoint(tmp_path / "m.ckpt", _model())
    (tmp_path / "file").write_text("")
    assert main(["export", "--checkpoint", str(tmp_path / "m.ckpt"), "--format", "onnx", str(tmp_path / "file")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_graph_form_rewrites_the_inverse_per_channel_gdn_only_and_computes_the_same():
    """graph_form swaps each inverse per-channel simplified GDN of a width that fills ONNX
    Runtime's NCHWc blocks for GraphDiagonalGDN (same function up to rounding, checked on values
    of both signs) and leaves every other GDN alone; the exported synthesis of a student keeps
    Abs exactly for its narrower ones."""
    import onnx

    from codec.export import onnx_graphs
    from codec.inference import NCHWC_BLOCK, GraphDiagonalGDN, InferenceGDN, graph_form

    g = torch.Generator().manual_seed(0)
    c = NCHWC_BLOCK
    beta, gamma = torch.rand(c, generator=g) + 0.5, torch.rand(c, generator=g)
    x = torch.randn(2, c, 5, 7, generator=g) * 3
    parts = torch.nn.Sequential(InferenceGDN(beta, gamma, inverse=True, kind="simplified"),
                                InferenceGDN(beta, gamma, inverse=False, kind="simplified"),
                                InferenceGDN(beta, torch.rand(c, c, generator=g), inverse=True, kind="simplified"),
                                InferenceGDN(beta[:8], gamma[:8], inverse=True, kind="simplified"))
    form = graph_form(parts)
    assert [type(m) for m in form] == [GraphDiagonalGDN, InferenceGDN, InferenceGDN, InferenceGDN]
    assert type(parts[0]) is InferenceGDN  # a copy: the original is untouched
    assert torch.allclose(form[0](x), parts[0](x), rtol=1e-6, atol=1e-6)
    assert not torch.equal(form[0](x), x)

    model = create_codec("student_tiny", **tiny_config("student_tiny")).eval()
    widths = [m.beta.numel() for m in inference_copy(model).g_s.modules() if isinstance(m, InferenceGDN)]
    narrow = sum(w % c != 0 for w in widths)
    assert 0 < narrow < len(widths)
    graphs, manifest = onnx_graphs(model)
    assert [n.op_type for n in onnx.load_from_string(graphs["g_s"]).graph.node].count("Abs") == narrow
    assert manifest["check_max_abs_diff"]["g_s"] <= 1e-3


@pytest.mark.parametrize("name", ["student_tiny", "student_dw_msp"])
def test_graph_form_of_the_student_synthesis_folds_the_colour_tail(name):
    """The synthesis' graph form ends in GraphRGBTail (luma phases and RGB offsets from one 1x1
    conv) and gives the trained synthesis' RGB up to rounding, on random weights whose colour
    conv and biases are far from zero."""
    from student.transforms import GraphRGBTail

    from codec.inference import graph_form

    torch.manual_seed(0)
    model = create_codec(name, **(tiny_config(name) or {})).eval()
    form = inference_copy(model, channels_last=False)
    tail = list(form.g_s)[-2]
    torch.nn.init.normal_(tail.weight, std=0.3)
    torch.nn.init.normal_(tail.bias, std=0.3)
    y = torch.randn(1, form.latent, 3, 5) * 2
    graph = graph_form(form.g_s)
    assert isinstance(list(graph)[-1], GraphRGBTail)
    with torch.no_grad():
        ref, out = form.g_s(y), graph(y)
    assert out.shape == ref.shape and float(ref.abs().max()) > 0.1
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
