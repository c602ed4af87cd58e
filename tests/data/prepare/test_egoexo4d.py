"""Ego-Exo4D hand ego-pose converter on a fixture with the official annotation / camera_pose JSON files
(named keypoints, 3D in the take's world, per-frame world->Aria extrinsics, 2D in the undistorted
512 x 512 Aria frame). Round trip: world 3D projected with the stored Aria camera lands on the stored
2D annotations (both turned upright); a take with 2D only becomes a "2d-only" clip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures_prepare import check_clip, make_motion, project
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.errors import HandcastError

NAMES = ["wrist"] + [f"{f}_{i}" for f in ("thumb", "index", "middle", "ring", "pinky") for i in range(1, 5)]
K = np.array([[150.0, 0.0, 255.5], [0.0, 150.0, 255.5], [0.0, 0.0, 1.0]])


def write_take(base, uid, m, frames, *, with_3d=True, few_views=None):
    uv = project(m.K, m.cam_from_world, m.joints)
    ann = {}
    extr = {}
    for t, f in enumerate(frames):
        a2, a3 = {}, {}
        for h, side in enumerate(("right", "left")):
            for k, n in enumerate(NAMES):
                a2[f"{side}_{n}"] = {"x": float(uv[t, h, k, 0]), "y": float(uv[t, h, k, 1]), "placement": "manual"}
                views = 2 if few_views == (t, h, k) else 3
                a3[f"{side}_{n}"] = {"x": float(m.joints[t, h, k, 0]), "y": float(m.joints[t, h, k, 1]),
                                     "z": float(m.joints[t, h, k, 2]), "num_views_for_3d": views}
        entry = {"annotation2D": {"aria01": a2, "cam01": {}}}
        if with_3d:
            entry["annotation3D"] = a3
        ann[str(f)] = [entry]
        extr[str(f)] = m.cam_from_world[t, :3].tolist()
    (base / "hand" / "annotation").mkdir(parents=True, exist_ok=True)
    (base / "camera_pose").mkdir(parents=True, exist_ok=True)
    (base / "hand" / "annotation" / f"{uid}.json").write_text(json.dumps(ann))
    (base / "camera_pose" / f"{uid}.json").write_text(json.dumps(
        {"cam01": {"camera_intrinsics": np.eye(3).tolist(), "camera_extrinsics": {}},
         "aria01": {"camera_intrinsics": m.K.tolist(), "camera_extrinsics": extr}}))
    return uv


def up(uv):
    return np.stack([511 - uv[..., 1], uv[..., 0]], -1)


def test_egoexo4d_round_trip(tmp_path, hm):
    rng = np.random.default_rng(0)
    root = tmp_path / "egoexo"
    base = root / "annotations" / "ego_pose" / "train"
    m = make_motion(rng, 4, hm, size=(512, 512))
    m.K = K
    uv = write_take(base, "uid-a", m, [0, 10, 20, 40], few_views=(1, 1, 7))
    m2 = make_motion(rng, 2, hm, size=(512, 512))
    m2.K = K
    uv2 = write_take(base, "uid-b", m2, [5, 15], with_3d=False)
    s = prepare("ego-exo4d", root, tmp_path / "store", progress=False)
    assert s.clips == {"train": ["uid-a@0", "uid-a@40", "uid-b"]}
    view = ClipStore(tmp_path / "store").split("train")
    R4 = np.eye(4)
    R4[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    a0, a1, b = view[0], view[1], view[2]
    assert a0.fps == 3.0 and a0.provenance == "gt" and a0.image_size == (512, 512)
    assert a0.valid.tolist() == [[True, True], [True, False], [True, True]]  # 2 views only -> not 3D-valid
    assert a0.kp2d_conf[1, 1].all()  # its 2D annotation is kept
    check_clip(a0, joints_world=m.joints, cam_from_world=R4 @ m.cam_from_world, frames=np.arange(3),
               kp2d_truth=up(uv))
    check_clip(a1, joints_world=m.joints, cam_from_world=R4 @ m.cam_from_world, frames=np.array([3]),
               kp2d_truth=up(uv))
    assert b.provenance == "2d-only" and b.valid.all() and np.all(b.joints3d == 0)
    assert np.abs(b.kp2d - up(uv2)).max() < 1e-3


def test_egoexo4d_bad_input(tmp_path, hm):
    root = tmp_path / "egoexo"
    with pytest.raises(HandcastError, match="dataset root not found"):
        prepare("egoexo4d", root, tmp_path / "store", progress=False)
    base = root / "annotations" / "ego_pose" / "train"
    rng = np.random.default_rng(1)
    m = make_motion(rng, 2, hm, size=(512, 512))
    m.K = K
    write_take(base, "good", m, [0, 1])
    write_take(base, "bad", m, [0, 1])
    (base / "hand" / "annotation" / "bad.json").write_text("{not json")
    write_take(base, "nocam", m, [0, 1])
    (base / "camera_pose" / "nocam.json").unlink()
    s = prepare("egoexo4d", root, tmp_path / "store", progress=False, upright=False)
    reasons = dict(s.skipped)
    assert "malformed JSON" in reasons["bad"] and "missing file" in reasons["nocam"]
    assert s.clips == {"train": ["good"]}
    with pytest.raises(HandcastError, match="option annotation"):
        prepare("egoexo4d", root, tmp_path / "store2", progress=False, annotation="weird")
