"""ONNX export of a codec's one-side parts, and coding through ONNX Runtime.

``python -m codec export --checkpoint C --format onnx OUT_DIR`` writes one graph per part that
only the decoder runs (the synthesis: ``g_s`` for students and the Balle baselines, ``g_s_y``
and ``g_s_uv`` for the teacher) and per part that only the encoder runs (``g_a``, ``h_a``; the
teacher's ``g_a_y``, ``g_a_uv``, ``h_a``), in their inference form (:mod:`codec.inference`),
with dynamic batch, height and width, plus ``manifest.json`` (codec, config hash, a digest of
the weights, each graph's side, inputs and outputs, and which parts stay in PyTorch and why).
``python -m codec decompress IN OUT --checkpoint C --backend onnxruntime [--onnx OUT_DIR]``
runs the decoder graphs with ONNX Runtime, ``compress ... --backend onnxruntime`` the encoder
graphs (exported in memory when no folder is given).

**What stays in PyTorch, and why** (docs/DESIGN.md, "Speed"): the parts both sides run,
``h_s``, the context and the entropy parameters, compute the scale-table indices. Encoder and
decoder must compute them bit for bit alike (docs/DESIGN.md, "Determinism of decoding"), and
ONNX Runtime's kernels do not round like PyTorch's (oneDNN) ones, so a scale near a table
boundary could get another index and the stream would not decode. They run in PyTorch, on one
thread, exactly as in ``compress``. The synthesis only turns decoded symbols into pixels: its
ONNX Runtime output equals PyTorch's up to float rounding (within one 8-bit level; tested).
The encoder-only parts only decide which symbols are coded: a stream their ONNX Runtime
form writes is an ordinary stream, decoded by either backend.

Each export is checked before it is written: the graphs are traced at one size and run by
ONNX Runtime at another, against the PyTorch inference form. The decoder-only graphs are
traced from :func:`codec.inference.graph_form` of that form (the per-channel GDN written with
ops ONNX Runtime keeps in its fast CPU layout), so the check also covers that rewrite.
"""
from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from codec.inference import graph_form, inference_copy

__all__ = ["ExportError", "export_onnx", "onnx_graphs", "onnxruntime_codec", "OrtPart", "side_parts",
           "PYTORCH_PARTS_REASON", "MANIFEST_FORMAT", "OPSET", "SIDES"]

MANIFEST_FORMAT = "vmuc-lite-onnx/1"
OPSET = 17
#: abs difference between ONNX Runtime and PyTorch on the check size above which an export fails
CHECK_TOLERANCE = 1e-3

PYTORCH_PARTS_REASON = (
    "run by both sides: they compute the scale-table indices, which must be bit-identical to the "
    "encoder's (PyTorch, one thread); ONNX Runtime's kernels round differently"
)


class ExportError(RuntimeError):
    """An export or an exported folder that cannot be used; the message says why."""


#: the sides whose one-side parts are exported, decoder first
SIDES = ("decoder", "encoder")


def side_parts(model, side: str) -> list[str]:
    """The parts only ``side`` ("decoder" or "encoder") runs."""
    return [name for name, s in model.parts.items() if s.value == side]


def weights_digest(model) -> str:
    from codec.rans import content_digest

    return content_digest(model.state_dict().values()).hex()


def _sample_size(model, scale: int) -> tuple[int, int]:
    """A padded image size for tracing: non-square, so height and width cannot be swapped."""
    s = model.stride
    return (s * scale, s * (scale + 1))


@torch.no_grad()
def _part_inputs(model, size: tuple[int, int], side: str) -> dict[str, tuple[torch.Tensor, ...]]:
    """The positional inputs each part only ``side`` runs receives when coding an image of the
    padded ``size``: a decode of all-zero symbols (no bitstream needed), or an encode of a
    smooth random image."""
    from codec.base import coding_threads
    from codec.coding import SymbolRecorder, SymbolReplay

    captured: dict[str, tuple[torch.Tensor, ...]] = {}
    handles = []
    for name in side_parts(model, side):
        def hook(module, args, kwargs, name=name):
            if kwargs or not all(torch.is_tensor(a) for a in args):
                raise ExportError(f"{model.registry_name}.{name} is called with non-tensor or keyword "
                                  "arguments; only parts called with tensors can be exported")
            captured.setdefault(name, tuple(a.detach().clone() for a in args))
        handles.append(getattr(model, name).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with coding_threads(), model.at_rate(model.default_rate()):
            if side == "decoder":
                model.decoder_pass(SymbolReplay.zeros(), size)
            else:
                g = torch.Generator().manual_seed(0)
                low = torch.rand(1, 3, size[0] // 8, size[1] // 8, generator=g)
                model.encoder_pass(torch.nn.functional.interpolate(low, size=size, mode="bilinear"), SymbolRecorder())
    finally:
        for h in handles:
            h.remove()
    return captured


def _export_part(module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[bytes, list[str], list[str]]:
    outputs = module(*args)
    n_out = 1 if torch.is_tensor(outputs) else len(outputs)
    inputs = [f"input{i}" for i in range(len(args))]
    outs = [f"output{i}" for i in range(n_out)]
    axes = {name: {0: f"{name}_batch", 2: f"{name}_height", 3: f"{name}_width"} for name in inputs + outs}
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the TorchScript-based exporter: torch.export's needs onnxscript, and this one traces
        # these plain feed-forward graphs exactly
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outs, dynamic_axes=axes, do_constant_folding=True)
    return buf.getvalue(), inputs, outs


def _session(graph: bytes | str | Path, threads: int):
    try:
        import onnxruntime as ort
    except ImportError:
        raise ExportError("the onnxruntime backend needs the onnxruntime package: pip install onnxruntime") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    source = graph if isinstance(graph, bytes) else str(graph)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OrtPart(nn.Module):
    """A part run by an ONNX Runtime session: tensors in, tensors out, like the module it replaces."""

    def __init__(self, name: str, session, inputs: list[str]):
        super().__init__()
        self.name, self.session, self.inputs = name, session, list(inputs)

    def forward(self, *args: torch.Tensor):
        if len(args) != len(self.inputs):
            raise RuntimeError(f"ONNX graph {self.name} takes {len(self.inputs)} inputs, got {len(args)}")
        feeds = {k: np.ascontiguousarray(a.detach().to("cpu", torch.float32).numpy())
                 for k, a in zip(self.inputs, args)}
        outs = [torch.from_numpy(o) for o in self.session.run(None, feeds)]
        return outs[0] if len(outs) == 1 else tuple(outs)

    def extra_repr(self) -> str:
        return f"{self.name!r}, onnxruntime"


def onnx_graphs(model, check: bool = True, sides: tuple[str, ...] = SIDES) -> tuple[dict[str, bytes], dict]:
    """Export the one-side parts of ``sides`` of ``model``'s inference form; -> (graphs, manifest)."""
    folded = inference_copy(model, channels_last=False)  # a graph has no memory format
    if not side_parts(folded, "decoder"):
        raise ExportError(f"{model.registry_name} declares no decoder-only part to export")
    traced_at, checked_at = _sample_size(folded, 2), _sample_size(folded, 3)
    graphs, entries = {}, {}
    for side in sides:
        args = _part_inputs(folded, traced_at, side)
        for name in side_parts(folded, side):
            if name not in args:
                raise ExportError(f"{model.registry_name}.{name} is an {side} part but the {side} pass never called it")
            part = getattr(folded, name)
            graphs[name], inputs, outputs = _export_part(graph_form(part) if side == "decoder" else part, args[name])
            entries[name] = {"file": f"{name}.onnx", "side": side, "inputs": inputs, "outputs": outputs,
                             "input_shapes_at_trace": [list(a.shape) for a in args[name]]}
    manifest = {
        "format": MANIFEST_FORMAT, "codec": model.registry_name, "config": model.config,
        "config_hash": model.config_hash().hex(), "weights": weights_digest(model), "opset": OPSET,
        "parts": entries, "traced_at": list(traced_at),
        "pytorch_parts": {name: PYTORCH_PARTS_REASON for name, side in model.parts.items() if side.value == "both"},
        "torch": torch.__version__,
    }
    if check:
        manifest["checked_at"] = list(checked_at)
        manifest["check_max_abs_diff"] = _check(folded, graphs, entries, checked_at)
    return graphs, manifest


@torch.no_grad()
def _check(folded, graphs: dict[str, bytes], entries: dict, size: tuple[int, int]) -> dict[str, float]:
    """Run each graph at another size than it was traced at, against the PyTorch form."""
    args = {}
    for side in dict.fromkeys(entry["side"] for entry in entries.values()):
        args.update(_part_inputs(folded, size, side))
    diffs = {}
    for name, graph in graphs.items():
        ort_out = OrtPart(name, _session(graph, 1), entries[name]["inputs"])(*args[name])
        ref = getattr(folded, name)(*args[name])
        ort_out = (ort_out,) if torch.is_tensor(ort_out) else ort_out
        ref = (ref,) if torch.is_tensor(ref) else ref
        if [tuple(t.shape) for t in ort_out] != [tuple(t.shape) for t in ref]:
            raise ExportError(f"ONNX graph {name} gives shapes {[tuple(t.shape) for t in ort_out]} at {size}, "
                              f"PyTorch {[tuple(t.shape) for t in ref]}: the height and width are not dynamic")
        diff = max(float((a - b).abs().max()) for a, b in zip(ort_out, ref))
        if not diff <= CHECK_TOLERANCE:
            raise ExportError(f"ONNX graph {name} differs from PyTorch by {diff:.3g} at {size} "
                              f"(tolerance {CHECK_TOLERANCE})")
        diffs[name] = diff
    return diffs


def export_onnx(model, out_dir: str | Path, fmt: str = "onnx") -> dict:
    """Write the one-side graphs and ``manifest.json`` into ``out_dir``; returns the manifest."""
    if fmt != "onnx":
        raise ExportError(f"export format {fmt!r} is not supported; use 'onnx'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a folder")
    graphs, manifest = onnx_graphs(model)
    out.mkdir(parents=True, exist_ok=True)
    for name, graph in graphs.items():
        (out / manifest["parts"][name]["file"]).write_bytes(graph)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def _load_dir(model, folder: str | Path, sides: tuple[str, ...]) -> tuple[dict[str, Path], dict]:
    folder = Path(folder)
    path = folder / "manifest.json"
    if not path.is_file():
        raise ExportError(f"{folder} has no manifest.json: write it with `python -m codec export --checkpoint C "
                          f"--format onnx {folder}`")
    try:
        manifest = json.loads(path.read_text())
    except ValueError as e:
        raise ExportError(f"{path} is not valid JSON: {e}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ExportError(f"{path}: format {manifest.get('format')!r}, expected {MANIFEST_FORMAT!r}")
    if manifest.get("codec") != model.registry_name or manifest.get("config_hash") != model.config_hash().hex():
        raise ExportError(f"{folder} holds graphs of a {manifest.get('codec')!r} with config hash "
                          f"{manifest.get('config_hash')}, the checkpoint is a {model.registry_name!r} with "
                          f"{model.config_hash().hex()}: export this checkpoint")
    if manifest.get("weights") != weights_digest(model):
        raise ExportError(f"{folder} was exported from other weights than this checkpoint's: export it again")
    files = {}
    for name in [n for side in sides for n in side_parts(model, side)]:
        entry = manifest.get("parts", {}).get(name)
        if entry is None or not (folder / entry["file"]).is_file():
            raise ExportError(f"{folder} lacks the graph of {name}: export it again")
        files[name] = folder / entry["file"]
    return files, manifest


def onnxruntime_codec(model, onnx_dir: str | Path | None = None, threads: int = 1,
                      sides: tuple[str, ...] = ("decoder",)):
    """``model``'s inference form with the parts only ``sides`` run by ONNX Runtime (graphs
    from ``onnx_dir``, checked against the model, or exported in memory); the parts both sides
    run stay in PyTorch. ``threads``: ONNX Runtime's intra-op threads."""
    unknown = set(sides) - set(SIDES)
    if unknown:
        raise ExportError(f"sides {sorted(unknown)} unknown; use {', '.join(SIDES)}")
    if onnx_dir is None:
        graphs, manifest = onnx_graphs(model, check=False, sides=tuple(sides))
    else:
        graphs, manifest = _load_dir(model, onnx_dir, tuple(sides))
    out = inference_copy(model)
    for name, graph in graphs.items():
        setattr(out, name, OrtPart(name, _session(graph, threads), manifest["parts"][name]["inputs"]))
    out.backend = "onnxruntime"
    return out
