"""The ``handcast`` command line: parses arguments and delegates to one plain function per subcommand.

Every subcommand's work lives in a library function a user can call from Python; this module only
parses, imports that function lazily (so ``handcast --help`` is fast) and turns a
:class:`~handcast.errors.HandcastError` into a one-line message and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from handcast import __version__
from handcast.errors import HandcastError

EXIT_USER_ERROR = 2


def _cmd_synth(args: argparse.Namespace) -> None:
    from handcast.synth import build_benchmark

    path = build_benchmark(
        args.preset, Path(args.out), seed=args.seed, overwrite=args.overwrite,
        workers=args.workers, progress=not args.quiet,
    )
    print(f"wrote synthetic benchmark '{args.preset}' to {path}")


def _cmd_prepare(args: argparse.Namespace) -> None:
    from handcast.data.prepare import prepare

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HandcastError(f"--option takes KEY=VALUE, got '{item}'")
        options[key] = value
    for key in ("hand_model", "mano_dir", "clip_len"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    summary = prepare(args.dataset, args.root, args.out, split=args.split, progress=not args.quiet,
                      overwrite=args.overwrite, **options)
    print(summary.format())


def _cmd_export_gt(args: argparse.Namespace) -> None:
    from handcast.eval.export import export_ground_truth

    n = export_ground_truth(Path(args.store), args.split, Path(args.out))
    print(f"wrote ground truth of {n} clips to {args.out}")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from handcast.eval.evaluate import evaluate_files

    _, table = evaluate_files(Path(args.pred), Path(args.gt), json_out=Path(args.json) if args.json else None)
    print(table)


def _cmd_baseline_static(args: argparse.Namespace) -> None:
    from handcast.eval.baselines import static_pose_predictions

    n = static_pose_predictions(Path(args.store), args.split, Path(args.out), horizon=args.horizon)
    print(f"wrote static-pose predictions for {n} clips to {args.out}")


def _cmd_render(args: argparse.Namespace) -> None:
    from handcast.render.api import render_from_files

    outputs = render_from_files(
        store=Path(args.store) if args.store else None, split=args.split, clip=args.clip,
        pred=Path(args.pred) if args.pred else None, sample=args.sample,
        out=Path(args.out), video=not args.no_video, max_frames=args.max_frames,
    )
    for p in outputs:
        print(f"wrote {p}")


def _cmd_train_lift(args: argparse.Namespace) -> None:
    from handcast.train.lift import train_lift

    ck = train_lift(
        args.config, args.overrides, store=args.store, out=args.out, resume=args.resume, devices=args.devices,
        accelerator=args.accelerator, num_nodes=args.num_nodes, strategy=args.strategy, max_steps=args.max_steps,
        progress=not args.quiet,
    )
    print(f"wrote checkpoint {ck}")


def _cmd_train_forecast(args: argparse.Namespace) -> None:
    from handcast.train.forecast import train_forecast

    ck = train_forecast(
        args.config, args.overrides, store=args.store, out=args.out, resume=args.resume, devices=args.devices,
        accelerator=args.accelerator, num_nodes=args.num_nodes, strategy=args.strategy, max_steps=args.max_steps,
        init_backbone=args.init_backbone, progress=not args.quiet,
    )
    print(f"wrote checkpoint {ck}")


def _cmd_impute(args: argparse.Namespace) -> None:
    import json

    from handcast.train.lift import impute

    summary = impute(args.ckpt, args.data, args.split, args.out, out_split=args.out_split, batch_size=args.batch_size,
                     sampler=args.sampler, steps=args.steps, iterations=args.iterations, tol=args.tol,
                     use_3d_labels=args.use_3d_labels, device=args.device, progress=not args.quiet)
    print(json.dumps(summary, indent=1, default=str))


def _cmd_bench_lifting(args: argparse.Namespace) -> None:
    import shlex

    from handcast.eval.bench_lifting import bench_lifting, format_report

    ckpts = _named_paths(args.ckpt, "--ckpt")
    samplers = [] if args.no_samplers else [("ddpm", 1000), ("ddim", 50), ("ddim", 10), ("dpm", 10)]
    result = bench_lifting(args.store, ckpts, splits=tuple(args.splits), samplers=samplers,
                           out=args.out, optimisation=not args.no_optimisation, progress=not args.quiet,
                           command="handcast " + shlex.join(sys.argv[1:]))
    print(format_report(result))


def _named_paths(items: Sequence[str], flag: str) -> dict[str, str]:
    from handcast.errors import HandcastError

    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise HandcastError(f"{flag} takes NAME=PATH, got '{item}'")
        out[name] = path
    return out


def _cmd_bench_forecasting(args: argparse.Namespace) -> None:
    import shlex

    from handcast.eval.bench_forecasting import bench_forecasting, format_report

    result = bench_forecasting(args.store, _named_paths(args.ckpt, "--ckpt"), splits=tuple(args.splits),
                               samples=args.samples, sampler=args.sampler, steps=args.steps, out=args.out,
                               pose_ckpt=args.pose_ckpt,
                               progress=not args.quiet, command="handcast " + shlex.join(sys.argv[1:]))
    print(format_report(result))


def _cmd_forecast(args: argparse.Namespace) -> None:
    from handcast.infer.forecast import run_forecast

    res = run_forecast(args.image, args.out, ckpt=args.ckpt, samples=args.samples, frames=args.frames,
                       keypoints=args.keypoints, detect=not args.no_detect, fov=args.fov, intrinsics=args.intrinsics,
                       sampler=args.sampler, steps=args.steps, seed=args.seed, video=not args.no_video,
                       int8=args.int8)
    for m in res["messages"]:
        print(m)
    print(f"model {res['model']}; input hands: {res['hands']} (keypoints from {res['keypoints']})")
    for p in res["outputs"]:
        print(f"wrote {p}")


def _cmd_view(args: argparse.Namespace) -> None:
    from handcast.render.viewer import write_viewer

    path = write_viewer(args.result, args.out, title=args.title, clip=args.clip)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def _cmd_export_meshes(args: argparse.Namespace) -> None:
    from handcast.render.export import export_meshes

    paths = export_meshes(args.result, args.out, fmt=args.format, sample=args.sample, clip=args.clip)
    print(f"wrote {len(paths)} meshes to {args.out}")


def _cmd_detect(args: argparse.Namespace) -> None:
    from handcast.detect import detect_video

    tracks = detect_video(args.video, mirrored=args.mirrored, progress=not args.quiet, max_frames=args.max_frames)
    tracks.save(args.out)
    found = tracks.hand_valid.any(0)
    print(f"wrote {args.out}: {len(tracks.hand_valid)} frames; right hand in {int(tracks.hand_valid[:, 0].sum())}, "
          f"left hand in {int(tracks.hand_valid[:, 1].sum())}" + ("" if found.any() else " (no hand anywhere)"))


def _cmd_lift(args: argparse.Namespace) -> None:
    from handcast.infer.lift import run_lift

    res = run_lift(args.source, args.out, ckpt=args.ckpt, fov=args.fov, intrinsics=args.intrinsics, window=args.window,
                   overlap=args.overlap, refine_iterations=args.refine_iterations, smooth=args.smooth,
                   video=not args.no_video, max_frames=args.max_frames, progress=not args.quiet, sampler=args.sampler,
                   steps=args.steps, seed=args.seed, mirrored=args.mirrored)
    for m in res["messages"]:
        print(m)
    m = res["metrics"]
    print(f"{res['frames']} frames ({res['windows']} windows of L); right hand in {res['hands_observed']['right']}, "
          f"left hand in {res['hands_observed']['left']} frames; K from {res['intrinsics']}")
    print(f"reprojection error {m['reproj_error_px']:.2f} px; 2D acceleration {m['accel2d_raw_px']:.2f} (input) -> "
          f"{m['accel2d_result_px']:.2f} px/frame^2; 3D acceleration {m['accel3d_mm']:.2f} mm/frame^2")
    for p in res["outputs"]:
        print(f"wrote {p}")


def _cmd_train_pose(args: argparse.Namespace) -> None:
    from handcast.train.pose import train_pose

    for k, p in train_pose(args.config, args.overrides, crops=args.crops, out=args.out, stages=args.stages,
                           resume=args.resume, device=args.device, progress=not args.quiet).items():
        print(f"wrote {k} checkpoint {p}")


def _cmd_bench_pose(args: argparse.Namespace) -> None:
    import shlex

    from handcast.eval.bench_pose import bench_pose, format_report

    r = bench_pose(args.ckpt, regressor=args.regressor, crops=args.crops, split=args.split, num_samples=args.samples,
                   sampler=args.sampler, steps=args.steps, steps_table=args.steps_table, keypoints=args.keypoints,
                   tau=args.tau, seed=args.seed, max_items=args.max_items, out=args.out, device=args.device,
                   progress=not args.quiet, command="handcast " + shlex.join(sys.argv[1:]))
    print(format_report(r))


def _cmd_pose(args: argparse.Namespace) -> None:
    from handcast.infer.pose import run_pose

    out = run_pose(args.image, args.out, keypoints=args.keypoints, ckpt=args.ckpt, num_samples=args.samples,
                   sampler=args.sampler, steps=args.steps, aggregation=args.aggregation, focal=args.focal,
                   seed=args.seed, overwrite=args.overwrite, device=args.device, mesh_format=args.mesh_format)
    print(f"wrote {out}")


def _cmd_mano_import(args: argparse.Namespace) -> None:
    from handcast.hand.mano_import import mano_import_main

    out = mano_import_main(Path(args.right), Path(args.left), Path(args.out) if args.out else None,
                           fix_left=args.fix_left_shapedirs)
    print(f"wrote safe MANO model files to {out}")


def _cmd_mano_info(args: argparse.Namespace) -> None:
    from handcast.hand import describe_installed_models

    print(describe_installed_models())


def _train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--config", default="tiny", help="preset name (tiny, paper) or a YAML file (default: tiny)")
    t.add_argument("--store", default=None, help="clip store to train on (overrides data.store)")
    t.add_argument("--out", default=None, help="run folder (overrides train.out)")
    t.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    t.add_argument("--max-steps", type=int, default=None, help="overrides train.max_steps")
    t.add_argument("--accelerator", default="cpu", help="cpu, gpu or auto (default: cpu)")
    t.add_argument("--devices", default=1, type=lambda v: v if v == "auto" else int(v), help="devices per node")
    t.add_argument("--num-nodes", type=int, default=1)
    t.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: auto)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. train.lr=1e-4")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="handcast",
        description="4D hand motion: lifting 2D tracks to 3D, forecasting from one image, single-image pose; "
        "synthetic benchmark, dataset converters, detection, evaluation, rendering, viewer, hand models.",
    )
    p.add_argument("--version", action="version", version=f"handcast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("synth", help="build the synthetic bimanual benchmark (a clip store)")
    s.add_argument("--preset", default="tiny", help="benchmark size: smoke, tiny or paper (default: tiny)")
    s.add_argument("--out", required=True, help="output store folder")
    s.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    s.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count, max 2)")
    s.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_synth)

    s = sub.add_parser("prepare", help="convert a public dataset (ARCTIC, H2O, HOT3D, DexYCB, ...) into a clip store")
    s.add_argument("dataset", help="arctic, h2o, h2o3d, hot3d, dexycb, assemblyhands, holoassist, egoexo4d, "
                   "freihand or ho3d (docs/datasets.md)")
    s.add_argument("--root", required=True, help="the dataset's download folder")
    s.add_argument("--out", required=True, help="clip store folder to write")
    s.add_argument("--split", default=None, help="convert only this split (default: every split found)")
    s.add_argument("--hand-model", dest="hand_model", default=None, help="auto, mano, open or none")
    s.add_argument("--mano-dir", dest="mano_dir", default=None, help="folder of the imported MANO files")
    s.add_argument("--clip-len", dest="clip_len", default=None, help="cut sequences into clips of this many frames")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option (docs/datasets.md); repeatable")
    s.add_argument("--overwrite", action="store_true", help="replace an existing store at --out")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_prepare)

    s = sub.add_parser("export-gt", help="write a ground-truth file of one split of a clip store")
    s.add_argument("--store", required=True, help="clip store folder")
    s.add_argument("--split", required=True, help="split name, e.g. lab_test")
    s.add_argument("--out", required=True, help="output .npz")
    s.set_defaults(func=_cmd_export_gt)

    s = sub.add_parser("evaluate", help="score a prediction file against a ground-truth file")
    s.add_argument("--pred", required=True, help="prediction .npz (see docs/formats.md)")
    s.add_argument("--gt", required=True, help="ground-truth .npz (from handcast export-gt)")
    s.add_argument("--json", default=None, help="also write the metrics as JSON here")
    s.set_defaults(func=_cmd_evaluate)

    s = sub.add_parser("baseline", help="run a non-learned baseline and write a prediction file")
    bsub = s.add_subparsers(dest="baseline", metavar="BASELINE")
    bsub.required = True
    b = bsub.add_parser("static", help="hold the frame-0 pose still over the whole horizon")
    b.add_argument("--store", required=True, help="clip store folder")
    b.add_argument("--split", required=True, help="split name")
    b.add_argument("--out", required=True, help="output prediction .npz")
    b.add_argument("--horizon", type=int, default=None, help="frames to predict (default: each clip's length)")
    b.set_defaults(func=_cmd_baseline_static)

    s = sub.add_parser("render", help="render a clip or a prediction: overlay + second view PNG and an MP4")
    s.add_argument("--store", default=None, help="clip store folder (the clip, its image and camera)")
    s.add_argument("--split", default=None, help="split of --store")
    s.add_argument("--clip", default=None, help="clip id, or an index into the split (default: 0)")
    s.add_argument("--pred", default=None, help="prediction .npz to draw instead of the clip's ground truth")
    s.add_argument("--sample", type=int, default=0, help="which prediction sample to draw")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--no-video", action="store_true", help="write only the PNG")
    s.add_argument("--max-frames", type=int, default=None, help="render at most this many frames")
    s.set_defaults(func=_cmd_render)

    s = sub.add_parser("train", help="train a model (Lightning; CPU by default, DDP with --devices/--num-nodes)")
    tsub = s.add_subparsers(dest="model", metavar="MODEL")
    tsub.required = True
    t = tsub.add_parser("lift", help="the lifting model L (2D tracks + cameras -> 3D bimanual MANO motion)")
    _train_arguments(t)
    t.set_defaults(func=_cmd_train_lift)
    t = tsub.add_parser("forecast", help="the forecasting model F (one image -> futures of both hands) or a "
                        "regressor baseline (model.head=regression)")
    _train_arguments(t)
    t.add_argument("--init-backbone", default=None, metavar="PATH",
                   help="initialise the ViT from a HaMeR checkpoint (.ckpt or .safetensors, 'backbone.' entries)")
    t.set_defaults(func=_cmd_train_forecast)

    t = tsub.add_parser("pose", help="the cascaded diffusion hand pose estimator and its regressor baseline")
    t.add_argument("--config", default="tiny", help="preset name (tiny, paper) or a YAML file (default: tiny)")
    t.add_argument("--crops", default=None, help="crop set folder (overrides data.crops; built when missing)")
    t.add_argument("--out", default=None, help="run folder (overrides train.out)")
    t.add_argument("--stages", nargs="+", choices=["ae", "joint", "mesh", "regressor"], default=None,
                   help="train only these stages (default: all)")
    t.add_argument("--resume", action="store_true", help="continue a run folder, skipping finished stages")
    t.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    t.set_defaults(func=_cmd_train_pose)

    s = sub.add_parser("impute", help="turn 2D-only clips into 3D labels: lifting model L + reprojection refinement")
    s.add_argument("--ckpt", required=True, help="lifting checkpoint (.safetensors from handcast train lift)")
    s.add_argument("--data", required=True, help="clip store to read")
    s.add_argument("--split", required=True, help="split of --data to impute")
    s.add_argument("--out", required=True, help="clip store to write (created, or appended to; resumable)")
    s.add_argument("--out-split", default=None, help="split name in --out (default: <split>_imputed)")
    s.add_argument("--batch-size", type=int, default=64, help="clips refined together (default 64)")
    s.add_argument("--sampler", default="ddim", help="ddpm, ddim or dpm (default ddim)")
    s.add_argument("--steps", type=int, default=10, help="sampler steps (default 10)")
    s.add_argument("--iterations", type=int, default=1000, help="refinement iterations (default 1000)")
    s.add_argument("--tol", type=float, default=1e-4, help="refinement early-stop loss (default 1e-4; 0 = never)")
    s.add_argument("--use-3d-labels", action="store_true", help="also fit 3D keypoints where a clip has them")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_impute)

    s = sub.add_parser("bench", help="benchmarks that write results tables")
    bsub = s.add_subparsers(dest="bench", metavar="BENCH")
    bsub.required = True
    b = bsub.add_parser("lifting", help="paper Tables 1-2 on the synthetic benchmark, and the sampler table")
    b.add_argument("--store", required=True, help="synthetic clip store (handcast synth)")
    b.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH",
                   help="a lifting checkpoint and its row name; repeat for the ablation; the first is the main model")
    b.add_argument("--splits", nargs="+", default=["diverse_test", "wild_test"], help="test splits")
    b.add_argument("--out", default=None, help="write OUT.md and OUT.json (e.g. results/lifting)")
    b.add_argument("--no-samplers", action="store_true", help="skip the sampler table")
    b.add_argument("--no-optimisation", action="store_true", help="skip the optimisation-only baseline")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_bench_lifting)
    b = bsub.add_parser("forecasting", help="paper Tables 3-5 on the synthetic benchmark and the horizon plot")
    b.add_argument("--store", required=True, help="synthetic clip store (handcast synth)")
    b.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH",
                   help="a forecasting checkpoint and its row name; repeat for every row")
    b.add_argument("--splits", nargs="+", default=["lab_test", "diverse_test", "wild_test"], help="test splits")
    b.add_argument("--samples", type=int, default=5, help="samples per input (default 5)")
    b.add_argument("--sampler", default="ddim", help="ddpm, ddim or dpm (default ddim)")
    b.add_argument("--steps", type=int, default=10, help="sampler steps (default 10)")
    b.add_argument("--pose-ckpt", default=None, metavar="PATH|shipped",
                   help="add the static-pose row from this single-image pose estimator (handcast train pose)")
    b.add_argument("--out", default=None, help="write OUT.md, OUT.json and OUT_horizon.png")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_bench_forecasting)

    b = bsub.add_parser("pose", help="regressor vs joint diffusion vs the cascade's aggregations; the DDIM steps table")
    b.add_argument("--ckpt", required=True, help="cascade checkpoint or run folder (e.g. runs/pose/tiny)")
    b.add_argument("--regressor", default=None, help="regressor checkpoint (default: regressor.safetensors beside --ckpt)")
    b.add_argument("--crops", default="out/pose_crops_tiny", help="crop set folder (default out/pose_crops_tiny)")
    b.add_argument("--split", default="test")
    b.add_argument("--samples", type=int, default=5, help="hypotheses per hand (default 5)")
    b.add_argument("--sampler", default="ddim")
    b.add_argument("--steps", type=int, default=1, help="sampler steps of the main table (default 1)")
    b.add_argument("--steps-table", type=int, nargs="+", default=[1, 2, 5, 10])
    b.add_argument("--keypoints", choices=["det", "gt"], default="det", help="detector-like or exact 2D input")
    b.add_argument("--tau", type=float, default=4.0, help="pixel scale of the 2D-consistency weights")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--max-items", type=int, default=None)
    b.add_argument("--out", default=None, help="write OUT.md and OUT.json (e.g. results/pose_tiny)")
    b.add_argument("--device", default="cpu")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_cmd_bench_pose)

    s = sub.add_parser("pose", help="3D hand pose and mesh of every hand in one image (cascaded diffusion)")
    s.add_argument("image", help="input image")
    s.add_argument("--out", default=None, help="output folder (default <image stem>_pose)")
    s.add_argument("--keypoints", default=None, metavar="KP.json",
                   help="2D keypoints of the hands (docs/pose.md); default: the mediapipe detector")
    s.add_argument("--ckpt", default=None, help="pose checkpoint or run folder (default: the shipped tiny model)")
    s.add_argument("--samples", type=int, default=5, help="hypotheses per hand (default 5)")
    s.add_argument("--sampler", default="ddim")
    s.add_argument("--steps", type=int, default=1, help="sampler steps (default 1: one-step DDIM)")
    s.add_argument("--aggregation", choices=["single", "mean", "median", "reproj"], default="median")
    s.add_argument("--focal", type=float, default=None, help="focal length in pixels (default max(W, H))")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--mesh-format", choices=["ply", "obj"], default="ply")
    s.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    s.add_argument("--device", default="cpu")
    s.set_defaults(func=_cmd_pose)

    s = sub.add_parser("forecast", help="forecast both hands' future 3D motion from one image (PNG, MP4, npz)")
    s.add_argument("image", help="input image (JPEG, PNG, ...)")
    s.add_argument("--out", default="forecast_out", help="output folder (default: forecast_out)")
    s.add_argument("--samples", type=int, default=5, help="futures to sample (default 5)")
    s.add_argument("--frames", type=int, default=64, help="frames to forecast at 30 fps (default 64)")
    s.add_argument("--ckpt", default=None, help="forecasting checkpoint (default: the shipped tiny models)")
    s.add_argument("--keypoints", default=None, metavar="KP.json",
                   help="2D keypoints of the image's hands from any detector (format: docs/forecasting.md)")
    s.add_argument("--no-detect", action="store_true", help="do not run the mediapipe detector")
    s.add_argument("--fov", type=float, default=None, help="horizontal field of view in degrees (default 60)")
    s.add_argument("--intrinsics", default=None, metavar="K.json", help="3x3 intrinsics matrix as JSON (pixels)")
    s.add_argument("--sampler", default="ddim", help="ddpm, ddim or dpm (default ddim)")
    s.add_argument("--steps", type=int, default=10, help="sampler steps (default 10)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--no-video", action="store_true", help="write only the PNG and the npz")
    s.add_argument("--int8", action="store_true",
                   help="int8 dynamic quantisation of the linear layers (CPU; 1.6-2x faster here, results/speed.md)")
    s.set_defaults(func=_cmd_forecast)

    s = sub.add_parser("lift", help="3D motion of both hands from a video or a 2D tracks file (npz + overlay MP4)")
    s.add_argument("source", metavar="VIDEO|TRACKS.npz",
                   help="a video (mediapipe detection, extra 'detect') or a tracks .npz (docs/lift_video.md)")
    s.add_argument("--out", default="lift_out", help="output folder (default: lift_out)")
    s.add_argument("--fov", type=float, default=None,
                   help="horizontal field of view in degrees (default: the tracks file's K, else 60)")
    s.add_argument("--intrinsics", default=None, metavar="K.json", help="3x3 intrinsics matrix as JSON (pixels)")
    s.add_argument("--ckpt", default=None, help="lifting checkpoint (default: the shipped tiny model)")
    s.add_argument("--max-frames", type=int, default=None, help="only the first N frames")
    s.add_argument("--no-video", action="store_true", help="write only the npz files")
    s.add_argument("--window", type=int, default=None, help="frames per lifting window (default 64)")
    s.add_argument("--overlap", type=int, default=16, help="frames shared by consecutive windows (default 16)")
    s.add_argument("--refine-iterations", type=int, default=500, help="refinement iterations (default 500; 0 = L only)")
    s.add_argument("--smooth", type=float, default=3.0, help="weight of the joint-acceleration term (default 3)")
    s.add_argument("--mirrored", action="store_true", help="the video is mirrored (selfie view)")
    s.add_argument("--sampler", default="ddim", help="ddpm, ddim or dpm (default ddim)")
    s.add_argument("--steps", type=int, default=10, help="sampler steps (default 10)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=_cmd_lift)

    s = sub.add_parser("view", help="a self-contained interactive 3D HTML page of a forecast or lift result")
    s.add_argument("result", help="result .npz (handcast forecast or lift, a prediction or ground-truth file)")
    s.add_argument("--out", required=True, help="output .html")
    s.add_argument("--title", default=None, help="page title")
    s.add_argument("--clip", type=int, default=0, help="which clip of a prediction / ground-truth file")
    s.set_defaults(func=_cmd_view)

    s = sub.add_parser("export-meshes", help="one mesh per frame (OBJ, PLY or GLB) of a result's hands")
    s.add_argument("result", help="result .npz with MANO parameters or vertices")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--format", default="obj", choices=("obj", "ply", "glb"))
    s.add_argument("--sample", type=int, default=0, help="which sample of a multi-sample result")
    s.add_argument("--clip", type=int, default=0, help="which clip of a prediction / ground-truth file")
    s.set_defaults(func=_cmd_export_meshes)

    s = sub.add_parser("detect", help="2D hand tracks of a video with mediapipe (extra 'detect'): a tracks .npz")
    s.add_argument("video", help="input video")
    s.add_argument("--out", required=True, help="output tracks .npz (the handcast lift tracks format)")
    s.add_argument("--mirrored", action="store_true", help="the video is mirrored (selfie view)")
    s.add_argument("--max-frames", type=int, default=None, help="detect at most this many frames")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_cmd_detect)

    s = sub.add_parser("mano", help="official MANO model files")
    msub = s.add_subparsers(dest="mano_command", metavar="ACTION")
    msub.required = True
    m = msub.add_parser("import", help="convert the official MANO pickles to safe npz files (no chumpy)")
    m.add_argument("right", help="path to MANO_RIGHT.pkl")
    m.add_argument("left", help="path to MANO_LEFT.pkl")
    m.add_argument("--out", default=None, help="folder (default: $HANDCAST_HOME/mano)")
    m.add_argument("--fix-left-shapedirs", action="store_true",
                   help="negate the x column of MANO_LEFT's shape directions (needed for HOT3D fits)")
    m.set_defaults(func=_cmd_mano_import)
    m = msub.add_parser("info", help="say which hand model handcast will use and where it is")
    m.set_defaults(func=_cmd_mano_info)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except HandcastError as e:
        print(f"handcast {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"handcast {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into e.g. `head`: not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
