"""Shared machinery of the dataset converters: the summary, safe readers, the hand-model helper,
camera helpers and :func:`emit_sequence`, which turns one source sequence into store clips.

A converter (one module per dataset) reads a dataset's raw files into a :class:`Sequence`: per-frame
arrays in the dataset's own world frame (or a static camera's frame), already in handcast's units,
camera convention (OpenCV), hand order (right, left), common 21-keypoint order and FLAT MANO pose
convention. :func:`emit_sequence` then cuts it into clips, re-expresses every 3D quantity in each
clip's frame-0 camera (joints ``x' = R0 x + t0``; MANO ``R_g' = R0 R_g``, ``transl' = R0 (transl + J0)
+ t0 - J0``), derives ``world_to_cam`` and, where a dataset has no 2D labels, projects the 3D ones.

Nothing here reads a file at import time.
"""

from __future__ import annotations

import dataclasses
import io as _io
import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence as _Seq

import numpy as np

from handcast.conventions import NUM_KEYPOINTS, NUM_MANO_JOINTS
from handcast.data.clip import Clip
from handcast.errors import AssetMissingError, HandcastError

MANO_HELP = ("register at https://mano.is.tue.mpg.de, download the MANO model (mano_v1_2), then run "
             "`handcast mano import MANO_RIGHT.pkl MANO_LEFT.pkl`")
STORE_SPLITS = ("train", "val", "test")

# Options every converter accepts (name -> default). Converters add their own.
COMMON_OPTIONS: dict[str, Any] = {
    "hand_model": None,   # None/"auto": MANO if installed (required datasets: MANO); "mano"; "open"; "none"
    "mano_dir": None,     # folder with MANO_RIGHT.npz / MANO_LEFT.npz (default $HANDCAST_HOME/mano)
    "clip_len": None,     # cut sequences into clips of at most this many frames (None: whole runs)
    "min_frames": 1,      # drop clips shorter than this
    "images": True,       # store the first frame's image where the converter supports it
    "max_items": None,    # convert only the first N items of each split (quick trials)
    "fps": None,          # override the frame rate where the dataset does not state it
}


# ============================================================================ summary
@dataclass
class PrepareSummary:
    """What :func:`handcast.data.prepare.prepare` converted and skipped.

    Attributes:
        dataset: canonical dataset name (also the clips' ``domain``).
        root: the raw dataset folder read; out: the clip store written.
        clips: split -> clip ids written, in order.
        frames: split -> number of frames written.
        skipped: (item, reason) for every sequence / frame / clip left out.
        notes: dataset-wide remarks (e.g. MANO poses not converted because MANO is not installed).
    """

    dataset: str
    root: str
    out: str
    clips: dict[str, list[str]] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def num_clips(self) -> int:
        return sum(len(v) for v in self.clips.values())

    def add_clip(self, split: str, clip: Clip) -> None:
        self.clips.setdefault(split, []).append(clip.clip_id)
        self.frames[split] = self.frames.get(split, 0) + clip.num_frames

    def skip(self, item: str, reason: str) -> None:
        reason = " ".join(str(reason).split())
        if self.root:  # paths inside the dataset are shown relative to it
            reason = reason.replace(self.root.rstrip("/") + "/", "")
        self.skipped.append((str(item), reason))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def format(self, max_skipped: int = 10) -> str:
        """A short human summary (a few lines) for the CLI."""
        parts = [f"{s} {len(ids)} clips / {self.frames.get(s, 0)} frames" for s, ids in self.clips.items()]
        lines = [f"prepared {self.dataset} from {self.root} -> {self.out}: "
                 + ("; ".join(parts) if parts else "nothing converted")]
        lines += [f"note: {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} item(s):")
            lines += [f"  {item}: {reason}" for item, reason in self.skipped[:max_skipped]]
            if len(self.skipped) > max_skipped:
                lines.append(f"  ... and {len(self.skipped) - max_skipped} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class SkipItem(HandcastError):
    """Raised by a converter for an item (sequence, frame) it leaves out, with the reason."""


@dataclass
class Item:
    """One unit of work: a sequence (or a still image) of one split."""

    split: str
    name: str
    payload: Any = None


# ============================================================================ safe readers
def rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def read_json(path: Path) -> Any:
    """Parse a JSON file; HandcastError (one line) if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"missing file {path}")
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HandcastError(f"malformed JSON in {path} ({' '.join(str(e).split())})") from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the safe loader; HandcastError if missing or malformed."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"missing file {path}")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise HandcastError(f"malformed YAML in {path} ({' '.join(str(e).split())[:200]})") from None


def read_floats(path: Path, count: int | None = None, sep: str | None = None) -> np.ndarray:
    """All numbers of a whitespace- (or ``sep``-) separated text file as float64 (n,)."""
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"missing file {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        vals = np.array([float(x) for x in (text.split(sep) if sep else text.split()) if x.strip()], dtype=np.float64)
    except ValueError as e:
        raise HandcastError(f"malformed numbers in {path} ({e})") from None
    if count is not None and vals.size != count:
        raise HandcastError(f"{path}: expected {count} numbers, found {vals.size}")
    return vals


def as_array(x: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``x`` as float64 of exactly ``shape`` (after a reshape of the same size); HandcastError otherwise."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise HandcastError(f"{what}: not a numeric array") from None
    if arr.size != int(np.prod(shape)):
        raise HandcastError(f"{what}: expected shape {shape}, got {arr.shape}")
    return arr.reshape(shape)


# ---------------------------------------------------------------------------- restricted unpickling
def _numpy_module(sub: str):
    import importlib

    for prefix in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{prefix}.{sub}")
        except ImportError:  # pragma: no cover - depends on the numpy version
            continue
    raise ImportError(sub)  # pragma: no cover


def _safe_encode(obj, encoding="utf-8"):
    """_codecs.encode as emitted by pickles of bytes: str -> latin-1 bytes, nothing else."""
    if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode with unexpected arguments")
    return obj.encode("latin1")


def _data_allow_list() -> dict[tuple[str, str], Any]:
    ma = _numpy_module("multiarray")
    num = _numpy_module("numeric")
    allowed: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = num._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = _safe_encode
    for mod in ("__builtin__", "builtins"):
        allowed[(mod, "set")] = set
        allowed[(mod, "frozenset")] = frozenset
    return allowed


class DataUnpickler(pickle.Unpickler):
    """Unpickler for dataset annotation pickles (dicts/lists of numpy arrays, numbers, strings).

    Like the MANO importer's restricted unpickler (handcast.hand.mano_import), ``find_class`` admits
    only numpy array/scalar reconstruction and a few inert builtins; any other global (a function
    a malicious file could call) is refused before it is looked up, so nothing runs.
    """

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _data_allow_list()

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused to load '{module}.{name}' (only numpy arrays and plain data "
                                         "are allowed in dataset pickles)") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id")


def read_pickle(path: Path) -> Any:
    """Load a dataset pickle (Python 2 or 3) with :class:`DataUnpickler`; HandcastError on failure."""
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"missing file {path}")
    try:
        with open(path, "rb") as fh:
            return DataUnpickler(fh, encoding="latin1").load()
    except Exception as e:  # UnpicklingError, EOFError, ValueError ...
        raise HandcastError(f"unreadable pickle {path} ({type(e).__name__}: {' '.join(str(e).split())})") from None


def read_npy_object(path: Path) -> Any:
    """Read a ``.npy`` written by ``np.save`` of a Python object (e.g. a dict), without ``allow_pickle``:
    the header is parsed by numpy and the pickled payload goes through :class:`DataUnpickler`.
    Plain numeric ``.npy`` files are returned as arrays."""
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"missing file {path}")
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            if dtype != np.dtype(object):
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            obj = DataUnpickler(fh, encoding="latin1").load()
    except Exception as e:
        raise HandcastError(f"unreadable .npy file {path} ({type(e).__name__}: {' '.join(str(e).split())})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        return obj.item()
    return obj


def image_size_of(data: bytes) -> tuple[int, int] | None:
    """(width, height) of JPEG/PNG bytes, or None if unreadable or another format."""
    from PIL import Image

    try:
        with Image.open(_io.BytesIO(data)) as im:
            if im.format not in ("JPEG", "PNG"):
                return None
            return tuple(im.size)  # type: ignore[return-value]
    except Exception:
        return None


def decode_rgb(data: bytes) -> np.ndarray | None:
    """JPEG/PNG (any mode) bytes -> uint8 (H, W, 3) RGB, or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(_io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception:
        return None


# ============================================================================ hand models
class HandModels:
    """The hand model a converter uses for MANO parameters (lazy; float64).

    choice: None/"auto" (official MANO if installed; for datasets that need MANO, MANO or a clear
    error), "mano", "open" (the open hand model standing in for MANO: tests, no licensed files),
    "none" (do not convert poses; only for keypoint datasets).
    left_fixed: whether the dataset's left-hand fits used the MANO_LEFT shapedirs fix (HOT3D: yes;
    the others: no). With the official model, a copy whose left shapedirs match the dataset is used
    to compute joints and J0, whatever ``handcast mano import`` chose.
    """

    def __init__(self, choice: str | None, mano_dir, *, required: bool, left_fixed: bool, dataset: str):
        from handcast.hand import mano_installed, mano_model_dir

        if choice not in (None, "auto", "mano", "open", "none"):
            raise HandcastError(f"option hand_model must be auto, mano, open or none, got {choice!r}")
        self.mano_dir = mano_dir
        self.left_fixed = bool(left_fixed)
        installed = mano_installed(mano_dir)
        if choice in (None, "auto"):
            kind = "mano" if (required or installed) else None
        elif choice == "none":
            if required:
                raise HandcastError(f"{dataset} stores only MANO parameters, so it needs a hand model "
                                    "(hand_model must be auto or mano)")
            kind = None
        else:
            kind = choice
        if kind == "mano" and not installed:
            d = mano_model_dir(mano_dir)
            what = ("stores hands only as MANO parameters; computing its joints needs"
                    if required else "poses are MANO parameters; converting them was requested and needs")
            raise AssetMissingError(f"{dataset} {what} the official MANO model, which is not installed "
                                    f"(MANO_RIGHT.npz / MANO_LEFT.npz not found in {d}): {MANO_HELP}")
        self.kind: str | None = kind
        self._model = None
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def available(self) -> bool:
        return self.kind is not None

    def _load_arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            if self.kind == "open":
                from handcast.hand import open_model

                sides = [open_model.load_open_model(s) for s in ("right", "left")]
            else:
                from handcast.hand import mano_model_dir
                from handcast.io import load_npz

                d = mano_model_dir(self.mano_dir)
                sides = [load_npz(d / f"MANO_{s}.npz", required=("hands_mean", "hands_components"))
                         for s in ("RIGHT", "LEFT")]
                left_flag = bool(sides[1]["left_shapedirs_fixed"]) if "left_shapedirs_fixed" in sides[1] else False
                self._installed_left_fixed = left_flag
            self._arrays = {
                "hands_mean": np.stack([np.asarray(s["hands_mean"], np.float64).reshape(45) for s in sides]),
                "hands_components": np.stack([np.asarray(s["hands_components"], np.float64).reshape(-1, 45)
                                              for s in sides]),
            }
        return self._arrays

    @property
    def model(self):
        """The :class:`handcast.hand.HandModel` (float64), built on first use."""
        if self.kind is None:
            raise HandcastError("no hand model selected")
        if self._model is None:
            import torch

            from handcast.hand import HandModel

            hm = HandModel(self.kind, mano_dir=self.mano_dir, dtype=torch.float64)
            if self.kind == "mano":
                self._load_arrays()
                if self._installed_left_fixed != self.left_fixed:
                    # Match the dataset's MANO_LEFT: flip the x column of the left shapedirs back.
                    with torch.no_grad():
                        hm.layers[1].shapedirs[:, 0, :] *= -1.0
                    hm._register_keypoint_buffers(torch.float64)
            self._model = hm
        return self._model

    def hands_mean(self, hand: int) -> np.ndarray:
        """(45,) finger mean pose (axis-angle, rad) of hand 0 (right) / 1 (left)."""
        return self._load_arrays()["hands_mean"][hand]

    def components(self, hand: int) -> np.ndarray:
        """(n, 45) PCA basis (rows = components) of hand 0 (right) / 1 (left)."""
        return self._load_arrays()["hands_components"][hand]

    def mean_relative_to_flat(self, pose: np.ndarray, hand: int) -> np.ndarray:
        """(..., 16, 3) mean-relative axis-angle -> flat (adds hands_mean to the 15 finger joints)."""
        from handcast.hand import mean_relative_to_flat

        return mean_relative_to_flat(np.asarray(pose, np.float64), self.hands_mean(hand))

    def pca_to_flat(self, global_aa: np.ndarray, coeffs: np.ndarray, hand: int) -> np.ndarray:
        """Global axis-angle (..., 3) and PCA coefficients (..., n) of a mean-relative PCA pose
        (MANO ``use_pca``, ``flat_hand_mean=False``) -> flat pose (..., 16, 3)."""
        from handcast.hand import pca_to_pose

        coeffs = np.asarray(coeffs, np.float64)
        fingers = pca_to_pose(coeffs, self.components(hand), coeffs.shape[-1])
        pose = np.concatenate([np.asarray(global_aa, np.float64)[..., None, :],
                               fingers.reshape(fingers.shape[:-1] + (15, 3))], axis=-2)
        return self.mean_relative_to_flat(pose, hand)

    def rest_wrist(self, betas: np.ndarray) -> np.ndarray:
        """J0 per hand, (2, 3) metres, for betas (2, 10)."""
        import torch

        b = torch.as_tensor(np.asarray(betas, np.float64))
        with torch.no_grad():
            return self.model.rest_joints(b)[..., 0, :].numpy()

    def keypoints(self, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """(T, 2, 21, 3) metres, common order, frame of ``transl``, from a flat pose (T, 2, 16, 3),
        betas (2, 10) and transl (T, 2, 3)."""
        import torch

        pose = np.nan_to_num(np.asarray(pose, np.float64))
        transl = np.nan_to_num(np.asarray(transl, np.float64))
        with torch.no_grad():
            out = self.model.keypoints(torch.as_tensor(pose), torch.as_tensor(np.asarray(betas, np.float64)),
                                       torch.as_tensor(transl))
        return out.numpy()


# ============================================================================ geometry helpers
def rigid4(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(..., 3, 3), (..., 3) -> (..., 4, 4)."""
    R = np.asarray(R, np.float64)
    M = np.zeros(R.shape[:-2] + (4, 4))
    M[..., :3, :3] = R
    M[..., :3, 3] = np.asarray(t, np.float64)
    M[..., 3, 3] = 1.0
    return M


def orthonormalize(M: np.ndarray) -> np.ndarray:
    """Rigid (..., 4, 4) with its rotation projected to the nearest proper rotation (SVD)."""
    M = np.array(M, dtype=np.float64)
    U, _, Vt = np.linalg.svd(M[..., :3, :3])
    D = np.ones(M.shape[:-2] + (3,))
    D[..., 2] = np.sign(np.linalg.det(U @ Vt))
    M[..., :3, :3] = (U * D[..., None, :]) @ Vt
    M[..., 3, :] = (0.0, 0.0, 0.0, 1.0)
    return M


def invert_rigid(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, np.float64)
    R, t = M[..., :3, :3], M[..., :3, 3]
    Rt = np.swapaxes(R, -1, -2)
    return rigid4(Rt, -(Rt @ t[..., None])[..., 0])


def check_rigid(M: np.ndarray, what: str, tol: float = 2e-2) -> np.ndarray:
    """``M`` (..., 4, 4) as a clean rigid transform; HandcastError if it is far from one."""
    M = np.asarray(M, np.float64)
    if not np.isfinite(M).all():
        raise HandcastError(f"{what}: non-finite camera transform")
    R = M[..., :3, :3]
    err = np.abs(R @ np.swapaxes(R, -1, -2) - np.eye(3)).max() if R.size else 0.0
    if err > tol or (R.size and (np.linalg.det(R) <= 0).any()):
        raise HandcastError(f"{what}: camera transform is not a rotation + translation (|R R^T - I| = {err:.2g})")
    return orthonormalize(M)


def quat_wxyz_to_rotmat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion(s) (..., 4) in (w, x, y, z) order -> rotation matrices (..., 3, 3)."""
    q = np.asarray(q, np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    if not np.all(n > 1e-8):
        raise HandcastError("zero quaternion")
    w, x, y, z = np.moveaxis(q / n, -1, 0)
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def aa_to_rotmat(aa: np.ndarray) -> np.ndarray:
    from handcast.geometry import aa_to_rotmat as f

    return np.asarray(f(np.asarray(aa, np.float64)), np.float64)


def rotmat_to_aa(R: np.ndarray) -> np.ndarray:
    from handcast.geometry import rotmat_to_aa as f

    return np.asarray(f(np.asarray(R, np.float64)), np.float64)


def project_points(K: np.ndarray, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points (..., 3) m -> (uv (..., 2) px, in_front (...) bool)."""
    P = np.asarray(points_cam, np.float64)
    z = P[..., 2]
    front = np.isfinite(P).all(-1) & (z > 1e-6)
    zs = np.where(front, z, 1.0)
    uv = np.stack([K[0, 0] * P[..., 0] / zs + K[0, 1] * P[..., 1] / zs + K[0, 2],
                   K[1, 1] * P[..., 1] / zs + K[1, 2]], -1)
    uv[~front] = np.nan
    return uv, front


def transform_points(M: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Apply rigid (T, 4, 4) to points (T, ..., 3)."""
    M = np.asarray(M, np.float64)
    X = np.asarray(X, np.float64)
    T = X.shape[0]
    flat = X.reshape(T, -1, 3)
    out = flat @ np.swapaxes(M[:, :3, :3], -1, -2) + M[:, None, :3, 3]
    return out.reshape(X.shape)


def rotation_cw(k: int) -> np.ndarray:
    """Camera rotation (3, 3) for an image turned ``k`` quarter turns clockwise: x_new = R x_old."""
    R1 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return np.linalg.matrix_power(R1, int(k) % 4)


def rotate_intrinsics_cw(K: np.ndarray, size: tuple[int, int], k: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Intrinsics and (width, height) of an image turned ``k`` quarter turns clockwise (zero skew).

    One clockwise turn maps pixel (u, v) of a W x H image to (H - 1 - v, u) (pixel centres at integer
    coordinates, conventions.md): fx' = fy, fy' = fx, cx' = H - 1 - cy, cy' = cx.
    """
    K = np.array(K, dtype=np.float64)
    w, h = int(size[0]), int(size[1])
    for _ in range(int(k) % 4):
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        K = np.array([[fy, 0.0, h - 1 - cy], [0.0, fx, cx], [0.0, 0.0, 1.0]])
        w, h = h, w
    return K, (w, h)


def rotate_uv_cw(uv: np.ndarray, size: tuple[int, int], k: int) -> np.ndarray:
    """Pixels (..., 2) of a W x H image -> pixels of the image turned ``k`` quarter turns clockwise."""
    uv = np.array(uv, dtype=np.float64)
    w, h = int(size[0]), int(size[1])
    for _ in range(int(k) % 4):
        uv = np.stack([h - 1 - uv[..., 1], uv[..., 0]], -1)
        w, h = h, w
    return uv


# ============================================================================ sequences -> clips
@dataclass
class Sequence:
    """One source sequence (or still image) in handcast conventions, before cutting into clips.

    T frames; hand axis (right, left); metres; OpenCV cameras; "world" = the dataset's world frame
    (or a static camera's frame, then ``cam_from_world`` is the identity).

    Attributes:
        base_id: clip id stem (unique within the split).
        frame_ids: int (T,) dataset frame numbers (for ids, runs and meta).
        cam_from_world: float (T, 4, 4) world -> camera t (rigid).
        K: float (3, 3) pinhole intrinsics in pixels of images of ``image_size`` (width, height).
        fps: frame rate of consecutive dataset frames (step 1).
        joints: float (T, 2, 21, 3) world, common order; None if the dataset has no 3D keypoints.
        valid: bool (T, 2) hand labelled in 3D (for 2D-only sequences: hand labelled in 2D).
        kp2d / kp2d_conf: float (T, 2, 21, 2) pixels / (T, 2, 21) in [0, 1] if the dataset stores 2D;
            None -> projected from ``joints`` (conf 1 inside the image, 0 outside or behind).
        pose / transl / betas: FLAT MANO pose (T, 2, 16, 3) (joint 0 = global orientation in world),
            transl (T, 2, 3) m in world, betas (2, 10); None when the dataset has no MANO parameters
            or they are not converted. ``pose_valid`` (T, 2) where they exist.
        meta: JSON-serialisable extras copied into every clip.
        image: callable frame index -> (bytes or None, uint8 RGB array or None), for frame 0 of a clip.
        step: frame-number step between consecutive frames of a run (None: the most common difference).
        joints_source / kp2d_source: recorded in the clip meta.
    """

    base_id: str
    frame_ids: np.ndarray
    cam_from_world: np.ndarray
    K: np.ndarray
    image_size: tuple[int, int]
    fps: float
    valid: np.ndarray
    joints: np.ndarray | None = None
    kp2d: np.ndarray | None = None
    kp2d_conf: np.ndarray | None = None
    pose: np.ndarray | None = None
    transl: np.ndarray | None = None
    betas: np.ndarray | None = None
    pose_valid: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    image: Callable[[int], tuple[bytes | None, np.ndarray | None]] | None = None
    step: int | None = None
    joints_source: str = "dataset"
    kp2d_source: str = "dataset"
    group_id: str | None = None

    def rotate_cw(self, k: int) -> None:
        """Turn the camera (and its image) ``k`` quarter turns clockwise about its optical axis."""
        k = int(k) % 4
        if k == 0:
            return
        R4 = np.eye(4)
        R4[:3, :3] = rotation_cw(k)
        old_size = self.image_size
        self.cam_from_world = R4 @ self.cam_from_world
        self.K, self.image_size = rotate_intrinsics_cw(self.K, old_size, k)
        if self.kp2d is not None:
            self.kp2d = rotate_uv_cw(self.kp2d, old_size, k)
        if self.image is not None:
            inner = self.image

            def rotated(i: int, inner=inner, k=k):
                data, arr = inner(i)
                if arr is None and data is not None:
                    arr = decode_rgb(data)
                return None, (None if arr is None else np.ascontiguousarray(np.rot90(arr, k=-k)))

            self.image = rotated
        self.meta = {**self.meta, "rotated_cw_quarter_turns": k}


def frame_runs(frame_ids: np.ndarray, step: int | None = None) -> tuple[list[tuple[int, int]], int]:
    """Split sorted frame numbers into runs of constant ``step`` (default: the most common difference).

    Returns ([(start index, stop index), ...], step).
    """
    ids = np.asarray(frame_ids, dtype=np.int64)
    if ids.size == 0:
        return [], 1
    d = np.diff(ids)
    if step is None:  # the most common positive difference (ties: the smallest)
        pos = d[d > 0]
        if pos.size:
            vals, counts = np.unique(pos, return_counts=True)
            step = int(vals[np.argmax(counts)])
        else:
            step = 1
    breaks = np.nonzero(d != step)[0]
    starts = [0] + [int(b) + 1 for b in breaks]
    stops = [int(b) + 1 for b in breaks] + [int(ids.size)]
    return list(zip(starts, stops)), int(step)


def _chunks(start: int, stop: int, clip_len: int | None) -> Iterable[tuple[int, int]]:
    if not clip_len:
        yield start, stop
        return
    for s in range(start, stop, int(clip_len)):
        yield s, min(s + int(clip_len), stop)


def emit_sequence(seq: Sequence, *, dataset: str, options: dict, hands: HandModels | None,
                  skip: Callable[[str, str], None]) -> list[tuple[Clip, bytes | None]]:
    """Cut ``seq`` into clips in handcast conventions (see module doc). Clips that are too short or
    have no labelled hand are reported through ``skip(name, reason)`` and left out."""
    T = int(len(seq.frame_ids))
    if T == 0:
        raise SkipItem("no annotated frames")
    order = np.argsort(seq.frame_ids, kind="stable")
    if not np.array_equal(order, np.arange(T)):
        raise HandcastError("frames must be sorted")  # converters sort; a bug otherwise
    runs, step = frame_runs(seq.frame_ids, seq.step)
    fps = float(options.get("fps") or seq.fps) / step
    if not (math.isfinite(fps) and fps > 0):
        raise SkipItem(f"invalid frame rate {fps}")
    have_pose = seq.pose is not None and hands is not None and hands.available
    W_all = check_rigid(seq.cam_from_world, f"{seq.base_id}")
    K = np.asarray(seq.K, np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise SkipItem(f"invalid intrinsics {np.asarray(seq.K).tolist()}")
    w, h = seq.image_size
    chunks = [c for a, b in runs for c in _chunks(a, b, options.get("clip_len"))]
    multi = len(chunks) > 1
    out: list[tuple[Clip, bytes | None]] = []
    rest_wrist = hands.rest_wrist(seq.betas) if have_pose else None
    for a, b in chunks:
        cid = f"{seq.base_id}@{int(seq.frame_ids[a])}" if multi else seq.base_id
        n = b - a
        if n < int(options.get("min_frames") or 1):
            skip(cid, f"only {n} frame(s), fewer than min_frames={options.get('min_frames')}")
            continue
        Wc = W_all[a:b]
        M0 = Wc[0]
        R0, t0 = M0[:3, :3], M0[:3, 3]
        world_to_cam = Wc @ invert_rigid(M0)
        world_to_cam[0] = np.eye(4)
        valid = np.asarray(seq.valid[a:b], bool).copy()
        if seq.joints is not None:
            J = np.asarray(seq.joints[a:b], np.float64)
            valid &= np.isfinite(J).all(axis=(-1, -2))
            joints3d = (J.reshape(n, -1, 3) @ R0.T + t0).reshape(J.shape)
        else:
            joints3d = np.zeros((n, 2, NUM_KEYPOINTS, 3))
            valid[:] = False
        pose = np.zeros((n, 2, NUM_MANO_JOINTS, 3))
        transl = np.zeros((n, 2, 3))
        betas = np.zeros((2, 10))
        if have_pose:
            pv = (np.array(seq.pose_valid[a:b], dtype=bool) if seq.pose_valid is not None
                  else np.ones((n, 2), bool))
            P = np.asarray(seq.pose[a:b], np.float64)
            Tr = np.asarray(seq.transl[a:b], np.float64)
            pv &= np.isfinite(P).all(axis=(-1, -2)) & np.isfinite(Tr).all(axis=-1)
            valid &= pv
            Rg = aa_to_rotmat(np.where(pv[..., None], P[:, :, 0], 0.0))
            pose = np.where(pv[..., None, None], P, 0.0)
            pose[:, :, 0] = rotmat_to_aa(R0 @ Rg)
            transl = (np.where(pv[..., None], Tr, 0.0) + rest_wrist) @ R0.T + t0 - rest_wrist
            betas = np.asarray(seq.betas, np.float64)
        pose[~valid] = 0.0
        transl[~valid] = 0.0
        joints3d[~valid] = 0.0
        # 2D
        if seq.kp2d is not None:
            kp2d = np.array(seq.kp2d[a:b], dtype=np.float64)
            conf = np.clip(np.nan_to_num(np.array(seq.kp2d_conf[a:b], dtype=np.float64)), 0.0, 1.0)
            conf[~np.isfinite(kp2d).all(-1)] = 0.0
            kp_src = seq.kp2d_source
        else:
            cam = transform_points(world_to_cam, joints3d)
            kp2d, front = project_points(K, cam)
            inside = front & (kp2d[..., 0] >= -0.5) & (kp2d[..., 0] <= w - 0.5) \
                & (kp2d[..., 1] >= -0.5) & (kp2d[..., 1] <= h - 0.5)
            conf = (inside & valid[..., None]).astype(np.float64)
            kp_src = "projected"
        kp2d = np.where(conf[..., None] > 0, kp2d, 0.0)
        provenance = "gt" if valid.any() else "2d-only"
        if provenance == "2d-only":
            if not (conf > 0).any():
                skip(cid, "no labelled hand in any frame")
                continue
            valid = (conf > 0).any(-1)
        meta = {
            **seq.meta,
            "source_frames": [int(seq.frame_ids[a]), int(seq.frame_ids[b - 1]), int(step)],
            "joints_source": seq.joints_source if seq.joints is not None else "none",
            "kp2d_source": kp_src,
            "pose_params": "gt" if have_pose else "none",
        }
        image_bytes = None
        image = None
        if options.get("images") and seq.image is not None:
            data, arr = seq.image(a)
            if data is not None and image_size_of(data) == (w, h):
                image_bytes = data
            elif arr is not None and arr.shape == (h, w, 3):
                image = arr
            elif data is not None or arr is not None:
                skip(f"{cid} (image)",
                     "first-frame image missing, unreadable or of the wrong size; clip kept without it")
        clip = Clip(
            clip_id=cid, pose=pose, transl=transl, betas=betas, valid=valid, joints3d=joints3d, kp2d=kp2d,
            kp2d_conf=conf, K=K, world_to_cam=world_to_cam, image_size=(w, h), image=image,
            provenance=provenance, domain=dataset, fps=fps,
            hand_model=(hands.kind if have_pose else "mano"), group_id=seq.group_id, meta=meta,
        )
        out.append((clip, image_bytes))
    return out


def read_image_file(path: Path) -> Callable[[int], tuple[bytes | None, np.ndarray | None]]:
    """An image callback for one file (ignores the frame index)."""
    def load(_i: int) -> tuple[bytes | None, np.ndarray | None]:
        p = Path(path)
        return (p.read_bytes(), None) if p.is_file() else (None, None)

    return load


def first_existing(paths: _Seq[Path]) -> Path | None:
    for p in paths:
        if Path(p).is_file():
            return Path(p)
    return None


# ============================================================================ converter base class
class Preparer:
    """Base class of a dataset converter. Subclasses set the class attributes and implement
    :meth:`check_root`, :meth:`items` and :meth:`convert`.

    Attributes:
        name: canonical lower-case name (the clips' ``domain``); title: human name.
        splits: store splits the converter can write.
        requires_mano: the dataset stores hands only as MANO parameters (joints need the model).
        uses_mano: the dataset has MANO parameters at all (converted when a model is available).
        left_shapedirs_fixed: the dataset's left-hand fits used the MANO_LEFT shapedirs fix.
        options: dataset-specific options and their defaults (on top of COMMON_OPTIONS).
        single_image: items are still images stored as 1-frame clips.
    """

    name: str = ""
    title: str = ""
    splits: tuple[str, ...] = STORE_SPLITS
    requires_mano: bool = False
    uses_mano: bool = False
    left_shapedirs_fixed: bool = False
    options: dict[str, Any] = {}
    single_image: bool = False

    def __init__(self, root: Path, options: dict, summary: PrepareSummary):
        self.root = Path(root)
        self.opts = options
        self.summary = summary
        self.hands: HandModels | None = None
        self._cache: dict[str, Any] = {}

    # -- to implement ---------------------------------------------------------------------------
    def check_root(self) -> None:
        """Raise HandcastError (one line) if ``root`` does not look like this dataset."""

    def items(self, split: str) -> list[Item]:
        """Units of work of ``split`` (possibly empty)."""
        raise NotImplementedError

    def convert(self, item: Item) -> list[tuple[Clip, bytes | None]]:
        """Clips of one item; raise SkipItem / HandcastError to skip it with a reason."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------------
    def setup_hands(self) -> None:
        if self.uses_mano or self.requires_mano:
            self.hands = HandModels(self.opts.get("hand_model"), self.opts.get("mano_dir"),
                                    required=self.requires_mano, left_fixed=self.left_shapedirs_fixed,
                                    dataset=self.title or self.name)
            if not self.hands.available:
                self.summary.note("MANO poses not converted (official MANO not installed or hand_model=none); "
                                  "joints and 2D keypoints are the dataset's, pose/transl/betas are zeros "
                                  "(meta pose_params = 'none')")

    @property
    def poses_on(self) -> bool:
        return self.hands is not None and self.hands.available

    def emit(self, seq: Sequence) -> list[tuple[Clip, bytes | None]]:
        return emit_sequence(seq, dataset=self.name, options=self.opts, hands=self.hands, skip=self.summary.skip)

    def fps(self, default: float) -> float:
        return float(self.opts.get("fps") or default)

    def require(self, rel_path: str, what: str | None = None) -> Path:
        p = self.root / rel_path
        if not p.exists():
            raise HandcastError(f"{self.root} does not look like {self.title or self.name}: missing {rel_path}"
                                + (f" ({what})" if what else ""))
        return p
