"""Egocentric head-mounted camera: intrinsics per domain and a smooth head trajectory.

The head sits behind the table's near edge, looks down at the table, sways a little and turns
towards the acting hands. All matrices here are world -> camera (OpenCV: x right, y down,
z forward); the clip stores ``world_to_cam[t] = C_t @ C_0^-1`` (frame-0 camera -> camera t).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from handcast.geometry import project
from handcast.synth.domains import DomainSpec

__all__ = ["CameraRig", "sample_rig", "head_trajectory", "look_at_np", "project_np"]

WORLD_UP = np.array([0.0, 0.0, 1.0])


@dataclass
class CameraRig:
    """The camera of frame 0 and how the head moves.

    K: (3, 3) intrinsics, pixels. image_size: (width, height). fov_deg: horizontal field of view.
    eye: (3,) head (camera centre) position, world, m. target: (3,) look-at point on the table, world.
    roll: rotation about the optical axis, rad. follow: gaze gain towards the acting hands (0..1).
    sway: amplitude (m) of the slow head translation.
    """

    K: np.ndarray
    image_size: tuple[int, int]
    fov_deg: float
    eye: np.ndarray
    target: np.ndarray
    roll: float
    follow: float
    sway: float

    def to_json(self) -> dict:
        return {
            "fov_deg": round(float(self.fov_deg), 3),
            "eye_world": [round(float(x), 4) for x in self.eye],
            "target_world": [round(float(x), 4) for x in self.target],
            "roll": round(float(self.roll), 4),
        }


def look_at_np(eye: np.ndarray, target: np.ndarray, roll: np.ndarray | float = 0.0) -> np.ndarray:
    """World->camera (..., 4, 4) OpenCV transforms at ``eye`` (..., 3) looking at ``target`` (..., 3),
    world z up, rotated by ``roll`` (...) radians about the optical axis. float64."""
    eye = np.asarray(eye, np.float64)
    target = np.asarray(target, np.float64)
    z = target - eye
    z = z / np.linalg.norm(z, axis=-1, keepdims=True)
    x = np.cross(z, WORLD_UP)
    x = x / np.linalg.norm(x, axis=-1, keepdims=True)
    y = np.cross(z, x)
    roll = np.asarray(roll, np.float64)[..., None]
    c, s = np.cos(roll), np.sin(roll)
    x2 = c * x + s * y
    y2 = -s * x + c * y
    R = np.stack([x2, y2, z], axis=-2)
    T = np.zeros(eye.shape[:-1] + (4, 4))
    T[..., :3, :3] = R
    T[..., :3, 3] = -np.einsum("...ij,...j->...i", R, eye)
    T[..., 3, 3] = 1.0
    return T


def project_np(points_cam: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points (..., 3) -> (pixels (..., 2), depth z (...)).

    Points with z <= 1e-6 get pixel coordinates computed with z clamped (callers mask them)."""
    p = np.asarray(points_cam, np.float64)
    return project(p, np.asarray(K, np.float64), behind="clamp"), p[..., 2]


def _sample_rig_once(rng: np.random.Generator, dom: DomainSpec, image_size: tuple[int, int]) -> CameraRig:
    w, h = image_size
    fov = float(rng.uniform(*dom.fov_deg))
    f = 0.5 * w / np.tan(np.radians(fov) / 2)
    cx = 0.5 * w + rng.uniform(-1, 1) * dom.principal_jitter * w
    cy = 0.5 * h + rng.uniform(-1, 1) * dom.principal_jitter * h
    K = np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])
    height = float(rng.uniform(*dom.cam_height))
    back = float(rng.uniform(*dom.cam_back))
    side = float(rng.uniform(*dom.cam_side))
    tilt = np.radians(rng.uniform(*dom.cam_tilt_deg))
    yaw = np.radians(rng.uniform(*dom.cam_yaw_deg))
    roll = np.radians(rng.uniform(*dom.cam_roll_deg))
    eye = np.array([side, -back, height])
    horiz = height / np.tan(tilt)  # where the optical axis meets the table
    fwd = np.array([np.sin(yaw), np.cos(yaw), 0.0])
    target = eye + fwd * horiz
    target[2] = 0.0
    return CameraRig(
        K=K, image_size=(int(w), int(h)), fov_deg=fov, eye=eye, target=target, roll=float(roll),
        follow=float(rng.uniform(*dom.head_follow)), sway=float(rng.uniform(*dom.head_sway)),
    )


def sample_rig(
    rng: np.random.Generator, dom: DomainSpec, image_size: tuple[int, int], must_see: np.ndarray | None = None,
    margin: float = 0.06, tries: int = 50,
) -> CameraRig:
    """Sample the frame-0 head camera of domain ``dom``.

    must_see: optional (N, 3) world points (the resting wrists, the objects) that frame 0 must show
    at least ``margin`` (fraction of the image size) inside the image border; rigs are re-drawn
    (up to ``tries`` times, always from ``rng``, so the result stays deterministic) until they do,
    else the rig seeing the most points is kept.
    """
    w, h = image_size
    best, best_n = None, -1
    for _ in range(tries):
        rig = _sample_rig_once(rng, dom, image_size)
        if must_see is None or len(must_see) == 0:
            return rig
        C = look_at_np(rig.eye, rig.target, rig.roll)
        pc = np.asarray(must_see, np.float64) @ C[:3, :3].T + C[:3, 3]
        uv, z = project_np(pc, rig.K)
        ok = (z > 0.05) & (uv[:, 0] > margin * w) & (uv[:, 0] < (1 - margin) * w) \
            & (uv[:, 1] > margin * h) & (uv[:, 1] < (1 - margin) * h)
        n_ok = int(ok.sum())
        if n_ok == len(ok):
            return rig
        if n_ok > best_n:
            best, best_n = rig, n_ok
    return best


def _smooth_noise(rng: np.random.Generator, t: np.ndarray, n: int, freq: tuple[float, float]) -> np.ndarray:
    """(len(t), n) sum of 3 random sinusoids per channel, zero at t = 0, unit-ish amplitude."""
    out = np.zeros((len(t), n))
    for _ in range(3):
        f = rng.uniform(*freq, size=n)
        ph = rng.uniform(0, 2 * np.pi, size=n)
        out += np.sin(2 * np.pi * f * t[:, None] + ph) - np.sin(ph)
    return out / 3.0


def _critically_damped(x: np.ndarray, dt: float, omega: float) -> np.ndarray:
    """Causal second-order low-pass (critically damped spring) of x (T, d), starting at rest at x[0]."""
    y = np.empty_like(x)
    pos = x[0].copy()
    vel = np.zeros_like(pos)
    sub = 4
    h = dt / sub
    y[0] = pos
    for t in range(1, len(x)):
        for _ in range(sub):
            acc = omega * omega * (x[t] - pos) - 2 * omega * vel
            vel = vel + h * acc
            pos = pos + h * vel
        y[t] = pos
    return y


def head_trajectory(
    rig: CameraRig, focus: np.ndarray, rng: np.random.Generator, fps: float
) -> np.ndarray:
    """World->camera transforms (T, 4, 4) for every frame; frame 0 is exactly the rig's camera.

    focus: (T, 3) world point the person attends to (e.g. the mean of the acting hands); the gaze
    follows it with gain ``rig.follow`` through a causal low-pass filter (so frame 0 never depends
    on the future). The head also sways slowly (amplitude ``rig.sway``) and rolls a little.
    """
    T = len(focus)
    t = np.arange(T) / fps
    filt = _critically_damped(np.asarray(focus, np.float64), 1.0 / fps, omega=2 * np.pi * 0.9)
    delta = filt - filt[0]
    target = rig.target + rig.follow * delta
    target[:, 2] = rig.target[2] + 0.5 * rig.follow * delta[:, 2]
    sway = rig.sway * _smooth_noise(rng, t, 3, (0.1, 0.5))
    eye = rig.eye + sway + 0.25 * rig.follow * delta * np.array([1.0, 0.3, 0.2])
    roll = rig.roll + np.radians(1.5) * _smooth_noise(rng, t, 1, (0.1, 0.4))[:, 0]
    C = look_at_np(eye, target, roll)
    C[0] = look_at_np(rig.eye, rig.target, rig.roll)
    return C
