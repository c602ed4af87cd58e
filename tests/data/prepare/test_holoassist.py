"""HoloAssist converter on a fixture in the PSI export layout: camera poses (camera-local -> world, MathNet
axes x forward / y left / z up) and 26 hand-joint 4x4 poses per line with varying leading columns.
Round trip: the world joints, mapped by K * axis * inv(pose) as the official projection script does,
land on the clip's 2D keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures_prepare import check_clip, fmt, make_motion
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.errors import HandcastError

SIZE = (896, 504)
AXIS = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], float)  # MathNet -> OpenCV
COMMON_IN_26 = [1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 17, 18, 19, 20, 22, 23, 24, 25]


def holo_project(K, pose_local_to_world, X):
    """HoloAssist's projection: K * axis * inv(Pose) * p."""
    T = X.shape[0]
    out = np.zeros(X.shape[:-1] + (2,))
    for t in range(T):
        M = AXIS @ np.linalg.inv(pose_local_to_world[t])
        p = X[t].reshape(-1, 3) @ M[:3, :3].T + M[:3, 3]
        uvw = p @ K.T
        out[t] = (uvw[:, :2] / uvw[:, 2:]).reshape(X.shape[1:-1] + (2,))
    return out


def write_video(ex, m, *, transposed_k=False, untracked=()):
    T = m.pose.shape[0]
    (ex / "Video").mkdir(parents=True)
    (ex / "Hands").mkdir()
    K = m.K.T if transposed_k else m.K
    (ex / "Video" / "Intrinsics.txt").write_text(fmt([*K.ravel(), *[0.0] * 8, m.K[0, 0], m.K[0, 0], m.K[1, 1],
                                                      m.K[0, 2], m.K[1, 2], 1, *SIZE]))
    P = np.linalg.inv(m.cam_from_world) @ AXIS  # camera-local (MathNet) -> world
    lines = [f"{t / 30:.6f}\t{637000000000000000 + t * 333333}\t" + "\t".join(f"{v:.9g}" for v in P[t].ravel())
             for t in range(T)]
    (ex / "Video" / "Pose_sync.txt").write_text("\n".join(lines) + "\n")
    for h, (side, lead) in enumerate((("Right", 3), ("Left", 5))):
        rows = []
        for t in range(T):
            pos26 = np.zeros((26, 3))
            pos26[COMMON_IN_26] = m.joints[t, h]
            pos26[[0, 6, 11, 16, 21]] = m.joints[t, h, 0] + 0.01  # palm, metacarpals: not used
            mats = np.tile(np.eye(4), (26, 1, 1))
            mats[:, :3, 3] = pos26
            flags = np.ones(52)
            if (t, h) in untracked:
                flags[26 + 8] = 0  # index intermediate not tracked
            rows.append(" ".join(["0"] * lead) + " " + fmt([*mats.ravel(), *flags]).strip())
        (ex / "Hands" / f"{side}_sync.txt").write_text("\n".join(rows) + "\n")
    return P


def test_holoassist_round_trip(tmp_path, hm):
    rng = np.random.default_rng(0)
    root = tmp_path / "holo"
    m1 = make_motion(rng, 6, hm, size=SIZE)
    P1 = write_video(root / "R001-video" / "Export_py", m1, untracked=((2, 1),))
    m2 = make_motion(rng, 4, hm, size=SIZE)
    write_video(root / "R002-video" / "Export_py", m2, transposed_k=True)
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "val.txt").write_text("R002-video\n")
    s = prepare("holoassist", root, tmp_path / "store", splits_dir=str(splits), progress=False)
    assert s.clips == {"train": ["R001-video"], "val": ["R002-video"]}
    store = ClipStore(tmp_path / "store")
    c1 = store.split("train")[0]
    assert abs(c1.fps - 30.0) < 1e-2 and c1.meta["joints_source"] == "hololens_tracking"
    assert c1.valid[:, 1].tolist() == [True, True, False, True, True, True]
    check_clip(c1, joints_world=m1.joints, cam_from_world=m1.cam_from_world,
               kp2d_truth=holo_project(m1.K, P1, m1.joints))
    c2 = store.split("val")[0]
    assert np.allclose(c2.K, m2.K, atol=1e-3)  # a transposed intrinsics matrix is recognised
    check_clip(c2, joints_world=m2.joints, cam_from_world=m2.cam_from_world)


def test_holoassist_bad_input(tmp_path, hm):
    root = tmp_path / "holo"
    root.mkdir()
    with pytest.raises(HandcastError, match="does not look like HoloAssist"):
        prepare("holoassist", root, tmp_path / "store", progress=False)
    rng = np.random.default_rng(1)
    m = make_motion(rng, 3, hm, size=SIZE)
    write_video(root / "A" / "Export_py", m)
    write_video(root / "B" / "Export_py", m)
    (root / "B" / "Export_py" / "Hands" / "Left_sync.txt").unlink()
    lines = (root / "A" / "Export_py" / "Video" / "Pose_sync.txt").read_text().splitlines()
    lines[1] = "0.1\t12\tnot numbers"
    (root / "A" / "Export_py" / "Video" / "Pose_sync.txt").write_text("\n".join(lines) + "\n")
    s = prepare("holoassist", root, tmp_path / "store", progress=False)
    reasons = dict(s.skipped)
    assert "missing file" in reasons["B"] and "A frame 1" in reasons
    assert s.clips == {"train": ["A@0", "A@2"]}
