"""The in-memory clip: T frames of both hands with their 2D track, camera and first image.

Every array follows ``handcast.conventions``: metres, OpenCV cameras, hand axis (right, left),
21 keypoints in the common order, MANO poses in the flat convention. 3D quantities are in the
camera frame of the clip's frame 0 ("frame-0 camera"); ``world_to_cam[t]`` maps frame-0-camera
coordinates to camera-t coordinates (identity at t = 0) and 2D keypoints of frame t are
``project(K, world_to_cam[t] @ X)``. The store format is described in docs/formats.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from handcast.conventions import NUM_KEYPOINTS, NUM_MANO_JOINTS, PROVENANCES
from handcast.errors import HandcastError

# Which hand model a clip's pose/betas are parameters of. (Candidate for handcast.conventions.)
HAND_MODELS: tuple[str, ...] = ("open", "mano")
NUM_BETAS = 10

# Per-frame fields: name -> (dtype, shape of one frame). Leading axis is time (T).
FRAME_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "pose": (np.dtype(np.float32), (2, NUM_MANO_JOINTS, 3)),
    "transl": (np.dtype(np.float32), (2, 3)),
    "valid": (np.dtype(np.bool_), (2,)),
    "joints3d": (np.dtype(np.float32), (2, NUM_KEYPOINTS, 3)),
    "kp2d": (np.dtype(np.float32), (2, NUM_KEYPOINTS, 2)),
    "kp2d_conf": (np.dtype(np.float32), (2, NUM_KEYPOINTS)),
    "world_to_cam": (np.dtype(np.float32), (4, 4)),
}
# Per-clip numeric arrays: name -> (dtype, shape).
CLIP_ARRAY_FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "betas": (np.dtype(np.float32), (2, NUM_BETAS)),
    "K": (np.dtype(np.float32), (3, 3)),
}
# 3D per-frame fields whose entries only mean something where ``valid`` is true.
FIELDS_3D: tuple[str, ...] = ("pose", "transl", "joints3d")


def _as_float32(name: str, x: Any) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise HandcastError(f"clip field '{name}' is not a float array ({e})") from None
    return arr


def _shape_str(shape: tuple) -> str:
    return "(" + ", ".join(str(s) for s in shape) + ")"


@dataclass(eq=False, kw_only=True)
class Clip:
    """T frames of both hands. All arrays are numpy; construct with keywords.

    Attributes (T frames, hand axis (right, left), metres, frame-0 camera unless stated):
        clip_id: unique id within a store split.
        pose: float32 (T, 2, 16, 3) MANO axis-angle (radians), FLAT convention, MANO joint order;
            joint 0 = global orientation in the frame-0 camera.
        transl: float32 (T, 2, 3) MANO translation, metres, frame-0 camera
            (vertices = R_global (v - J0) + J0 + transl).
        betas: float32 (2, 10) shape coefficients per hand (constant over the clip).
        valid: bool (T, 2) hand present and labelled in that frame.
        joints3d: float32 (T, 2, 21, 3) keypoints, common 21 order, metres, frame-0 camera.
        kp2d: float32 (T, 2, 21, 2) pixels (u, v) in the image of camera t (possibly detected/noisy).
        kp2d_conf: float32 (T, 2, 21) confidence in [0, 1]; 0 = keypoint missing.
        K: float32 (3, 3) pinhole intrinsics in pixels for images of size ``image_size``.
        world_to_cam: float32 (T, 4, 4) rigid map frame-0 camera -> camera t (identity at t = 0).
        image_size: (width, height) in pixels.
        image: uint8 (height, width, 3) RGB of frame 0, or None.
        provenance: one of ``conventions.PROVENANCES``: "gt" (measured 3D), "imputed" (3D from the
            lifting model + refinement), "2d-only" (3D fields carry no information).
        domain: free text ("lab", "diverse", "wild", a dataset name ...).
        fps: frames per second.
        hand_model: "open" or "mano": which hand model ``pose``/``betas`` parameterise.
        group_id: clips sharing a first frame (several futures of one image) share it; default clip_id.
        meta: JSON-serialisable extras (action labels, source paths ...).

    Float fields are converted to float32 on construction; nothing else is checked until
    :meth:`validate`. NaN is allowed only where the entry is not labelled (3D fields where
    ``valid`` is false or in "2d-only" clips; ``kp2d`` where ``kp2d_conf`` is 0).
    """

    clip_id: str
    pose: np.ndarray
    transl: np.ndarray
    betas: np.ndarray
    valid: np.ndarray
    joints3d: np.ndarray
    kp2d: np.ndarray
    kp2d_conf: np.ndarray
    K: np.ndarray
    world_to_cam: np.ndarray
    image_size: tuple[int, int]
    provenance: str
    domain: str
    fps: float
    hand_model: str
    image: np.ndarray | None = None
    group_id: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("pose", "transl", "betas", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam"):
            setattr(self, name, _as_float32(name, getattr(self, name)))
        valid = np.asarray(self.valid)
        if valid.dtype != np.bool_:
            if valid.dtype.kind in "iuf" and np.isin(valid, (0, 1)).all():
                valid = valid.astype(np.bool_)
            else:
                raise HandcastError(f"clip field 'valid' must be boolean (got dtype {valid.dtype})")
        self.valid = valid
        if self.image is not None:
            image = np.asarray(self.image)
            if image.dtype != np.uint8:
                raise HandcastError(f"clip field 'image' must be uint8 RGB (got dtype {image.dtype})")
            self.image = image
        try:
            w, h = self.image_size
            self.image_size = (int(w), int(h))
        except (TypeError, ValueError):
            raise HandcastError(f"clip field 'image_size' must be (width, height), got {self.image_size!r}") from None
        try:
            self.fps = float(self.fps)
        except (TypeError, ValueError):
            raise HandcastError(f"clip field 'fps' must be a number, got {self.fps!r}") from None
        if self.group_id is None or self.group_id == "":
            self.group_id = self.clip_id
        if self.meta is None:
            self.meta = {}

    # ------------------------------------------------------------------ basic properties
    @property
    def num_frames(self) -> int:
        """T, the number of frames."""
        return int(self.pose.shape[0]) if self.pose.ndim else 0

    def _err(self, msg: str) -> HandcastError:
        return HandcastError(f"clip {self.clip_id!r}: {msg}")

    def validate(self) -> "Clip":
        """Check shapes, dtypes, finiteness and vocabularies; raise HandcastError naming the field.

        Returns self so it chains (``clip.validate().slice(...)``).
        """
        if not isinstance(self.clip_id, str) or not self.clip_id or "\n" in self.clip_id:
            raise HandcastError(f"clip field 'clip_id' must be a non-empty one-line string, got {self.clip_id!r}")
        # shapes and frame counts
        T = None
        for name, (dtype, fshape) in FRAME_FIELDS.items():
            arr = getattr(self, name)
            if arr.ndim != 1 + len(fshape) or tuple(arr.shape[1:]) != fshape:
                raise self._err(
                    f"'{name}' has shape {_shape_str(arr.shape)}, expected (T, {', '.join(map(str, fshape))})"
                )
            if T is None:
                T = arr.shape[0]
                if T == 0:
                    raise self._err("has 0 frames (T == 0)")
            elif arr.shape[0] != T:
                raise self._err(f"'{name}' has {arr.shape[0]} frames, expected T = {T} (from 'pose')")
        for name, (dtype, shape) in CLIP_ARRAY_FIELDS.items():
            arr = getattr(self, name)
            if tuple(arr.shape) != shape:
                raise self._err(f"'{name}' has shape {_shape_str(arr.shape)}, expected {_shape_str(shape)}")
            if not np.isfinite(arr).all():
                raise self._err(f"'{name}' contains NaN or inf")
        # intrinsics
        K = self.K
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise self._err(f"'K' has non-positive focal length (fx={K[0, 0]:g}, fy={K[1, 1]:g})")
        if not np.allclose(K[2], (0.0, 0.0, 1.0), atol=1e-6):
            raise self._err(f"'K' last row must be (0, 0, 1), got {K[2].tolist()}")
        # extrinsics
        W = self.world_to_cam
        if not np.isfinite(W).all():
            raise self._err("'world_to_cam' contains NaN or inf")
        if not np.allclose(W[:, 3], (0.0, 0.0, 0.0, 1.0), atol=1e-5):
            raise self._err("'world_to_cam' last row must be (0, 0, 0, 1)")
        R = W[:, :3, :3].astype(np.float64)
        ortho = np.abs(R @ np.swapaxes(R, -1, -2) - np.eye(3)).max()
        if ortho > 1e-3 or (np.linalg.det(R) <= 0).any():
            raise self._err(f"'world_to_cam' rotations are not proper rotations (max |R R^T - I| = {ortho:.2g})")
        # validity / finiteness
        if self.valid.dtype != np.bool_:
            raise self._err(f"'valid' must be boolean, got {self.valid.dtype}")
        if self.provenance != "2d-only":
            for name in FIELDS_3D:
                arr = getattr(self, name)
                finite = np.isfinite(arr.reshape(T, 2, -1)).all(axis=-1)
                bad = self.valid & ~finite
                if bad.any():
                    t, h = np.argwhere(bad)[0]
                    raise self._err(f"'{name}' has NaN/inf at frame {t}, hand {h} where valid is true")
        conf = self.kp2d_conf
        if not np.isfinite(conf).all() or conf.min() < 0 or conf.max() > 1:
            raise self._err("'kp2d_conf' must be finite and within [0, 1]")
        bad = (conf > 0) & ~np.isfinite(self.kp2d).all(axis=-1)
        if bad.any():
            t, h, k = np.argwhere(bad)[0]
            raise self._err(f"'kp2d' has NaN/inf at frame {t}, hand {h}, keypoint {k} where kp2d_conf > 0")
        # image
        w, h = self.image_size
        if w <= 0 or h <= 0:
            raise self._err(f"'image_size' must be positive (width, height), got {self.image_size}")
        if self.image is not None and self.image.shape != (h, w, 3):
            raise self._err(
                f"'image' has shape {_shape_str(self.image.shape)}, expected (height, width, 3) = ({h}, {w}, 3)"
            )
        # vocabularies and scalars
        if self.provenance not in PROVENANCES:
            raise self._err(f"unknown provenance {self.provenance!r} (expected one of {', '.join(PROVENANCES)})")
        if self.hand_model not in HAND_MODELS:
            raise self._err(f"unknown hand_model {self.hand_model!r} (expected one of {', '.join(HAND_MODELS)})")
        if not isinstance(self.domain, str) or "\n" in self.domain:
            raise self._err(f"'domain' must be a one-line string, got {self.domain!r}")
        if not isinstance(self.group_id, str) or "\n" in self.group_id:
            raise self._err(f"'group_id' must be a one-line string, got {self.group_id!r}")
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise self._err(f"'fps' must be a positive number, got {self.fps}")
        if not isinstance(self.meta, dict):
            raise self._err(f"'meta' must be a dict, got {type(self.meta).__name__}")
        try:
            json.dumps(self.meta, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise self._err(f"'meta' is not JSON-serialisable ({e})") from None
        return self

    # ------------------------------------------------------------------ time operations
    def slice(self, start: int | None = None, stop: int | None = None) -> "Clip":
        """Frames ``start:stop`` (Python slice semantics, step 1) as a new clip with copied arrays.

        Nothing is re-expressed: 3D quantities and ``world_to_cam`` stay relative to the ORIGINAL
        frame-0 camera, so for ``start > 0`` the result breaks the "3D in frame-0 camera" convention
        (``world_to_cam[0]`` is not the identity). Use :meth:`rebase` to make the first kept frame the
        new frame 0. ``image`` (the original frame 0) is kept only when ``start`` is 0.
        ``clip_id`` and ``group_id`` are unchanged.
        """
        T = self.num_frames
        s, e, _ = slice(start, stop).indices(T)
        if e <= s:
            raise self._err(f"slice({start}, {stop}) of a {T}-frame clip is empty")
        kw = {name: np.array(getattr(self, name)[s:e]) for name in FRAME_FIELDS}
        return dataclasses.replace(
            self,
            **kw,
            betas=self.betas.copy(),
            K=self.K.copy(),
            image=self.image if s == 0 else None,
            meta=json.loads(json.dumps(self.meta)),
        )

    def rebase(self, t0: int, rest_wrist: np.ndarray) -> "Clip":
        """Frames ``t0:`` re-expressed so that camera ``t0`` is the new frame-0 camera.

        Args:
            t0: index of the frame that becomes frame 0 (0 <= t0 < T).
            rest_wrist: float (2, 3) metres, J0 per hand (right, left): the rest-pose wrist joint of
                the hand model for this clip's ``betas``, in the model's canonical frame. Needed because
                MANO's global rotation acts about J0: with ``M = world_to_cam[t0] = [R | t]``,
                ``R_global' = R R_global`` and ``transl' = R (transl + J0) + t - J0``.

        ``joints3d`` becomes ``R x + t``; ``world_to_cam'[k] = world_to_cam[t0 + k] @ M^-1`` (exactly
        the identity at k = 0); ``kp2d``, ``K`` and finger rotations are unchanged. ``image`` is kept
        only for ``t0 == 0``. For "2d-only" clips the 3D fields are transformed but stay meaningless.
        """
        T = self.num_frames
        if not (0 <= int(t0) < T):
            raise self._err(f"rebase frame {t0} outside 0..{T - 1}")
        rest_wrist = np.asarray(rest_wrist, dtype=np.float64)
        if rest_wrist.shape != (2, 3):
            raise HandcastError(f"rest_wrist must have shape (2, 3), got {_shape_str(rest_wrist.shape)}")
        out = self.slice(int(t0), None)
        arrays = {name: getattr(out, name) for name in ("pose", "transl", "joints3d", "world_to_cam")}
        rebase_arrays(arrays, rest_wrist)
        for name, arr in arrays.items():
            setattr(out, name, arr)
        return out


def rebase_arrays(arrays: dict[str, np.ndarray], rest_wrist: np.ndarray | None) -> None:
    """Re-express per-frame arrays (in place, in the dict) in the camera of their first frame.

    ``arrays`` must hold ``world_to_cam`` (T, 4, 4) (frame-0 camera -> camera t); the optional
    ``joints3d`` (T, 2, 21, 3), ``pose`` (T, 2, 16, 3) and ``transl`` (T, 2, 3) are converted when
    present (``pose``/``transl`` need ``rest_wrist`` (2, 3) metres, J0 per hand). Results are float32;
    ``world_to_cam[0]`` becomes exactly the identity. Used by :meth:`Clip.rebase` and the dataset.
    """
    W = arrays["world_to_cam"].astype(np.float64)
    M = W[0]
    R, t = M[:3, :3], M[:3, 3]
    M_inv = np.eye(4)
    M_inv[:3, :3] = R.T
    M_inv[:3, 3] = -R.T @ t
    new_W = W @ M_inv
    new_W[0] = np.eye(4)
    arrays["world_to_cam"] = new_W.astype(np.float32)
    if "joints3d" in arrays:
        arrays["joints3d"] = (arrays["joints3d"].astype(np.float64) @ R.T + t).astype(np.float32)
    if "pose" in arrays or "transl" in arrays:
        if rest_wrist is None:
            raise HandcastError("re-expressing MANO pose/transl in another camera needs rest_wrist (J0 per hand)")
        J0 = np.asarray(rest_wrist, dtype=np.float64).reshape(2, 3)
        if "pose" in arrays:
            pose = arrays["pose"].astype(np.float64)
            from handcast.geometry import aa_to_rotmat, rotmat_to_aa

            Rg = aa_to_rotmat(pose[:, :, 0])  # (T,2,3,3)
            pose[:, :, 0] = rotmat_to_aa(R @ Rg)
            arrays["pose"] = pose.astype(np.float32)
        if "transl" in arrays:
            tr = arrays["transl"].astype(np.float64)
            arrays["transl"] = ((tr + J0) @ R.T + t - J0).astype(np.float32)

