"""H2O converter on a fixture with H2O's per-frame text layout (left hand first, camera->world cam_pose,
3D in each frame's camera). Round trip: stored camera-frame keypoints projected with the stored
intrinsics equal the clip's 2D keypoints, and the converted MANO fits (open model standing in) give
the clip's joints."""

from __future__ import annotations

import numpy as np

from fixtures_prepare import check_clip, fit_to_frame, fmt, make_motion, no_mano_dir, png_bytes, to_camera
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.data.store import decode_image

SIZE = (1280, 720)


def write_take(cdir, m, hm, *, bad_frame=None):
    T = m.pose.shape[0]
    for sub in ("rgb", "cam_pose", "hand_pose", "hand_pose_mano"):
        (cdir / sub).mkdir(parents=True)
    fx, fy, cx, cy = m.K[0, 0], m.K[1, 1], m.K[0, 2], m.K[1, 2]
    (cdir / "cam_intrinsics.txt").write_text(fmt([fx, fy, cx, cy, *SIZE]))
    world_from_cam = np.linalg.inv(m.cam_from_world)
    Xc = to_camera(m.cam_from_world, m.joints)  # (T, 2, 21, 3) in camera t
    pose_c, transl_c = fit_to_frame(m.pose, m.transl, m.betas, m.cam_from_world, hm)
    for t in range(T):
        (cdir / "cam_pose" / f"{t:06d}.txt").write_text(fmt(world_from_cam[t]))
        hp = []
        mp = []
        for h in (1, 0):  # left first
            hp += [1.0, *Xc[t, h].ravel()]
            mp += [1.0, *transl_c[t, h], *pose_c[t, h].ravel(), *m.betas[h]]
        (cdir / "hand_pose" / f"{t:06d}.txt").write_text(fmt(hp))
        (cdir / "hand_pose_mano" / f"{t:06d}.txt").write_text(fmt(mp))
    (cdir / "rgb" / "000000.png").write_bytes(png_bytes(*SIZE))
    if bad_frame is not None:
        (cdir / "hand_pose" / f"{bad_frame:06d}.txt").write_text("1 2 3\n")
    return Xc


def test_h2o_round_trip_and_splits(tmp_path, hm):
    rng = np.random.default_rng(0)
    root = tmp_path / "h2o"
    truth = {}
    for sub, scene in (("subject1_ego", "h1"), ("subject3", "k2"), ("subject4", "o1")):
        m = make_motion(rng, 8, hm, size=SIZE)
        cdir = root / sub / scene / "0" / "cam4"
        Xc = write_take(cdir, m, hm)
        truth[f"{sub}/{scene}/0/cam4"] = (m, Xc)
    (root / "subject1_ego" / "h1" / "0" / "cam0").mkdir()  # a static camera: not converted by default
    s = prepare("h2o", root, tmp_path / "store", hand_model="open", progress=False)
    assert s.clips == {"train": ["subject1_ego/h1/0/cam4"], "val": ["subject3/k2/0/cam4"],
                       "test": ["subject4/o1/0/cam4"]}
    store = ClipStore(tmp_path / "store")
    for split in ("train", "val", "test"):
        clip = store.split(split)[0]
        m, Xc = truth[clip.clip_id]
        assert clip.domain == "h2o" and clip.provenance == "gt" and clip.hand_model == "open"
        assert clip.meta["pose_params"] == "gt" and clip.meta["kp2d_source"] == "projected"
        # the dataset's own camera-t keypoints projected with its intrinsics = the clip's 2D
        uv = Xc[..., :2] / Xc[..., 2:] * np.diag(m.K)[:2] + m.K[:2, 2]
        check_clip(clip, hm, joints_world=m.joints, cam_from_world=m.cam_from_world, kp2d_truth=uv)
        assert clip.image is not None and clip.image.shape == (720, 1280, 3)
    # right hand is index 0 although the files list the left hand first
    clip = store.split("train")[0]
    m, _ = truth[clip.clip_id]
    assert np.allclose(clip.betas, m.betas, atol=1e-6)


def test_h2o_without_mano_and_broken_frame(tmp_path, hm):
    rng = np.random.default_rng(1)
    root = tmp_path / "h2o"
    m = make_motion(rng, 8, hm, size=SIZE)
    write_take(root / "subject1" / "h1" / "3" / "cam4", m, hm, bad_frame=3)
    s = prepare("h2o", root, tmp_path / "store", progress=False, mano_dir=no_mano_dir(tmp_path))
    # frame 3 is malformed: skipped with its reason, the take is cut into two runs
    assert any("frame 3" in item and "expected 128 numbers" in why for item, why in s.skipped)
    assert s.clips["train"] == ["subject1/h1/3/cam4@0", "subject1/h1/3/cam4@4"]
    assert any("MANO poses not converted" in n for n in s.notes)
    view = ClipStore(tmp_path / "store").split("train")
    c0, c1 = view[0], view[1]
    assert c0.meta["pose_params"] == "none" and c0.hand_model == "mano" and np.all(c0.pose == 0)
    check_clip(c0, joints_world=m.joints, cam_from_world=m.cam_from_world, frames=np.arange(3))
    check_clip(c1, joints_world=m.joints, cam_from_world=m.cam_from_world, frames=np.arange(4, 8))
    assert c0.image is not None and c1.image is None  # only frame 0 has an rgb file here
    assert decode_image(view.image_bytes(0)).shape == (720, 1280, 3)
