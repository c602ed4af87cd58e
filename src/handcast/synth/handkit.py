"""The hand model as the synthesiser uses it: rest skeleton, anatomical axes, joint limits, FK.

One :class:`HandKit` per person (betas). The hand model itself (``handcast.hand.HandModel``) is
created once per process and cached (:func:`get_hand_model`); nothing is loaded at import time.
"""

from __future__ import annotations

import numpy as np

from handcast.synth.grasps import HandAxes

__all__ = ["get_hand_model", "HandKit"]

_MODELS: dict = {}


def get_hand_model(kind: str = "open"):
    """The process-wide ``handcast.hand.HandModel(kind)`` (created on first use, in eval mode)."""
    m = _MODELS.get(kind)
    if m is None:
        from handcast.hand import HandModel

        m = HandModel(kind=kind)
        m.eval()
        _MODELS[kind] = m
    return m


def model_kind(model) -> str:
    """"open" or "mano": which hand model ``model`` is (for ``Clip.hand_model``)."""
    for attr in ("kind", "name", "model_kind"):
        v = getattr(model, attr, None)
        if isinstance(v, str) and v in ("open", "mano"):
            return v
    return "open"


class HandKit:
    """Planning helpers for one pair of hands with shape ``betas`` (2, 10).

    rest: (2, 21, 3) float64 rest-pose (zero pose, zero translation) keypoints in the model's
        canonical frame, common order; J0: (2, 3) rest wrist joints (MANO rotates about them).
    axes: per hand :class:`HandAxes` measured on ``rest``.
    limits: (2, 15, 3, 2) joint limits on the flat axis-angle of the 15 finger joints (lo, hi).
    """

    def __init__(self, model, betas: np.ndarray):
        import torch

        self.model = model
        self.betas = np.asarray(betas, np.float32).reshape(2, 10)
        self._betas_t = torch.from_numpy(self.betas)
        self.rest = self._fk(np.zeros((1, 2, 16, 3)))[0]
        self.J0 = self.rest[:, 0].copy()
        self.axes = [HandAxes.from_rest(self.rest[h], h) for h in (0, 1)]
        lim = getattr(model, "joint_limits", None)
        if lim is None:
            self.limits = None
        else:
            lim = lim.detach().cpu().numpy() if hasattr(lim, "detach") else np.asarray(lim)
            self.limits = np.asarray(lim, np.float64).reshape(2, 15, 3, 2)

    # ---- forward kinematics
    def _fk(self, pose: np.ndarray, transl: np.ndarray | None = None) -> np.ndarray:
        """Keypoints (N, 2, 21, 3) float64 for pose (N, 2, 16, 3) and transl (N, 2, 3) (fast path)."""
        import torch

        pose_t = torch.as_tensor(np.asarray(pose, np.float32))
        n = pose_t.shape[0]
        betas = self._betas_t.expand(n, 2, 10)
        tr = None if transl is None else torch.as_tensor(np.asarray(transl, np.float32))
        with torch.no_grad():
            kp = self.model.keypoints(pose_t, betas=betas, transl=tr)
        return kp.double().cpu().numpy()

    def keypoints(self, pose: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """(T, 2, 21, 3) keypoints (m) of poses (T, 2, 16, 3) and translations (T, 2, 3)."""
        return self._fk(pose, transl)

    def mesh(self, pose: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """Vertices (2, V, 3) float64 of one frame: pose (2, 16, 3), transl (2, 3)."""
        import torch

        with torch.no_grad():
            out = self.model(
                torch.as_tensor(np.asarray(pose, np.float32))[None],
                betas=self._betas_t[None],
                transl=torch.as_tensor(np.asarray(transl, np.float32))[None],
            )
        return out.vertices[0].double().cpu().numpy()

    def faces(self) -> list[np.ndarray]:
        out = []
        for side in (0, 1):
            f = self.model.faces(side)
            f = f.detach().cpu().numpy() if hasattr(f, "detach") else np.asarray(f)
            out.append(np.asarray(f, np.int64))
        return out

    # ---- finger poses
    def clamp(self, side: int, fingers: np.ndarray) -> np.ndarray:
        """Clip a finger pose (..., 15, 3) to the model's joint limits of hand ``side``."""
        if self.limits is None:
            return fingers
        lo, hi = self.limits[side, ..., 0], self.limits[side, ..., 1]
        return np.clip(fingers, lo, hi)

    def fingers(self, side: int, params_deg: np.ndarray) -> np.ndarray:
        """Anatomical angles (21,) degrees -> finger pose (15, 3) flat axis-angle within the limits."""
        return self.clamp(side, self.axes[side].finger_pose(params_deg))

    def canonical_keypoints(self, side: int, fingers: np.ndarray) -> np.ndarray:
        """(21, 3) keypoints of hand ``side`` with finger pose (15, 3), no global rotation/translation."""
        pose = np.zeros((1, 2, 16, 3))
        pose[0, side, 1:] = fingers
        return self._fk(pose)[0, side]

    def global_rot(self, side: int, F_world: np.ndarray) -> np.ndarray:
        """Global rotation (3, 3) that turns the rest hand into the wrist frame ``F_world`` (3, 3)."""
        return np.asarray(F_world) @ self.axes[side].frame.T
