"""The real-input benchmark (handcast.infer.bench_real, ``handcast bench real``).

The helpers (3D sanity, matching, projection) are checked on known answers; the small version of the
benchmark runs on ../shared/data/real/ as a regression test with thresholds the shipped models pass with
margin (it skips when the shared folder or mediapipe is absent).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from handcast.infer.bench_real import (
    BONE_TOL,
    LIMIT_TOL_DEG,
    bend_angles,
    bone_lengths,
    depth_ok,
    hand_size,
    known_handedness,
    limit_violation_deg,
    limits_ok,
    match_detection,
    project_np,
    skeleton_ranges,
    skeleton_sanity,
)

REAL = Path(__file__).resolve().parents[3] / "shared" / "data" / "real"


@pytest.fixture(scope="module")
def ranges(hm):
    return skeleton_ranges(hm, n_poses=512)


def _rest(hm, betas=None):
    """Keypoints (2, 21, 3) m of the hand model at rest (flat hand)."""
    with torch.no_grad():
        b = torch.zeros(2, 10) if betas is None else torch.as_tensor(betas, dtype=torch.float32)
        return hm.keypoints(torch.zeros(2, 16, 3), b, rep="aa", convention="flat").double().numpy()


def test_bones_and_bends_known_answers():
    j = np.zeros((21, 3))
    for f in range(5):  # each finger a straight line of 1 cm bones along x, then a 90 degree turn at its tip-1
        for k in range(4):
            j[1 + 4 * f + k] = [0.01 * (k + 1), 0.02 * f, 0.0]
        j[4 + 4 * f] = j[3 + 4 * f] + [0.0, 0.0, 0.01]
    b = bone_lengths(j)
    np.testing.assert_allclose(b[[1, 2, 3]], 0.01)
    np.testing.assert_allclose(b[0], 0.01)
    a = bend_angles(j)
    assert a.shape == (15,)
    np.testing.assert_allclose(a[[1, 4, 7, 10, 13]], 0.0, atol=1e-9)  # middle joint of each finger: straight
    np.testing.assert_allclose(a[[2, 5, 8, 11, 14]], 90.0)  # the turn before each tip


def test_the_hand_model_passes_its_own_ranges_and_a_doubled_hand_fails(hm, ranges):
    hand = np.array([0, 1])
    for betas in (None, np.full((2, 10), 2.0), np.full((2, 10), -2.0)):
        s = skeleton_sanity(_rest(hm, betas), hand, ranges)
        assert s["bones_ok"].all() and s["bends_ok"].all()
    big = skeleton_sanity(_rest(hm) * (2 + BONE_TOL), hand, ranges)
    assert not big["bones_ok"].any() and big["bends_ok"].all()  # bends do not depend on size
    # a finger folded back on itself (180 degrees at the index PIP) is beyond any joint limit
    j = _rest(hm)[0]
    j[7] = j[6] - (j[7] - j[6])
    assert not skeleton_sanity(j, np.array(0), ranges)["bends_ok"]


def test_joint_limits_and_depth(hm):
    lim = hm.joint_limits.double().numpy()
    pose = np.zeros((3, 16, 3))
    pose[:, 1:] = lim[0].mean(-1)  # the middle of every range
    pose[1, 5, 1] = lim[0, 4, 1, 1] + np.radians(LIMIT_TOL_DEG / 2)  # slightly over: within the tolerance
    pose[2, 5, 1] = lim[0, 4, 1, 1] + np.radians(3 * LIMIT_TOL_DEG)
    pose[:, 0] = 2.0  # the root is free
    v = limit_violation_deg(pose, np.zeros(3, int), lim)
    np.testing.assert_allclose(v, [0.0, LIMIT_TOL_DEG / 2, 3 * LIMIT_TOL_DEG], atol=1e-9)
    assert limits_ok(pose, np.zeros(3, int), lim).tolist() == [True, True, False]
    assert depth_ok(np.array([[0, 0, 0.1], [0, 0, 0.5], [0, 0, 3.5], [1, 1, 2.9]])).tolist() == [False, True, False, True]


def test_projection_match_and_size():
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    np.testing.assert_allclose(project_np(np.array([[0.1, -0.2, 1.0], [0.0, 0.0, 2.0]]), K), [[60, 20], [50, 40]])
    assert np.isnan(project_np(np.array([0.0, 0.0, -1.0]), K)).all()
    gt = np.stack([np.linspace(0, 30, 21), np.linspace(0, 40, 21)], -1)
    vis = np.ones(21, bool)
    assert hand_size(gt) == pytest.approx(50.0)
    det = np.stack([gt + 100.0, gt + 3.0])  # slot 0 far away, slot 1 close
    assert match_detection(det, np.array([True, True]), gt, vis, 50.0) == 1
    assert match_detection(det, np.array([True, False]), gt, vis, 50.0) is None  # 141 px > 0.5 hand sizes
    assert match_detection(det, np.array([False, False]), gt, vis, 50.0) is None


def test_handedness_rules():
    assert known_handedness("freihand", Path("00017620.jpg")) == "right"
    assert known_handedness("panoptic", Path("ex2_2.flv_000040_l.jpg")) == "left"
    assert known_handedness("panoptic", Path("005880453_01_r.jpg")) == "right"
    assert known_handedness("onehand10k", Path("9.jpg")) is None


@pytest.mark.slow
def test_small_benchmark_on_real_data(tmp_path):
    """``handcast bench real --small``: 6 photos (2 a set) and 60 video frames, about 10-15 s on one thread."""
    if not (REAL / "mmpose").is_dir():
        pytest.skip(f"real test data not found at {REAL} (the shared data folder is absent)")
    pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install handcast[detect])")
    from handcast.cli import main

    out = tmp_path / "real.md"
    assert main(["bench", "real", "--data", str(REAL), "--small", "--out", str(out), "--quiet"]) == 0
    r = json.loads(out.with_suffix(".json").read_text())
    md = out.read_text()
    assert md.startswith("# Real-input benchmark") and "handcast bench real" in md and "| pose | gt |" in md
    assert len(r["rows"]) == 6 and r["small"] and r["max_frames"] == 60
    rows = {row["image"]: row for row in r["rows"]}
    assert rows["00017620.jpg"]["handedness_from"] == "data" and rows["00017620.jpg"]["handedness"] == "right"
    assert rows["005880453_01_l.jpg"]["handedness"] == "left"
    s = r["summary"]
    # detect (measured: 4 of 6 found, PCK@0.2 0.84, mean 0.10 hand sizes)
    d = s["detect"]["mediapipe"]
    assert d["rate"] >= 0.5 and d["pck02"] >= 0.7 and d["mean_frac"] < 0.2
    # pose on the ground-truth keypoints: an output for every hand, sane skeletons (measured: bones 83 %,
    # bends 100 %; median 0.79 hand sizes off in 2D, the wrist depth mostly out of range)
    p = s["pose"]["gt"]
    assert p["rate"] == 1.0 and p["bones_ok"] >= 0.6 and p["bends_ok"] >= 0.8 and p["median_frac"] < 1.5
    # forecast frame 0 (measured: best of 5 median 0.44 hand sizes; depth, bones, bends 100 %)
    for src in ("gt", "mediapipe"):
        f = s["forecast"][src]
        assert f["best"]["median_frac"] < 1.0 and f["best"]["median_px"] <= f["samples"]["median_px"] + 1e-6
        assert f["depth_ok"] >= 0.9 and f["bones_ok"] >= 0.9 and f["bends_ok"] >= 0.9
    # lift on the video against mediapipe's tracks (measured: L alone 71 px mean, refined 5.2 px)
    lf = r["lift"]
    assert lf["frames"] == 60 and lf["hands_observed"]["right"] >= 55
    assert lf["refined"]["mean_px"] < 15.0 and lf["refined"]["pck02"] >= 0.95
    assert lf["refined"]["mean_px"] < lf["lift_only"]["mean_px"]
    assert lf["refined"]["mean_px"] == pytest.approx(lf["refined"]["reported_reproj_error_px"], rel=1e-4)
    assert lf["refined"]["depth_ok"] >= 0.9 and lf["refined"]["bones_ok"] >= 0.9 and lf["refined"]["limits_ok"] >= 0.5
    assert r["wall_s"] < 120


def test_missing_data_folder_is_a_one_line_error(tmp_path, capsys):
    from handcast.cli import main

    assert main(["bench", "real", "--data", str(tmp_path / "none"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("handcast bench: error: no mmpose/<set>/*.json") and "\n" not in err
