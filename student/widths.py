"""Per-layer widths of a student: every channel count the builder uses, per part and side.

A student config gives widths in shorthand (``widths`` for both main transforms,
``hyper_width`` for both hyper transforms, ``entropy_width`` for the hyper features and every
entropy-parameter head, ``context.width`` for every context step). ``layer_widths`` overrides
any of them per layer, so a pruned model, whose layers no longer share widths, is described by
its config and rebuilt from it (checkpoints never guess widths from weights)::

    layer_widths:
      g_a: [w0, w1, w2, w3]          # analysis levels H/2, H/4, H/8, H/16
      g_s: [v0, v1, v2, v3]          # synthesis levels, same order (H/2 first)
      g_a_blocks: [[m, ...] x 4]     # hidden width of each stage block, per level
      g_s_blocks: [[m, ...] x 4]     #   (null entries: depthwise blocks have none)
      h_a: a                         # h_a width at H/32
      h_a_blocks: [m]                # its one block's hidden width
      h_s: s                         # h_s width at H/32
      h_s_blocks: [m]
      hyper_features: C_h            # h_s output at H/16, read by the entropy parameters
      entropy_parameters: [E_1, ..., E_S]   # hidden width of each step's head
      context: [c_1, ..., c_S]       # each step's context width (null for steps without context)

Keys left out keep their shorthand value, so a config without ``layer_widths`` builds exactly
the model it always built (same shapes, same kMAC/px, same config hash).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from student.blocks import BLOCKS

__all__ = ["LayerWidths", "LAYER_WIDTH_KEYS", "LEVELS"]

#: resolution levels of the main transforms: H/2, H/4, H/8, H/16.
LEVELS = 4
#: the keys ``layer_widths`` may hold.
LAYER_WIDTH_KEYS = ("g_a", "g_s", "g_a_blocks", "g_s_blocks", "h_a", "h_a_blocks", "h_s", "h_s_blocks",
                    "hyper_features", "entropy_parameters", "context")

Mids = tuple[tuple["int | None", ...], ...]


def _count(where: str, value) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"student {where}: a width must be a whole number >= 1, got {value!r}")
    return value


def _counts(where: str, values, n: int) -> tuple[int, ...]:
    if not isinstance(values, (list, tuple)) or len(values) != n:
        raise ValueError(f"student {where}: need {n} widths, got {values!r}")
    return tuple(_count(where, v) for v in values)


@dataclass(frozen=True)
class LayerWidths:
    g_a: tuple[int, ...]
    g_s: tuple[int, ...]
    g_a_blocks: Mids
    g_s_blocks: Mids
    h_a: int
    h_a_blocks: tuple["int | None", ...]
    h_s: int
    h_s_blocks: tuple["int | None", ...]
    hyper_features: int
    entropy_parameters: tuple[int, ...]
    context: tuple["int | None", ...]

    @classmethod
    def resolve(cls, spec, has_context: Sequence[bool], widths, hyper_width: int, entropy_width: int,
                context_width: int, layer_widths: dict | None = None) -> "LayerWidths":
        """Shorthand widths, then the ``layer_widths`` overrides, validated.

        ``spec`` is the student's TransformSpec (block type, depths, exp_ratio) and
        ``has_context`` says, per context step, whether the step reads decoded phases.
        """
        over = dict(layer_widths or {})
        unknown = set(over) - set(LAYER_WIDTH_KEYS)
        if unknown:
            raise ValueError(f"student layer_widths: unknown keys {sorted(unknown)}; known: {', '.join(LAYER_WIDTH_KEYS)}")
        base = _counts("widths", list(widths) if isinstance(widths, (list, tuple)) else widths, LEVELS)
        g_a = _counts("layer_widths.g_a", over.get("g_a", base), LEVELS)
        g_s = _counts("layer_widths.g_s", over.get("g_s", base), LEVELS)
        block = BLOCKS[spec.block]

        def default_mids(level_widths, depths):
            return tuple(tuple(block.default_mid(w, w, 1, spec.exp_ratio) for _ in range(d))
                         for w, d in zip(level_widths, depths))

        def mids(key, default, depths, flat=False):
            value = over.get(key)
            if value is None:
                return default
            if flat:  # h_a_blocks / h_s_blocks: one level, written as a flat list
                value = [value]
            if not isinstance(value, (list, tuple)) or len(value) != len(depths):
                raise ValueError(f"student layer_widths.{key}: need {len(depths)} lists (one per level), got {value!r}")
            out = []
            for level, (row, d) in enumerate(zip(value, depths)):
                if not isinstance(row, (list, tuple)) or len(row) != d:
                    raise ValueError(f"student layer_widths.{key}[{level}]: the level has {d} blocks, got {row!r}")
                out.append(tuple(None if m is None else _count(f"layer_widths.{key}[{level}]", m) for m in row))
            return tuple(out)

        h_a = _count("layer_widths.h_a", over.get("h_a", hyper_width))
        h_s = _count("layer_widths.h_s", over.get("h_s", hyper_width))
        steps = len(has_context)
        ep = over.get("entropy_parameters", [entropy_width] * steps)
        ctx = over.get("context", [context_width if c else None for c in has_context])
        if not isinstance(ctx, (list, tuple)) or len(ctx) != steps:
            raise ValueError(f"student layer_widths.context: need {steps} entries (one per step), got {ctx!r}")
        for k, (c, needed) in enumerate(zip(ctx, has_context)):
            if needed:
                _count(f"layer_widths.context[{k}]", c)
            elif c is not None:
                raise ValueError(f"student layer_widths.context[{k}]: step {k} reads no decoded phases, so it has no "
                                 f"context; use null")
        return cls(
            g_a=g_a, g_s=g_s,
            g_a_blocks=mids("g_a_blocks", default_mids(g_a, spec.depths), spec.depths),
            g_s_blocks=mids("g_s_blocks", default_mids(g_s, spec.decoder_depths), spec.decoder_depths),
            h_a=h_a, h_a_blocks=mids("h_a_blocks", default_mids([h_a], [1]), [1], flat=True)[0],
            h_s=h_s, h_s_blocks=mids("h_s_blocks", default_mids([h_s], [1]), [1], flat=True)[0],
            hyper_features=_count("layer_widths.hyper_features", over.get("hyper_features", entropy_width)),
            entropy_parameters=_counts("layer_widths.entropy_parameters", ep, steps),
            context=tuple(ctx),
        )

    def as_config(self) -> dict:
        """Every width as a ``layer_widths`` dict (JSON-like), e.g. to record a pruned model."""
        def plain(v):
            return [plain(x) for x in v] if isinstance(v, (list, tuple)) else v

        return {k: plain(v) for k, v in asdict(self).items()}
