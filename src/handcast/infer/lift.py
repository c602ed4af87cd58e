"""``handcast lift VIDEO|TRACKS.npz``: 3D motion of both hands from a video or from 2D tracks.

Pipeline: 2D detection (mediapipe, only for a video) -> 2D tracks -> the lifting model L over windows of
its horizon (64 frames, overlapping, each lifted in its own first camera, re-expressed in the frame-0
camera and cross-faded) -> one reprojection refinement of the whole sequence (:func:`handcast.fit.refine`,
with joint-acceleration smoothness and robust 2D residuals) -> ``lift.npz`` and an overlay ``lift.mp4``.
docs/lift_video.md describes the inputs, the outputs and the measured speed and accuracy.

Outputs (in ``out_dir``; each file written atomically, all of them only once everything is computed):

* ``lift.npz``: ``joints`` (T, 2, 21, 3) float32 metres, frame-0 camera (OpenCV), hands (right, left),
  common 21-keypoint order, NaN where the hand is not valid; ``pose`` (T, 2, 16, 3) flat axis-angle (rad,
  MANO joint order, global orientation in the frame-0 camera) and ``transl`` (T, 2, 3) MANO translation (m,
  frame-0 camera) with ``betas`` (2, 10) (mean shape, zeros): finite everywhere, where a hand is not valid
  they hold the nearest valid frame's values (use ``hand_valid``); ``wrist`` (T, 2, 3) m (NaN where not
  valid); ``hand_valid`` (T, 2) bool (the hand had >= 3 keypoints in frame t); ``uv`` (T, 2, 21, 2) px
  the input 2D keypoints (NaN where missing) and ``confidence`` (T, 2, 21); ``input_hand_valid`` (T, 2)
  (the detector's or the file's flag); ``reproj_uv`` (T, 2, 21, 2) px the result projected into camera t
  (NaN where not valid); ``K`` (3, 3) px; ``world_to_cam`` (T, 4, 4) frame-0 camera -> camera t (identity
  for a static camera); ``image_size`` (2,) int64 (W, H); ``fps`` float64; ``image`` (H, W, 3) uint8 the
  first frame (a video, or a tracks file that has one); ``hand_model`` (the hand model kind the
  parameters belong to); ``model`` (the checkpoint); ``source``; ``reproj_error_px`` (scalar).
* ``lift.mp4`` (unless ``video=False``): per frame, the input frame with the raw 2D detections (grey) and
  the result reprojected (hand colours), beside a second view of the 3D hands.
* ``tracks.npz`` (a video input only): the detections as a tracks file (the ``handcast detect`` layout
  plus ``K`` and ``image``), so ``handcast lift out/tracks.npz`` runs again without detection.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from handcast.conventions import (
    DEFAULT_FOV_DEG,
    HAND_COLORS,
    KEYPOINT_BONES,
    MIN_HAND_KEYPOINTS,
    NUM_KEYPOINTS,
    NUM_MANO_JOINTS,
)
from handcast.data.keypoints import beyond_image
from handcast.detect.types import mirror_fields, old_mirrored_tracks
from handcast.diffusion import SAMPLERS
from handcast.errors import HandcastError
from handcast.fit.align import align_to_tracks
from handcast.fit.refine import RefineConfig, refine
from handcast.geometry import (
    check_intrinsics,
    invert_rigid,
    project,
    resolve_intrinsics,
    rotmat_to_aa,
    sixd_to_rotmat,
    transform_points,
)
from handcast.hand import HandModel
from handcast.io import (
    atomic_outputs,
    check_world_to_cam,
    load_npz,
    numeric_field,
    save_npz,
)
from handcast.models.checkpoint import shipped_checkpoint
from handcast.models.lifting import keep_weights, load_lift
from handcast.render.overlay import project_points, second_view, view_camera

__all__ = ["run_lift", "LiftInput", "read_tracks", "video_input", "window_starts", "window_weights",
           "lift_windows", "align_translation", "RefineSchedule", "refine_motion", "motion_metrics", "shipped_lift_checkpoint", "SHIPPED_LIFT",
           "DEFAULT_WINDOW", "MIN_KEYPOINTS"]

SHIPPED_LIFT = "lift_tiny.safetensors"
#: frames per lifting window: the horizon the shipped checkpoint was trained with
DEFAULT_WINDOW = 64
#: largest classifier-free guidance scale ``--guidance`` takes
MAX_GUIDANCE = 20.0
#: samples of L drawn per window by ``handcast lift`` (``--samples``; results/lift_views.md sections 7 and 9)
DEFAULT_SAMPLES = 16
#: of those, how many are averaged: the ones most consistent with the 2D keypoints (``--keep``;
#: per frame, hand and part, :func:`handcast.models.lifting.select_weights`, results/lift_views.md sections 9-10)
DEFAULT_KEEP = 2
#: most samples of L averaged per window (``--samples``)
MAX_SAMPLES = 64
#: a hand enters the lifting and the refinement in a frame when at least this many keypoints are detected
MIN_KEYPOINTS = MIN_HAND_KEYPOINTS  # kept for callers of this module
TRACKS_SUFFIXES = (".npz",)


def shipped_lift_checkpoint() -> Path:
    """Path of the tiny lifting checkpoint shipped inside the package."""
    return shipped_checkpoint(SHIPPED_LIFT, "handcast train lift")


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclass
class LiftInput:
    """2D tracks and camera of one sequence (hands (right, left), common keypoint order).

    uv: float32 (T, 2, 21, 2) pixels (u, v) in the image of camera t, NaN where missing.
    conf: float32 (T, 2, 21) in [0, 1], 0 where missing (NaN keypoints and invalid hands included).
    hand_valid: bool (T, 2) the input's own flag (detector / file).
    K: float32 (3, 3) intrinsics, pixels. world_to_cam: float32 (T, 4, 4) frame-0 camera -> camera t, or
    None (static camera). fps: frames per second. image_size: (W, H) pixels. image: uint8 (H, W, 3) first
    frame or None. source: the input path; video: the video to draw the overlay on (None for tracks);
    unmirror: the video is a selfie view whose tracks are of its un-mirrored frames (flip them to draw on).
    """

    uv: np.ndarray
    conf: np.ndarray
    hand_valid: np.ndarray
    K: np.ndarray
    world_to_cam: np.ndarray | None
    fps: float
    image_size: tuple[int, int]
    image: np.ndarray | None = None
    source: str = ""
    video: Path | None = None
    K_source: str = ""
    unmirror: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.uv.shape[0])

    @property
    def observed(self) -> np.ndarray:
        """(T, 2) bool: the hand is valid and has at least MIN_KEYPOINTS keypoints with conf > 0."""
        return self.hand_valid & ((self.conf > 0).sum(-1) >= MIN_KEYPOINTS)

    def cameras(self) -> np.ndarray:
        """(T, 4, 4) float32 world_to_cam (identity for a static camera)."""
        if self.world_to_cam is not None:
            return self.world_to_cam
        return np.tile(np.eye(4, dtype=np.float32), (self.num_frames, 1, 1))


def _intrinsics_for(image_size: tuple[int, int] | None, fov: float | None, intrinsics, src: str,
                    file_K: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """(K (3, 3) float32, where from): --intrinsics, else --fov, else the file's K, else the default field of
    view (:func:`handcast.geometry.resolve_intrinsics`)."""
    if fov is None and intrinsics is None and file_K is not None:
        return file_K, "tracks file K"
    if image_size is None and intrinsics is None:
        raise HandcastError(f"{src}: has neither K nor image_size; pass --intrinsics K.json")
    K = resolve_intrinsics(image_size, fov=fov, K=intrinsics).astype(np.float32)
    if intrinsics is not None:
        return K, f"intrinsics file {intrinsics}"
    return K, f"{DEFAULT_FOV_DEG if fov is None else float(fov):g} deg field of view across the longer side"


def _size_from_K(K: np.ndarray) -> tuple[int, int]:
    """(W, H) of an image whose principal point is at its centre (pixel centres on integers)."""
    return max(1, int(round(2 * float(K[0, 2]) + 1))), max(1, int(round(2 * float(K[1, 2]) + 1)))


def read_tracks(path: str | os.PathLike, *, fov: float | None = None, intrinsics=None,
                max_frames: int | None = None) -> LiftInput:
    """Read and check a tracks file (see the module docstring and docs/lift_video.md).

    Required: ``uv`` (T, 2, 21, 2) px, ``hand_valid`` (T, 2). Optional: ``confidence`` (T, 2, 21) in [0, 1]
    (default 1 on valid hands), ``K`` (3, 3), ``world_to_cam`` (T, 4, 4) (frame-0 camera -> camera t;
    rigid; if frame 0 is not the identity the cameras are re-expressed relative to frame 0), ``fps``
    (default 30), ``image_size`` (W, H) (default from K's principal point), ``image`` uint8 (H, W, 3).
    Intrinsics: ``intrinsics`` (a K.json) or ``fov`` override the file's ``K``; without any of them the
    default is a 60 deg field of view across the longer side. Raises HandcastError (one line) for anything malformed.
    """
    path = Path(path)
    src = str(path)
    data = load_npz(path, required=("uv", "hand_valid"))
    if old_mirrored_tracks(data):
        raise HandcastError(f"{src}: tracks of a mirrored (selfie) video written before 2026-12-08, whose keypoints "
                            "are in the mirrored frames; detect the video again (handcast detect --mirrored, or "
                            "handcast lift VIDEO --mirrored)")
    uv = numeric_field(data, "uv", src).astype(np.float32)
    if uv.ndim != 4 or uv.shape[1:] != (2, NUM_KEYPOINTS, 2) or uv.shape[0] < 1:
        raise HandcastError(f"{src}: uv must be (T, 2, {NUM_KEYPOINTS}, 2) pixels with T >= 1, got {uv.shape}")
    T = uv.shape[0]
    hv = numeric_field(data, "hand_valid", src)
    if hv.shape != (T, 2):
        raise HandcastError(f"{src}: hand_valid must be (T, 2) = ({T}, 2), got {hv.shape}")
    if hv.dtype.kind == "f" and not np.isin(hv, (0.0, 1.0)).all():
        raise HandcastError(f"{src}: hand_valid must be boolean (0 / 1)")
    hv = hv.astype(bool)
    if "confidence" in data:
        conf = numeric_field(data, "confidence", src).astype(np.float32)
        if conf.shape != (T, 2, NUM_KEYPOINTS):
            raise HandcastError(f"{src}: confidence must be (T, 2, {NUM_KEYPOINTS}) = ({T}, 2, {NUM_KEYPOINTS}), "
                                f"got {conf.shape}")
        conf = np.where(np.isfinite(conf), conf, 0.0).astype(np.float32)
        if conf.min(initial=0.0) < 0 or conf.max(initial=0.0) > 1:
            raise HandcastError(f"{src}: confidence must be in [0, 1]")
    else:
        conf = np.ones((T, 2, NUM_KEYPOINTS), np.float32)
    w2c = None
    if "world_to_cam" in data:
        w2c = check_world_to_cam(numeric_field(data, "world_to_cam", src), T, src)
        if np.abs(w2c[0] - np.eye(4)).max() > 1e-6:  # make frame 0 the reference
            w2c = w2c @ invert_rigid(w2c[0])[None]
        w2c = w2c.astype(np.float32)
    fps = 30.0
    if "fps" in data:
        f = numeric_field(data, "fps", src).reshape(-1)
        if f.size != 1 or not np.isfinite(f[0]) or f[0] <= 0:
            raise HandcastError(f"{src}: fps must be one positive number")
        fps = float(f[0])
    file_K = None
    if "K" in data:
        file_K = numeric_field(data, "K", src).astype(np.float64)
        if file_K.shape != (3, 3):
            raise HandcastError(f"{src}: K must be (3, 3), got {file_K.shape}")
        check_intrinsics(file_K, name=f"{src}: K")
        file_K = file_K.astype(np.float32)
    image = None
    if "image" in data:
        im = np.asarray(data["image"])
        if im.dtype != np.uint8 or im.ndim != 3 or im.shape[2] != 3 or im.size == 0:
            raise HandcastError(f"{src}: image must be uint8 (H, W, 3) RGB, got {im.shape} {im.dtype}")
        image = im
    size = None
    if "image_size" in data:
        sz = numeric_field(data, "image_size", src).reshape(-1)
        if sz.shape != (2,) or not np.isfinite(sz).all() or (sz < 1).any():
            raise HandcastError(f"{src}: image_size must be (2,) positive (width, height)")
        size = (int(round(float(sz[0]))), int(round(float(sz[1]))))
    elif image is not None:
        size = (int(image.shape[1]), int(image.shape[0]))
    size_given = size is not None
    if size is None and file_K is not None:
        size = _size_from_K(file_K)
    K, k_src = _intrinsics_for(size, fov, intrinsics, src, file_K)
    if size is None:
        size = _size_from_K(K)
    if max_frames is not None:
        n = int(max_frames)
        uv, hv, conf = uv[:n], hv[:n], conf[:n]
        w2c = None if w2c is None else w2c[:n]
    finite = np.isfinite(uv).all(-1)
    far = finite & (np.abs(np.where(np.isfinite(uv), uv, 0.0)) > 1e6).any(-1)  # pixels: far outside any image
    if far.any():
        t, h, j = (int(x) for x in np.argwhere(far)[0])
        raise HandcastError(f"{src}: uv of frame {t}, hand {h}, keypoint {j} is beyond 1e6 pixels ({uv[t, h, j]})")
    conf = np.where(finite & hv[..., None], conf, 0.0).astype(np.float32)
    uv = np.where(finite[..., None], uv, np.nan).astype(np.float32)
    if size_given:  # the tracks against the image they are for (not a size guessed from K)
        given, d = conf > 0, beyond_image(uv, size)
        if given.any() and not (given & (d == 0)).any():
            raise HandcastError(f"{src}: no keypoint of the tracks lies in the {size[0]} x {size[1]} image "
                                f"(tracks of another image size?)")
        far = given & (d > max(size))
        if far.any():
            t, h, j = (int(x) for x in np.argwhere(far)[0])
            raise HandcastError(f"{src}: uv of frame {t}, hand {h}, keypoint {j} lies {d[t, h, j]:.0f} px outside the "
                                f"{size[0]} x {size[1]} image, more than the image's size")
    return LiftInput(uv=uv, conf=conf, hand_valid=hv, K=np.asarray(K, np.float32), world_to_cam=w2c, fps=fps,
                     image_size=size, image=image, source=src, K_source=k_src)


def _first_frame(path: Path) -> tuple[np.ndarray, float]:
    from handcast.detect import read_video

    frames, fps, _, _ = read_video(path, max_frames=1)
    try:
        first = next(frames)
    finally:
        frames.close()
    return first, fps


def video_input(path: str | os.PathLike, *, fov: float | None = None, intrinsics=None,
                max_frames: int | None = None, progress: bool = True, mirrored: bool = False,
                first_frame: tuple[np.ndarray, float] | None = None) -> LiftInput:
    """Detect both hands through a video (mediapipe, :func:`handcast.detect.detect_video`) -> LiftInput.

    Static camera (world_to_cam None); K from ``intrinsics`` / ``fov`` (default 60 deg across the longer side).
    mirrored: a selfie video; the tracks (and ``image``) are of its un-mirrored frames (the detector's rule)."""
    from handcast.detect import detect_video

    path = Path(path)
    first, _ = first_frame if first_frame is not None else _first_frame(path)
    size = (int(first.shape[1]), int(first.shape[0]))
    K, k_src = _intrinsics_for(size, fov, intrinsics, str(path))
    tr = detect_video(path, mirrored=mirrored, progress=progress, max_frames=max_frames)
    hv = np.asarray(tr.hand_valid, bool)
    uv = np.asarray(tr.uv, np.float32)
    finite = np.isfinite(uv).all(-1)
    conf = np.where(finite & hv[..., None], np.asarray(tr.confidence, np.float32), 0.0).astype(np.float32)
    if mirrored:
        first = np.ascontiguousarray(first[:, ::-1])
    return LiftInput(uv=np.where(finite[..., None], uv, np.nan).astype(np.float32), conf=conf, hand_valid=hv,
                     K=K, world_to_cam=None, fps=float(tr.fps), image_size=tuple(int(s) for s in tr.image_size),
                     image=first, source=str(path), video=path, K_source=k_src, unmirror=bool(mirrored))


# ----------------------------------------------------------------------------------------------
# Lifting over windows


def window_starts(T: int, window: int, overlap: int) -> np.ndarray:
    """First frames of the lifting windows covering T frames: evenly spaced, the first at 0, the last
    ending at T, consecutive windows overlapping by at least ``overlap`` frames. One window if T <= window."""
    T, window, overlap = int(T), int(window), int(overlap)
    if T <= window:
        return np.zeros(1, np.int64)
    n = int(np.ceil((T - overlap) / (window - overlap)))
    return np.round(np.linspace(0, T - window, max(n, 2))).astype(np.int64)


def window_weights(length: int, overlap: int) -> np.ndarray:
    """(length,) cross-fade weights of one window: linear ramps over ``overlap`` frames at both ends, 1
    inside. Normalised over the windows covering a frame, consecutive windows blend linearly."""
    i = np.arange(int(length), dtype=np.float64)
    if overlap <= 0:
        return np.ones(int(length))
    return np.minimum(1.0, np.minimum(i + 1, length - i) / (overlap + 1.0))


def lift_windows(model, hand_model, inp: LiftInput, *, window: int = DEFAULT_WINDOW, overlap: int = 16,
                 sampler: str = "ddim", steps: int = 10, seed: int = 0, batch_size: int = 16,
                 progress: bool = True, device: str | torch.device = "cpu",
                 guidance: float = 1.0, num_samples: int = 1, keep: int | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, int]:
    """L over each window, stitched over the whole sequence (``guidance`` != 1: classifier-free
    guidance of that scale, :func:`handcast.diffusion.sample`).

    ``num_samples`` > 1 draws that many samples per window and averages them (rotation matrices averaged
    then projected to SO(3), wrists averaged): an estimate of the posterior mean, which is closer to the
    truth on average than one sample (results/lift_views.md section 7). ``keep`` < ``num_samples`` averages,
    per frame, hand and part (each finger, the global orientation), only the rotations of the ``keep`` samples
    that best explain the 2D keypoints (:func:`handcast.models.lifting.select_weights`; the wrists stay the mean
    of all samples): L's samples scatter most in the hand's orientation and then its fingers, and the ones that
    reproject worst are the misread ones (results/lift_views.md sections 9 and 10).

    Each window is lifted in the camera of its first frame (its cameras re-expressed relative to that
    frame, as L was trained), mapped to the frame-0 camera, and cross-faded with its neighbours
    (rotation matrices averaged then projected to SO(3), wrists averaged). Hands with fewer than
    MIN_KEYPOINTS keypoints in a frame are given to L as missing. Mean shape (betas = 0).

    Returns (pose (T, 2, 16, 3) flat axis-angle, transl (T, 2, 3) MANO translation in metres, both in the
    frame-0 camera, float32 on ``device``; number of windows). Values of frames where a hand is not
    observed are whatever L produced there.
    """
    import roma
    from tqdm.auto import tqdm


    T = inp.num_frames
    obs = inp.observed
    conf = np.where(obs[..., None], inp.conf, 0.0).astype(np.float32)
    kp = np.where(conf[..., None] > 0, inp.uv, 0.0).astype(np.float32)
    w2c = inp.cameras().astype(np.float64)
    starts = window_starts(T, window, overlap)
    n = min(int(window), T)
    W = int(window)
    acc_R = torch.zeros(T, 2, NUM_MANO_JOINTS, 3, 3, dtype=torch.float64)
    acc_w = torch.zeros(T, 2, 3, dtype=torch.float64)
    acc_s = torch.zeros(T, dtype=torch.float64)
    wts = torch.from_numpy(window_weights(n, overlap))
    g = torch.Generator(device=device).manual_seed(int(seed))
    bar = tqdm(total=len(starts), desc="lifting windows", unit="window", disable=not progress, leave=False)
    for b0 in range(0, len(starts), int(batch_size)):
        sb = starts[b0 : b0 + int(batch_size)]
        B = len(sb)
        kp_b = np.zeros((B, W, 2, NUM_KEYPOINTS, 2), np.float32)
        cf_b = np.zeros((B, W, 2, NUM_KEYPOINTS), np.float32)
        cam_b = np.tile(np.eye(4), (B, W, 1, 1))
        for i, s in enumerate(sb):
            kp_b[i, :n], cf_b[i, :n] = kp[s : s + n], conf[s : s + n]
            cam_b[i, :n] = w2c[s : s + n] @ invert_rigid(w2c[s])[None]
        fmask = torch.zeros(B, W, dtype=torch.bool)
        fmask[:, :n] = True
        batch = {
            "kp2d": torch.from_numpy(kp_b).to(device), "kp2d_conf": torch.from_numpy(cf_b).to(device),
            "K": torch.from_numpy(np.repeat(inp.K[None].astype(np.float32), B, 0)).to(device),
            "world_to_cam": torch.from_numpy(cam_b.astype(np.float32)).to(device),
            "image_size": torch.tensor([list(inp.image_size)] * B, dtype=torch.float32, device=device),
            "frame_mask": fmask.to(device),
        }
        rot6d, wrist = model.sample(batch, int(num_samples), sampler, steps, guidance=float(guidance), generator=g)
        # (B, n, 2, 16, 3, 3) window-start camera: the samples' rotation matrices and wrists averaged here and
        # projected to SO(3) once, after the cross-fade below (not per window, as average_samples would)
        wsel = keep_weights(rot6d, wrist, batch, hand_model, keep)  # (B, S, W, 2, 16) or None: all alike
        R = sixd_to_rotmat(rot6d[:, :, :n]).double().cpu()
        R = R.mean(1) if wsel is None else (R * wsel[:, :, :n].double().cpu()[..., None, None]).sum(1)
        wr = wrist[:, :, :n].double().cpu().mean(1)  # (B, n, 2, 3): all samples (see average_samples)
        for i, s in enumerate(sb):
            to0 = torch.from_numpy(invert_rigid(w2c[s]))  # window-start camera -> frame-0 camera
            Ri = R[i].clone()
            Ri[:, :, 0] = to0[:3, :3] @ Ri[:, :, 0]
            wi = wr[i] @ to0[:3, :3].T + to0[:3, 3]
            acc_R[s : s + n] += wts[:, None, None, None, None] * Ri
            acc_w[s : s + n] += wts[:, None, None] * wi
            acc_s[s : s + n] += wts
        bar.update(B)
    bar.close()
    Rm = roma.special_procrustes(acc_R / acc_s[:, None, None, None, None])
    wrist_all = acc_w / acc_s[:, None, None]
    j0 = hand_model.rest_joints(torch.zeros(2, 10, dtype=torch.float32, device=device))[:, 0].double().cpu()
    pose = rotmat_to_aa(Rm).float().to(device)
    transl = (wrist_all - j0).float().to(device)
    return pose, transl, len(starts)


def align_translation(hand_model, pose: torch.Tensor, transl: torch.Tensor, inp: LiftInput) -> torch.Tensor:
    """Move each observed hand so that its keypoints line up with the 2D keypoints (rotations kept, mean
    shape): :func:`handcast.fit.align.align_to_tracks` on one sequence. pose (T, 2, 16, 3), transl (T, 2, 3)
    m frame-0 camera. Returns the new transl (unobserved hands unchanged)."""
    betas = torch.zeros(2, 10, device=pose.device)
    return align_to_tracks(hand_model, pose, transl, betas, inp.uv, inp.conf, inp.observed, inp.K, inp.cameras())


# ----------------------------------------------------------------------------------------------
# Refinement


@dataclass(frozen=True)
class RefineSchedule:
    """The refinement of :func:`refine_motion`: ``rounds`` rounds of :func:`handcast.fit.refine` (Adam
    restarted each round), ``iterations`` in all, learning rates decreasing geometrically from ``lr`` to
    ``lr_end``. The first half of the rounds fits the 2D with little smoothness (``w_smooth_fit``), the
    second half adds the full joint-acceleration term ``w_smooth`` (m^2 per frame^2 against the 2D term in
    normalised image units, docs/fitting.md: with f ~ 1000 px and hands ~0.5 m away, 1 mm of acceleration
    costs about as much as 1 px of reprojection error at weight 1). ``robust_2d``: Geman-McClure scale of
    the 2D residuals (normalised image units; None = squared). ``w_limits``: joint-limit penalty (rad^2).
    """

    iterations: int = 500
    rounds: int = 4
    lr: float = 0.03
    lr_end: float = 0.003
    w_smooth_fit: float = 0.1
    w_smooth: float = 3.0
    robust_2d: float | None = None
    w_limits: float = 0.01


def refine_motion(hand_model, pose: torch.Tensor, transl: torch.Tensor, inp: LiftInput,
                  schedule: RefineSchedule = RefineSchedule(), progress: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Reprojection refinement of the whole sequence as one clip (see :class:`RefineSchedule`).

    pose (T, 2, 16, 3) flat axis-angle and transl (T, 2, 3) m, frame-0 camera (on any device): the start.
    Only observed hands (>= MIN_KEYPOINTS keypoints) enter; the others keep their start values. Mean
    shape. Returns (pose, transl, reprojection error px (mean over the observed keypoints)), on pose's device.
    """
    from tqdm.auto import tqdm


    dev = pose.device
    obs = inp.observed
    conf = np.where(obs[..., None], inp.conf, 0.0).astype(np.float32)
    kp = np.where(conf[..., None] > 0, inp.uv, 0.0).astype(np.float32)
    args = dict(betas=torch.zeros(1, 2, 10, device=dev), kp2d=torch.from_numpy(kp)[None].to(dev),
                conf=torch.from_numpy(conf)[None].to(dev), K=torch.from_numpy(inp.K.astype(np.float32))[None].to(dev),
                world_to_cam=torch.from_numpy(inp.cameras().astype(np.float32))[None].to(dev),
                hand_valid=torch.from_numpy(obs)[None].to(dev))
    p, t = pose[None], transl[None]
    its = int(schedule.iterations)
    rounds = max(1, min(int(schedule.rounds), its)) if its > 0 else 0
    lrs = np.geomspace(schedule.lr, schedule.lr_end, rounds) if rounds > 1 else [schedule.lr] * rounds
    split = np.diff(np.round(np.linspace(0, its, rounds + 1))).astype(int)
    err = float("nan")
    bar = tqdm(total=its, desc="refining", unit="it", disable=not progress or its == 0, leave=False)
    for i, (lr, k) in enumerate(zip(lrs, split)):
        ws = schedule.w_smooth if (rounds == 1 or i >= rounds // 2) else schedule.w_smooth_fit
        cfg = RefineConfig(iterations=int(k), lr=float(lr), tol=0.0, w_smooth=float(ws),
                           robust_2d=schedule.robust_2d, w_limits=schedule.w_limits, record_history=False)
        r = refine(hand_model, p, t, config=cfg, **args)
        p, t, err = r.pose, r.transl, float(r.reproj_error_px[0])
        bar.update(int(k))
    bar.close()
    if its == 0:
        cfg = RefineConfig(iterations=1, tol=float("inf"), record_history=False)
        err = float(refine(hand_model, p, t, config=cfg, **args).reproj_error_px[0])
    return p[0], t[0], err


# ----------------------------------------------------------------------------------------------
# Metrics


def _project_seq(joints: np.ndarray, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    """(T, 2, 21, 3) m frame-0 camera -> (T, 2, 21, 2) px in camera t (NaN behind the camera / NaN input)."""
    return project(transform_points(w2c[:, None, None], joints), np.asarray(K, np.float64))


def _accel(x: np.ndarray, ok: np.ndarray) -> float:
    """Mean norm of the second difference of x (T, ..., D) over entries ok (T, ...) in three consecutive
    frames; NaN if none."""
    if x.shape[0] < 3:
        return float("nan")
    a = np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1)
    m = ok[2:] & ok[1:-1] & ok[:-2]
    return float(a[m].mean()) if m.any() else float("nan")


def motion_metrics(joints: np.ndarray, valid: np.ndarray, inp: LiftInput) -> dict:
    """Reprojection error and jitter of a result against its 2D input.

    joints (T, 2, 21, 3) m frame-0 camera, valid (T, 2). Returns reproj_error_px (mean pixel distance over
    the observed keypoints of valid hands), accel3d_mm (mean 3D joint acceleration, mm per frame^2, over
    valid hands in three consecutive frames), accel2d_raw_px and accel2d_result_px (mean 2D acceleration,
    px per frame^2, of the input keypoints and of the reprojected result over the same keypoints: those
    observed in three consecutive frames).
    """
    uvp = _project_seq(np.asarray(joints, np.float64), inp.K, inp.cameras().astype(np.float64))
    ok = valid[..., None] & (inp.conf > 0) & np.isfinite(inp.uv).all(-1) & np.isfinite(uvp).all(-1)
    d = np.linalg.norm(uvp - inp.uv, axis=-1)
    okj = np.broadcast_to(valid[..., None], joints.shape[:3]) & np.isfinite(joints).all(-1)
    return {
        "reproj_error_px": float(d[ok].mean()) if ok.any() else float("nan"),
        "accel3d_mm": 1000.0 * _accel(np.asarray(joints, np.float64), okj),
        "accel2d_raw_px": _accel(inp.uv.astype(np.float64), ok),
        "accel2d_result_px": _accel(uvp, ok),
    }


# ----------------------------------------------------------------------------------------------
# Output


def _fill_invalid(x: np.ndarray, valid: np.ndarray, default: np.ndarray) -> np.ndarray:
    """x (T, 2, ...) with the entries of invalid (t, hand) replaced by the nearest valid frame's values
    (``default[hand]`` for a hand never valid)."""
    x = np.array(x)
    T = x.shape[0]
    for h in range(2):
        idx = np.flatnonzero(valid[:, h])
        if len(idx) == 0:
            x[:, h] = default[h]
            continue
        pos = np.searchsorted(idx, np.arange(T)).clip(0, len(idx) - 1)
        prev = idx[np.maximum(np.searchsorted(idx, np.arange(T)) - 1, 0)]
        nxt = idx[pos]
        near = np.where(np.abs(np.arange(T) - prev) <= np.abs(nxt - np.arange(T)), prev, nxt)
        x[:, h] = x[near, h]
    return x


def _draw_hands(draw, kp: np.ndarray, ok: np.ndarray, colors, width: int, radius: float) -> None:
    """Skeletons (2, 21, 2) px with per-keypoint ok (2, 21) in colours (2, 3), straight onto a PIL draw."""
    for h in range(2):
        if not ok[h].any():
            continue
        col = tuple(int(c) for c in colors[h])
        pts = [tuple(p) for p in kp[h].tolist()]
        for a, b in KEYPOINT_BONES:
            if ok[h, a] and ok[h, b]:
                draw.line([pts[a], pts[b]], fill=col, width=width)
        for k in np.flatnonzero(ok[h]):
            x, y = pts[k]
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=col)


def _overlay_frames(inp: LiftInput, joints: np.ndarray, valid: np.ndarray, reproj: np.ndarray,
                    height: int = 360, progress: bool = True):
    """Frames of the overlay video (a generator of (height, W', 3) uint8, W' even): the input frame (or a
    grey canvas for a tracks file) with the raw 2D keypoints (grey) and the result reprojected into camera
    t (hand colours), beside a fixed second view of the 3D hands of frame t with their recent wrist paths.
    Drawn without anti-aliasing to stay fast (~10 ms a frame)."""
    from PIL import Image, ImageDraw
    from tqdm.auto import tqdm


    T = inp.num_frames
    W0, H0 = inp.image_size
    w = max(2, int(round(W0 * height / H0)))
    scale = np.array([w / W0, height / H0])
    pts = np.where(valid[..., None, None], joints, np.nan)
    cam = view_camera(pts, (height, height))
    grid = second_view(pts[:1], np.zeros((1, 2), bool), camera=cam, shadows=False, skeleton=False)
    side_uv, _ = project_points(pts, cam.K, cam.world_to_cam)  # (T, 2, 21, 2) second-view pixels
    colors = np.asarray(HAND_COLORS, np.uint8).reshape(2, 3)
    pale = (colors.astype(np.float64) * 0.45 + 255 * 0.55).astype(np.uint8)
    grey = np.full((2, 3), 205, np.uint8)
    raw_ok = (inp.conf > 0) & np.isfinite(inp.uv).all(-1)
    res_ok = valid[..., None] & np.isfinite(reproj).all(-1)
    side_ok = valid[..., None] & np.isfinite(side_uv).all(-1)
    lw = max(1, int(round(height / 180)))
    sep = np.full((height, 4, 3), 255, np.uint8)
    if inp.video is not None:
        from handcast.detect import read_video

        frames, _, _, _ = read_video(inp.video, max_frames=T)
        if inp.unmirror:
            frames = (np.ascontiguousarray(f[:, ::-1]) for f in frames)
    else:
        bg = np.full((H0, W0, 3), 96, np.uint8)
        frames = (inp.image if (t == 0 and inp.image is not None) else bg for t in range(T))
    try:
        for t, frame in enumerate(tqdm(frames, total=T, desc="writing video", unit="frame", disable=not progress,
                                       leave=False)):
            if t >= T:
                break
            left = Image.fromarray(frame)
            if H0 >= 2 * height:  # box-reduce first: much faster than a filtered resize of the full frame
                left = left.reduce(H0 // height)
            if left.size != (w, height):
                left = left.resize((w, height), Image.BILINEAR)
            d = ImageDraw.Draw(left)
            _draw_hands(d, (inp.uv[t] + 0.5) * scale - 0.5, raw_ok[t], grey, lw, 1.5 * lw)
            _draw_hands(d, (reproj[t] + 0.5) * scale - 0.5, res_ok[t], colors, lw, 1.5 * lw)
            d.text((6, 4), f"t = {t}   grey: 2D input   colour: 3D result reprojected", fill=(255, 255, 255))
            right = Image.fromarray(grid)
            d = ImageDraw.Draw(right)
            for h in range(2):
                path = side_uv[max(0, t - 30) : t + 1, h, 0]
                path = [tuple(p) for p in path[np.isfinite(path).all(-1)].tolist()]
                if len(path) > 1:
                    d.line(path, fill=tuple(int(c) for c in pale[h]), width=lw)
            _draw_hands(d, side_uv[t], side_ok[t], colors, lw, 1.5 * lw)
            d.text((6, 4), "3D, second view", fill=(30, 30, 30))
            out = np.concatenate([np.asarray(left), sep, np.asarray(right)], axis=1)
            if out.shape[1] % 2:
                out = np.pad(out, ((0, 0), (0, 1), (0, 0)), mode="edge")
            yield out
    finally:
        if hasattr(frames, "close"):
            frames.close()


@contextlib.contextmanager
def _outputs(out_dir: Path, names: list[str]):
    """Temporary paths for every output (in one temporary folder), all moved into ``out_dir`` only when the
    block succeeds; on failure or kill nothing appears under a final name."""
    with atomic_outputs(out_dir) as tmp:  # every file appears together (a killed run leaves none)
        yield {n: tmp / n for n in names}


# ----------------------------------------------------------------------------------------------
# The command


def _check_args(window, overlap, refine_iterations, steps, sampler, max_frames) -> None:
    if window < 8:
        raise HandcastError(f"--window must be at least 8 frames, got {window}")
    if not 0 <= overlap < window:
        raise HandcastError(f"--overlap must be in [0, window) = [0, {window}), got {overlap}")
    if refine_iterations < 0:
        raise HandcastError(f"--refine-iterations must be >= 0, got {refine_iterations}")
    if sampler not in SAMPLERS:
        raise HandcastError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if steps is not None and int(steps) < 1:
        raise HandcastError(f"--steps must be >= 1, got {steps}")
    if max_frames is not None and int(max_frames) < 1:
        raise HandcastError(f"--max-frames must be >= 1, got {max_frames}")


def run_lift(source: str | os.PathLike, out_dir: str | os.PathLike, *, ckpt: str | os.PathLike | None = None,
             fov: float | None = None, intrinsics: str | os.PathLike | None = None, window: int | None = None,
             overlap: int = 16, refine_iterations: int = RefineSchedule.iterations, video: bool = True,
             max_frames: int | None = None, progress: bool = True, sampler: str = "ddim", steps: int = 10,
             seed: int = 0, mirrored: bool = False, smooth: float = RefineSchedule.w_smooth,
             device: str | torch.device = "cpu", guidance: float = 1.0, samples: int = DEFAULT_SAMPLES,
             keep: int = DEFAULT_KEEP) -> dict:
    """The ``handcast lift`` command: 3D motion of both hands from a video or a tracks file.

    source: a video (any format PyAV decodes; hands detected with mediapipe, extra ``detect``) or a tracks
    ``.npz`` (docs/lift_video.md). out_dir: output folder (lift.npz, lift.mp4, tracks.npz; see the module
    docstring). ckpt: lifting checkpoint (default: the shipped tiny one). fov / intrinsics: field of view in
    degrees across the longer side / a K.json 3x3 matrix (default: the tracks file's K, else 60 deg). window /
    overlap: lifting window and overlap in frames (default 64 / 16). refine_iterations: Adam iterations of
    the refinement (0 = L only). smooth: weight of the joint-acceleration term. max_frames: only the first
    frames. mirrored: the video is a selfie (mirrored) view: it is un-mirrored first, so each hand has its
    owner's handedness and shape, and every output (tracks, 3D in the un-mirrored camera, overlay) is of the
    un-mirrored video. sampler / steps / seed: L's sampler; guidance:
    its classifier-free guidance scale (1 = none; results/lift_views.md section 5 measures 1-3); samples: L's
    samples drawn per window, keep: how many of them are averaged, the most consistent with the 2D keypoints
    (all when ``keep`` >= ``samples``; :func:`lift_windows`).

    Returns {"outputs": [paths], "model", "frames", "windows", "fps", "hands_observed" (frames per hand),
    "intrinsics" (where K came from), "metrics" (of the result; "lift_only" ones of L before refinement),
    "seconds" (per stage and total), "messages"}. Raises HandcastError (one line, nothing written) for a
    missing / undecodable / empty video, a video or tracks file without any hand, a malformed tracks file,
    degenerate intrinsics or bad options.
    """
    t_start = time.perf_counter()
    secs: dict[str, float] = {}
    window = DEFAULT_WINDOW if window is None else int(window)
    overlap = int(overlap)
    _check_args(window, overlap, int(refine_iterations), steps, sampler, max_frames)
    if not (np.isfinite(guidance) and 0 < guidance <= MAX_GUIDANCE):
        raise HandcastError(f"--guidance must be in (0, {MAX_GUIDANCE:g}], got {guidance}")
    if not 1 <= int(samples) <= MAX_SAMPLES:
        raise HandcastError(f"--samples must be in [1, {MAX_SAMPLES}], got {samples}")
    if not 1 <= int(keep) <= MAX_SAMPLES:
        raise HandcastError(f"--keep must be in [1, {MAX_SAMPLES}], got {keep}")
    source = Path(source)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HandcastError(f"--out {out_dir} exists and is not a folder")
    if not source.exists():
        raise HandcastError(f"input not found: {source}")
    if source.is_dir():
        raise HandcastError(f"{source} is a folder; give a video or a tracks .npz")
    is_tracks = source.suffix.lower() in TRACKS_SUFFIXES
    messages: list[str] = []
    first = None
    if is_tracks:
        inp = read_tracks(source, fov=fov, intrinsics=intrinsics, max_frames=max_frames)
    else:
        first = _first_frame(source)  # undecodable / empty videos fail here, before anything else
        size = (int(first[0].shape[1]), int(first[0].shape[0]))
        _intrinsics_for(size, fov, intrinsics, str(source))  # bad intrinsics fail before the detection
    ckpt = shipped_lift_checkpoint() if ckpt is None else Path(ckpt)
    model = load_lift(ckpt, device)
    hands = HandModel("auto").to(device)
    secs["load"] = time.perf_counter() - t_start
    if not is_tracks:
        t0 = time.perf_counter()
        inp = video_input(source, fov=fov, intrinsics=intrinsics, max_frames=max_frames, progress=progress,
                          mirrored=mirrored, first_frame=first)
        secs["detect"] = time.perf_counter() - t0
    obs = inp.observed
    if not obs.any():
        what = "no hand detected in" if not is_tracks else "no hand with at least 3 keypoints in"
        raise HandcastError(f"{what} {source}")
    T = inp.num_frames
    for h, name in enumerate(("right", "left")):
        if not obs[:, h].any():
            messages.append(f"no {name} hand in {source}: it is marked invalid in every frame")

    t0 = time.perf_counter()
    with torch.no_grad():
        pose0, transl0, n_windows = lift_windows(model, hands, inp, window=window, overlap=overlap, sampler=sampler,
                                                 steps=steps, seed=seed, progress=progress, device=device,
                                                 guidance=guidance, num_samples=int(samples), keep=keep)
        transl0 = align_translation(hands, pose0, transl0, inp)
    secs["lift"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    schedule = RefineSchedule(iterations=int(refine_iterations), w_smooth=float(smooth))
    pose, transl, _ = refine_motion(hands, pose0, transl0, inp, schedule, progress=progress)
    secs["refine"] = time.perf_counter() - t0

    betas = torch.zeros(T, 2, 10, device=pose.device)
    with torch.no_grad():
        j_init = hands.keypoints(pose0, betas, transl0, rep="aa", convention="flat").cpu().numpy().astype(np.float64)
        joints = hands.keypoints(pose, betas, transl, rep="aa", convention="flat").cpu().numpy().astype(np.float64)
        j0 = hands.rest_joints(torch.zeros(2, 10, device=pose.device))[:, 0].cpu().numpy()
    j_init[~obs] = np.nan
    joints[~obs] = np.nan
    metrics = motion_metrics(joints, obs, inp)
    metrics["lift_only"] = motion_metrics(j_init, obs, inp)
    pose_np = _fill_invalid(pose.cpu().numpy(), obs, np.zeros((2, NUM_MANO_JOINTS, 3)))
    default_wrist = np.array([[0.1, 0.0, 0.5], [-0.1, 0.0, 0.5]])
    transl_np = _fill_invalid(transl.cpu().numpy(), obs, default_wrist - j0)
    reproj = _project_seq(joints, inp.K, inp.cameras().astype(np.float64))
    reproj[~obs] = np.nan

    res = dict(joints=joints.astype(np.float32), pose=pose_np.astype(np.float32), transl=transl_np.astype(np.float32),
               betas=np.zeros((2, 10), np.float32), wrist=joints[:, :, 0].astype(np.float32), hand_valid=obs,
               uv=inp.uv, confidence=inp.conf, input_hand_valid=inp.hand_valid, reproj_uv=reproj.astype(np.float32),
               K=inp.K.astype(np.float32), world_to_cam=inp.cameras().astype(np.float32),
               image_size=np.asarray(inp.image_size, np.int64), fps=np.float64(inp.fps), hand_model=np.asarray(hands.kind),
               model=np.asarray(str(ckpt)), source=np.asarray(str(source)),
               reproj_error_px=np.float64(metrics["reproj_error_px"]))
    if inp.image is not None:
        res["image"] = inp.image
    names = ["lift.npz"] + (["lift.mp4"] if video else []) + ([] if is_tracks else ["tracks.npz"])
    t0 = time.perf_counter()
    with _outputs(out_dir, names) as tmp:
        if video:
            from handcast.render.video import write_video

            write_video(tmp["lift.mp4"], _overlay_frames(inp, joints, obs, reproj, progress=progress), inp.fps)
        if not is_tracks:
            save_npz(tmp["tracks.npz"], uv=inp.uv, hand_valid=inp.hand_valid, confidence=inp.conf, fps=np.float64(inp.fps),
                     image_size=np.asarray(inp.image_size, np.int64), K=inp.K, image=inp.image,
                     **mirror_fields(mirrored))
        save_npz(tmp["lift.npz"], **res)
    secs["write"] = time.perf_counter() - t0
    secs["total"] = time.perf_counter() - t_start
    return {"outputs": [out_dir / n for n in names], "model": str(ckpt), "frames": T, "windows": n_windows,
            "fps": inp.fps, "hands_observed": {"right": int(obs[:, 0].sum()), "left": int(obs[:, 1].sum())},
            "intrinsics": inp.K_source, "metrics": metrics, "seconds": secs, "messages": messages}
