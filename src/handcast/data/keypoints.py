"""2D hand keypoints a user brings from any detector (the ``--keypoints KP.json`` file).

Format (JSON)::

    {"hands": [
        {"handedness": "right", "keypoints": [[u, v], ... 21 pairs], "confidence": [c, ... 21]},
        {"handedness": "left",  "keypoints": [[u, v], ...]}
    ]}

``keypoints`` are pixels of the image the file goes with (OpenCV convention: pixel centres at integers),
in the common 21-keypoint order (wrist, thumb, index, middle, ring, pinky; base to tip); ``null`` marks a
missing keypoint. ``confidence`` is optional (default 1 for present keypoints). At most one hand per
handedness. A bare list of hands is accepted too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from handcast.conventions import HANDS, NUM_KEYPOINTS
from handcast.errors import HandcastError


def parse_keypoints(data, source: str = "keypoints") -> tuple[np.ndarray, np.ndarray]:
    """Parsed keypoints -> (uv float32 (2, 21, 2) pixels, NaN where missing; conf float32 (2, 21), 0 where
    missing), hands (right, left)."""
    hands = data.get("hands") if isinstance(data, dict) else data
    if not isinstance(hands, list):
        raise HandcastError(f"{source}: expected {{\"hands\": [...]}} or a list of hands")
    uv = np.full((2, NUM_KEYPOINTS, 2), np.nan, np.float32)
    conf = np.zeros((2, NUM_KEYPOINTS), np.float32)
    seen = set()
    for i, h in enumerate(hands):
        if not isinstance(h, dict):
            raise HandcastError(f"{source}: hand {i} is not an object with 'handedness' and 'keypoints'")
        side = str(h.get("handedness", "")).lower()
        if side not in HANDS:
            raise HandcastError(f"{source}: hand {i} has handedness {h.get('handedness')!r}, expected 'right' or 'left'")
        if side in seen:
            raise HandcastError(f"{source}: two hands are labelled '{side}'")
        seen.add(side)
        kp = h.get("keypoints")
        if not isinstance(kp, list) or len(kp) != NUM_KEYPOINTS:
            raise HandcastError(f"{source}: hand {i} ({side}) needs 21 keypoints, got "
                                f"{len(kp) if isinstance(kp, list) else type(kp).__name__}")
        c = h.get("confidence", [1.0] * NUM_KEYPOINTS)
        if not isinstance(c, list) or len(c) != NUM_KEYPOINTS:
            raise HandcastError(f"{source}: hand {i} ({side}) confidence must be a list of 21 numbers")
        k = HANDS.index(side)
        for j, (p, cj) in enumerate(zip(kp, c)):
            if p is None:
                continue
            try:
                u, v = (float(x) for x in p)
                cj = float(cj if cj is not None else 0.0)
            except (TypeError, ValueError):
                raise HandcastError(f"{source}: hand {i} ({side}) keypoint {j} is not a pair of numbers") from None
            if not (np.isfinite(u) and np.isfinite(v) and np.isfinite(cj)):
                raise HandcastError(f"{source}: hand {i} ({side}) keypoint {j} is not finite")
            if max(abs(u), abs(v)) > 1e6:  # pixels: far outside any image
                raise HandcastError(f"{source}: hand {i} ({side}) keypoint {j} = ({u:g}, {v:g}) is beyond 1e6 pixels")
            if cj > 0:
                uv[k, j] = (u, v)
                conf[k, j] = min(max(cj, 0.0), 1.0)
    return uv, conf


def beyond_image(uv: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Pixels by which each keypoint uv (..., 2) lies outside the image (W, H): 0 inside (the OpenCV pixel
    convention: the image spans -0.5 .. W - 0.5), NaN for a missing keypoint. -> (...)"""
    uv = np.asarray(uv, np.float64)
    w, h = float(image_size[0]), float(image_size[1])
    du = np.maximum(np.maximum(-0.5 - uv[..., 0], uv[..., 0] - (w - 0.5)), 0.0)
    dv = np.maximum(np.maximum(-0.5 - uv[..., 1], uv[..., 1] - (h - 0.5)), 0.0)
    return np.hypot(du, dv)


def check_in_image(uv: np.ndarray, conf: np.ndarray, image_size: tuple[int, int],
                   source: str = "keypoints") -> list[str]:
    """Keypoints uv (2, 21, 2) px, conf (2, 21) (hands right, left) against the image (W, H) they are for.

    A hand may be cut by the image's border (a truncated hand: its keypoints outside are kept; the models
    are trained with them). One-line HandcastError for what cannot be a truncated hand: a hand with no
    keypoint inside the image (keypoints of another image, or of this one at another size), or a keypoint
    further outside the image than the image's longer side. Returns notes, a line per hand with keypoints
    outside the image."""
    notes = []
    w, h = int(image_size[0]), int(image_size[1])
    for k, side in enumerate(HANDS):
        given = (np.asarray(conf[k]) > 0) & np.isfinite(np.asarray(uv[k], np.float64)).all(-1)
        if not given.any():
            continue
        d = beyond_image(uv[k], (w, h))
        out = given & (d > 0)
        if not (given & ~out).any():
            raise HandcastError(f"{source}: no keypoint of the {side} hand lies in the {w} x {h} image "
                                f"(keypoints of another image or image size?)")
        far = given & (d > max(w, h))
        if far.any():
            j = int(np.argmax(np.where(far, d, -1.0)))
            raise HandcastError(f"{source}: {side} hand keypoint {j} = ({uv[k, j, 0]:g}, {uv[k, j, 1]:g}) lies "
                                f"{d[j]:.0f} px outside the {w} x {h} image, more than the image's size")
        if out.any():
            notes.append(f"{source}: {int(out.sum())} of the {side} hand's {int(given.sum())} keypoints lie outside "
                         f"the {w} x {h} image (kept: a hand cut by the border)")
    return notes


def read_json_file(path: str | os.PathLike, what: str = "keypoints file"):
    """The parsed JSON of ``path``; a one-line HandcastError naming ``what`` if it is missing or not JSON."""
    p = Path(path)
    if not p.is_file():
        raise HandcastError(f"{what} not found: {p}")
    try:
        return json.loads(p.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HandcastError(f"{p}: not a JSON {what} ({e})") from None


def read_keypoints(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a keypoints file (module docstring) -> (uv (2, 21, 2) px, conf (2, 21))."""
    return parse_keypoints(read_json_file(path), str(path))


def keypoints_json(uv: np.ndarray, conf: np.ndarray) -> dict:
    """The inverse of :func:`parse_keypoints`: arrays (2, 21, 2), (2, 21) -> the file's JSON object."""
    hands = []
    for k, side in enumerate(HANDS):
        if (conf[k] > 0).any():
            hands.append({"handedness": side,
                          "keypoints": [[float(u), float(v)] if c > 0 else None for (u, v), c in zip(uv[k], conf[k])],
                          "confidence": [float(c) for c in conf[k]]})
    return {"hands": hands}
