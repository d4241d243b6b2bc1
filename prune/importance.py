"""Channel importance over torch-pruning groups, custom units included.

torch-pruning's criteria (``tp.importance.GroupMagnitudeImportance``, ``GroupTaylorImportance``)
score the convs and linears of a group and skip every other layer; a group made only of
custom units (a sub-pixel up-sampling feeding the next one) would get no score at all. This
criterion is torch-pruning's, extended to the units of :mod:`prune.pruners`, whose
``channel_weights`` say which weights each channel owns (the r^2 rows a pixel-shuffle channel
takes in its 1x1 conv, the n_out rows of a context channel):

* ``l1`` / ``l2``: group magnitude, sum |w|^p over the weights a channel owns in every member
  (Li et al., "Pruning filters for efficient ConvNets", ICLR 2017; group form: Fang et al.,
  DepGraph, CVPR 2023);
* ``taylor``: |w dL/dw| summed the same way, first-order Taylor estimate of the loss change
  (Molchanov et al., "Importance estimation for neural network pruning", CVPR 2019); needs
  gradients (prune.plan.accumulate_gradients runs the fine-tuning objective on a few batches);
* ``random``: torch-pruning's ``RandomImportance`` (the sanity baseline).

Per member the scores are reduced by torch-pruning's ``mean`` over the root indices and
normalized by their mean (its defaults), so groups can be ranked against each other.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch_pruning as tp

__all__ = ["ChannelImportance", "IMPORTANCE_KINDS", "make_importance"]

IMPORTANCE_KINDS = ("l1", "l2", "taylor", "random")


def _conv_weights(layer: nn.Conv2d, idxs: list[int], out: bool):
    w = layer.weight
    if out or (layer.groups == layer.in_channels == layer.out_channels):  # depthwise: one channel space
        rows = torch.as_tensor(idxs, dtype=torch.long, device=w.device)
        return [(w.data[rows].flatten(1), None if w.grad is None else w.grad[rows].flatten(1))]
    if layer.groups != 1:
        raise ValueError(f"importance: grouped conv {layer} outside a custom unit")
    cols = torch.as_tensor(idxs, dtype=torch.long, device=w.device)
    return [(w.data.transpose(0, 1)[cols].flatten(1),
             None if w.grad is None else w.grad.transpose(0, 1)[cols].flatten(1))]


class ChannelImportance(tp.importance.GroupMagnitudeImportance):
    """``l1``, ``l2`` or ``taylor`` importance of every root channel of a torch-pruning group."""

    def __init__(self, kind: str = "l1"):
        if kind not in ("l1", "l2", "taylor"):
            raise ValueError(f"ChannelImportance: kind must be l1, l2 or taylor, got {kind!r}")
        super().__init__(p=2 if kind == "l2" else 1, group_reduction="mean", normalizer="mean")
        self.kind = kind

    def _local(self, w: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        if self.kind == "taylor":
            if g is None:
                raise ValueError("taylor importance needs gradients: run the objective backward first")
            return (w * g).abs().sum(1)
        return w.abs().pow(self.p).sum(1)

    @torch.no_grad()
    def __call__(self, group) -> torch.Tensor | None:
        dg = group._DG
        group_imp, group_idxs = [], []
        for item in group:
            dep, idxs, roots = item.dep, list(item.idxs), item.root_idxs
            layer = dep.target.module
            if not idxs or not isinstance(layer, nn.Module):
                continue
            out = dg.is_out_channel_pruning_fn(dep.handler)
            pruner = dg.get_pruner_of_module(layer)
            if hasattr(pruner, "channel_weights"):
                pairs = pruner.channel_weights(layer, idxs, out)
            elif isinstance(layer, nn.Conv2d):
                pairs = _conv_weights(layer, idxs, out)
            else:
                continue
            for w, g in pairs:
                group_imp.append(self._local(w.float(), None if g is None else g.float()))
                group_idxs.append(roots)
        if not group_imp:
            return None
        # torch-pruning's "mean" reduction, sized by the root (its own sizes the result by the
        # first scored member, which need not cover every root channel)
        total = torch.zeros(len(group[0].idxs), dtype=torch.float32)
        for imp, roots in zip(group_imp, group_idxs):
            total.scatter_add_(0, torch.as_tensor(roots, dtype=torch.long), imp.cpu())
        total /= len(group_imp)
        mean = total.mean()
        return total / mean if mean > 0 else total


def make_importance(kind: str):
    """``prune.importance`` -> a torch-pruning importance criterion."""
    if kind not in IMPORTANCE_KINDS:
        raise ValueError(f"prune.importance={kind!r}: use one of {', '.join(IMPORTANCE_KINDS)}")
    if kind == "random":
        return tp.importance.RandomImportance()
    return ChannelImportance(kind)
