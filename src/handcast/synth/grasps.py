"""Hand shapes (finger poses) for grasps, and the anatomical axes that produce them.

Finger poses are designed in an *anatomical* parameter space (degrees) and turned into the hand
model's flat axis-angle pose with axes measured on the model's own rest skeleton, so the same
templates work for the right and the left hand and for any hand model whose rest pose is a flat
hand (MANO or the open model):

* fingers (index, middle, ring, pinky), 4 numbers each: MCP flexion, MCP abduction (towards the
  thumb is positive), PIP flexion, DIP flexion. Flexion curls the bone towards the palm.
* thumb, 5 numbers: CMC palmar abduction (out of the palm plane, towards the palm side), CMC
  flexion (across the palm, towards the fingers), CMC pronation (turns the pad to face the
  fingers), MCP flexion, IP flexion.

The result is clamped to the model's joint limits.

Wrist frames: a hand orientation is described by a 3x3 matrix whose COLUMNS are (f, n, s): f =
unit direction from the wrist to the middle-finger MCP, n = palm normal (the direction the palm
faces), s = thumb side, with ``s = c * (f x n)`` (c = +1 right hand, -1 left hand). The global MANO
rotation that puts the model's rest hand into a world frame F is ``F @ F_model^T``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ANAT_DIM", "GRASP_TEMPLATES", "RELAXED", "OPEN", "FLAT", "HandAxes", "hand_frame", "grasp_params",
           "random_gesture"]

# Finger blocks in the anatomical vector and the MANO joints (1..15) / common keypoints they drive.
_FINGERS = {  # name: (MANO joints of the 3 segments, common keypoints base->tip)
    "index": ((1, 2, 3), (5, 6, 7, 8)),
    "middle": ((4, 5, 6), (9, 10, 11, 12)),
    "ring": ((10, 11, 12), (13, 14, 15, 16)),
    "pinky": ((7, 8, 9), (17, 18, 19, 20)),
}
_THUMB = ((13, 14, 15), (1, 2, 3, 4))
ANAT_DIM = 4 * 4 + 5  # 21 anatomical angles


def _v(index, middle, ring, pinky, thumb) -> np.ndarray:
    return np.array([*index, *middle, *ring, *pinky, *thumb], dtype=np.float64)


# ---- templates (degrees) -------------------------------------------------------------------
FLAT = _v((0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0), (0, 0, 0, 0, 0))
RELAXED = _v((12, 2, 22, 10), (16, 0, 26, 12), (20, -3, 30, 14), (24, -6, 32, 16), (10, 10, 10, 10, 10))
OPEN = _v((-4, 8, 4, 2), (-4, 0, 4, 2), (-4, -6, 4, 2), (-4, -12, 4, 2), (40, -10, 10, 0, 0))

# grasp type -> (pre-shape while approaching, grasp at full closure). The closure of a particular
# grasp (from the object's size) interpolates between the two.
GRASP_TEMPLATES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "power": (
        _v((5, 4, 10, 5), (5, 0, 10, 5), (5, -4, 10, 5), (5, -8, 10, 5), (45, 0, 30, 0, 0)),
        _v((65, 0, 85, 45), (70, 0, 85, 45), (72, 0, 85, 45), (75, -2, 85, 45), (45, 30, 45, 25, 25)),
    ),
    "spherical": (
        _v((0, 10, 5, 5), (0, 0, 5, 5), (0, -8, 5, 5), (0, -15, 5, 5), (50, 0, 30, 0, 0)),
        _v((35, 10, 40, 25), (38, 0, 42, 25), (40, -8, 42, 25), (42, -15, 42, 25), (55, 20, 45, 15, 15)),
    ),
    "pinch": (
        _v((15, 0, 15, 5), (20, 0, 30, 15), (30, 0, 45, 20), (35, 0, 50, 25), (50, 0, 35, 0, 0)),
        _v((40, 0, 40, 15), (45, 0, 60, 35), (55, 0, 75, 40), (60, 0, 80, 40), (50, 20, 50, 15, 10)),
    ),
    "tripod": (
        _v((15, 2, 15, 5), (15, 0, 15, 5), (30, 0, 45, 20), (35, 0, 50, 25), (50, 0, 35, 0, 0)),
        _v((40, 2, 35, 15), (42, -2, 40, 15), (60, 0, 80, 40), (65, 0, 85, 40), (50, 25, 50, 15, 10)),
    ),
    "lateral": (
        _v((30, 0, 50, 25), (45, 0, 70, 35), (50, 0, 75, 40), (55, 0, 80, 40), (25, -10, 10, 0, 0)),
        _v((40, 0, 65, 30), (65, 0, 90, 50), (70, 0, 90, 50), (72, 0, 90, 50), (10, 20, 20, 25, 25)),
    ),
    "hook": (
        _v((0, 0, 20, 10), (0, 0, 20, 10), (0, 0, 20, 10), (0, 0, 20, 10), (20, -10, 0, 0, 0)),
        _v((15, 0, 90, 60), (15, 0, 90, 60), (15, 0, 90, 60), (15, 0, 90, 60), (20, 0, 10, 10, 10)),
    ),
    "flat": (
        _v((0, 4, 3, 2), (0, 0, 3, 2), (0, -4, 3, 2), (0, -8, 3, 2), (25, -5, 5, 0, 0)),
        _v((8, 2, 10, 5), (8, 0, 10, 5), (8, -2, 10, 5), (8, -4, 10, 5), (20, 10, 10, 5, 5)),
    ),
}


def random_gesture(rng: np.random.Generator) -> np.ndarray:
    """A free-hand finger pose (21,) anatomical angles in degrees, as hands take them away from objects
    (waving, pointing, counting, a spread or a relaxed open hand, a fist, the thumb out or tucked).

    With probability 0.35 the hand is open (every finger extended, a raised or waving hand, the thumb away from
    the palm); otherwise each finger's curl is drawn on its own (extended with probability 0.5, else anywhere
    from slightly to fully curled). The fingers' spread is shared (from closed to wide apart), and the thumb
    ranges from radial abduction (out to the side in the palm's plane, as in a spread hand) to across the palm.
    The grasp templates have no thumb-out pose. Clamp the result to the joint limits."""
    out = np.zeros(ANAT_DIM)
    spread = rng.uniform(-0.2, 1.0)
    open_hand = rng.uniform() < 0.35
    p_extended = 1.0 if open_hand else 0.5
    for i, abd in enumerate((14.0, 0.0, -10.0, -22.0)):  # index, middle, ring, pinky: full-spread abduction
        curl = rng.uniform(-0.15, 0.2) if rng.uniform() < p_extended else rng.uniform(0.2, 1.0)
        out[4 * i: 4 * i + 4] = (
            curl * 80.0 + rng.normal(0.0, 6.0),  # MCP flexion
            spread * abd + rng.normal(0.0, 4.0),  # MCP abduction
            max(curl, 0.0) * 100.0 + rng.normal(0.0, 6.0),  # PIP flexion
            max(curl, 0.0) * 65.0 + rng.normal(0.0, 6.0),  # DIP flexion
        )
    out[16:] = (rng.uniform(0.0, 60.0),  # CMC palmar abduction
                rng.uniform(-50.0, 0.0 if open_hand else 35.0),  # CMC flexion: negative is radial abduction
                rng.uniform(-10.0, 40.0),  # CMC pronation
                rng.uniform(-15.0, 50.0),  # MCP flexion
                rng.uniform(-15.0, 70.0))  # IP flexion
    return out


def grasp_params(grasp: str, closure: float) -> tuple[np.ndarray, np.ndarray]:
    """(pre-shape, grasp) anatomical vectors (21,) in degrees for ``grasp`` at ``closure`` in [0, 1]."""
    pre, full = GRASP_TEMPLATES[grasp]
    c = float(np.clip(closure, 0.0, 1.0))
    return pre.copy(), pre + c * (full - pre)


def cross3(a, b) -> np.ndarray:
    """Cross product of two 3-vectors (much faster than np.cross for single vectors)."""
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def hand_frame(kp: np.ndarray, side: int) -> np.ndarray:
    """Wrist frame (3, 3), columns (f, n, s), of a hand from its 21 common-order keypoints (21, 3).

    f: wrist -> middle MCP; s: thumb side (pinky MCP -> index MCP, made orthogonal to f);
    n = c (s x f) with c = +1 for the right hand (side 0), -1 for the left: the palm normal.
    """
    c = 1.0 if side == 0 else -1.0
    f = _unit(kp[9] - kp[0])
    s = kp[5] - kp[17]
    s = _unit(s - f * (s @ f))
    n = c * cross3(s, f)
    return np.stack([f, n, s], axis=1)


@dataclass
class HandAxes:
    """Anatomical rotation axes of one hand, measured on its flat rest keypoints.

    matrix: (45, 21) linear map from anatomical angles (radians) to the flat axis-angle of the 15
    finger joints (MANO joints 1..15, flattened (15, 3) row-major).
    frame: (3, 3) the rest hand's wrist frame (columns f, n, s; see :func:`hand_frame`).
    """

    matrix: np.ndarray
    frame: np.ndarray

    @classmethod
    def from_rest(cls, kp: np.ndarray, side: int) -> "HandAxes":
        """kp: (21, 3) rest (zero pose) keypoints in the model's canonical frame, common order."""
        kp = np.asarray(kp, np.float64)
        F = hand_frame(kp, side)
        n, s = F[:, 1], F[:, 2]
        A = np.zeros((15, 3, ANAT_DIM))
        col = 0
        for name, (joints, kps) in _FINGERS.items():
            for seg, j in enumerate(joints):
                d = _unit(kp[kps[seg + 1]] - kp[kps[seg]])
                flex = _unit(cross3(d, n))
                A[j - 1, :, col + (0 if seg == 0 else seg + 1)] += flex
                if seg == 0:
                    sp = _unit(s - d * (s @ d))
                    A[j - 1, :, col + 1] += _unit(cross3(d, sp))
            col += 4
        # thumb
        joints, kps = _THUMB
        d1 = _unit(kp[kps[1]] - kp[kps[0]])
        pad = _unit((n - s) - d1 * ((n - s) @ d1))  # the pad faces the palm side and the fingers
        A[joints[0] - 1, :, col + 0] += _unit(cross3(d1, _unit(n - d1 * (n @ d1))))  # palmar abduction
        A[joints[0] - 1, :, col + 1] += _unit(cross3(d1, _unit(-s - d1 * (-s @ d1))))  # across the palm
        twist = d1 if cross3(d1, pad) @ (-s) > 0 else -d1  # pronation turns the pad to the fingers
        A[joints[0] - 1, :, col + 2] += twist
        for seg in (1, 2):
            d = _unit(kp[kps[seg + 1]] - kp[kps[seg]])
            p = _unit(pad - d * (pad @ d))
            A[joints[seg] - 1, :, col + 2 + seg] += _unit(cross3(d, p))
        return cls(A.reshape(45, ANAT_DIM), F)

    def finger_pose(self, params_deg: np.ndarray) -> np.ndarray:
        """Anatomical angles (..., 21) in degrees -> finger pose (..., 15, 3) flat axis-angle, radians."""
        p = np.radians(np.asarray(params_deg, np.float64))
        return (p @ self.matrix.T).reshape(p.shape[:-1] + (15, 3))
