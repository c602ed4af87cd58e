"""A self-contained interactive 3D viewer page for a lifting / forecasting result (``handcast view``).

:func:`write_viewer` turns a result ``.npz`` into ONE HTML file that needs no network when it is
opened: the JavaScript (three.js, its OrbitControls and fflate, bundled by
``scripts/build_viewer_bundle.sh`` into ``assets/viewer.bundle.js``) and the data (quantised,
compressed, base64) are inlined. :func:`read_result` is the shared reader of the result schema
(also used by :mod:`handcast.render.export`); the schema is documented in ``docs/viewer.md``.

Frames: the result's 3D quantities are metres in the frame-0 camera (OpenCV: x right, y down,
z forward). The page shows them in three.js' y-up frame, ``(x, -y, -z)``.

Importing this module reads no file and imports neither torch nor the hand model.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from handcast import __version__
from handcast.conventions import (
    HAND_COLORS,
    HANDS,
    KEYPOINT_BONES,
    NUM_KEYPOINTS,
    NUM_MANO_JOINTS,
)
from handcast.errors import HandcastError
from handcast.hand import HandModel
from handcast.io import atomic_path, check_world_to_cam, load_npz, numeric_field

__all__ = ["ResultArrays", "read_result", "write_viewer", "encode_positions", "decode_positions",
           "bundle_info", "MAX_IMAGE_SIDE"]

FORMAT = "handcast-viewer"
VERSION = 1
# The embedded image is downscaled (aspect kept) so its longer side is at most this many pixels.
MAX_IMAGE_SIDE = 1024
# Quantisation steps (m) of the embedded joints and mesh vertices (error <= step / 2).
JOINT_STEP = 1e-4
VERTEX_STEP = 2.5e-4
# OpenCV camera -> three.js display frame (a rotation by 180 degrees about x; det = +1).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0])


@dataclass
class ResultArrays:
    """A result normalised to a sample axis, everything in the frame-0 camera (OpenCV), metres.

    joints: float64 (S, T, 2, 21, 3), common keypoint order, hands (right, left); NaN allowed
    where a hand is invalid. valid: bool (S, T, 2), false where a hand is absent or any of its
    joints is not finite. vertices: float64 (S, T, 2, V, 3) or None. faces: (right (F, 3),
    left (F, 3)) int64 with outward winding, or None. K: float64 (3, 3) pixels or None.
    image_size: (W, H) ints or None. image: uint8 (H, W, 3) RGB of frame 0 or None.
    world_to_cam: float64 (T, 4, 4) frame-0 camera -> camera t, or None. fps: frames per second.
    had_samples: whether the input had a sample axis (joints (S, T, 2, 21, 3)).
    """

    joints: np.ndarray
    valid: np.ndarray
    vertices: np.ndarray | None
    faces: tuple[np.ndarray, np.ndarray] | None
    K: np.ndarray | None
    image_size: tuple[int, int] | None
    image: np.ndarray | None
    world_to_cam: np.ndarray | None
    fps: float
    had_samples: bool

    @property
    def num_samples(self) -> int:
        return int(self.joints.shape[0])

    @property
    def num_frames(self) -> int:
        return int(self.joints.shape[1])


# ----------------------------------------------------------------------------------------------
# Reading and checking a result

# In a file with ``clip_ids`` (N clips), arrays with at least this many dims and a first axis of
# N hold one entry per clip.
_BATCHED_NDIM = {"joints": 5, "valid": 3, "hand_valid": 3, "vertices": 5, "faces": 4, "pose": 5, "transl": 4,
                 "betas": 3, "world_to_cam": 4, "K": 3, "image": 4, "image_size": 2, "fps": 1}


def _load(result, name: str) -> dict[str, np.ndarray]:
    if isinstance(result, Mapping):
        return {k: (v if v is None else np.asarray(v)) for k, v in result.items() if v is not None}
    if not isinstance(result, (str, Path)):
        raise HandcastError(f"{name} must be a path to an .npz file or a mapping of arrays, got {type(result).__name__}")

    return load_npz(result)


def _float(data, key, src) -> np.ndarray:
    return numeric_field(data, key, src).astype(np.float64)


def _with_samples(a: np.ndarray, key: str, src: str, S: int, T: int, tail: tuple, had_samples: bool) -> np.ndarray:
    """Broadcast an array of shape (T, *tail) or (S, T, *tail) to (S, T, *tail)."""
    tail = tuple(tail)
    if a.shape == (T,) + tail:
        return np.broadcast_to(a[None], (S, T) + tail)
    if a.shape == (S, T) + tail and had_samples:
        return a
    want = f"({T}, {', '.join(map(str, tail))})"
    if had_samples:
        want += f" or ({S}, {T}, {', '.join(map(str, tail))})"
    raise HandcastError(f"{src}: {key} must have shape {want} to match joints, got {a.shape}")


def _mesh_from_params(data: dict, src: str, S: int, T: int | None, had_samples: bool):
    """Vertices (S, T, 2, V, 3) and keypoints (S, T, 2, 21, 3) from MANO parameters."""
    import torch


    pose = _float(data, "pose", src)
    if pose.ndim == 4:
        pose = pose[None]
    if pose.ndim != 5 or pose.shape[2:] != (2, NUM_MANO_JOINTS, 3):
        raise HandcastError(f"{src}: pose must be (T, 2, 16, 3) or (S, T, 2, 16, 3) axis-angle (flat convention), got {data['pose'].shape}")
    if T is not None and pose.shape[1] != T:
        raise HandcastError(f"{src}: pose has {pose.shape[1]} frames but joints has {T}")
    Sp, Tp = pose.shape[:2]
    if S is not None and Sp not in (1, S):
        raise HandcastError(f"{src}: pose has {Sp} samples but joints has {S}")
    S = S if S is not None else Sp
    pose = np.broadcast_to(pose, (S, Tp, 2, NUM_MANO_JOINTS, 3))
    transl = _with_samples(_float(data, "transl", src), "transl", src, S, Tp, (2, 3), had_samples or Sp > 1)
    betas = _float(data, "betas", src)
    if betas.shape == (2, 10):
        betas = np.broadcast_to(betas, (S, Tp, 2, 10))
    else:
        betas = _with_samples(betas, "betas", src, S, Tp, (2, 10), had_samples or Sp > 1)
    kind = "auto"
    if "hand_model" in data:
        kind = str(np.asarray(data["hand_model"]).reshape(-1)[0]) if np.asarray(data["hand_model"]).size else "auto"
    for name, arr in (("pose", pose), ("transl", transl), ("betas", betas)):
        if not np.isfinite(arr).all():
            raise HandcastError(f"{src}: {name} contains NaN or inf (mask invalid hands with hand_valid instead)")
    model = HandModel(kind)
    with torch.no_grad():
        out = model.forward(torch.from_numpy(np.ascontiguousarray(pose, np.float32)),
                            torch.from_numpy(np.ascontiguousarray(betas, np.float32)),
                            torch.from_numpy(np.ascontiguousarray(transl, np.float32)), rep="aa", convention="flat")
    verts = out.vertices.numpy().astype(np.float64)
    kps = out.keypoints.numpy().astype(np.float64)
    faces = (model.faces("right"), model.faces("left"))
    return verts, kps, faces


def read_result(result, *, clip: int = 0, need_meshes: bool = False, name: str = "result") -> ResultArrays:
    """Read and check a result (path to an ``.npz`` or a mapping of arrays); see docs/viewer.md.

    Arrays (S = samples, T = frames, hands (right, left), metres, frame-0 camera, OpenCV axes):
    ``joints`` (T, 2, 21, 3) or (S, T, 2, 21, 3), common keypoint order; optional ``vertices``
    (.., T, 2, V, 3) with ``faces`` (F, 3) or (2, F, 3); or MANO parameters ``pose``
    (.., T, 2, 16, 3) flat axis-angle, ``transl`` (.., T, 2, 3), ``betas`` (2, 10) (meshes from
    ``HandModel(hand_model or "auto")``; ``joints`` may then be omitted); ``hand_valid`` (or
    ``valid``) (T, 2) / (S, T, 2) bool; ``K`` (3, 3); ``image_size`` (2,) = (W, H); ``image``
    uint8 (H, W, 3); ``world_to_cam`` (T, 4, 4); ``fps``. A handcast prediction or ground-truth
    file (it has ``clip_ids``) holds many clips along a first axis: ``clip`` picks one.
    need_meshes: raise unless meshes are available (vertices + faces, or MANO parameters).
    Raises HandcastError (one line) for anything malformed.
    """
    src = str(result) if isinstance(result, (str, Path)) else name
    data = _load(result, name)
    has_params = all(k in data for k in ("pose", "transl", "betas"))
    if "joints" not in data and not has_params:
        raise HandcastError(f"{src}: missing array joints (T, 2, 21, 3) or (S, T, 2, 21, 3) "
                            "(or MANO parameters pose + transl + betas)")
    if "clip_ids" in data:  # a prediction (N, S, T, ...) or ground-truth (N, T, ...) file
        N = int(np.asarray(data["clip_ids"]).shape[0]) if np.asarray(data["clip_ids"]).ndim else 1
        if not -N <= int(clip) < N:
            raise HandcastError(f"{src}: clip {clip} out of range for {N} clips")
        for k, nd in _BATCHED_NDIM.items():
            a = np.asarray(data[k]) if k in data else None
            if a is not None and a.ndim >= nd and a.shape[0] == N:
                data[k] = a[int(clip)]
        # an older handcast's prediction / ground-truth file names its wrist positions `transl` (now `wrist`):
        # not MANO's translation, so not a mesh parameter
        if "pose" not in data:
            data.pop("transl", None)
            has_params = False
    S = T = None
    had_samples = False
    joints = None
    if "joints" in data:
        joints = _float(data, "joints", src)
        if joints.ndim == 4:
            joints = joints[None]
        elif joints.ndim == 5:
            had_samples = True
        if joints.ndim != 5 or joints.shape[2:] != (2, NUM_KEYPOINTS, 3):
            raise HandcastError(f"{src}: joints must be (T, 2, 21, 3) or (S, T, 2, 21, 3) metres, got {data['joints'].shape}")
        S, T = joints.shape[:2]
        if S == 0 or T == 0:
            raise HandcastError(f"{src}: joints is empty (shape {data['joints'].shape})")

    vertices = faces = None
    if "vertices" in data:
        v = _float(data, "vertices", src)
        if v.ndim < 4 or v.shape[-1] != 3 or v.shape[-3] != 2:
            raise HandcastError(f"{src}: vertices must be (.., T, 2, V, 3) metres, got {v.shape}")
        V = v.shape[-2]
        if joints is None:
            raise HandcastError(f"{src}: vertices given without joints")
        vertices = np.ascontiguousarray(_with_samples(v, "vertices", src, S, T, (2, V, 3), had_samples))
        if "faces" not in data:
            raise HandcastError(f"{src}: vertices given without faces (F, 3)")
        f = np.asarray(data["faces"])
        if f.dtype.kind not in "iu":
            raise HandcastError(f"{src}: faces must be integers, got dtype {f.dtype}")
        if f.ndim == 2 and f.shape[1] == 3:
            faces = (f.astype(np.int64), f.astype(np.int64))
        elif f.ndim == 3 and f.shape[0] == 2 and f.shape[2] == 3:
            faces = (f[0].astype(np.int64), f[1].astype(np.int64))
        else:
            raise HandcastError(f"{src}: faces must be (F, 3) or (2, F, 3) vertex indices, got {f.shape}")
        if any(x.size and (x.min() < 0 or x.max() >= V) for x in faces):
            raise HandcastError(f"{src}: faces index vertices outside 0..{V - 1}")
    elif has_params:
        vertices, kps, faces = _mesh_from_params(data, src, S, T, had_samples)
        if joints is None:
            joints = kps
            had_samples = np.asarray(data["pose"]).ndim == 5
            S, T = joints.shape[:2]
        elif vertices.shape[0] != S:
            vertices = np.broadcast_to(vertices, (S,) + vertices.shape[1:])
    elif need_meshes:
        raise HandcastError(f"{src}: no meshes: needs vertices + faces, or MANO parameters pose + transl + betas")

    vkey = "hand_valid" if "hand_valid" in data else ("valid" if "valid" in data else None)
    if vkey is not None:
        va = np.asarray(data[vkey])
        if va.dtype.kind not in "biuf":
            raise HandcastError(f"{src}: {vkey} must be boolean, got dtype {va.dtype}")
        valid = np.array(_with_samples(va.astype(bool), vkey, src, S, T, (2,), had_samples))
    else:
        valid = np.ones((S, T, 2), bool)
    valid &= np.isfinite(joints).all(axis=(-1, -2))
    if vertices is not None:
        valid &= np.isfinite(vertices).all(axis=(-1, -2))

    K = None
    if "K" in data:
        K = _float(data, "K", src)
        if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise HandcastError(f"{src}: K must be a finite (3, 3) intrinsics matrix with fx, fy > 0, got shape {K.shape}")
    image = None
    if "image" in data:
        im = np.asarray(data["image"])
        if im.dtype != np.uint8 or not (im.ndim == 2 or (im.ndim == 3 and im.shape[2] in (1, 3, 4))) or im.size == 0:
            raise HandcastError(f"{src}: image must be uint8 (H, W, 3) RGB, got {im.shape} {im.dtype}")
        if im.ndim == 2:
            im = im[:, :, None]
        image = np.ascontiguousarray(np.repeat(im, 3, axis=2) if im.shape[2] == 1 else im[:, :, :3])
    image_size = None
    if "image_size" in data:
        sz = np.asarray(data["image_size"]).reshape(-1)
        if sz.shape != (2,) or sz.dtype.kind not in "iuf" or not np.isfinite(sz).all() or (sz <= 0).any():
            raise HandcastError(f"{src}: image_size must be (2,) positive (width, height), got {np.asarray(data['image_size']).shape}")
        image_size = (int(round(sz[0])), int(round(sz[1])))
    elif image is not None:
        image_size = (int(image.shape[1]), int(image.shape[0]))
    elif K is not None:
        image_size = (max(1, int(round(2 * K[0, 2]))), max(1, int(round(2 * K[1, 2]))))
    w2c = None
    if "world_to_cam" in data:
        w2c = check_world_to_cam(_float(data, "world_to_cam", src), T, src)
    fps = 30.0
    if "fps" in data:
        f = np.asarray(data["fps"]).reshape(-1)
        if f.size != 1 or f.dtype.kind not in "iuf" or not np.isfinite(f[0]) or f[0] <= 0:
            raise HandcastError(f"{src}: fps must be one positive number, got {np.asarray(data['fps'])!r}")
        fps = float(f[0])
    return ResultArrays(joints=np.ascontiguousarray(joints), valid=valid, vertices=vertices, faces=faces, K=K,
                        image_size=image_size, image=image, world_to_cam=w2c, fps=fps, had_samples=had_samples)


# ----------------------------------------------------------------------------------------------
# Encoding


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def encode_positions(x: np.ndarray, min_step: float = 1e-4) -> dict:
    """Encode positions (S, T, N, 3) metres (NaN allowed) for the page.

    int16 steps of ``step`` metres (``min_step``, larger only if the scene spans more than
    +-3.2 m) around ``offset``, differenced along T, little-endian bytes split into a low-byte
    and a high-byte plane, zlib. Non-finite entries take the previous frame's value (0 at the
    first frame); the page hides them through ``valid``. Error <= step / 2 per coordinate.
    """
    x = np.array(x, np.float64)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"positions must be (S, T, N, 3), got {x.shape}")
    S, T, N, _ = x.shape
    fin = np.isfinite(x)
    if fin.any():
        lo = np.where(fin, x, np.inf).reshape(-1, 3).min(0)
        hi = np.where(fin, x, -np.inf).reshape(-1, 3).max(0)
        lo = np.where(np.isfinite(lo), lo, 0.0)
        hi = np.where(np.isfinite(hi), hi, 0.0)
        offset = np.round((lo + hi) / 2, 4)
    else:
        offset = np.zeros(3)
    rel = x - offset
    maxabs = float(np.abs(np.where(fin, rel, 0.0)).max()) if x.size else 0.0
    step = max(float(min_step), maxabs / 32000.0)
    q = np.where(fin, np.round(rel / step), np.nan)
    if not fin.all():  # fill gaps with the last finite value before them (0 before the first one)
        idx = np.where(fin, np.arange(T)[None, :, None, None], 0)
        np.maximum.accumulate(idx, axis=1, out=idx)
        q = np.take_along_axis(q, idx, axis=1)
        q[np.isnan(q)] = 0.0
    q = q.astype(np.int64)
    d = q.copy()
    d[:, 1:] -= q[:, :-1]
    u = (d & 0xFFFF).astype(np.uint16).ravel()
    planes = np.concatenate([(u & 0xFF).astype(np.uint8), (u >> 8).astype(np.uint8)])
    return {"b64": _b64(zlib.compress(planes.tobytes(), 6)), "shape": [S, T, N, 3], "step": step,
            "offset": [float(o) for o in offset], "enc": "i16-tdelta-planes-zlib"}


def decode_positions(spec: dict) -> np.ndarray:
    """Inverse of :func:`encode_positions` (what the page does), float64 (S, T, N, 3)."""
    S, T, N, C = spec["shape"]
    n = S * T * N * C
    b = np.frombuffer(zlib.decompress(base64.b64decode(spec["b64"])), np.uint8)
    if b.size != 2 * n:
        raise ValueError("corrupt position payload")
    d = (b[:n].astype(np.uint16) | (b[n:].astype(np.uint16) << 8)).view(np.int16).reshape(S, T, N, C)
    q = np.cumsum(d.astype(np.int64), axis=1)
    q = ((q + 32768) % 65536 - 32768).astype(np.float64)
    return q * spec["step"] + np.asarray(spec["offset"])


def _encode_plain(a: np.ndarray, dtype: str) -> dict:
    np_dtype = {"u8": np.uint8, "u16": "<u2", "u32": "<u4", "f32": "<f4"}[dtype]
    a = np.ascontiguousarray(a, dtype=np_dtype)
    return {"b64": _b64(zlib.compress(a.tobytes(), 9)), "shape": list(a.shape), "dtype": dtype, "zlib": True}


def _png_data_uri(image: np.ndarray, max_side: int) -> str:
    from PIL import Image

    im = Image.fromarray(image)
    w, h = im.size
    if max(w, h) > max_side:
        s = max_side / max(w, h)
        im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + _b64(buf.getvalue())


def _asset_text(name: str) -> str:
    try:
        return resources.files("handcast.render").joinpath("assets", name).read_text(encoding="utf-8")
    except (FileNotFoundError, OSError) as e:
        raise HandcastError(f"viewer asset {name} is missing from the installation ({e}); reinstall handcast "
                            "or rebuild it with scripts/build_viewer_bundle.sh") from None


def bundle_info() -> dict[str, str]:
    """Versions of the bundled JavaScript libraries, e.g. ``{"three": "0.187.0", ...}``."""
    out = {}
    for line in _asset_text("viewer.bundle.versions").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _plane_depth(r: ResultArrays) -> float:
    """Depth (m, frame-0 camera) of the image plane: just behind the hands of frame 0."""
    for sel in (r.valid[:, :1], r.valid):
        z = r.joints[:, : sel.shape[1], :, :, 2][sel]
        z = z[np.isfinite(z) & (z > 0)]
        if z.size:
            return float(np.clip(1.25 * z.max(), 0.05, 20.0))
    return 0.6


def build_page_data(r: ResultArrays, title: str, max_image_side: int = MAX_IMAGE_SIDE) -> dict:
    """The JSON object embedded in the page (see docs/viewer.md, "Page data")."""
    S, T = r.num_samples, r.num_frames
    j = np.where(r.valid[..., None, None], r.joints, np.nan) @ _CV_TO_GL.T
    data = {
        "format": FORMAT, "version": VERSION, "title": title, "fps": r.fps,
        "num_samples": S, "num_frames": T, "hand_names": list(HANDS),
        "colors": [list(c) for c in HAND_COLORS], "bones": [list(b) for b in KEYPOINT_BONES],
        "joints": encode_positions(j.reshape(S, T, 2 * NUM_KEYPOINTS, 3), min_step=JOINT_STEP),
        "valid": _encode_plain(r.valid.astype(np.uint8), "u8"),
        "joint_radius": 0.004,
        "vertices": None, "faces": None, "camera": None, "camera_poses": None, "image": None,
        "plane_depth": _plane_depth(r),
    }
    if r.vertices is not None:
        V = r.vertices.shape[-2]
        v = np.where(r.valid[..., None, None], r.vertices, np.nan) @ _CV_TO_GL.T
        data["vertices"] = encode_positions(v.reshape(S, T, 2 * V, 3), min_step=VERTEX_STEP)
        fdt = "u16" if V < 65536 else "u32"
        data["faces"] = [_encode_plain(f.reshape(-1), fdt) for f in r.faces]
    if r.K is not None:
        data["camera"] = {"K": r.K.tolist(), "image_size": list(r.image_size)}
        if r.world_to_cam is not None:
            flip = np.eye(4)
            flip[:3, :3] = _CV_TO_GL
            poses = flip @ np.linalg.inv(r.world_to_cam)  # camera t (OpenCV) -> display frame
            data["camera_poses"] = _encode_plain(np.swapaxes(poses, 1, 2).reshape(T, 16), "f32")  # column-major
    if r.image is not None:
        data["image"] = _png_data_uri(r.image, max_image_side)
    return data


def _legend(r: ResultArrays) -> str:
    parts = []
    for name, c in zip(HANDS, HAND_COLORS):
        parts.append(f'<span><i style="background: rgb({c[0]},{c[1]},{c[2]})"></i>{name} hand</span>')
    extra = f"{r.num_frames} frames at {r.fps:g} fps"
    if r.num_samples > 1:
        extra += f", {r.num_samples} samples"
    parts.append(f"<span>{html.escape(extra)}</span>")
    return "".join(parts)


def render_page(r: ResultArrays, title: str, max_image_side: int = MAX_IMAGE_SIDE) -> str:
    """The page's HTML text for checked result arrays."""
    data = build_page_data(r, title, max_image_side)
    data_json = json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    bundle = _asset_text("viewer.bundle.js")
    if "</script" in bundle.lower():
        raise HandcastError("viewer.bundle.js contains '</script' and cannot be inlined; rebuild it")
    licences = "\n\n".join(
        f"{name}:\n" + _asset_text(f"licenses/{name}.LICENSE.txt").replace("--", "- -")
        for name in ("three", "fflate"))
    values = {
        "TITLE": html.escape(title), "LEGEND": _legend(r), "DATA": data_json, "BUNDLE": bundle,
        "VERSION": html.escape(__version__),
        "LICENSES": "This page bundles three.js and fflate under their MIT licences:\n\n" + licences,
    }
    template = _asset_text("viewer_template.html")
    # one pass, so inserted text is never scanned for placeholders again
    return re.sub(r"__HANDCAST_([A-Z]+)__", lambda m: values[m.group(1)], template)


def write_viewer(result: str | Path, out: str | Path, *, title: str | None = None, clip: int = 0,
                 max_image_side: int = MAX_IMAGE_SIDE) -> Path:
    """Write a self-contained interactive 3D viewer page (HTML) for a result ``.npz``.

    result: path to an ``.npz`` (or a mapping of arrays) with the arrays of :func:`read_result`:
    ``joints`` (T, 2, 21, 3) or (S, T, 2, 21, 3) metres in the frame-0 camera (OpenCV), hands
    (right, left), common keypoint order; optional meshes, validity, ``K``, ``image_size``,
    ``image``, ``world_to_cam``, ``fps`` (docs/viewer.md). clip: which clip of a prediction /
    ground-truth file (one with ``clip_ids``). title: page title (default: the file's stem).
    max_image_side: the embedded image is downscaled to at most this many pixels per side.
    The page plays, pauses and scrubs the frames, switches samples, shows the camera frustum
    with the input image as a textured plane, and the image with projected keypoints as a panel.
    Written atomically; returns ``out`` as a Path. Raises HandcastError for bad input.
    """
    r = read_result(result, clip=clip)
    if title is None:
        title = Path(result).stem if isinstance(result, (str, Path)) else "handcast result"
    page = render_page(r, str(title), int(max_image_side))
    out = Path(out)
    if out.is_dir():
        raise HandcastError(f"--out {out} is a folder; give the path of the .html file to write")
    with atomic_path(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out
