"""Benchmark subcommands: ``bench lifting``, ``bench forecasting`` and ``bench pose`` (each writes a results table)."""

from __future__ import annotations

import argparse

from handcast.cli.common import (MAX_STEPS, add_device, add_quiet, add_sampler, add_samples, add_seed, check_device,
                                 command_line, float_range, int_range, pairs)


def _checkpoints(args: argparse.Namespace) -> dict[str, str]:
    return pairs(args.ckpt, "--ckpt", "NAME=PATH", empty_value=False)


def _bench_lifting(args: argparse.Namespace) -> None:
    from handcast.eval.bench_lifting import bench_lifting, format_report

    samplers = [] if args.no_samplers else [("ddpm", 1000), ("ddim", 50), ("ddim", 10), ("dpm", 10)]
    result = bench_lifting(args.store, _checkpoints(args), splits=tuple(args.splits), samplers=samplers,
                           out=args.out, optimisation=not args.no_optimisation, progress=not args.quiet,
                           command=command_line())
    print(format_report(result))


def _bench_forecasting(args: argparse.Namespace) -> None:
    from handcast.eval.bench_forecasting import bench_forecasting, format_report

    result = bench_forecasting(args.store, _checkpoints(args), splits=tuple(args.splits), samples=args.samples,
                               sampler=args.sampler, steps=args.steps, out=args.out, pose_ckpt=args.pose_ckpt,
                               progress=not args.quiet, command=command_line())
    print(format_report(result))


def _bench_pose(args: argparse.Namespace) -> None:
    from handcast.eval.bench_pose import bench_pose, format_report

    check_device(args.device)
    r = bench_pose(args.ckpt, regressor=args.regressor, crops=args.crops, split=args.split, num_samples=args.samples,
                   sampler=args.sampler, steps=args.steps, steps_table=args.steps_table, keypoints=args.keypoints,
                   tau=args.tau, seed=args.seed, max_items=args.max_items, out=args.out, device=args.device,
                   progress=not args.quiet, command=command_line())
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
    add_quiet(b)
    b.set_defaults(func=_bench_lifting)

    b = _synthetic_benchmark(bsub, "forecasting", "paper Tables 3-5 on the synthetic benchmark and the horizon plot",
                             "a forecasting checkpoint and its row name; repeat for every row",
                             ["lab_test", "diverse_test", "wild_test"])
    add_samples(b, "samples per input")
    add_sampler(b)
    b.add_argument("--pose-ckpt", default=None, metavar="PATH|shipped",
                   help="add the static-pose row from this single-image pose estimator (handcast train pose)")
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
    b.add_argument("--tau", type=float_range(0, None, lo_open=True), default=4.0, help="pixel scale of the 2D-consistency weights")
    add_seed(b)
    b.add_argument("--max-items", type=int_range(1), default=None, help="at most this many crops (>= 1)")
    b.add_argument("--out", default=None, help="write OUT.md and OUT.json (e.g. results/pose_tiny)")
    add_device(b)
    add_quiet(b)
    b.set_defaults(func=_bench_pose)
