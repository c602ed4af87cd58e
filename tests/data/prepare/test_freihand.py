"""FreiHAND converter on a fixture with FreiHAND's JSON lists (K, xyz, mano [[61]] mean-relative) and the
image-id scheme of the four training versions. Round trip: the stored camera-frame xyz projected with the
stored K equals the clip's 2D, and the converted flat pose + fitted transl (open model standing in for
MANO) reproduce the stored joints."""

from __future__ import annotations

import json

import numpy as np

from fixtures_prepare import check_clip, fit_to_frame, jpeg_bytes, make_motion, to_camera
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.hand import open_model

SIZE = (224, 224)


def write_split(d, prefix, hm, rng, n, rgb_versions=(0,)):
    mean = open_model.load_open_model("right")["hands_mean"]
    Ks, xyzs, manos, truth = [], [], [], []
    for i in range(n):
        m = make_motion(rng, 1, hm, static_camera=True, size=SIZE, dist=0.4)
        X = to_camera(m.cam_from_world, m.joints)[0, 0]  # right hand, camera frame
        pose_c, transl_c = fit_to_frame(m.pose, m.transl, m.betas, m.cam_from_world[0], hm)
        p = pose_c[0, 0].copy()
        p[1:] -= mean.reshape(15, 3)  # mean-relative, as the FreiHAND toolbox (use_mean_pose=True)
        uv_root = (m.K @ X[9])[:2] / X[9, 2]
        manos.append([[*p.ravel(), *m.betas[0], *uv_root, 1.0]])
        Ks.append(m.K.tolist())
        xyzs.append(X.tolist())
        truth.append((m, X, pose_c[0, 0], m.betas[0]))
    (d / f"{prefix}_K.json").write_text(json.dumps(Ks))
    (d / f"{prefix}_xyz.json").write_text(json.dumps(xyzs))
    (d / f"{prefix}_mano.json").write_text(json.dumps(manos))
    (d / f"{prefix}_scale.json").write_text(json.dumps([0.03] * n))
    rgb = d / ("training" if prefix == "training" else "evaluation") / "rgb"
    rgb.mkdir(parents=True)
    for v in rgb_versions:
        for i in range(n):
            (rgb / f"{i + n * v:08d}.jpg").write_bytes(jpeg_bytes(*SIZE, seed=i))
    return truth


def test_freihand_round_trip(tmp_path, hm):
    rng = np.random.default_rng(0)
    root = tmp_path / "FreiHAND_pub_v2"
    root.mkdir()
    train = write_split(root, "training", hm, rng, 3, rgb_versions=(0, 1))  # gs and hom images present
    ev = tmp_path / "FreiHAND_pub_v2_eval"
    ev.mkdir()
    test = write_split(ev, "evaluation", hm, rng, 2)
    s = prepare("freihand", root, tmp_path / "store", hand_model="open", progress=False)
    assert s.clips == {"train": ["gs/00000000", "gs/00000001", "gs/00000002", "hom/00000003", "hom/00000004",
                                 "hom/00000005"], "test": ["00000000", "00000001"]}
    store = ClipStore(tmp_path / "store")
    for split, truth in (("train", train), ("test", test)):
        for clip in store.split(split):
            idx = clip.meta["annotation_index"]
            m, X, pose, betas = truth[idx]
            J = np.zeros((1, 2, 21, 3))
            J[0, 0] = X
            uv = np.zeros((1, 2, 21, 2))
            uv[0, 0] = (X @ m.K.T)[:, :2] / X[:, 2:]
            assert clip.valid.tolist() == [[True, False]] and clip.image is not None
            check_clip(clip, hm, joints_world=J, cam_from_world=np.eye(4)[None], kp2d_truth=uv)
            assert np.allclose(clip.pose[0, 0], pose, atol=1e-6)  # flat: hands_mean added back
            assert np.allclose(clip.betas[0], betas, atol=1e-6)
    assert store.split("train").get("hom/00000004").meta["version"] == "hom"


def test_freihand_without_eval_gt_or_mano(tmp_path, hm):
    rng = np.random.default_rng(1)
    root = tmp_path / "FreiHAND_pub_v2"
    root.mkdir()
    write_split(root, "training", hm, rng, 2)
    (root / "evaluation_K.json").write_text(json.dumps([np.eye(3).tolist()]))
    s = prepare("freihand", root, tmp_path / "store", hand_model="none", versions=("gs",), progress=False)
    assert s.clips == {"train": ["gs/00000000", "gs/00000001"]}
    assert any("evaluation" in n and "evaluation_xyz.json" in n for n in s.notes)
    clip = ClipStore(tmp_path / "store").split("train")[0]
    assert clip.meta["pose_params"] == "none" and np.all(clip.pose == 0) and clip.provenance == "gt"
