"""kMAC/px of a codec's encoder and decoder sides, per part, traced with fvcore (docs/DESIGN.md,
"kMAC/px accounting").

::

    image --pad_to_stride--> x_padded --encoder_pass(x_padded, SymbolRecorder)--> symbols
                                       --decoder_pass(symbols.replay(), padded size)--> x_hat

Each side is traced once with fvcore's ``JitModelAnalysis``; MACs are attributed to the
codec's declared parts through fvcore's module scopes, calls per part come from forward
pre-hooks during the same trace, and kMAC/px divides by H x W of the image *before*
padding, so padding the codec really computes is paid for (and reported apart).

Why it cannot be fooled quietly:

* Every aten op the trace records needs a handle (:mod:`profiling.ops`); fvcore's own
  ignore list is bypassed. An unclassified op is a *problem*.
* A traced graph only keeps what reaches its outputs. The passes hand their results to the
  entropy coder through ``.numpy()``, which the tracer cannot follow, so the symbol I/O
  object is wrapped and every tensor given to it or returned by it becomes a trace output.
  Work that still escapes the trace (a result used only through ``.item()``, a custom
  autograd Function) is caught by an independent count: ``torch.utils.flop_counter`` sees
  every conv and matmul the dispatcher executes during a second, eager run of the same
  pass; if its MACs differ from fvcore's, that is a problem too.
* ``strict=True`` raises :class:`ProfileError` on any problem; otherwise problems are kept in
  the profile and :func:`profiling.gate` refuses such a profile.
"""
from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
from fvcore.nn.jit_analysis import JitModelAnalysis
from torch.utils.flop_counter import FlopCounterMode

from codec.base import Codec
from codec.coding import SymbolRecorder
from codec.image import pad_to_stride
from profiling.ops import ELEMENTWISE_KEY, MAC_KEY, UncountableOpError, op_handles

__all__ = [
    "ProfileError", "ModuleCount", "count_module", "profile_codec", "codec_label",
    "DEFAULT_RESOLUTION", "sample_image",
]

#: (W, H) of the evaluation images; docs/DESIGN.md rule 2.
DEFAULT_RESOLUTION = (768, 512)

SIDES = ("encoder", "decoder")
_CODEC = "codec"  # attribute name of the codec inside the tracing wrappers


class ProfileError(RuntimeError):
    """The profiler could not count a pass exactly; the message says what and how to fix it."""


# --------------------------------------------------------------------------- generic counter
class _ClassifiedAnalysis(JitModelAnalysis):
    """fvcore analysis that ignores only ``prim::`` plumbing: every aten op needs a handle."""

    def _should_ignore_node(self, node) -> bool:
        kind = node.kind()
        return kind.startswith("prim::") and not kind.startswith(("prim::PythonOp", "prim::CallFunction"))


@dataclass
class ModuleCount:
    """Counts of one traced call of a module; keys of the dicts are submodule names ("" is the
    traced module itself), values include descendants, as fvcore's ``by_module``."""

    macs: dict[str, int]
    effective_macs: dict[str, float]
    elementwise_ops: dict[str, int]
    calls: dict[str, int]
    by_operator: dict[str, int]
    unsupported_ops: dict[str, int]
    dispatch_macs: int
    problems: list[str] = field(default_factory=list)

    @property
    def total_macs(self) -> int:
        return self.macs.get("", 0)


def _effective_macs(model: nn.Module, macs: dict[str, int]) -> dict[str, float]:
    """Executed MACs x ``effective_fraction()`` of the innermost module that defines it.

    A module's *own* MACs are its count minus those of the nearest descendants that define a
    fraction themselves; each such module removes own x (1 - fraction) from itself and from
    every ancestor.
    """
    fractions: dict[str, float] = {}
    for name, module in model.named_modules():
        fn = getattr(module, "effective_fraction", None)
        if callable(fn) and macs.get(name, 0):
            f = float(fn())
            if not 0.0 <= f <= 1.0 or math.isnan(f):
                raise ProfileError(f"{type(module).__name__}.effective_fraction() of {name!r} returned {f}; "
                                   "it must be the share of executed MACs that are effective, in [0, 1]")
            fractions[name] = f

    def inside(child: str, parent: str) -> bool:
        return parent == "" or child == parent or child.startswith(parent + ".")

    def nearest_owner(name: str) -> str | None:
        owners = [m for m in fractions if m != name and inside(name, m)]
        return max(owners, key=len) if owners else None

    own = dict((m, macs[m]) for m in fractions)
    for m in fractions:
        owner = nearest_owner(m)
        if owner is not None:
            own[owner] -= macs[m]
    lost = {m: own[m] * (1.0 - f) for m, f in fractions.items()}
    return {name: count - sum(v for m, v in lost.items() if inside(m, name)) for name, count in macs.items()}


def count_module(model: nn.Module, inputs: torch.Tensor | tuple, strict: bool = True) -> ModuleCount:
    """Trace ``model(*inputs)`` once and count MACs, effective MACs, elementwise ops and
    module calls, per submodule. ``strict`` raises :class:`ProfileError` on any problem."""
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    analysis = (
        _ClassifiedAnalysis(model, inputs)
        .set_op_handle(**op_handles())
        .unsupported_ops_warnings(False)
        .uncalled_modules_warnings(False)
        .tracer_warnings("none")
    )
    calls: Counter = Counter()
    hooks = [module.register_forward_pre_hook(lambda m, a, name=name: calls.update((name,)))
             for name, module in model.named_modules()]
    dispatch = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            per_module = analysis.by_module_and_operator()
    except UncountableOpError as e:
        raise ProfileError(str(e)) from None
    finally:
        for h in hooks:
            h.remove()
    try:
        # The independent count needs its own eager run: a Python dispatch mode active during
        # tracing hides the ops from the tracer.
        with torch.no_grad(), dispatch:
            model(*inputs)
    finally:
        model.train(was_training)

    def total(counter: Counter, prefix: str) -> int:
        return int(sum(v for k, v in counter.items() if k.startswith(prefix)))

    macs = {name: total(c, MAC_KEY) for name, c in per_module.items()}
    count = ModuleCount(
        macs=macs,
        effective_macs=_effective_macs(model, macs),
        elementwise_ops={name: total(c, ELEMENTWISE_KEY) for name, c in per_module.items()},
        calls=dict(calls),
        by_operator={k: int(v) for k, v in per_module[""].items()},
        unsupported_ops=dict(analysis.unsupported_ops("")),
        dispatch_macs=int(dispatch.get_total_flops()) // 2,  # flop_counter counts a MAC as 2 flops
    )
    if count.unsupported_ops:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(count.unsupported_ops.items()))
        count.problems.append(
            f"unsupported ops (neither counted nor listed as free in profiling/ops.py): {ops}; classify each in "
            "profiling.ops (MAC_OPS, ELEMENTWISE_OPS or SHAPE_OPS)")
    if count.dispatch_macs != count.total_macs:
        count.problems.append(
            f"the trace counts {count.total_macs} MACs but the pass executed {count.dispatch_macs} "
            "(torch.utils.flop_counter): some work escapes the trace, e.g. a result used only through "
            ".numpy()/.item()/Python, or a custom autograd Function; route it through a traced tensor")
    if strict and count.problems:
        raise ProfileError(f"{type(model).__name__}: " + "; ".join(count.problems))
    return count


# ------------------------------------------------------------------------------ codec sides
def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    return []


class _TappedIO:
    """Symbol I/O proxy: every tensor handed to the coder or returned by it is kept, so the
    trace keeps the work that feeds the coder (which it reaches only through ``.numpy()``)."""

    def __init__(self, io):
        self._io = io
        self.tapped: list[torch.Tensor] = []

    def __getattr__(self, name):
        attr = getattr(self._io, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            self.tapped += _tensors(args) + _tensors(kwargs)
            result = attr(*args, **kwargs)
            self.tapped += _tensors(result)
            return result

        return call


class _EncoderSide(nn.Module):
    def __init__(self, codec: Codec):
        super().__init__()
        self.codec = codec
        self.recorder: SymbolRecorder | None = None

    def forward(self, x_padded):
        io = _TappedIO(SymbolRecorder())
        out = self.codec.encoder_pass(x_padded, io)
        self.recorder = io._io
        return tuple(_tensors(out) + io.tapped) or (x_padded,)


class _DecoderSide(nn.Module):
    def __init__(self, codec: Codec, recorder: SymbolRecorder, size: tuple[int, int]):
        super().__init__()
        self.codec = codec
        self.recorder, self.size = recorder, size

    def forward(self, unused):
        io = _TappedIO(self.recorder.replay())
        x_hat = self.codec.decoder_pass(io, self.size)
        return tuple(_tensors(x_hat) + io.tapped)


def sample_image(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random 1x3xHxW image in [0, 1]: latents behave as on photos, unlike white noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, height // 8 + 1, width // 8 + 1, generator=g)
    x = torch.nn.functional.interpolate(low, size=(height, width), mode="bilinear", align_corners=False)
    return (x + 0.05 * torch.rand(1, 3, height, width, generator=g)).clamp(0, 1)


def codec_label(codec: Codec) -> str:
    """Registry name, plus the config keys that differ from the entry function's defaults."""
    from codec.registry import resolve_config

    name = codec.registry_name
    try:
        defaults = resolve_config(name, {})
    except (KeyError, TypeError):
        return name
    diff = {k: v for k, v in codec.config.items() if defaults.get(k) != v}
    if not diff:
        return name
    items = ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in sorted(diff.items()))
    return f"{name}({items})"


def _part_modules(codec: Codec) -> dict[str, str]:
    """part name -> module name inside the tracing wrapper; parts must be distinct and disjoint."""
    names = {}
    for name, module in codec.named_modules():
        names.setdefault(id(module), name)
    parts = {}
    for part in codec.parts:
        module = getattr(codec, part, None)
        if not isinstance(module, nn.Module):
            raise ProfileError(f"{codec.registry_name}.parts names {part!r}, which is not a submodule")
        parts[part] = f"{_CODEC}.{names[id(module)]}"
    for a, ma in parts.items():
        for b, mb in parts.items():
            if a != b and (ma == mb or mb.startswith(ma + ".")):
                raise ProfileError(f"{codec.registry_name}: parts {a!r} and {b!r} overlap ({ma} / {mb}); "
                                   "parts must be disjoint submodules so each MAC is attributed once")
    return parts


def _params(modules: list[nn.Module]) -> int:
    seen = {}
    for module in modules:
        for p in module.parameters():
            seen[id(p)] = p.numel()
    return int(sum(seen.values()))


def _side_report(codec: Codec, side: str, count: ModuleCount, pixels: int, padding_share: float) -> dict:
    parts = _part_modules(codec)
    k = 1000.0 * pixels
    declared = set(codec.parts_on(side))
    report_parts, ran, notes = {}, [], []
    for part, module_name in parts.items():
        calls = count.calls.get(module_name, 0)
        if part not in declared and calls == 0:
            continue
        if part not in declared:
            notes.append(f"part {part!r} ran {calls}x on the {side} side but is declared {codec.parts[part].value}")
        elif calls == 0:
            notes.append(f"part {part!r} is declared on the {side} side but was never called there (a part must "
                         "be called as a module, part(x), for its calls and MACs to be attributed to it)")
        ran.append(getattr(codec, part))
        report_parts[part] = {
            "kmac_per_px": count.macs.get(module_name, 0) / k,
            "effective_kmac_per_px": count.effective_macs.get(module_name, 0) / k,
            "elementwise_kops_per_px": count.elementwise_ops.get(module_name, 0) / k,
            "calls": int(calls),
            "params": _params([getattr(codec, part)]),
        }
    kmac = count.total_macs / k
    unattributed = kmac - sum(p["kmac_per_px"] for p in report_parts.values())
    if count.total_macs - sum(count.macs.get(m, 0) for p, m in parts.items() if p in report_parts):
        notes.append(f"{unattributed:.4f} kMAC/px of the {side} side run outside any part (a part called through "
                     "a method other than __call__, or a layer that is not a part); they count in the total")
    return {
        "kmac_per_px": kmac,
        "effective_kmac_per_px": count.effective_macs.get("", 0) / k,
        "elementwise_kops_per_px": count.elementwise_ops.get("", 0) / k,
        "params": _params(ran),
        "wall_ms": None,
        "entropy_coding_ms": None,
        "threads": torch.get_num_threads(),
        "padding_kmac_per_px": kmac * padding_share,
        "unattributed_kmac_per_px": unattributed,
        "by_operator": {op[len(MAC_KEY):]: n / k for op, n in sorted(count.by_operator.items())
                        if op.startswith(MAC_KEY)},
        "parts": report_parts,
        "problems": list(count.problems),
        "notes": notes,
    }


def _median_ms(fn, runs: int) -> float:
    fn()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(statistics.median(times))


def _wall_times(codec: Codec, x: torch.Tensor, runs: int) -> tuple[dict, list[str]]:
    """Median wall time of each real neural pass, and of entropy coding. Information only: the
    gate reads MACs.

    Encoder entropy coding is timed directly (rANS over the recorded symbols, what ``compress``
    adds to the pass); decoder entropy coding is interleaved with the pass (context models decode
    step by step), so it is a real ``decompress`` minus the pass with replayed symbols.
    """
    xp, _ = pad_to_stride(x, codec.stride)
    size = tuple(xp.shape[-2:])
    recorder = SymbolRecorder()
    with torch.no_grad():
        codec.encoder_pass(xp, recorder)
        times = {
            "encoder": {"wall_ms": _median_ms(lambda: codec.encoder_pass(xp, SymbolRecorder()), runs)},
            "decoder": {"wall_ms": _median_ms(lambda: codec.decoder_pass(recorder.replay(), size), runs)},
        }
    notes = []
    try:
        coding_ms = _median_ms(recorder.to_streams, runs)
        data = codec.compress(x, rate=codec._rate if codec.rate_points is not None else None)
        decompress_ms = _median_ms(lambda: codec.decompress(data), runs)
    except (ValueError, RuntimeError) as e:  # e.g. an untrained model whose symbols exceed the coder's range
        notes.append(f"entropy coding time not measured: compress/decompress failed: {e}")
    else:
        times["encoder"]["entropy_coding_ms"] = coding_ms
        times["decoder"]["entropy_coding_ms"] = max(0.0, decompress_ms - times["decoder"]["wall_ms"])
    return times, notes


def profile_codec(
    codec: Codec,
    resolution: tuple[int, int] = DEFAULT_RESOLUTION,
    wall_runs: int = 5,
    strict: bool = False,
    image: torch.Tensor | None = None,
    rate: float | None = None,
) -> dict:
    """Profile both sides of ``codec`` on a W x H image (``resolution`` is (W, H)).

    Returns ``{"codec", "label", "config", "resolution": [W, H], "padded_resolution": [Wp, Hp],
    "padding_share", "encoder": SIDE, "decoder": SIDE, "problems", "notes"}`` where SIDE holds
    ``kmac_per_px`` (executed, the gate's figure), ``effective_kmac_per_px``,
    ``elementwise_kops_per_px``, ``params``, ``wall_ms``, ``entropy_coding_ms``, ``threads``,
    ``padding_kmac_per_px`` and ``parts: {PART: {kmac_per_px, calls, ...}}``.

    ``padding_share`` = 1 - H W / (Hp Wp): the share of the MACs spent on padding, for layers
    whose cost scales with area. ``wall_runs=0`` skips timing (wall_ms stays None). ``image``
    (1x3xHxW in [0, 1]) replaces the default smooth random test image, and its size replaces
    ``resolution``. A variable-rate codec is profiled at ``rate`` (default: ``codec.default_rate()``);
    its gain units scale y and y_hat elementwise, which is free under the counting rules (a note
    in the report says so).
    """
    if not isinstance(codec, Codec):
        raise TypeError(f"profile_codec takes a codec.base.Codec, got {type(codec).__name__}")
    if image is None:
        width, height = (int(v) for v in resolution)
        if width < 1 or height < 1:
            raise ValueError(f"resolution must be positive (W, H), got {resolution}")
        image = sample_image(height, width)
    height, width = int(image.shape[-2]), int(image.shape[-1])
    if image.ndim != 4 or image.shape[:2] != (1, 3):
        raise ValueError(f"profile_codec: image must be 1x3xHxW, got {tuple(image.shape)}")
    if rate is None and codec.rate_points is not None:
        rate = codec.default_rate()
    was_training = codec.training
    codec.eval()
    try:
        with codec.at_rate(rate):
            device = next(codec.parameters()).device
            xp, _ = pad_to_stride(image.to(device, torch.float32).clamp(0, 1), codec.stride)
            hp, wp = int(xp.shape[-2]), int(xp.shape[-1])
            padding_share = 1.0 - (height * width) / (hp * wp)
            pixels = height * width

            # Wrappers built in eval mode: count_module restores their flag, which reaches the codec.
            encoder = _EncoderSide(codec).eval()
            counts = {"encoder": count_module(encoder, (xp,), strict=False)}
            decoder = _DecoderSide(codec, encoder.recorder, (hp, wp)).eval()
            counts["decoder"] = count_module(decoder, (xp,), strict=False)
            sides = {side: _side_report(codec, side, counts[side], pixels, padding_share) for side in SIDES}
            problems = [f"{side} side: {p}" for side in SIDES for p in sides[side].pop("problems")]
            notes = [f"{side} side: {n}" for side in SIDES for n in sides[side].pop("notes")]
            if strict and problems:
                raise ProfileError(f"{codec_label(codec)}: " + "; ".join(problems))
            if wall_runs > 0:
                times, timing_notes = _wall_times(codec, image, wall_runs)
                notes += timing_notes
                for side in SIDES:
                    sides[side].update(times[side])
    finally:
        codec.train(was_training)
    if rate is not None and codec.gain_channels is not None and codec.rates is not None:
        notes.append(f"variable rate: profiled at rate {rate:g}; the gain units' per-channel scaling of y and "
                     f"y_hat is elementwise work, free under the counting rules (docs/DESIGN.md)")
    elif rate is not None:
        notes.append(f"variable rate: profiled at rate {rate:g}")
    return {
        "codec": codec.registry_name,
        "label": codec_label(codec),
        "config": dict(codec.config),
        "rate": rate,
        "resolution": [width, height],
        "padded_resolution": [wp, hp],
        "padding_share": padding_share,
        "encoder": sides["encoder"],
        "decoder": sides["decoder"],
        "problems": problems,
        "notes": notes,
    }
