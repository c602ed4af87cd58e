"""Offline builder of the open hand model asset ``handcast/assets/open_hand/OPEN_HAND_RIGHT.npz``.

``python -m handcast.hand.open_model_build --out DIR`` (needs scikit-image, only here) builds the
right hand from the design in :mod:`handcast.hand.open_model` (frame, skeleton, shape factors, pose
sampler): an implicit surface of tagged capsules polygonised into a mesh open only at the wrist,
skinning weights, a joint regressor, shape directions and a PCA pose space, in MANO's array format.
Deterministic: rebuilding gives the shipped asset. Loading the model never imports this module.

Every number used to design the hand is documented in docs/hand_model.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from handcast.conventions import MANO_PARENTS, NUM_MANO_JOINTS
from handcast.hand.open_model import (
    ASSET_NAME,
    AXES,
    FINGER_DESIGN,
    FINGER_JOINT0,
    HAND_LENGTH_MM,
    SHAPE_FACTORS,
    THUMB_DESIGN,
    TIP_ORDER,
    WRIST_CUT_MM,
    breadth_vertex_mask,
    design_skeleton,
    hand_to_model,
    measure_hand,
    sample_poses,
    unit,
)
from handcast.io import save_npz

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
        r = FINGER_DESIGN[name]["radii"]
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
    radii = THUMB_DESIGN["radii"]
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
        s = unit(np.cross(u, np.array([0.0, 0.0, 1.0])))  # across, in the palm plane-ish
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
# Pose space: joint limits, PCA
# ----------------------------------------------------------------------------------------------

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
# Build / save
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
    arrays = build_open_hand_model() if arrays is None else arrays
    path = Path(out_dir) / ASSET_NAME
    save_npz(path, compressed=True, **_to_storage(arrays))
    path.chmod(0o644)  # a package asset: readable by everyone
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m handcast.hand.open_model_build",
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
