"""MANO pose conversions: rotation representations, flat vs mean-relative, PCA, mirroring, limits.

Poses are axis-angle per joint in MANO order (joint 0 = global orientation, 1..15 = fingers),
expressed in the model's rest frame (MANO's convention). The functions accept torch tensors or
numpy arrays (and return the same kind) unless stated otherwise.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from handcast.errors import HandcastError

ArrayT = TypeVar("ArrayT", torch.Tensor, np.ndarray)

REPS = ("aa", "6d", "rotmat")
CONVENTIONS = ("flat", "mean_relative")
_REP_TAIL = {"aa": (3,), "6d": (6,), "rotmat": (3, 3)}


def _finger_mean(hands_mean: ArrayT) -> ArrayT:
    """(..., 45) -> (..., 15, 3)."""
    if hands_mean.shape[-1] != 45:
        raise HandcastError(f"hands_mean must have 45 values in its last axis, got shape {tuple(hands_mean.shape)}")
    return hands_mean.reshape(tuple(hands_mean.shape[:-1]) + (15, 3))


def _check_aa(pose_aa, name: str = "pose_aa") -> None:
    if pose_aa.ndim < 2 or tuple(pose_aa.shape[-2:]) != (16, 3):
        raise HandcastError(f"{name} must have shape (..., 16, 3) (axis-angle, MANO order), got {tuple(pose_aa.shape)}")


def _add_to_fingers(pose_aa: ArrayT, delta: ArrayT) -> ArrayT:
    if isinstance(pose_aa, torch.Tensor):
        fingers = pose_aa[..., 1:, :] + torch.as_tensor(delta, dtype=pose_aa.dtype, device=pose_aa.device)
        return torch.cat([pose_aa[..., :1, :].expand(fingers.shape[:-2] + (1, 3)), fingers], dim=-2)
    fingers = np.asarray(pose_aa)[..., 1:, :] + np.asarray(delta)
    root = np.broadcast_to(np.asarray(pose_aa)[..., :1, :], fingers.shape[:-2] + (1, 3))
    return np.concatenate([root, fingers], axis=-2)


def mean_relative_to_flat(pose_aa: ArrayT, hands_mean: ArrayT) -> ArrayT:
    """Mean-relative MANO pose -> flat pose: add ``hands_mean`` to the 15 finger joints.

    pose_aa: (..., 16, 3) axis-angle (rad), MANO order, joint 0 = global orientation (unchanged).
    hands_mean: (45,) or broadcastable (..., 45), e.g. (2, 45) for a (..., 2, 16, 3) pose.
    The addition is on the axis-angle vectors, exactly as MANO/smplx do (not a composition).
    """
    _check_aa(pose_aa)
    return _add_to_fingers(pose_aa, _finger_mean(hands_mean))


def flat_to_mean_relative(pose_aa: ArrayT, hands_mean: ArrayT) -> ArrayT:
    """Flat MANO pose -> mean-relative: subtract ``hands_mean`` from the 15 finger joints.

    Shapes as in :func:`mean_relative_to_flat`; the exact inverse of it.
    """
    _check_aa(pose_aa)
    return _add_to_fingers(pose_aa, -_finger_mean(hands_mean))


def pca_to_pose(coeffs: ArrayT, components: ArrayT, n: int | None = None) -> ArrayT:
    """PCA coefficients -> 45 finger axis-angle values.

    coeffs: (..., n); components: (45, 45) (MANO ``hands_components``: rows are components);
    returns (..., 45) = coeffs @ components[:n]. Like MANO's PCA, the result is relative to the
    PCA mean: add ``hands_mean`` (e.g. with :func:`mean_relative_to_flat`) to get a flat pose.
    """
    n = coeffs.shape[-1] if n is None else int(n)
    if coeffs.shape[-1] != n:
        raise HandcastError(f"expected {n} PCA coefficients in the last axis, got {coeffs.shape[-1]}")
    if n < 1 or n > components.shape[0] or components.shape[-1] != 45:
        raise HandcastError(f"cannot use {n} components of a basis with shape {tuple(components.shape)}")
    if isinstance(coeffs, torch.Tensor):
        comps = torch.as_tensor(components, dtype=coeffs.dtype, device=coeffs.device)[:n]
        return coeffs @ comps
    return np.asarray(coeffs) @ np.asarray(components)[:n]


def mirror_pose(pose_aa: ArrayT) -> ArrayT:
    """Mirror an axis-angle pose between the right and the left hand (x = 0 mirror plane):
    negates the y and z component of every axis-angle triple. pose_aa: (..., 3)."""
    if pose_aa.shape[-1] != 3:
        raise HandcastError(f"axis-angle poses need a last axis of size 3, got {tuple(pose_aa.shape)}")
    if isinstance(pose_aa, torch.Tensor):
        return pose_aa * torch.tensor([1.0, -1.0, -1.0], dtype=pose_aa.dtype, device=pose_aa.device)
    return np.asarray(pose_aa) * np.array([1.0, -1.0, -1.0])


def clamp_to_limits(pose_aa: ArrayT, limits: ArrayT) -> ArrayT:
    """Clamp the 15 finger joints of a pose to box limits on their axis-angle components.

    pose_aa: (..., 16, 3) flat convention (joint 0, the global orientation, is left unchanged);
    limits: (15, 3, 2) [lower, upper] in rad, or broadcastable, e.g. (2, 15, 3, 2) for a
    (..., 2, 16, 3) pose (see ``HandModel.joint_limits``).
    """
    _check_aa(pose_aa)
    if tuple(limits.shape[-3:]) != (15, 3, 2):
        raise HandcastError(f"limits must have shape (..., 15, 3, 2), got {tuple(limits.shape)}")
    if isinstance(pose_aa, torch.Tensor):
        lim = torch.as_tensor(limits, dtype=pose_aa.dtype, device=pose_aa.device)
        fingers = torch.maximum(torch.minimum(pose_aa[..., 1:, :], lim[..., 1]), lim[..., 0])
        root = pose_aa[..., :1, :].expand(fingers.shape[:-2] + (1, 3))
        return torch.cat([root, fingers], dim=-2)
    lim = np.asarray(limits)
    fingers = np.clip(pose_aa[..., 1:, :], lim[..., 0], lim[..., 1])
    root = np.broadcast_to(pose_aa[..., :1, :], fingers.shape[:-2] + (1, 3))
    return np.concatenate([root, fingers], axis=-2)


def check_rep(pose: torch.Tensor, rep: str, joints: int = 16) -> tuple[int, ...]:
    """Validate a pose tensor for representation ``rep``; return its leading shape (before joints)."""
    if rep not in REPS:
        raise HandcastError(f"unknown rotation representation {rep!r}; use one of {', '.join(REPS)}")
    tail = (joints,) + _REP_TAIL[rep]
    if tuple(pose.shape[-len(tail):]) != tail or pose.ndim < len(tail):
        raise HandcastError(f"pose with rep={rep!r} must have shape (..., {', '.join(map(str, tail))}), "
                            f"got {tuple(pose.shape)}")
    return tuple(pose.shape[: pose.ndim - len(tail)])


def to_rotmat(pose: torch.Tensor, rep: str) -> torch.Tensor:
    """Rotations in representation ``rep`` -> rotation matrices (..., 3, 3).

    aa: (..., 3) axis-angle (rad), converted with smplx's Rodrigues formula (the one MANO uses);
    6d: (..., 6) first two columns of the matrix, row-major (see handcast.conventions);
    rotmat: (..., 3, 3) returned as is.
    """
    if rep == "rotmat":
        return pose
    if rep == "6d":
        import roma

        return roma.special_gramschmidt(pose.reshape(pose.shape[:-1] + (3, 2)))
    if rep == "aa":
        from smplx.lbs import batch_rodrigues

        lead = pose.shape[:-1]
        if pose.numel() == 0:
            return pose.new_zeros(lead + (3, 3))
        return batch_rodrigues(pose.reshape(-1, 3)).reshape(lead + (3, 3))
    raise HandcastError(f"unknown rotation representation {rep!r}; use one of {', '.join(REPS)}")


def to_axis_angle(pose: torch.Tensor, rep: str) -> torch.Tensor:
    """Rotations in representation ``rep`` -> axis-angle (..., 3) (rad)."""
    if rep == "aa":
        return pose
    import roma

    return roma.rotmat_to_rotvec(to_rotmat(pose, rep))
