"""``handcast mano import`` and ``handcast mano info``: the official MANO model files."""

from __future__ import annotations

import argparse
from pathlib import Path


def _import(args: argparse.Namespace) -> None:
    from handcast.hand.mano_import import mano_import_main

    out = mano_import_main(Path(args.right), Path(args.left), Path(args.out) if args.out else None,
                           fix_left=args.fix_left_shapedirs)
    print(f"wrote safe MANO model files to {out}")


def _info(args: argparse.Namespace) -> None:
    from handcast.hand import describe_installed_models

    print(describe_installed_models())


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("mano", help="official MANO model files")
    msub = s.add_subparsers(dest="mano_command", metavar="ACTION")
    msub.required = True
    m = msub.add_parser("import", help="convert the official MANO pickles to safe npz files (no chumpy)")
    m.add_argument("right", help="path to MANO_RIGHT.pkl")
    m.add_argument("left", help="path to MANO_LEFT.pkl")
    m.add_argument("--out", default=None, help="folder (default: $HANDCAST_HOME/mano)")
    m.add_argument("--fix-left-shapedirs", action="store_true",
                   help="negate the x column of MANO_LEFT's shape directions (needed for HOT3D fits)")
    m.set_defaults(func=_import)
    m = msub.add_parser("info", help="say which hand model handcast will use and where it is")
    m.set_defaults(func=_info)
