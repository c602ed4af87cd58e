"""Cameras over a sequence of frames: projection through a per-frame camera, and the in-image test.

Both accept torch tensors or numpy arrays (numpy in -> numpy out, the dtype kept); conventions as
in :mod:`handcast.geometry.camera` (OpenCV camera, pixel centres at integer coordinates).
"""

from __future__ import annotations

from typing import Any

import torch

from handcast.geometry._compat import as_float, numpy_io
from handcast.geometry.camera import project, transform_points


@numpy_io
def project_frames(K: torch.Tensor, world_to_cam: torch.Tensor, points: torch.Tensor,
                   behind: str = "nan") -> torch.Tensor:
    """Pixels (T, ..., 2) of points (T, ..., 3) [m, reference frame] seen by camera t.

    K: (3, 3) intrinsics, pixels. world_to_cam: (T, 4, 4) reference frame -> camera t (in handcast
    usually the frame-0 camera -> camera t). ``behind`` as in :func:`project` (default: NaN for points
    with camera depth z <= Z_EPS).
    """
    world_to_cam, points = as_float(world_to_cam, points)
    per_frame = world_to_cam.reshape(world_to_cam.shape[:1] + (1,) * (points.dim() - 2) + (4, 4))
    return project(transform_points(per_frame, points), K, behind=behind)


def in_image(uv: Any, image_size: tuple[int, int]) -> Any:
    """Whether pixels (..., 2) lie in an image of ``image_size`` (width, height): -0.5 <= u <= width - 0.5
    and -0.5 <= v <= height - 0.5 (the outer edges of the border pixels). Bool (...), numpy or torch
    like ``uv``; False for NaN."""
    w, h = image_size
    u, v = uv[..., 0], uv[..., 1]
    return (u >= -0.5) & (u <= w - 0.5) & (v >= -0.5) & (v <= h - 0.5)


__all__ = ["project_frames", "in_image"]
