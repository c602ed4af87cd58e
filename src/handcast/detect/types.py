"""Result types of :mod:`handcast.detect` (plain numpy, no mediapipe)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from handcast.conventions import NUM_KEYPOINTS
from handcast.errors import HandcastError

__all__ = ["HandDetections", "Tracks", "mirror_fields", "old_mirrored_tracks"]


def mirror_fields(mirrored: bool) -> dict:
    """The tracks-file keys that say how a video was read: ``mirrored`` (bool scalar) and, for a selfie view,
    ``unmirrored`` (True: the keypoints are of the un-mirrored frames, as since 2026-12-08)."""
    return {"mirrored": np.bool_(mirrored), **({"unmirrored": np.bool_(True)} if mirrored else {})}


def old_mirrored_tracks(data) -> bool:
    """A tracks file (a mapping of its arrays) of a selfie video written before 2026-12-08: ``mirrored`` without
    ``unmirrored``, its keypoints in the mirrored frames under their owners' labels."""
    m = np.asarray(data["mirrored"]) if "mirrored" in data else None
    return m is not None and m.size == 1 and bool(m.item()) and "unmirrored" not in data


@dataclass
class HandDetections:
    """Hands detected in one image. Hand axis (right, left); pixels as in ``handcast.detect``.

    uv: float32 (2, 21, 2) pixels (u, v), common keypoint order, NaN where the hand is absent.
    present: bool (2,). score: float32 (2,) probability that the detection is that hand (the
    handedness classifier's probability, after correcting for mirroring), 0 where absent.
    confidence: float32 (2, 21) per-keypoint confidence in [0, 1]: mediapipe gives none per
    keypoint, so every keypoint of a hand carries the hand's ``score``; 0 where absent.
    image_size: (W, H) of the image in pixels.
    """

    uv: np.ndarray
    present: np.ndarray
    score: np.ndarray
    confidence: np.ndarray
    image_size: tuple[int, int]

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> "HandDetections":
        return cls(uv=np.full((2, NUM_KEYPOINTS, 2), np.nan, np.float32), present=np.zeros(2, bool),
                   score=np.zeros(2, np.float32), confidence=np.zeros((2, NUM_KEYPOINTS), np.float32),
                   image_size=(int(image_size[0]), int(image_size[1])))

    @property
    def num_hands(self) -> int:
        return int(self.present.sum())


@dataclass
class Tracks:
    """2D hand tracks of a video, the ``handcast lift`` tracks-file layout.

    uv: float32 (T, 2, 21, 2) pixels (u, v) in the common keypoint order, hands (right, left),
    NaN where a hand is absent. hand_valid: bool (T, 2). confidence: float32 (T, 2, 21) in
    [0, 1], 0 where absent. score: float32 (T, 2) per-frame handedness probability, 0 where
    absent. fps: frames per second. image_size: (W, H) pixels. mirrored: whether the frames were
    treated as mirrored (selfie) images.
    """

    uv: np.ndarray
    hand_valid: np.ndarray
    confidence: np.ndarray
    score: np.ndarray
    fps: float
    image_size: tuple[int, int]
    mirrored: bool = False

    @property
    def num_frames(self) -> int:
        return int(self.uv.shape[0])

    def save(self, path: str | os.PathLike) -> None:
        """Write the tracks file (``.npz``, atomically): ``uv``, ``hand_valid``, ``confidence``,
        ``score``, ``fps`` (float64 scalar), ``image_size`` (int64 (2,) = (W, H)) and :func:`mirror_fields`
        (``handcast lift`` refuses :func:`old_mirrored_tracks`). Absent hands keep NaN in ``uv``."""
        from handcast.io import save_npz

        if self.uv.ndim != 4 or self.uv.shape[1:] != (2, NUM_KEYPOINTS, 2):
            raise HandcastError(f"tracks uv must be (T, 2, 21, 2), got {self.uv.shape}")
        save_npz(path, uv=self.uv.astype(np.float32), hand_valid=self.hand_valid.astype(bool),
                 confidence=self.confidence.astype(np.float32), score=self.score.astype(np.float32),
                 fps=np.float64(self.fps), image_size=np.asarray(self.image_size, np.int64),
                 **mirror_fields(self.mirrored))
