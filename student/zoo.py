"""Registered students: the generic ``student`` entry and the zoo presets ``student_*``.

This module is the one source of truth for the student architectures: the transform choices
(:data:`TRANSFORMS`), the context choices (:data:`CONTEXTS`) and the presets (:data:`PRESETS`).
Importing it (codec.registry does, lazily) registers an entry function per preset and stores
the same dicts as Hydra configs (``codec=student_dw_ckbd``, ``student/transform=shuffle``,
``student/context=msp``, and the generic ``codec=student`` that reads those two groups), so
no YAML copy of them exists to drift. ``python -m codec.train codec=student_dw_ckbd --cfg job``
prints a preset as Hydra sees it.

Every ``student_*`` preset is gated by the profiler's zoo at 35x below the teacher on both
sides (``python -m profiling.zoo teacher=vmuc``, table in ``results/profile/zoo.md``);
``student`` is the generic entry a Hydra sweep drives
(``codec=student student/transform=A,B student/context=C,D``). Presets take the same
keywords as ``student``, so a pruned preset records its new widths (``layer_widths``,
student.widths) under its own name.
"""
from __future__ import annotations

import copy
import inspect

from codec.base import Codec
from codec.registry import register_codec, register_config
from student.codec import StudentCodec

__all__ = ["TRANSFORMS", "CONTEXTS", "PRESETS", "SHAPE", "TINY_WIDTHS"]

#: Width keywords that shrink any student (every preset, any transform x context) to a toy for
#: tests and smoke runs: ``create_codec(name, **TINY_WIDTHS)``.
TINY_WIDTHS = dict(widths=[4, 8, 12, 16], latent=16, hyper=8, hyper_width=12, entropy_width=16)

#: transform choices, keys of student.transforms.TransformSpec (Hydra group student/transform).
TRANSFORMS = {
    # Depthwise-separable stages; full simplified GDN after each resampling from H/4 down
    # (C^2 per position costs the same ~64 MAC/px at every level since widths double), the
    # per-channel one at H/2 where a full one would be the most expensive layer of the level.
    "depthwise": dict(block="depthwise", depths=[0, 1, 2, 2], synthesis_depths=[0, 2, 2, 2], kernel_size=3,
                      exp_ratio=1, act="relu", resample_act=["gdn_diag", "gdn", "gdn", "gdn"], resample_kernel=3,
                      resample_groups=1),
    # ShuffleNetV2 units (half the channels pass through each unit), grouped resampling convs,
    # per-channel GDN: about half the MACs of "depthwise" at equal width, spent on width and depth.
    "shuffle": dict(block="shuffle", depths=[0, 2, 2, 3], synthesis_depths=[0, 2, 3, 3], kernel_size=3,
                    exp_ratio=1, act="relu", resample_act="gdn_diag", resample_kernel=3, resample_groups=2),
    # MobileNetV2 inverted residuals (expand x2, depthwise, project), for sweeps.
    "inverted_residual": dict(block="inverted_residual", depths=[0, 1, 1, 2], synthesis_depths=None, kernel_size=3,
                              exp_ratio=2, act="relu", resample_act="gdn_diag", resample_kernel=3,
                              resample_groups=1),
}

#: context choices, keywords of student.context.build_context (Hydra group student/context).
CONTEXTS = {
    # He et al. 2021: anchors from the hyperprior, non-anchors from the decoded anchors; 2 passes.
    "checkerboard": dict(kind="checkerboard", width=64, kernel_size=3),
    # Zhang et al. 2022: coarsest grid first, then each level's 2x2 phases in `stages` steps
    # (1: three phases at once, 2: diagonal then the other two, 3: one at a time);
    # 1 + levels * stages passes whatever the image size.
    "msp": dict(kind="msp", width=64, kernel_size=3, levels=2, stages=2),
}

#: the shape keywords of ``student`` (student.codec documents each; ``layer_widths`` overrides
#: them per layer and is not recorded when absent).
SHAPE = dict(widths=[16, 32, 64, 176], latent=160, hyper=64, hyper_width=96, entropy_width=128)

#: preset name -> (one-line description, keyword defaults over ``student``'s).
PRESETS: dict[str, tuple[str, dict]] = {
    "student_dw_ckbd": ("Depthwise-separable transforms with simplified GDN, checkerboard context.",
                        dict(transform=TRANSFORMS["depthwise"], context=CONTEXTS["checkerboard"])),
    "student_dw_msp": ("Depthwise-separable transforms with simplified GDN, multi-scale progressive context.",
                       dict(transform=TRANSFORMS["depthwise"], context=CONTEXTS["msp"])),
    "student_shuffle_ckbd": ("ShuffleNetV2 transforms with grouped resampling, checkerboard context.",
                             dict(transform=TRANSFORMS["shuffle"], context=CONTEXTS["checkerboard"],
                                  widths=[24, 48, 96, 224])),
    "student_shuffle_msp": ("ShuffleNetV2 transforms with grouped resampling, multi-scale progressive context.",
                            dict(transform=TRANSFORMS["shuffle"], context=CONTEXTS["msp"], widths=[24, 48, 96, 224])),
    "student_tiny": ("Tiny widths for tests and smoke runs; MSP, so a decode runs 5 context passes.",
                     dict(transform=dict(TRANSFORMS["depthwise"], depths=[0, 0, 1, 1], synthesis_depths=None,
                                         resample_act="gdn_diag"),
                          context=dict(CONTEXTS["msp"], width=8), **TINY_WIDTHS)),
}


def _entry(name: str, doc: str, defaults: dict):
    """An entry function whose signature carries the preset's defaults (codec.registry reads
    them to fill and record the full config)."""

    def entry(**config) -> Codec:
        return StudentCodec(**config)

    params = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, default=v) for k, v in defaults.items()]
    params.append(inspect.Parameter("layer_widths", inspect.Parameter.KEYWORD_ONLY, default=None))
    entry.__signature__ = inspect.Signature(params, return_annotation=Codec)
    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = doc
    return entry


def _register() -> None:
    generic = dict(transform=TRANSFORMS["depthwise"], context=CONTEXTS["checkerboard"], **SHAPE)
    register_codec("student")(_entry("student", "Any transform x context x widths (student.codec).", generic))
    # Hydra: codec=student takes its transform and context from the two groups (a sweep over
    # them is a sweep over architectures); the primary configs list both groups in defaults.
    register_config("codec", "student", {"name": "student", "transform": "${student.transform}",
                                         "context": "${student.context}", **copy.deepcopy(SHAPE), "rates": None})
    for group, choices in (("student/transform", TRANSFORMS), ("student/context", CONTEXTS)):
        for choice, node in choices.items():
            register_config(group, choice, copy.deepcopy(node))
    for name, (doc, over) in PRESETS.items():
        defaults = copy.deepcopy({**generic, **over})
        register_codec(name)(_entry(name, doc, defaults))
        # rates: variable rate (codec.gain), handled by the registry for every codec; null: fixed rate
        register_config("codec", name, {"name": name, **defaults, "rates": None})


_register()
