"""Benchmark subcommands: ``bench lifting``, ``bench forecasting``, ``bench pose`` and ``bench real`` (each writes a
results table)."""

from __future__ import annotations

import argparse

from handcast.cli.common import (MAX_STEPS, add_device, add_quiet, add_sampler, add_samples, add_seed, check_device,
                                 command_line, float_range, int_range, pairs, SEED_RANGE)


def _checkpoints(args: argparse.Namespace) -> dict[str, str]:
    return pairs(args.ckpt, "--ckpt", "NAME=PATH", empty_value=False)


def _bench_lifting(args: argparse.Namespace) -> None:
    from handcast.eval.bench_lifting import bench_lifting, format_report

    samplers = [] if args.no_samplers else [("ddpm", 1000), ("ddim", 50), ("ddim", 10), ("dpm", 10)]
    result = bench_lifting(args.store, _checkpoints(args), splits=tuple(args.splits), samplers=samplers,
                           out=args.out, optimisation=not args.no_optimisation, progress=not args.quiet,
                           command=command_line(), lift_samples=args.lift_samples,
                           lift_keep=args.lift_keep)
    print(format_report(result))


def _bench_forecasting(args: argparse.Namespace) -> None:
    from handcast.eval.bench_forecasting import bench_forecasting, format_report

    transform, cameras = None, ""
    if args.cameras == "real":
        from handcast.train.augment import CameraAugment

        transform = CameraAugment(1.0, seed=args.camera_seed, labelled_only=False)  # every test clip has its truth
        cameras = (f"every clip seen through one camera of real photos and videos (CameraAugment, seed "
                   f"{args.camera_seed}: any viewpoint, 20-100 deg horizontal field of view, hands 40-600 px, "
                   "anywhere in a 480-1920 px image, half of them still; exact 2D keypoints); 3D in its frame-0 camera")
    result = bench_forecasting(args.store, _checkpoints(args), splits=tuple(args.splits), samples=args.samples,
                               sampler=args.sampler, steps=args.steps, out=args.out, pose_ckpt=args.pose_ckpt,
                               progress=not args.quiet, command=command_line(), contexts=tuple(args.context),
                               oracle_anchor=args.oracle_anchor, lift_ckpt=args.lift_ckpt, max_clips=args.max_clips,
                               impute_only=args.impute_only, clamp_limits=args.clamp_limits,
                               prefix_uses=tuple(args.prefix_use), transform=transform, cameras=cameras)
    print(format_report(result))


def _bench_pose(args: argparse.Namespace) -> None:
    from handcast.eval.bench_pose import bench_pose, format_report

    check_device(args.device)
    r = bench_pose(args.ckpt, regressor=args.regressor, crops=args.crops, split=args.split, num_samples=args.samples,
                   sampler=args.sampler, steps=args.steps, steps_table=args.steps_table, keypoints=args.keypoints,
                   tau=args.tau, seed=args.seed, max_items=args.max_items, out=args.out, device=args.device,
                   progress=not args.quiet, command=command_line(), keypoints_only=args.keypoints_only)
    print(format_report(r))


def _bench_real(args: argparse.Namespace) -> None:
    from pathlib import Path

    import torch

    from handcast.infer.bench_real import bench_real, format_report

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    json_out = args.json if args.json is not None else (Path(args.out).with_suffix(".json") if args.out else None)
    r = bench_real(args.data, small=args.small, photos_per_set=args.photos_per_set, max_frames=args.max_frames,
                   video=not args.no_video, ckpt_pose=args.ckpt_pose, ckpt_forecast=args.ckpt_forecast,
                   ckpt_lift=args.ckpt_lift, out=args.out, json_out=json_out, command=command_line(),
                   progress=not args.quiet)
    print(format_report(r))


def _synthetic_benchmark(bsub: argparse._SubParsersAction, name: str, help: str, ckpt_help: str,
                         splits: list[str]) -> argparse.ArgumentParser:
    """``handcast bench NAME`` on the synthetic benchmark with named checkpoints."""
    b = bsub.add_parser(name, help=help)
    b.add_argument("--store", required=True, help="synthetic clip store (handcast synth)")
    b.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH", help=ckpt_help)
    b.add_argument("--splits", nargs="+", default=splits, help="test splits")
    return b


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("bench", help="benchmarks that write results tables")
    bsub = s.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    b = _synthetic_benchmark(bsub, "lifting", "paper Tables 1-2 on the synthetic benchmark, and the sampler table",
                             "a lifting checkpoint and its row name; repeat for the ablation; the first is the main model",
                             ["diverse_test", "wild_test"])
    b.add_argument("--out", default=None, help="write OUT.md and OUT.json (e.g. results/lifting)")
    b.add_argument("--no-samplers", action="store_true", help="skip the sampler table")
    b.add_argument("--no-optimisation", action="store_true", help="skip the optimisation-only baseline")
    b.add_argument("--lift-samples", type=int_range(1, 64), default=1,
                   help="samples of L averaged per clip in the checkpoint rows (default 1, the paper's protocol)")
    b.add_argument("--lift-keep", type=int_range(1, 64), default=None,
                   help="of those, average only the KEEP most consistent with the 2D keypoints, per frame, finger and "
                        "orientation (default: all)")
    add_quiet(b)
    b.set_defaults(func=_bench_lifting)

    b = _synthetic_benchmark(bsub, "forecasting", "paper Tables 3-5 on the synthetic benchmark and the horizon plot",
                             "a forecasting checkpoint and its row name; repeat for every row",
                             ["lab_test", "diverse_test", "wild_test"])
    add_samples(b, "samples per input")
    add_sampler(b)
    b.add_argument("--pose-ckpt", default=None, metavar="PATH|shipped",
                   help="add the static-pose row from this single-image pose estimator (handcast train pose)")
    b.add_argument("--context", type=int, nargs="+", default=[], metavar="N",
                   help="also every checkpoint with its clips' first N frames as a known prefix (L + refinement on "
                   "their 2D keypoints); N = 1 is the anchored forecast of one image")
    b.add_argument("--oracle-anchor", action="store_true", help="also every checkpoint with the ground-truth frame 0 imposed")
    b.add_argument("--impute-only", action="store_true",
                   help="with --context 1: also the anchored row without harmonisation (known frame replaced only)")
    b.add_argument("--prefix-use", nargs="+", choices=("both", "impose", "condition"), default=["both"],
                   help="for F checkpoints trained with a prefix condition: how the known prefix of the --context "
                        "rows is used, one row each (both = imposed during sampling and given as the condition; "
                        "default both)")
    b.add_argument("--clamp-limits", action="store_true",
                   help="also every F row with its samples clamped to the joint limits (what handcast forecast writes)")
    b.add_argument("--lift-ckpt", default=None, help="lifting checkpoint for --context (default: the shipped tiny one)")
    b.add_argument("--max-clips", type=int, default=None, help="only the first N clips of every split")
    b.add_argument("--cameras", choices=("store", "real"), default="store",
                   help="store: the clips as stored (the synthetic head camera); real: every clip seen through a "
                   "camera like those of real photos and videos (any viewpoint, field of view, hand size and place)")
    b.add_argument("--camera-seed", type=int_range(*SEED_RANGE), default=1000, help="seed of the --cameras real draws")
    b.add_argument("--out", default=None, help="write OUT.md, OUT.json and OUT_horizon.png")
    add_quiet(b)
    b.set_defaults(func=_bench_forecasting)

    b = bsub.add_parser("pose", help="regressor vs joint diffusion vs the cascade's aggregations; the DDIM steps table")
    b.add_argument("--ckpt", required=True, help="cascade checkpoint or run folder (e.g. runs/pose/tiny)")
    b.add_argument("--regressor", default=None, help="regressor checkpoint (default: regressor.safetensors beside --ckpt)")
    b.add_argument("--crops", default="out/pose_crops_tiny", help="crop set folder (default out/pose_crops_tiny)")
    b.add_argument("--split", default="test")
    add_samples(b, "hypotheses per hand")
    add_sampler(b, steps=1, steps_help="sampler steps of the main table (default 1)")
    b.add_argument("--steps-table", type=int_range(1, MAX_STEPS), nargs="+", default=[1, 2, 5, 10])
    b.add_argument("--keypoints", choices=["det", "gt"], default="det", help="detector-like or exact 2D input")
    b.add_argument("--keypoints-only", action="store_true",
                   help="the cascade ignores the crop images (image tokens hidden): 2D keypoints and crop camera only")
    b.add_argument("--tau", type=float_range(0, None, lo_open=True), default=4.0, help="pixel scale of the 2D-consistency weights")
    add_seed(b)
    b.add_argument("--max-items", type=int_range(1), default=None, help="at most this many crops (>= 1)")
    b.add_argument("--out", default=None, help="write OUT.md and OUT.json (e.g. results/pose_tiny)")
    add_device(b)
    add_quiet(b)
    b.set_defaults(func=_bench_pose)

    b = bsub.add_parser("real", help="every real-input path (detect, pose, forecast, lift) on the real photos and "
                                     "video, against their 2D keypoints, with 3D sanity checks")
    b.add_argument("--data", default="../shared/data/real",
                   help="the real data folder (mmpose/<set>/*.json photos, dex_retargeting/ video; default %(default)s)")
    b.add_argument("--out", default=None, help="write the markdown report here (e.g. results/real.md)")
    b.add_argument("--json", default=None, help="write the JSON (per-hand rows) here (default: --out with .json)")
    b.add_argument("--small", action="store_true", help="the CI version: 2 photos a set, 60 video frames")
    b.add_argument("--photos-per-set", type=int, default=None, help="only the first N annotated hands of each set")
    b.add_argument("--max-frames", type=int, default=None, help="only the first N video frames (lift)")
    b.add_argument("--no-video", action="store_true", help="skip the lift path on the video")
    b.add_argument("--ckpt-pose", default=None, help="pose cascade checkpoint (default: the shipped one)")
    b.add_argument("--ckpt-forecast", default=None,
                   help="forecasting checkpoint (default: the shipped keypoint-conditioned one)")
    b.add_argument("--ckpt-lift", default=None, help="lifting checkpoint (default: the shipped one)")
    b.add_argument("--threads", type=int, default=1, help="torch CPU threads (default %(default)s)")
    add_quiet(b)
    b.set_defaults(func=_bench_real)
