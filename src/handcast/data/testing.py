"""Random but self-consistent clips for tests (no hand model needed).

``random_clip`` builds 3D joints in front of every camera, a smooth camera trajectory and
2D keypoints that are the exact pinhole projections ``project(K, world_to_cam[t] @ joints3d[t])``.
Pose, translation and betas are random numbers (not consistent with the joints).
"""

from __future__ import annotations

import numpy as np

from handcast.data.clip import Clip
from handcast.geometry import aa_to_rotmat, project_frames


def project(K: np.ndarray, world_to_cam: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pinhole projection of frame-0-camera points into camera t (:func:`handcast.geometry.project_frames`).

    Args:
        K: (3, 3) intrinsics, pixels.
        world_to_cam: (T, 4, 4) frame-0 camera -> camera t.
        points: (T, ..., 3) metres in the frame-0 camera.
    Returns:
        (T, ..., 2) pixels (u, v), float64; NaN for points behind camera t.
    """
    f64 = np.float64
    return project_frames(np.asarray(K, f64), np.asarray(world_to_cam, f64), np.asarray(points, f64))


def smooth_image(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random uint8 (height, width, 3) RGB image (JPEG-friendly)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.empty((height, width, 3))
    for c in range(3):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
        img[..., c] = 127.5 + 100 * np.sin(2 * np.pi * (fx * xx / width + fy * yy / height) + ph)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def random_clip(
    rng: np.random.Generator,
    T: int,
    with_image: bool = False,
    *,
    clip_id: str | None = None,
    provenance: str = "gt",
    domain: str = "synthetic",
    hand_model: str = "mano",
    image_size: tuple[int, int] = (64, 48),
    p_valid: float = 0.85,
    fps: float = 30.0,
) -> Clip:
    """A random self-consistent clip of ``T`` frames (valid by ``Clip.validate``).

    3D: wrists start ~0.5 m in front of the frame-0 camera (right hand at +x, left at -x) and drift
    slowly; the 21 joints scatter ~4 cm around the wrist. Cameras: identity at t = 0, then a smooth
    random walk (a few degrees, a few cm) so every joint stays in front of every camera.
    ``kp2d`` is the exact projection (float32), ``kp2d_conf`` is in [0.3, 1] on valid hands and 0
    elsewhere. ``image`` (with ``with_image``) is a smooth random picture of ``image_size``.
    """
    T = int(T)
    w, h = image_size
    f = rng.uniform(0.9, 1.3) * w
    K = np.array([[f, 0, w / 2 + rng.uniform(-2, 2)], [0, f * rng.uniform(0.98, 1.02), h / 2], [0, 0, 1]])
    # camera trajectory: small smooth rotations and translations
    rv = np.cumsum(rng.normal(0, 0.004, (T, 3)), axis=0)
    tr = np.cumsum(rng.normal(0, 0.002, (T, 3)), axis=0)
    rv -= rv[0]
    tr -= tr[0]
    W = np.tile(np.eye(4), (T, 1, 1))
    W[:, :3, :3] = aa_to_rotmat(np.asarray(rv, np.float64))
    W[:, :3, 3] = tr
    W[0] = np.eye(4)
    # hands
    base = np.array([[0.08, 0.03, 0.5], [-0.08, 0.03, 0.5]]) + rng.normal(0, 0.02, (2, 3))
    wrist = base[None] + np.cumsum(rng.normal(0, 0.002, (T, 2, 3)), axis=0)
    offsets = rng.normal(0, 0.04, (2, 21, 3))
    offsets[:, 0] = 0.0
    joints = wrist[:, :, None, :] + offsets[None] + rng.normal(0, 0.002, (T, 2, 21, 3))
    kp2d = project(K, W, joints)
    valid = rng.random((T, 2)) < p_valid
    conf = np.where(valid[..., None], rng.uniform(0.3, 1.0, (T, 2, 21)), 0.0)
    pose = rng.normal(0, 0.3, (T, 2, 16, 3))
    transl = wrist + rng.normal(0, 0.01, (T, 2, 3))
    cid = clip_id if clip_id is not None else f"clip-{rng.integers(0, 2**48):012x}"
    return Clip(
        clip_id=cid,
        pose=pose,
        transl=transl,
        betas=rng.normal(0, 1, (2, 10)),
        valid=valid,
        joints3d=joints,
        kp2d=kp2d,
        kp2d_conf=conf,
        K=K,
        world_to_cam=W,
        image_size=(w, h),
        image=smooth_image(rng, w, h) if with_image else None,
        provenance=provenance,
        domain=domain,
        fps=fps,
        hand_model=hand_model,
        meta={"source": "random_clip", "T": T, "note": "café ✓"},
    )
