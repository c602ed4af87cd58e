"""HO-3D v2 (1-frame clips) and H2O-3D (clips) converters on fixtures with the HO-3D layout: meta
pickles (Python-2 protocol, read with the restricted unpickler), MANO-21 joints and MANO fits in OpenGL
camera coordinates. Round trip: the stored OpenGL joints, projected the way the HO-3D toolkit does
(diag(1, -1, -1) then camMat), equal the clips' 2D keypoints."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from fixtures_prepare import check_clip, fit_to_frame, jpeg_bytes, make_motion, no_mano_dir, png_bytes, to_camera
from handcast.conventions import common_to_mano21
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.errors import HandcastError

D = np.diag([1.0, -1.0, -1.0, 1.0])


def ho3d_project(K, joints_gl):
    """HO-3D toolkit projection: flip to OpenCV then K."""
    p = joints_gl * np.array([1.0, -1.0, -1.0])
    uvw = p @ K.T
    return uvw[..., :2] / uvw[..., 2:]


def write_pkl(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def test_ho3d_single_images(tmp_path, hm):
    rng = np.random.default_rng(0)
    root = tmp_path / "HO3D_v2"
    truth = {}
    lines = []
    for seq, fid in (("ABF10", "0000"), ("ABF10", "0001"), ("MC1", "0100")):
        m = make_motion(rng, 1, hm, static_camera=True, size=(640, 480))
        gl = D @ m.cam_from_world[0]
        Xgl = to_camera(gl[None], m.joints)[0]  # (2, 21, 3) OpenGL camera
        pose_gl, transl_gl = fit_to_frame(m.pose, m.transl, m.betas, gl, hm)
        meta = {"handPose": pose_gl[0, 0].ravel(), "handTrans": transl_gl[0, 0], "handBeta": m.betas[0],
                "handJoints3D": common_to_mano21(Xgl[0], axis=0), "camMat": m.K, "objRot": np.zeros((3, 1)),
                "objName": "003_cracker_box"}
        assert (meta["handJoints3D"][:, 2] < 0).all()  # OpenGL: the hand has negative z
        write_pkl(root / "train" / seq / "meta" / f"{fid}.pkl", meta)
        (root / "train" / seq / "rgb").mkdir(exist_ok=True)
        (root / "train" / seq / "rgb" / f"{fid}.png").write_bytes(png_bytes(640, 480))
        lines.append(f"{seq}/{fid}")
        truth[f"{seq}/{fid}"] = (m, meta)
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    # evaluation: root joint only; ground truth not released next to it -> skipped with a reason
    write_pkl(root / "evaluation" / "SM1" / "meta" / "0000.pkl",
              {"handJoints3D": np.array([0.0, 0.0, -0.5]), "handBoundingBox": [1, 2, 3, 4], "camMat": np.eye(3)})
    (root / "evaluation.txt").write_text("SM1/0000\n")
    s = prepare("HO3D_v2", root, tmp_path / "store", hand_model="open", progress=False)
    assert s.clips == {"train": lines}
    assert "evaluation_xyz.json" in dict(s.skipped)["evaluation"]
    view = ClipStore(tmp_path / "store").split("train")
    for clip in view:
        m, meta = truth[clip.clip_id]
        assert clip.num_frames == 1 and clip.valid.tolist() == [[True, False]] and clip.domain == "ho3d"
        uv = np.zeros((1, 2, 21, 2))
        uv[0, 0] = ho3d_project(m.K, meta["handJoints3D"])[np.argsort(np.array(common_to_mano21(np.arange(21), 0)))]
        cam = to_camera(m.cam_from_world, m.joints)
        check_clip(clip, hm, joints_world=cam, cam_from_world=np.eye(4)[None], kp2d_truth=uv)
        assert clip.image is not None and clip.image.shape == (480, 640, 3)

    # evaluation with the released ground truth (OpenGL, MANO order, in the order of evaluation.txt)
    m = make_motion(rng, 1, hm, static_camera=True, size=(640, 480))
    Xgl = to_camera((D @ m.cam_from_world[0])[None], m.joints)[0]
    write_pkl(root / "evaluation" / "SM1" / "meta" / "0000.pkl",
              {"handJoints3D": Xgl[0, 0], "handBoundingBox": [1, 2, 3, 4], "camMat": m.K})
    (root / "evaluation_xyz.json").write_text(json.dumps([common_to_mano21(Xgl[0], axis=0).tolist()]))
    s = prepare("ho3d", root, tmp_path / "store2", split="test", progress=False, mano_dir=no_mano_dir(tmp_path))
    clip = ClipStore(tmp_path / "store2").split("test")[0]
    assert s.clips == {"test": ["SM1/0000"]} and clip.meta["pose_params"] == "none"
    check_clip(clip, joints_world=to_camera(m.cam_from_world, m.joints), cam_from_world=np.eye(4)[None])


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch SHOULD_NOT_EXIST",))


def test_ho3d_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "ho3d"
    root.mkdir()
    with pytest.raises(HandcastError, match="does not look like HO-3D"):
        prepare("ho3d", root, tmp_path / "s", progress=False)
    (root / "train.txt").write_text("ABF10/0000\nnot-a-valid-line\n")
    with pytest.raises(HandcastError, match="malformed line 2"):
        prepare("ho3d", root, tmp_path / "s", progress=False)
    (root / "train.txt").write_text("ABF10/0000\nABF10/0001\n")
    write_pkl(root / "train" / "ABF10" / "meta" / "0000.pkl", _Evil())
    (root / "train" / "ABF10" / "meta" / "0001.pkl").write_bytes(b"\x80\x02garbage")
    with pytest.raises(HandcastError, match="nothing converted.*2 item.*refused"):
        prepare("ho3d", root, tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists() and not (tmp_path / "SHOULD_NOT_EXIST").exists()


def test_h2o3d_clips(tmp_path, hm):
    rng = np.random.default_rng(1)
    root = tmp_path / "H2O3D"
    T = 6
    m = make_motion(rng, T, hm, static_camera=True, size=(640, 480))
    m.betas[1] = m.betas[0]  # H2O-3D: one shared beta
    from fixtures_prepare import keypoints

    m.joints[:] = keypoints(hm, m.pose, m.betas, m.transl)
    gl = D @ m.cam_from_world[0]
    Xgl = to_camera(np.broadcast_to(gl, (T, 4, 4)), m.joints)
    pose_gl, transl_gl = fit_to_frame(m.pose, m.transl, m.betas, gl, hm)
    lines = []
    for t in range(T):
        meta = {"camMat": m.K, "handBeta": m.betas[0]}
        for h, side in enumerate(("right", "left")):
            meta[f"{side}HandPose"] = pose_gl[t, h].ravel()
            meta[f"{side}HandTrans"] = transl_gl[t, h]
            meta[f"{side}HandJoints3D"] = common_to_mano21(Xgl[t, h], axis=0)
            meta[f"jointValid{side.capitalize()}"] = np.ones(21)
        if t == 2:
            meta["jointValidLeft"] = np.r_[np.ones(20), 0.0]  # one joint not valid -> left hand invalid
        write_pkl(root / "train" / "ABF1" / "meta" / f"{t:04d}.pkl", meta)
        lines.append(f"ABF1/{t:04d}")
    (root / "train" / "ABF1" / "rgb").mkdir()
    (root / "train" / "ABF1" / "rgb" / "0000.jpg").write_bytes(jpeg_bytes(640, 480))
    (root / "train.txt").write_text("\n".join(lines[::-1]) + "\n")  # order of the list does not matter
    # evaluation: root joints only -> skipped with that reason
    write_pkl(root / "evaluation" / "EV1" / "meta" / "0000.pkl",
              {"rightHandJoints3D": np.zeros(3), "leftHandJoints3D": np.zeros(3), "camMat": m.K})
    (root / "evaluation.txt").write_text("EV1/0000\n")
    s = prepare("H2O-3D", root, tmp_path / "store", hand_model="open", progress=False)
    assert s.clips == {"train": ["train/ABF1"]}
    assert "only root joints" in dict(s.skipped)["evaluation/EV1"]
    clip = ClipStore(tmp_path / "store").split("train")[0]
    assert clip.valid[:, 0].all() and clip.valid[:, 1].tolist() == [True, True, False, True, True, True]
    kp_truth = np.stack([[ho3d_project(m.K, common_to_mano21(Xgl[t, h], axis=0))[
        np.argsort(common_to_mano21(np.arange(21), 0))] for h in range(2)] for t in range(T)])
    check_clip(clip, hm, joints_world=to_camera(m.cam_from_world[:1].repeat(T, 0), m.joints),
               cam_from_world=np.tile(np.eye(4), (T, 1, 1)), kp2d_truth=kp_truth)
    assert np.allclose(clip.betas[0], clip.betas[1]) and clip.image is not None
