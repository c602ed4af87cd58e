"""Video output (PyAV, H.264 when available) and per-frame motion renders."""

from __future__ import annotations

import os
from typing import Iterable

import numpy as np

from handcast.conventions import NUM_KEYPOINTS
from handcast.errors import HandcastError
from handcast.io import atomic_path
from handcast.render.overlay import (
    _as_seq,
    _hand_valid,
    _panel_image,
    _seq_vertices,
    overlay_motion,
    second_view,
    time_colors,
    view_camera,
)

__all__ = ["write_video", "render_motion_video", "pick_codec"]


def pick_codec() -> str:
    """'libx264' if PyAV's FFmpeg can encode it, else 'mpeg4'."""
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:
            continue
    raise HandcastError("PyAV's FFmpeg has neither a libx264 nor an mpeg4 encoder; reinstall av (pip install av)")


def _even(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[:2]
    ph, pw = h % 2, w % 2
    if ph or pw:
        frame = np.pad(frame, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return frame


def _check_frame(f, shape=None) -> np.ndarray:
    a = np.asarray(f)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise HandcastError(f"video frames must be (H, W, 3) uint8 RGB, got {a.shape} {a.dtype}")
    if shape is not None and a.shape != shape:
        raise HandcastError(f"all video frames must have the same size: {a.shape} != {shape}")
    return np.ascontiguousarray(a)


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float = 30.0, crf: int = 20,
                display_rotation: int = 0) -> int:
    """Write RGB frames (each (H, W, 3) uint8, same size) to ``path`` atomically.

    ``.gif`` is written with PIL; anything else (``.mp4``, ``.mov``, ``.mkv``) with PyAV:
    H.264 (libx264, quality ``crf``) if available else MPEG-4 part 2, yuv420p. Odd sizes are
    padded by one edge pixel to even. ``display_rotation``: degrees counter-clockwise that a player turns the
    stored frames by (the stream's display matrix, as a phone writes a portrait video; 0: none; not for ``.gif``).
    Returns the number of frames written. On any error no file is left at ``path``.
    """
    path = os.fspath(path)
    if fps <= 0:
        raise HandcastError(f"fps must be positive, got {fps}")
    it = iter(frames)
    try:
        first = _check_frame(next(it))
    except StopIteration:
        raise HandcastError(f"no frames to write to {path}") from None
    shape = first.shape
    n = 0
    if path.lower().endswith(".gif"):
        if display_rotation:
            raise HandcastError("a GIF has no display rotation")
        from PIL import Image

        ims = [Image.fromarray(first)]
        ims += [Image.fromarray(_check_frame(f, shape)) for f in it]
        with atomic_path(path) as tmp:
            ims[0].save(
                tmp, format="GIF", save_all=True, append_images=ims[1:], duration=int(round(1000 / fps)), loop=0
            )
        return len(ims)

    from fractions import Fraction

    import av

    codec = pick_codec()
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w") as container:
            stream = container.add_stream(codec, rate=rate)
            f0 = _even(first)
            stream.width, stream.height = f0.shape[1], f0.shape[0]
            stream.pix_fmt = "yuv420p"
            if display_rotation:
                stream.set_display_rotation(int(display_rotation))
            if codec == "libx264":
                stream.options = {"crf": str(int(crf)), "preset": "veryfast"}
            else:
                stream.bit_rate = int(8e6 * (f0.shape[0] * f0.shape[1]) / (1280 * 720)) + 1_000_000
            for f in _chain(first, it):
                frame = av.VideoFrame.from_ndarray(_even(_check_frame(f, shape)), format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
                n += 1
            for packet in stream.encode():
                container.mux(packet)
    return n


def _chain(first, it):
    yield first
    yield from it


def render_motion_video(
    image: np.ndarray,
    K: np.ndarray,
    joints3d: np.ndarray,
    valid: np.ndarray | None = None,
    world_to_cam: np.ndarray | None = None,
    vertices: np.ndarray | None = None,
    faces=None,
    trail: bool = True,
    height: int = 384,
    fade: float = 0.7,
    view_kw: dict | None = None,
    label: bool = True,
    zoom: bool = True,
) -> list[np.ndarray]:
    """Frames of a side-by-side motion video.

    Per frame t: left = the first image with the joints of frames <= t (``trail``, time-fading
    colours) or only frame t; right = the second view (fixed virtual camera) of frame t, with
    the mesh of frame t when ``vertices``/``faces`` are given.

    image: (H, W, 3) uint8 frame-0 image; K: (3, 3); joints3d: (T, 2, 21, 3) metres, frame-0
    camera, (right, left); valid: optional (T, 2); world_to_cam: see overlay_motion;
    vertices: optional (T, 2, V, 3) metres with faces (F, 3) or a (right, left) pair;
    height: panel height in pixels; zoom: as :func:`handcast.render.overlay.render_sheet`'s (the left panel shows the
    hands' window of a large image). Returns T frames, each (height, W', 3) uint8 (W' even).
    """
    j, _ = _as_seq(joints3d, (2, NUM_KEYPOINTS, 3), "joints3d")
    im, Ks = _panel_image(image, K, j, valid, world_to_cam, None, height, zoom)
    T = j.shape[0]
    hv = _hand_valid(valid if valid is None or np.asarray(valid).ndim <= 2 else np.asarray(valid).any(-1), T)
    v = None
    if vertices is not None:
        v = _seq_vertices(vertices, T)
        if v.shape[0] != T:
            raise HandcastError(f"vertices have {v.shape[0]} frames but joints3d {T}")
    vk = dict(view_kw or {})
    size = vk.pop("size", (height, height))
    cam = view_camera(np.where(hv[..., None, None], j, np.nan), size, **vk)
    current = time_colors(T, 0.0)  # the right panel shows frame t in full colour
    frames = []
    for t in range(T):
        sel = np.arange(t + 1) if trail else np.array([t])
        left = overlay_motion(im, j, Ks, valid, world_to_cam, fade=fade, frames=sel)
        right = second_view(
            j,
            valid,
            v,
            faces,
            camera=cam,
            fade=fade,
            frames=np.array([t]),
            skeleton=True if v is None else False,
            colors=current,
        )
        if label:
            from PIL import Image, ImageDraw

            pim = Image.fromarray(right)
            ImageDraw.Draw(pim).text((6, 4), f"t = {t}", fill=(30, 30, 30))
            right = np.asarray(pim)
        frame = np.concatenate([left, np.full((height, 4, 3), 255, np.uint8), right], axis=1)
        frames.append(_even(frame))
    return frames
