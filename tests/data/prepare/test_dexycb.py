"""DexYCB converter on a fixture with DexYCB's layout (meta.yml, per-camera labels_%06d.npz with
mean-relative 45-PCA MANO fits, calibration YAMLs). Round trip: the stored joint_3d projected with the
stored intrinsics lands on the stored joint_2d, and the PCA fit converted to a flat pose (open model
standing in for MANO, with the hand's own PCA basis) reproduces the stored joints."""

from __future__ import annotations

import numpy as np
import yaml

from fixtures_prepare import check_clip, fit_to_frame, jpeg_bytes, make_motion, to_camera
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.hand import open_model

SERIAL = "836212060125"


def write_seq(root, subject, seq, side, hm, rng, T=5, absent=(3,)):
    h = 0 if side == "right" else 1
    arr = open_model.load_open_model(side)
    comps, mean = arr["hands_components"], arr["hands_mean"]
    coeffs = rng.normal(0, 0.3, (T, 45))
    fingers = np.zeros((T, 2, 15, 3))
    fingers[:, h] = (coeffs @ comps + mean).reshape(T, 15, 3)  # manopth PCA, flat_hand_mean=False
    m = make_motion(rng, T, hm, static_camera=True, size=(640, 480), fingers=fingers)
    M = m.cam_from_world[0]
    X = to_camera(m.cam_from_world, m.joints)
    pose_c, transl_c = fit_to_frame(m.pose, m.transl, m.betas, M, hm)
    d = root / subject / seq
    (d / SERIAL).mkdir(parents=True)
    calib = f"{subject}_{seq}"
    (d / "meta.yml").write_text(yaml.safe_dump({"serials": [SERIAL], "num_frames": T, "ycb_ids": [2],
                                                "ycb_grasp_ind": 0, "mano_sides": [side], "mano_calib": [calib],
                                                "extrinsics": "x"}))
    (root / "calibration" / f"mano_{calib}").mkdir(parents=True)
    (root / "calibration" / f"mano_{calib}" / "mano.yml").write_text(yaml.safe_dump({"betas": m.betas[h].tolist()}))
    uv = X[..., :2] / X[..., 2:] * np.diag(m.K)[:2] + m.K[:2, 2]
    for t in range(T):
        pm = np.concatenate([pose_c[t, h, 0], coeffs[t], transl_c[t, h]])[None].astype(np.float32)
        j3, j2 = X[t, h][None].astype(np.float32), uv[t, h][None].astype(np.float32)
        if t in absent:
            pm[:] = 0
            j3[:] = -1
            j2[:] = -1
        np.savez(d / SERIAL / f"labels_{t:06d}.npz", seg=np.zeros((480, 640), np.uint8),
                 pose_y=np.zeros((1, 3, 4), np.float32), pose_m=pm, joint_3d=j3, joint_2d=j2)
    (d / SERIAL / "color_000000.jpg").write_bytes(jpeg_bytes(640, 480))
    return m, X, uv, h


def test_dexycb_round_trip_and_splits(tmp_path, hm):
    rng = np.random.default_rng(0)
    root = tmp_path / "dex"
    (root / "calibration" / "intrinsics").mkdir(parents=True)
    truth = {}
    subj = "20200709-subject-01"
    for i in range(5):
        (root / subj / f"2020081{i}_100000").mkdir(parents=True)
    truth["train"] = write_seq(root, subj, "20200810_100000", "right", hm, rng)  # index 0 -> train
    truth["val"] = write_seq(root, subj, "20200814_100000", "left", hm, rng)  # index 4 -> val
    K = truth["train"][0].K  # make_motion's K depends on the image size only: shared by both
    assert np.allclose(K, truth["val"][0].K)
    (root / "calibration" / "intrinsics" / f"{SERIAL}_640x480.yml").write_text(yaml.safe_dump(
        {"color": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "ppx": float(K[0, 2]), "ppy": float(K[1, 2])}}))

    s = prepare("dexycb", root, tmp_path / "store", hand_model="open", progress=False)
    assert s.clips == {"train": [f"{subj}/20200810_100000/{SERIAL}"], "val": [f"{subj}/20200814_100000/{SERIAL}"]}
    store = ClipStore(tmp_path / "store")
    for split in ("train", "val"):
        clip = store.split(split)[0]
        m, X, uv, h = truth[split]
        expect = np.zeros((5, 2), bool)
        expect[:, h] = True
        expect[3] = False  # frame 3 has no hand (-1 joints, zero pose_m)
        assert (clip.valid == expect).all()
        assert clip.meta["kp2d_source"] == "dataset" and clip.meta["side"] == ("right", "left")[h]
        kp_truth = np.zeros((5, 2, 21, 2))
        kp_truth[:, h] = uv[:, h]
        check_clip(clip, hm, joints_world=X, cam_from_world=np.tile(np.eye(4), (5, 1, 1)), kp2d_truth=kp_truth)
        # flat fingers = PCA coefficients @ basis + mean
        assert np.allclose(clip.pose[:, h, 1:][expect[:, h]], m.pose[:, h, 1:][expect[:, h]], atol=1e-4)
        assert clip.image is not None


def test_dexycb_malformed_label_is_skipped(tmp_path, hm):
    rng = np.random.default_rng(1)
    root = tmp_path / "dex"
    (root / "calibration" / "intrinsics").mkdir(parents=True)
    m, X, uv, h = write_seq(root, "20200709-subject-01", "20200810_100000", "right", hm, rng, absent=())
    K = m.K
    (root / "calibration" / "intrinsics" / f"{SERIAL}_640x480.yml").write_text(yaml.safe_dump(
        {"color": {"fx": float(K[0, 0]), "fy": float(K[1, 1]), "ppx": float(K[0, 2]), "ppy": float(K[1, 2])}}))
    (root / "20200709-subject-01" / "20200810_100000" / SERIAL / "labels_000002.npz").write_bytes(b"junk")
    s = prepare("dexycb", root, tmp_path / "store", progress=False, hand_model="none")
    assert any("labels_000002.npz" in why for _, why in s.skipped)
    ids = s.clips["train"]
    assert len(ids) == 2 and ids[0].endswith("@0") and ids[1].endswith("@3")
