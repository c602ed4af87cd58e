"""COCO-style 2D hand keypoint files (handcast.data.coco_keypoints)."""

import json
from pathlib import Path

import numpy as np
import pytest

from handcast.data.coco_keypoints import read_coco_hand_keypoints
from handcast.errors import HandcastError

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "mmpose"


def _write(path: Path, keypoints, image_id=7) -> Path:
    path.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "a.jpg", "width": 40, "height": 30}],
        "annotations": [{"id": 3, "image_id": image_id, "keypoints": keypoints}],
    }))
    return path


def test_reads_keypoints_and_visibility(tmp_path):
    kp = np.arange(63, dtype=np.float64).reshape(21, 3)
    kp[:, 2] = 1
    kp[4, 2] = 0  # not annotated
    kp[7, 2] = 2  # annotated (COCO: labelled, occluded)
    (h,) = read_coco_hand_keypoints(_write(tmp_path / "k.json", kp.ravel().tolist()))
    assert h.image == tmp_path / "a.jpg" and h.image_size == (40, 30)
    assert h.annotation_id == 3 and h.image_id == 7
    assert h.uv.shape == (21, 2) and h.vis.shape == (21,)
    assert h.vis.sum() == 20 and not h.vis[4] and h.vis[7]
    assert np.isnan(h.uv[4]).all()
    np.testing.assert_array_equal(h.uv[h.vis], kp[h.vis, :2])


@pytest.mark.parametrize("keypoints, image_id, match", [
    ([1.0] * 60, 7, "needs 63"),
    ([1.0] * 63, 8, "no known 'image_id'"),
    ("x", 7, "needs 63|non-numeric"),
])
def test_bad_files_say_what_is_wrong(tmp_path, keypoints, image_id, match):
    with pytest.raises(HandcastError, match=match):
        read_coco_hand_keypoints(_write(tmp_path / "k.json", keypoints, image_id))


def test_missing_or_not_json(tmp_path):
    with pytest.raises(HandcastError, match="not found"):
        read_coco_hand_keypoints(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(HandcastError, match="not a JSON"):
        read_coco_hand_keypoints(tmp_path / "bad.json")
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(HandcastError, match="COCO-style"):
        read_coco_hand_keypoints(tmp_path / "list.json")


def test_the_mmpose_samples():
    if not REAL.is_dir():
        pytest.skip(f"real test data not found at {REAL} (the shared data folder is absent)")
    counts = {}
    for js in sorted(REAL.glob("*/*.json")):
        hands = read_coco_hand_keypoints(js)
        counts[js.parent.name] = len(hands)
        for h in hands:
            assert h.image.is_file(), h.image
            W, H = h.image_size
            p = h.uv[h.vis]
            assert len(p) >= 4 and (p >= -1).all() and (p[:, 0] <= W).all() and (p[:, 1] <= H).all()
    assert counts == {"freihand": 8, "onehand10k": 4, "panoptic": 4}
