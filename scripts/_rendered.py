"""Rendered synthetic videos for the ``bench_*_rendered.py`` scripts (imported from the scripts folder)."""

from __future__ import annotations

import json
from pathlib import Path


def rendered_videos(folder: str | Path, domains, clips: int, frames: int = 64, size=(640, 480)):
    """For each domain and seed 1000 + i (i < ``clips``): (domain, seed, clip, frames (T, H, W, 3) uint8, the video
    written to ``folder``, a K.json of its intrinsics there), from :func:`handcast.synth.generate_video_clip`."""
    from handcast.render.video import write_video
    from handcast.synth import generate_video_clip

    for dom in domains:
        for i in range(clips):
            seed = 1000 + i
            c, video = generate_video_clip(seed, dom, n_frames=frames, image_size=tuple(size))
            path = Path(folder) / f"{dom}_{seed}.mp4"
            write_video(path, video, c.fps)
            kj = Path(folder) / f"{dom}_{seed}_K.json"
            kj.write_text(json.dumps(c.K.astype(float).tolist()))
            yield dom, seed, c, video, path, kj
