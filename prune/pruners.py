"""Custom torch-pruning pruners for the layers torch-pruning cannot trace right.

torch-pruning (Fang et al., "DepGraph: Towards any structural pruning", CVPR 2023) builds its
dependency graph from autograd: every op it does not know is taken as element-wise, i.e. as
keeping channel ``i`` at position ``i``. That is wrong for the layers below, so each is given
to ``DependencyGraph.build_dependency(customized_pruners=...)`` as an opaque unit with its own
:class:`torch_pruning.pruner.BasePruningFunc`:

* **GDN** (``codec.layers.GDN``, Balle et al. 2016) and the **simplified GDN**
  (``student.blocks.SimplifiedGDN``, Johnston et al. 2019). Their gamma product is a
  functional 1x1 conv over unwrapped parameters; torch-pruning would cut gamma along its last
  non-singleton dimension only. Here ``beta[keep]`` and ``gamma[keep][:, keep]``
  (``gamma[keep]`` when diagonal); input and output are one channel space
  (``prune_in_channels = prune_out_channels``: torch-pruning's intra-layer dependency).
* **Sub-pixel up-sampling** (``SubPixelUp``: 1x1 conv -> PixelShuffle(r) -> channel shuffle
  -> depthwise -> act; Shi et al., CVPR 2016). Torch-pruning treats the pixel shuffle as
  element-wise and would couple conv channel ``i`` with output channel ``i``; output channel
  ``c`` really is conv channels ``c r^2 .. c r^2 + r^2 - 1``. The conv and its shuffle are
  pruned as one unit, in groups of r^2, as ``UpsamplePruner`` of MaGiiK02/sr_structured_pruning
  does (torch-pruning issue #420, "PixelShuffle").
* **Pixel-unshuffle down-sampling** (``PixelUnshuffleDown``: depthwise -> PixelUnshuffle(r) ->
  1x1 conv -> channel shuffle -> act): input channel ``c`` reaches the 1x1 conv as its input
  channels ``c r^2 .. c r^2 + r^2 - 1``, which go together.
* **Grouped resampling with a channel shuffle** (``groups > 1`` in the two units above): the
  shuffle interleaves groups, so output channel ``o = n g + j`` is conv channel ``j N/g + n``.
  Pruning must keep every group the same size and the interleaving consistent, so output
  channels go in whole blocks ``{n g .. n g + g - 1}`` (one per group) and input channels of
  the grouped conv in sets ``{c + j C/g}`` (the same local channel of every group). These
  blocks are declared by :meth:`atomic_sets`, which prune.graph turns into pruning units.
* **Phase contexts** (``student.context.PhaseContext``): a depthwise conv with a depth multiplier
  over the known phases, a reshape that moves phases to groups, a grouped 1x1 with one group
  per coded phase, and a reshape that folds phases into the batch. Its output channel ``c``
  is row ``p width + c`` of every phase group ``p``: those ``n_out`` rows go together. Its
  input channels are latent channels (``k M + j`` for known phase ``k``), kept unless the
  latent itself is pruned.

Every pruner also exposes :meth:`channel_weights` (the weights each channel owns, for the
importance criteria of prune.importance) and :meth:`atomic_sets` (index sets that must be
pruned together). Anything else torch-pruning traces itself: plain and depthwise convs,
residual adds, concatenations (the entropy-parameter heads read ``cat(hyper, context)``).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch_pruning as tp

from codec.layers import GDN
from student.blocks import PixelUnshuffleDown, ShuffleUnit, SimplifiedGDN, SubPixelUp
from student.context import PhaseContext

__all__ = ["GDNPruner", "SubPixelUpPruner", "PixelUnshuffleDownPruner", "PhaseContextPruner", "ShuffleUnitPruner",
           "CUSTOM_PRUNERS", "keep_indices", "prune_gdn", "KeptOut"]


class KeptOut(RuntimeError):
    """A pruner was asked to cut channels that this package keeps out of pruning."""


def keep_indices(n: int, idxs: Sequence[int]) -> list[int]:
    """The indices of ``range(n)`` not in ``idxs``, sorted."""
    drop = set(int(i) for i in idxs)
    bad = [i for i in drop if not 0 <= i < n]
    if bad:
        raise IndexError(f"pruning indices {sorted(bad)} fall outside [0, {n})")
    return [i for i in range(n) if i not in drop]


def _param(t: torch.Tensor) -> nn.Parameter:
    return nn.Parameter(t.detach().clone().contiguous())


def _rows(t: torch.Tensor, dim: int, idx: list[int]) -> torch.Tensor:
    return torch.index_select(t, dim, torch.as_tensor(idx, dtype=torch.long, device=t.device))


def _cut(conv: nn.Conv2d, dim: int, keep: list[int]) -> None:
    """Keep ``keep`` along ``dim`` of a conv's weight (0: output rows, also the bias; 1: input)."""
    conv.weight = _param(_rows(conv.weight.data, dim, keep))
    if dim == 0:
        conv.out_channels = len(keep)
        if conv.bias is not None:
            conv.bias = _param(_rows(conv.bias.data, 0, keep))


def _cut_depthwise(conv: nn.Conv2d, keep: list[int], multiplier: int = 1) -> None:
    """A depthwise conv (groups == in, out == in x ``multiplier``) keeping input channels
    ``keep`` and the ``multiplier`` output rows of each."""
    _cut(conv, 0, [g * multiplier + p for g in keep for p in range(multiplier)])
    conv.in_channels = conv.groups = len(keep)


def _grad_rows(t: nn.Parameter, dim: int, idx: list[int]) -> torch.Tensor | None:
    """Rows of a parameter's gradient, flattened like the weight rows they go with."""
    return None if t.grad is None else _rows(t.grad, dim, idx).flatten(1)


def _gdn_like(layer) -> bool:
    return isinstance(layer, (GDN, SimplifiedGDN))


def prune_gdn(layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
    """beta[keep], gamma[keep][:, keep] (gamma[keep] for a diagonal simplified GDN)."""
    keep = keep_indices(layer.beta.shape[0], idxs)
    layer.beta = _param(layer.beta.data[keep])
    gamma = layer.gamma.data[keep]
    if not getattr(layer, "diagonal", False):
        gamma = gamma[:, keep]
    layer.gamma = _param(gamma)
    return layer


def _gdn_weights(layer, idxs: list[int]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    return []  # GDN's parameters say nothing about a channel's usefulness; the convs around it do


class GDNPruner(tp.pruner.BasePruningFunc):
    """GDN and simplified GDN: one channel space, ``beta[keep]``, ``gamma[keep][:, keep]``."""

    TARGET_MODULES = (GDN, SimplifiedGDN)

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        return prune_gdn(layer, idxs)

    prune_in_channels = prune_out_channels  # input and output are the same channels

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.beta.shape[0]

    get_in_channels = get_out_channels

    def channel_weights(self, layer, idxs, out: bool):
        return _gdn_weights(layer, list(idxs))

    def atomic_sets(self, layer, out: bool) -> list[list[int]]:
        return []


def _shuffled_rows(n_total: int, groups: int, out_idxs: Sequence[int]) -> list[int]:
    """Output channels after ``channel_shuffle(groups)`` -> the pre-shuffle (conv) channels.
    Post-shuffle o = n g + j comes from pre-shuffle j (N/g) + n."""
    per = n_total // groups
    return [(o % groups) * per + o // groups for o in out_idxs]


def _shuffle_blocks(n_total: int, groups: int) -> list[list[int]]:
    """Output channels that must go together behind a channel shuffle: {n g, .., n g + g - 1}."""
    if groups == 1:
        return []
    return [list(range(n * groups, (n + 1) * groups)) for n in range(n_total // groups)]


def _group_strided(n_total: int, groups: int) -> list[list[int]]:
    """Input channels of a grouped conv that must go together: the same local channel of every
    group, {c, c + N/g, ..} (every group keeps the same width); all of them if g does not divide N."""
    if groups == 1:
        return []
    if n_total % groups:
        return [list(range(n_total))]
    per = n_total // groups
    return [[c + j * per for j in range(groups)] for c in range(per)]


def _check_blocks(idxs: Sequence[int], blocks: list[list[int]], what: str) -> None:
    s = set(int(i) for i in idxs)
    for b in blocks:
        hit = s.intersection(b)
        if hit and len(hit) != len(b):
            raise ValueError(f"{what}: channels {sorted(b)} must be pruned together, got only {sorted(hit)}")


def _act_prune(act: nn.Module, idxs: Sequence[int]) -> None:
    if _gdn_like(act):
        prune_gdn(act, idxs)
    elif any(True for _ in act.parameters()):
        raise TypeError(f"cannot prune activation {type(act).__name__} with parameters")


class SubPixelUpPruner(tp.pruner.BasePruningFunc):
    """``SubPixelUp`` as one unit: input = the 1x1 conv's input (grouped: same local channel of
    every group), output channel c = conv rows c r^2 .. c r^2 + r^2 - 1 (behind the channel
    shuffle when grouped), the depthwise conv's channel c and the activation's channel c."""

    TARGET_MODULES = (SubPixelUp,)

    @staticmethod
    def _r2(layer: SubPixelUp) -> int:
        return layer.shuffle.upscale_factor ** 2

    def get_out_channels(self, layer: SubPixelUp) -> int:
        return layer.conv_pw.out_channels // self._r2(layer)

    def get_in_channels(self, layer: SubPixelUp) -> int:
        return layer.conv_pw.in_channels

    def _conv_rows(self, layer: SubPixelUp, idxs: Sequence[int]) -> list[int]:
        r2 = self._r2(layer)
        pre = _shuffled_rows(self.get_out_channels(layer), layer.groups, idxs)
        return [q * r2 + k for q in pre for k in range(r2)]

    def prune_out_channels(self, layer: SubPixelUp, idxs: Sequence[int]) -> SubPixelUp:
        n = self.get_out_channels(layer)
        _check_blocks(idxs, _shuffle_blocks(n, layer.groups), "SubPixelUp output (channel shuffle)")
        keep = keep_indices(n, idxs)
        _cut(layer.conv_pw, 0, keep_indices(layer.conv_pw.out_channels, self._conv_rows(layer, idxs)))
        if isinstance(layer.conv_dw, nn.Conv2d):
            _cut_depthwise(layer.conv_dw, keep)
        _act_prune(layer.act, idxs)
        return layer

    def prune_in_channels(self, layer: SubPixelUp, idxs: Sequence[int]) -> SubPixelUp:
        n = self.get_in_channels(layer)
        _check_blocks(idxs, _group_strided(n, layer.groups), "SubPixelUp input (grouped conv)")
        keep = keep_indices(n, idxs)
        per = n // layer.groups
        local = [c for c in keep if c < per]  # the same local channels in every group
        _cut(layer.conv_pw, 1, local)
        layer.conv_pw.in_channels = len(keep)
        return layer

    def channel_weights(self, layer: SubPixelUp, idxs: Sequence[int], out: bool):
        w, idxs = layer.conv_pw.weight, list(idxs)
        if out:  # the r^2 conv rows of each channel, and its depthwise filter
            rows = self._conv_rows(layer, idxs)
            pairs = [(_rows(w.data, 0, rows).reshape(len(idxs), -1),
                      None if w.grad is None else _rows(w.grad, 0, rows).reshape(len(idxs), -1))]
            if isinstance(layer.conv_dw, nn.Conv2d):
                d = layer.conv_dw.weight
                pairs.append((_rows(d.data, 0, idxs).flatten(1), _grad_rows(d, 0, idxs)))
            return pairs
        per = layer.conv_pw.in_channels // layer.groups  # input c: column c % per of its group's rows
        out_per = w.shape[0] // layer.groups

        def cols(t):
            return torch.stack([t[(c // per) * out_per:(c // per + 1) * out_per, c % per].flatten() for c in idxs])

        return [(cols(w.data), None if w.grad is None else cols(w.grad))] if idxs else []

    def atomic_sets(self, layer: SubPixelUp, out: bool) -> list[list[int]]:
        if out:
            return _shuffle_blocks(self.get_out_channels(layer), layer.groups)
        return _group_strided(self.get_in_channels(layer), layer.groups)


class PixelUnshuffleDownPruner(tp.pruner.BasePruningFunc):
    """``PixelUnshuffleDown`` as one unit: input channel c = the depthwise conv's channel c and
    the 1x1 conv's input channels c r^2 .. c r^2 + r^2 - 1; output channel o = the 1x1 conv's
    row (behind the channel shuffle when grouped) and the activation's channel o."""

    TARGET_MODULES = (PixelUnshuffleDown,)

    @staticmethod
    def _r2(layer: PixelUnshuffleDown) -> int:
        return layer.unshuffle.downscale_factor ** 2

    def get_out_channels(self, layer: PixelUnshuffleDown) -> int:
        return layer.conv_pw.out_channels

    def get_in_channels(self, layer: PixelUnshuffleDown) -> int:
        return layer.conv_pw.in_channels // self._r2(layer)

    def prune_out_channels(self, layer: PixelUnshuffleDown, idxs: Sequence[int]) -> PixelUnshuffleDown:
        n = self.get_out_channels(layer)
        _check_blocks(idxs, _shuffle_blocks(n, layer.groups), "PixelUnshuffleDown output (channel shuffle)")
        rows = _shuffled_rows(n, layer.groups, idxs)
        _cut(layer.conv_pw, 0, keep_indices(n, rows))
        _act_prune(layer.act, idxs)
        return layer

    def _in_blocks(self, layer: PixelUnshuffleDown) -> list[list[int]]:
        """Input channels that go together: those reaching the same local position of every
        group of the grouped 1x1 conv (each input channel is r^2 of its inputs)."""
        return _group_strided(self.get_in_channels(layer), layer.groups)

    def prune_in_channels(self, layer: PixelUnshuffleDown, idxs: Sequence[int]) -> PixelUnshuffleDown:
        n = self.get_in_channels(layer)
        _check_blocks(idxs, self._in_blocks(layer), "PixelUnshuffleDown input (grouped conv)")
        keep = keep_indices(n, idxs)
        r2 = self._r2(layer)
        if isinstance(layer.conv_dw, nn.Conv2d):
            _cut_depthwise(layer.conv_dw, keep)
        per = n // layer.groups
        local = [c * r2 + k for c in keep if c < per for k in range(r2)]
        _cut(layer.conv_pw, 1, local)
        layer.conv_pw.in_channels = len(keep) * r2
        return layer

    def channel_weights(self, layer: PixelUnshuffleDown, idxs: Sequence[int], out: bool):
        w = layer.conv_pw.weight
        if out:
            rows = _shuffled_rows(self.get_out_channels(layer), layer.groups, idxs)
            return [(_rows(w.data, 0, rows).flatten(1), _grad_rows(w, 0, rows))]
        r2 = self._r2(layer)
        per = self.get_in_channels(layer) // layer.groups
        out_per = w.shape[0] // layer.groups

        def cols(t):
            return torch.stack([t[(c // per) * out_per:(c // per + 1) * out_per, (c % per) * r2:(c % per + 1) * r2]
                                .flatten() for c in idxs])

        pairs = [(cols(w.data), None if w.grad is None else cols(w.grad))] if idxs else []
        if isinstance(layer.conv_dw, nn.Conv2d):
            d = layer.conv_dw.weight
            pairs.append((_rows(d.data, 0, list(idxs)).flatten(1), _grad_rows(d, 0, list(idxs))))
        return pairs

    def atomic_sets(self, layer: PixelUnshuffleDown, out: bool) -> list[list[int]]:
        if out:
            return _shuffle_blocks(self.get_out_channels(layer), layer.groups)
        return self._in_blocks(layer)


class PhaseContextPruner(tp.pruner.BasePruningFunc):
    """``PhaseContext``: output channel c = row ``p width + c`` of the grouped 1x1 for every
    coded phase p (the same channel removed from each of the n_out phase groups); input channel
    ``k M + j`` (latent channel j of known phase k) = the depthwise conv's rows
    ``(k M + j) n_out + p`` and column ``k M + j`` of every phase group of the 1x1."""

    TARGET_MODULES = (PhaseContext,)

    def get_out_channels(self, layer: PhaseContext) -> int:
        return layer.conv_pw.out_channels // layer.n_out

    def get_in_channels(self, layer: PhaseContext) -> int:
        return layer.conv_dw.in_channels

    def _rows(self, layer: PhaseContext, idxs: Sequence[int]) -> list[int]:
        w = self.get_out_channels(layer)
        return [p * w + c for p in range(layer.n_out) for c in idxs]

    def prune_out_channels(self, layer: PhaseContext, idxs: Sequence[int]) -> PhaseContext:
        _cut(layer.conv_pw, 0, keep_indices(layer.conv_pw.out_channels, self._rows(layer, idxs)))
        return layer

    def prune_in_channels(self, layer: PhaseContext, idxs: Sequence[int]) -> PhaseContext:
        chs = self.get_in_channels(layer)
        keep = keep_indices(chs, idxs)
        _cut_depthwise(layer.conv_dw, keep, layer.n_out)
        _cut(layer.conv_pw, 1, keep)
        layer.conv_pw.in_channels = len(keep) * layer.n_out
        return layer

    def channel_weights(self, layer: PhaseContext, idxs: Sequence[int], out: bool):
        w = layer.conv_pw.weight
        if out:
            width = self.get_out_channels(layer)

            def rows(t):
                return torch.stack([t[[p * width + c for p in range(layer.n_out)]].flatten() for c in idxs])

            return [(rows(w.data), None if w.grad is None else rows(w.grad))] if idxs else []

        def cols(t):
            return t[:, list(idxs)].transpose(0, 1).flatten(1)

        return [(cols(w.data), None if w.grad is None else cols(w.grad))]

    def atomic_sets(self, layer: PhaseContext, out: bool) -> list[list[int]]:
        return []


class ShuffleUnitPruner(tp.pruner.BasePruningFunc):
    """A ShuffleNetV2 unit as an opaque node whose ends are *not* prunable.

    Why (Ma et al., ECCV 2018 for the unit): a split unit passes input channel i to output
    channel 2i (``channel_shuffle(cat(x1, branch(x2)), 2)``) and puts its branch's channel i at
    2i + 1. A valid cut removes pass-through and branch channels in pairs and keeps both halves
    of the input equal, a constraint on the *count* of channels removed from two different
    channel groups (the pass-through channel's and the branch input's), which torch-pruning's
    groups cannot express; its tracing of the chunk -> cat -> reshape/transpose/reshape even
    fails on a chain of units (index mappings out of range, division by zero; torch-pruning
    issues #14, #45). So the unit is one node here and any group that reaches it is refused
    (prune.graph); the branch's inner width is pruned on its own dependency graph.
    """

    TARGET_MODULES = (ShuffleUnit,)

    def prune_out_channels(self, layer, idxs):
        raise KeptOut("ShuffleNetV2 unit ends are kept out of pruning (channel shuffle); see ShuffleUnitPruner")

    prune_in_channels = prune_out_channels

    def get_out_channels(self, layer: ShuffleUnit) -> int:
        if layer.split:
            return 2 * layer.right[0].in_channels
        return layer.left[1].out_channels + layer.right[-2].out_channels

    def get_in_channels(self, layer: ShuffleUnit) -> int:
        return 2 * layer.right[0].in_channels if layer.split else layer.left[0].in_channels

    def atomic_sets(self, layer, out: bool) -> list[list[int]]:
        return []


#: module type -> pruner, for ``build_dependency(customized_pruners=...)``.
CUSTOM_PRUNERS: dict[type, tp.pruner.BasePruningFunc] = {
    GDN: GDNPruner(),
    SimplifiedGDN: GDNPruner(),
    SubPixelUp: SubPixelUpPruner(),
    PixelUnshuffleDown: PixelUnshuffleDownPruner(),
    PhaseContext: PhaseContextPruner(),
    ShuffleUnit: ShuffleUnitPruner(),
}
