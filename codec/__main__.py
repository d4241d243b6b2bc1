"""``python -m codec compress IN OUT.bin --checkpoint CKPT [--rate R] [--overfit-steps N [--overfit-lr LR]]``
``[--backend pytorch|onnxruntime [--onnx DIR]]`` /
``python -m codec decompress IN.bin OUT.png --checkpoint CKPT [--backend pytorch|onnxruntime [--onnx DIR]]`` /
``python -m codec export --checkpoint CKPT --format onnx OUT_DIR`` /
``python -m codec ship --checkpoint CKPT`` (the default model).

Without ``--checkpoint``, ``compress`` uses the shipped default model and ``decompress`` the
shipped model that the stream's header names (codec.default).

Coding runs the checkpoint's inference form (codec.inference: layers of the one-side parts
folded at load time); ``--backend onnxruntime`` runs the parts only that side runs with ONNX
Runtime (codec.export), the parts both sides run stay in PyTorch.

On bad input: a non-zero exit and one line on stderr naming the problem, no traceback, and
no output file left behind (outputs are written to a temp file and renamed at the end).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

EXIT_BAD_INPUT = 2
BACKENDS = ("pytorch", "onnxruntime")
EXPORT_FORMATS = ("onnx",)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _compress(args) -> str:
    from codec.checkpoint import load_checkpoint
    from codec.image import read_image, to_tensor
    from codec.inference import inference_copy
    from codec.overfit import (DEFAULT_LR, DEFAULT_METHOD, check_overfit_args, checkpoint_loss_config,
                               compress_latents, overfit_latents)

    # checked before anything is read, so bad values leave no output and cost nothing
    steps, lr, method = check_overfit_args(args.overfit_steps, DEFAULT_LR if args.overfit_lr is None else args.overfit_lr,
                                           args.overfit_method or DEFAULT_METHOD, args.overfit_lmbda)
    _check_backend_args(args)
    if steps and args.backend != "pytorch":
        raise ValueError("--overfit-steps optimizes through PyTorch; leave --backend at pytorch")
    rgb = read_image(args.input)
    if args.checkpoint is None:  # the shipped default model (codec.default)
        from codec.default import default_model

        model, blob = default_model()
    else:
        model, blob = load_checkpoint(args.checkpoint)
    rate = model.check_rate(args.rate) if args.rate is not None or model.rate_points is None else model.default_rate()
    x = to_tensor(rgb)
    if steps:
        coder = model  # latent overfitting needs the trainable form
    elif args.backend == "onnxruntime":
        from codec.export import onnxruntime_codec

        coder = onnxruntime_codec(model, args.onnx, sides=("encoder",))
    else:
        coder = inference_copy(model)
    t0 = time.perf_counter()
    note = ""
    if steps:
        result = overfit_latents(model, x, steps, lr, rate=rate, lmbda=args.overfit_lmbda,
                                 loss_cfg=checkpoint_loss_config(blob), method=method, progress=None)
        data = compress_latents(model, x, result.latents, rate)
        note = (f", overfit {result.steps} steps ({result.method}, lr {result.lr:g}, lmbda {result.lmbda:g}): "
                f"estimated RD loss {result.initial['loss']:.4f} -> {result.final['loss']:.4f}")
    else:
        data = coder.compress(x, rate=rate)
    dt = time.perf_counter() - t0
    out = Path(args.output)
    _write_atomic(out, data)
    h, w = rgb.shape[:2]
    at = "" if rate is None else f" at rate {rate:g}"
    return (f"{out}: {len(data)} bytes, {8 * len(data) / (h * w):.4f} bpp, {w}x{h}, {model.registry_name}{at}, "
            f"{dt * 1000:.0f} ms{note}")


def _check_backend_args(args) -> None:
    if args.onnx is not None and args.backend != "onnxruntime":
        raise ValueError("--onnx DIR is read by --backend onnxruntime only")


def _decompress(args) -> str:
    from codec.checkpoint import load_checkpoint
    from codec.image import to_uint8, write_png

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise ValueError(f"output {out} must be a .png file (decoded images are written as PNG)")
    _check_backend_args(args)
    data = Path(args.input).read_bytes()
    if args.checkpoint is None:  # the shipped model that made the stream (codec.default)
        from codec.bitstream import unpack
        from codec.default import model_for_stream

        model = model_for_stream(unpack(data)[0])
    else:
        model, _ = load_checkpoint(args.checkpoint)
    if args.backend == "onnxruntime":
        from codec.export import onnxruntime_codec

        model = onnxruntime_codec(model, args.onnx)
    else:
        from codec.inference import inference_copy

        model = inference_copy(model)
    t0 = time.perf_counter()
    x_hat = model.decompress(data)
    dt = time.perf_counter() - t0
    write_png(out, to_uint8(x_hat))
    return f"{out}: {x_hat.shape[-1]}x{x_hat.shape[-2]}, {model.registry_name}, {args.backend}, {dt * 1000:.0f} ms"


def _export(args) -> str:
    from codec.checkpoint import load_checkpoint
    from codec.export import export_onnx

    model, _ = load_checkpoint(args.checkpoint)
    manifest = export_onnx(model, args.output, args.format)
    kept = ", ".join(manifest["pytorch_parts"]) or "none"
    return (f"{args.output}: {', '.join(p['file'] for p in manifest['parts'].values())} ({model.registry_name}, "
            f"dynamic height and width, checked at {manifest['checked_at'][1]}x{manifest['checked_at'][0]}); "
            f"kept in PyTorch: {kept}")


def _ship(args) -> str:
    from codec.default import DEFAULT_CHECKPOINT, ship

    out = Path(args.output) if args.output else DEFAULT_CHECKPOINT
    path, wh = ship(args.checkpoint, out)
    return (f"{path}: {path.stat().st_size / 1e6:.2f} MB, float16 weights of {args.checkpoint}; its streams name "
            f"weights {wh.hex()}")


def _backend_args(parser, parts: str) -> None:
    parser.add_argument("--backend", choices=BACKENDS, default="pytorch",
                        help=f"what runs {parts}; the parts both sides run stay in PyTorch for bit-exact scale "
                             f"indices (default: pytorch)")
    parser.add_argument("--onnx", default=None, metavar="DIR",
                        help="with --backend onnxruntime: graphs written by `python -m codec export` (default: "
                             "export in memory)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m codec", description="Code images with a trained vmuc-lite checkpoint.")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compress", help="image (PNG/JPEG/PPM/WebP) -> bitstream")
    c.add_argument("input")
    c.add_argument("output")
    c.add_argument("--checkpoint", default=None,
                   help="checkpoint written by training (last.ckpt); default: the shipped model (codec.default)")
    c.add_argument("--rate", type=float, default=None,
                   help="variable-rate models: R in [0, K-1], integers are the trained rate points "
                        "(default: the middle trained point); fixed-rate models take none")
    c.add_argument("--overfit-steps", type=int, default=0, metavar="N",
                   help="slow encoder: optimize this image's latents for N steps with the weights frozen "
                        "(codec.overfit); the stream is an ordinary one, decompress is unchanged (default 0)")
    c.add_argument("--overfit-lr", type=float, default=None, metavar="LR",
                   help="Adam step on the latents (default: codec.overfit.DEFAULT_LR)")
    c.add_argument("--overfit-method", choices=("ste", "sga"), default=None,
                   help="rounding while optimizing: stochastic Gumbel annealing (sga) or straight-through (ste) "
                        "(default: codec.overfit.DEFAULT_METHOD)")
    c.add_argument("--overfit-lmbda", type=float, default=None, metavar="LMBDA",
                   help="rate-distortion trade-off (default: the checkpoint's training lmbda, or a variable-rate "
                        "model's at --rate)")
    _backend_args(c, "the encoder-only parts (analysis, hyper analysis)")
    d = sub.add_parser("decompress", help="bitstream -> PNG")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--checkpoint", default=None,
                   help="the checkpoint the bitstream was made with; default: the shipped model the header names")
    _backend_args(d, "the decoder-only parts (the synthesis)")
    e = sub.add_parser("export", help="checkpoint -> ONNX graphs of the decoder-only parts")
    e.add_argument("output", metavar="OUT_DIR")
    e.add_argument("--checkpoint", required=True, help="checkpoint written by training (last.ckpt)")
    e.add_argument("--format", choices=EXPORT_FORMATS, required=True, help="graph format (onnx)")
    s = sub.add_parser("ship", help="checkpoint -> the shipped default model (float16 weights, codec/assets)")
    s.add_argument("output", nargs="?", default=None, help="default: codec/assets/default.ckpt")
    s.add_argument("--checkpoint", required=True, help="the trained checkpoint to ship")
    args = parser.parse_args(argv)

    from codec.bitstream import BitstreamError
    from codec.checkpoint import CheckpointError
    from codec.image import ImageReadError

    try:
        msg = {"compress": _compress, "decompress": _decompress, "export": _export, "ship": _ship}[args.command](args)
    except (BitstreamError, CheckpointError, ImageReadError, ValueError, OSError, RuntimeError) as e:
        where = getattr(e, "filename", None)
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        if isinstance(e, OSError) and where and str(where) not in text:
            text = f"{where}: {e.strerror or text}"
        print(f"error: {text}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(msg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
