"""``python -m bench.speed``: decode and encode wall time of the teacher, the student zoo and
JPEG / WebP / AVIF, side by side in one interleaved run, plus a per-part breakdown of one student.

Every codec codes the same images; each round visits every image and, for each image, every
codec in turn (encode and decode with each backend), so a change in machine load during
the run hits all of them alike. Round 0 warms up (first-call costs, coding tables) and
measures bytes and PSNR; rounds 1..R are timed. Reported: the median over rounds x images.

* Learned codecs code with their inference form (codec.inference); encode and decode are
  timed with each ``--backends`` entry: ``pytorch`` (the form in PyTorch) and ``onnxruntime``
  (the form's one-side parts, analysis and synthesis, through ONNX Runtime, codec.export); the
  parts both sides run are PyTorch in both. A codec without ``--checkpoint`` is built
  untrained from the registry (flagged ``trained: false``): its neural time is the trained
  model's (the same layers), but its rate, and with it the entropy-coding time, is not.
* Classical codecs (bench.classical) run at the quality whose bytes come closest, on each
  image, to the breakdown student's (``--quality NAME=Q`` fixes one).
* The breakdown times each part of the breakdown student's encode and decode (entropy coding
  apart from each neural part), with the one-side parts plain (as trained), folded, folded in
  channels-last layout, and in ONNX Runtime.

The run records the command, thread count, the machine's load average before and after
(``os.getloadavg``), CPU affinity and library versions into ``--out``
(``results/speed/speed.json``); ``python -m bench.readme`` builds the README section from it.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

__all__ = ["main", "run", "part_breakdown"]

DEFAULT_OUT = "results/speed/speed.json"
DEFAULT_EVAL = "data/prepared/eval"


def _versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}
    for mod in ("onnxruntime", "onnx", "constriction", "PIL"):
        try:
            out[mod] = getattr(__import__(mod), "__version__", "?")
        except ImportError:
            out[mod] = None
    return out


def _median_ms(values: list[float]) -> float | None:
    return 1000 * statistics.median(values) if values else None


# ------------------------------------------------------------------------------- codecs
class Learned:
    """One learned codec, coded by each backend: ``pytorch`` (the inference form) and
    ``onnxruntime`` (its one-side parts through ONNX Runtime)."""

    def __init__(self, label: str, model, checkpoint: str | None, backends: list[str], threads: int):
        from codec.export import SIDES, onnxruntime_codec
        from codec.inference import inference_copy

        self.label, self.checkpoint, self.kind = label, checkpoint, "learned"
        self.codec = model.registry_name
        self.plain = model.cpu().float().eval()
        self.coders = {}
        for backend in backends:
            if backend == "pytorch":
                self.coders[backend] = inference_copy(self.plain)
            elif backend == "onnxruntime":
                self.coders[backend] = onnxruntime_codec(self.plain, threads=threads, sides=SIDES)
            else:
                raise ValueError(f"--backends: unknown backend {backend!r}; use pytorch, onnxruntime")
        self.rate = model.default_rate()

    def encode(self, rgb: np.ndarray, backend: str) -> bytes:
        from codec.image import to_tensor

        return self.coders[backend].compress(to_tensor(rgb), rate=self.rate)

    def decode(self, data: bytes, backend: str) -> np.ndarray:
        from codec.image import to_uint8

        return to_uint8(self.coders[backend].decompress(data))


class Classical:
    def __init__(self, name: str, fixed_quality: float | None):
        from bench.classical import get_classical

        self.impl = get_classical(name)
        self.codec = name
        ok, why = self.impl.available()
        if not ok:
            raise ValueError(f"classical codec {name}: {why}")
        self.label = self.name = name
        self.kind = "classical"
        self.fixed = fixed_quality
        self.quality: dict[str, float] = {}

    def pick_quality(self, image: str, rgb: np.ndarray, target_bytes: int | None) -> None:
        """The fixed quality, or the default quality whose bytes come closest to ``target_bytes``."""
        if self.fixed is not None or target_bytes is None:
            self.quality[image] = self.fixed if self.fixed is not None else self.impl.default_qualities[
                len(self.impl.default_qualities) // 2]
            return
        sizes = {q: len(self.impl.encode(rgb, q)) for q in self.impl.default_qualities}
        self.quality[image] = min(sizes, key=lambda q: (abs(sizes[q] - target_bytes), q))

    def encode(self, rgb: np.ndarray, image: str) -> bytes:
        return self.impl.encode(rgb, self.quality[image])

    def decode(self, data: bytes) -> np.ndarray:
        return self.impl.decode(data)


def _load_learned(spec: str, seed: int = 0) -> tuple[str, object, str | None]:
    """A registry name (untrained, seeded) or a checkpoint path -> (codec name, model, path)."""
    from codec.checkpoint import load_checkpoint
    from codec.registry import create_codec, list_codecs

    if Path(spec).is_file():
        model, _ = load_checkpoint(spec)
        return model.registry_name, model, spec
    if spec not in list_codecs():
        raise ValueError(f"{spec!r} is neither a checkpoint file nor a registered codec")
    torch.manual_seed(seed)
    return spec, create_codec(spec), None


# ---------------------------------------------------------------------------- breakdown
@contextlib.contextmanager
def _timed_parts(models, totals: dict[str, float]):
    """Add to ``totals`` the wall time of every part call of ``models`` and of the symbol I/O
    and coder calls (patched on their classes for the duration)."""
    from codec import coding
    from codec.entropy import GaussianConditional

    handles, starts = [], {}
    for model in models:
        for name in model.parts:
            module = getattr(model, name)

            def pre(mod, args, name=name):
                starts[name] = time.perf_counter()

            def post(mod, args, out, name=name):
                totals[name] += time.perf_counter() - starts[name]
            handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    patched = [(coding.BitstreamDecoder, "factorized", "rANS decode z"),
               (coding.BitstreamDecoder, "gaussian", "scale index + rANS decode y"),
               (coding.SymbolRecorder, "factorized", "record z"),
               (coding.SymbolRecorder, "gaussian", "scale index + record y"),
               (coding.SymbolRecorder, "to_streams", "rANS encode"),
               (GaussianConditional, "scale_index", "scale index")]
    originals = []
    for cls, attr, key in patched:
        fn = getattr(cls, attr)
        originals.append((cls, attr, fn))

        def wrapper(*a, _fn=fn, _key=key, **k):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **k)
            finally:
                totals[_key] += time.perf_counter() - t0
        setattr(cls, attr, wrapper)
    try:
        yield
    finally:
        for cls, attr, fn in originals:
            setattr(cls, attr, fn)
        for h in handles:
            h.remove()


def part_breakdown(entry: Learned, rgb: np.ndarray, rounds: int, threads: int) -> dict:
    """Median per-part milliseconds of encode and decode of one image, with the one-side parts
    as trained (``plain``), folded as ``compress`` runs them (``pytorch``: the encoder's in
    channels-last layout), folded in the default layout everywhere (``pytorch nchw``) or in
    channels-last everywhere (``pytorch channels_last``), and through ONNX Runtime
    (``onnxruntime``); every decode reads the stream of the first backend's encoder."""
    from codec.image import to_tensor
    from codec.inference import inference_copy

    x = to_tensor(rgb)
    data = entry.encode(rgb, next(iter(entry.coders)))
    coders = {"plain": entry.plain, **entry.coders,
              "pytorch nchw": inference_copy(entry.plain, channels_last=False),
              "pytorch channels_last": inference_copy(entry.plain, channels_last=True)}
    runs = [(f"encode {k}", m) for k, m in coders.items()] + [(f"decode {k}", m) for k, m in coders.items()]
    samples: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in range(rounds + 1):
        for label, model in runs:
            totals: dict[str, float] = defaultdict(float)
            with _timed_parts([model], totals):
                t0 = time.perf_counter()
                if label.startswith("encode"):
                    model.compress(x, rate=entry.rate)
                else:
                    model.decompress(data)
                totals["total"] = time.perf_counter() - t0
            if r:
                for key, value in totals.items():
                    samples[label][key].append(value)
    out = {}
    for label, parts in samples.items():
        med = {k: _median_ms(v) for k, v in parts.items()}
        if "scale index + rANS decode y" in med:
            med["rANS decode y"] = med.pop("scale index + rANS decode y") - med.get("scale index", 0.0)
        if "scale index + record y" in med:
            med["record y"] = med.pop("scale index + record y") - med.get("scale index", 0.0)
        named = sum(v for k, v in med.items() if k != "total")
        med["other"] = med["total"] - named
        out[label] = med
    return {"codec": entry.label, "checkpoint": entry.checkpoint, "image": None, "rounds": rounds,
            "threads": threads, "bytes": len(data), "ms": out}


# ---------------------------------------------------------------------------------- run
def run(args) -> dict:
    from bench.measure import load_eval_set
    from codec.metrics import psnr_rgb

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    images, eval_set = load_eval_set(args.images, args.max_images)
    backends = [b for b in args.backends.split(",") if b]

    # learned codecs: the teacher, then the students (zoo names, replaced by checkpoints of the same codec)
    specs = [("teacher", args.teacher)] + [("student", s) for s in args.students.split(",") if s]
    by_codec: dict[str, int] = {}
    learned: list[tuple[str, str, object, str | None]] = []
    for role, spec in specs:
        name, model, path = _load_learned(spec)
        by_codec[name] = len(learned)
        learned.append((role, name, model, path))
    for path in args.checkpoint:
        name, model, path = _load_learned(path)
        entry = ("teacher" if learned[0][1] == name else "student", name, model, path)
        if name in by_codec and learned[by_codec[name]][3] is None:
            learned[by_codec[name]] = entry
        else:
            by_codec[name] = len(learned)
            learned.append(entry)
    labels = [n for _, n, _, _ in learned]
    entries = []
    for role, name, model, path in learned:
        label = name if labels.count(name) == 1 else f"{name}@{Path(path).parent.name if path else 'untrained'}"
        e = Learned(label, model, path, backends, args.threads)
        e.role, e.trained = role, path is not None
        if e.trained and args.rate is not None and model.rate_points is not None:
            e.rate = model.check_rate(args.rate)
        entries.append(e)
    teacher = entries[0]
    students = [e for e in entries if e.role == "student"]
    if not students:
        raise ValueError("no student to measure: give --students or --checkpoint")
    ref = next((e for e in students if e.label == args.breakdown), None) if args.breakdown else \
        next((e for e in students if e.trained), students[0])
    if ref is None:
        raise ValueError(f"--breakdown {args.breakdown}: not among the students {[e.label for e in students]}")

    fixed = {}
    for item in args.quality:
        name, _, q = item.partition("=")
        fixed[name] = float(q)
    classical = [Classical(n, fixed.get(n)) for n in args.classical.split(",") if n]

    # round 0: warm-up, bytes and PSNR (of the first backend's stream), classical qualities
    quality: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for im in images:
        ref_bytes = None
        for e in [ref] + [e for e in entries if e is not ref]:
            for backend in reversed(backends):
                data = e.encode(im.rgb, backend)
                out = e.decode(data, backend)
            quality[e.label]["bytes"].append(len(data))
            quality[e.label]["bpp"].append(8 * len(data) / (im.rgb.shape[0] * im.rgb.shape[1]))
            quality[e.label]["psnr_rgb"].append(psnr_rgb(im.rgb, out))
            if e is ref:
                ref_bytes = len(data)
        for c in classical:
            c.pick_quality(im.name, im.rgb, ref_bytes)
            data = c.encode(im.rgb, im.name)
            out = c.decode(data)
            quality[c.label]["bytes"].append(len(data))
            quality[c.label]["bpp"].append(8 * len(data) / (im.rgb.shape[0] * im.rgb.shape[1]))
            quality[c.label]["psnr_rgb"].append(psnr_rgb(im.rgb, out))

    # rounds 1..R: interleaved timing
    enc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    dec: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _ in range(args.rounds):
        for im in images:
            for e in entries:
                for backend in backends:
                    t0 = time.perf_counter()
                    data = e.encode(im.rgb, backend)
                    enc[e.label][backend].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    e.decode(data, backend)
                    dec[e.label][backend].append(time.perf_counter() - t0)
            for c in classical:
                t0 = time.perf_counter()
                data = c.encode(im.rgb, im.name)
                enc[c.label]["native"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                c.decode(data)
                dec[c.label]["native"].append(time.perf_counter() - t0)

    rows = []
    for e in entries + classical:
        q = quality[e.label]
        row = {"label": e.label, "kind": e.kind, "codec": e.codec,
               "samples": len(next(iter(dec[e.label].values()))), "bpp": statistics.mean(q["bpp"]),
               "psnr_rgb": statistics.mean(q["psnr_rgb"]),
               "encode_ms": {b: _median_ms(v) for b, v in enc[e.label].items()},
               "decode_ms": {b: _median_ms(v) for b, v in dec[e.label].items()}}
        if e.kind == "learned":
            row.update(role=e.role, trained=e.trained, checkpoint=e.checkpoint, rate=e.rate)
        else:
            row.update(quality=e.quality, settings=e.impl.settings())
        rows.append(row)

    ratios = {}
    t_row = rows[0]
    for row in rows[1:len(entries)]:
        ratios[row["label"]] = {b: t_row["decode_ms"][b] / row["decode_ms"][b] for b in backends}
    breakdown = part_breakdown(ref, images[0].rgb, args.rounds, args.threads)
    breakdown["image"] = images[0].name
    by_label = {r["label"]: r for r in rows}
    targets = _targets(by_label[ref.label], ref.trained, ratios[ref.label], args)
    others = {e.label: _targets(by_label[e.label], e.trained, ratios[e.label], args)
              for e in students if e.trained and e is not ref}
    return {
        "command": args.command, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "threads": args.threads, "rounds": args.rounds, "backends": backends,
        "load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
        "cpus": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": platform.processor() or platform.machine(), "versions": _versions(),
        "eval_set": eval_set, "teacher": teacher.label, "codecs": rows, "teacher_over_codec_decode": ratios,
        "breakdown": breakdown, "targets": targets, "other_trained_targets": others,
        "seconds": time.perf_counter() - t_start,
    }


def _targets(row: dict, trained: bool, ratio: dict[str, float], args) -> dict:
    """One student's speed targets: measured per backend against each target, and whether met."""
    return {
        "student": row["label"], "trained": trained, "bpp": row["bpp"],
        "decode_ms": {"target": args.target_decode_ms, "measured": row["decode_ms"],
                      "met": {b: v <= args.target_decode_ms for b, v in row["decode_ms"].items()}},
        "encode_ms": {"target": args.target_encode_ms, "measured": row["encode_ms"],
                      "met": {b: v <= args.target_encode_ms for b, v in row["encode_ms"].items()}},
        "teacher_over_student_decode": {"target": args.target_ratio, "measured": ratio,
                                        "met": {b: v >= args.target_ratio for b, v in ratio.items()}},
        "best_decode_ms": min(row["decode_ms"].values()),
    }


def _parser() -> argparse.ArgumentParser:
    from student.zoo import PRESETS

    zoo = ",".join(n for n in PRESETS if n != "student_tiny")
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="vmuc", help="registry name (untrained) or checkpoint (default: vmuc)")
    p.add_argument("--students", default=zoo, help=f"registry names, comma-separated (default: the zoo, {zoo})")
    p.add_argument("--checkpoint", action="append", default=[], metavar="PATH",
                   help="a trained checkpoint; replaces the untrained entry of its codec (repeatable)")
    p.add_argument("--breakdown", default=None, metavar="LABEL",
                   help="the student of the per-part breakdown and the targets (default: the first trained one)")
    p.add_argument("--images", default=None, help=f"folder of images, or 'builtin' (default: {DEFAULT_EVAL} if "
                                                  "present, else builtin)")
    p.add_argument("--rate", type=float, default=None,
                   help="rate point every trained variable-rate checkpoint codes at (default: its middle one)")
    p.add_argument("--max-images", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5, help="timed rounds after one warm-up round")
    p.add_argument("--threads", type=int, default=1, help="torch and ONNX Runtime threads (default 1)")
    p.add_argument("--backends", default="pytorch,onnxruntime", help="decode backends of the learned codecs")
    p.add_argument("--classical", default="jpeg,webp,avif", help="classical codecs (bench.classical), comma-separated")
    p.add_argument("--quality", action="append", default=[], metavar="NAME=Q",
                   help="fix a classical codec's quality (default: the closest in bytes to the breakdown student)")
    p.add_argument("--target-decode-ms", type=float, default=40.0)
    p.add_argument("--target-encode-ms", type=float, default=60.0)
    p.add_argument("--target-ratio", type=float, default=20.0, help="teacher/student decode wall-time ratio")
    p.add_argument("--out", default=DEFAULT_OUT)
    return p


def _summary(result: dict) -> str:
    lines = [f"{'codec':28s} {'bpp':>7s} {'PSNR':>6s}  encode ms / decode ms"]
    for row in result["codecs"]:
        ms = ", ".join(f"{b} {row['encode_ms'][b]:.1f} / {v:.1f}" for b, v in row["decode_ms"].items())
        lines.append(f"{row['label']:28s} {row['bpp']:7.4f} {row['psnr_rgb']:6.2f}  {ms}")
    for t in [result["targets"], *result.get("other_trained_targets", {}).values()]:
        lines.append(f"targets ({t['student']}): decode {t['decode_ms']['met']}, encode {t['encode_ms']['met']}, "
                     f"teacher/student {t['teacher_over_student_decode']['met']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    if args.rounds < 1 or args.max_images < 1 or args.threads < 1:
        print("error: --rounds, --max-images and --threads must be >= 1", file=sys.stderr)
        return 2
    if args.images is None:
        args.images = DEFAULT_EVAL if Path(DEFAULT_EVAL).is_dir() else "builtin"
    args.command = shlex.join(["python", "-m", "bench.speed", *argv])
    try:
        result = run(args)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(_summary(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
