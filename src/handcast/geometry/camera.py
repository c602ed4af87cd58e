"""Pinhole cameras and rigid transforms (torch, batched over leading dims, differentiable).

Conventions (see :mod:`handcast.conventions`)
  * OpenCV camera: x right, y down, z forward; pixel (u, v) with u to the right, v down, in pixels,
    the centre of the top-left pixel at (0, 0) as in OpenCV.
  * Intrinsics K (..., 3, 3) = [[fx, s, cx], [0, fy, cy], [0, 0, 1]] (skew s usually 0).
  * Rigid transforms are 4x4 matrices acting on column vectors: ``p' = R p + t``.
    ``world_to_cam`` maps points from a reference frame ("world", in handcast usually the frame-0
    camera) into the camera frame.

Leading dims broadcast in the usual numpy way: to apply one transform per frame to the 21
keypoints of that frame, pass ``T`` with shape (T, 1, 4, 4) and points with shape (T, 21, 3).

Every function also accepts numpy arrays (numpy in -> numpy out). The hot-path functions
(:func:`project`, :func:`unproject`) do not validate K (that would synchronise the GPU): validate
once where intrinsics enter the program with :func:`check_intrinsics`. :func:`resolve_intrinsics` is
the one place that decides the camera of a user's image (a given K, a K.json file, a field of view, a
focal length, or the default field of view :data:`~handcast.conventions.DEFAULT_FOV_DEG`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handcast.conventions import DEFAULT_FOV_DEG
from handcast.errors import HandcastError
from handcast.geometry._compat import as_float, bcross, matTvec, matvec, numpy_io

#: Points with depth z <= Z_EPS (metres) are "behind the camera" for :func:`project`.
Z_EPS = 1e-6
#: The horizontal fields of view (degrees, inclusive) :func:`resolve_intrinsics` accepts.
FOV_RANGE_DEG = (5.0, 170.0)


def check_intrinsics(K: Any, name: str = "intrinsics") -> Any:
    """Validate intrinsics K (..., 3, 3) (numpy or torch); return K unchanged.

    Raises HandcastError (one line) when the shape is not (..., 3, 3), any entry is not finite,
    fx = K[0, 0] or fy = K[1, 1] is <= 0, or the last row is not [0, 0, 1].
    """
    arr = K.detach().cpu().numpy() if isinstance(K, torch.Tensor) else np.asarray(K)
    if arr.ndim < 2 or arr.shape[-2:] != (3, 3):
        raise HandcastError(f"{name}: K has shape {tuple(arr.shape)} but expected (..., 3, 3)")
    if not np.issubdtype(arr.dtype, np.number):
        raise HandcastError(f"{name}: K has dtype {arr.dtype}, expected a numeric array")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise HandcastError(f"{name}: K contains NaN or infinite values")
    fx, fy = arr[..., 0, 0], arr[..., 1, 1]
    if (fx <= 0).any():
        raise HandcastError(f"{name}: focal length fx must be > 0 (got {float(fx.min()):g})")
    if (fy <= 0).any():
        raise HandcastError(f"{name}: focal length fy must be > 0 (got {float(fy.min()):g})")
    if not np.allclose(arr[..., 2, :], [0.0, 0.0, 1.0]) or not np.allclose(arr[..., 1, 0], 0.0):
        raise HandcastError(f"{name}: K must be upper triangular with last row [0, 0, 1]")
    return K


def make_intrinsics(fx: Any, fy: Any, cx: Any, cy: Any, skew: Any = 0.0,
                    dtype: torch.dtype | None = None, device: Any = None) -> torch.Tensor:
    """Build K (..., 3, 3) from focal lengths and principal point (pixels; numbers or tensors (...)).

    The dtype follows tensor inputs (else ``dtype`` or torch's default). Validated with
    :func:`check_intrinsics` (fx, fy > 0 and finite), raising HandcastError otherwise.
    """
    fx, fy, cx, cy, skew = as_float(fx, fy, cx, cy, skew)
    if dtype is not None or device is not None:
        fx, fy, cx, cy, skew = (v.to(dtype=dtype or v.dtype, device=device or v.device) for v in (fx, fy, cx, cy, skew))
    fx, fy, cx, cy, skew = torch.broadcast_tensors(fx, fy, cx, cy, skew)
    zero, one = torch.zeros_like(fx), torch.ones_like(fx)
    K = torch.stack([
        torch.stack([fx, skew, cx], -1),
        torch.stack([zero, fy, cy], -1),
        torch.stack([zero, zero, one], -1),
    ], -2)
    check_intrinsics(K)
    return K


def focal_from_fov(fov_deg: Any, size_px: Any) -> Any:
    """Focal length in pixels for a field of view (degrees, 0 < fov < 180) spanning ``size_px`` pixels.

    ``f = (size_px / 2) / tan(fov / 2)``. Floats in -> float out; arrays / tensors elementwise.
    """
    if isinstance(fov_deg, torch.Tensor) or isinstance(size_px, torch.Tensor):
        fov, size = as_float(fov_deg, size_px)
        if not bool(((fov > 0) & (fov < 180)).all()):
            raise HandcastError("focal_from_fov: field of view must be in (0, 180) degrees")
        return 0.5 * size / torch.tan(torch.deg2rad(fov) / 2)
    fov = np.asarray(fov_deg, dtype=np.float64)
    if not np.all((fov > 0) & (fov < 180)):
        raise HandcastError(f"focal_from_fov: field of view must be in (0, 180) degrees (got {fov_deg})")
    f = 0.5 * np.asarray(size_px, dtype=np.float64) / np.tan(np.deg2rad(fov) / 2)
    return float(f) if f.ndim == 0 else f


@numpy_io
def project(points: torch.Tensor, K: torch.Tensor, behind: str = "nan") -> torch.Tensor:
    """Project camera-frame points (..., 3) [m] with intrinsics K (..., 3, 3) -> pixels (..., 2).

    ``uv = (K[:2] @ p) / z``. Points with z <= :data:`Z_EPS` (behind or on the camera plane):
      * ``behind="nan"`` (default): their uv is NaN (the gradient of the other points is unaffected);
      * ``behind="clamp"``: z is clamped to Z_EPS, giving huge but finite uv (for losses).
    """
    if behind not in ("nan", "clamp"):
        raise HandcastError(f"project: behind must be 'nan' or 'clamp', got {behind!r}")
    points, K = as_float(points, K)
    z = points[..., 2:3]
    front = z > Z_EPS
    z_safe = torch.where(front, z, torch.full_like(z, Z_EPS))
    uv = matvec(K[..., :2, :], points) / z_safe
    if behind == "nan":
        uv = torch.where(front, uv, torch.full_like(uv, float("nan")))
    return uv


@numpy_io
def unproject(uv: torch.Tensor, depth: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Lift pixels (..., 2) at depth (...) [m, the camera z coordinate, not the ray length] -> (..., 3).

    Inverse of :func:`project` for points in front of the camera: ``p = depth * K^-1 [u, v, 1]``.
    """
    uv, depth, K = as_float(uv, depth, K)
    return depth.unsqueeze(-1) * pixel_rays(uv, K)


@numpy_io
def pixel_rays(uv: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame ray directions ``K^-1 [u, v, 1]`` (..., 3), NOT normalised (z = 1)."""
    uv, K = as_float(uv, K)
    fx, fy, cx, cy, s = K[..., 0, 0], K[..., 1, 1], K[..., 0, 2], K[..., 1, 2], K[..., 0, 1]
    y = (uv[..., 1] - cy) / fy
    x = (uv[..., 0] - cx - s * y) / fx
    return torch.stack([x, y, torch.ones_like(x)], -1)


@numpy_io
def rigid(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """4x4 rigid transform (..., 4, 4) from rotation R (..., 3, 3) and translation t (..., 3)."""
    R, t = as_float(R, t)
    batch = torch.broadcast_shapes(R.shape[:-2], t.shape[:-1])
    T = torch.zeros(*batch, 4, 4, dtype=R.dtype, device=R.device)
    T[..., :3, :3] = R
    T[..., :3, 3] = t
    T[..., 3, 3] = 1.0
    return T


@numpy_io
def transform_points(T: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 transforms T (..., 4, 4) to points p (..., 3): ``R p + t`` -> (..., 3)."""
    T, p = as_float(T, p)
    return matvec(T[..., :3, :3], p) + T[..., :3, 3]


@numpy_io
def invert_rigid(T: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid transforms (..., 4, 4): ``[R^T, -R^T t]`` (exact, no general inverse)."""
    (T,) = as_float(T)
    R, t = T[..., :3, :3], T[..., :3, 3]
    return rigid(R.transpose(-1, -2), -matTvec(R, t))


@numpy_io
def compose(*Ts: torch.Tensor) -> torch.Tensor:
    """Matrix product ``Ts[0] @ Ts[1] @ ...`` (..., 4, 4): the LAST transform is applied first.

    E.g. ``compose(cam_to_world_b, world_to_cam_a)`` maps camera-a points into camera b's world.
    """
    if not Ts:
        raise HandcastError("compose: needs at least one transform")
    Ts = tuple(as_float(*Ts))
    out = Ts[0]
    for T in Ts[1:]:
        out = out @ T
    return out


@numpy_io
def camera_center(world_to_cam: torch.Tensor) -> torch.Tensor:
    """Camera centre (..., 3) in the reference ("world") frame: ``c = -R^T t``."""
    (T,) = as_float(world_to_cam)
    return -matTvec(T[..., :3, :3], T[..., :3, 3])


@numpy_io
def look_at(eye: torch.Tensor, target: torch.Tensor, up: Any = (0.0, -1.0, 0.0)) -> torch.Tensor:
    """World-to-camera transform (..., 4, 4) of an OpenCV camera at ``eye`` looking at ``target``.

    eye, target, up: (..., 3) in the world frame [m]. The camera z axis points from eye to target,
    x = normalise(z x up) points right, y = z x x points down (so it is roughly ``-up``). The default
    ``up = (0, -1, 0)`` is "up" in an OpenCV-style world such as the frame-0 camera, so
    ``look_at(0, (0, 0, 1))`` is the identity. Raises HandcastError when eye == target or when up
    is parallel to the viewing direction.
    """
    eye, target, up = as_float(eye, target, up)
    fwd = target - eye
    n = torch.linalg.norm(fwd, dim=-1, keepdim=True)
    if bool((n <= 1e-12).any()):
        raise HandcastError("look_at: eye and target coincide")
    z = fwd / n
    x = bcross(z, up)
    nx = torch.linalg.norm(x, dim=-1, keepdim=True)
    if bool((nx <= 1e-9 * torch.linalg.norm(up, dim=-1, keepdim=True).clamp_min(1e-30)).any()):
        raise HandcastError("look_at: up vector is parallel to the viewing direction (or zero)")
    x = x / nx
    y = bcross(z, x)
    R = torch.stack([x, y, z], dim=-2)  # rows = camera axes in world coordinates
    return rigid(R, -matvec(R, eye))


def fov_intrinsics(fov_deg: float, width: int, height: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Square-pixel K (3, 3) with horizontal field of view ``fov_deg`` and principal point at the image centre.

    The centre is ``((width - 1) / 2, (height - 1) / 2)`` (OpenCV pixel-centre convention).
    """
    f = focal_from_fov(fov_deg, width)
    return make_intrinsics(f, f, (width - 1) / 2.0, (height - 1) / 2.0, dtype=dtype)


def read_intrinsics(path: str | os.PathLike) -> np.ndarray:
    """Read a K.json file -> K (3, 3) float64 pixels.

    The file (the ``--intrinsics K.json`` of ``handcast forecast``, ``pose`` and ``lift``) holds the 3x3
    matrix as a JSON list of rows, pixels, OpenCV convention: ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
    Raises HandcastError (one line, naming the file) when it is missing, not JSON, not 3x3 or not valid
    intrinsics (:func:`check_intrinsics`).
    """
    p = Path(path)
    if not p.is_file():
        raise HandcastError(f"intrinsics file not found: {p}")
    try:
        K = np.asarray(json.loads(p.read_text()), np.float64)
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise HandcastError(f"{p}: not a JSON 3x3 matrix ({e})") from None
    if K.shape != (3, 3):
        raise HandcastError(f"{p}: intrinsics must be a 3x3 matrix, got shape {K.shape}")
    return check_intrinsics(K, name=str(p))


def resolve_intrinsics(image_size: tuple[int, int] | None, fov: float | None = None,
                       K: Any = None, focal: float | None = None) -> np.ndarray:
    """The camera of one image: K (3, 3) float64, pixels, OpenCV convention.

    Give at most one of: ``K`` (3, 3) intrinsics, or the path of a K.json file (:func:`read_intrinsics`),
    validated with :func:`check_intrinsics` and returned as they are; ``fov`` the field of view across the
    image's longer side in degrees within :data:`FOV_RANGE_DEG` (the horizontal one of a landscape image; a
    camera's focal length in pixels does not change when it is turned to portrait, so a portrait photo of the
    same camera gets the same K, transposed); ``focal`` a focal length in pixels. With ``fov``, ``focal``
    or none of them (the default field of view :data:`~handcast.conventions.DEFAULT_FOV_DEG`) the pixels
    are square and the principal point is the centre ``((W - 1) / 2, (H - 1) / 2)`` of ``image_size``
    (W, H) pixels (not needed with ``K``). Raises HandcastError (one line, naming the command-line options
    ``--fov``, ``--focal`` and ``--intrinsics``) when more than one is given or a value is out of range.
    """
    given = [name for name, v in (("--fov", fov), ("--focal", focal), ("--intrinsics", K)) if v is not None]
    if len(given) > 1:
        raise HandcastError(f"give either {' or '.join(given)}, not {'both' if len(given) == 2 else 'all three'}")
    if isinstance(K, (str, os.PathLike)):
        return read_intrinsics(K)
    if K is not None:
        K = np.asarray(K, np.float64)
        if K.shape != (3, 3):
            raise HandcastError(f"intrinsics must be a 3x3 matrix, got shape {K.shape}")
        return check_intrinsics(K)
    if focal is None:
        fov = DEFAULT_FOV_DEG if fov is None else float(fov)
        if not FOV_RANGE_DEG[0] <= fov <= FOV_RANGE_DEG[1]:
            raise HandcastError(f"--fov must be a field of view in degrees (across the image's longer side) within "
                                f"[{FOV_RANGE_DEG[0]:g}, {FOV_RANGE_DEG[1]:g}], got {fov}")
        focal = focal_from_fov(fov, max(image_size[0], image_size[1]))
    elif not (np.isfinite(float(focal)) and float(focal) > 0):
        raise HandcastError(f"focal length must be a positive number of pixels, got {focal}")
    w, h = image_size
    f = float(focal)
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


__all__ = [
    "Z_EPS", "check_intrinsics", "make_intrinsics", "focal_from_fov", "fov_intrinsics", "project",
    "unproject", "pixel_rays", "rigid", "transform_points", "invert_rigid", "compose", "camera_center",
    "look_at", "read_intrinsics", "resolve_intrinsics", "FOV_RANGE_DEG",
]
