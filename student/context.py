"""Parallel entropy contexts for students: checkerboard and multi-scale progressive (MSP).

Both are *schedules* over sub-lattices of the latent grid. A step codes every latent element
on a few sub-lattices ("phases": offset (i, j) on the grid of stride s, i.e. ``y[..., i::s, j::s]``)
at once, with Gaussian parameters from the hyperprior at those positions fused with a context
computed from the phases of the same stride that are already decoded::

    step k:  hyper[phases_k] ----------------------------------+
                                                               +-> entropy_parameters[k] -> (scales, means)
             y_hat[known_k] -> context[k] (dw kxk, pointwise) -+        -> io.gaussian -> y_hat[phases_k]

Every tensor of a step is dense on the step's coarse grid (h/s x w/s), so the context and the
entropy parameters are computed exactly where an element is coded and from decoded values
only: no masked taps, no positions computed and thrown away, executed MACs = effective MACs
(up to the zero padding at image borders). The decoder runs ``steps`` context passes whatever
the image size.

* :class:`CheckerboardContext` -- He, Zheng, Sun, Wang, Qin, "Checkerboard context model for
  efficient learned image compression", CVPR 2021. Step 1: the anchors (i + j even, phases
  (0, 0) and (1, 1) of stride 2) from the hyperprior alone; step 2: the non-anchors ((0, 1) and
  (1, 0)) from the hyperprior and the decoded anchors. On the stride-2 grid the four nearest
  anchors of a non-anchor are at fixed offsets, which the depthwise kernel (one per phase)
  reaches.
* :class:`ProgressiveContext` -- the multi-scale progressive (MSP) model of Zhang, Cricri,
  Tavakoli, et al., "Leveraging progressive model and overfitting for efficient learned image
  compression", 2022. The latent is split by repeated 2x2 space-to-depth into ``levels``
  scales: step 1 codes the coarsest grid (stride 2^levels) from the hyperprior; then each level,
  coarse to fine, codes the three remaining phases of its 2x2 split in ``stages`` steps, each
  conditioned on everything decoded so far (which is exactly the grid of that level's stride).
  Steps = 1 + levels * stages, independent of the image size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from student.blocks import init_conv

__all__ = [
    "Step", "checkerboard_schedule", "progressive_schedule", "Lattice", "take_phases",
    "PhaseContext", "LatticeContext", "CheckerboardContext", "ProgressiveContext", "EntropyParameters",
    "CONTEXT_KINDS", "build_context", "context_schedule", "code_latent",
]

Offset = tuple[int, int]


@dataclass(frozen=True)
class Step:
    """One decoder pass: code ``phases`` of the stride-``stride`` grid, conditioned on ``known``
    (phases of the same grid decoded by earlier steps; empty: hyperprior alone)."""

    stride: int
    phases: tuple[Offset, ...]
    known: tuple[Offset, ...] = ()


def checkerboard_schedule() -> tuple[Step, ...]:
    anchors, non_anchors = ((0, 0), (1, 1)), ((0, 1), (1, 0))
    return (Step(2, anchors), Step(2, non_anchors, anchors))


def progressive_schedule(levels: int = 2, stages: int = 2) -> tuple[Step, ...]:
    """MSP: the coarsest grid, then per level (coarse to fine) its three other 2x2 phases in
    ``stages`` steps: 1 = all three at once; 2 = the diagonal phase, then the two others
    (a checkerboard inside the level); 3 = one at a time."""
    if levels < 1 or stages not in (1, 2, 3):
        raise ValueError(f"progressive context: levels must be >= 1 and stages 1, 2 or 3, got levels={levels}, "
                         f"stages={stages}")
    steps = [Step(2**levels, ((0, 0),))]
    for level in reversed(range(levels)):
        s, d = 2 ** (level + 1), 2**level
        diag, row, col = (d, d), (0, d), (d, 0)
        groups = {1: [(diag, row, col)], 2: [(diag,), (row, col)], 3: [(diag,), (row,), (col,)]}[stages]
        known: tuple[Offset, ...] = ((0, 0),)
        for phases in groups:
            steps.append(Step(s, phases, known))
            known = known + phases
    return tuple(steps)


def take_phases(t: torch.Tensor, stride: int, phases: tuple[Offset, ...]) -> torch.Tensor:
    """(B, C, h, w) -> (B * n, C, h/s, w/s): the phases of the stride-s grid, phase-minor batch."""
    b, c = t.shape[:2]
    stacked = torch.stack([t[..., i::stride, j::stride] for i, j in phases], dim=1)
    return stacked.reshape(b * len(phases), c, *stacked.shape[-2:])


class Lattice:
    """The decoded pieces of a latent, kept per (stride, offset) and interleaved on demand.

    Assembly is functional (stack + pixel shuffle, no in-place writes), so the training path
    can read a coarse grid for a context and still back-propagate through later steps.
    """

    def __init__(self):
        self.pieces: dict[tuple[int, Offset], torch.Tensor] = {}
        self._max_stride = 1

    def put(self, step: Step, folded: torch.Tensor) -> None:
        """Store a step's result, (B * n, C, gh, gw) in :func:`take_phases` order."""
        n = len(step.phases)
        unfolded = folded.reshape(-1, n, *folded.shape[1:])
        for p, offset in enumerate(step.phases):
            self.pieces[(step.stride, offset)] = unfolded[:, p]
        self._max_stride = max(self._max_stride, step.stride)

    def get(self, stride: int, offset: Offset = (0, 0)) -> torch.Tensor:
        """The values on ``y[..., i::stride, j::stride]``, composed from finer-stride pieces."""
        if (stride, offset) in self.pieces:
            return self.pieces[(stride, offset)]
        if stride >= self._max_stride:
            raise KeyError(f"Lattice: phase {offset} of stride {stride} is not decoded yet")
        i, j = offset
        quads = [self.get(2 * stride, (i + di * stride, j + dj * stride)) for di in (0, 1) for dj in (0, 1)]
        b, c, gh, gw = quads[0].shape
        if not torch.is_grad_enabled():  # coding: four strided copies into one new tensor, the same values
            out = quads[0].new_empty(b, c, 2 * gh, 2 * gw)
            for q, (di, dj) in zip(quads, ((0, 0), (0, 1), (1, 0), (1, 1))):
                out[..., di::2, dj::2] = q
            return out
        # pixel_shuffle puts channel c*4 + 2*di + dj at (2a + di, 2b + dj).
        return F.pixel_shuffle(torch.stack(quads, dim=2).reshape(b, 4 * c, gh, gw), 2)

    def full(self) -> torch.Tensor:
        return self.get(1)


class PhaseContext(nn.Module):
    """Context of one step: depthwise kxk over the known phases with one filter per (known
    channel, output phase) (a depth multiplier of n_out), then a pointwise conv per output
    phase (grouped), then ReLU.

    MACs per grid position: k^2 n_in M n_out + n_out n_in M width. The width is read from the
    pointwise conv's shape in ``forward``, so a pruner that removes the same channels from
    every phase group leaves a working layer.
    """

    def __init__(self, latent: int, n_in: int, n_out: int, width: int, kernel_size: int):
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        chs = n_in * latent
        self.conv_dw = init_conv(nn.Conv2d(chs, chs * n_out, kernel_size, padding=kernel_size // 2, groups=chs))
        self.conv_pw = init_conv(nn.Conv2d(chs * n_out, n_out * width, 1, groups=n_out), 2**0.5)
        self.act = nn.ReLU()  # not in place: see student.blocks.make_act

    @property
    def width(self) -> int:
        return self.conv_pw.out_channels // self.n_out

    def forward(self, known: torch.Tensor) -> torch.Tensor:
        """(B, n_in * M, gh, gw) -> (B * n_out, width, gh, gw)."""
        b, chs, gh, gw = known.shape
        x = self.conv_dw(known)
        # channel g * n_out + p (input channel g, phase p) -> phase-major for the grouped pointwise
        x = x.reshape(b, chs, self.n_out, gh, gw).transpose(1, 2).reshape(b, self.n_out * chs, gh, gw)
        x = self.act(self.conv_pw(x))
        return x.reshape(b * self.n_out, -1, gh, gw)


class LatticeContext(nn.Module):
    """The ``context`` part: one :class:`PhaseContext` per step that has known phases.

    ``forward(step, known)`` is called once per decoder step that has a context (hooks on this
    module count them); ``steps`` is the fixed number of decoder passes.
    """

    kind = "lattice"

    def __init__(self, schedule: tuple[Step, ...], latent: int, width: int, kernel_size: int = 3,
                 step_widths: Sequence[int | None] | None = None):
        super().__init__()
        if width < 1 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"{type(self).__name__}: width must be >= 1 and kernel_size odd, got width={width}, "
                             f"kernel_size={kernel_size}")
        self.schedule = tuple(schedule)
        self.latent, self.width = latent, width
        if step_widths is None:
            step_widths = [width if s.known else None for s in self.schedule]
        if len(step_widths) != len(self.schedule):
            raise ValueError(f"{type(self).__name__}: step_widths needs {len(self.schedule)} entries, got {step_widths}")
        self.nets = nn.ModuleList(
            PhaseContext(latent, len(s.known), len(s.phases), w, kernel_size) if s.known else nn.Identity()
            for s, w in zip(self.schedule, step_widths)
        )

    def step_widths(self) -> list[int | None]:
        """Each step's output width (None for steps without context), from the layers."""
        return [net.width if s.known else None for s, net in zip(self.schedule, self.nets)]

    @property
    def steps(self) -> int:
        """Decoder passes (entropy-parameter evaluations), fixed by the schedule."""
        return len(self.schedule)

    @property
    def max_stride(self) -> int:
        """The latent's height and width must be multiples of this."""
        return max(s.stride for s in self.schedule)

    def forward(self, step: int, known: torch.Tensor) -> torch.Tensor:
        if not self.schedule[step].known:
            raise ValueError(f"{type(self).__name__}: step {step} has no decoded context")
        return self.nets[step](known)


class CheckerboardContext(LatticeContext):
    """He et al. 2021: anchors from the hyperprior, non-anchors from the anchors; 2 passes."""

    kind = "checkerboard"

    @staticmethod
    def make_schedule(config: dict) -> tuple[Step, ...]:
        return checkerboard_schedule()

    def __init__(self, latent: int, width: int = 64, kernel_size: int = 3, step_widths=None):
        super().__init__(checkerboard_schedule(), latent, width, kernel_size, step_widths)


class ProgressiveContext(LatticeContext):
    """Zhang et al. 2022 (MSP): coarse scale first, ``1 + levels * stages`` passes."""

    kind = "msp"

    @staticmethod
    def make_schedule(config: dict) -> tuple[Step, ...]:
        return progressive_schedule(config.get("levels", 2), config.get("stages", 2))

    def __init__(self, latent: int, width: int = 64, kernel_size: int = 3, levels: int = 2, stages: int = 2,
                 step_widths=None):
        super().__init__(progressive_schedule(levels, stages), latent, width, kernel_size, step_widths)
        self.levels, self.stages = levels, stages


class EntropyParameters(nn.Module):
    """The ``entropy_parameters`` part: per step, 1x1 conv (hyper features [+ context]) -> ReLU ->
    1x1 conv -> (scales, means), evaluated only at the positions the step codes.

    MACs per coded element: (C_h + C_ctx) E + E 2M (C_ctx = 0 for steps without context), with
    C_ctx and E per step (``context_chs`` and ``widths``: one entry per step).
    """

    def __init__(self, schedule: tuple[Step, ...], latent: int, hyper_chs: int, context_chs: Sequence[int | None],
                 widths: Sequence[int]):
        super().__init__()
        if len(context_chs) != len(schedule) or len(widths) != len(schedule):
            raise ValueError(f"EntropyParameters: need one context width and one hidden width per step "
                             f"({len(schedule)}), got {list(context_chs)} and {list(widths)}")
        self.latent = latent
        self.nets = nn.ModuleList(
            nn.Sequential(init_conv(nn.Conv2d(hyper_chs + (c if s.known else 0), e, 1), 2**0.5),
                          nn.ReLU(), init_conv(nn.Conv2d(e, 2 * latent, 1)))
            for s, c, e in zip(schedule, context_chs, widths)
        )

    def forward(self, step: int, hyper: torch.Tensor, ctx: torch.Tensor | None = None):
        x = hyper if ctx is None else torch.cat((hyper, ctx), dim=1)
        scales, means = self.nets[step](x).chunk(2, dim=1)
        return scales, means


CONTEXT_KINDS: dict[str, type[LatticeContext]] = {"checkerboard": CheckerboardContext, "msp": ProgressiveContext}


def _kind(config: dict) -> type[LatticeContext]:
    kind = config.get("kind")
    if kind not in CONTEXT_KINDS:
        raise ValueError(f"student context config: 'kind' must be one of {', '.join(CONTEXT_KINDS)}, got {kind!r} "
                         f"(choices: student.zoo.CONTEXTS)")
    return CONTEXT_KINDS[kind]


def context_schedule(config: dict) -> tuple[Step, ...]:
    """The decoder steps a context config describes, without building its layers."""
    return _kind(config).make_schedule(config)


def build_context(config: dict, latent: int, step_widths: Sequence[int | None] | None = None) -> LatticeContext:
    """``{kind: checkerboard | msp, width, kernel_size, [levels, stages]}`` -> the context part;
    ``step_widths`` overrides ``width`` per step (student.widths)."""
    cfg = dict(config)
    if "step_widths" in cfg:
        raise ValueError("student context config: per-step widths go in the codec's layer_widths.context, "
                         "not in the context dict")
    cfg["step_widths"] = step_widths
    cls = _kind(cfg)
    kind = cfg.pop("kind")
    try:
        return cls(latent, **cfg)
    except TypeError as e:
        raise TypeError(f"student context config for kind {kind!r}: {e}") from None


StepFn = Callable[[int, Step, torch.Tensor, torch.Tensor], torch.Tensor]


def code_latent(context: LatticeContext, entropy_parameters: EntropyParameters, hyper: torch.Tensor,
                code_step: StepFn) -> torch.Tensor:
    """Run the schedule: for each step, context from the decoded phases, entropy parameters at
    the step's positions, then ``code_step(k, step, scales, means) -> y_hat`` of those positions
    (io.gaussian on the coding sides, quantization + likelihood on the training path).

    One loop for the encoder, the decoder and ``forward``, so their call sequences (order,
    shapes) cannot diverge. Returns the assembled y_hat, (B, M, h, w).
    """
    h, w = hyper.shape[-2:]
    if h % context.max_stride or w % context.max_stride:
        raise ValueError(f"{type(context).__name__}: the latent grid {h}x{w} must be a multiple of "
                         f"{context.max_stride}; pad the image to the codec's stride")
    decoded = Lattice()
    for k, step in enumerate(context.schedule):
        hyp = take_phases(hyper, step.stride, step.phases)
        ctx = None
        if step.known:
            known = torch.cat([decoded.get(step.stride, o) for o in step.known], dim=1)
            ctx = context(k, known)
        scales, means = entropy_parameters(k, hyp, ctx)
        decoded.put(step, code_step(k, step, scales, means))
    return decoded.full()
