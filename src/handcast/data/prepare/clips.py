"""One source sequence in handcast conventions (:class:`Sequence`) and :func:`emit_sequence`, which
cuts it into store clips.

A converter reads a dataset's raw files into a :class:`Sequence`: per-frame arrays in the dataset's
own world frame (or a static camera's frame), already in handcast's units, camera convention (OpenCV),
hand order (right, left), common 21-keypoint order and FLAT MANO pose convention. :func:`emit_sequence`
then cuts it into clips, re-expresses every 3D quantity in each clip's frame-0 camera (joints
``x' = R0 x + t0``; MANO ``R_g' = R0 R_g``, ``transl' = R0 (transl + J0) + t0 - J0``), derives
``world_to_cam`` and, where a dataset has no 2D labels, projects the 3D ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from handcast.conventions import NUM_KEYPOINTS, NUM_MANO_JOINTS
from handcast.data.clip import Clip
from handcast.data.prepare.cameras import check_rigid, rotate_intrinsics_cw, rotate_uv_cw, rotation_cw
from handcast.data.prepare.hands import HandModels
from handcast.data.prepare.readers import ImageCallback, decode_rgb, image_size_of
from handcast.errors import HandcastError


class SkipItem(HandcastError):
    """Raised by a converter for an item (sequence, frame) it leaves out, with the reason."""


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
    image: ImageCallback | None = None
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
    from handcast.geometry import aa_to_rotmat, in_image, invert_rigid, project_frames, rotmat_to_aa

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
            kp2d = project_frames(K, world_to_cam, joints3d)  # NaN behind the camera: not in the image
            conf = (in_image(kp2d, (w, h)) & valid[..., None]).astype(np.float64)
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
