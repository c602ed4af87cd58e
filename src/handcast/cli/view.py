"""Subcommands that turn a result file into something to look at: ``view`` and ``export-meshes``."""

from __future__ import annotations

import argparse

from handcast.cli.common import int_range


def _view(args: argparse.Namespace) -> None:
    from handcast.io import check_output_file
    from handcast.render.viewer import write_viewer

    check_output_file(args.out, overwrite=args.overwrite)
    path = write_viewer(args.result, args.out, title=args.title, clip=args.clip)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def _export_meshes(args: argparse.Namespace) -> None:
    from handcast.cli.common import refuse_existing
    from handcast.render.export import export_meshes

    refuse_existing(args.out, [f"frame_*.{args.format}"], args.overwrite)
    paths = export_meshes(args.result, args.out, fmt=args.format, sample=args.sample, clip=args.clip)
    print(f"wrote {len(paths)} meshes to {args.out}")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("view", help="a self-contained interactive 3D HTML page of a forecast or lift result")
    s.add_argument("result", help="result .npz (handcast forecast or lift, a prediction or ground-truth file)")
    s.add_argument("--out", required=True, help="output .html")
    s.add_argument("--title", default=None, help="page title")
    s.add_argument("--clip", type=int_range(0), default=0, help="which clip of a prediction / ground-truth file")
    s.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    s.set_defaults(func=_view)

    s = sub.add_parser("export-meshes", help="one mesh per frame (OBJ, PLY or GLB) of a result's hands")
    s.add_argument("result", help="result .npz with MANO parameters or vertices")
    s.add_argument("--out", required=True, help="output folder")
    s.add_argument("--format", default="obj", choices=("obj", "ply", "glb"))
    s.add_argument("--sample", type=int_range(0), default=0, help="which sample of a multi-sample result")
    s.add_argument("--clip", type=int_range(0), default=0, help="which clip of a prediction / ground-truth file")
    s.add_argument("--overwrite", action="store_true", help="replace meshes of that format already in --out")
    s.set_defaults(func=_export_meshes)
