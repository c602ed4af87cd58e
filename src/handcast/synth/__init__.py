"""The synthetic bimanual benchmark: scenes, motion, egocentric cameras and first-frame rendering.

Public API::

    from handcast.synth import PRESETS, DOMAINS, build_benchmark, generate_clip, generate_futures

    clip = generate_clip(seed=0, domain="lab")                 # one Clip (64 frames, 256x256 image)
    group = generate_futures(seed=0, domain="diverse", n=3)    # 3 Clips sharing frame 0
    clip, video = generate_video_clip(seed=0, n_frames=30)     # every frame rendered (T, 480, 640, 3)
    build_benchmark("tiny", "data/synth_tiny")                 # all six splits into a clip store

Importing this package reads no files and creates no GL context; heavy modules load on first use.
See docs/synth.md for the design (actions, grasps, domains, presets, determinism).
"""

from handcast.synth.domains import DOMAINS, DetectorNoise, DomainSpec, get_domain
from handcast.synth.presets import PRESETS, SPLITS, Preset, SplitSpec, get_preset, with_groups

__all__ = [
    "DOMAINS", "DetectorNoise", "DomainSpec", "get_domain",
    "PRESETS", "SPLITS", "Preset", "SplitSpec", "get_preset", "with_groups",
    "build_benchmark", "generate_clip", "generate_futures", "generate_video_clip",
]


def __getattr__(name: str):
    if name in ("generate_clip", "generate_futures", "generate_video_clip"):
        from handcast.synth import generate

        return getattr(generate, name)
    if name == "build_benchmark":
        from handcast.synth.build import build_benchmark

        return build_benchmark
    raise AttributeError(f"module 'handcast.synth' has no attribute {name!r}")
