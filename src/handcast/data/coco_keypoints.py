"""COCO-style 2D hand keypoint files (the layout of mmpose's hand datasets: FreiHAND, OneHand10K, CMU
Panoptic, ...): one JSON per image folder with ``images`` (``id``, ``file_name``, ``width``, ``height``) and
``annotations`` (``image_id``, ``keypoints``: 21 * 3 numbers ``u, v, v_flag`` in the common 21-keypoint
order; ``v_flag`` 0 = not annotated, > 0 = annotated).

Pixels as in the file (mmpose: pixel centres on integers, the convention of :mod:`handcast.data.keypoints`).
The files carry no handedness; callers decide it (see :func:`read_coco_hand_keypoints`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handcast.conventions import NUM_KEYPOINTS
from handcast.data.keypoints import read_json_file
from handcast.errors import HandcastError


@dataclass
class CocoHand:
    """One annotated hand: ``image`` (path of its image file, beside the JSON), ``uv`` float64 (21, 2) pixels
    (NaN where not annotated), ``vis`` bool (21,) (annotated), ``image_size`` (W, H) from the file (0 if absent),
    ``annotation_id`` and ``image_id`` as in the file."""

    image: Path
    uv: np.ndarray
    vis: np.ndarray
    image_size: tuple[int, int]
    annotation_id: int
    image_id: int


def read_coco_hand_keypoints(json_path: str | os.PathLike) -> list[CocoHand]:
    """Every hand annotation of a COCO-style keypoint file (module docstring) -> list of :class:`CocoHand`,
    in the file's annotation order. Image paths are resolved beside the JSON file (not checked to exist).
    Raises HandcastError (one line) for a missing or malformed file, an annotation without 21 keypoints or
    pointing at an image id the file does not list."""
    p = Path(json_path)
    data = read_json_file(p, "keypoint file")
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise HandcastError(f"{p}: expected a COCO-style object with 'images' and 'annotations' lists")
    images = {}
    for im in data["images"]:
        try:
            images[im["id"]] = (str(im["file_name"]), (int(im.get("width", 0)), int(im.get("height", 0))))
        except (KeyError, TypeError, ValueError):
            raise HandcastError(f"{p}: an image entry lacks 'id' or 'file_name'") from None
    out = []
    for i, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or a.get("image_id") not in images:
            raise HandcastError(f"{p}: annotation {i} has no known 'image_id'")
        try:
            kp = np.asarray(a.get("keypoints"), np.float64)
        except (TypeError, ValueError):
            raise HandcastError(f"{p}: annotation {i} has non-numeric keypoints") from None
        if kp.shape != (NUM_KEYPOINTS * 3,):
            raise HandcastError(f"{p}: annotation {i} needs {NUM_KEYPOINTS * 3} keypoint numbers, got "
                                f"{kp.size if kp.ndim else 'none'}")
        kp = kp.reshape(NUM_KEYPOINTS, 3)
        vis = (kp[:, 2] > 0) & np.isfinite(kp[:, :2]).all(-1)
        uv = np.where(vis[:, None], kp[:, :2], np.nan)
        name, size = images[a["image_id"]]
        out.append(CocoHand(image=p.parent / name, uv=uv, vis=vis, image_size=size,
                            annotation_id=int(a.get("id", i)), image_id=int(a["image_id"])))
    return out
