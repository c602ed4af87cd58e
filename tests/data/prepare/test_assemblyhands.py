"""AssemblyHands converter on a fixture with the toolkit's three JSON files (COCO ego_data, per-frame
world->camera extrinsics in mm, 42 world joints in mm in AssemblyHands order). Round trip: the world
joints projected with the stored K [R|t] land on the clip's 2D keypoints (after the upright turn of a
rotated camera); runs and skipped frames are reported."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from fixtures_prepare import check_clip, jpeg_bytes, make_motion, project
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.errors import HandcastError

SEQ = "nusar-2021_action_both_9081-c11b_9081_user_id_2021-02-12_161433"
SIZE = (636, 480)
# datasets.md 1.3: AssemblyHands (per hand) -> OpenPose order
AH_TO_OP = [20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16]


def to_assembly(common):
    """(2, 21, 3) common order (right, left) -> (42, 3) AssemblyHands order."""
    out = np.zeros((42, 3))
    for h in range(2):
        out[21 * h + np.array(AH_TO_OP)] = common[h]
    return out


def write(root, hm, rng):
    cams = {"HMC_21179183": [10, 12, 14, 16], "HMC_84346135": [10, 12, 16]}  # 270 deg / 0 deg mounts
    m = make_motion(rng, 17, hm, size=SIZE)
    images, anns, intr, extr, j3d = [], [], {}, {}, {}
    iid = 0
    for cam, frames in cams.items():
        intr[f"{cam}_mono10bit"] = m.K.tolist()
        for f in frames:
            key = f"{f:06d}"
            E = m.cam_from_world[f][:3].copy()
            E[:, 3] *= 1000.0  # mm
            extr.setdefault(key, {})[f"{cam}_mono10bit"] = E.tolist()
            j3d[key] = {"world_coord": (to_assembly(m.joints[f]) * 1000.0).tolist()}
            name = f"{SEQ}/{cam}_mono10bit/{key}.jpg"
            images.append({"id": iid, "file_name": name, "width": SIZE[0], "height": SIZE[1], "seq_name": SEQ,
                           "camera": cam, "frame_idx": f})
            valid = np.ones(42)
            if cam == "HMC_84346135" and f == 12:
                valid[21 + 5] = 0  # one left-hand joint not valid
            anns.append({"id": iid, "image_id": iid, "bbox": {"right": [0, 0, 1, 1], "left": None},
                         "joint_valid": valid.tolist()})
            p = root / "images" / "ego_images_rectified" / "train" / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(jpeg_bytes(*SIZE, seed=f, gray=True))
            iid += 1
    d = root / "annotations" / "train"
    d.mkdir(parents=True)
    (d / "assemblyhands_train_ego_data_v1-1.json").write_text(json.dumps({"images": images, "annotations": anns}))
    (d / "assemblyhands_train_ego_calib_v1-1.json").write_text(json.dumps(
        {"calibration": {SEQ: {"intrinsics": intr, "extrinsics": extr}}}))
    (d / "assemblyhands_train_joint_3d_v1-1.json").write_text(json.dumps({"annotations": {SEQ: j3d}}))
    return m


def test_assemblyhands_round_trip(tmp_path, hm):
    rng = np.random.default_rng(0)
    root = tmp_path / "assembly"
    m = write(root, hm, rng)
    s = prepare("assemblyhands", root, tmp_path / "store", progress=False)
    assert s.clips == {"train": [f"{SEQ}/HMC_21179183", f"{SEQ}/HMC_84346135@10", f"{SEQ}/HMC_84346135@16"]}
    view = ClipStore(tmp_path / "store").split("train")
    # the 270-degree camera, turned upright: (u, v) -> (v, W - 1 - u); camera x' = y, y' = -x
    clip = view[0]
    R4 = np.eye(4)
    R4[:3, :3] = [[0, 1, 0], [-1, 0, 0], [0, 0, 1]]
    frames = np.array([10, 12, 14, 16])
    uv = project(m.K, m.cam_from_world, m.joints)
    uv_up = np.stack([uv[..., 1], SIZE[0] - 1 - uv[..., 0]], -1)
    assert clip.fps == 15.0 and clip.image_size == (480, 636) and clip.provenance == "gt"
    assert clip.meta["pose_params"] == "none" and clip.domain == "assemblyhands"
    check_clip(clip, joints_world=m.joints, cam_from_world=R4 @ m.cam_from_world, frames=frames, kp2d_truth=uv_up)
    gray = np.asarray(Image.open(io.BytesIO((root / "images" / "ego_images_rectified" / "train" / SEQ /
                                              "HMC_21179183_mono10bit" / "000010.jpg").read_bytes())))
    assert clip.image.shape == (636, 480, 3)
    assert np.abs(clip.image[..., 0].astype(float) - np.rot90(gray, k=-3)).mean() < 4.0
    # the upright (0-degree) camera, cut into two runs by the missing frame 14
    c1, c2 = view[1], view[2]
    check_clip(c1, joints_world=m.joints, cam_from_world=m.cam_from_world, frames=np.array([10, 12]), kp2d_truth=uv)
    check_clip(c2, joints_world=m.joints, cam_from_world=m.cam_from_world, frames=np.array([16]), kp2d_truth=uv)
    assert c1.valid.tolist() == [[True, True], [True, False]]  # a joint flagged invalid -> hand not valid in 3D
    assert c1.kp2d_conf[1, 1].sum() == 20 and c1.kp2d_conf[1, 0].sum() == 21


def test_assemblyhands_bad_input(tmp_path, hm):
    rng = np.random.default_rng(1)
    root = tmp_path / "assembly"
    write(root, hm, rng)
    d = root / "annotations" / "train"
    (d / "assemblyhands_train_joint_3d_v1-1.json").write_text('{"annotations": {')
    with pytest.raises(HandcastError, match="nothing converted.*malformed JSON"):
        prepare("assemblyhands", root, tmp_path / "store", progress=False)
    (d / "assemblyhands_train_joint_3d_v1-1.json").unlink()
    with pytest.raises(HandcastError, match="missing file .*joint_3d"):
        prepare("assemblyhands", root, tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists()
