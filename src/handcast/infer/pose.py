"""``handcast pose IMAGE``: single-image 3D hand pose and mesh of every hand, written to a folder.

The 2D keypoints come from a keypoints file (:mod:`handcast.data.keypoints`) or, when none is given, from
the mediapipe detector (:mod:`handcast.detect`, optional extra ``detect``); the cascade
(:func:`handcast.models.cascade.estimate.estimate_pose`) does the rest. See docs/pose.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from handcast.conventions import NUM_KEYPOINTS
from handcast.data.images import load_image, photo_camera, unmirror_photo
from handcast.data.keypoints import check_in_image, keypoints_json, read_keypoints
from handcast.errors import HandcastError
from handcast.fit.keypoint_fit import KeypointFitConfig, refine_pose
from handcast.geometry import resolve_intrinsics
from handcast.io import atomic_dir, check_output_dir, save_npz
from handcast.models.cascade.estimate import PoseResult, estimate_pose, pose_arrays
from handcast.models.cascade.model import load_cascade, resolve_pose_checkpoint
from handcast.render.overlay import overlay_motion, save_png, second_view

# The cascade's input when neither --keypoints-only nor --use-image is given (results/pose_camera_robust.md)
DEFAULT_KEYPOINTS_ONLY = True

# What run_pose writes: an existing --out holding anything else is not replaced, even with --overwrite.
POSE_OUTPUTS = ("pose.npz", "mesh.ply", "mesh.obj", "overlay.png", "spread.png", "keypoints.json")


def detect_keypoints(image: np.ndarray, once: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(uv (2, 21, 2) pixels, conf (2, 21)) of the hands the mediapipe detector finds in ``image`` (uint8 RGB),
    hands (right, left); a one-line error naming ``--keypoints`` when the detector is missing or fails.
    once: the detector on the photo as is only (re-tracked as always), instead of the average over its test-time
    variants (:func:`handcast.detect.detect_image`; either way, tiles of a photo that finds no hand)."""
    try:
        from handcast.detect import detect_image
    except ImportError as e:
        raise HandcastError(f"no keypoints were given and the hand detector is unavailable ({e}); install the "
                            "'detect' extra (pip install handcast[detect]) or pass --keypoints KP.json") from None
    try:
        det = detect_image(image, variants=None) if once else detect_image(image)
    except HandcastError as e:
        raise HandcastError(f"no keypoints were given and the hand detector failed: {str(e).splitlines()[0]} "
                            "(or pass --keypoints KP.json)") from None
    return np.asarray(det.uv, np.float64), np.asarray(det.confidence, np.float64) * det.present[:, None]


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
             device: str = "cpu", mesh_format: str = "ply", fov: float | None = None,
             intrinsics: str | os.PathLike | None = None, refine: bool = True,
             keypoints_only: bool | None = None, detect_once: bool = False,
             fit_prior: float | None = None, mirrored: bool = False, verbose: bool = True) -> Path:
    """``handcast pose IMAGE [--out DIR] [--keypoints KP.json] [--ckpt ...]``: writes into ``out_dir``
    (atomically: complete or not at all) ``pose.npz``, ``mesh.<ply|obj>``, ``overlay.png``, ``spread.png``
    and ``keypoints.json`` (the 2D keypoints used). ``out_dir`` defaults to ``<image stem>_pose`` in the
    current folder. The camera: at most one of ``intrinsics`` (a K.json file), ``fov`` (horizontal field of
    view, degrees) and ``focal`` (pixels); default: the default field of view
    (:func:`handcast.geometry.resolve_intrinsics`). ``refine``: fit the hand model to the keypoints after the
    cascade (:func:`handcast.fit.keypoint_fit.refine_pose`; the cascade's own estimate stays in pose.npz as
    ``*_network``). ``keypoints_only``: the cascade ignores the image and estimates from the keypoints alone
    (None: :data:`DEFAULT_KEYPOINTS_ONLY`). ``detect_once``: without ``keypoints``, the detector on the photo
    as is instead of the average over its test-time variants (:func:`detect_keypoints`). ``fit_prior``: the keypoint
    fit's pull of the fingers towards the network's (:attr:`KeypointFitConfig.w_prior`, default 100; lower follows
    the keypoints more closely in 2D at a cost in 3D, docs/pose.md). ``mirrored``: the photo is a selfie view
    (flipped left to right); it is un-mirrored first (:func:`handcast.data.images.unmirror_photo`), so each hand gets its owner's
    handedness and shape and every output is of the un-mirrored photo. ``verbose``: print the notes on the keypoints
    and the camera used (stderr). Returns ``out_dir``."""

    if mesh_format not in ("ply", "obj"):
        raise HandcastError(f"mesh format must be 'ply' or 'obj', got {mesh_format!r}")
    if out_dir is None:
        if isinstance(image, np.ndarray):
            raise HandcastError("an output folder is needed when the image is an array")
        out_dir = Path(f"{Path(image).stem}_pose")
    out_dir = Path(out_dir)
    check_output_dir(out_dir, overwrite, replaceable=POSE_OUTPUTS)  # a user's files are never replaced
    img = load_image(image) if not isinstance(image, np.ndarray) else image
    resolve_intrinsics((img.shape[1], img.shape[0]), fov=fov, K=intrinsics, focal=focal)  # fails early if bad
    focal, camera = photo_camera(None if isinstance(image, np.ndarray) else image, fov, intrinsics, focal)
    fit_config = KeypointFitConfig() if fit_prior is None else KeypointFitConfig(w_prior=float(fit_prior))
    kps = read_keypoints(keypoints) if keypoints is not None else None
    notes = check_in_image(*kps, (img.shape[1], img.shape[0]), str(keypoints)) if kps is not None else []
    if mirrored:
        img, kps, intrinsics = unmirror_photo(img, kps, intrinsics)
        camera += " (the photo un-mirrored)"
    model = load_cascade(resolve_pose_checkpoint(ckpt), device)
    if kps is None:
        kps = detect_keypoints(img, once=detect_once)
    kp_only = DEFAULT_KEYPOINTS_ONLY if keypoints_only is None else bool(keypoints_only)
    res = estimate_pose(img, model, kps, intrinsics, num_samples, sampler, steps, aggregation, seed, focal=focal,
                        fov=fov, keypoints_only=kp_only)
    if refine:
        res = refine_pose(res, model.hands, fit_config)
    if verbose:
        for note in notes:
            print(f"handcast pose: note: {note}", file=sys.stderr)
        print(f"handcast pose: camera: {camera}", file=sys.stderr)
    overlay = overlay_image(img, res)
    spread = spread_image(res)
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        extra = {"fit_prior": np.float32(fit_config.w_prior)} if refine else {}
        extra["camera"] = np.str_(camera)
        extra["mirrored"] = np.bool_(mirrored)
        save_npz(tmp / "pose.npz", **pose_arrays(res), **extra)
        write_mesh(tmp / f"mesh.{mesh_format}", res)
        save_png(tmp / "overlay.png", overlay)
        save_png(tmp / "spread.png", spread)
        uv = np.full((2, NUM_KEYPOINTS, 2), np.nan)
        cf = np.zeros((2, NUM_KEYPOINTS))
        for i, k in enumerate(res.hand):
            uv[int(k)], cf[int(k)] = res.kp2d[i], res.kp2d_conf[i]
        (tmp / "keypoints.json").write_text(json.dumps(keypoints_json(uv, cf), indent=1))
    return out_dir
