"""HOT3D-Clips converter on a fixture tar with HOT3D's members (cameras.json with a FISHEYE624 Aria
calibration and T_world_from_camera as translation + wxyz quaternion, hands.json with 15 PCA
coefficients + wrist_xform in world, __hand_shapes.json__). Round trip: world joints from the MANO fits,
projected with the pinhole camera of the same f and c and turned upright, land on the clip's 2D; the
MANO_LEFT shapedirs fix is applied to match the dataset whatever the installed model says."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
import roma
import torch

from fixtures_prepare import check_clip, keypoints, make_motion, no_mano_dir, project
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.errors import AssetMissingError
from handcast.hand import HandModel, open_model
from handcast.io import save_npz

SIZE = (1408, 1408)


def quat_wxyz(R):
    q = roma.rotmat_to_unitquat(torch.as_tensor(R)).numpy()  # xyzw
    return np.concatenate([q[..., 3:], q[..., :3]], -1)


def add(tar, name, data):
    if isinstance(data, (dict, list)):
        data = json.dumps(data).encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def hot3d_motion(rng, hm, T, comps, means):
    coeffs = rng.normal(0, 0.4, (T, 2, 15))
    fingers = np.stack([(coeffs[:, h] @ comps[h][:15] + means[h]).reshape(T, 15, 3) for h in range(2)], 1)
    m = make_motion(rng, T, hm, size=SIZE, fingers=fingers)
    m.betas[1] = m.betas[0]  # HOT3D: one shape for both hands
    m.K[1, 1] = m.K[0, 0]  # Aria FISHEYE624: one focal length
    m.joints[:] = keypoints(hm, m.pose, m.betas, m.transl)
    return m, coeffs


def write_clip(path, m, coeffs, *, drop_left_at=(), with_hands=True):
    T = m.pose.shape[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    world_from_cam = np.linalg.inv(m.cam_from_world)
    f, cx, cy = m.K[0, 0], m.K[0, 2], m.K[1, 2]
    with tarfile.open(path, "w") as tar:
        add(tar, "__hand_shapes.json__", {"mano": m.betas[0].tolist(), "umetrack": {}})
        for t in range(T):
            fid = f"{t:06d}"
            calib = {"label": "camera-rgb", "stream_id": "214-1", "image_width": SIZE[0], "image_height": SIZE[1],
                     "projection_model_type": "CameraModelType.FISHEYE624",
                     "projection_params": [f, cx, cy] + [0.0] * 12,
                     "T_device_from_camera": {"translation_xyz": [0, 0, 0], "quaternion_wxyz": [1, 0, 0, 0]}}
            cams = {"214-1": {"calibration": calib, "T_world_from_camera": {
                "translation_xyz": world_from_cam[t, :3, 3].tolist(),
                "quaternion_wxyz": quat_wxyz(world_from_cam[t, :3, :3]).tolist()}}}
            add(tar, f"{fid}.cameras.json", cams)
            hands = {}
            for h, side in enumerate(("right", "left")):
                if side == "left" and t in drop_left_at:
                    continue
                hands[side] = {"mano_pose": {"thetas": coeffs[t, h].tolist(),
                                             "wrist_xform": [*m.pose[t, h, 0], *m.transl[t, h]]},
                               "umetrack_pose": {}}
            if with_hands:
                add(tar, f"{fid}.hands.json", hands)
            add(tar, f"{fid}.info.json", {"timestamp_ns": t * 33333333})
            add(tar, f"{fid}.image_214-1.jpg", b"\xff\xd8 not decoded")


def upright_uv(uv):
    """Aria image turned 90 degrees clockwise: (u, v) -> (H - 1 - v, u)."""
    return np.stack([SIZE[1] - 1 - uv[..., 1], uv[..., 0]], -1)


def test_hot3d_round_trip(tmp_path, hm):
    rng = np.random.default_rng(0)
    arr = [open_model.load_open_model(s) for s in ("right", "left")]
    comps, means = [a["hands_components"] for a in arr], [a["hands_mean"] for a in arr]
    m, coeffs = hot3d_motion(rng, hm, 6, comps, means)
    root = tmp_path / "hot3d"
    write_clip(root / "train_aria" / "clip-000001.tar", m, coeffs, drop_left_at=(2,))
    m2, c2 = hot3d_motion(rng, hm, 3, comps, means)
    write_clip(root / "test_aria" / "clip-000009.tar", m2, c2, with_hands=False)
    s = prepare("hot3d", root, tmp_path / "store", hand_model="open", val_fraction=0.0, progress=False)
    assert s.clips == {"train": ["train_aria/clip-000001"]}
    assert "no hands.json" in dict(s.skipped)["test_aria/clip-000009"]
    clip = ClipStore(tmp_path / "store").split("train")[0]
    assert clip.valid[:, 0].all() and clip.valid[:, 1].tolist() == [True, True, False, True, True, True]
    assert clip.image_size == SIZE and clip.fps == 30.0 and clip.meta["rotated_cw_quarter_turns"] == 1
    R4 = np.eye(4)
    R4[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    uv = upright_uv(project(m.K, m.cam_from_world, m.joints))
    check_clip(clip, hm, joints_world=m.joints, cam_from_world=R4 @ m.cam_from_world, kp2d_truth=uv, tol_px=0.05)


def _fake_mano(d, left_fixed):
    """The open model saved in the official-MANO file layout (a licence-free stand-in)."""
    keys = ("v_template", "f", "weights", "J_regressor", "shapedirs", "posedirs", "kintree_table",
            "hands_components", "hands_mean")
    r, l = (open_model.load_open_model(s) for s in ("right", "left"))
    left = {k: l[k] for k in keys}
    if left_fixed:
        left["shapedirs"] = left["shapedirs"].copy()
        left["shapedirs"][:, 0, :] *= -1
    save_npz(d / "MANO_RIGHT.npz", **{k: r[k] for k in keys})
    save_npz(d / "MANO_LEFT.npz", **left, left_shapedirs_fixed=np.array(left_fixed))
    return d


def test_hot3d_left_shapedirs_fix(tmp_path):
    plain = _fake_mano(tmp_path / "mano_plain", False)
    fixed = _fake_mano(tmp_path / "mano_fixed", True)
    hm_fixed = HandModel("mano", mano_dir=fixed, dtype=torch.float64)  # what HOT3D was fitted with
    rng = np.random.default_rng(1)
    arr = [open_model.load_open_model(s) for s in ("right", "left")]
    m, coeffs = hot3d_motion(rng, hm_fixed, 4, [a["hands_components"] for a in arr], [a["hands_mean"] for a in arr])
    root = tmp_path / "hot3d"
    write_clip(root / "train_quest3" / "clip-000002.tar", m, coeffs)
    stores = {}
    for name, d in (("plain", plain), ("fixed", fixed)):
        out = tmp_path / f"store_{name}"
        prepare("hot3d", root, out, mano_dir=d, val_fraction=0.0, upright=False, progress=False)
        clip = ClipStore(out).split("train")[0]
        assert clip.hand_model == "mano" and clip.meta["left_shapedirs_fixed"] is True
        check_clip(clip, hm_fixed, joints_world=m.joints, cam_from_world=m.cam_from_world)
        stores[name] = clip
    # the fix matters: the unpatched model puts the left hand elsewhere
    hm_plain = HandModel("mano", mano_dir=plain, dtype=torch.float64)
    wrong = keypoints(hm_plain, m.pose, m.betas, m.transl)
    assert np.abs(wrong[:, 1] - m.joints[:, 1]).max() > 1e-3


def test_hot3d_needs_mano(tmp_path, hm):
    rng = np.random.default_rng(2)
    arr = [open_model.load_open_model(s) for s in ("right", "left")]
    m, coeffs = hot3d_motion(rng, hm, 2, [a["hands_components"] for a in arr], [a["hands_mean"] for a in arr])
    write_clip(tmp_path / "hot3d" / "train_aria" / "clip-000003.tar", m, coeffs)
    with pytest.raises(AssetMissingError, match="HOT3D.*MANO.*handcast mano import"):
        prepare("hot3d", tmp_path / "hot3d", tmp_path / "store", mano_dir=no_mano_dir(tmp_path), progress=False)
    assert not (tmp_path / "store").exists()
