"""fvcore kMAC/px counter, per-part and per-side report, and the 35x gate (docs/DESIGN.md).

::

    from profiling import profile_codec, gate
    student = profile_codec(create_codec("student_x"), resolution=(768, 512))
    teacher = profile_codec(create_codec("vmuc"), resolution=(768, 512))
    gate(student, teacher, target=35)["passed"]

Commands: ``python -m profiling``, ``python -m profiling.gate``, ``python -m profiling.zoo``
(see :mod:`profiling.cli`). ``profiling/gate.py`` is only the command; the function is
``profiling.gate``.
"""
from profiling.counter import (
    DEFAULT_RESOLUTION,
    ModuleCount,
    ProfileError,
    codec_label,
    count_module,
    profile_codec,
    sample_image,
)
from profiling.ops import COUNTED_OPS, ELEMENTWISE_OPS, FREE_OPS, MAC_OPS, SHAPE_OPS
from profiling.verdict import DEFAULT_TARGET, gate

__all__ = [
    "profile_codec", "gate", "count_module", "codec_label", "sample_image", "ModuleCount", "ProfileError",
    "COUNTED_OPS", "FREE_OPS", "MAC_OPS", "ELEMENTWISE_OPS", "SHAPE_OPS", "DEFAULT_RESOLUTION", "DEFAULT_TARGET",
]
