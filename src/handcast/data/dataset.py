"""PyTorch view of a clip-store split: fixed-horizon items with frame and hand masks."""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np
import torch

from handcast.data.clip import FRAME_FIELDS, rebase_arrays
from handcast.data.store import ClipStore, SplitView
from handcast.errors import HandcastError

DEFAULT_FIELDS: tuple[str, ...] = ("pose", "transl", "betas", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam", "image_size")
ITEM_FIELDS: tuple[str, ...] = DEFAULT_FIELDS
PADS: tuple[str, ...] = ("repeat_last", "zero")


class ClipDataset(torch.utils.data.Dataset):
    """Items of ``horizon`` frames from one split of a clip store.

    Args:
        store_or_path: a :class:`ClipStore`, a :class:`SplitView` or a store folder.
        split: split name (ignored when a SplitView is given).
        horizon: H, frames per item.
        fields: which arrays to load, from ``DEFAULT_FIELDS`` (fewer = faster).
        pad: clips shorter than H are padded with their last frame ("repeat_last", as the reference
            code) or with zeros ("zero"; ``world_to_cam`` still repeats its last matrix).
        random_crop: clips longer than H give a random window (else the first H frames).
        seed: seed of the crop positions; the window of item ``k`` depends on (seed, epoch, k) only,
            so it is the same in any worker. Call :meth:`set_epoch` to draw new windows.
        load_image: add the stored first-frame image (a clip without one is an error).
        transform: callable applied to each item dict last.
        min_frames: skip clips with fewer frames.
        indices: restrict to these clip indices of the split (after which ``min_frames`` applies).
        rebase_crops: a window starting at frame s > 0 is re-expressed in camera s (the convention that
            3D lives in the first frame's camera); ``pose``/``transl`` then need ``rest_wrist``.
            With False the window keeps the original frame-0 camera (``world_to_cam[0]`` != I).
        rest_wrist: J0 per hand, float (2, 3) metres, or a callable ``betas (2, 10) -> (2, 3)``;
            see :meth:`Clip.rebase`.

    Item (a dict; H = horizon; hand axis (right, left); metres; 3D in the camera of the item's
    first frame):
        pose (H, 2, 16, 3), transl (H, 2, 3), betas (2, 10), joints3d (H, 2, 21, 3),
        kp2d (H, 2, 21, 2) pixels, kp2d_conf (H, 2, 21), K (3, 3), world_to_cam (H, 4, 4):
            float32 tensors, for the requested ``fields``;
        frame_mask: bool (H,) true on real frames, false on padding;
        hand_valid: bool (H, 2) = valid & frame_mask;
        image: float32 (3, height, width) RGB in [0, 1] (with ``load_image``);
        index: int, clip index in the split; num_frames: int, real frames in the item;
        crop_start: int, first clip frame of the item;
        clip_id, group_id, provenance, domain: str.
    """

    def __init__(
        self,
        store_or_path: ClipStore | SplitView | str | os.PathLike,
        split: str | None = None,
        horizon: int = 256,
        fields: Sequence[str] = DEFAULT_FIELDS,
        pad: str = "repeat_last",
        random_crop: bool = False,
        seed: int = 0,
        load_image: bool = False,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        min_frames: int = 1,
        indices: Sequence[int] | None = None,
        rebase_crops: bool = True,
        rest_wrist: np.ndarray | Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        if isinstance(store_or_path, SplitView):
            self.view = store_or_path
        else:
            store = store_or_path if isinstance(store_or_path, ClipStore) else ClipStore(store_or_path)
            if split is None:
                raise HandcastError(f"ClipDataset needs a split name (store has: {', '.join(store.splits)})")
            self.view = store.split(split)
        self.horizon = int(horizon)
        if self.horizon < 1:
            raise HandcastError(f"horizon must be >= 1, got {horizon}")
        unknown = [f for f in fields if f not in DEFAULT_FIELDS]
        if unknown:
            raise HandcastError(f"unknown dataset field(s) {', '.join(map(repr, unknown))} "
                                f"(expected some of {', '.join(DEFAULT_FIELDS)})")
        self.fields = tuple(fields)
        if pad not in PADS:
            raise HandcastError(f"unknown pad {pad!r} (expected one of {', '.join(PADS)})")
        self.pad, self.random_crop, self.seed = pad, bool(random_crop), int(seed)
        self.load_image, self.transform = bool(load_image), transform
        self.rebase_crops = bool(rebase_crops)
        self.rest_wrist = rest_wrist
        self.epoch = 0
        idx = np.arange(len(self.view)) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self.view)):
            raise HandcastError(f"indices out of range for split '{self.view.name}' with {len(self.view)} clips")
        lengths = self.view.lengths
        idx = idx[lengths[idx] >= int(min_frames)]
        self.indices = idx
        self._lengths = lengths
        if self.random_crop and self.rebase_crops and rest_wrist is None and {"pose", "transl"} & set(self.fields):
            if (lengths[idx] > self.horizon).any():
                raise HandcastError(
                    "random_crop re-expresses windows in their first camera, which for pose/transl needs "
                    "rest_wrist (J0 per hand); pass rest_wrist, rebase_crops=False, or drop pose/transl"
                )
        if self.load_image:
            if self.random_crop and (lengths[idx] > self.horizon).any():
                raise HandcastError("load_image with random_crop: the stored image is frame 0 of the clip, a window "
                                    "starting later would not match it")
            missing = int((~self.view.has_image()[idx]).sum())
            if missing:
                raise HandcastError(f"load_image=True but {missing} of {len(idx)} clips in split "
                                    f"'{self.view.name}' have no stored image")

    def set_epoch(self, epoch: int) -> None:
        """Change the random windows (random_crop) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, k: int) -> dict[str, Any]:
        if not 0 <= k < len(self):
            raise IndexError(f"item {k} out of range ({len(self)} items)")
        i = int(self.indices[k])
        T, H = int(self._lengths[i]), self.horizon
        start = 0
        if T > H and self.random_crop:
            start = int(np.random.default_rng([self.seed, self.epoch, k]).integers(0, T - H + 1))
        n = min(T, H)
        rebase = start > 0 and self.rebase_crops
        need = set(self.fields) | {"valid"}
        if rebase:
            need.add("world_to_cam")
            if callable(self.rest_wrist) and ({"pose", "transl"} & need):
                need.add("betas")
        arr = self.view.read(i, fields=sorted(need), start=start, stop=start + n)
        if rebase:
            J0 = self.rest_wrist(arr["betas"]) if callable(self.rest_wrist) else self.rest_wrist
            sub = {f: arr[f] for f in ("world_to_cam", "joints3d", "pose", "transl") if f in arr}
            rebase_arrays(sub, J0)
            arr.update(sub)
        out: dict[str, Any] = {}
        for name in self.fields:
            a = arr[name]
            if name in FRAME_FIELDS:
                a = self._pad(name, a, H)
            out[name] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        frame_mask = np.arange(H) < n
        valid = self._pad("valid", arr["valid"], H)
        out["frame_mask"] = torch.from_numpy(frame_mask)
        out["hand_valid"] = torch.from_numpy(valid & frame_mask[:, None])
        if self.load_image:
            img = self.view.image(i)
            out["image"] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)
        out["index"] = i
        out["num_frames"] = n
        out["crop_start"] = start
        strings = self.view.strings(i)
        for name in ("clip_id", "group_id", "provenance", "domain"):
            out[name] = strings[name]
        if self.transform is not None:
            out = self.transform(out)
        return out

    def _pad(self, name: str, a: np.ndarray, H: int) -> np.ndarray:
        n = a.shape[0]
        if n >= H:
            return a[:H]
        if self.pad == "zero" and name != "world_to_cam":
            fill = np.zeros((H - n, *a.shape[1:]), a.dtype)
        else:
            fill = np.repeat(a[-1:], H - n, axis=0)
        return np.concatenate([a, fill], axis=0)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch items: tensors of equal shape are stacked (new leading batch axis), ints/floats/bools
    become 1-D tensors, anything else (strings, tensors of different shapes such as images of
    different sizes) becomes a list."""
    if not items:
        return {}
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor) and all(v.shape == v0.shape for v in vals):
            out[key] = torch.stack(vals)
        elif isinstance(v0, (bool, int, float, np.integer, np.floating)) and not isinstance(v0, str):
            out[key] = torch.tensor(vals)
        else:
            out[key] = list(vals)
    return out


def wrist_statistics(view, max_frames: int = 200_000) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (3,) of valid wrist positions (metres, frame-0 camera) over a split."""
    joints = np.asarray(view.frames("joints3d")[:max_frames, :, 0])  # (F, 2, 3)
    valid = np.asarray(view.frames("valid")[:max_frames])
    w = joints[valid]
    if len(w) < 2:
        raise HandcastError(f"split '{view.name}' has too few valid hands to compute statistics")
    return w.mean(0), w.std(0)
