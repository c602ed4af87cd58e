"""Synthetic two-hand motion consistent with a hand model, for tests and benchmarks of the fitting
layer (no dataset needed).

:func:`synthetic_tracks` draws, per clip: shapes, finger poses around ``hands_mean`` inside the
joint limits varying smoothly over time, a random global orientation per hand with a slow
rotation, wrists ~0.3-0.6 m in front of the camera drifting slowly, intrinsics of a 640x480
camera, a smooth small camera motion, and the exact projections of the hand model's keypoints.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from handcast.data.clip import Clip
from handcast.data.testing import smooth_image
from handcast.fit.kinematics import fixed_shape_keypoints
from handcast.geometry import aa_to_rotmat, rotmat_to_aa


def _smooth(rng: np.random.Generator, shape: tuple, T: int, amp: float, freq=(0.2, 1.0), fps: float = 30.0):
    """Sum of two random sinusoids per entry: (T, *shape), amplitude ~amp."""
    t = np.arange(T)[:, None] / fps
    out = np.zeros((T,) + shape)
    flat = out.reshape(T, -1)
    n = flat.shape[1]
    for _ in range(2):
        f = rng.uniform(*freq, n)
        ph = rng.uniform(0, 2 * np.pi, n)
        a = rng.uniform(0.3, 1.0, n) * amp / 2
        flat += a * np.sin(2 * np.pi * f * t + ph)
    return flat.reshape((T,) + shape)


def synthetic_tracks(hand_model, B: int, T: int, seed: int = 0, dtype: torch.dtype = torch.float32,
                     device=None, image_size: tuple[int, int] = (640, 480), finger_spread: float = 0.35,
                     p_invalid: float = 0.0) -> dict[str, torch.Tensor]:
    """B random clips of T frames of both hands, exactly consistent with ``hand_model``.

    Returns tensors (device/dtype as asked): ``pose`` (B, T, 2, 16, 3) flat axis-angle (fingers
    within ``hand_model.joint_limits``), ``transl`` (B, T, 2, 3) m, ``betas`` (B, 2, 10),
    ``K`` (B, 3, 3) px, ``world_to_cam`` (B, T, 4, 4), ``hand_valid`` (B, T, 2) bool (a fraction
    ``p_invalid`` of (frame, hand) pairs false), ``joints3d`` (B, T, 2, 21, 3) m frame-0 camera,
    ``kp2d`` (B, T, 2, 21, 2) px exact projections, ``conf`` (B, T, 2, 21) ones on valid hands.
    All in the conventions of :mod:`handcast.conventions`.
    """
    rng = np.random.default_rng(seed)
    w, h = image_size
    lim = hand_model.joint_limits.detach().cpu().double().numpy()  # (2, 15, 3, 2)
    mean = hand_model.hands_mean.detach().cpu().double().numpy().reshape(2, 15, 3)
    lo, hi = lim[..., 0], lim[..., 1]
    pose = np.zeros((B, T, 2, 16, 3))
    transl = np.zeros((B, T, 2, 3))
    betas = np.clip(rng.normal(0, 0.7, (B, 2, 10)), -2, 2)
    K = np.zeros((B, 3, 3))
    W = np.tile(np.eye(4), (B, T, 1, 1))
    J0 = hand_model.rest_joints(torch.as_tensor(betas, dtype=hand_model.kp_J_template.dtype,
                                                device=hand_model.kp_J_template.device))[..., 0, :]
    J0 = J0.detach().cpu().double().numpy()  # (B, 2, 3)
    for b in range(B):
        f = rng.uniform(0.8, 1.2) * w
        K[b] = [[f, 0, w / 2 + rng.uniform(-10, 10)], [0, f * rng.uniform(0.99, 1.01), h / 2 + rng.uniform(-10, 10)],
                [0, 0, 1]]
        for hh in range(2):
            base = mean[hh] + rng.uniform(-1, 1, (15, 3)) * finger_spread * (hi[hh] - lo[hh]) / 2
            fing = base[None] + _smooth(rng, (15, 3), T, 0.25)
            pose[b, :, hh, 1:] = np.clip(fing, lo[hh], hi[hh])
            # global orientation: random, then a slow wobble (composed rotation vectors)
            R0 = aa_to_rotmat(rng.normal(0, 1, 3) * rng.uniform(0.5, math.pi) / 1.7)
            wob = aa_to_rotmat(_smooth(rng, (3,), T, 0.4))
            pose[b, :, hh, 0] = rotmat_to_aa(wob @ R0)
            side = 1.0 if hh == 0 else -1.0
            wrist = np.array([side * rng.uniform(0.04, 0.12), rng.uniform(-0.02, 0.08), rng.uniform(0.35, 0.55)])
            wrist = wrist[None] + _smooth(rng, (3,), T, 0.06)
            transl[b, :, hh] = wrist - J0[b, hh]
        rv = _smooth(rng, (3,), T, 0.08)
        tr = _smooth(rng, (3,), T, 0.04)
        rv -= rv[:1]
        tr -= tr[:1]
        W[b, :, :3, :3] = aa_to_rotmat(rv)
        W[b, :, :3, 3] = tr
        W[b, 0] = np.eye(4)
    valid = rng.random((B, T, 2)) >= p_invalid
    fl = dict(dtype=torch.float64)
    pose_t = torch.tensor(pose, **fl)
    transl_t = torch.tensor(transl, **fl)
    betas_t = torch.tensor(betas, **fl)

    j3d = fixed_shape_keypoints(hand_model, pose_t, betas_t, transl_t)  # (B, T, 2, 21, 3)
    Wt = torch.tensor(W, **fl)
    cam = torch.einsum("btij,bthkj->bthki", Wt[:, :, :3, :3], j3d) + Wt[:, :, None, None, :3, 3]
    Kt = torch.tensor(K, **fl)
    uv = torch.einsum("bij,bthkj->bthki", Kt, cam)
    kp2d = uv[..., :2] / uv[..., 2:3]
    conf = valid[..., None].astype(np.float64).repeat(21, -1)
    out = dict(pose=pose_t, transl=transl_t, betas=betas_t, K=Kt, world_to_cam=Wt, joints3d=j3d, kp2d=kp2d,
               conf=torch.tensor(conf, **fl), hand_valid=torch.tensor(valid))
    dev = device if device is not None else hand_model.kp_J_template.device
    return {k: (v.to(device=dev, dtype=dtype) if v.dtype.is_floating_point else v.to(dev)) for k, v in out.items()}


def synthetic_clips(hand_model, lengths, seed: int = 0, provenance: str = "gt", domain: str = "synthetic",
                    image_size: tuple[int, int] = (640, 480), with_image: bool = False, p_invalid: float = 0.0,
                    prefix: str = "clip") -> list:
    """:class:`handcast.data.Clip` objects (one per entry of ``lengths``, T frames each) made with
    :func:`synthetic_tracks`: 3D labels, 2D keypoints and cameras all consistent with ``hand_model``.

    ``provenance`` is written as given (for "2d-only" the 3D fields still hold the true values, so a
    test can poison or compare them). ``with_image`` adds a small smooth image of ``image_size``.
    """
    rng = np.random.default_rng(seed)
    clips = []
    for k, T in enumerate(lengths):
        d = synthetic_tracks(hand_model, 1, int(T), seed=seed * 1000 + k, dtype=torch.float64, device="cpu",
                             image_size=image_size, p_invalid=p_invalid)
        a = {n: v[0].numpy() for n, v in d.items()}
        clips.append(Clip(
            clip_id=f"{prefix}-{k:03d}", pose=a["pose"], transl=a["transl"], betas=a["betas"], valid=a["hand_valid"],
            joints3d=a["joints3d"], kp2d=a["kp2d"], kp2d_conf=a["conf"], K=a["K"], world_to_cam=a["world_to_cam"],
            image_size=image_size, image=smooth_image(rng, *image_size) if with_image else None,
            provenance=provenance, domain=domain, fps=30.0, hand_model=hand_model.kind,
            meta={"source": "synthetic_clips", "index": k}))
    return clips
