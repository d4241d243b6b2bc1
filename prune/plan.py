"""From importance to a pruned student at a kMAC/px budget measured by the profiler.

* :func:`score_units` ranks, in every allowed group of :class:`prune.graph.PruningGraph`, its
  pruning units (sets of root channels that go together) by importance.
* :func:`make_plan` turns one number, the pruning ratio r in [0, 1], into the channels to cut:
  ``uniform`` scope (default) moves every group from its width toward its minimum by the same
  fraction r (to the nearest width the rules allow); ``global`` scope removes the fraction r of
  all units ranked across groups by their normalized importance (torch-pruning's
  ``global_pruning``). Either way each group keeps at least ``max(min_channels, round_to)``
  channels and, once cut, a multiple of ``round_to`` (torch-pruning's ``round_to``: channel
  counts that map well onto SIMD lanes); r = 1 is every group at its minimum, which is how the
  smallest reachable figure is measured.
* :func:`apply_plan` cuts a copy through torch-pruning, then :func:`rebuild` describes it by
  its config (``layer_widths`` read from the layer shapes), rebuilds it from that config with
  ``create_codec``, loads the weights strictly and checks that both give the same output:
  the config describes the pruned model exactly, so its checkpoint is a plain checkpoint.
* :func:`prune_to` bisects r against the profiler (``profile_codec(..., strict=True)``, the
  gate's counter, never torch-pruning's) for the smallest cut that meets a per-side budget.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch

from codec.base import Codec
from codec.registry import create_codec
from prune.graph import ChannelGroup, PruningGraph

__all__ = ["score_units", "make_plan", "apply_plan", "rebuild", "widths_config", "Measure", "prune_to",
           "PruneResult", "smallest_reachable", "SCOPES", "EquivalenceError"]

SCOPES = ("uniform", "global")


class EquivalenceError(RuntimeError):
    """A pruned model is not exactly the model its config rebuilds (a pruner bug)."""


@dataclass
class UnitRanking:
    """A group's units, least important first, and their scores."""

    group: ChannelGroup
    units: list[list[int]]
    scores: list[float]


def score_units(pg: PruningGraph, importance) -> dict[str, UnitRanking]:
    """Importance of every unit (mean over its channels) of every allowed group, keyed by root."""
    out = {}
    for group in pg.groups:
        g = pg.tp_group(group, list(range(group.size)))
        imp = importance(g)
        if imp is None:
            imp = torch.zeros(group.size)
        imp = imp.detach().float().cpu()
        scored = sorted(((float(imp[u].mean()), min(u), u) for u in group.units))
        out[group.root] = UnitRanking(group, [u for _, _, u in scored], [s for s, _, _ in scored])
    return out


def _valid_counts(ranking: UnitRanking, round_to: int, min_channels: int) -> list[int]:
    """k such that removing the k least important units leaves a width the rules allow."""
    floor = max(int(min_channels), int(round_to), 1)
    keep_total = ranking.group.size
    valid, removed = [0], 0
    for k, unit in enumerate(ranking.units, start=1):
        removed += len(unit)
        left = keep_total - removed
        if left < floor:
            break
        if round_to <= 1 or left % round_to == 0:
            valid.append(k)
    return valid


def make_plan(rankings: dict[str, UnitRanking], ratio: float, round_to: int = 8, min_channels: int = 1,
              scope: str = "uniform") -> dict[str, list[int]]:
    """Root channels to remove per group (module docstring), monotone in ``ratio``."""
    if scope not in SCOPES:
        raise ValueError(f"prune.scope={scope!r}: use one of {', '.join(SCOPES)}")
    ratio = min(max(float(ratio), 0.0), 1.0)
    valid = {root: _valid_counts(r, round_to, min_channels) for root, r in rankings.items()}
    wanted: dict[str, int] = {}
    if scope == "uniform":
        for root, r in rankings.items():
            counts = valid[root]
            size = r.group.size
            floor_left = size - sum(len(u) for u in r.units[:counts[-1]])
            target_left = size - ratio * (size - floor_left)
            # the valid count whose width is nearest the target (ties: the wider), monotone in ratio
            lefts = [size - sum(len(u) for u in r.units[:c]) for c in counts]
            wanted[root] = min(zip(counts, lefts), key=lambda cl: (abs(cl[1] - target_left), -cl[1]))[0]
    else:
        pool = sorted((s, root, i) for root, r in rankings.items() for i, s in enumerate(r.scores[:valid[root][-1]]))
        take = math.ceil(ratio * len(pool) - 1e-9)
        counts = {root: 0 for root in rankings}
        for _, root, i in pool[:take]:
            counts[root] = max(counts[root], i + 1)
        for root, c in counts.items():
            wanted[root] = max(v for v in valid[root] if v <= c)
    return {root: sorted(i for u in rankings[root].units[:k] for i in u) for root, k in wanted.items() if k}


def widths_config(model: Codec) -> dict:
    """The architecture config that describes ``model`` as its layers now are: per-layer
    widths, and the latent widths (``latent`` M and ``hyper`` C_z, plain config keys)."""
    return {**model.config, "latent": int(model.latent), "hyper": int(model.hyper),
            "layer_widths": model.layer_widths().as_config()}


def rebuild(model: Codec, check: bool = True) -> Codec:
    """``create_codec(name, **config with layer_widths)`` + strict weight load: the pruned model
    as a plain, config-described codec. With ``check``, both give the same output on an image."""
    config = widths_config(model)
    try:
        fresh = create_codec(model.registry_name, **config)
        fresh.load_state_dict(model.state_dict(), strict=True)
    except (RuntimeError, ValueError, TypeError) as e:
        raise EquivalenceError(f"prune: the pruned model is not described by its config: {e}") from None
    fresh.train(model.training)
    if check:
        was = model.training
        model.eval()
        fresh.eval()
        s = model.stride
        x = torch.rand(1, 3, s, s, generator=torch.Generator().manual_seed(0)).to(next(model.parameters()).device)
        fresh.to(x.device)
        with torch.no_grad(), model.at_rate(model.default_rate()), fresh.at_rate(fresh.default_rate()):
            a, b = model(x), fresh(x)
        if not torch.equal(a["x_hat"], b["x_hat"]):
            raise EquivalenceError("prune: the model rebuilt from its config gives another output than the pruned one")
        model.train(was)
        fresh.train(was)
    return fresh


def apply_plan(model: Codec, plan: dict[str, list[int]], check: bool = True, latent: bool = False) -> Codec:
    """A pruned copy of ``model`` (the original is untouched), rebuilt from its config."""
    pruned = copy.deepcopy(model)
    if plan:
        pg = PruningGraph(pruned, latent=latent)
        roots = {g.root for g in pg.groups}
        unknown = set(plan) - roots
        if unknown:
            raise ValueError(f"prune: no allowed group is rooted at {sorted(unknown)}")
        pg.prune(plan)
        if check:  # a forward pass on the pruned layers themselves
            with torch.no_grad(), pruned.at_rate(pruned.default_rate()):
                pruned.eval()(torch.rand(1, 3, pruned.stride, pruned.stride, device=next(pruned.parameters()).device))
    return rebuild(pruned, check=check)


#: ``measure(model) -> {"encoder": kMAC/px, "decoder": kMAC/px}`` (the profiler's figures)
Measure = Callable[[Codec], dict]


def meets(kmac: dict, budget: dict) -> bool:
    return all(kmac[side] <= b * (1 + 1e-12) for side, b in budget.items() if b is not None)


@dataclass
class PruneResult:
    model: Codec
    ratio: float
    plan: dict[str, list[int]]
    kmac: dict
    met: bool
    trials: int


def prune_to(model: Codec, rankings: dict[str, UnitRanking], budget: dict, measure: Measure, *, round_to: int = 8,
             min_channels: int = 1, scope: str = "uniform", iters: int = 12, latent: bool = False) -> PruneResult:
    """The smallest ratio whose pruned model meets ``budget`` ({side: kMAC/px or None}) by the
    profiler, found by bisection (the profile is monotone in the ratio: widths only shrink).
    When even ratio 1 misses it, the ratio-1 model is returned with ``met=False``."""
    cache: dict[tuple, tuple[Codec, dict]] = {}

    def at(ratio: float):
        plan = make_plan(rankings, ratio, round_to, min_channels, scope)
        key = tuple(sorted((k, tuple(v)) for k, v in plan.items()))
        if key not in cache:
            pruned = apply_plan(model, plan, latent=latent)
            cache[key] = (pruned, measure(pruned))
        return plan, *cache[key]

    plan, pruned, kmac = at(0.0)
    if meets(kmac, budget):
        return PruneResult(pruned, 0.0, plan, kmac, True, len(cache))
    hi_plan, hi_model, hi_kmac = at(1.0)
    if not meets(hi_kmac, budget):
        return PruneResult(hi_model, 1.0, hi_plan, hi_kmac, False, len(cache))
    lo, hi = 0.0, 1.0
    for _ in range(iters):
        mid = (lo + hi) / 2
        plan, pruned, kmac = at(mid)
        if meets(kmac, budget):
            hi, hi_plan, hi_model, hi_kmac = mid, plan, pruned, kmac
        else:
            lo = mid
    return PruneResult(hi_model, hi, hi_plan, hi_kmac, True, len(cache))


def smallest_reachable(model: Codec, rankings: dict[str, UnitRanking], measure: Measure, *, round_to: int = 8,
                       min_channels: int = 1, latent: bool = False) -> tuple[dict, Codec]:
    """The profile of ``model`` with every prunable width at its minimum (ratio 1)."""
    pruned = apply_plan(model, make_plan(rankings, 1.0, round_to, min_channels, "uniform"), latent=latent)
    return measure(pruned), pruned
