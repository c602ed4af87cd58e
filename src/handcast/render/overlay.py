"""Skeleton overlays, the forecast drawn over the input image, and a second (virtual) view.

Conventions
  * Images are (H, W, 3) uint8 RGB, row 0 at the top.
  * 2D keypoints are pixels (u, v) in the common 21-keypoint order, hand axis (right, left);
    pixel ``image[j, i]`` has its centre at (i, j) (OpenCV; as in :mod:`handcast.gl.renderer`).
  * 3D joints are metres in the frame-0 camera (OpenCV axes: x right, y down, z forward).
  * Colours: right hand blue, left hand pink (``conventions.HAND_COLORS``); along time the colour
    fades towards white (first frame saturated, last frame pale), see :func:`time_colors`.
  * Early frames are drawn on top of later ones, so the observed pose stays visible.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from handcast.conventions import HAND_COLORS, KEYPOINT_BONES, NUM_KEYPOINTS
from handcast.errors import HandcastError
from handcast.geometry import look_at, project, transform_points
from handcast.gl.renderer import Mesh, get_renderer
from handcast.io import atomic_path

__all__ = [
    "time_colors",
    "project_points",
    "draw_keypoints",
    "overlay_motion",
    "ViewCamera",
    "view_camera",
    "second_view",
    "render_sheet",
    "resize_with_K",
    "hands_window",
    "crop_with_K",
]

_BONES = np.asarray(KEYPOINT_BONES, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Colours and small helpers


def time_colors(num_frames: int, fade: float = 0.7, base=HAND_COLORS) -> np.ndarray:
    """Per-frame hand colours, (T, 2, 3) uint8 RGB, hand axis (right, left).

    Frame 0 has the hand colour; frame T-1 is blended ``fade`` of the way to white. Saturation
    (and so visual weight) decreases strictly monotonically with time when ``fade > 0``.
    """
    T = int(num_frames)
    if T < 1:
        raise HandcastError(f"need at least one frame, got {num_frames}")
    base = np.asarray(base, np.float64).reshape(2, 3)
    s = np.linspace(0.0, float(fade), T) if T > 1 else np.zeros(1)
    cols = base[None] + (255.0 - base[None]) * s[:, None, None]
    return np.clip(np.round(cols), 0, 255).astype(np.uint8)


def _check_image(image, name="image") -> np.ndarray:
    im = np.asarray(image)
    if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
        raise HandcastError(f"{name} must be an (H, W, 3) uint8 RGB array, got {im.shape} {im.dtype}")
    return im


def project_points(points: np.ndarray, K: np.ndarray, world_to_cam: np.ndarray | None = None):
    """Project 3D points with an OpenCV camera.

    points: (..., 3) metres in the world frame; K: (3, 3) pixels; world_to_cam: (4, 4) or None
    (identity). Returns (uv (..., 2) pixels, z (...) camera depth in metres). Points with z <= 0
    get NaN pixels.
    """
    p = np.asarray(points, np.float64)
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3):
        raise HandcastError(f"K must be (3, 3), got {K.shape}")
    if world_to_cam is not None:
        T = np.asarray(world_to_cam, np.float64)
        if T.shape != (4, 4):
            raise HandcastError(f"world_to_cam must be (4, 4), got {T.shape}")
        p = transform_points(T, p)
    return project(p, K), p[..., 2]


#: A figure's image panel is cut to the hands' window where that window is below this fraction of the image's area.
ZOOM_MAX_AREA = 0.35


def hands_window(size: tuple[int, int], K: np.ndarray, joints3d: np.ndarray, world_to_cam: np.ndarray | None = None,
                 paths: np.ndarray | None = None, min_height: int = 0) -> tuple[int, int, int, int] | None:
    """The window ``(x0, y0, x1, y1)`` of a ``size`` = (W, H) image that frames the hands, or None where they fill
    the image (or none projects into it).

    The box of every finite projected point of ``joints3d`` (..., 3) metres (and of ``paths``) is widened by half its
    longer side on each side (the hands' surroundings stay in view), made at least ``min_height`` rows tall and
    between 3:4 and 4:3 in shape, and moved inside the image. A window of :data:`ZOOM_MAX_AREA` of the image's area
    or more is None: the image is shown whole."""
    W, H = int(size[0]), int(size[1])
    pts = [np.asarray(joints3d, np.float64).reshape(-1, 3)]
    if paths is not None:
        pts.append(np.asarray(paths, np.float64).reshape(-1, 3))
    uv, _ = project_points(np.concatenate(pts), K, world_to_cam)
    uv = uv[np.isfinite(uv).all(-1)]
    uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] <= W - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= H - 1)]
    if not len(uv):
        return None
    lo, hi = uv.min(0), uv.max(0)
    c, half = (lo + hi) / 2.0, (hi - lo) / 2.0 + (hi - lo).max() / 2.0
    half = np.maximum(half, [0.0, min(float(min_height), H) / 2.0])
    half = np.maximum(half, half[::-1] * 0.75)  # between 3:4 and 4:3
    half = np.minimum(np.ceil(half), [W / 2.0, H / 2.0])
    if (2 * half[0]) * (2 * half[1]) >= ZOOM_MAX_AREA * W * H:
        return None
    x0 = int(np.clip(np.floor(c[0] - half[0]), 0, W - 2 * half[0]))
    y0 = int(np.clip(np.floor(c[1] - half[1]), 0, H - 2 * half[1]))
    return x0, y0, x0 + int(2 * half[0]), y0 + int(2 * half[1])


def _window_K(K: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """The intrinsics (3, 3) of an image's window whose corner is at pixel (x0, y0): K's principal point moved."""
    Kw = np.asarray(K, np.float64).copy()
    Kw[0, 2] -= x0
    Kw[1, 2] -= y0
    return Kw


def crop_with_K(image: np.ndarray, K: np.ndarray, window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The ``window`` (x0, y0, x1, y1) of an (H, W, 3) image and the intrinsics (3, 3) of that crop (K's principal
    point moved by the window's corner)."""
    x0, y0, x1, y1 = (int(v) for v in window)
    return np.ascontiguousarray(_check_image(image)[y0:y1, x0:x1]), _window_K(K, x0, y0)


def _panel_image(image: np.ndarray, K: np.ndarray, joints: np.ndarray, valid, world_to_cam, paths, height: int,
                 zoom: bool) -> tuple[np.ndarray, np.ndarray]:
    """The image panel of a figure and its intrinsics, ``height`` rows tall: with ``zoom``, the hands' window of the
    image (:func:`hands_window`, at least half the panel's height in image rows) where they fill little of it.
    joints (T, 2, 21, 3) metres; ``valid`` as :func:`overlay_motion` takes it (the hands it leaves out are not
    framed)."""
    im = _check_image(image)
    if zoom:
        shown = np.where(_valid_mask(valid, joints.shape[0], np.ones(joints.shape[:3], bool))[..., None], joints, np.nan)
        win = hands_window((im.shape[1], im.shape[0]), K, shown, world_to_cam, paths, height // 2)
        if win is not None:
            im, K = crop_with_K(im, K, win)
    return resize_with_K(im, K, height)


def resize_with_K(image: np.ndarray, K: np.ndarray, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an (H, W, 3) image to ``height`` rows (aspect kept) and scale K (3, 3) with it."""
    im = _check_image(image)
    H, W = im.shape[:2]
    if H == height:
        return im, np.asarray(K, np.float64)
    w = max(1, int(round(W * height / H)))
    out = np.asarray(Image.fromarray(im).resize((w, height), Image.LANCZOS))
    S = np.diag([w / W, height / H, 1.0])
    return out, S @ np.asarray(K, np.float64)


def _as_seq(kp: np.ndarray, last: tuple[int, ...], name: str) -> tuple[np.ndarray, bool]:
    a = np.asarray(kp, np.float64)
    if a.shape[-len(last) :] != last or a.ndim not in (len(last), len(last) + 1):
        want = "(" + ", ".join(map(str, last)) + ")"
        raise HandcastError(f"{name} must be {want} or (T, {want[1:]}, got {a.shape}")
    if a.ndim == len(last):
        return a[None], False
    return a, True


def _valid_mask(valid, T: int, kp_shape_ok: np.ndarray) -> np.ndarray:
    """Combine an optional (2,)/(T,2)/(T,2,21) validity with finiteness -> (T, 2, 21) bool."""
    ok = kp_shape_ok
    if valid is None:
        return ok
    v = np.asarray(valid, bool)
    if v.shape == (2,) or v.shape == (2, NUM_KEYPOINTS):
        v = v[None]
    if v.shape == (T, 2):
        v = v[..., None]
    elif v.shape != (T, 2, NUM_KEYPOINTS):
        raise HandcastError(f"valid must be (T, 2) or (T, 2, 21) booleans, got {np.asarray(valid).shape} for T={T}")
    return ok & v


def _default_width(h: int, w: int, kp: np.ndarray | None = None, ok: np.ndarray | None = None) -> float:
    """Line width (px) of skeletons on an h x w image: 1/160 of its shorter side, and with the keypoints (N, 2, 21, 2)
    and their validity ``ok`` (N, 2, 21), at most 1/50 of the median hand's size (the diagonal of its keypoints' box)
    so that a small hand in a large photo is not buried under its own skeleton; at least 1.5."""
    width = min(h, w) / 160.0
    if kp is not None and ok is not None:
        m = ok[..., None]
        lo, hi = np.where(m, kp, np.inf).min(-2), np.where(m, kp, -np.inf).max(-2)  # (N, 2, 2) per hand-frame
        sizes = np.linalg.norm(hi - lo, axis=-1)[ok.sum(-1) >= 2]
        if sizes.size:
            width = min(width, float(np.median(sizes)) / 50.0)
    return max(1.5, width)


# --------------------------------------------------------------------------------------------
# 2D drawing


def _pixel_window(uv: np.ndarray, h: int, w: int, margin: float) -> tuple[int, int, int, int] | None:
    """The window ``(x0, y0, x1, y1)`` (pixel columns x0..x1-1, rows y0..y1-1) of an ``h`` x ``w`` image that
    holds the finite points ``uv`` (..., 2) pixels widened by ``margin`` pixels, clipped to the image; None
    where no point is finite or the window misses the image."""
    p = np.asarray(uv, np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(-1)]
    if not len(p):
        return None
    lo = np.floor(p.min(0) - margin)
    hi = np.ceil(p.max(0) + margin) + 1
    x0, y0 = (int(np.clip(v, 0, n)) for v, n in zip(lo, (w, h)))
    x1, y1 = (int(np.clip(v, 0, n)) for v, n in zip(hi, (w, h)))
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _draw_over(image: np.ndarray, uv: np.ndarray, margin: float, ss: int, fn) -> np.ndarray:
    """``image`` with ``fn(draw, ss, offset)`` drawn over it on a transparent layer supersampled ``ss`` times.

    The layer covers only the window of the image around the points ``uv`` (..., 2) pixels that ``fn`` draws,
    widened by ``margin`` pixels (what ``fn`` draws must lie within ``margin`` of them), so a small drawing on a
    large photo costs memory and time of its own size. ``offset`` (2,) is the window's corner in image pixels:
    ``fn`` draws the point ``p`` at ``_to_canvas(p - offset, ss)``. Pixels outside the window are the image's."""
    h, w = image.shape[:2]
    out = image.copy()
    win = _pixel_window(uv, h, w, margin)
    if win is None:
        return out
    x0, y0, x1, y1 = win
    off = np.array([x0, y0], np.float64)
    layer = _draw_layer(y1 - y0, x1 - x0, ss, lambda d, s: fn(d, s, off))
    out[y0:y1, x0:x1] = _composite(np.ascontiguousarray(image[y0:y1, x0:x1]), layer)
    return out


def _draw_layer(h: int, w: int, ss: int, fn) -> Image.Image:
    """Draw with ``fn(draw, ss)`` on a transparent supersampled layer; return it at (w, h)."""
    layer = Image.new("RGBA", (w * ss, h * ss), (0, 0, 0, 0))
    fn(ImageDraw.Draw(layer), ss)
    if ss > 1:
        layer = layer.resize((w, h), Image.BOX)
    return layer


def _composite(image: np.ndarray, layer: Image.Image) -> np.ndarray:
    base = Image.fromarray(image).convert("RGBA")
    base.alpha_composite(layer)
    return np.asarray(base.convert("RGB"))


def _skeleton_ops(kp, ok, colors, outline, alpha=255):
    """Yield drawing ops for (N, 2, 21, 2) pixel keypoints; later frames first."""
    ops = []
    N = kp.shape[0]
    for t in range(N - 1, -1, -1):
        for hand in range(2):
            pts, m = kp[t, hand], ok[t, hand]
            if not m.any():
                continue
            col = tuple(int(c) for c in colors[t, hand]) + (alpha,)
            dark = tuple(int(c * 0.35) for c in colors[t, hand]) + (alpha,)
            bones = [(a, b) for a, b in _BONES if m[a] and m[b]]
            ops.append((pts, m, bones, col, dark if outline else None))
    return ops


def _to_canvas(uv, ss: int):
    """Image pixels (OpenCV centres at integers) -> coordinates on a canvas supersampled ``ss`` times
    (PIL draws pixel centres at integers too). Works on (2,) points and (..., 2) arrays."""
    return (np.asarray(uv, np.float64) + 0.5) * ss - 0.5


def _run_ops(draw, ss, ops, width, radius, offset=(0.0, 0.0)):
    off = np.asarray(offset, np.float64)

    def P(p):
        return tuple(_to_canvas(np.asarray(p, np.float64) - off, ss).tolist())

    lw = max(1, int(round(width * ss)))
    r = radius * ss
    for pts, m, bones, col, dark in ops:
        if dark is not None:
            for a, b in bones:
                draw.line([P(pts[a]), P(pts[b])], fill=dark, width=lw + 2 * ss)
            for j in np.flatnonzero(m):
                x, y = P(pts[j])
                draw.ellipse([x - r - ss, y - r - ss, x + r + ss, y + r + ss], fill=dark)
        for a, b in bones:
            draw.line([P(pts[a]), P(pts[b])], fill=col, width=lw)
        for j in np.flatnonzero(m):
            x, y = P(pts[j])
            draw.ellipse([x - r, y - r, x + r, y + r], fill=col)


def draw_keypoints(
    image: np.ndarray,
    kp2d: np.ndarray,
    valid: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    fade: float = 0.7,
    width: float | None = None,
    radius: float | None = None,
    outline: bool | None = None,
    supersample: int = 2,
) -> np.ndarray:
    """Draw hand skeletons (conventions.KEYPOINT_BONES) over an image; returns a new image.

    image: (H, W, 3) uint8 RGB.
    kp2d: (2, 21, 2) or (T, 2, 21, 2) pixels (u, v), hand axis (right, left), common order.
    valid: optional (2,) / (T, 2) per hand-frame or (T, 2, 21) per keypoint booleans; NaN/inf
        keypoints are skipped too. Bones are drawn when both ends are valid.
    colors: optional (T, 2, 3) uint8 per frame and hand; default :func:`time_colors` (T, fade).
    width, radius: line width and joint radius in pixels (default: 1/160 of the image's shorter side, at most 1/50
        of the median hand's size, at least 1.5; :func:`_default_width`).
    outline: dark edge around bones (default: on for a single frame, off for sequences).
    supersample: anti-aliasing factor of the drawing layer.
    """
    im = _check_image(image)
    kp, seq = _as_seq(kp2d, (2, NUM_KEYPOINTS, 2), "kp2d")
    T = kp.shape[0]
    ok = _valid_mask(valid, T, np.isfinite(kp).all(-1))
    if colors is None:
        colors = time_colors(T, fade)
    colors = np.asarray(colors)
    if colors.shape != (T, 2, 3):
        raise HandcastError(f"colors must be (T, 2, 3) = ({T}, 2, 3), got {colors.shape}")
    H, W = im.shape[:2]
    width = _default_width(H, W, kp, ok) if width is None else float(width)
    radius = width * 1.1 if radius is None else float(radius)
    if outline is None:
        outline = T == 1
    ops = _skeleton_ops(kp, ok, colors, outline)
    if not ops:
        return im.copy()
    drawn = np.concatenate([pts[m] for pts, m, _, _, _ in ops])
    margin = max(width / 2.0, radius) + 3.0  # bone half-width or joint radius, the 1 px outline, anti-aliasing
    return _draw_over(im, drawn, margin, int(supersample),
                      lambda d, ss, off: _run_ops(d, ss, ops, width, radius, off))


def _draw_paths(image: np.ndarray, paths_uv: np.ndarray, width: float, alpha: int = 110, supersample: int = 2):
    """Faint polylines (N, T, 2, 2) pixels in the hand colours (e.g. other samples' wrists)."""
    def fn(draw, ss, off):
        lw = max(1, int(round(width * ss)))
        for n in range(paths_uv.shape[0]):
            for hand in range(2):
                pts = paths_uv[n, :, hand]
                col = tuple(HAND_COLORS[hand]) + (alpha,)
                seg = []
                for p in pts:
                    if np.isfinite(p).all():
                        seg.append(tuple(_to_canvas(p - off, ss).tolist()))
                    else:
                        if len(seg) > 1:
                            draw.line(seg, fill=col, width=lw, joint="curve")
                        seg = []
                if len(seg) > 1:
                    draw.line(seg, fill=col, width=lw, joint="curve")

    # a polyline's end (only segments between two finite points are drawn) lies within its half-width of a point
    return _draw_over(image, paths_uv, width / 2.0 + 3.0, supersample, fn)


# --------------------------------------------------------------------------------------------
# Meshes through the GL renderer


def _faces_pair(faces) -> tuple[np.ndarray, np.ndarray]:
    if faces is None:
        raise HandcastError("vertices were given without faces")
    if isinstance(faces, (list, tuple)):
        if len(faces) != 2:
            raise HandcastError("faces must be one (F, 3) array or a pair (right, left)")
        return np.asarray(faces[0]), np.asarray(faces[1])
    f = np.asarray(faces)
    if f.ndim == 3 and f.shape[0] == 2:
        return f[0], f[1]
    return f, f


def _hand_meshes(verts: np.ndarray, faces, colors: np.ndarray, ok: np.ndarray):
    """verts (N, 2, V, 3), colors (N, 2, 3), ok (N, 2) -> list of Mesh (later frames first)."""
    fr, fl = _faces_pair(faces)
    out = []
    for t in range(verts.shape[0] - 1, -1, -1):
        for hand, f in ((0, fr), (1, fl)):
            v = verts[t, hand]
            if ok[t, hand] and np.isfinite(v).all():
                out.append(Mesh(v, f, colors[t, hand]))
    return out


#: Closest camera depth (m) of a mesh vertex for which the overlay renders only the meshes' window of the image
#: (the renderer's near plane is 0.01 m; nearer vertices may be clipped, and their projections bound nothing).
_WINDOW_MIN_DEPTH = 0.02


def _renderer_side(n: int, full: int) -> int:
    """The renderer's side for a window side of ``n`` px in an image side of ``full``: the next power of two
    from 256, at most the image's (a few renderer sizes serve every window, and each size is cached)."""
    return min(full, max(256, 1 << (max(int(n), 1) - 1).bit_length()))


def _render_meshes_over(image, meshes, K, world_to_cam, mesh_alpha: float) -> np.ndarray:
    """The meshes rendered with the camera (K, world_to_cam) and blended over ``image`` with ``mesh_alpha``.

    Where every vertex is in front of the camera, only the window of the image around the meshes' projection is
    rendered and blended (K shifted by the window's corner): a hand in a 12 MP photo costs the memory of the hand,
    not of the photo."""
    if not meshes:
        return image
    H, W = image.shape[:2]
    K = np.asarray(K, np.float64)
    x0, y0, x1, y1 = 0, 0, W, H
    v = np.concatenate([np.asarray(m.vertices, np.float64).reshape(-1, 3) for m in meshes])
    uv, z = project_points(v, K, world_to_cam)
    if np.isfinite(z).all() and z.min() > _WINDOW_MIN_DEPTH:
        win = _pixel_window(uv, H, W, 2.0)  # the multisampled edge pixels around the projected vertices
        if win is None:
            return image  # the meshes lie outside the image
        x0, y0, x1, y1 = win
    w, h = x1 - x0, y1 - y0
    renderer = get_renderer(_renderer_side(w, W), _renderer_side(h, H))
    layers = renderer.render_layers(meshes, _window_K(K, x0, y0), world_to_cam, background=None)
    alpha = layers.alpha[:h, :w]
    a = (alpha * float(mesh_alpha))[..., None]
    # the render is premultiplied by coverage: colour = alpha * shade
    cov = np.maximum(alpha[..., None], 1e-6)
    shade = layers.image[:h, :w].astype(np.float32) / cov
    out = image.copy()
    blend = image[y0:y1, x0:x1].astype(np.float32) * (1 - a) + shade * a
    out[y0:y1, x0:x1] = np.clip(blend + 0.5, 0, 255).astype(np.uint8)
    return out


def _seq_vertices(vertices, T: int | None):
    v = np.asarray(vertices, np.float64)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4 or v.shape[1] != 2 or v.shape[3] != 3:
        raise HandcastError(f"vertices must be (2, V, 3) or (T, 2, V, 3) metres, got {np.asarray(vertices).shape}")
    return v


def _hand_valid(valid, T: int) -> np.ndarray:
    if valid is None:
        return np.ones((T, 2), bool)
    v = np.asarray(valid, bool)
    if v.shape == (2,):
        v = np.broadcast_to(v, (T, 2))
    if v.shape == (T, 2, NUM_KEYPOINTS):
        v = v.any(-1)
    if v.shape != (T, 2):
        raise HandcastError(f"valid must be (T, 2) booleans, got {np.asarray(valid).shape} for T={T}")
    return v


# --------------------------------------------------------------------------------------------
# Overlay of a motion on the first image


def overlay_motion(
    image: np.ndarray,
    joints3d: np.ndarray,
    K: np.ndarray,
    valid: np.ndarray | None = None,
    world_to_cam: np.ndarray | None = None,
    vertices: np.ndarray | None = None,
    faces=None,
    mesh_alpha: float = 0.6,
    fade: float = 0.7,
    frames: np.ndarray | None = None,
    paths: np.ndarray | None = None,
    **draw_kw,
) -> np.ndarray:
    """Draw a 3D hand motion over the FIRST frame's image (the forecast over the input image).

    image: (H, W, 3) uint8, the frame-0 image.
    joints3d: (T, 2, 21, 3) or (2, 21, 3) metres, frame-0 camera, (right, left), common order.
    K: (3, 3) intrinsics of ``image`` in pixels.
    valid: optional (T, 2) or (T, 2, 21) booleans.
    world_to_cam: optional (4, 4) (or (T, 4, 4), of which [0] is used) mapping the joints' frame to
        the camera of ``image``; None = identity (joints already in the frame-0 camera).
    vertices, faces: optional hand meshes, (2, V, 3) or (T, 2, V, 3) metres in the same frame (only
        the first frame is drawn), with faces (F, 3) or a (right, left) pair; blended with
        ``mesh_alpha`` under the skeletons.
    fade: colour fading over time (see :func:`time_colors`).
    frames: optional indices of the frames to draw (colours still follow the full sequence).
    paths: optional (N, T', 2, 3) metres, extra 3D trajectories (e.g. other samples' wrists) drawn
        as faint lines.
    draw_kw: forwarded to :func:`draw_keypoints` (width, radius, outline, supersample).
    Returns an (H, W, 3) uint8 image.
    """
    im = _check_image(image)
    j, _ = _as_seq(joints3d, (2, NUM_KEYPOINTS, 3), "joints3d")
    T = j.shape[0]
    w2c = None
    if world_to_cam is not None:
        w2c = np.asarray(world_to_cam, np.float64)
        if w2c.ndim == 3:
            w2c = w2c[0]
    uv, _ = project_points(j, K, w2c)
    colors = time_colors(T, fade)
    ok = _valid_mask(valid, T, np.isfinite(uv).all(-1))
    out = im
    if vertices is not None:
        v = _seq_vertices(vertices, T)
        hv = _hand_valid(valid, T)[:1]
        out = _render_meshes_over(out, _hand_meshes(v[:1], faces, colors[:1], hv), K, w2c, mesh_alpha)
    if paths is not None:
        p = np.asarray(paths, np.float64)
        if p.ndim != 4 or p.shape[2:] != (2, 3):
            raise HandcastError(f"paths must be (N, T, 2, 3) metres, got {p.shape}")
        puv, _ = project_points(p, K, w2c)
        out = _draw_paths(out, puv, width=_default_width(*im.shape[:2]) * 0.6)
    if frames is not None:
        idx = np.asarray(frames, int)
        uv, ok, colors = uv[idx], ok[idx], colors[idx]
    return draw_keypoints(out, uv, ok, colors=colors, **draw_kw)


# --------------------------------------------------------------------------------------------
# Second view


@dataclass
class ViewCamera:
    """A virtual OpenCV camera looking at the hands.

    K: (3, 3) pixels; world_to_cam: (4, 4) frame-0 camera -> virtual camera; width, height: pixels;
    ground_y: height of the ground plane as a frame-0-camera y coordinate (metres; +y is down);
    center: (3,) the point looked at (metres, frame-0 camera); radius: the scene radius (metres).
    """

    K: np.ndarray
    world_to_cam: np.ndarray
    width: int
    height: int
    ground_y: float
    center: np.ndarray
    radius: float
    _grid_cache: dict = field(default_factory=dict, repr=False, compare=False)


def _look_at(eye, target, up) -> np.ndarray:
    """(4, 4) world -> OpenCV camera at ``eye`` looking at ``target`` (image up ~ ``up``); an ``up``
    parallel to the view falls back to one that is not."""
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    z = (target - eye) / np.linalg.norm(target - eye)
    if np.linalg.norm(np.cross(z, up)) < 1e-9:
        up = np.cross(np.array([1.0, 0.0, 0.0]), z)  # makes cross(z, up) point along +x as before
    return look_at(eye, target, up)


def view_camera(
    points: np.ndarray,
    size: tuple[int, int] = (512, 512),
    azimuth: float = 70.0,
    elevation: float = 25.0,
    fov_deg: float = 35.0,
    margin: float = 1.15,
    min_radius: float = 0.12,
) -> ViewCamera:
    """A virtual camera that frames all finite ``points`` (..., 3) (metres, frame-0 camera).

    The camera orbits the points' centre: ``azimuth`` (degrees) turns around the vertical axis
    (-y of the frame-0 camera): 0 = from the original camera's side, 90 = from the right (+x);
    ``elevation`` (degrees) lifts it above the horizontal plane (90 = top view).
    size: (width, height) in pixels. The ground plane is put just below the lowest point.
    """
    p = np.asarray(points, np.float64).reshape(-1, 3)
    p = p[np.isfinite(p).all(1)]
    if len(p) == 0:
        center = np.array([0.0, 0.0, 0.5])
        radius = min_radius
        ground = 0.1
    else:
        lo, hi = p.min(0), p.max(0)
        center = (lo + hi) / 2
        radius = max(float(np.linalg.norm(p - center, axis=1).max()), min_radius)
        ground = float(hi[1]) + 0.02
    W, H = int(size[0]), int(size[1])
    up = np.array([0.0, -1.0, 0.0])
    az, el = np.radians(azimuth), np.radians(np.clip(elevation, -89.0, 89.0))
    d = np.cos(el) * (np.sin(az) * np.array([1.0, 0, 0]) - np.cos(az) * np.array([0, 0, 1.0])) + np.sin(el) * up
    half = np.radians(fov_deg) / 2
    dist = radius * margin / np.sin(half)
    eye = center + dist * d
    f = (min(W, H) / 2) / np.tan(half)
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1.0]])
    return ViewCamera(K, _look_at(eye, center, up), W, H, ground, center, radius)


def _grid_image(cam: ViewCamera, background, spacing: float | None = None) -> np.ndarray:
    key = (tuple(int(c) for c in np.asarray(background).reshape(3)), spacing)
    if key not in cam._grid_cache:
        cam._grid_cache.clear()
        cam._grid_cache[key] = _grid_image_uncached(cam, background, spacing)
    return cam._grid_cache[key].copy()


def _grid_image_uncached(cam: ViewCamera, background, spacing: float | None) -> np.ndarray:
    W, H = cam.width, cam.height
    img = np.empty((H, W, 3), np.uint8)
    img[:] = np.asarray(background, np.uint8)
    ext = max(0.4, 3.0 * cam.radius)
    if spacing is None:
        spacing = 0.05 if ext < 0.8 else 0.1
    n = int(np.ceil(ext / spacing))
    cx = np.round(cam.center[0] / spacing) * spacing
    cz = np.round(cam.center[2] / spacing) * spacing
    ticks = np.arange(-n, n + 1) * spacing
    s = np.linspace(-n * spacing, n * spacing, 4 * n + 1)
    lines = []
    for t in ticks:
        lines.append(np.stack([cx + np.full_like(s, t), np.full_like(s, cam.ground_y), cz + s], -1))
        lines.append(np.stack([cx + s, np.full_like(s, cam.ground_y), cz + np.full_like(s, t)], -1))
    lines = np.stack(lines)  # (L, S, 3)
    uv, z = project_points(lines, cam.K, cam.world_to_cam)
    # fade grid lines with distance from the centre; draw only segments with both ends visible
    dist = np.abs(lines[..., [0, 2]] - np.array([cx, cz])).max(-1) / (n * spacing)
    bg = np.asarray(background, np.float64)
    fin = np.isfinite(uv).all(-1)
    seg_ok = fin[:, :-1] & fin[:, 1:]
    w = 0.45 * (1 - 0.8 * dist[:, :-1])
    cols = np.round(bg * (1 - w[..., None]) + 120 * w[..., None]).astype(int)
    li, ki = np.nonzero(seg_ok)
    a_pts, b_pts, seg_cols = uv[li, ki], uv[li, ki + 1], cols[li, ki]

    def fn(draw, ss):
        A = _to_canvas(a_pts, ss).tolist()
        B = _to_canvas(b_pts, ss).tolist()
        C = [tuple(c) + (255,) for c in seg_cols.tolist()]
        for a, b, c in zip(A, B, C):
            draw.line([tuple(a), tuple(b)], fill=c, width=ss)

    return _composite(img, _draw_layer(H, W, 2, fn))


def second_view(
    joints3d: np.ndarray | None = None,
    valid: np.ndarray | None = None,
    vertices: np.ndarray | None = None,
    faces=None,
    camera: ViewCamera | None = None,
    size: tuple[int, int] = (512, 512),
    azimuth: float = 70.0,
    elevation: float = 25.0,
    background=(250, 250, 250),
    grid: bool = True,
    fade: float = 0.7,
    frames: np.ndarray | None = None,
    skeleton: bool | None = None,
    shadows: bool = True,
    paths: np.ndarray | None = None,
    colors: np.ndarray | None = None,
    **draw_kw,
) -> np.ndarray:
    """Render the motion from a virtual camera beside/above the hands, on a light background
    with a ground grid, in the same (time-fading) colours as the overlay.

    joints3d: (T, 2, 21, 3) or (2, 21, 3) metres, frame-0 camera, (right, left), common order.
    valid: optional (T, 2) or (T, 2, 21) booleans.
    vertices, faces: optional meshes (T, 2, V, 3) or (2, V, 3) metres (same frame) with faces (F, 3)
        or a (right, left) pair, rendered with the GL renderer.
    camera: a :func:`view_camera` (keep one fixed across a video); default framed on the data.
    size: (width, height) when ``camera`` is None; azimuth, elevation: see :func:`view_camera`.
    frames: optional indices of the frames to draw (colours follow the full sequence). With meshes
        and no ``frames``, at most 6 evenly spaced frames are drawn.
    skeleton: draw skeletons (default: when no meshes are given).
    shadows: draw the wrists' trajectories projected on the ground plane.
    paths: optional (N, T', 2, 3) metres, extra trajectories drawn as faint lines.
    colors: optional (T, 2, 3) uint8 per-frame colours (default :func:`time_colors` (T, fade)).
    Returns an (H, W, 3) uint8 image.
    """
    if joints3d is None and vertices is None:
        raise HandcastError("second_view needs joints3d or vertices")
    j = None
    if joints3d is not None:
        j, _ = _as_seq(joints3d, (2, NUM_KEYPOINTS, 3), "joints3d")
    v = _seq_vertices(vertices, None) if vertices is not None else None
    T = j.shape[0] if j is not None else v.shape[0]
    if v is not None and j is not None and v.shape[0] != T:
        raise HandcastError(f"vertices have {v.shape[0]} frames but joints3d {T}")
    hv = _hand_valid(valid if (valid is None or np.asarray(valid).ndim <= 2) else np.asarray(valid).any(-1), T)
    if camera is None:
        pts = j if j is not None else v
        sel = np.where(hv[..., None, None], pts, np.nan)
        camera = view_camera(sel, size, azimuth, elevation)
    cam = camera
    if colors is None:
        colors = time_colors(T, fade)
    colors = np.asarray(colors, np.uint8)
    if colors.shape != (T, 2, 3):
        raise HandcastError(f"colors must be (T, 2, 3) = ({T}, 2, 3), got {colors.shape}")
    idx = np.arange(T) if frames is None else np.asarray(frames, int).reshape(-1)
    img = _grid_image(cam, background) if grid else np.tile(np.asarray(background, np.uint8), (cam.height, cam.width, 1))

    if shadows and j is not None:
        wr = j[:, :, 0].copy()  # (T, 2, 3)
        wr[~hv] = np.nan
        wr[..., 1] = cam.ground_y
        show = wr[: idx.max() + 1] if len(idx) else wr[:0]
        suv, _ = project_points(show[None], cam.K, cam.world_to_cam)
        img = _draw_paths(img, suv, width=_default_width(cam.height, cam.width) * 0.8, alpha=70)
    if paths is not None:
        p = np.asarray(paths, np.float64)
        if p.ndim != 4 or p.shape[2:] != (2, 3):
            raise HandcastError(f"paths must be (N, T, 2, 3) metres, got {p.shape}")
        puv, _ = project_points(p, cam.K, cam.world_to_cam)
        img = _draw_paths(img, puv, width=_default_width(cam.height, cam.width) * 0.6)
    if v is not None:
        midx = idx
        if frames is None and len(idx) > 6:
            midx = np.unique(np.round(np.linspace(0, T - 1, 6)).astype(int))
        meshes = _hand_meshes(v[midx], faces, colors[midx], hv[midx])
        img = _render_meshes_over(img, meshes, cam.K, cam.world_to_cam, 1.0)
    if skeleton is None:
        skeleton = v is None
    if skeleton and j is not None:
        uv, _ = project_points(j, cam.K, cam.world_to_cam)
        ok = _valid_mask(valid, T, np.isfinite(uv).all(-1))
        img = draw_keypoints(img, uv[idx], ok[idx], colors=colors[idx], **draw_kw)
    return img


# --------------------------------------------------------------------------------------------
# Sheet


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        return ImageFont.load_default()


def _legend_bar(width: int, height: int, title: str | None, fade: float, num_frames: int) -> np.ndarray:
    bar = Image.new("RGB", (width, height), (255, 255, 255))
    d = ImageDraw.Draw(bar)
    fs = max(10, int(height * 0.38))
    font = _font(fs)
    x = 8
    y = (height - fs) // 2
    if title:
        d.text((x, y), title, fill=(20, 20, 20), font=font)
        x += int(d.textlength(title, font=font)) + 24
    for hand, name in ((0, "right"), (1, "left")):
        d.rectangle([x, y + 1, x + fs, y + fs], fill=tuple(HAND_COLORS[hand]))
        x += fs + 5
        d.text((x, y), name, fill=(20, 20, 20), font=font)
        x += int(d.textlength(name, font=font)) + 16
    label = f"t = 0 .. {num_frames - 1}"
    d.text((x, y), label, fill=(20, 20, 20), font=font)
    x += int(d.textlength(label, font=font)) + 8
    cols = time_colors(max(num_frames, 2), fade)
    gw = max(40, min(160, width - x - 10))
    for i in range(gw):
        c = cols[int(round(i / max(gw - 1, 1) * (len(cols) - 1))), 0]
        d.line([(x + i, y + 1), (x + i, y + fs)], fill=tuple(int(a) for a in c))
    return np.asarray(bar)


def render_sheet(
    image: np.ndarray,
    K: np.ndarray,
    joints3d: np.ndarray,
    valid: np.ndarray | None = None,
    world_to_cam: np.ndarray | None = None,
    vertices: np.ndarray | None = None,
    faces=None,
    title: str | None = None,
    out_png=None,
    height: int = 512,
    fade: float = 0.7,
    paths: np.ndarray | None = None,
    view_kw: dict | None = None,
    num_drawn: int | None = 10,
    zoom: bool = True,
) -> np.ndarray:
    """One figure: the motion over the first image (left) and a second view (right), with a
    title / legend bar on top.

    zoom: where the hands (every frame, and the paths) fill only a small part of the image (a hand in a whole
    phone photo), the left panel shows their window of it (:func:`hands_window`) instead of the whole image.

    num_drawn: draw at most this many evenly spaced frames (first and last included) so the figure
    stays readable; None draws every frame.

    image: (H, W, 3) uint8 frame-0 image; K: (3, 3) its intrinsics; joints3d: (T, 2, 21, 3) metres,
    frame-0 camera; valid: (T, 2) optional; world_to_cam: see :func:`overlay_motion`;
    vertices/faces: optional meshes (first frame over the image; a few frames in the second view);
    height: panel height in pixels; paths: optional (N, T, 2, 3) extra trajectories.
    out_png: if given, the sheet is also written there (atomically).
    Returns the sheet, (height + bar, W', 3) uint8.
    """
    j, _ = _as_seq(joints3d, (2, NUM_KEYPOINTS, 3), "joints3d")
    im, Ks = _panel_image(image, K, j, valid, world_to_cam, paths, height, zoom)
    T = j.shape[0]
    drawn = None if num_drawn is None or T <= num_drawn else np.unique(np.linspace(0, T - 1, num_drawn).round().astype(int))
    left = overlay_motion(im, j, Ks, valid, world_to_cam, vertices, faces, fade=fade, paths=paths, frames=drawn)
    vk = dict(view_kw or {})
    vk.setdefault("size", (height, height))
    vk.setdefault("frames", drawn)
    right = second_view(j, valid, vertices, faces, fade=fade, paths=paths, **vk)
    if right.shape[0] != height:
        right, _ = resize_with_K(right, np.eye(3), height)
    gap = np.full((height, 6, 3), 255, np.uint8)
    body = np.concatenate([left, gap, right], axis=1)
    bar = _legend_bar(body.shape[1], max(24, height // 14), title, fade, j.shape[0])
    sheet = np.concatenate([bar, body], axis=0)
    if out_png is not None:
        save_png(out_png, sheet)
    return sheet


def save_png(path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as PNG atomically."""
    im = _check_image(image)
    with atomic_path(path) as tmp:
        Image.fromarray(im).save(tmp, format="PNG")
