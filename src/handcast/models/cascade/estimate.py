"""Whole-image pose estimation with the cascade: :func:`estimate_pose` (the ``handcast pose`` command is
:func:`handcast.infer.pose.run_pose`).

Keypoints come from the caller (arrays, e.g. from a keypoints file, see :mod:`handcast.data.keypoints`, or
from the detector through :func:`handcast.infer.pose.detect_keypoints`). Each hand
with at least :data:`MIN_KEYPOINTS` keypoints is cropped (left hands mirrored into the canonical right
frame), run through the cascade, aggregated, placed by :func:`~handcast.models.cascade.aggregate.fit_root`
and mirrored back. Without intrinsics the camera is assumed to have its principal point at the image centre
and the focal length of a field of view (``fov``, default :data:`~handcast.conventions.DEFAULT_FOV_DEG`
degrees across the longer side) or ``focal`` pixels (:func:`handcast.geometry.resolve_intrinsics`); only the
absolute root position depends on that guess, not the root-relative joints and mesh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from handcast.conventions import HANDS, NUM_KEYPOINTS
from handcast.data.crops import crop_hand, mirror_x
from handcast.errors import HandcastError
from handcast.geometry import resolve_intrinsics
from handcast.models.cascade.aggregate import AGGREGATIONS, fit_root

MIN_KEYPOINTS = 4


@dataclass
class PoseResult:
    """Estimates for the H hands found in one image (metres, camera frame of the image, OpenCV axes).

    handedness: (H,) str "right"/"left"; hand: (H,) int 0 right / 1 left (conventions.HANDS).
    joints: (H, 21, 3) root-relative (wrist = 0) keypoints, common 21 order (aggregated).
    vertices: (H, V, 3) root-relative mesh vertices (aggregated); faces: per hand (F, 3) int64 (outward).
    joint_samples: (H, S, 21, 3) and vertex_samples: (H, S, V, 3) root-relative hypotheses.
    root: (H, 3) wrist position in the camera frame (from the 2D keypoints and K; depth depends on the
    assumed focal length when K was not given).
    K: (3, 3) intrinsics used (pixels); focal_assumed: K was not given but assumed (from ``fov``, ``focal`` or
    the default field of view; see module docstring).
    boxes: (H, 4) crop boxes (x0, y0, x1, y1) in pixels before the aspect expansion.
    kp2d: (H, 21, 2) the 2D keypoints used (pixels, NaN where missing); kp2d_conf: (H, 21).
    image_size: (W, H) pixels. aggregation, sampler, steps, num_samples: how it was made.
    After the keypoint fit (``refined``): joints, vertices and root are the fitted hand model's; the network's
    aggregate is kept in joints_network / vertices_network / root_network; pose / betas are the fitted model
    parameters and reproj_px the mean reprojection error.
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
    # set by the keypoint fit (handcast.fit.keypoint_fit.refine_pose); None for the network's estimate alone
    refined: bool = False
    joints_network: np.ndarray | None = None  # (H, 21, 3) the cascade's aggregate before the fit
    vertices_network: np.ndarray | None = None  # (H, V, 3)
    root_network: np.ndarray | None = None  # (H, 3) from fit_root
    pose: np.ndarray | None = None  # (H, 16, 3) flat axis-angle of each hand's own model, camera frame
    betas: np.ndarray | None = None  # (H, 10)
    reproj_px: np.ndarray | None = None  # (H,) mean reprojection error of the used keypoints, pixels

    @property
    def num_hands(self) -> int:
        return int(len(self.hand))


def default_intrinsics(width: int, height: int, focal: float | None = None) -> np.ndarray:
    """(3, 3) pinhole intrinsics with the principal point at the image centre and focal ``focal`` px
    (default: the default field of view). Kept for callers: :func:`handcast.geometry.resolve_intrinsics`."""
    return resolve_intrinsics((width, height), focal=focal)


def _check_keypoints(uv, conf) -> tuple[np.ndarray, np.ndarray]:
    uv = np.asarray(uv, np.float64)
    if uv.shape != (2, NUM_KEYPOINTS, 2):
        raise HandcastError(f"keypoints must be (2, 21, 2) pixels, hands (right, left), got {uv.shape}")
    c = np.ones((2, NUM_KEYPOINTS)) if conf is None else np.asarray(conf, np.float64)
    if c.shape != (2, NUM_KEYPOINTS):
        raise HandcastError(f"keypoint confidences must be (2, 21), got {c.shape}")
    c = np.where(np.isfinite(uv).all(-1) & np.isfinite(c), np.clip(c, 0.0, 1.0), 0.0)
    return uv, c


def estimate_pose(image: np.ndarray, model, keypoints, K=None, num_samples: int = 5, sampler: str = "ddim",
                  steps: int = 1, aggregation: str = "median", seed: int = 0, tau: float = 4.0,
                  focal: float | None = None, fov: float | None = None, keypoints_only: bool = False) -> PoseResult:
    """3D pose and mesh of every hand with keypoints in ``image``.

    image: (H, W, 3) uint8 RGB. model: a :class:`~handcast.models.cascade.model.PoseCascade` (see
    :func:`~handcast.models.cascade.model.load_cascade`); it runs on its own device.
    keypoints: (uv (2, 21, 2) pixels NaN where missing, conf (2, 21) or None), hands (right, left), common
    order (:func:`handcast.infer.pose.detect_keypoints` finds them with the detector). K: (3, 3) intrinsics (or a K.json path), or None for the assumed camera of a
    field of view ``fov`` degrees across the longer side or of focal length ``focal`` px (at most one of K, fov, focal;
    default: the default field of view; :func:`handcast.geometry.resolve_intrinsics`).
    num_samples S, sampler ("ddim", "ddpm", "dpm") and steps: of both diffusion stages (one-step DDIM by
    default). aggregation: "single", "mean", "median" or "reproj" (tau: its temperature in crop pixels).
    seed: the sampling noise (same seed, same result). keypoints_only: estimate from the keypoints and crop
    cameras alone, the image hidden (:meth:`~handcast.models.cascade.model.PoseCascade.estimate_crops`)."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise HandcastError(f"image must be (H, W, 3) uint8 RGB, got {img.shape} {img.dtype}")
    if aggregation not in AGGREGATIONS:
        raise HandcastError(f"unknown aggregation {aggregation!r}; choose from {', '.join(AGGREGATIONS)}")
    if int(num_samples) < 1 or int(steps) < 1:
        raise HandcastError(f"num_samples and steps must be >= 1, got {num_samples} and {steps}")
    h, w = img.shape[:2]
    if keypoints is None:
        raise HandcastError("estimate_pose needs 2D keypoints (handcast.infer.pose.detect_keypoints finds them)")
    uv, conf = _check_keypoints(*keypoints)
    focal_assumed = K is None
    K = resolve_intrinsics((w, h), fov=fov, K=K, focal=focal)
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
                                   tau=tau, generator=g, keypoints_only=bool(keypoints_only))
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
        "refined": np.bool_(res.refined),
        **{k: getattr(res, k) for k in ("joints_network", "vertices_network", "root_network", "pose", "betas",
                                        "reproj_px") if getattr(res, k) is not None},
    }
