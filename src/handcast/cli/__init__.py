"""The ``handcast`` command line: parses arguments and delegates to one plain function per subcommand.

Every subcommand's work lives in a library function a user can call from Python; this package only
parses, imports that function lazily (so ``handcast --help`` is fast) and turns a
:class:`~handcast.errors.HandcastError` into a one-line message and a non-zero exit code.

One module per group of subcommands registers their parsers and handlers: :mod:`~handcast.cli.data`
(synth, prepare, export-gt, evaluate, baseline, render), :mod:`~handcast.cli.train` (train, impute),
:mod:`~handcast.cli.bench`, :mod:`~handcast.cli.infer` (pose, forecast, lift, detect),
:mod:`~handcast.cli.view` (view, export-meshes) and :mod:`~handcast.cli.mano`; the flags several of them
share are defined once in :mod:`~handcast.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from handcast import __version__
from handcast.cli import bench, data, infer, mano, train, view
from handcast.errors import HandcastError

EXIT_USER_ERROR = 2


class _RangeHelp(argparse.HelpFormatter):
    """Help that states the accepted range of every flag typed by cli.common.int_range / float_range."""

    def _get_help_string(self, action):
        text = action.help or ""
        span = getattr(action.type, "span", None)
        return f"{text} [range {span}]" if span and text != argparse.SUPPRESS else text


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error: ``handcast CMD: error: MESSAGE (see handcast CMD --help)``, exit 2
    (subcommand parsers are of the same class)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _RangeHelp)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        first = message.splitlines()[0] if message else "bad arguments"
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {first} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="handcast",
        description="4D hand motion: lifting 2D tracks to 3D, forecasting from one image, single-image pose; "
        "synthetic benchmark, dataset converters, detection, evaluation, rendering, viewer, hand models.",
    )
    p.add_argument("--version", action="version", version=f"handcast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in (data, train, bench, infer, view, mano):
        group.register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # KEY=VALUE config overrides may stand anywhere on the command line, not only together
        if isinstance(getattr(args, "overrides", None), list) and all("=" in a and not a.startswith("-") for a in extra):
            args.overrides.extend(extra)
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
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
