"""Benchmark presets: which splits, how many clips, how long, how large the image.

A split is a number of *groups*; every group is one scene and first frame with ``futures`` different
continuations (clips that share ``group_id`` and frame 0 exactly). Training splits use one future
per group; test splits several, so diversity and multimodality can be measured against ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from handcast.errors import HandcastError

__all__ = ["SplitSpec", "Preset", "PRESETS", "SPLITS", "get_preset", "with_groups"]

SPLITS: tuple[str, ...] = ("lab_train", "lab_val", "lab_test", "diverse_train", "diverse_test", "wild_test")


@dataclass(frozen=True)
class SplitSpec:
    domain: str  # "lab" | "diverse" | "wild"
    groups: int  # number of distinct scenes / first frames
    futures: int = 1  # clips per group (same first frame, different futures)

    @property
    def n_clips(self) -> int:
        return self.groups * self.futures


@dataclass(frozen=True)
class Preset:
    name: str
    n_frames: int  # frames per clip (30 fps)
    image_size: tuple[int, int]  # (width, height) of the rendered first frame, pixels
    splits: dict  # split name -> SplitSpec, in SPLITS order
    description: str = ""

    @property
    def n_clips(self) -> int:
        return sum(s.n_clips for s in self.splits.values())


def _splits(lab_train, lab_val, lab_test, diverse_train, diverse_test, wild_test) -> dict:
    return {
        "lab_train": SplitSpec("lab", lab_train),
        "lab_val": SplitSpec("lab", lab_val),
        "lab_test": SplitSpec("lab", *lab_test),
        "diverse_train": SplitSpec("diverse", diverse_train),
        "diverse_test": SplitSpec("diverse", *diverse_test),
        "wild_test": SplitSpec("wild", *wild_test),
    }


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        "smoke", 32, (256, 256),
        _splits(4, 2, (2, 3), 4, (1, 3), (1, 3)),
        "a handful of clips per split for tests (< 10 s)",
    ),
    "tiny": Preset(
        "tiny", 64, (256, 256),
        _splits(400, 50, (20, 3), 400, (20, 3), (20, 3)),
        "CPU-sized benchmark: 1,030 clips of 64 frames (about a minute to build on 2 cores)",
    ),
    "paper": Preset(
        "paper", 256, (256, 256),
        _splits(20000, 1000, (400, 5), 20000, (400, 5), (400, 5)),
        "paper-scale benchmark: 47,000 clips of 256 frames",
    ),
}


def get_preset(preset: str | Preset) -> Preset:
    """The :class:`Preset` named ``preset``; HandcastError listing the presets if unknown."""
    if isinstance(preset, Preset):
        return preset
    try:
        return PRESETS[preset]
    except (KeyError, TypeError):
        raise HandcastError(f"unknown synth preset {preset!r}; choose from {', '.join(PRESETS)}") from None


#: most groups one split may be given by :func:`with_groups`
MAX_GROUPS = 1_000_000


def with_groups(preset: str | Preset, groups: dict[str, int]) -> Preset:
    """``preset`` with the number of groups of some splits changed (``{split: groups}``; each split keeps its
    domain and futures per group). Since a group's clips depend only on the seed, the split and the group's
    index, the other splits, and the first groups of a changed split, are the same clips as in ``preset``:
    ``with_groups("tiny", {"lab_train": 4000})`` is the tiny benchmark with ten times its 3D training clips
    and the same test clips. One-line HandcastError for an unknown split or a count outside 1..MAX_GROUPS."""
    from dataclasses import replace

    p = get_preset(preset)
    if not groups:
        return p
    splits = dict(p.splits)
    for split, n in groups.items():
        if split not in SPLITS:
            raise HandcastError(f"unknown split {split!r} (splits: {', '.join(SPLITS)})")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_GROUPS:
            raise HandcastError(f"{split}: groups must be an integer in [1, {MAX_GROUPS}], got {n!r}")
        splits[split] = replace(splits[split], groups=n)
    changed = [f"{k}={v}" for k, v in groups.items()]
    return replace(p, name=" ".join([p.name, *changed]), splits=splits,
                   description=f"{p.description} (groups changed: {', '.join(changed)})")
