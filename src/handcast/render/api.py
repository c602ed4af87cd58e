"""Top-level render entry points used by ``handcast render``.

They only need arrays (a Clip-like object or a prediction), never where the data came from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from handcast.conventions import HANDS, NUM_KEYPOINTS
from handcast.data.store import ClipStore
from handcast.errors import HandcastError
from handcast.io import atomic_outputs, check_output_dir, check_world_to_cam
from handcast.render.overlay import (
    _legend_bar,
    draw_keypoints,
    render_sheet,
    resize_with_K,
    save_png,
    time_colors,
)
from handcast.render.video import render_motion_video, write_video

__all__ = ["render_clip", "render_prediction", "render_from_files", "hand_meshes"]


def _blank(image_size) -> np.ndarray:
    w, h = (int(s) for s in image_size)
    img = np.empty((h, w, 3), np.uint8)
    img[:] = 96
    return img


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def hand_meshes(hand_model, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray):
    """Vertices (T, 2, V, 3) metres and faces (right (F, 3), left (F, 3)) from a hand model.

    hand_model: a ``handcast.hand.HandModel`` (``forward(pose, betas, transl, rep="aa",
    convention="flat")`` returning ``.vertices`` (..., 2, V, 3), and ``faces(hand)``).
    pose: (T, 2, 16, 3) axis-angle, flat convention; betas: (2, 10) or (T, 2, 10); transl: (T, 2, 3).
    """
    import torch

    pose = np.asarray(pose, np.float32)
    T = pose.shape[0]
    betas = np.asarray(betas, np.float32)
    if betas.ndim == 2:
        betas = np.broadcast_to(betas, (T,) + betas.shape)
    out = hand_model.forward(
        torch.from_numpy(np.ascontiguousarray(pose)),
        torch.from_numpy(np.ascontiguousarray(betas)),
        torch.from_numpy(np.ascontiguousarray(np.asarray(transl, np.float32))),
        rep="aa",
        convention="flat",
    )
    verts = _to_numpy(out.vertices).astype(np.float64)
    faces = []
    for i, name in enumerate(HANDS):
        try:
            f = hand_model.faces(name)
        except Exception:
            f = hand_model.faces(i)
        faces.append(_to_numpy(f).astype(np.int64))
    return verts, (faces[0], faces[1])


def render_clip(
    clip,
    out_png: str | os.PathLike,
    out_mp4: str | os.PathLike | None = None,
    hand_model=None,
    max_frames: int | None = None,
    fps: float | None = None,
    title: str | None = None,
    height: int = 512,
    video_height: int = 384,
) -> np.ndarray:
    """Render a clip: PNG sheet (motion over the first image + second view) and optional video.

    clip: a ``handcast.data.clip.Clip`` or anything with ``joints3d`` (T, 2, 21, 3) metres frame-0
    camera, ``valid`` (T, 2), ``K`` (3, 3), ``image`` (H, W, 3) uint8 or None, ``image_size``
    (w, h); with ``hand_model`` also ``pose`` (T, 2, 16, 3), ``betas`` (2, 10), ``transl`` (T, 2, 3)
    for meshes. An optional ``fps`` attribute is used when ``fps`` is None (default 30).
    max_frames: keep only the first frames. Returns the sheet image (H', W', 3) uint8.
    """
    try:
        joints = np.asarray(clip.joints3d, np.float64)
        K = np.asarray(clip.K, np.float64)
    except AttributeError as e:
        raise HandcastError(f"render_clip needs a Clip with joints3d and K ({e})") from None
    if joints.ndim != 4 or joints.shape[1:] != (2, NUM_KEYPOINTS, 3):
        raise HandcastError(f"clip.joints3d must be (T, 2, 21, 3), got {joints.shape}")
    valid = getattr(clip, "valid", None)
    valid = np.ones(joints.shape[:2], bool) if valid is None else np.asarray(valid, bool)
    image = getattr(clip, "image", None)
    if image is None:
        size = getattr(clip, "image_size", None)
        if size is None:
            size = (int(round(2 * K[0, 2])), int(round(2 * K[1, 2])))
        image = _blank(size)
    T = joints.shape[0] if max_frames is None else max(1, min(int(max_frames), joints.shape[0]))
    joints, valid = joints[:T], valid[:T]
    verts = faces = None
    if hand_model is not None:
        verts, faces = hand_meshes(hand_model, np.asarray(clip.pose)[:T], clip.betas, np.asarray(clip.transl)[:T])
    if fps is None:
        fps = float(getattr(clip, "fps", None) or 30.0)
    finite = np.isfinite(joints).all(axis=(-1, -2)) & valid
    if not finite.any() and getattr(clip, "kp2d", None) is not None:
        return _render_2d_clip(clip, image, T, out_png, out_mp4, fps, title, height, video_height)
    return _sheet_and_video(image, K, joints, valid, verts, faces, out_png, out_mp4, fps, title, height, video_height)


def _sheet_and_video(image, K, joints, valid, vertices, faces, out_png, out_mp4, fps, title, height, video_height,
                     paths=None) -> np.ndarray:
    """The sheet of a motion (written to ``out_png``) and, with ``out_mp4``, its video; returns the sheet.
    Arrays as in :func:`handcast.render.overlay.render_sheet` (joints in the camera of ``image``)."""
    sheet = render_sheet(image, K, joints, valid, None, vertices, faces, title=title, out_png=out_png, height=height,
                         paths=paths)
    if out_mp4 is not None:
        write_video(out_mp4, render_motion_video(image, K, joints, valid, None, vertices, faces, height=video_height),
                    fps)
    return sheet


def _render_2d_clip(clip, image, T, out_png, out_mp4, fps, title, height, video_height) -> np.ndarray:
    """A clip without 3D labels: its 2D keypoints over the first image (camera motion ignored)."""
    kp = np.asarray(clip.kp2d, np.float64)[:T]
    ok = np.asarray(clip.valid, bool)[:T, :, None] & np.isfinite(kp).all(-1)
    conf = getattr(clip, "kp2d_conf", None)
    if conf is not None:
        ok &= np.asarray(conf)[:T] > 0
    im, Ks = resize_with_K(image, np.eye(3), height)
    # pixel origin at the image corner: coordinates scale with the image
    kps = kp * np.array([im.shape[1] / image.shape[1], im.shape[0] / image.shape[0]])
    body = draw_keypoints(im, kps, ok)
    label = (title + " " if title else "") + "(2D keypoints only)"
    sheet = np.concatenate([_legend_bar(body.shape[1], max(24, height // 14), label, 0.7, T), body], axis=0)
    save_png(out_png, sheet)
    if out_mp4 is not None:
        vim, _ = resize_with_K(image, np.eye(3), video_height)
        kv = kp * np.array([vim.shape[1] / image.shape[1], vim.shape[0] / image.shape[0]])
        cols = time_colors(T)
        frames = [draw_keypoints(vim, kv[: t + 1], ok[: t + 1], colors=cols[: t + 1]) for t in range(T)]
        write_video(out_mp4, frames, fps)
    return sheet


def render_prediction(
    image: np.ndarray,
    K: np.ndarray,
    joints: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    out_png: str | os.PathLike,
    out_mp4: str | os.PathLike | None = None,
    sample: int = 0,
    fps: float = 30.0,
    title: str | None = None,
    show_samples: bool = True,
    height: int = 512,
    video_height: int = 384,
) -> np.ndarray:
    """Render a forecast from one image: PNG sheet and optional video of one sample.

    image: (H, W, 3) uint8 input image; K: (3, 3) its intrinsics (pixels).
    joints: (S, T, 2, 21, 3) or (T, 2, 21, 3) metres, camera frame of ``image``, (right, left).
    valid: optional (T, 2) or (S, T, 2) booleans.
    sample: which sample is drawn in full; with ``show_samples`` the wrists of all samples are
    drawn as faint trajectories. Returns the sheet image.
    """
    j = np.asarray(joints, np.float64)
    if j.ndim == 4:
        j = j[None]
    if j.ndim != 5 or j.shape[2:] != (2, NUM_KEYPOINTS, 3):
        raise HandcastError(f"joints must be (S, T, 2, 21, 3) or (T, 2, 21, 3) metres, got {np.asarray(joints).shape}")
    S = j.shape[0]
    if not -S <= int(sample) < S:
        raise HandcastError(f"sample {sample} out of range for {S} samples")
    v = None
    if valid is not None:
        v = np.asarray(valid, bool)
        if v.ndim == 3:
            v = v[int(sample)]
    js = j[int(sample)]
    paths = j[:, :, :, 0, :].copy() if (show_samples and S > 1) else None  # (S, T, 2, 3) wrists
    if paths is not None and v is not None and v.shape == paths.shape[1:3]:
        paths[:, ~v] = np.nan  # a hand's path only where it is valid (NaN breaks the line)
    if title is None:
        title = f"sample {int(sample) % S} of {S}" if S > 1 else None
    return _sheet_and_video(image, K, js, v, None, None, out_png, out_mp4, fps, title, height, video_height, paths)


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._") or "clip"


def _check_renderable(c, src: str) -> None:
    """A stored clip can be drawn: K finite with positive focal lengths, a rigid camera in every frame, and
    finite poses, translations and keypoints (the store keeps no NaN); one-line HandcastError otherwise."""
    K = np.asarray(c.K, np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise HandcastError(f"{src}: intrinsics K must be finite with positive focal lengths, got "
                            f"fx={K.flat[0]!r}, fy={K.flat[4] if K.size > 4 else None!r}")
    check_world_to_cam(c.world_to_cam, c.num_frames, src)
    for name in ("pose", "transl", "joints3d", "kp2d"):
        a = np.asarray(getattr(c, name))
        if not np.isfinite(a).all():
            raise HandcastError(f"{src}: {name} holds {int((~np.isfinite(a)).sum())} non-finite value(s)")


def render_from_files(
    store: str | os.PathLike | None,
    split: str | None,
    clip: str | int | None,
    out: str | os.PathLike,
    pred: str | os.PathLike | None = None,
    sample: int = 0,
    video: bool = True,
    max_frames: int | None = None,
    hand_model=None,
) -> list[Path]:
    """``handcast render``: draw one clip of a clip store, or a prediction for it.

    store: clip store folder (the clip's image and camera come from it); split: split name (may be
    None when the store has one split); clip: clip id, or an index into the split (default 0);
    pred: optional prediction .npz (``clip_ids`` (N,), ``joints`` (N, S, T, 2, 21, 3) metres, frame-0
    camera) drawn instead of the ground truth; sample: which prediction sample; out: output folder;
    video: also write an MP4; max_frames: keep only the first frames; hand_model: optional
    HandModel for meshes (ground truth only).
    Returns the written paths (PNG first).
    """
    if store is None:
        raise HandcastError("--store is required: the clip's image and camera come from the clip store")
    cs = ClipStore(store)
    if split is None:
        if len(cs.splits) != 1:
            raise HandcastError(f"--split is required (store has: {', '.join(cs.splits) or 'no splits'})")
        split = cs.splits[0]
    view = cs.split(split)
    if len(view) == 0:
        raise HandcastError(f"split '{split}' has no clips")
    if clip is None:
        index = 0
    elif isinstance(clip, (int, np.integer)):
        index = int(clip)
    elif str(clip) in view:
        index = view.index_of(str(clip))
    elif re.fullmatch(r"-?\d+", str(clip)):
        index = int(clip)
    else:
        raise HandcastError(f"unknown clip {clip!r} in split '{split}' (give a clip id or an index)")
    if not -len(view) <= index < len(view):
        raise HandcastError(f"clip index {index} out of range: split '{split}' has {len(view)} clips")
    out = check_output_dir(out)
    c = view.load(index % len(view))
    _check_renderable(c, f"{store} / {split} / {c.clip_id}")
    name = _safe_name(c.clip_id)
    written: list[Path] = []
    if pred is None:
        png = out / f"{name}.png"
        mp4 = out / f"{name}.mp4" if video else None
        with atomic_outputs(out) as tmp:  # the PNG and the MP4 appear together
            render_clip(c, tmp / png.name, mp4 and tmp / mp4.name, hand_model=hand_model, max_frames=max_frames,
                        title=f"{split} / {c.clip_id}")
    else:
        from handcast.eval.evaluate import read_predictions

        p = read_predictions(pred)
        ids = [str(x) for x in p.clip_ids]
        if c.clip_id not in ids:
            raise HandcastError(f"{Path(pred).name} has no prediction for clip {c.clip_id!r}")
        joints = np.asarray(p.joints[ids.index(c.clip_id)], np.float64)  # (S, T, 2, 21, 3)
        if max_frames is not None:
            joints = joints[:, : max(1, int(max_frames))]
        S = joints.shape[0]
        if not -S <= int(sample) < S:
            raise HandcastError(f"--sample {sample} out of range: the prediction has {S} samples")
        image = c.image if c.image is not None else _blank(c.image_size)
        png = out / f"{name}_pred_s{int(sample) % S}.png"
        mp4 = out / f"{name}_pred_s{int(sample) % S}.mp4" if video else None
        with atomic_outputs(out) as tmp:
            render_prediction(
                image, c.K, joints, out_png=tmp / png.name, out_mp4=mp4 and tmp / mp4.name, sample=int(sample),
                fps=float(c.fps or 30.0), title=f"{split} / {c.clip_id}: sample {int(sample) % S} of {S}",
            )
    written.append(png)
    if mp4 is not None:
        written.append(mp4)
    return written
