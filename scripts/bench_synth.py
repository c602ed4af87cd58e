"""Measure how fast the synthetic benchmark builds (clips per second, rendering included).

    python scripts/bench_synth.py                      # tiny preset, 2 workers
    python scripts/bench_synth.py --preset smoke --workers 1

Builds the whole preset into a temporary folder (deleted afterwards) and prints one line:
``synth <preset>: <n> clips in <s> s = <r> clips/s (<workers> workers, <cpus> CPUs)``.
The time includes worker start-up, the hand model, rendering, JPEG encoding and writing the store.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", default=None, help="write the store here instead of a temporary folder")
    args = ap.parse_args(argv)

    from handcast.synth import PRESETS, build_benchmark

    n = PRESETS[args.preset].n_clips if args.preset in PRESETS else 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep) if args.keep else Path(tmp) / "store"
        t0 = time.perf_counter()
        build_benchmark(args.preset, out, seed=args.seed, overwrite=True, workers=args.workers, progress=False)
        dt = time.perf_counter() - t0
    print(f"synth {args.preset}: {n} clips in {dt:.1f} s = {n / dt:.1f} clips/s "
          f"({args.workers} workers, {os.cpu_count()} CPUs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
