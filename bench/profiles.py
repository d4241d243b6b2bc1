"""kMAC/px of the benchmarked codecs, read from the profiler's JSON files (for the Pareto figure).

Three shapes are read, whatever their file names:

- ``profile.json`` of ``python -m profiling codec=NAME``: ``{"codec", "label", "config",
  "resolution": [W, H], "encoder": {"kmac_per_px", ...}, "decoder": {"kmac_per_px", ...}}``
  (``student_profile.json`` / ``teacher_profile.json`` of the gate have it too);
- gate rows (``gate.json``, and each row of the zoo): ``{"student", "teacher", "target",
  "encoder_ratio", "decoder_ratio", "passed", ...}`` with the kMAC/px as
  ``{encoder,decoder}_kmac_per_px`` numbers or ``{student,teacher}_kmac_per_px`` dicts;
- the zoo's ``zoo.json``: a list of such rows, or ``{"command", "teacher": PROFILE, "rows": [...]}``.

Any other JSON under the profile folder is ignored. A bench curve is matched to a profile by
architecture (registry name + config) when the profile records it, else by label.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ProfileEntry", "load_profiles", "match_profile"]

_DEFAULT_RESOLUTION = [768, 512]


@dataclass(frozen=True)
class ProfileEntry:
    label: str
    decoder_kmac_per_px: float
    encoder_kmac_per_px: float | None
    source: str
    codec: str | None = None
    config_key: str | None = None  # canonical JSON of the config, when known
    resolution: tuple[int, int] | None = None
    command: str | None = None


def _config_key(config: Any) -> str | None:
    return None if config is None else json.dumps(config, sort_keys=True)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 else None


def _res(v: Any) -> tuple[int, int] | None:
    return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) and len(v) == 2 else None


def _from_profile(d: dict, source: str, command: str | None) -> ProfileEntry | None:
    dec = _number((d.get("decoder") or {}).get("kmac_per_px")) if isinstance(d.get("decoder"), dict) else None
    if dec is None:
        return None
    enc = _number((d.get("encoder") or {}).get("kmac_per_px")) if isinstance(d.get("encoder"), dict) else None
    label = d.get("label") or d.get("codec")
    if not label:
        return None
    return ProfileEntry(str(label), dec, enc, source, d.get("codec"), _config_key(d.get("config")),
                        _res(d.get("resolution")), command)


def _from_row(row: dict, source: str, command: str | None) -> list[ProfileEntry]:
    """A gate/zoo row: the student, and the teacher when its kMAC/px are in the row."""
    out = []
    student = row.get("student_kmac_per_px") if isinstance(row.get("student_kmac_per_px"), dict) else {}
    dec = _number(row.get("decoder_kmac_per_px")) or _number(student.get("decoder"))
    enc = _number(row.get("encoder_kmac_per_px")) or _number(student.get("encoder"))
    res = _res(row.get("resolution"))
    if dec is not None and row.get("student"):
        out.append(ProfileEntry(str(row["student"]), dec, enc, source, row.get("codec"),
                                _config_key(row.get("config")), res, command))
    teacher = row.get("teacher_kmac_per_px")
    if isinstance(teacher, dict) and _number(teacher.get("decoder")) and row.get("teacher"):
        out.append(ProfileEntry(str(row["teacher"]), _number(teacher["decoder"]), _number(teacher.get("encoder")),
                                source, None, None, res, command))
    return out


def _entries(data: Any, source: str) -> list[ProfileEntry]:
    if isinstance(data, list):
        return [e for row in data if isinstance(row, dict) for e in _from_row(row, source, None)]
    if not isinstance(data, dict):
        return []
    command = data.get("command") if isinstance(data.get("command"), str) else None
    if isinstance(data.get("rows"), list):  # the zoo's results file
        out = [e for row in data["rows"] if isinstance(row, dict) for e in _from_row(row, source, command)]
        if isinstance(data.get("teacher"), dict):
            t = _from_profile(data["teacher"], source, command)
            out += [t] if t else []
        return out
    profile = _from_profile(data, source, command)
    if profile is not None:
        return [profile]
    if "student" in data and "decoder_ratio" in data:  # a gate.json
        return _from_row(data, source, command)
    return []


def load_profiles(paths: Iterable[str | os.PathLike] = (), profile_dir: str | os.PathLike | None = None
                  ) -> tuple[list[ProfileEntry], list[str]]:
    """Profile entries from explicit files and from every ``*.json`` under ``profile_dir``.

    Returns (entries, notes): an explicit file that is missing or not a profile is a note, a
    missing ``profile_dir`` is silently empty (the Pareto figure is then skipped).
    """
    entries, notes = [], []
    explicit = [Path(p) for p in paths]
    files: list[Path] = []
    for p in explicit:
        if not p.is_file():
            notes.append(f"profile file {p} does not exist")
            continue
        files.append(p)
    if profile_dir is not None and Path(profile_dir).is_dir():
        files += sorted(Path(profile_dir).rglob("*.json"))
    for p in dict.fromkeys(files):
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            notes.append(f"{p}: not readable JSON ({e})")
            continue
        found = _entries(data, str(p))
        if not found and p in explicit:
            notes.append(f"{p}: no kMAC/px in it (expected a profile.json, gate.json or zoo.json)")
        entries += found
    return entries, notes


def match_profile(result: dict, entries: Iterable[ProfileEntry]) -> ProfileEntry | None:
    """The profile of a bench curve: same registry name and config, else the same label.

    Among several, one at 768x512 (docs/DESIGN.md's resolution) wins, then the first found.
    """
    entries = list(entries)
    key = _config_key(result.get("config"))
    by_arch = [e for e in entries if e.codec == result.get("codec") and e.config_key is not None and e.config_key == key]
    labels = {result.get("name"), result.get("profile_label")} - {None}
    found = by_arch or [e for e in entries if e.label in labels]
    if not found:
        return None
    found.sort(key=lambda e: list(e.resolution or _DEFAULT_RESOLUTION) != _DEFAULT_RESOLUTION)
    return found[0]
