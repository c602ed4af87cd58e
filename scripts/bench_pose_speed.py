"""Speed of the pose estimator (issue 5, section 9): images per second through ``estimate_pose``.

Renders a few synthetic images (both hands, their exact 2D keypoints as input), then times the whole
per-image path: cropping both hands, the backbone, stage 1, stage 2, the autoencoder's decoder, aggregation
and root fitting, image by image (batch = the hands of one image). Rendering and model loading are excluded.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/bench_pose_speed.py --ckpt runs/pose/tiny --threads 2

Target: at least 20 images/s on 2 cores with the tiny config and one-step DDIM.

``--workers N`` runs N processes of ``--threads`` threads each, splitting the images between them (the way
to use several cores for throughput when one image is too small a job to spread over threads); the rate is
all images over the wall time from the common start to the last worker's end.
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ckpt", required=True, help="pose checkpoint or run folder")
    ap.add_argument("--images", type=int, default=12, help="distinct synthetic images (default 12)")
    ap.add_argument("--repeats", type=int, default=5, help="passes over the images (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per worker (default 2)")
    ap.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    ap.add_argument("--samples", type=int, nargs="+", default=[5, 1], help="hypotheses per hand (default 5 1)")
    ap.add_argument("--steps", type=int, nargs="+", default=[1], help="DDIM steps (default 1)")
    ap.add_argument("--aggregation", default="median")
    ap.add_argument("--json", default=None, help="also write the numbers here")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from handcast.models.cascade.model import load_cascade, resolve_pose_checkpoint
    from handcast.synth import generate_clip

    torch.set_num_threads(args.threads)
    model = load_cascade(resolve_pose_checkpoint(args.ckpt))
    scenes = []
    for i in range(args.images):
        c = generate_clip((424242, i), ("lab", "diverse", "wild")[i % 3], n_frames=2, image_size=(512, 512))
        conf = c.kp2d_conf[0] * c.valid[0][:, None]
        if (conf > 0).sum(-1).max() >= 4:
            scenes.append((c.image, (c.kp2d[0].astype(np.float64), conf.astype(np.float64)), c.K.astype(np.float64)))
    hands = sum(int(((k[1] > 0).sum(-1) >= 4).sum()) for _, k, _ in scenes)
    rows = []
    for S in args.samples:
        for steps in args.steps:
            jobs = [(r, i) for r in range(args.repeats) for i in range(len(scenes))]
            if args.workers <= 1:
                spans = [_work(model, scenes, jobs, S, steps, args.aggregation, args.threads, None)]
            else:
                import multiprocessing as mp

                ctx = mp.get_context("fork")
                barrier = ctx.Barrier(args.workers)
                q = ctx.Queue()
                procs = [ctx.Process(target=_worker, args=(model, scenes, jobs[w::args.workers], S, steps, args.aggregation,
                                                            args.threads, barrier, q)) for w in range(args.workers)]
                for p in procs:
                    p.start()
                spans = [q.get() for _ in procs]
                for p in procs:
                    p.join()
            dt = max(e for _, e in spans) - min(b for b, _ in spans)
            n = len(jobs)
            nh = args.repeats * hands
            rows.append({"samples": S, "steps": steps, "workers": args.workers, "threads": args.threads, "images": n,
                         "hands": nh, "seconds": round(dt, 3), "images_per_s": round(n / dt, 2),
                         "hands_per_s": round(nh / dt, 2), "ms_per_image": round(1000 * dt / n, 2)})
            print(json.dumps(rows[-1]))
    info = {"threads": args.threads, "workers": args.workers, "machine": platform.processor() or platform.machine(), "cpu_count": __import__("os").cpu_count(),
            "checkpoint": str(resolve_pose_checkpoint(args.ckpt)), "aggregation": args.aggregation, "rows": rows}
    if args.json:
        from handcast.io import atomic_path

        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(info, indent=1))
    return 0


def _work(model, scenes, jobs, S, steps, aggregation, threads, barrier):
    """Warm up, wait for the others, run ``jobs`` (repeat, scene index); returns (start, end) monotonic times."""
    import torch

    from handcast.models.cascade.estimate import estimate_pose

    torch.set_num_threads(threads)
    for img, kp, K in scenes[:2]:
        estimate_pose(img, model, kp, K, num_samples=S, steps=steps, aggregation=aggregation)
    if barrier is not None:
        barrier.wait()
    t0 = time.monotonic()
    for r, i in jobs:
        img, kp, K = scenes[i]
        estimate_pose(img, model, kp, K, num_samples=S, steps=steps, aggregation=aggregation, seed=r)
    return t0, time.monotonic()


def _worker(model, scenes, jobs, S, steps, aggregation, threads, barrier, queue):
    queue.put(_work(model, scenes, jobs, S, steps, aggregation, threads, barrier))


if __name__ == "__main__":
    raise SystemExit(main())
