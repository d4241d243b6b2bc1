"""Registered students: the generic ``student`` entry and the zoo presets ``student_*``.

Importing this module registers them (codec.registry loads it lazily). Every ``student_*``
name is a preset the profiler's zoo gates at 35x below the teacher on both sides, the tiny one
included (it passes by a wide margin); ``student`` is the generic entry a Hydra sweep drives
(``codec=student student/transform=A,B student/context=C,D``).

Presets take the same keywords as ``student`` with tuned defaults, so a pruned preset records
its new widths under its own name. ``conf/codec/<name>.yaml`` mirrors each entry's defaults and
``conf/student/{transform,context}/*.yaml`` the choice dicts below;
tests/test_student_config.py keeps them equal.

Measured with ``profiling.profile_codec`` at 768x512 (executed kMAC/px; effective is equal, as
no context is computed where it is not needed); the gate needs teacher/student >= 35 on both
sides, i.e. <= 1.991 encoder / <= 1.953 decoder against vmuc (69.69 / 68.34):

=====================  =======  =======  ======  =================================================
name                   encoder  decoder  params  transform x context
=====================  =======  =======  ======  =================================================
student_dw_ckbd        1.815    1.801    759k    depthwise-separable, GDN  x checkerboard (2 passes)
student_dw_msp         1.855    1.841    1029k   depthwise-separable, GDN  x MSP (5 passes)
student_shuffle_ckbd   1.813    1.801    729k    ShuffleNetV2, grouped     x checkerboard (2 passes)
student_shuffle_msp    1.853    1.840    998k    ShuffleNetV2, grouped     x MSP (5 passes)
student_tiny           0.069    0.053    17k     depthwise, tiny widths    x MSP (5 passes)
=====================  =======  =======  ======  =================================================

Each preset keeps ~5 % headroom under the gate, so a retuned teacher down to ~65 kMAC/px still
passes them; tests/test_student.py recounts every student against the teacher's figures.
"""
from __future__ import annotations

from codec.base import Codec
from codec.registry import register_codec
from student.codec import StudentCodec

__all__ = ["TRANSFORMS", "CONTEXTS", "TINY_WIDTHS"]

#: Width keywords that shrink any student (every preset, any transform x context) to a toy for
#: tests and smoke runs: ``create_codec(name, **TINY_WIDTHS)``.
TINY_WIDTHS = dict(widths=[4, 8, 12, 16], latent=16, hyper=8, hyper_width=12, entropy_width=16)

#: transform choices (conf/student/transform/<name>.yaml holds the same dict).
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
    # MobileNetV2 inverted residuals, for sweeps.
    "inverted_residual": dict(block="inverted_residual", depths=[0, 1, 1, 2], synthesis_depths=None, kernel_size=3,
                              exp_ratio=2, act="relu", resample_act="gdn_diag", resample_kernel=3,
                              resample_groups=1),
}

#: context choices (conf/student/context/<name>.yaml holds the same dict).
CONTEXTS = {
    "checkerboard": dict(kind="checkerboard", width=64, kernel_size=3),
    "msp": dict(kind="msp", width=64, kernel_size=3, levels=2, stages=2),
}


@register_codec("student")
def student(transform: dict = TRANSFORMS["depthwise"], context: dict = CONTEXTS["checkerboard"],
            widths: list = (16, 32, 64, 176), latent: int = 160, hyper: int = 64, hyper_width: int = 96,
            entropy_width: int = 128) -> Codec:
    """Any transform x context x widths (student.codec documents every keyword)."""
    return StudentCodec(transform, context, widths, latent, hyper, hyper_width, entropy_width)


@register_codec("student_dw_ckbd")
def student_dw_ckbd(transform: dict = TRANSFORMS["depthwise"], context: dict = CONTEXTS["checkerboard"],
                    widths: list = (16, 32, 64, 176), latent: int = 160, hyper: int = 64, hyper_width: int = 96,
                    entropy_width: int = 128) -> Codec:
    """Depthwise-separable transforms with simplified GDN, checkerboard context."""
    return StudentCodec(transform, context, widths, latent, hyper, hyper_width, entropy_width)


@register_codec("student_dw_msp")
def student_dw_msp(transform: dict = TRANSFORMS["depthwise"], context: dict = CONTEXTS["msp"],
                   widths: list = (16, 32, 64, 176), latent: int = 160, hyper: int = 64, hyper_width: int = 96,
                   entropy_width: int = 128) -> Codec:
    """Depthwise-separable transforms with simplified GDN, multi-scale progressive context."""
    return StudentCodec(transform, context, widths, latent, hyper, hyper_width, entropy_width)


@register_codec("student_shuffle_ckbd")
def student_shuffle_ckbd(transform: dict = TRANSFORMS["shuffle"], context: dict = CONTEXTS["checkerboard"],
                         widths: list = (24, 48, 96, 224), latent: int = 160, hyper: int = 64, hyper_width: int = 96,
                         entropy_width: int = 128) -> Codec:
    """ShuffleNetV2 transforms with grouped resampling, checkerboard context."""
    return StudentCodec(transform, context, widths, latent, hyper, hyper_width, entropy_width)


@register_codec("student_shuffle_msp")
def student_shuffle_msp(transform: dict = TRANSFORMS["shuffle"], context: dict = CONTEXTS["msp"],
                        widths: list = (24, 48, 96, 224), latent: int = 160, hyper: int = 64, hyper_width: int = 96,
                        entropy_width: int = 128) -> Codec:
    """ShuffleNetV2 transforms with grouped resampling, multi-scale progressive context."""
    return StudentCodec(transform, context, widths, latent, hyper, hyper_width, entropy_width)


@register_codec("student_tiny")
def student_tiny(transform: dict = dict(TRANSFORMS["depthwise"], depths=[0, 0, 1, 1], synthesis_depths=None,
                                        resample_act="gdn_diag"),
                 context: dict = dict(CONTEXTS["msp"], width=8), widths: list = (4, 8, 12, 16), latent: int = 16,
                 hyper: int = 8, hyper_width: int = 12, entropy_width: int = 16) -> Codec:
    """Tiny widths for tests and smoke runs; MSP, so a decode runs 5 context passes."""
    return StudentCodec(transform, context, widths, latent, hyper, hyper_width, entropy_width)
