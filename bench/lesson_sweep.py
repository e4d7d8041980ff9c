"""Every lesson's verdict on several seeds and torch thread counts, with each check's margin.

Another CPU (AVX2 against AVX-512) or another thread count changes the order of floating-point
sums; a lesson whose verdict rides on that order is not a lesson. This runs each lesson (quick
by default, as the tests run it) on seeds 0-4 at 1 and 2 torch threads and reports, per lesson,
whether it held everywhere and its smallest margin (how far the nearest check was inside its
bound, relative to the bound).

    python bench/lesson_sweep.py --json bench/results/DATE-lesson-sweep-quick.json
    python bench/lesson_sweep.py --full --seeds 0 1 2 --threads 1 --json ...  # the full course
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the full lessons, not the quick ones")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--lessons", nargs="+", default=None, help="names (default: all)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    args = parser.parse_args(argv)

    import torch

    from skier import __version__
    from skier.lessons import lessons, run

    names = args.lessons or [item.name for item in lessons()]
    rows = []
    started = time.perf_counter()
    for name in names:
        for threads in args.threads:
            result = run(name, quick=not args.full, seeds=args.seeds, threads=threads)
            record = result.to_dict()
            rows.append({"lesson": name, "threads": threads, **record})
            margin = result.margin
            worst = min(
                (c for t in result.trials for c in t.checks if math.isfinite(c.margin)),
                key=lambda c: c.margin,
            )
            print(
                f"{result.lesson.number:2d} {name:20s} threads {threads}: held "
                f"{result.held_count}/{len(result.trials)}, smallest margin {margin:+.1%} "
                f"({worst.what}), {result.seconds:.1f} s",
                flush=True,
            )
    summary = {}
    for name in names:
        mine = [r for r in rows if r["lesson"] == name]
        margins = [r["margin"] for r in mine if r["margin"] is not None]
        summary[name] = {
            "held_everywhere": all(r["held"] for r in mine),
            "held": sum(r["held_count"] for r in mine),
            "trials": sum(len(r["trials"]) for r in mine),
            "smallest_margin": min(margins) if margins else None,
        }
    held = sum(s["held_everywhere"] for s in summary.values())
    print(f"{held} of {len(names)} lessons held on every seed and thread count "
          f"({time.perf_counter() - started:.0f} s)")  # fmt: skip
    if args.json is not None:
        payload = {
            "skier_version": __version__,
            "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
            "quick": not args.full,
            "seeds": args.seeds,
            "threads": args.threads,
            "seconds": time.perf_counter() - started,
            "summary": summary,
            "runs": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0 if held == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
