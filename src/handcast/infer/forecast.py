"""``handcast forecast IMAGE``: many futures of both hands from one everyday image.

Outputs (in ``out``; every file written atomically):

* ``forecast.png``: the first sample over the image and from a second view, in the paper's colours
  (fading over time), with every sample's wrist path drawn faintly;
* ``forecast.mp4``: the first sample's motion over the image and from the second view;
* ``forecast.npz``: ``joints`` (S, T, 2, 21, 3) metres in the input camera (OpenCV), hands (right, left),
  common 21-keypoint order; ``pose`` (S, T, 2, 16, 3) MANO axis-angle, flat convention; ``transl``
  (S, T, 2, 3) MANO translation (m); ``wrist`` (S, T, 2, 3) m; ``betas`` (2, 10) (mean shape);
  ``hand_valid`` (T, 2) (hands present in the input image; both when no keypoints were given); ``input_kp2d`` (2, 21, 2) px and
  ``input_kp2d_conf`` (2, 21) (the keypoints the model saw, NaN / 0 where none); ``K`` (3, 3);
  ``image_size`` (2,) (W, H); ``image`` (H, W, 3) uint8; ``fps``; ``model`` (the checkpoint used); ``anchored`` (bool: the samples
  start at the observed hands), ``known_frames`` (frames imposed on every sample: 1 for a photo, N with
  ``--context N``, 0 unanchored) and ``known_hands`` (2,) bool (which hands were imposed).

Anchoring (default; ``--no-anchor`` turns it off): each hand with at least 3 keypoints is lifted by L from
its keypoints (the photo as a still track) and refined until it reprojects onto them; that pose and wrist
are imposed as frame 0 of every sample during sampling (:func:`handcast.diffusion.sample`, known-prefix
imputation). A hand without keypoints is sampled freely. docs/forecasting.md has the measured effect.

Which model: ``--ckpt`` if given; otherwise the shipped tiny checkpoints: the keypoint-conditioned F when
2D keypoints are available (``--keypoints`` file, or the mediapipe detector of the ``detect`` extra), the
image-only F when no hand is found (it still runs, and says so).

The camera: ``--intrinsics K.json`` or ``--fov DEG``, else the default field of view
(:func:`handcast.geometry.resolve_intrinsics`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from handcast.conventions import MIN_HAND_KEYPOINTS, NUM_KEYPOINTS
from handcast.data.images import load_image, photo_camera, unmirror_photo
from handcast.data.keypoints import check_in_image
from handcast.errors import HandcastError
from handcast.geometry import (
    resolve_intrinsics,  # also importable from here, where it used to live
    sixd_to_aa,
)
from handcast.hand import HandModel
from handcast.io import atomic_outputs, check_output_dir, save_npz
from handcast.infer.lift import shipped_lift_checkpoint
from handcast.models.checkpoint import shipped_checkpoint
from handcast.fit.anchor import AnchorConfig, lift_prefix
from handcast.models.forecast import load_forecast
from handcast.models.lifting import load_lift
from handcast.models.motion import clamp_motion_to_limits, keypoints_from_motion
from handcast.render.api import render_prediction

SHIPPED = {"image": "forecast_image_tiny.safetensors", "keypoints": "forecast_keypoints_tiny.safetensors"}


def input_keypoints(image: np.ndarray, keypoints: str | os.PathLike | None, detect: bool,
                    detect_once: bool = False) -> tuple[np.ndarray, np.ndarray, str]:
    """(uv (2, 21, 2) px, conf (2, 21), where from) of the input image's hands. detect_once: the detector
    on the photo as is instead of the average over its test-time variants (:func:`handcast.detect.detect_image`)."""
    if keypoints is not None:
        from handcast.data.keypoints import read_keypoints

        uv, conf = read_keypoints(keypoints)
        return uv, conf, f"keypoints file {keypoints}"
    if detect:
        try:
            from handcast.detect import detect_image

            det = detect_image(image, variants=None) if detect_once else detect_image(image)
            return det.uv, det.confidence, "mediapipe"
        except HandcastError as e:
            if "pip install" not in str(e):
                raise
    return np.full((2, NUM_KEYPOINTS, 2), np.nan, np.float32), np.zeros((2, NUM_KEYPOINTS), np.float32), "none"


def anchor_for(uv: np.ndarray, conf: np.ndarray, K: np.ndarray, image_size: tuple[int, int],
               lift_ckpt: str | os.PathLike | None = None, seed: int = 0, world_to_cam: np.ndarray | None = None,
               config: AnchorConfig = AnchorConfig()) -> dict:
    """The known prefix of a forecast from observed 2D keypoints: L + reprojection refinement
    (:func:`handcast.fit.anchor.lift_prefix`).

    uv (N, 2, 21, 2) px (or (2, 21, 2) for one photo), conf (N, 2, 21), K (3, 3), image_size (W, H),
    world_to_cam (N, 4, 4) frame-0 camera -> camera t (default static). Returns {pose (N, 2, 16, 3) flat
    axis-angle, wrist (N, 2, 3) m, known (N, 2) bool, reproj_error_px}, frame-0 camera (frame 0 = the
    first of the N frames)."""
    uv, conf = np.asarray(uv, np.float32), np.asarray(conf, np.float32)
    if uv.ndim == 3:
        uv, conf = uv[None], conf[None]
    lift = load_lift(shipped_lift_checkpoint() if lift_ckpt is None else lift_ckpt)
    hands = HandModel("auto")
    g = torch.Generator().manual_seed(int(seed))
    w2c = None if world_to_cam is None else torch.from_numpy(np.asarray(world_to_cam, np.float32))[None]
    pose, wrist, known, err = lift_prefix(
        lift, hands, torch.from_numpy(np.nan_to_num(uv))[None], torch.from_numpy(conf)[None],
        torch.from_numpy(np.asarray(K, np.float32))[None], torch.tensor([list(image_size)], dtype=torch.float32),
        w2c, config, g)
    return dict(pose=pose[0], wrist=wrist[0], known=known[0], reproj_error_px=float(err[0]))


def forecast_image(model, image: np.ndarray, K: np.ndarray, uv: np.ndarray, conf: np.ndarray, frames: int = 64,
                   samples: int = 5, sampler: str = "ddim", steps: int = 10, seed: int = 0,
                   anchor: dict | None = None, clamp_limits: bool = True) -> dict:
    """Sample ``samples`` futures of ``frames`` frames for one image (uint8 (H, W, 3)) with intrinsics K and
    input keypoints (uv (2, 21, 2) px, conf (2, 21)). Returns the npz arrays (module docstring).

    ``anchor`` (from :func:`anchor_for`: pose (N, 2, 16, 3), wrist (N, 2, 3), known (N, 2), in the camera of
    this image) is imposed as frames 0..N-1 of every sample for the hands it knows; the other hands and
    frames are sampled freely. ``clamp_limits``: every finger joint of every sample is clamped to the hand
    model's joint limits (:func:`handcast.models.motion.clamp_motion_to_limits`)."""
    h, w = image.shape[:2]
    t = int(frames)
    if not 1 <= t <= 1024:
        raise HandcastError(f"--frames must be in [1, 1024], got {frames}")
    if int(samples) < 1:
        raise HandcastError(f"--samples must be >= 1, got {samples}")
    kp = np.where(conf[..., None] > 0, uv, 0.0).astype(np.float32)
    batch = {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255.0)[None],
        "kp2d": torch.from_numpy(kp)[None, None].expand(1, t, 2, 21, 2).contiguous(),
        "kp2d_conf": torch.from_numpy(conf.astype(np.float32))[None, None].expand(1, t, 2, 21).contiguous(),
        "K": torch.from_numpy(np.asarray(K, np.float32))[None],
        "image_size": torch.tensor([[w, h]], dtype=torch.float32),
        "frame_mask": torch.ones(1, t, dtype=torch.bool),
    }
    g = torch.Generator().manual_seed(int(seed))
    known = known_mask = None
    n_known = 0
    if anchor is not None and bool(anchor["known"].any()):
        n_known = int(anchor["pose"].shape[0])
        if n_known >= t:
            raise HandcastError(f"--frames ({t}) must be larger than the known prefix ({n_known} frames)")
        known, known_mask = model.known_tokens(anchor["pose"][None].float(), anchor["wrist"][None].float(),
                                               anchor["known"][None], t)
    with torch.no_grad():
        rot6d, wrist = model.sample(batch, int(samples), sampler, steps, generator=g, known=known,
                                    known_mask=known_mask)
        hands = HandModel("auto")
        if clamp_limits:  # the sampled articulation within the hand model's joint limits
            rot6d = clamp_motion_to_limits(hands, rot6d)
        betas = torch.zeros(1, rot6d.shape[1], 2, 10)
        joints = keypoints_from_motion(hands, rot6d, wrist, betas)[0]
        j0 = hands.rest_joints(torch.zeros(2, 10))[:, 0]  # (2, 3)
    present = (conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS
    if not present.any():  # an image-only model without keypoints: both hands are drawn
        present = np.ones(2, bool)
    return dict(joints=joints.numpy().astype(np.float32), pose=sixd_to_aa(rot6d[0]).numpy().astype(np.float32),
                transl=(wrist[0] - j0).numpy().astype(np.float32), wrist=wrist[0].numpy().astype(np.float32),
                betas=np.zeros((2, 10), np.float32), hand_valid=np.repeat(present[None], t, 0),
                input_kp2d=uv.astype(np.float32), input_kp2d_conf=conf.astype(np.float32),
                K=np.asarray(K, np.float32), image_size=np.array([w, h], np.int64), image=image, fps=np.float32(30.0),
                anchored=np.bool_(n_known > 0), known_frames=np.int64(n_known),
                known_hands=(np.asarray(anchor["known"].cpu().numpy()).any(0) if n_known else np.zeros(2, bool)))


VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".flv", ".mpg", ".mpeg")


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def video_context(video: str | os.PathLike, context: int, at: float | None = None, mirrored: bool = False
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, int]:
    """The ``context`` frames of a video that end at time ``at`` (seconds; default: as early as possible, the
    context being the first frames) and their hands (mediapipe, tracked over those frames).

    Returns (frames uint8 (N, H, W, 3), uv (N, 2, 21, 2) px, conf (N, 2, 21), fps, index of the first
    context frame in the video). ``mirrored``: a selfie video, un-mirrored first (frames and keypoints are those
    of the un-mirrored video, each hand with its owner's handedness). HandcastError when the video is shorter
    than the context, ``at`` is before
    the end of the first ``context`` frames or after the end of the video."""
    from collections import deque

    from handcast.detect import detect_video, read_video

    n = int(context)
    if n < 1:
        raise HandcastError(f"--context must be >= 1 frame, got {context}")
    if at is not None and (not np.isfinite(float(at)) or float(at) < 0):
        raise HandcastError(f"--at must be a time in seconds >= 0, got {at}")
    frames, fps, _, count = read_video(video)
    end = n - 1 if at is None else int(round(float(at) * fps))
    if end < n - 1:
        raise HandcastError(f"--at {at} s is frame {end}: a context of {n} frames needs --at >= {(n - 1) / fps:.3f} s")
    buf: deque = deque(maxlen=n)
    seen = 0
    try:
        for f in frames:
            buf.append(f)
            seen += 1
            if seen > end:
                break
    finally:
        frames.close()
    if seen < n:
        raise HandcastError(f"{video} has {seen} frames, fewer than --context {n}")
    if seen <= end:
        raise HandcastError(f"--at {at} s is after the end of {video} ({seen} frames at {fps:g} fps = {seen / fps:.2f} s)")
    clip = np.stack(list(buf))
    if mirrored:  # a selfie video: the hands, and the frames returned, are those of the un-mirrored video
        clip = np.ascontiguousarray(clip[:, :, ::-1])
    tr = detect_video(clip, progress=False, fps=fps)
    hv = np.asarray(tr.hand_valid, bool)
    uv = np.asarray(tr.uv, np.float32)
    conf = np.where(np.isfinite(uv).all(-1) & hv[..., None], np.asarray(tr.confidence, np.float32), 0.0)
    return clip, np.where(conf[..., None] > 0, uv, np.nan).astype(np.float32), conf.astype(np.float32), fps, end - n + 1


def _hands_text(present: np.ndarray) -> str:
    names = [n for n, p in zip(("right hand", "left hand"), present) if p]
    return " and ".join(names)


def run_forecast(image: str | os.PathLike, out: str | os.PathLike, ckpt: str | os.PathLike | None = None,
                 samples: int = 5, frames: int = 64, keypoints: str | os.PathLike | None = None, detect: bool = True,
                 fov: float | None = None, intrinsics: str | os.PathLike | None = None, sampler: str = "ddim",
                 steps: int = 10, seed: int = 0, video: bool = True, int8: bool = False, anchor: bool = True,
                 lift_ckpt: str | os.PathLike | None = None, context: int | None = None, at: float | None = None,
                 mirrored: bool = False, clamp_limits: bool = True, detect_once: bool = False) -> dict:
    """The ``handcast forecast`` command: writes forecast.png / .mp4 / .npz to ``out``; returns
    {"outputs": [paths], "model": path, "keypoints": source, "hands": number of input hands}."""
    check_output_dir(out)
    messages = []
    video_info = {}
    if context is not None and int(context) < 1:
        raise HandcastError(f"--context must be >= 1 frame, got {context}")
    if is_video(image):
        if keypoints is not None:
            raise HandcastError("--keypoints is for a photo; the hands of a video are detected (mediapipe)")
        n = 1 if context is None else int(context)
        clip, ctx_uv, ctx_conf, fps, first = video_context(image, n, at, mirrored)
        img, uv, conf, source = clip[0], ctx_uv[0], ctx_conf[0], "mediapipe (video)"
        video_info = dict(context=np.int64(n), first_frame=np.int64(first), at_frame=np.int64(first + n - 1),
                          video_fps=np.float64(fps))
        messages.append(f"context: video frames {first}..{first + n - 1} ({n} frames, ending at "
                        f"{(first + n - 1) / fps:.2f} s); F is conditioned on frame {first}, its frame 0")
    else:
        if context is not None and int(context) > 1:
            raise HandcastError(f"--context {context} needs a video; {image} is an image (use --context 1 or none)")
        if at is not None:
            raise HandcastError(f"--at needs a video; {image} is an image")
        img = load_image(image)
        given = None  # a keypoints file's (uv, conf), checked against the photo as given
        if keypoints is not None:
            uv, conf, source = input_keypoints(img, keypoints, detect, detect_once)
            messages += check_in_image(uv, conf, (img.shape[1], img.shape[0]), str(keypoints))
            given = (uv, conf)
        if mirrored:  # a selfie photo: its un-mirrored self (the video path does the same in video_context)
            img, given, intrinsics = unmirror_photo(img, given, intrinsics)
            messages.append("mirrored: the photo is un-mirrored (each hand its owner's; outputs of the un-mirrored "
                            "photo)")
        if given is None:
            uv, conf, source = input_keypoints(img, None, detect, detect_once)
        else:
            uv, conf = np.asarray(given[0], np.float32), given[1]
        ctx_uv, ctx_conf = uv[None], conf[None]
    h, w = img.shape[:2]
    focal, camera = photo_camera(None if is_video(image) else image, fov, intrinsics)
    K = resolve_intrinsics((w, h), fov=fov, K=intrinsics, focal=focal)
    messages.append(f"camera: {camera}")
    present = (conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS
    ctx_present = ((ctx_conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS).any(0)
    if ckpt is None:
        kind = "keypoints" if present.any() else "image"
        if kind == "image":
            why = (f"the --keypoints file has no hand with {MIN_HAND_KEYPOINTS} keypoints" if keypoints is not None
                   else "no --keypoints and the detector found none or is not installed")
            messages.append(f"no hands found in the input ({why}): running the image-only model")
        ckpt = shipped_checkpoint(SHIPPED[kind], "handcast train forecast")
    model = load_forecast(ckpt)
    if int8:
        from handcast.models.quantize import int8_cpu

        model = int8_cpu(model)
    if model.config.image is None and not present.any():
        raise HandcastError(f"{ckpt} is a keypoint-conditioned model and no hand was found in {image} "
                            "(pass --keypoints KP.json, or install the detect extra)")
    anc = None
    if anchor and ctx_present.any():
        anc = anchor_for(ctx_uv, ctx_conf, K, (w, h), lift_ckpt, seed)
        what = "frame 0" if len(ctx_uv) == 1 else f"frames 0..{len(ctx_uv) - 1}"
        messages.append(f"anchored: {what} of every sample are the {_hands_text(ctx_present)} seen in the input "
                        f"(L + refinement, {anc['reproj_error_px']:.1f} px from the keypoints)")
    elif anchor:
        messages.append("not anchored: no hand with enough keypoints in the input, the forecast starts freely")
    res = forecast_image(model, img, K, uv, conf, frames, samples, sampler, steps, seed, anchor=anc,
                         clamp_limits=clamp_limits)
    res["model"] = np.asarray(str(ckpt))
    res["camera"] = np.asarray(camera)
    res.update(video_info)
    out = Path(out)
    npz, png, mp4 = out / "forecast.npz", out / "forecast.png", out / "forecast.mp4"
    with atomic_outputs(out) as tmp:  # npz, png and mp4 appear together or not at all
        save_npz(tmp / npz.name, **res)
        render_prediction(img, K, res["joints"], res["hand_valid"], out_png=tmp / png.name,
                          out_mp4=tmp / mp4.name if video else None,
                          fps=30.0, title=f"forecast: sample 1 of {res['joints'].shape[0]}")
    outputs = [npz, png] + ([mp4] if video else [])
    return {"outputs": outputs, "model": str(ckpt), "keypoints": source, "hands": int(present.sum()),
            "messages": messages}
