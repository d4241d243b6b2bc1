"""``python -m bench.variable_rate VARIABLE.json FIXED.json [--out SUMMARY.json]``: one
variable-rate model against fixed-rate models, from two bench results (``python -m bench``).

Reports the BD-rate of the variable-rate curve against the fixed-rate one (PSNR-RGB and
PSNR-YCbCr 6:1:1, both fits of bench.bd), the two curves point by point, and whether bpp grows
strictly with the rate R on every image (the variable-rate rows carry their ``rate``).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import defaultdict
from pathlib import Path

from bench.bd import bd_psnr, bd_rate
from bench.results import write_json

__all__ = ["summarize", "monotone_in_rate"]


def monotone_in_rate(rows: list[dict]) -> dict[str, bool]:
    """Per image: does bpp grow strictly with the rate R (rows of one variable-rate curve)?"""
    by_image: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        if r.get("rate") is None:
            raise ValueError(f"row of image {r.get('image')} has no rate: not a variable-rate curve")
        by_image[r["image"]].append((float(r["rate"]), float(r["bpp"])))
    out = {}
    for image, points in sorted(by_image.items()):
        bpps = [b for _, b in sorted(points)]
        out[image] = all(b2 > b1 for b1, b2 in zip(bpps, bpps[1:]))
    return out


def _curve(result: dict, key: str) -> list[tuple[float, float]]:
    return list(zip(result["results"]["bpp"], result["results"][key]))


def summarize(variable: dict, fixed: dict, command: str = "") -> dict:
    bd = {}
    for key in ("psnr-rgb", "psnr-ycbcr"):
        for method in ("cubic", "pchip"):
            try:
                bd[f"{key}/{method}"] = {"bd_rate": bd_rate(_curve(fixed, key), _curve(variable, key), method),
                                         "bd_psnr": bd_psnr(_curve(fixed, key), _curve(variable, key), method)}
            except ValueError as e:
                bd[f"{key}/{method}"] = {"bd_rate": None, "bd_psnr": None, "reason": str(e)}
    monotone = monotone_in_rate(variable["images"])

    def points(result):
        return [{"rate": p.get("rate"), "lmbda": p.get("lmbda"), "checkpoint": p.get("checkpoint"),
                 **{k: result["results"][k][i] for k in ("bpp", "psnr-rgb", "psnr-ycbcr", "ms-ssim-rgb")}}
                for i, p in enumerate(result["rate_points"])]

    return {"command": command, "variable": {"name": variable["name"], "command": variable.get("command"),
                                             "points": points(variable)},
            "fixed": {"name": fixed["name"], "command": fixed.get("command"), "points": points(fixed)},
            "bd_against_fixed": bd, "bpp_strictly_increasing_in_rate": monotone,
            "all_images_monotone": all(monotone.values())}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m bench.variable_rate", description=__doc__.splitlines()[0])
    p.add_argument("variable", help="bench JSON of the variable-rate checkpoint")
    p.add_argument("fixed", help="bench JSON of the fixed-rate checkpoints (one curve)")
    p.add_argument("--out", default=None, help="summary JSON (default: beside VARIABLE, variable_rate.json)")
    args = p.parse_args(argv)
    try:
        variable, fixed = (json.loads(Path(f).read_text()) for f in (args.variable, args.fixed))
        summary = summarize(variable, fixed, "python -m bench.variable_rate " + shlex.join(argv))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(args.variable).with_name("variable_rate.json")
    write_json(out, summary)
    bd = summary["bd_against_fixed"]["psnr-rgb/pchip"]["bd_rate"]
    print(f"wrote {out}: BD-rate (PSNR-RGB, pchip) of {variable['name']} against {fixed['name']}: "
          f"{'n/a' if bd is None else f'{bd:+.2f} %'}; bpp strictly increasing in R on every image: "
          f"{summary['all_images_monotone']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
