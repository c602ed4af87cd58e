"""Flags that several subcommands share, each defined once, and small parsing helpers of the command line."""

from __future__ import annotations

import argparse
import math
import os
import re
import shlex
import sys
from typing import Callable, Iterator, Sequence

from handcast.conventions import DEFAULT_FOV_DEG
from handcast.errors import HandcastError


#: the most sampler steps: the training steps of every shipped diffusion schedule
MAX_STEPS = 1000
#: random seeds: what numpy and torch both accept
SEED_RANGE = (0, 2**32 - 1)


def int_range(lo: int | None = None, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer within [lo, hi] (None: unbounded); argparse names the flag in the
    one-line error, which gives the range."""
    span = f"[{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}]"

    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer in {span}, got '{text}'") from None
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text}")
        return v

    parse.__name__ = "integer"
    parse.span = span  # type: ignore[attr-defined]  (the help shows it)
    return parse


def float_range(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    """An argparse ``type``: a finite number within [lo, hi] (``lo_open``: (lo, hi]); NaN and inf refused."""
    span = f"{'(' if lo_open else '['}{'-inf' if lo is None else f'{lo:g}'}, {'inf' if hi is None else f'{hi:g}'}]"

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number in {span}, got '{text}'") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number in {span}, got {text}")
        if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be in {span}, got {text}")
        return v

    parse.__name__ = "number"
    if lo is not None or hi is not None:
        parse.span = span  # type: ignore[attr-defined]  (the help shows it)
    return parse


def device_name(text: str) -> str:
    """An argparse ``type``: a torch device name, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""
    if not re.fullmatch(r"cpu|mps|cuda(:\d{1,3})?", text):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda, cuda:N or mps, got '{text}'")
    return text


def devices_count(text: str) -> int | str:
    """An argparse ``type`` of ``--devices``: ``auto`` or a count >= 1 (checked against the machine later)."""
    return text if text == "auto" else int_range(1, 4096)(text)


def cpu_count() -> int:
    """CPU cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def check_device(device: str | None, flag: str = "--device") -> None:
    """Refuse (one-line HandcastError) a device that does not exist on this machine."""
    if device is None or device == "cpu":
        return
    import torch

    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise HandcastError(f"{flag} mps: no MPS device on this machine")
        return
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":")[1]) if ":" in device else 0
    if index >= n:
        raise HandcastError(f"{flag} {device}: this machine has {n} CUDA device(s)")


#: --accelerator values (Lightning's names)
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "auto")


def check_lightning(args: argparse.Namespace) -> None:
    """Refuse (one-line HandcastError) ``--devices`` beyond what the machine has for ``--accelerator``, and
    a ``--strategy`` Lightning does not know; before any work starts."""
    acc, devices = args.accelerator, args.devices
    if acc == "mps":
        check_device("mps", "--accelerator")
    elif acc in ("gpu", "cuda"):
        import torch

        if not torch.cuda.is_available():
            raise HandcastError(f"--accelerator {acc}: this machine has no CUDA device")
    if devices != "auto":
        if acc == "cpu":
            have, what = cpu_count(), "CPU core(s)"
        elif acc in ("gpu", "cuda"):
            import torch

            have, what = torch.cuda.device_count(), "CUDA device(s)"
        else:
            have, what = None, ""
        if have is not None and devices > have:
            raise HandcastError(f"--devices {devices}: this machine has {have} {what} for --accelerator {acc}")
    if args.strategy != "auto":
        from lightning.pytorch.strategies import StrategyRegistry

        names = sorted(StrategyRegistry.available_strategies())
        if args.strategy not in names:
            raise HandcastError(f"--strategy '{args.strategy}' is not a Lightning strategy "
                                f"(e.g. auto, ddp, ddp_spawn, fsdp, deepspeed)")


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux /proc/meminfo MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(need: float, what: str) -> None:
    """Refuse (one-line HandcastError with both numbers) work estimated to need ``need`` bytes when the
    machine has less available; ``what`` names the flags that set the size."""
    have = available_memory()
    if have is not None and need > have:
        raise HandcastError(f"{what} needs about {need / 2**30:.1f} GiB of memory, "
                            f"{have / 2**30:.1f} GiB is available: ask for less")


def attention_memory(batch: float, tokens: float, width: int = 1024, heads: int = 16) -> float:
    """A generous estimate (bytes, float32) of one transformer layer's activations at inference: ``batch``
    sequences of ``tokens`` tokens (the attention matrices dominate for long sequences)."""
    return 4.0 * batch * (heads * tokens * tokens * 2 + tokens * width * 8)


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
    p.add_argument("--samples", type=int_range(1, 1000), default=5, help=f"{what} (default 5)")


def add_sampler(p: argparse.ArgumentParser, steps: int = 10, steps_help: str = "sampler steps (default %(default)s)") -> None:
    """``--sampler`` (one of handcast.diffusion.SAMPLERS, default ddim) and ``--steps`` (default ``steps``)."""
    p.add_argument("--sampler", default="ddim", choices=_SamplerNames(), metavar="SAMPLER",
                   help="%(choices)s (default %(default)s)")
    p.add_argument("--steps", type=int_range(1, MAX_STEPS), default=steps, help=steps_help)


def add_seed(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int_range(*SEED_RANGE), default=0, help="random seed (default 0)")


def add_image_use(p: argparse.ArgumentParser) -> None:
    """``--keypoints-only`` / ``--use-image``: whether the pose cascade looks at the image crop or estimates from
    the 2D keypoints (and crop camera) alone; neither: the default of :mod:`handcast.infer.pose`
    (``DEFAULT_KEYPOINTS_ONLY``)."""
    g = p.add_mutually_exclusive_group()
    g.add_argument("--keypoints-only", dest="keypoints_only", action="store_true", default=None,
                   help="estimate from the 2D keypoints alone, the image tokens hidden (docs/pose.md)")
    g.add_argument("--use-image", dest="keypoints_only", action="store_false",
                   help="condition on the image crop as well as the 2D keypoints")


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", type=device_name, default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_camera(p: argparse.ArgumentParser, fov_default: str = f"{DEFAULT_FOV_DEG:g}") -> None:
    """``--fov DEG`` and ``--intrinsics K.json`` (give one: handcast.geometry.resolve_intrinsics);
    ``fov_default`` describes the camera used without either."""
    p.add_argument("--fov", type=float_range(), default=None, metavar="DEG",  # range: resolve_intrinsics
                   help=f"field of view in degrees across the image's longer side (the horizontal one of a landscape "
                   f"image; default: {fov_default})")
    p.add_argument("--intrinsics", default=None, metavar="K.json", help="3x3 intrinsics matrix as JSON (pixels)")


def add_out_overwrite(p: argparse.ArgumentParser, out_help: str, overwrite_help: str, required: bool = True) -> None:
    """``--out`` (an output folder, default None) and ``--overwrite`` (replace it if it exists)."""
    p.add_argument("--out", required=required, default=None, help=out_help)
    p.add_argument("--overwrite", action="store_true", help=overwrite_help)


def add_overwrite(p: argparse.ArgumentParser, what: str = "the output") -> None:
    """``--overwrite``: replace an existing output (a user's file is never touched without it)."""
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists")


def refuse_existing(out_dir, names, overwrite: bool) -> None:
    """Before any work: the output folder ``out_dir`` must not be a file, and none of ``names`` (file names, or
    glob patterns) may exist in it unless ``overwrite``. One-line HandcastError otherwise."""
    from handcast.errors import HandcastError
    from handcast.io import check_output_dir

    out_dir = check_output_dir(out_dir)
    if overwrite or not out_dir.is_dir():
        return
    for n in names:
        hit = sorted(out_dir.glob(n))
        if hit:
            raise HandcastError(f"{hit[0]} already exists (pass --overwrite to replace, or another --out)")
    return None


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
    p.add_argument("--accelerator", default="cpu", choices=ACCELERATORS, help="%(choices)s (default: cpu)")
    p.add_argument("--devices", default=1, type=devices_count,
                   help="devices per node: a count up to the CPU cores / GPUs there are, or auto (default 1)")
    p.add_argument("--num-nodes", type=int_range(1, 4096), default=1)
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
