"""Whole-image inference: :func:`estimate_pose` (Python API) and :func:`run_pose` (``handcast pose IMAGE``).

Keypoints come from the caller (a keypoints file, see :mod:`handcast.data.keypoints`, or arrays) or, when
none are given, from the mediapipe detector of :mod:`handcast.detect` (optional extra ``detect``). Each hand
with at least :data:`MIN_KEYPOINTS` keypoints is cropped (left hands mirrored into the canonical right
frame), run through the cascade, aggregated, placed by :func:`~handcast.models.cascade.aggregate.fit_root`
and mirrored back. Without intrinsics the camera is assumed to have its principal point at the image centre
and a focal length of max(W, H) pixels (about 53 degrees across the longer side); only the absolute root
position depends on that guess, not the root-relative joints and mesh.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handcast.conventions import HANDS, NUM_KEYPOINTS
from handcast.errors import HandcastError

MIN_KEYPOINTS = 4
DEFAULT_CKPT_NAME = "pose.safetensors"


@dataclass
class PoseResult:
    """Estimates for the H hands found in one image (metres, camera frame of the image, OpenCV axes).

    handedness: (H,) str "right"/"left"; hand: (H,) int 0 right / 1 left (conventions.HANDS).
    joints: (H, 21, 3) root-relative (wrist = 0) keypoints, common 21 order (aggregated).
    vertices: (H, V, 3) root-relative mesh vertices (aggregated); faces: per hand (F, 3) int64 (outward).
    joint_samples: (H, S, 21, 3) and vertex_samples: (H, S, V, 3) root-relative hypotheses.
    root: (H, 3) wrist position in the camera frame (from the 2D keypoints and K; depth depends on the
    assumed focal length when K was not given).
    K: (3, 3) intrinsics used (pixels); focal_assumed: K was guessed (see module docstring).
    boxes: (H, 4) crop boxes (x0, y0, x1, y1) in pixels before the aspect expansion.
    kp2d: (H, 21, 2) the 2D keypoints used (pixels, NaN where missing); kp2d_conf: (H, 21).
    image_size: (W, H) pixels. aggregation, sampler, steps, num_samples: how it was made.
    """

    handedness: np.ndarray
    hand: np.ndarray
    joints: np.ndarray
    vertices: np.ndarray
    faces: list
    joint_samples: np.ndarray
    vertex_samples: np.ndarray
    root: np.ndarray
    K: np.ndarray
    focal_assumed: bool
    boxes: np.ndarray
    kp2d: np.ndarray
    kp2d_conf: np.ndarray
    image_size: tuple[int, int]
    aggregation: str
    sampler: str
    steps: int
    num_samples: int
    hand_model: str

    @property
    def num_hands(self) -> int:
        return int(len(self.hand))


def default_intrinsics(width: int, height: int, focal: float | None = None) -> np.ndarray:
    """(3, 3) pinhole intrinsics with the principal point at the image centre and focal ``focal`` px
    (default max(W, H))."""
    f = float(max(width, height) if focal is None else focal)
    if not np.isfinite(f) or f <= 0:
        raise HandcastError(f"focal length must be a positive number of pixels, got {focal}")
    return np.array([[f, 0.0, (width - 1) / 2], [0.0, f, (height - 1) / 2], [0.0, 0.0, 1.0]])


def _keypoints_from_detector(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    try:
        from handcast.detect import detect_image
    except ImportError as e:
        raise HandcastError(f"no keypoints were given and the hand detector is unavailable ({e}); install the "
                            "'detect' extra (pip install handcast[detect]) or pass --keypoints KP.json") from None
    try:
        det = detect_image(image)
    except HandcastError as e:
        raise HandcastError(f"no keypoints were given and the hand detector failed: {str(e).splitlines()[0]} "
                            "(or pass --keypoints KP.json)") from None
    return np.asarray(det.uv, np.float64), np.asarray(det.confidence, np.float64) * det.present[:, None]


def _check_keypoints(uv, conf) -> tuple[np.ndarray, np.ndarray]:
    uv = np.asarray(uv, np.float64)
    if uv.shape != (2, NUM_KEYPOINTS, 2):
        raise HandcastError(f"keypoints must be (2, 21, 2) pixels, hands (right, left), got {uv.shape}")
    c = np.ones((2, NUM_KEYPOINTS)) if conf is None else np.asarray(conf, np.float64)
    if c.shape != (2, NUM_KEYPOINTS):
        raise HandcastError(f"keypoint confidences must be (2, 21), got {c.shape}")
    c = np.where(np.isfinite(uv).all(-1) & np.isfinite(c), np.clip(c, 0.0, 1.0), 0.0)
    return uv, c


def estimate_pose(image: np.ndarray, model, keypoints=None, K=None, num_samples: int = 5, sampler: str = "ddim",
                  steps: int = 1, aggregation: str = "median", seed: int = 0, tau: float = 4.0,
                  focal: float | None = None) -> PoseResult:
    """3D pose and mesh of every hand with keypoints in ``image``.

    image: (H, W, 3) uint8 RGB. model: a :class:`~handcast.models.cascade.model.PoseCascade` (see
    :func:`~handcast.models.cascade.model.load_cascade`); it runs on its own device.
    keypoints: (uv (2, 21, 2) pixels NaN where missing, conf (2, 21) or None), hands (right, left), common
    order; None = the mediapipe detector. K: (3, 3) intrinsics or None (default_intrinsics with ``focal``).
    num_samples S, sampler ("ddim", "ddpm", "dpm") and steps: of both diffusion stages (one-step DDIM by
    default). aggregation: "single", "mean", "median" or "reproj" (tau: its temperature in crop pixels).
    seed: the sampling noise (same seed, same result)."""
    from handcast.data.crops import crop_hand, mirror_x
    from handcast.models.cascade.aggregate import AGGREGATIONS, fit_root

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise HandcastError(f"image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    if aggregation not in AGGREGATIONS:
        raise HandcastError(f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
    if int(num_samples) < 1 or int(steps) < 1:
        raise HandcastError(f"num_samples and steps must be >= 1, got {num_samples} and {steps}")
    h, w = img.shape[:2]
    uv, conf = _keypoints_from_detector(img) if keypoints is None else _check_keypoints(*keypoints)
    focal_assumed = K is None
    K = default_intrinsics(w, h, focal) if K is None else np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise HandcastError(f"K must be finite (3, 3) intrinsics with positive focal lengths, got {K.tolist()}")
    hands = [k for k in (0, 1) if (conf[k] > 0).sum() >= MIN_KEYPOINTS]
    if not hands:
        raise HandcastError(f"no hand with at least {MIN_KEYPOINTS} keypoints in the image")
    crops = [crop_hand(img, uv[k], conf[k], k, K) for k in hands]
    dev = next(model.parameters()).device
    x = torch.stack([c["input"] for c in crops]).to(dev)
    kp = torch.as_tensor(np.stack([c["kp2d"] for c in crops]), device=dev)
    cf = torch.as_tensor(np.stack([c["conf"] for c in crops]), device=dev)
    Kc = torch.as_tensor(np.stack([c["K_crop"] for c in crops]), device=dev)
    g = torch.Generator(device=dev).manual_seed(int(seed))
    if model.training:
        model.eval()
    with torch.no_grad():
        out = model.estimate_crops(x, kp, cf, Kc, int(num_samples), sampler, int(steps), aggregations=(aggregation,),
                                   tau=tau, generator=g)
        joints, verts = out["aggregated"][aggregation]
        root = fit_root(joints, kp, cf, Kc)
    flip = np.array([c["flip"] for c in crops])

    def cam(x):  # canonical -> camera frame
        x = x.detach().cpu().numpy().astype(np.float32)
        f = flip.reshape((-1,) + (1,) * (x.ndim - 1))
        return np.where(f, mirror_x(x), x)

    hand = np.array(hands, np.int8)
    return PoseResult(
        handedness=np.array([HANDS[k] for k in hands]), hand=hand, joints=cam(joints), vertices=cam(verts),
        faces=[model.hands.faces(int(k)) for k in hands], joint_samples=cam(out["joint_samples"]),
        vertex_samples=cam(out["vertex_samples"]), root=cam(root), K=K.astype(np.float32),
        focal_assumed=focal_assumed, boxes=np.stack([c["box"] for c in crops]).astype(np.float32),
        kp2d=np.where(conf[hands][..., None] > 0, uv[hands], np.nan).astype(np.float32),
        kp2d_conf=conf[hands].astype(np.float32), image_size=(w, h), aggregation=aggregation, sampler=sampler,
        steps=int(steps), num_samples=int(num_samples), hand_model=model.hands.kind)


# ---------------------------------------------------------------------------------------------- outputs

def resolve_checkpoint(ckpt: str | os.PathLike | None) -> Path:
    """A checkpoint path: the file itself, ``<folder>/pose.safetensors`` for a run folder, or (None)
    ``$HANDCAST_HOME/models/pose.safetensors`` if it exists, else the shipped tiny checkpoint."""
    if ckpt is None:
        from handcast.hand.mano_import import handcast_home

        p = handcast_home() / "models" / DEFAULT_CKPT_NAME
        if p.is_file():
            return p
        from handcast.train.checkpoint import shipped_checkpoint

        return shipped_checkpoint("pose_tiny.safetensors", "handcast train pose")
    p = Path(ckpt)
    if p.is_dir():
        p = p / DEFAULT_CKPT_NAME
    if not p.is_file():
        raise HandcastError(f"pose checkpoint not found: {p}")
    return p


def pose_arrays(res: PoseResult) -> dict[str, np.ndarray]:
    """The arrays of ``pose.npz`` (docs/pose.md)."""
    F = max(len(f) for f in res.faces)
    faces = np.full((res.num_hands, F, 3), -1, np.int32)
    for i, f in enumerate(res.faces):
        faces[i, : len(f)] = f
    return {
        "joints": res.joints, "vertices": res.vertices, "handedness": res.handedness, "hand": res.hand,
        "joint_samples": res.joint_samples, "vertex_samples": res.vertex_samples, "root": res.root,
        "faces": faces, "K": res.K, "focal_assumed": np.bool_(res.focal_assumed), "boxes": res.boxes,
        "kp2d": res.kp2d, "kp2d_conf": res.kp2d_conf, "image_size": np.asarray(res.image_size, np.int32),
        "aggregation": np.array(res.aggregation), "sampler": np.array(res.sampler),
        "steps": np.int32(res.steps), "num_samples": np.int32(res.num_samples), "hand_model": np.array(res.hand_model),
    }


def write_mesh(path: Path, res: PoseResult) -> None:
    """All hands as one mesh (vertices + root, camera frame, metres) in the format of ``path``'s suffix."""
    import trimesh

    parts = [trimesh.Trimesh(res.vertices[i] + res.root[i], res.faces[i], process=False) for i in range(res.num_hands)]
    mesh = trimesh.util.concatenate(parts) if len(parts) > 1 else parts[0]
    mesh.export(str(path), file_type=path.suffix.lstrip(".").split(".")[-1] if path.suffix else "ply")


def _two_hand(res: PoseResult, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-hand array (H, ...) -> (2, ...) in (right, left) order with NaN for a missing hand, and valid (2,)."""
    out = np.full((2,) + x.shape[1:], np.nan, np.float64)
    valid = np.zeros(2, bool)
    for i, k in enumerate(res.hand):
        out[int(k)] = x[i]
        valid[int(k)] = True
    return out, valid


def overlay_image(image: np.ndarray, res: PoseResult) -> np.ndarray:
    """The meshes (if the GL renderer is available) and skeletons over the image."""
    from handcast.render.overlay import overlay_motion

    j, valid = _two_hand(res, res.joints + res.root[:, None])
    v, _ = _two_hand(res, res.vertices + res.root[:, None])
    v = np.where(np.isfinite(v), v, 0.0)
    faces = (res.faces[list(res.hand).index(0)] if 0 in res.hand else None,
             res.faces[list(res.hand).index(1)] if 1 in res.hand else None)
    faces = tuple(f if f is not None else faces[1 - i] for i, f in enumerate(faces))
    try:
        return overlay_motion(image, j[None], res.K, valid[None], vertices=v[None], faces=faces)
    except HandcastError as e:  # no EGL: skeletons only
        print(f"handcast pose: warning: meshes not drawn ({str(e).splitlines()[0]})", file=sys.stderr)
        return overlay_motion(image, j[None], res.K, valid[None])


def spread_image(res: PoseResult, size: int = 384) -> np.ndarray:
    """The S joint hypotheses of every hand (placed at the estimated root), from the side and from above,
    skeletons coloured by hand and faded by hypothesis index."""
    from handcast.render.overlay import second_view

    samples = res.joint_samples + res.root[:, None, None]  # (H, S, 21, 3)
    S = samples.shape[1]
    j = np.full((S, 2, NUM_KEYPOINTS, 3), np.nan)
    valid = np.zeros((S, 2), bool)
    for i, k in enumerate(res.hand):
        j[:, int(k)] = samples[i]
        valid[:, int(k)] = True
    panels = [second_view(j, valid, size=(size, size), azimuth=az, elevation=el, shadows=False, fade=0.6)
              for az, el in ((70.0, 20.0), (0.0, 80.0))]
    gap = np.full((size, 6, 3), 255, np.uint8)
    return np.concatenate([panels[0], gap, panels[1]], axis=1)


def run_pose(image: str | os.PathLike | np.ndarray, out_dir: str | os.PathLike | None = None, keypoints: str | os.PathLike | None = None,
             ckpt: str | os.PathLike | None = None, num_samples: int = 5, sampler: str = "ddim", steps: int = 1,
             aggregation: str = "median", focal: float | None = None, seed: int = 0, overwrite: bool = False,
             device: str = "cpu", mesh_format: str = "ply") -> Path:
    """``handcast pose IMAGE [--out DIR] [--keypoints KP.json] [--ckpt ...]``: writes into ``out_dir``
    (atomically: complete or not at all) ``pose.npz``, ``mesh.<ply|obj>``, ``overlay.png``, ``spread.png``
    and ``keypoints.json`` (the 2D keypoints used). ``out_dir`` defaults to ``<image stem>_pose`` in the
    current folder. Returns ``out_dir``."""
    from handcast.data.images import load_image
    from handcast.data.keypoints import keypoints_json, read_keypoints
    from handcast.io import atomic_dir, save_npz
    from handcast.models.cascade.model import load_cascade
    from handcast.render.overlay import save_png

    if mesh_format not in ("ply", "obj"):
        raise HandcastError(f"mesh format must be 'ply' or 'obj', got {mesh_format!r}")
    if out_dir is None:
        if isinstance(image, np.ndarray):
            raise HandcastError("an output folder is needed when the image is an array")
        out_dir = Path(f"{Path(image).stem}_pose")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise HandcastError(f"output folder already exists: {out_dir} (remove it or pass --overwrite)")
    img = load_image(image) if not isinstance(image, np.ndarray) else image
    kps = read_keypoints(keypoints) if keypoints is not None else None
    model = load_cascade(resolve_checkpoint(ckpt), device)
    res = estimate_pose(img, model, kps, None, num_samples, sampler, steps, aggregation, seed, focal=focal)
    overlay = overlay_image(img, res)
    spread = spread_image(res)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        save_npz(tmp / "pose.npz", **pose_arrays(res))
        write_mesh(tmp / f"mesh.{mesh_format}", res)
        save_png(tmp / "overlay.png", overlay)
        save_png(tmp / "spread.png", spread)
        uv = np.full((2, NUM_KEYPOINTS, 2), np.nan)
        cf = np.zeros((2, NUM_KEYPOINTS))
        for i, k in enumerate(res.hand):
            uv[int(k)], cf[int(k)] = res.kp2d[i], res.kp2d_conf[i]
        import json

        (tmp / "keypoints.json").write_text(json.dumps(keypoints_json(uv, cf), indent=1))
    return out_dir
