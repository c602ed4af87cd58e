"""Data subcommands: ``synth``, ``prepare``, ``export-gt``, ``evaluate``, ``baseline``, ``store check`` and
``render``."""

from __future__ import annotations

import argparse
from pathlib import Path

from handcast.cli.common import add_out_overwrite, add_overwrite, add_quiet, add_seed, int_range, pairs


def _synth(args: argparse.Namespace) -> None:
    from handcast.errors import HandcastError
    from handcast.synth import build_benchmark, with_groups

    groups = {}
    for split, n in pairs(args.groups, "--groups", "SPLIT=N", empty_value=False).items():
        try:
            groups[split] = int(n)
        except ValueError:
            raise HandcastError(f"--groups {split}: N must be an integer, got {n!r}") from None
    preset = with_groups(args.preset, groups)
    path = build_benchmark(preset, Path(args.out), seed=args.seed, overwrite=args.overwrite,
                           workers=args.workers, progress=not args.quiet)
    print(f"wrote synthetic benchmark '{preset.name}' to {path}")


def _prepare(args: argparse.Namespace) -> None:
    from handcast.data.prepare import prepare

    options = pairs(args.option, "--option")
    options.update({k: getattr(args, k) for k in ("hand_model", "mano_dir", "clip_len") if getattr(args, k) is not None})
    summary = prepare(args.dataset, args.root, args.out, split=args.split, progress=not args.quiet,
                      overwrite=args.overwrite, **options)
    print(summary.format())


def _export_gt(args: argparse.Namespace) -> None:
    from handcast.eval.export import export_ground_truth
    from handcast.io import check_output_file

    check_output_file(args.out, overwrite=args.overwrite, suffix=".npz")
    n = export_ground_truth(Path(args.store), args.split, Path(args.out))
    print(f"wrote ground truth of {n} clips to {args.out}")


def _evaluate(args: argparse.Namespace) -> None:
    from handcast.eval.evaluate import evaluate_files
    from handcast.io import check_output_file

    if args.json:
        check_output_file(args.json, overwrite=args.overwrite, suffix=".json", flag="--json")
    _, table = evaluate_files(Path(args.pred), Path(args.gt), json_out=Path(args.json) if args.json else None)
    print(table)


def _baseline_static(args: argparse.Namespace) -> None:
    from handcast.eval.baselines import static_pose_predictions
    from handcast.io import check_output_file

    check_output_file(args.out, overwrite=args.overwrite, suffix=".npz")
    n = static_pose_predictions(Path(args.store), args.split, Path(args.out), horizon=args.horizon)
    print(f"wrote static-pose predictions for {n} clips to {args.out}")


def _render(args: argparse.Namespace) -> None:
    from handcast.cli.common import refuse_existing
    from handcast.render.api import render_from_files

    if args.clip is not None and not str(args.clip).lstrip("-").isdigit():  # names known before any work
        refuse_existing(args.out, [f"{args.clip}.*", f"{args.clip}_pred_*"], args.overwrite)

    outputs = render_from_files(
        store=Path(args.store) if args.store else None, split=args.split, clip=args.clip,
        pred=Path(args.pred) if args.pred else None, sample=args.sample,
        out=Path(args.out), video=not args.no_video, max_frames=args.max_frames,
    )
    for p in outputs:
        print(f"wrote {p}")


def _store_check(args: argparse.Namespace) -> None:
    from handcast.data.store import check_store
    from handcast.errors import HandcastError

    problems = check_store(Path(args.store), finite=not args.no_finite)
    for p in problems:
        print(p)
    if problems:
        raise HandcastError(f"{len(problems)} problem(s) in {args.store}")
    print(f"{args.store}: no problems found")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("synth", help="build the synthetic bimanual benchmark (a clip store)")
    s.add_argument("--preset", default="tiny", help="benchmark size: smoke, tiny or paper (default: tiny)")
    add_out_overwrite(s, "output store folder", "replace an existing store at --out")
    add_seed(s)
    s.add_argument("--workers", type=int_range(1, 256), default=None,
                   help="worker processes (default: CPU count, max 2)")
    s.add_argument("--groups", action="append", default=[], metavar="SPLIT=N",
                   help="give SPLIT N groups instead of the preset's (repeatable); the other splits, and the "
                        "first groups of SPLIT, stay the preset's clips. E.g. --groups lab_train=4000: ten "
                        "times the tiny preset's 3D training clips, the same test clips")
    add_quiet(s)
    s.set_defaults(func=_synth)

    s = sub.add_parser("prepare", help="convert a public dataset (ARCTIC, H2O, HOT3D, DexYCB, ...) into a clip store")
    s.add_argument("dataset", help="arctic, h2o, h2o3d, hot3d, dexycb, assemblyhands, holoassist, egoexo4d, "
                   "freihand or ho3d (docs/datasets.md)")
    s.add_argument("--root", required=True, help="the dataset's download folder")
    add_out_overwrite(s, "clip store folder to write", "replace an existing store at --out")
    s.add_argument("--split", default=None, help="convert only this split (default: every split found)")
    s.add_argument("--hand-model", dest="hand_model", default=None, help="auto, mano, open or none")
    s.add_argument("--mano-dir", dest="mano_dir", default=None, help="folder of the imported MANO files")
    s.add_argument("--clip-len", dest="clip_len", default=None, help="cut sequences into clips of this many frames")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="a dataset option (docs/datasets.md); repeatable")
    add_quiet(s)
    s.set_defaults(func=_prepare)

    s = sub.add_parser("export-gt", help="write a ground-truth file of one split of a clip store")
    s.add_argument("--store", required=True, help="clip store folder")
    s.add_argument("--split", required=True, help="split name, e.g. lab_test")
    s.add_argument("--out", required=True, help="output .npz")
    add_overwrite(s, "--out")
    s.set_defaults(func=_export_gt)

    s = sub.add_parser("evaluate", help="score a prediction file against a ground-truth file")
    s.add_argument("--pred", required=True, help="prediction .npz (see docs/formats.md)")
    s.add_argument("--gt", required=True, help="ground-truth .npz (from handcast export-gt)")
    s.add_argument("--json", default=None, help="also write the metrics as JSON here")
    add_overwrite(s, "--json")
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("baseline", help="run a non-learned baseline and write a prediction file")
    bsub = s.add_subparsers(dest="baseline", metavar="BASELINE")
    bsub.required = True
    b = bsub.add_parser("static", help="hold the frame-0 pose still over the whole horizon")
    b.add_argument("--store", required=True, help="clip store folder")
    b.add_argument("--split", required=True, help="split name")
    b.add_argument("--out", required=True, help="output prediction .npz")
    b.add_argument("--horizon", type=int_range(1, 100000), default=None,
                   help="frames to predict (default: each clip's length)")
    add_overwrite(b, "--out")
    b.set_defaults(func=_baseline_static)

    s = sub.add_parser("store", help="clip store tools")
    ssub = s.add_subparsers(dest="store_command", metavar="ACTION")
    ssub.required = True
    c = ssub.add_parser("check", help="check every file of a clip store and report every problem, one per line")
    c.add_argument("store", help="clip store folder")
    c.add_argument("--no-finite", action="store_true", help="skip the scan for non-finite per-frame values")
    c.set_defaults(func=_store_check)

    s = sub.add_parser("render", help="render a clip or a prediction: overlay + second view PNG and an MP4")
    s.add_argument("--store", default=None, help="clip store folder (the clip, its image and camera)")
    s.add_argument("--split", default=None, help="split of --store")
    s.add_argument("--clip", default=None, help="clip id, or an index into the split (default: 0)")
    s.add_argument("--pred", default=None, help="prediction .npz to draw instead of the clip's ground truth")
    s.add_argument("--sample", type=int_range(0), default=0, help="which prediction sample to draw")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--no-video", action="store_true", help="write only the PNG")
    s.add_argument("--max-frames", type=int_range(1), default=None, help="render at most this many frames")
    add_overwrite(s, "the PNG / MP4 of that clip in --out")
    s.set_defaults(func=_render)
