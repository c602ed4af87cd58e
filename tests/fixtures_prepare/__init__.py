"""Shared helpers for the dataset-converter tests: a synthetic two-hand motion made with the OPEN hand
model standing in for MANO, a moving camera, and checks of a converted clip against that truth.

Everything is built in code inside tmp_path (no binary fixtures are committed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handcast.geometry import aa_to_rotmat, rotmat_to_aa


@dataclass
class Motion:
    """Ground truth of a fixture (T frames, hands (right, left), metres, flat MANO convention).

    pose (T, 2, 16, 3) world; transl (T, 2, 3) world; betas (2, 10); joints (T, 2, 21, 3) world, common
    order; cam_from_world (T, 4, 4); K (3, 3); size (w, h).
    """

    pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    joints: np.ndarray
    cam_from_world: np.ndarray
    K: np.ndarray
    size: tuple[int, int]


def keypoints(hm, pose, betas, transl) -> np.ndarray:
    """(..., 2, 21, 3) keypoints of the hand model ``hm`` (float64)."""
    t = [torch.tensor(np.array(x, dtype=np.float64)) for x in (pose, betas, transl)]
    with torch.no_grad():
        return hm.keypoints(*t).numpy()


def finger_pose(rng, T, hm=None) -> np.ndarray:
    """(T, 2, 15, 3) smooth, moderate finger rotations (flat convention)."""
    base = rng.normal(0, 0.15, (1, 2, 15, 3))
    drift = np.cumsum(rng.normal(0, 0.02, (T, 2, 15, 3)), axis=0)
    return base + drift


def make_motion(rng, T, hm, *, static_camera=False, size=(320, 240), fingers=None, world_rot=True,
                dist=0.5) -> Motion:
    """Two hands ~``dist`` m in front of the frame-0 camera, a camera that moves a little (or not).

    The world frame is a random rigid transform away from the frame-0 camera (``world_rot``), so a
    converter that forgets a world->camera step fails the checks.
    """
    pose = np.zeros((T, 2, 16, 3))
    pose[:, :, 1:] = finger_pose(rng, T) if fingers is None else fingers
    # global orientation: palm roughly facing the camera, slowly rotating
    g = np.array([[np.pi / 2, 0.0, 0.0], [np.pi / 2, 0.0, 0.0]]) + rng.normal(0, 0.2, (2, 3))
    pose[:, :, 0] = g + np.cumsum(rng.normal(0, 0.01, (T, 2, 3)), axis=0)
    betas = rng.normal(0, 0.5, (2, 10))
    J0 = keypoints(hm, np.zeros((2, 16, 3)), betas, np.zeros((2, 3)))[:, 0]
    wrist_cam0 = np.array([[0.08, 0.02, dist], [-0.08, 0.02, dist]]) + np.cumsum(rng.normal(0, 0.002, (T, 2, 3)), 0)
    # frame-0 camera -> world
    if world_rot:
        Rw = aa_to_rotmat(rng.normal(0, 1.0, 3))
        tw = rng.normal(0, 1.0, 3)
    else:
        Rw, tw = np.eye(3), np.zeros(3)
    world_from_cam0 = np.eye(4)
    world_from_cam0[:3, :3], world_from_cam0[:3, 3] = Rw, tw
    # camera t relative to camera 0 (small motion)
    cam_t_from_cam0 = np.tile(np.eye(4), (T, 1, 1))
    if not static_camera:
        rv = np.cumsum(rng.normal(0, 0.01, (T, 3)), axis=0)
        rv -= rv[0]
        tr = np.cumsum(rng.normal(0, 0.003, (T, 3)), axis=0)
        tr -= tr[0]
        cam_t_from_cam0[:, :3, :3] = aa_to_rotmat(rv)
        cam_t_from_cam0[:, :3, 3] = tr
    cam0_from_world = np.linalg.inv(world_from_cam0)
    cam_from_world = cam_t_from_cam0 @ cam0_from_world
    # hands: put the wrist joint at wrist_cam0 (in cam0), then express in world
    pose_w = pose.copy()
    pose_w[:, :, 0] = rotmat_to_aa(Rw @ aa_to_rotmat(pose[:, :, 0]))
    wrist_w = wrist_cam0 @ Rw.T + tw
    transl_w = wrist_w - J0  # keypoint 0 (wrist) = J0 rotated about itself + transl
    joints = keypoints(hm, pose_w, betas, transl_w)
    w, h = size
    K = np.array([[0.9 * w, 0.0, w / 2 - 3.0], [0.0, 0.92 * w, h / 2 + 2.0], [0.0, 0.0, 1.0]])
    return Motion(pose_w, transl_w, betas, joints, cam_from_world, K, size)


def project(K, cam_from_world, X) -> np.ndarray:
    """(T, ..., 3) world points -> (T, ..., 2) pixels in camera t."""
    T = X.shape[0]
    flat = X.reshape(T, -1, 3)
    cam = flat @ np.swapaxes(cam_from_world[:, :3, :3], -1, -2) + cam_from_world[:, None, :3, 3]
    uvw = cam @ K.T
    with np.errstate(divide="ignore", invalid="ignore"):  # unlabelled (zero) joints project to NaN
        return (uvw[..., :2] / uvw[..., 2:]).reshape(X.shape[:-1] + (2,))


def clip_reprojection(clip) -> np.ndarray:
    """|project(K, world_to_cam[t] @ joints3d[t]) - kp2d| per keypoint (T, 2, 21) pixels."""
    uv = project(clip.K.astype(np.float64), clip.world_to_cam.astype(np.float64), clip.joints3d.astype(np.float64))
    return np.linalg.norm(uv - clip.kp2d, axis=-1)


def check_clip(clip, hm=None, *, joints_world=None, cam_from_world=None, frames=None, kp2d_truth=None,
               tol_m=2e-4, tol_px=0.05, check_pose=True):
    """Assert a converted clip agrees with a fixture's truth.

    joints_world (N, 2, 21, 3) + cam_from_world (N, 4, 4): the truth over the fixture's frames;
    ``frames`` (T,) which fixture frames the clip holds. kp2d_truth (N, 2, 21, 2): the dataset's own
    stored 2D keypoints (or the projection of its 3D ones) -- the round trip.
    """
    clip.validate()
    v = clip.valid
    assert v.any()
    assert np.allclose(clip.world_to_cam[0], np.eye(4), atol=1e-6)
    frames = np.arange(clip.num_frames) if frames is None else np.asarray(frames)
    if joints_world is not None:
        Jw = joints_world[frames]
        M0 = cam_from_world[frames[0]]
        truth = Jw @ M0[:3, :3].T + M0[:3, 3]
        err = np.abs(clip.joints3d - truth)[v]
        assert err.max() < tol_m, err.max()
        # world_to_cam[t] = cam_t <- cam_0
        W = cam_from_world[frames] @ np.linalg.inv(M0)
        assert np.allclose(clip.world_to_cam, W, atol=1e-5)
    # the round trip: stored 3D projected with the stored camera lands on the 2D keypoints
    conf = clip.kp2d_conf > 0
    assert conf.any()
    reproj = clip_reprojection(clip)
    m = conf & v[..., None]
    if m.any():
        assert reproj[m].max() < tol_px, reproj[m].max()
    if kp2d_truth is not None:
        d = np.linalg.norm(clip.kp2d - kp2d_truth[frames], axis=-1)[conf]
        assert d.max() < tol_px, d.max()
    if check_pose and hm is not None and clip.meta.get("pose_params") == "gt":
        kp = keypoints(hm, clip.pose.astype(np.float64), np.broadcast_to(clip.betas, (clip.num_frames, 2, 10)),
                       clip.transl.astype(np.float64))
        err = np.abs(kp - clip.joints3d)[v]
        assert err.max() < tol_m, err.max()


def jpeg_bytes(w, h, seed=0, gray=False) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = (rng.uniform(0, 255, (h, w) if gray else (h, w, 3))).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def png_bytes(w, h, seed=0) -> bytes:
    import io

    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.uniform(0, 255, (h, w, 3)).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def no_mano_dir(tmp_path):
    """A folder with no MANO files (so 'auto'/'mano' see MANO as absent)."""
    d = tmp_path / "no_mano"
    d.mkdir(exist_ok=True)
    return d


def rest_wrist(hm, betas) -> np.ndarray:
    """J0 per hand (2, 3) for betas (2, 10)."""
    with torch.no_grad():
        return hm.rest_joints(torch.as_tensor(betas, dtype=torch.float64))[..., 0, :].numpy()


def fit_to_frame(pose, transl, betas, M, hm):
    """A MANO fit (pose (T, 2, 16, 3), transl (T, 2, 3)) moved by x' = M x (M (T, 4, 4) or (4, 4)):
    R_g' = R R_g, transl' = R (transl + J0) + t - J0. Written independently of the converters."""
    M = np.broadcast_to(M, (pose.shape[0], 4, 4))
    J0 = rest_wrist(hm, betas)
    R, t = M[:, None, :3, :3], M[:, None, :3, 3]
    out = pose.copy()
    out[:, :, 0] = rotmat_to_aa(R @ aa_to_rotmat(pose[:, :, 0]))
    tr = np.einsum("thij,thj->thi", np.broadcast_to(R, pose.shape[:2] + (3, 3)), transl + J0) + t - J0
    return out, tr


def to_camera(M, X):
    """World points (T, ..., 3) -> camera t with M (T, 4, 4)."""
    T = X.shape[0]
    flat = X.reshape(T, -1, 3)
    return (flat @ np.swapaxes(M[:, :3, :3], -1, -2) + M[:, None, :3, 3]).reshape(X.shape)


def fmt(values) -> str:
    return " ".join(f"{float(v):.9g}" for v in np.asarray(values).ravel()) + "\n"
