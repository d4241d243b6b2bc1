"""The encoder cost of latent overfitting (codec.overfit), an optional encoder mode beside the gate.

N overfitting steps run on top of the feed-forward encoder::

    encoder(N) = feed-forward encoder                   (fvcore, the gate's figure: the pass that
                                                          also yields the starting latents)
               + N x one step                           (forward of the eval-mode training path
                                                          from the latents, plus its backward)
               + overhead                               (2 loss evaluations at hard rounding, and
                                                          the final coding pass from the latents:
                                                          hyper synthesis, context, entropy
                                                          parameters, no analysis)

A step is counted by running one real step (``LatentOverfitter.step``) under
``torch.utils.flop_counter``, which sees the backward's ops too: a MAC is 2 of its flops, as in
the profiler's cross-check. The weights are frozen, so the backward computes input gradients
only (one transposed MAC per forward MAC of a conv) and no weight gradients: measured, a step
costs about 2x its forward, not the 3x of a training step. The forward alone is counted the same
way (``evaluate``), so the report splits the step into forward and backward.

The gate's verdict is always the feed-forward encoder's (docs/DESIGN.md, rule 7): overfitting is
an optional slow encoder, reported beside the gate, never judged by it.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from codec.base import Codec
from codec.overfit import DEFAULT_LR, DEFAULT_METHOD, LatentOverfitter
from profiling.counter import DEFAULT_RESOLUTION, sample_image

__all__ = ["profile_overfit", "dispatch_macs", "overfit_encoder_kmac", "RULE"]

RULE = ("measured with torch.utils.flop_counter on one real step (forward of the eval-mode training path from "
        "the latents + its backward; weights frozen, so no weight-gradient MACs); a MAC is 2 flops")
GATE_NOTE = "the gate's verdict is that of the feed-forward encoder; overfitting is reported beside it, not judged"


def dispatch_macs(fn) -> int:
    """MACs of the convs and matmuls ``fn()`` executes, forward and backward (flop_counter / 2)."""
    mode = FlopCounterMode(display=False)
    with mode:
        fn()
    return int(mode.get_total_flops()) // 2


def overfit_encoder_kmac(entry: dict, steps: int) -> float:
    """The encoder's kMAC/px with ``steps`` overfitting steps, from a :func:`profile_overfit` entry."""
    if steps == 0:
        return entry["feed_forward_kmac_per_px"]
    return entry["feed_forward_kmac_per_px"] + steps * entry["step_kmac_per_px"] + entry["overhead_kmac_per_px"]


def profile_overfit(codec: Codec, steps: int, feed_forward_kmac_per_px: float,
                    resolution: tuple[int, int] = DEFAULT_RESOLUTION, image: torch.Tensor | None = None,
                    rate=None, loss_cfg: dict | None = None, lmbda: float | None = None, wall_runs: int = 0,
                    method: str = DEFAULT_METHOD) -> dict:
    """The ``encoder_overfit`` entry of a profile: kMAC/px of one step (forward, backward), of the
    fixed overhead, and of the whole encoder with ``steps`` steps, beside the feed-forward figure.

    ``feed_forward_kmac_per_px`` is the profiler's encoder figure for the same codec and image.
    The MACs do not depend on lmbda or the step; ``lmbda`` defaults to the loss config's, else 0.01.
    ``wall_runs`` > 0 also times a step (median; information).
    """
    if image is None:
        width, height = (int(v) for v in resolution)
        image = sample_image(height, width)
    height, width = int(image.shape[-2]), int(image.shape[-1])
    pixels = 1000.0 * height * width
    if lmbda is None and codec.rates is None and not (loss_cfg or {}).get("lmbda"):
        lmbda = 0.01  # no trade-off recorded: any value costs the same MACs
    run = LatentOverfitter(codec, image, max(int(steps), 1), DEFAULT_LR, rate, lmbda, loss_cfg, method)
    with run.session():
        forward = dispatch_macs(run.evaluate)
        step = dispatch_macs(lambda: run.step(0))
        wall_ms = None
        if wall_runs > 0:
            times = []
            for t in range(1, wall_runs + 2):
                t0 = time.perf_counter()
                run.step(t)
                times.append((time.perf_counter() - t0) * 1000.0)
            wall_ms = float(statistics.median(times[1:]))  # the first step allocates
    latents = run.snapshot()
    with codec.given_latents(**latents), torch.no_grad():
        coding = dispatch_macs(lambda: codec.encode_symbols(image, run.rate))
    overhead = 2 * forward + coding
    entry = {
        "steps": int(steps),
        "method": run.method,
        "rate": run.rate,
        "feed_forward_kmac_per_px": float(feed_forward_kmac_per_px),
        "step_kmac_per_px": step / pixels,
        "step_forward_kmac_per_px": forward / pixels,
        "step_backward_kmac_per_px": (step - forward) / pixels,
        "overhead_kmac_per_px": overhead / pixels,
        "coding_pass_kmac_per_px": coding / pixels,
        "step_wall_ms": wall_ms,
        "threads": torch.get_num_threads(),
        "counting": RULE,
        "gate": GATE_NOTE,
    }
    entry["kmac_per_px"] = overfit_encoder_kmac(entry, int(steps))
    return entry
