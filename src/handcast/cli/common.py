"""Flags that several subcommands share, each defined once, and small parsing helpers of the command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Iterator, Sequence

from handcast.conventions import DEFAULT_FOV_DEG
from handcast.errors import HandcastError


class _SamplerNames:
    """The names of :data:`handcast.diffusion.SAMPLERS` as argparse ``choices``, imported only when argparse
    checks a ``--sampler`` value or prints help (importing :mod:`handcast.diffusion` imports torch, which
    building the parser must not)."""

    def __iter__(self) -> Iterator[str]:
        from handcast.diffusion import SAMPLERS

        return iter(SAMPLERS)

    def __contains__(self, name: object) -> bool:
        return name in list(self)


def add_samples(p: argparse.ArgumentParser, what: str) -> None:
    """``--samples N`` (default 5); ``what`` says what one sample is, e.g. 'futures to sample'."""
    p.add_argument("--samples", type=int, default=5, help=f"{what} (default 5)")


def add_sampler(p: argparse.ArgumentParser, steps: int = 10, steps_help: str = "sampler steps (default %(default)s)") -> None:
    """``--sampler`` (one of handcast.diffusion.SAMPLERS, default ddim) and ``--steps`` (default ``steps``)."""
    p.add_argument("--sampler", default="ddim", choices=_SamplerNames(), metavar="SAMPLER",
                   help="%(choices)s (default %(default)s)")
    p.add_argument("--steps", type=int, default=steps, help=steps_help)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_camera(p: argparse.ArgumentParser, fov_default: str = f"{DEFAULT_FOV_DEG:g}") -> None:
    """``--fov DEG`` and ``--intrinsics K.json`` (give one: handcast.geometry.resolve_intrinsics);
    ``fov_default`` describes the camera used without either."""
    p.add_argument("--fov", type=float, default=None, metavar="DEG",
                   help=f"horizontal field of view in degrees (default: {fov_default})")
    p.add_argument("--intrinsics", default=None, metavar="K.json", help="3x3 intrinsics matrix as JSON (pixels)")


def add_out_overwrite(p: argparse.ArgumentParser, out_help: str, overwrite_help: str, required: bool = True) -> None:
    """``--out`` (an output folder, default None) and ``--overwrite`` (replace it if it exists)."""
    p.add_argument("--out", required=required, default=None, help=out_help)
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_train(p: argparse.ArgumentParser, resume_help: str, overrides_help: str) -> None:
    """The flags of every ``handcast train MODEL``: ``--config``, ``--out``, ``--resume``, ``--quiet`` and the
    KEY=VALUE config overrides."""
    p.add_argument("--config", default="tiny", help="preset name (tiny, paper) or a YAML file (default: tiny)")
    p.add_argument("--out", default=None, help="run folder (overrides train.out)")
    p.add_argument("--resume", action="store_true", help=resume_help)
    add_quiet(p)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help=overrides_help)


def add_lightning(p: argparse.ArgumentParser) -> None:
    """Where a Lightning training runs: ``--accelerator``, ``--devices``, ``--num-nodes``, ``--strategy``."""
    p.add_argument("--accelerator", default="cpu", help="cpu, gpu or auto (default: cpu)")
    p.add_argument("--devices", default=1, type=lambda v: v if v == "auto" else int(v), help="devices per node")
    p.add_argument("--num-nodes", type=int, default=1)
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: auto)")


def pairs(items: Sequence[str], flag: str, form: str = "KEY=VALUE", empty_value: bool = True) -> dict[str, str]:
    """Repeated ``KEY=VALUE`` arguments of ``flag`` -> {KEY: VALUE}; a one-line HandcastError showing ``form``
    for an item without '=', with an empty KEY, or with an empty VALUE unless ``empty_value``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not (value or empty_value):
            raise HandcastError(f"{flag} takes {form}, got '{item}'")
        out[key] = value
    return out


def command_line() -> str:
    """The command as typed (benchmark reports record it)."""
    return "handcast " + shlex.join(sys.argv[1:])
