"""``handcast forecast VIDEO --context N`` on rendered synthetic videos, against their 3D truth:
``python scripts/bench_forecast_rendered.py [--domains lab diverse wild] [--clips 6] [--contexts 1 8 16]
[--samples 5] [--threads 1] [--out results/forecast_rendered.md]``.

Each clip of the synthetic benchmark's generator is rendered frame by frame (64 frames, 640 x 480,
:func:`handcast.synth.generate_video_clip`) and written as a video; :func:`handcast.infer.forecast.run_forecast`
then runs on it as the command does (mediapipe on the first N frames, L + refinement on them as the known prefix,
the shipped keypoint-conditioned F, 5 samples, DDIM 10 steps, seed 0, the true intrinsics). Its 64 forecast frames
start at the video's frame 0, in that frame's camera, as the clip's 3D truth does. The forecasting metrics of
``handcast bench forecasting`` (cm; best of the samples and their mean; :func:`handcast.eval.metrics.forecast_errors`)
are taken over the frames after the longest context (t >= max N, the same frames for every context, as the
``[frames >= 16]`` rows of ``results/forecast_prefix_tiny.md``), where the hands are labelled in the clip. The head
moves a little during a clip while the forecast assumes a still camera; the truth is in the frame-0 camera.

About 3 minutes on 2 cores with the defaults. Writes the table to ``--out`` (the command line at its top) and
prints it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="+", default=["lab", "diverse", "wild"])
    ap.add_argument("--clips", type=int, default=6, help="clips per domain (seeds 1000 + i)")
    ap.add_argument("--contexts", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the table here (markdown)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from handcast.eval.metrics import FORECAST_METRICS, forecast_errors, summarize_forecast
    from handcast.infer.forecast import run_forecast
    from _rendered import rendered_videos

    T = 64
    rows: dict = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_forecast_rendered_") as tmp:
        for dom, seed, c, _, video, kj in rendered_videos(tmp, args.domains, args.clips, T):
            for n in args.contexts:
                out = Path(tmp) / f"out_{dom}_{seed}_{n}"
                res = run_forecast(str(video), out, samples=args.samples, frames=T, intrinsics=str(kj),
                                   context=n, video=False, seed=0)
                with np.load(out / "forecast.npz", allow_pickle=False) as z:
                    pred = z["joints"].astype(np.float64)  # (S, T, 2, 21, 3)
                valid = c.valid.copy()
                valid[:max(args.contexts)] = False  # one range for every context
                err = forecast_errors(pred[None], c.joints3d[None].astype(np.float64), valid[None])
                rows.setdefault((dom, n), []).append((err, res["hands"]))
            print(f"{dom} seed {seed}: contexts {args.contexts} done, {time.perf_counter() - t_start:.0f} s",
                  flush=True)

    lines = [f"command: `python {shlex.join(sys.argv)}`", "",
             f"{args.clips} clips per domain (seeds 1000-{999 + args.clips}), {T} frames at 640x480, "
             f"{args.samples} samples, the shipped tiny F and L; {time.perf_counter() - t_start:.0f} s in all. "
             f"Metrics over frames {max(args.contexts)}-{T - 1} (after the longest context), cm.", "",
             "| domain | context frames | " + " | ".join(f"best {k}" for k in FORECAST_METRICS) + " | "
             + " | ".join(f"mean {k}" for k in FORECAST_METRICS) + " |",
             "|---|---|" + "---|" * (2 * len(FORECAST_METRICS))]
    for dom in args.domains:
        for n in args.contexts:
            errs = [e for e, _ in rows[(dom, n)]]
            merged = {k: np.concatenate([e[k] for e in errs], 0) for k in errs[0]}
            s = summarize_forecast(merged)
            cells = [f"{s['best_of_n'][k]:.2f}" for k in FORECAST_METRICS] + \
                    [f"{s['mean_of_n'][k]:.2f}" for k in FORECAST_METRICS]
            lines.append(f"| {dom} | {n} | " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    if args.out:  # the table, then the same on the terminal
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
