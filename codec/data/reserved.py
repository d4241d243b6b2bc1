"""The reserved evaluation pictures: never trained on, never tuned on.

docs/DESIGN.md (Data) keeps a few of the wallpaper photographs for independent
evaluation. ``prepare`` withholds the whole *picture* (every resolution and variant
of it) from both the training pool and the eval hold-out used for tuning, and the
built-in set asserts it holds none of them; both ask :func:`is_reserved`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["RESERVED_NAMES", "RESERVED_SUBSTRINGS", "is_reserved"]

# docs/DESIGN.md, Data: reserved for independent evaluation, used for neither training
# nor tuning. Exact file names, and names that appear as folder names (KDE
# wallpaper packages keep the picture name in the folder, the file is "2560x1600.jpg").
RESERVED_NAMES = frozenset(
    {
        "Picture_1A_by_freespace.jpg",
        "Kleiber_by_Lukas_Baubkus.jpg",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "Bridge_by_Sander_Klootwijk.jpg",
        "Storm.jpg",
        "flower.png",
    }
)
RESERVED_SUBSTRINGS = ("FallenLeaf", "ColorfulCups")


def is_reserved(name: str | os.PathLike) -> bool:
    """True if a file name or relative path belongs to the reserved evaluation pictures."""
    text = Path(name).as_posix()
    return Path(text).name in RESERVED_NAMES or any(s in text for s in RESERVED_SUBSTRINGS)
