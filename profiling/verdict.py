"""The 35x gate (docs/DESIGN.md, accounting rule 7): teacher/student executed kMAC/px, per side.

A student passes when the ratio reaches the target on the encoder side AND on the decoder
side. Both ratios are always reported. Profiles whose counts are not trustworthy (an
unclassified op, work that escaped the trace) are refused rather than judged.
"""
from __future__ import annotations

import functools
import math

from profiling.counter import SIDES, ProfileError

__all__ = ["gate", "reference_profile", "DEFAULT_TARGET"]

#: docs/DESIGN.md: >= 35x fewer kMAC/px than the teacher on both sides.
DEFAULT_TARGET = 35.0


@functools.lru_cache(maxsize=None)
def reference_profile(name: str, resolution: tuple[int, int]) -> dict:
    """The strict profile of a registered architecture at its default config (the gate's
    reference, e.g. ``vmuc``), computed once per process: a sweep's jobs and a pruning run's
    budget and checks share it. Callers read it, never change it. Unknown names raise KeyError."""
    from codec.registry import create_codec
    from profiling.counter import profile_codec

    return profile_codec(create_codec(name).eval(), tuple(resolution), wall_runs=0, strict=True)


def _check(profile: dict, role: str) -> None:
    missing = [k for k in ("resolution", *SIDES) if k not in profile]
    if missing:
        raise ValueError(f"gate: the {role} profile lacks {missing}; pass the dict profiling.profile_codec returns")
    if profile.get("problems"):
        raise ProfileError(f"gate: the {role} profile of {profile.get('label', profile.get('codec'))} cannot be "
                           f"trusted: {'; '.join(profile['problems'])}")


def gate(student_profile: dict, teacher_profile: dict, target: float = DEFAULT_TARGET) -> dict:
    """-> ``{"student", "teacher", "target", "encoder_ratio", "decoder_ratio", "passed", ...}``.

    Ratios are teacher kMAC/px over student kMAC/px, executed MACs (rule 3), both profiles
    taken at the same resolution.
    """
    target = float(target)
    if not math.isfinite(target) or target <= 0:
        raise ValueError(f"gate: target must be a positive number (35 in docs/DESIGN.md), got {target}")
    _check(student_profile, "student")
    _check(teacher_profile, "teacher")
    if list(student_profile["resolution"]) != list(teacher_profile["resolution"]):
        raise ValueError(f"gate: student profiled at {student_profile['resolution']}, teacher at "
                         f"{teacher_profile['resolution']}; profile both at the same resolution")
    row = {
        "student": student_profile.get("label", student_profile.get("codec")),
        "teacher": teacher_profile.get("label", teacher_profile.get("codec")),
        "target": target,
        "resolution": list(student_profile["resolution"]),
    }
    for side in SIDES:
        s, t = student_profile[side]["kmac_per_px"], teacher_profile[side]["kmac_per_px"]
        if s <= 0:
            raise ProfileError(f"gate: the student {row['student']} counts {s} kMAC/px on the {side} side; a codec "
                               "without MACs means the counter saw none of its work")
        row[f"{side}_ratio"] = t / s
    for side in SIDES:
        row[f"{side}_passed"] = row[f"{side}_ratio"] >= target
    row["passed"] = row["encoder_passed"] and row["decoder_passed"]
    row["student_kmac_per_px"] = {side: student_profile[side]["kmac_per_px"] for side in SIDES}
    row["teacher_kmac_per_px"] = {side: teacher_profile[side]["kmac_per_px"] for side in SIDES}
    return row
