"""The pruning groups of a student, found by torch-pruning's dependency graph.

``PruningGraph(model)`` builds a ``torch_pruning.DependencyGraph`` (Fang et al., "DepGraph:
towards any structural pruning", CVPR 2023) over the real layers of a
:class:`student.codec.StudentCodec`, with the custom pruners of :mod:`prune.pruners`, and lists
the channel groups that may be pruned (:class:`ChannelGroup`): a root layer's output channels
and every layer torch-pruning found coupled to them (residual adds, depthwise convs, GDNs,
concatenations, the entropy-parameter heads that read hyper features and contexts). No
dependency is written by hand; what is decided here is what torch-pruning traces and which of
its groups are *allowed*, and why:

* **What is traced** (:func:`trace_view`). torch-pruning follows autograd back from the outputs
  of a forward pass. The codec's own ``forward`` reaches the contexts through the ``Lattice``
  (decoded phases re-interleaved by a pixel shuffle, which torch-pruning takes as element-wise)
  and through rounding, and torch-pruning's channel inference fails there (a concatenation of
  unknown size, then out-of-range index mappings). ``trace_view`` calls the same parts on the
  same tensors as ``student.context.code_latent`` does, per step: the hyper features at the
  step's positions, the context of the known phases, the entropy-parameter head. It takes the
  known phases straight from ``y`` (slices and a channel concat, which torch-pruning maps
  exactly) and couples each head's means and scales to the ``y`` elements they predict with an
  element-wise op, so latent channel j is one channel everywhere, as in the codec.
* **Latent widths are kept** by default. ``y`` (M) and ``z`` (C_z) are read per channel by the
  entropy models and the bitstream; the layers that produce them (``g_a``'s last 1x1, ``h_a``'s
  last down-sampling, each head's last 1x1, which predicts 2M) are passed to
  ``get_all_groups(ignored_layers=...)``, so no group that cuts them is offered. (Not to
  ``build_dependency``: there an ignored layer is not traced and becomes an element-wise op
  that couples its input to its output.) The packed YCbCr output and the stem's depthwise conv
  over the packed image are fixed the same way. With ``latent=True`` the y and z groups are
  allowed: g_a's last 1x1, h_a's input, every context input (channel k M + j of known phase k),
  both halves (means, scales) of every head's output and g_s's input for y; h_a's output and
  h_s's input for z, plus the factorized prior's per-channel parameters, which are not layers
  torch-pruning prunes (an explicit rule, :func:`prune_prior`, applied with z's group).
* **ShuffleNetV2 units are opaque and their ends kept out** (prune.pruners.ShuffleUnitPruner
  says why: a cardinality constraint between groups, and torch-pruning's tracing fails on the
  unit). While tracing, each unit is one op (:func:`_opaque_shuffle_units`); a group that reaches
  a unit is refused. The unit's inner width (pointwise -> depthwise -> pointwise of its branch,
  the ``*_blocks`` entries of ``layer_widths``) is pruned on a dependency graph of the branch
  alone, whose input and output stay fixed.
* **Grouped convolutions outside the custom units** (a depthwise conv with a depth multiplier)
  are refused: torch-pruning's ``ConvPruner`` keeps "the first 1/g of the kept input indices",
  right only when every group loses the same local channels.
* **Units.** A custom pruner may require index sets to go together (pixel-shuffle groups are
  inside its unit; channel-shuffle blocks and grouped-conv strides are declared by its
  ``atomic_sets``); they are mapped to the group's root indices and merged (union-find) into
  the group's pruning units. Sets that straddle two groups freeze their channels.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch_pruning as tp

from codec.entropy import FactorizedPrior
from prune.pruners import CUSTOM_PRUNERS, keep_indices
from student.blocks import ShuffleUnit
from student.codec import StudentCodec

__all__ = ["ChannelGroup", "PruningGraph", "trace_view", "fixed_layers", "NotPrunable"]


class NotPrunable(ValueError):
    """The model is not something this pruner can prune (not a student, an unsupported unit)."""


def trace_view(model: StudentCodec, x: torch.Tensor) -> list[torch.Tensor]:
    """What torch-pruning traces: every part, called as ``code_latent`` calls it (module
    docstring), on a batch of one and on the first phase a step codes: every phase of a step
    has the same channels, and torch-pruning's channel inference adds up any concatenation
    (also one along the batch) and guesses a flatten from the ``(B, n, C) -> (B n, C)`` fold of
    ``take_phases``, so the phases are not stacked here."""
    y = model.g_a(x)
    z = model.h_a(y)
    hyper = model.h_s(z)
    outs = [z]
    for k, step in enumerate(model.context.schedule):
        (i, j), s = step.phases[0], step.stride
        ctx = None
        if step.known:
            known = torch.cat([y[..., a::s, b::s] for a, b in step.known], dim=1)
            ctx = model.context(k, known)[:1]  # (n_out B, width, ..): the first phase
        scales, means = model.entropy_parameters(k, hyper[..., i::s, j::s], ctx)
        y_k = y[..., i::s, j::s]
        outs += [y_k - means, y_k * scales]
    x_hat = y
    for module in list(model.g_s)[:-1]:  # the last child unpacks the 6 fixed channels to RGB
        x_hat = module(x_hat)
    outs.append(x_hat)
    return outs


def fixed_layers(model: StudentCodec, latent: bool = False) -> list[tuple[nn.Module, str]]:
    """Layers whose output channels are fixed, and why: the packed YCbCr output, the stem's
    depthwise conv (its channels are the packed image's) and, unless ``latent``, the latent y
    and z and the entropy parameters (2M: means and scales of y)."""
    fixed = [(model.g_s[-2], "the 6 packed YCbCr output channels"),
             (model.g_a[1][0].conv_dw, "the stem's depthwise conv over the 6 packed image channels")]
    if not latent:
        fixed += [(model.g_a[-1], "the latent y (prune.latent=false)"),
                  (model.h_a[-1], "the hyper latent z (prune.latent=false)"),
                  *((net[-1], "means and scales of y (prune.latent=false)") for net in model.entropy_parameters.nets)]
    return fixed


def prune_prior(prior: FactorizedPrior, idxs) -> None:
    """The factorized prior's per-channel models of the removed z channels go with them (its
    parameters are not modules torch-pruning knows: an explicit rule, applied with z's group)."""
    keep = keep_indices(prior.channels, idxs)
    for plist in (prior.matrices, prior.biases, prior.factors):
        for i, p in enumerate(plist):
            plist[i] = nn.Parameter(p.data[keep].clone())
    prior.channels = len(keep)


def prune_gain(gain: nn.Module, idxs) -> None:
    """A variable-rate model's gain and inverse gain of the removed y channels go with them (one
    column per latent channel in each rate's vector; not a layer torch-pruning knows: an explicit
    rule, applied with y's group)."""
    keep = keep_indices(gain.log_gain.shape[1], idxs)
    gain.log_gain = nn.Parameter(gain.log_gain.data[:, keep].clone())
    gain.log_inverse_gain = nn.Parameter(gain.log_inverse_gain.data[:, keep].clone())


def sync_latent(model: StudentCodec) -> None:
    """Attributes that hold the latent widths follow the layers after latent pruning."""
    model.latent = model.g_a[-1].out_channels
    model.hyper = model.entropy_bottleneck.channels
    model.entropy_parameters.latent = model.latent
    model.context.latent = model.latent


@dataclass
class ChannelGroup:
    """A prunable channel group: ``root`` (module name) output channels ``0..size-1`` and the
    layers coupled to them; ``units`` partition the root indices into sets pruned together."""

    index: int
    root: str
    size: int
    members: list[tuple[str, str]]
    units: list[list[int]]
    frozen: list[int] = field(default_factory=list)
    graph: int = 0  # which of PruningGraph.graphs holds it

    @property
    def label(self) -> str:
        return self.root

    def describe(self) -> str:
        return f"{self.root} ({self.size} ch): " + ", ".join(f"{m}.{io}" for m, io in self.members)


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def _opaque_shuffle_units(module: nn.Module) -> list[ShuffleUnit]:
    """While torch-pruning traces, each ShuffleNetV2 unit is one op from its input to its output
    (an instance-level ``forward`` that returns ``x * 1``): torch-pruning walks autograd *into*
    customized layers too, and fails on the unit's chunk -> cat -> channel shuffle (module
    docstring). The unit is one node of the graph, which ShuffleUnitPruner keeps unprunable."""
    units = [m for m in module.modules() if isinstance(m, ShuffleUnit)]
    for unit in units:
        if not unit.split:
            raise NotPrunable("a ShuffleNetV2 unit that changes width or stride is not supported "
                              "(students build only split units)")
        unit.forward = lambda x: x * 1.0
    return units


def _build(module: nn.Module, example, forward_fn=None, unwrapped=(), ignored_params=()) -> tp.DependencyGraph:
    was_training = module.training
    units = _opaque_shuffle_units(module)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.enable_grad():
                return tp.DependencyGraph().build_dependency(
                    module, example_inputs=example, forward_fn=forward_fn, customized_pruners=dict(CUSTOM_PRUNERS),
                    unwrapped_parameters=[(p, 0) for p in unwrapped], ignored_params=list(ignored_params),
                    verbose=False)
    finally:
        for unit in units:
            del unit.forward
        module.train(was_training)


class PruningGraph:
    """torch-pruning's dependency graphs of ``model`` (one for the codec, one per ShuffleNetV2
    branch) and the allowed groups (module docstring); :meth:`prune` cuts in place."""

    def __init__(self, model: StudentCodec, latent: bool = False, example_size: int | None = None):
        if not isinstance(model, StudentCodec):
            name = getattr(model, "registry_name", "?")
            raise NotPrunable(f"{type(model).__name__} ({name}) is not a student; pruning records per-layer widths "
                              f"(layer_widths), which only students have")
        self.model, self.latent = model, bool(latent)
        self.names = {m: n for n, m in model.named_modules()}
        s = example_size or model.stride
        device = next(model.parameters()).device
        # The factorized prior's and the gain units' parameters are per latent channel, never cut
        # by torch-pruning: latent pruning cuts them itself (prune_prior, prune_gain).
        prior = list(model.entropy_bottleneck.parameters()) + (list(model.gain.parameters()) if model.rates else [])
        self.fixed = fixed_layers(model, self.latent)
        #: (graph, [(layer whose output channels it must not cut, why)])
        with model.at_rate(model.default_rate()):
            self.graphs: list[tuple[tp.DependencyGraph, list[tuple[nn.Module, str]]]] = [
                (_build(model, torch.rand(1, 3, s, s, device=device), lambda m, inp: trace_view(m, inp), prior, prior),
                 self.fixed)]
        for unit in model.modules():
            if isinstance(unit, ShuffleUnit):  # its branch's inner width, on the branch alone
                branch = unit.right
                x = torch.rand(1, branch[0].in_channels, 8, 8, device=device)
                self.graphs.append((_build(branch, x), [(branch[-2], "a ShuffleNetV2 branch output (kept out)")]))
        self.DG = self.graphs[0][0]
        self.groups, self.refused = self._collect()

    # -- groups -----------------------------------------------------------------------------
    def _root_types(self) -> tuple:
        return (nn.Conv2d, *CUSTOM_PRUNERS)

    def _collect(self) -> tuple[list[ChannelGroup], list[tuple[str, str]]]:
        groups, refused = [], []
        for gi, (dg, fixed) in enumerate(self.graphs):
            for g in dg.get_all_groups(root_module_types=self._root_types()):
                root = g[0].dep.target.module
                name = self.names.get(root, str(root))
                reason = self._refusal(dg, g, fixed)
                if reason:
                    refused.append((name, reason))
                    continue
                size = len(g[0].idxs)
                units, frozen = self._units(dg, g, size)
                members = []
                for dep, _ in g:
                    m = dep.target.module
                    if isinstance(m, nn.Module) and m in self.names:
                        io = "out" if dg.is_out_channel_pruning_fn(dep.handler) else "in"
                        members.append((self.names[m], io))
                groups.append(ChannelGroup(len(groups), name, size, members, units, frozen, graph=gi))
        return groups, refused

    def _refusal(self, dg, g, fixed) -> str | None:
        for item in g:
            node = item.dep.target
            m = node.module
            why = next((w for f, w in fixed if f is m), None)
            if why and dg.is_out_channel_pruning_fn(item.dep.handler):
                return f"would cut {self.names.get(m, '?')}: {why}"
            if isinstance(m, ShuffleUnit):
                return f"reaches ShuffleNetV2 unit {self.names.get(m, '?')} (channel shuffle: kept out, prune.pruners)"
            if isinstance(m, nn.Conv2d) and m.groups > 1 and not (m.groups == m.in_channels == m.out_channels):
                return f"grouped conv {self.names.get(m, '?')} (groups={m.groups}) outside a custom unit"
            if isinstance(m, nn.Conv2d) and m.groups == m.in_channels == m.out_channels and not node.inputs \
                    and m.groups > 1:
                return f"depthwise conv {self.names.get(m, '?')} over the model input"
        return None

    def _units(self, dg, g, size: int) -> tuple[list[list[int]], list[int]]:
        uf = _UnionFind(size)
        frozen: set[int] = set()
        for item in g:
            dep, idxs, roots = item.dep, item.idxs, item.root_idxs
            pruner = dg.get_pruner_of_module(dep.target.module)
            sets = getattr(pruner, "atomic_sets", None)
            if sets is None:
                continue
            out = dg.is_out_channel_pruning_fn(dep.handler)
            to_root = {}
            for i, r in zip(idxs, roots):
                to_root.setdefault(int(i), int(r))
            for s in sets(dep.target.module, out):
                inside = [to_root[i] for i in s if i in to_root]
                if not inside:
                    continue
                if len(inside) < len(s):  # the set spans another group too: these cannot go alone
                    frozen.update(inside)
                for r in inside[1:]:
                    uf.union(inside[0], r)
        by_root: dict[int, list[int]] = {}
        for i in range(size):
            if i not in frozen:
                by_root.setdefault(uf.find(i), []).append(i)
        return list(by_root.values()), sorted(frozen)

    def group_with(self, member: str, io: str = "out") -> ChannelGroup:
        """The allowed group in which layer ``member`` has its ``io`` ("in" / "out") channels
        (roots are torch-pruning's choice; members are what a reader looks for)."""
        for g in self.groups:
            if (member, io) in g.members:
                return g
        kept = [why for root, why in self.refused if root == member]
        raise KeyError(f"no allowed group holds {member}.{io}" + (f" ({kept[0]})" if kept else ""))

    def describe(self) -> str:
        lines = [f"prunable ({len(self.groups)}):"] + ["  " + g.describe() for g in self.groups]
        lines += [f"kept ({len(self.refused)}):"] + [f"  {n}: {why}" for n, why in self.refused]
        return "\n".join(lines)

    # -- pruning ----------------------------------------------------------------------------
    def module(self, name: str) -> nn.Module:
        return self.model.get_submodule(name)

    def tp_group(self, group: ChannelGroup, idxs: list[int]):
        """torch-pruning's group for removing root channels ``idxs`` of ``group`` now (index
        mappings are refreshed, so earlier pruning of other groups is accounted for)."""
        dg = self.graphs[group.graph][0]
        root = self.module(group.root)
        pruner = dg.get_pruner_of_module(root)
        return dg.get_pruning_group(root, pruner.prune_out_channels, list(idxs))

    def prune(self, plan: dict[str, list[int]]) -> None:
        """Remove root channels ``plan[group.root]`` of each group, in place."""
        for group in self.groups:
            idxs = sorted(plan.get(group.root, []))
            if not idxs:
                continue
            if len(idxs) >= group.size:
                raise ValueError(f"prune: cannot remove every channel of {group.root}")
            g = self.tp_group(group, idxs)
            if not self.graphs[group.graph][0].check_pruning_group(g):
                raise ValueError(f"prune: removing {len(idxs)} channels of {group.root} would empty a layer")
            g.prune()
            if self.model.h_a[-1] is self.module(group.root):  # z: its prior's channels too
                prune_prior(self.model.entropy_bottleneck, idxs)
            if self.model.rates and self.model.g_a[-1] is self.module(group.root):  # y: its gains too
                prune_gain(self.model.gain, idxs)
        sync_latent(self.model)
