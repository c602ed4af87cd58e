"""The open hand model: a MANO-compatible hand made by this project (no MANO data inside).

It is stored in MANO's array format, so it loads through ``smplx.MANO`` exactly like the official
model (see :mod:`handcast.hand.layer`). This module *loads* the shipped asset
``handcast/assets/open_hand/OPEN_HAND_RIGHT.npz`` (the left hand is derived by mirroring) and holds
the hand's design that the runtime uses too (frame, skeleton, pose sampler, measurements); the
offline builder of the asset is :mod:`handcast.hand.open_model_build`.

Frame (the right hand, "model frame", metres) follows MANO_RIGHT's rest frame:
  * rest-pose wrist joint J0 at WRIST = (0.09566994, 0.00638343, 0.0061863) m;
  * fingers point along -x, the palm faces -y (back of the hand +y), the thumb is on the +z side;
  * finger flexion is mostly a positive rotation about +z (right hand); abduction is about y.
Design coordinates used below are "hand coordinates" in millimetres relative to J0:
  a = axial (towards the fingertips, model -x), l = lateral (towards the thumb, model +z),
  d = dorsal (towards the back of the hand, model +y).

Every number used to design the hand is documented in docs/hand_model.md.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from pathlib import Path

import numpy as np

from handcast.conventions import NUM_MANO_JOINTS
from handcast.errors import HandcastError
from handcast.geometry import aa_to_rotmat
from handcast.geometry import rotmat_to_aa as _to_aa
from handcast.io import load_npz

# ----------------------------------------------------------------------------------------------
# Frame and anthropometric targets
# ----------------------------------------------------------------------------------------------

#: Rest-pose wrist joint of MANO_RIGHT (m, model frame); the open model puts its wrist joint here.
WRIST = np.array([0.09566994, 0.00638343, 0.0061863])
#: Unit vectors of the hand axes (a, l, d) in the model frame (right hand).
AXES = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])

#: Target rest-pose hand length (wrist joint J0 to the middle fingertip vertex), mm.
HAND_LENGTH_MM = 183.0
#: Target hand breadth (across the metacarpal heads, thumb excluded), mm.
HAND_BREADTH_MM = 82.0

#: Plane where the mesh is cut at the wrist (hand coordinate a, mm); the only open boundary.
WRIST_CUT_MM = -15.0

FINGERS = ("index", "middle", "pinky", "ring")  # MANO order of the finger chains
FINGER_JOINT0 = {"index": 1, "middle": 4, "pinky": 7, "ring": 10, "thumb": 13}
TIP_ORDER = ("thumb", "index", "middle", "ring", "pinky")  # order of tip_vertex_ids

#: Shape factors: name and what +1 SD does (a linear displacement per factor; see build_shapedirs).
SHAPE_FACTORS: tuple[tuple[str, str], ...] = (
    ("size", "isotropic scale about the wrist joint, +5.5 %"),
    ("palm_breadth", "palm (metacarpal region) widened 6.5 %, fingers carried along"),
    ("palm_length", "palm lengthened 5.0 %, fingers carried along"),
    ("finger_length", "all phalanges of the four fingers +6.0 %"),
    ("thumb_length", "thumb metacarpal and phalanges +6.0 %"),
    ("finger_thickness", "fingers, thumb and palm 6.0 % thicker/wider across the bone"),
    ("index_ring_ratio", "index phalanges +3.0 %, ring phalanges -3.0 %"),
    ("pinky_length", "little-finger phalanges +6.0 %"),
    ("middle_length", "middle-finger phalanges +4.0 %"),
    ("hand_thickness", "palm and wrist 8.0 % thicker (dorsal-palmar)"),
)

#: Measured effect of +1 SD of each shape factor on (hand length, hand breadth), mm, as built.
#: (Lengths and breadths of independent factors add in quadrature: about 13.0 and 6.9 mm.)
SHAPE_EFFECTS_MM: dict[str, tuple[float, float]] = {
    "size": (10.06, 4.50),
    "palm_breadth": (0.0, 4.88),
    "palm_length": (4.17, 0.0),
    "finger_length": (5.94, 0.0),
    "thumb_length": (0.04, 0.0),
    "finger_thickness": (0.0, 1.90),
    "index_ring_ratio": (0.0, 0.0),
    "pinky_length": (0.0, 0.01),
    "middle_length": (3.96, 0.0),
    "hand_thickness": (0.0, 0.0),
}

#: File name of the shipped right-hand asset (in handcast/assets/open_hand).
ASSET_NAME = "OPEN_HAND_RIGHT.npz"

REQUIRED_KEYS = (
    "v_template", "f", "weights", "J_regressor", "shapedirs", "posedirs", "kintree_table",
    "hands_components", "hands_mean", "joint_limits", "tip_vertex_ids", "J",
)


# ----------------------------------------------------------------------------------------------
# Small geometry helpers (numpy, float64)
# ----------------------------------------------------------------------------------------------

def unit(v: np.ndarray) -> np.ndarray:
    """Vectors (..., 3) scaled to unit length along the last axis."""
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _dir(angle_deg: float, palmar_deg: float = 0.0) -> np.ndarray:
    """Unit direction in hand coordinates: rotated from axial towards the thumb by ``angle_deg``
    in the palm plane, then tilted towards the palm (-d) by ``palmar_deg``."""
    a, p = math.radians(angle_deg), math.radians(palmar_deg)
    return np.array([math.cos(a) * math.cos(p), math.sin(a) * math.cos(p), -math.sin(p)])


def hand_to_model(p_mm: np.ndarray) -> np.ndarray:
    """Hand coordinates (..., 3) [a, l, d] in mm -> right-hand model frame (..., 3) in m."""
    return WRIST + (np.asarray(p_mm, dtype=np.float64) / 1000.0) @ AXES


def model_to_hand(x_m: np.ndarray) -> np.ndarray:
    """Right-hand model frame (..., 3) in m -> hand coordinates (..., 3) [a, l, d] in mm."""
    return ((np.asarray(x_m, dtype=np.float64) - WRIST) @ AXES.T) * 1000.0


def rodrigues(aa: np.ndarray) -> np.ndarray:
    """Axis-angle (..., 3) -> rotation matrices (..., 3, 3), float64 (handcast.geometry.aa_to_rotmat)."""
    return aa_to_rotmat(np.asarray(aa, dtype=np.float64))


def rotmat_to_aa(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3), float64 (handcast.geometry.rotmat_to_aa)."""
    return _to_aa(np.asarray(R, dtype=np.float64))


# ----------------------------------------------------------------------------------------------
# Skeleton design (hand coordinates, mm)
# ----------------------------------------------------------------------------------------------

# Segment lengths as fractions of hand length: Buchholz, Armstrong & Goldstein (1992), Ergonomics
# 35(3):261-273 (joint centre to joint centre; the last one is distal joint to fingertip).
BUCHHOLZ = {
    "thumb": (0.251, 0.196, 0.158),
    "index": (0.245, 0.143, 0.097),
    "middle": (0.266, 0.170, 0.108),
    "ring": (0.244, 0.165, 0.107),
    "pinky": (0.204, 0.117, 0.093),
}

# MCP joint centres (a, l, d) and in-palm splay (deg, + towards the thumb) of the four fingers, and
# the capsule radii (mm) at MCP, PIP, DIP and tip end. Chosen by us (see docs/hand_model.md).
FINGER_DESIGN = {
    "index": dict(mcp=(83.0, 23.0, -1.0), splay=7.0, radii=(9.6, 8.4, 7.5, 6.8)),
    "middle": dict(mcp=(84.5, 0.0, 0.0), splay=0.0, radii=(9.4, 8.4, 7.6, 7.0)),
    "ring": dict(mcp=(79.5, -19.5, -1.5), splay=-6.0, radii=(8.9, 7.9, 7.2, 6.6)),
    "pinky": dict(mcp=(71.0, -36.5, -4.0), splay=-13.0, radii=(8.0, 7.1, 6.4, 5.9)),
}
# Thumb: CMC centre, direction (in-palm angle, palmar tilt) of metacarpal, proximal, distal segment.
THUMB_DESIGN = dict(cmc=(16.0, 18.0, -10.0), dirs=((40.0, 10.0), (30.0, 0.0), (22.0, 0.0)),
                     radii=((13.0, 11.0), (10.6, 9.8), (9.6, 8.2)))


def design_skeleton(hand_length: float = HAND_LENGTH_MM) -> dict:
    """Joint centres (16, 3) and fingertip points (5, 3) in hand coordinates (mm), MANO order.

    Returns a dict with ``joints`` (16, 3), ``tips`` (5, 3) in TIP_ORDER, ``dirs`` (16, 3) unit
    direction of the bone that starts at each joint (root: axial), and ``lengths`` (16,).
    """
    J = np.zeros((NUM_MANO_JOINTS, 3))
    dirs = np.zeros((NUM_MANO_JOINTS, 3))
    dirs[0] = (1.0, 0.0, 0.0)
    tips = {}
    for name, spec in FINGER_DESIGN.items():
        j0 = FINGER_JOINT0[name]
        u = _dir(spec["splay"])
        p = np.array(spec["mcp"], dtype=np.float64)
        for k, frac in enumerate(BUCHHOLZ[name]):
            if k < 3:
                J[j0 + k] = p
                dirs[j0 + k] = u
            p = p + frac * hand_length * u
        tips[name] = p
    p = np.array(THUMB_DESIGN["cmc"], dtype=np.float64)
    for k, (frac, (ang, palm)) in enumerate(zip(BUCHHOLZ["thumb"], THUMB_DESIGN["dirs"])):
        u = _dir(ang, palm)
        J[13 + k] = p
        dirs[13 + k] = u
        p = p + frac * hand_length * u
    tips["thumb"] = p
    return dict(joints=J, tips=np.stack([tips[n] for n in TIP_ORDER]), dirs=dirs)


# ----------------------------------------------------------------------------------------------
# Pose sampler: plausible poses (the builder's pose space, and poses sampled at run time)
# ----------------------------------------------------------------------------------------------

# Anatomical ranges (rad) per joint for (flexion, abduction, twist) about the joint's own axes.
_RANGES = {
    "mcp": ((-0.35, 1.57), (-0.35, 0.35), (-0.15, 0.15)),
    "pip": ((-0.10, 1.75), (-0.05, 0.05), (-0.10, 0.10)),
    "dip": ((-0.20, 1.40), (-0.05, 0.05), (-0.08, 0.08)),
    "cmc_t": ((-0.40, 0.90), (-0.30, 1.00), (-0.50, 0.50)),
    "mcp_t": ((-0.20, 1.00), (-0.20, 0.20), (-0.20, 0.20)),
    "ip_t": ((-0.35, 1.40), (-0.05, 0.05), (-0.10, 0.10)),
}


def joint_axes_right(skel: dict) -> np.ndarray:
    """(16, 3, 3): per joint the rows (flexion axis, abduction axis, twist axis), unit vectors in
    the right hand's model frame. Positive flexion curls towards the palm; positive finger
    abduction is radial (towards the thumb); positive thumb CMC abduction lifts the thumb palmar;
    positive thumb CMC twist pronates the thumb (opposition)."""
    out = np.zeros((NUM_MANO_JOINTS, 3, 3))
    palm_n = np.array([0.0, 0.0, -1.0])  # -d: the direction the palm faces (hand coordinates)
    for j in range(NUM_MANO_JOINTS):
        u = skel["dirs"][j]
        if j < 13:  # wrist and fingers
            f = unit(np.cross(u, palm_n))
            b = np.array([0.0, 0.0, 1.0])
            t = u
        else:
            perp = unit(np.array([u[1], -u[0], 0.0]))  # in the palm plane, towards the fingers
            pad = unit(0.55 * perp + 0.85 * palm_n)  # the thumb pad faces the palm and fingers
            if j == 13:  # CMC: flexion sweeps across the palm, abduction lifts away from it
                f = unit(np.cross(u, perp))
                b = unit(np.cross(u, palm_n))
                t = u if np.cross(u, pad) @ perp > 0 else -u
            else:
                f = unit(np.cross(u, pad))
                b = unit(pad - (pad @ u) * u)
                t = u
        out[j] = np.stack([f, b, t]) @ AXES  # hand -> model frame (rows)
    return out


def _compose(axes: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """Rotation = R(f, flex) R(b, abd) R(u, twist) for angles (N, 3); returns axis-angle (N, 3)."""
    R = rodrigues(ang[:, 0:1] * axes[0]) @ rodrigues(ang[:, 1:2] * axes[1]) @ rodrigues(ang[:, 2:3] * axes[2])
    return rotmat_to_aa(R)


def sample_poses(skel: dict, n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Sample plausible right-hand finger poses (flat convention, axis-angle).

    Returns (grasp (n, 15, 3): grasp-like curls, correlated across joints; uniform (n, 15, 3):
    independent uniform angles within the anatomical ranges, used for the joint limits).
    """
    rng = np.random.default_rng(seed)
    axes = joint_axes_right(skel)
    grasp = np.zeros((n, 15, 3))
    uni = np.zeros((n, 15, 3))
    curl = rng.beta(2.0, 2.6, size=n)
    spread = rng.uniform(-0.4, 1.0, size=n) * (1 - curl)
    splay_gain = {"index": 0.22, "middle": 0.04, "ring": -0.14, "pinky": -0.30}
    for name in ("index", "middle", "pinky", "ring"):
        j0 = FINGER_JOINT0[name]
        c = np.clip(curl + rng.normal(0, 0.12, n), 0, 1)
        ang = np.zeros((n, 3, 3))
        ang[:, 0, 0] = 1.35 * c + rng.normal(0, 0.10, n)
        ang[:, 1, 0] = 1.55 * c + rng.normal(0, 0.12, n)
        ang[:, 2, 0] = 0.75 * ang[:, 1, 0] + rng.normal(0, 0.10, n)
        ang[:, 0, 1] = splay_gain[name] * spread + rng.normal(0, 0.05, n)
        ang[:, :, 2] = rng.normal(0, 0.04, (n, 3))
        ang[:, 0, 2] += -0.10 * c * np.sign(splay_gain[name] or 1.0)
        for k, kind in enumerate(("mcp", "pip", "dip")):
            lo = np.array([r[0] for r in _RANGES[kind]])
            hi = np.array([r[1] for r in _RANGES[kind]])
            a = np.clip(ang[:, k], lo, hi)
            grasp[:, j0 - 1 + k] = _compose(axes[j0 + k], a)
            uni[:, j0 - 1 + k] = _compose(axes[j0 + k], rng.uniform(lo, hi, (n, 3)))
    opp = np.clip(0.6 * curl + 0.4 * rng.uniform(0, 1, n), 0, 1)
    ct = np.clip(curl + rng.normal(0, 0.15, n), 0, 1)
    tang = np.zeros((n, 3, 3))
    tang[:, 0] = np.stack([0.75 * opp - 0.1, 0.7 * opp, 0.35 * opp], 1) + rng.normal(0, 0.08, (n, 3))
    tang[:, 1, 0] = 0.6 * ct + rng.normal(0, 0.1, n)
    tang[:, 2, 0] = 0.8 * ct + rng.normal(0, 0.12, n)
    tang[:, 1:, 1:] = rng.normal(0, 0.04, (n, 2, 2))
    for k, kind in enumerate(("cmc_t", "mcp_t", "ip_t")):
        lo = np.array([r[0] for r in _RANGES[kind]])
        hi = np.array([r[1] for r in _RANGES[kind]])
        grasp[:, 12 + k] = _compose(axes[13 + k], np.clip(tang[:, k], lo, hi))
        uni[:, 12 + k] = _compose(axes[13 + k], rng.uniform(lo, hi, (n, 3)))
    return grasp, uni


# ----------------------------------------------------------------------------------------------
# Measurements (used by the builder, the docs and the tests)
# ----------------------------------------------------------------------------------------------

def breadth_vertex_mask(v_template_m: np.ndarray, weights: np.ndarray, joints_m: np.ndarray) -> np.ndarray:
    """Vertices (V,) bool at the level of the metacarpal heads, thumb excluded (right hand)."""
    h = model_to_hand(v_template_m)
    jh = model_to_hand(joints_m)
    a_lo = jh[7, 0] - 12.0  # a little proximal of the little-finger MCP
    a_hi = jh[1, 0] + 2.0  # up to the index MCP
    thumb = weights[:, 13:16].sum(axis=1) > 0.05
    return (h[:, 0] >= a_lo) & (h[:, 0] <= a_hi) & ~thumb


def measure_hand(vertices_m: np.ndarray, joints_m: np.ndarray, tip_vertex_ids, breadth_mask) -> dict:
    """Hand length (J0 to the middle fingertip vertex) and breadth (extent across the palm at the
    metacarpal heads, along the model z axis) of a rest-pose right hand, in mm."""
    tip = vertices_m[int(tip_vertex_ids[TIP_ORDER.index("middle")])]
    length = float(np.linalg.norm(tip - joints_m[0])) * 1000.0
    z = vertices_m[breadth_mask, 2]
    return dict(length=length, breadth=float(z.max() - z.min()) * 1000.0)



# ----------------------------------------------------------------------------------------------
# Load
# ----------------------------------------------------------------------------------------------

def asset_path() -> Path:
    """Path of the shipped right-hand asset."""
    return Path(str(resources.files("handcast").joinpath("assets", "open_hand", ASSET_NAME)))


def mirror_model(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Left hand from a right hand (or vice versa): mirror across the model's x = 0 plane.

    Vertices, joints and the x column of shapedirs are negated, face winding is flipped,
    pose-space quantities (hands_mean, hands_components, joint_limits) get their y and z
    axis-angle components negated, and posedirs are mirrored consistently (M (R - I) M).
    """
    m = np.array([-1.0, 1.0, 1.0])
    out = dict(arrays)
    out["v_template"] = arrays["v_template"] * m
    if "J" in arrays:
        out["J"] = arrays["J"] * m
    out["shapedirs"] = arrays["shapedirs"] * m[None, :, None]
    pd = np.asarray(arrays["posedirs"])
    sign_feat = np.tile(np.outer(m, m).ravel(), pd.shape[-1] // 9)  # pose feature (R - I)_{ik}
    out["posedirs"] = pd * m[None, :, None] * sign_feat[None, None, :]
    out["f"] = arrays["f"][:, ::-1].copy()
    aa_sign = np.array([1.0, -1.0, -1.0])
    out["hands_mean"] = (np.asarray(arrays["hands_mean"]).reshape(15, 3) * aa_sign).reshape(45)
    hc = np.asarray(arrays["hands_components"])
    out["hands_components"] = (hc.reshape(hc.shape[0], 15, 3) * aa_sign).reshape(hc.shape)
    if "joint_limits" in arrays:
        lim = np.asarray(arrays["joint_limits"])
        lo, hi = lim[..., 0], lim[..., 1]
        lo2 = np.where(aa_sign < 0, -hi, lo)
        hi2 = np.where(aa_sign < 0, -lo, hi)
        out["joint_limits"] = np.stack([lo2, hi2], axis=-1)
    return out


@functools.lru_cache(maxsize=4)
def _load_cached(path: str) -> dict[str, np.ndarray]:
    return load_npz(path, required=REQUIRED_KEYS)


def load_open_model(side: str = "right", path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Arrays of the open model for ``side`` ("right" or "left"), as float64 (copies).

    ``path`` defaults to the shipped asset. The left hand is the mirror image of the right.
    """
    if side not in ("right", "left"):
        raise HandcastError(f"hand side must be 'right' or 'left', got {side!r}")
    arrays = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v.copy())
              for k, v in _load_cached(str(path or asset_path())).items()}
    return arrays if side == "right" else mirror_model(arrays)


# The builder's functions, moved to handcast.hand.open_model_build: aliases for one release, imported
# on first use so that loading the model never imports the builder.
_MOVED_TO_BUILDER = (
    "boundary_loops", "build_joint_regressor", "build_mesh", "build_open_hand_model", "build_pose_space",
    "build_shapedirs", "build_weights", "find_tip_vertices", "save_open_hand_model",
)


def __getattr__(name: str):
    if name in _MOVED_TO_BUILDER:
        from handcast.hand import open_model_build

        return getattr(open_model_build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":  # the builder's former command line, for one release
    from handcast.hand.open_model_build import main

    raise SystemExit(main())
