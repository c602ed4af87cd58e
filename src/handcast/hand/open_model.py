"""The open hand model: a MANO-compatible hand made by this project (no MANO data inside).

It is stored in MANO's array format, so it loads through ``smplx.MANO`` exactly like the official
model (see :mod:`handcast.hand.layer`). This module both *builds* the model (``python -m
handcast.hand.open_model --out DIR``; needs scikit-image at build time only) and *loads* the shipped
asset ``handcast/assets/open_hand/OPEN_HAND_RIGHT.npz`` (the left hand is derived by mirroring).

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

import argparse
import functools
import math
from importlib import resources
from pathlib import Path

import numpy as np

from handcast.conventions import MANO_PARENTS, NUM_MANO_JOINTS

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

_ASSET = ("assets", "open_hand", "OPEN_HAND_RIGHT.npz")

REQUIRED_KEYS = (
    "v_template", "f", "weights", "J_regressor", "shapedirs", "posedirs", "kintree_table",
    "hands_components", "hands_mean", "joint_limits", "tip_vertex_ids", "J",
)


# ----------------------------------------------------------------------------------------------
# Small geometry helpers (numpy, float64)
# ----------------------------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
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
    from handcast.geometry import aa_to_rotmat

    return aa_to_rotmat(np.asarray(aa, dtype=np.float64))


def rotmat_to_aa(R: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) -> axis-angle (..., 3), float64 (handcast.geometry.rotmat_to_aa)."""
    from handcast.geometry import rotmat_to_aa as _to_aa

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
_FINGER_DESIGN = {
    "index": dict(mcp=(83.0, 23.0, -1.0), splay=7.0, radii=(9.6, 8.4, 7.5, 6.8)),
    "middle": dict(mcp=(84.5, 0.0, 0.0), splay=0.0, radii=(9.4, 8.4, 7.6, 7.0)),
    "ring": dict(mcp=(79.5, -19.5, -1.5), splay=-6.0, radii=(8.9, 7.9, 7.2, 6.6)),
    "pinky": dict(mcp=(71.0, -36.5, -4.0), splay=-13.0, radii=(8.0, 7.1, 6.4, 5.9)),
}
# Thumb: CMC centre, direction (in-palm angle, palmar tilt) of metacarpal, proximal, distal segment.
_THUMB_DESIGN = dict(cmc=(16.0, 18.0, -10.0), dirs=((40.0, 10.0), (30.0, 0.0), (22.0, 0.0)),
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
    for name, spec in _FINGER_DESIGN.items():
        j0 = FINGER_JOINT0[name]
        u = _dir(spec["splay"])
        p = np.array(spec["mcp"], dtype=np.float64)
        for k, frac in enumerate(BUCHHOLZ[name]):
            if k < 3:
                J[j0 + k] = p
                dirs[j0 + k] = u
            p = p + frac * hand_length * u
        tips[name] = p
    p = np.array(_THUMB_DESIGN["cmc"], dtype=np.float64)
    for k, (frac, (ang, palm)) in enumerate(zip(BUCHHOLZ["thumb"], _THUMB_DESIGN["dirs"])):
        u = _dir(ang, palm)
        J[13 + k] = p
        dirs[13 + k] = u
        p = p + frac * hand_length * u
    tips["thumb"] = p
    return dict(joints=J, tips=np.stack([tips[n] for n in TIP_ORDER]), dirs=dirs)


# ----------------------------------------------------------------------------------------------
# Implicit surface: tagged capsules, smooth union
# ----------------------------------------------------------------------------------------------

def _capsule_sdf(P: np.ndarray, p0, p1, r0: float, r1: float, flat: float = 1.0) -> np.ndarray:
    """Approximate signed distance (mm) to a tapered capsule; ``flat`` < 1 squashes it in d."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    u = p1 - p0
    L2 = float(u @ u)
    t = np.clip(((P - p0) @ u) / L2, 0.0, 1.0)
    O = P - (p0 + t[:, None] * u)
    if flat != 1.0:
        O = O * np.array([1.0, 1.0, 1.0 / flat])
    r = r0 + (r1 - r0) * t
    return np.linalg.norm(O, axis=1) - r


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (blend radius k, mm)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def _parts(skel: dict) -> list[dict]:
    """The capsules making up the hand (hand coordinates, mm), each with its joint label (the
    joint whose rotation moves it) and its blend group."""
    J, T, U = skel["joints"], skel["tips"], skel["dirs"]
    tip_of = dict(zip(TIP_ORDER, T))
    parts = [
        # wrist and forearm stub (cut at WRIST_CUT_MM), elliptical: 54 mm wide, ~35 mm thick
        dict(label=0, group="palm", p0=(WRIST_CUT_MM - 12, 0.0, 0.0), p1=(6.0, 0.0, -1.0),
             r0=27.0, r1=27.0, flat=0.64),
        # hypothenar eminence
        dict(label=0, group="palm", p0=(12.0, -20.0, -4.0), p1=(52.0, -27.0, -5.0),
             r0=11.0, r1=10.0, flat=0.98),
    ]
    for name in ("index", "middle", "ring", "pinky"):  # metacarpals, fanning out from the carpus
        m = J[FINGER_JOINT0[name]]
        parts.append(dict(label=0, group="palm", p0=(8.0, 0.45 * m[1], -1.0), p1=m - (3.0, 0.0, 0.0),
                          r0=13.0, r1=11.0, flat=1.2))
    for name in ("index", "middle", "ring", "pinky"):
        j0 = FINGER_JOINT0[name]
        r = _FINGER_DESIGN[name]["radii"]
        ends = [J[j0], J[j0 + 1], J[j0 + 2], tip_of[name] - r[3] * U[j0 + 2]]
        for k in range(3):  # proximal, middle, distal phalanx
            parts.append(dict(label=j0 + k, group=name, p0=ends[k], p1=ends[k + 1],
                              r0=r[k], r1=r[k + 1], flat=0.92))
    # thenar eminence (moves with the thumb metacarpal) and the thumb segments
    parts.append(dict(label=13, group="thumb", p0=(14.0, 10.0, -9.0), p1=(40.0, 30.0, -15.0),
                      r0=13.0, r1=11.0, flat=0.85))
    # first web space: a thin sheet from the thumb metacarpal head to the index metacarpal
    parts.append(dict(label=13, group="thumb", p0=J[14] - 8.0 * U[13], p1=(52.0, 17.0, -4.0),
                      r0=7.5, r1=7.0, flat=0.55))
    radii = _THUMB_DESIGN["radii"]
    ends = [J[13], J[14], J[15], tip_of["thumb"] - radii[2][1] * U[15]]
    for k in range(3):
        parts.append(dict(label=13 + k, group="thumb", p0=ends[k], p1=ends[k + 1],
                          r0=radii[k][0], r1=radii[k][1], flat=0.9))
    return parts


def _part_sdfs(P: np.ndarray, parts: list[dict]) -> np.ndarray:
    return np.stack([_capsule_sdf(P, p["p0"], p["p1"], p["r0"], p["r1"], p["flat"]) for p in parts])


def _union_sdf(D: np.ndarray, parts: list[dict]) -> np.ndarray:
    """Smooth union of the part distances D (n_parts, N): palm parts blended with k=9 mm, the
    segments of one finger with k=2.5 mm, and each finger onto the palm with k=6 mm."""
    groups: dict[str, np.ndarray] = {}
    for d, p in zip(D, parts):
        g = p["group"]
        if g not in groups:
            groups[g] = d
        else:
            groups[g] = _smin(groups[g], d, 9.0 if g == "palm" else (4.0 if g == "thumb" else 2.5))
    F = groups.pop("palm")
    for g in ("index", "middle", "ring", "pinky", "thumb"):
        F = _smin(F, groups[g], 7.0 if g == "thumb" else 5.5)
    return F


# ----------------------------------------------------------------------------------------------
# Mesh
# ----------------------------------------------------------------------------------------------

def _implicit(P: np.ndarray, parts: list[dict]) -> np.ndarray:
    return _union_sdf(_part_sdfs(P, parts), parts)


def _implicit_and_grad(P: np.ndarray, parts: list[dict], eps: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Value and forward-difference gradient of the implicit function at P (N, 3)."""
    f0 = _implicit(P, parts)
    g = np.stack([(_implicit(P + eps * e, parts) - f0) / eps for e in np.eye(3)], axis=1)
    return f0, g


def build_mesh(skel: dict, spacing: float = 4.5, relax_iters: int = 30):
    """Polygonise the implicit hand (hand coordinates, mm) into a mesh open only at the wrist.

    Marching cubes on a coarse grid gives the topology; the vertices are then relaxed along the
    surface (tangential Laplacian smoothing, for even triangles) and projected back onto the
    implicit surface (Newton steps), so the result is smooth and lies on the designed surface.
    Returns (vertices (V, 3) mm hand coordinates, faces (F, 3) int64, outward winding).
    """
    import trimesh
    from skimage.measure import marching_cubes

    parts = _parts(skel)
    lo = np.array([WRIST_CUT_MM, -62.0, -40.0])
    hi = np.array([200.0, 105.0, 30.0])
    n = np.ceil((hi - lo) / spacing).astype(int) + 1
    axes = [lo[i] + spacing * np.arange(n[i]) for i in range(3)]
    G = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    F = _implicit(G, parts).reshape(tuple(n))
    assert F[0].min() < 0, "the wrist cut must pass through the hand"
    verts, faces, _, _ = marching_cubes(F, level=0.0, spacing=(spacing,) * 3)
    mesh = trimesh.Trimesh(verts + lo, faces, process=True)
    mesh.remove_unreferenced_vertices()
    mesh = max(mesh.split(only_watertight=False), key=lambda m: len(m.faces))
    v = np.asarray(mesh.vertices, dtype=np.float64).copy()
    f = np.asarray(mesh.faces, dtype=np.int64).copy()
    # Orient outwards: face normals follow the gradient of the implicit function.
    tri = v[f]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    if np.sum(fn * _implicit_and_grad(tri.mean(axis=1), parts)[1]) < 0:
        f = f[:, ::-1].copy()
    # Relax + project.
    bnd = _boundary_vertices(f)
    is_b = np.zeros(len(v), bool)
    is_b[bnd] = True
    A = _vertex_adjacency(f, len(v))
    Ab = _vertex_adjacency(_boundary_edges(f)[:, [0, 1, 1]], len(v))  # boundary-loop neighbours
    deg = np.asarray(A.sum(axis=1)).ravel()
    degb = np.maximum(np.asarray(Ab.sum(axis=1)).ravel(), 1)
    for it in range(relax_iters + 1):
        if it > 0:
            _, g = _implicit_and_grad(v, parts)
            nrm = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
            lap = (A @ v) / deg[:, None] - v
            lap_b = (Ab @ v) / degb[:, None] - v
            step = np.where(is_b[:, None], lap_b, lap)
            step -= np.sum(step * nrm, axis=1, keepdims=True) * nrm  # tangential only
            v = v + 0.5 * step
        for _ in range(2):  # Newton projection onto F = 0 (boundary stays in the cut plane)
            val, g = _implicit_and_grad(v, parts)
            g[is_b, 0] = 0.0
            v = v - (val / np.maximum(np.sum(g * g, axis=1), 1e-9))[:, None] * g
        v[is_b, 0] = WRIST_CUT_MM
    return v, f


def _boundary_edges(faces: np.ndarray) -> np.ndarray:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(e, axis=1)
    uniq, inv, cnt = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    return e[cnt[inv.ravel()] == 1]


def _boundary_vertices(faces: np.ndarray) -> np.ndarray:
    return np.unique(_boundary_edges(faces))


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Boundary loops of a triangle mesh (each an ordered array of vertex ids)."""
    e = _boundary_edges(faces)
    nxt: dict[int, list[int]] = {}
    for a, b in e:
        nxt.setdefault(int(a), []).append(int(b))
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            outs = nxt.get(v, [])
            if not outs:
                break
            v = outs[0]
        loops.append(np.array(loop))
    return loops


# ----------------------------------------------------------------------------------------------
# Skinning weights, joint regressor, tips
# ----------------------------------------------------------------------------------------------

def _vertex_adjacency(faces: np.ndarray, n: int):
    import scipy.sparse as sp

    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e = np.concatenate([e, e[:, ::-1]])
    A = sp.coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()
    A.data[:] = 1.0
    return A


def build_weights(v: np.ndarray, faces: np.ndarray, skel: dict, tau: float = 2.2,
                  smooth_iters: int = 4) -> np.ndarray:
    """Skinning weights (V, 16), rows sum to 1.

    Each vertex gets a soft assignment exp(-(sdf_j - min sdf) / tau) over the capsules of its
    nearest bone, that bone's parent and children (so neighbouring fingers never share weight),
    followed by a few steps of mesh-Laplacian smoothing.
    """
    parts = _parts(skel)
    D = _part_sdfs(v, parts)  # (P, V)
    labels = np.array([p["label"] for p in parts])
    per_joint = np.full((NUM_MANO_JOINTS, len(v)), np.inf)
    for j in range(NUM_MANO_JOINTS):
        m = labels == j
        if m.any():
            per_joint[j] = D[m].min(axis=0)
    best = per_joint.argmin(axis=0)
    allowed = np.zeros((NUM_MANO_JOINTS, NUM_MANO_JOINTS), bool)
    for j in range(NUM_MANO_JOINTS):
        allowed[j, j] = True
        p = MANO_PARENTS[j]
        if p >= 0:
            allowed[j, p] = allowed[p, j] = True
    rel = per_joint - per_joint.min(axis=0, keepdims=True)
    W = np.exp(-rel / tau) * allowed[best].T
    W = (W / W.sum(axis=0, keepdims=True)).T  # (V, 16)
    A = _vertex_adjacency(faces, len(v))
    deg = np.asarray(A.sum(axis=1)).ravel()
    for _ in range(smooth_iters):
        W = 0.5 * W + 0.5 * (A @ W) / deg[:, None]
    W[W < 1e-4] = 0.0
    return W / W.sum(axis=1, keepdims=True)


def build_joint_regressor(v: np.ndarray, joints: np.ndarray, k0: int = 24) -> np.ndarray:
    """J_regressor (16, V): for each joint, nonnegative weights summing to 1 over its nearest
    vertices, close to uniform, whose weighted mean is the joint centre (to < 1e-4 mm).

    Solved as a nonnegative least-squares problem with the two equality constraints weighted
    heavily; the neighbourhood grows until the joint lies inside it."""
    from scipy.optimize import nnls

    R = np.zeros((len(joints), len(v)))
    lam = 1e4
    for j, c in enumerate(joints):
        for k in (k0, 2 * k0, 4 * k0, 8 * k0):
            idx = np.argsort(np.linalg.norm(v - c, axis=1), kind="stable")[:k]
            P = v[idx]
            A = np.vstack([lam * P.T, lam * np.ones((1, k)), np.eye(k)])
            b = np.concatenate([lam * c, [lam], np.full(k, 1.0 / k)])
            w, _ = nnls(A, b, maxiter=50 * k)
            if w.sum() > 0:
                w = w / w.sum()
                if np.linalg.norm(P.T @ w - c) < 1e-4:  # mm
                    R[j, idx] = w
                    break
        else:
            raise RuntimeError(f"joint {j}: could not regress the joint from nearby vertices")
    return R


def find_tip_vertices(v: np.ndarray, skel: dict) -> np.ndarray:
    """Vertex id at the tip of each finger (TIP_ORDER): the vertex furthest along the distal
    segment direction among those close to the fingertip point, nudged slightly to the pad."""
    ids = []
    for name, tip in zip(TIP_ORDER, skel["tips"]):
        u = skel["dirs"][FINGER_JOINT0[name] + 2]
        near = np.where(np.linalg.norm(v - tip, axis=1) < 12.0)[0]
        score = (v[near] - tip) @ u - 0.15 * (v[near][:, 2] - tip[2])
        ids.append(int(near[np.argmax(score)]))
    return np.array(ids, dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Shape space
# ----------------------------------------------------------------------------------------------

def _bone_frames(skel: dict) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per joint: origin (3,) and orthonormal basis rows (u along the bone, two across)."""
    out = []
    for j in range(NUM_MANO_JOINTS):
        u = skel["dirs"][j]
        s = _unit(np.cross(u, np.array([0.0, 0.0, 1.0])))  # across, in the palm plane-ish
        t = np.cross(u, s)
        out.append((skel["joints"][j], np.stack([u, s, t])))
    return out


def _factor_transforms(skel: dict, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For shape factor k (+1 SD): per joint j an affine map x -> A_j x + b_j (hand coords, mm)
    applied to the geometry that bone j carries. Child joints move with their parent's map."""
    scale_root = np.ones(3)  # (a, l, d)
    len_s = np.zeros(NUM_MANO_JOINTS)  # relative change of bone length
    rad_s = np.zeros(NUM_MANO_JOINTS)  # relative change across the bone
    iso = 0.0
    if k == 0:
        iso = 0.055
    elif k == 1:
        scale_root[1] += 0.065
    elif k == 2:
        scale_root[0] += 0.05
    elif k == 3:
        len_s[1:13] = 0.06
    elif k == 4:
        len_s[13:16] = 0.06
    elif k == 5:
        rad_s[1:16] = 0.06
        scale_root[2] += 0.06
        scale_root[1] += 0.02
    elif k == 6:
        len_s[1:4] = 0.03
        len_s[10:13] = -0.03
    elif k == 7:
        len_s[7:10] = 0.06
    elif k == 8:
        len_s[4:7] = 0.04
    elif k == 9:
        scale_root[2] += 0.08
    else:
        raise ValueError(k)
    frames = _bone_frames(skel)
    maps: list[tuple[np.ndarray, np.ndarray]] = [None] * NUM_MANO_JOINTS  # type: ignore
    A0 = np.diag(scale_root) * (1 + iso)
    maps[0] = (A0, np.zeros(3))  # about the wrist joint (origin of hand coordinates)
    for j in range(1, NUM_MANO_JOINTS):
        p = MANO_PARENTS[j]
        Ap, bp = maps[p]
        o, B = frames[j]
        o_new = Ap @ o + bp  # joint carried by the parent
        S = B.T @ np.diag([1 + len_s[j], 1 + rad_s[j], 1 + rad_s[j]]) @ B * (1 + iso)
        maps[j] = (S, o_new - S @ o)
    return maps


def build_shapedirs(v: np.ndarray, W: np.ndarray, skel: dict) -> np.ndarray:
    """shapedirs (V, 3, 10) in hand coordinates (mm per +1 SD)."""
    out = np.zeros((len(v), 3, len(SHAPE_FACTORS)))
    for k in range(len(SHAPE_FACTORS)):
        maps = _factor_transforms(skel, k)
        disp = np.zeros_like(v)
        for j, (A, b) in enumerate(maps):
            m = W[:, j] > 0
            if m.any():
                disp[m] += W[m, j, None] * (v[m] @ A.T + b - v[m])
        out[:, :, k] = disp
    return out


# ----------------------------------------------------------------------------------------------
# Pose space: plausible poses, joint limits, PCA
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
_JOINT_KIND = ["root"] + ["mcp", "pip", "dip"] * 4 + ["cmc_t", "mcp_t", "ip_t"]


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
            f = _unit(np.cross(u, palm_n))
            b = np.array([0.0, 0.0, 1.0])
            t = u
        else:
            perp = _unit(np.array([u[1], -u[0], 0.0]))  # in the palm plane, towards the fingers
            pad = _unit(0.55 * perp + 0.85 * palm_n)  # the thumb pad faces the palm and fingers
            if j == 13:  # CMC: flexion sweeps across the palm, abduction lifts away from it
                f = _unit(np.cross(u, perp))
                b = _unit(np.cross(u, palm_n))
                t = u if np.cross(u, pad) @ perp > 0 else -u
            else:
                f = _unit(np.cross(u, pad))
                b = _unit(pad - (pad @ u) * u)
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


def build_pose_space(skel: dict, n: int = 20000, seed: int = 0):
    """Returns hands_mean (45,), hands_components (45, 45) (rows = unit components, by decreasing
    variance), joint_limits (15, 3, 2) on the flat axis-angle components (rad)."""
    grasp, uni = sample_poses(skel, n, seed)
    X = grasp.reshape(n, 45)
    mean = X.mean(axis=0)
    _, _, Vt = np.linalg.svd(X - mean, full_matrices=False)
    sign = np.sign(Vt[np.arange(len(Vt)), np.abs(Vt).argmax(axis=1)])
    comps = Vt * sign[:, None]
    both = np.concatenate([grasp, uni], axis=0)
    margin = 0.05
    limits = np.stack([both.min(axis=0) - margin, both.max(axis=0) + margin], axis=-1)
    return mean, comps, limits


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
# Build / save / load
# ----------------------------------------------------------------------------------------------

def build_open_hand_model(spacing: float = 4.5) -> dict[str, np.ndarray]:
    """Build the right-hand open model. Deterministic. Returns MANO-format arrays (model frame, m)."""
    skel = design_skeleton()
    v_h, faces = build_mesh(skel, spacing=spacing)
    # Uniform scale about the wrist so the measured hand length hits the target exactly.
    tips0 = find_tip_vertices(v_h, skel)
    s = HAND_LENGTH_MM / np.linalg.norm(v_h[tips0[TIP_ORDER.index("middle")]])
    v_h = v_h * s
    v_h[:, 0] = np.where(np.isclose(v_h[:, 0], WRIST_CUT_MM * s), WRIST_CUT_MM, v_h[:, 0])
    skel = dict(joints=skel["joints"] * s, tips=skel["tips"] * s, dirs=skel["dirs"])
    skel["scale"] = s
    W = build_weights(v_h, faces, skel)
    Jreg = build_joint_regressor(v_h, skel["joints"])
    tips = find_tip_vertices(v_h, skel)
    sd_h = build_shapedirs(v_h, W, skel)
    mean, comps, limits = build_pose_space(skel)

    v = hand_to_model(v_h)
    shapedirs = np.einsum("vck,cm->vmk", sd_h / 1000.0, AXES)  # hand -> model directions
    kintree = np.array([[4294967295] + list(MANO_PARENTS[1:]), list(range(NUM_MANO_JOINTS))], dtype=np.int64)
    out = dict(
        v_template=v.astype(np.float64),
        f=faces.astype(np.uint32),
        weights=W.astype(np.float64),
        J_regressor=Jreg.astype(np.float64),
        J=hand_to_model(skel["joints"]),
        shapedirs=shapedirs.astype(np.float64),
        posedirs=np.zeros((len(v), 3, 9 * 15)),
        kintree_table=kintree,
        hands_components=comps,
        hands_mean=mean,
        joint_limits=limits,
        tip_vertex_ids=tips,
        model_name=np.array("open"),
        shape_factor_names=np.array([n for n, _ in SHAPE_FACTORS]),
        bs_style=np.array("lbs"),
        bs_type=np.array("lrotmin"),
    )
    return out


def _to_storage(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Compact dtypes for the shipped file (float32 geometry; float64 pose space)."""
    out = {}
    for k, a in arrays.items():
        a = np.asarray(a)
        if k in ("v_template", "weights", "J_regressor", "shapedirs", "posedirs", "J") and a.dtype == np.float64:
            a = a.astype(np.float32)
        out[k] = a
    return out


def save_open_hand_model(out_dir: str | Path, arrays: dict[str, np.ndarray] | None = None) -> Path:
    """Build (unless given) and write OPEN_HAND_RIGHT.npz into ``out_dir`` atomically."""
    from handcast.io import save_npz

    arrays = build_open_hand_model() if arrays is None else arrays
    path = Path(out_dir) / _ASSET[-1]
    save_npz(path, compressed=True, **_to_storage(arrays))
    path.chmod(0o644)  # a package asset: readable by everyone
    return path


def asset_path() -> Path:
    """Path of the shipped right-hand asset."""
    return Path(str(resources.files("handcast").joinpath(*_ASSET)))


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
    from handcast.io import load_npz

    return load_npz(path, required=REQUIRED_KEYS)


def load_open_model(side: str = "right", path: str | Path | None = None) -> dict[str, np.ndarray]:
    """Arrays of the open model for ``side`` ("right" or "left"), as float64 (copies).

    ``path`` defaults to the shipped asset. The left hand is the mirror image of the right.
    """
    from handcast.errors import HandcastError

    if side not in ("right", "left"):
        raise HandcastError(f"hand side must be 'right' or 'left', got {side!r}")
    arrays = {k: (v.astype(np.float64) if v.dtype.kind == "f" else v.copy())
              for k, v in _load_cached(str(path or asset_path())).items()}
    return arrays if side == "right" else mirror_model(arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m handcast.hand.open_model",
                                 description="(Re)generate the open hand model asset.")
    ap.add_argument("--out", required=True, help="output folder for OPEN_HAND_RIGHT.npz")
    args = ap.parse_args(argv)
    arrays = build_open_hand_model()
    path = save_open_hand_model(args.out, arrays)
    W = arrays["weights"]
    mask = breadth_vertex_mask(arrays["v_template"], W, arrays["J"])
    J = arrays["J_regressor"] @ arrays["v_template"]
    meas = measure_hand(arrays["v_template"], J, arrays["tip_vertex_ids"], mask)
    print(f"wrote {path}: {len(arrays['v_template'])} vertices, {len(arrays['f'])} faces, "
          f"length {meas['length']:.1f} mm, breadth {meas['breadth']:.1f} mm")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
