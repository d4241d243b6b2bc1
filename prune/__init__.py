"""Structured channel pruning of students to a kMAC/px budget, on torch-pruning.

* :mod:`prune.pruners` -- custom torch-pruning pruners for the layers its tracing gets wrong
  (GDN, sub-pixel / pixel-unshuffle resampling with channel shuffle, phase contexts,
  ShuffleNetV2 units kept out);
* :mod:`prune.graph` -- the dependency graph of a student and its allowed channel groups;
* :mod:`prune.importance` -- l1 / l2 / taylor / random importance over those groups;
* :mod:`prune.plan` -- a pruning ratio -> a cut copy, rebuilt from its config and checked,
  bisected against the profiler to meet a budget;
* :mod:`prune.run` -- ``python -m prune``: the iterative schedule with fine-tuning between steps.
"""
from prune.graph import ChannelGroup, NotPrunable, PruningGraph
from prune.importance import ChannelImportance, make_importance
from prune.plan import apply_plan, make_plan, prune_to, rebuild, score_units, smallest_reachable, widths_config

__all__ = ["PruningGraph", "ChannelGroup", "NotPrunable", "ChannelImportance", "make_importance", "score_units",
           "make_plan", "apply_plan", "rebuild", "widths_config", "prune_to", "smallest_reachable"]
