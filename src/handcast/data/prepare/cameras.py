"""Camera helpers of the dataset converters that :mod:`handcast.geometry` does not have (numpy,
float64): cleaning a dataset's rigid transforms, (w, x, y, z) quaternions, and turning a camera (and
its image, intrinsics and pixels) by quarter turns about its optical axis.

Projection, rigid transforms and rotation conversions are :mod:`handcast.geometry`'s.
"""

from __future__ import annotations

import numpy as np

from handcast.errors import HandcastError


def orthonormalize(M: np.ndarray) -> np.ndarray:
    """Rigid (..., 4, 4) with its rotation projected to the nearest proper rotation (SVD)."""
    M = np.array(M, dtype=np.float64)
    U, _, Vt = np.linalg.svd(M[..., :3, :3])
    D = np.ones(M.shape[:-2] + (3,))
    D[..., 2] = np.sign(np.linalg.det(U @ Vt))
    M[..., :3, :3] = (U * D[..., None, :]) @ Vt
    M[..., 3, :] = (0.0, 0.0, 0.0, 1.0)
    return M


def check_rigid(M: np.ndarray, what: str, tol: float = 2e-2) -> np.ndarray:
    """``M`` (..., 4, 4) as a clean rigid transform; HandcastError if it is far from one."""
    M = np.asarray(M, np.float64)
    if not np.isfinite(M).all():
        raise HandcastError(f"{what}: non-finite camera transform")
    R = M[..., :3, :3]
    err = np.abs(R @ np.swapaxes(R, -1, -2) - np.eye(3)).max() if R.size else 0.0
    if err > tol or (R.size and (np.linalg.det(R) <= 0).any()):
        raise HandcastError(f"{what}: camera transform is not a rotation + translation (|R R^T - I| = {err:.2g})")
    return orthonormalize(M)


def quat_wxyz_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) (..., 4) in (w, x, y, z) order -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(n > 1e-8):
        raise HandcastError("zero quaternion")
    w, x, y, z = np.moveaxis(q / n, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def rotation_cw(k: int) -> np.ndarray:
    """Camera rotation (3, 3) for an image turned ``k`` quarter turns clockwise: x_new = R x_old."""
    R1 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return np.linalg.matrix_power(R1, int(k) % 4)


def rotate_intrinsics_cw(K: np.ndarray, size: tuple[int, int], k: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Intrinsics and (width, height) of an image turned ``k`` quarter turns clockwise (zero skew).

    One clockwise turn maps pixel (u, v) of a W x H image to (H - 1 - v, u) (pixel centres at integer
    coordinates, conventions.md): fx' = fy, fy' = fx, cx' = H - 1 - cy, cy' = cx.
    """
    K = np.array(K, dtype=np.float64)
    w, h = int(size[0]), int(size[1])
    for _ in range(int(k) % 4):
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        K = np.array([[fy, 0.0, h - 1 - cy], [0.0, fx, cx], [0.0, 0.0, 1.0]])
        w, h = h, w
    return K, (w, h)


def rotate_uv_cw(uv: np.ndarray, size: tuple[int, int], k: int) -> np.ndarray:
    """Pixels (..., 2) of a W x H image -> pixels of the image turned ``k`` quarter turns clockwise."""
    uv = np.array(uv, dtype=np.float64)
    w, h = int(size[0]), int(size[1])
    for _ in range(int(k) % 4):
        uv = np.stack([h - 1 - uv[..., 1], uv[..., 0]], -1)
        w, h = h, w
    return uv
