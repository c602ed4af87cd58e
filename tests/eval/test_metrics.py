import math

import numpy as np
import pytest
import roma
import torch

import handcast.metrics as hm
from handcast.errors import HandcastError
from handcast.eval import metrics as M


def make_gt(N=3, T=6, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(N, 1, 2, 21, 3)) * 0.05 + np.array([0.0, 0.0, 0.5])
    motion = np.cumsum(rng.normal(size=(N, T, 2, 1, 3)) * 0.01, axis=1)
    gt = base + motion
    gt[:, :, 1] += np.array([-0.2, 0.0, 0.0])  # left hand beside the right one
    return gt, np.ones((N, T, 2), dtype=bool)


def rot(seed, n=1):
    torch.manual_seed(seed)
    return roma.random_rotmat(n, dtype=torch.float64).numpy()


def test_thin_reexport():
    assert hm.forecast_errors is M.forecast_errors and hm.f_score is M.f_score


def test_constant_offset_known_answers():
    gt, valid = make_gt()
    pred = (gt + np.array([0.0, 0.01, 0.0]))[:, None]  # 1 cm everywhere, one sample
    e = M.forecast_errors(pred, gt, valid)
    np.testing.assert_allclose(e["M"], 1.0, atol=1e-9)
    np.testing.assert_allclose(e["M_t"], 1.0, atol=1e-9)
    for k in ("M-G", "M-F", "MR", "RA"):
        np.testing.assert_allclose(e[k], 0.0, atol=1e-7)


def test_similarity_copy_per_hand_gives_zero_aligned_errors():
    gt, valid = make_gt(N=2, T=5)
    R = rot(3, 2)
    pred = gt.copy()
    for h, (s, t) in enumerate(((1.3, [0.1, 0.2, 0.3]), (0.8, [-0.3, 0.0, 0.1]))):  # a different similarity per hand
        pred[:, :, h] = s * gt[:, :, h] @ R[h].T + np.array(t)
    e = M.forecast_errors(pred[:, None], gt, valid)
    assert (e["M"] > 1.0).all()
    np.testing.assert_allclose(e["M-G"], 0.0, atol=1e-7)
    np.testing.assert_allclose(e["M-F"], 0.0, atol=1e-7)
    assert (e["MR"] > 1.0).all()


def test_mrrpe_known_answer():
    gt, valid = make_gt(N=1, T=4)
    pred = gt.copy()
    pred[:, :, 0] += np.array([0.03, 0.0, 0.0])  # right hand 3 cm in x
    pred[:, :, 1] += np.array([0.0, 0.04, 0.0])  # left hand 4 cm in y
    e = M.forecast_errors(pred[:, None], gt, valid)
    assert e["MR"][0, 0] == pytest.approx(5.0)
    assert e["M"][0, 0] == pytest.approx(3.5)
    assert e["RA"][0, 0] == pytest.approx(0.0, abs=1e-9)


def test_first_frame_alignment_known_answer():
    gt, valid = make_gt(N=1, T=3)
    pred = gt + (np.arange(3) * 0.01)[None, :, None, None, None] * np.array([1.0, 0, 0])  # drift 0, 1, 2 cm
    e = M.forecast_errors(pred[:, None], gt, valid)
    assert e["M-F"][0, 0] == pytest.approx(1.0)  # fit on frame 0 is the identity
    assert e["M"][0, 0] == pytest.approx(1.0)
    np.testing.assert_allclose(e["M_t"][0, 0], [0.0, 1.0, 2.0], atol=1e-9)
    assert 0.3 < e["M-G"][0, 0] < 0.8  # one fit for all frames cannot undo the drift (translation-only: 2/3 cm)
    # first VALID frame: with frame 0 invalid the fit uses frame 1 -> errors 0 (f1), 1 (f2)
    valid2 = valid.copy()
    valid2[:, 0] = False
    e2 = M.forecast_errors(pred[:, None], gt, valid2)
    assert e2["M-F"][0, 0] == pytest.approx(0.5)


def test_masking_ignores_invalid_entries():
    gt, valid = make_gt(N=2, T=5)
    pred = (gt + np.array([0.0, 0.0, 0.02]))[:, None].copy()
    valid[0, 3:, 1] = False  # left hand lost at the end of clip 0
    valid[1, :, 0] = False  # right hand never seen in clip 1
    gt = gt.copy()
    gt[~valid] = np.nan  # garbage where invalid
    pred[:, 0][~valid] = 1e3
    e = M.forecast_errors(pred, gt, valid)
    np.testing.assert_allclose(e["M"], 2.0, atol=1e-9)
    for k in ("M-G", "M-F", "RA"):
        np.testing.assert_allclose(e[k], 0.0, atol=1e-7)
    assert e["MR"][0, 0] == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(e["MR"][1, 0])  # no frame with both hands
    assert np.isfinite(e["M_t"][0, 0]).all()


def test_clip_with_nothing_valid_is_skipped_in_means():
    gt, valid = make_gt(N=2, T=4)
    pred = (gt + np.array([0.01, 0.0, 0.0]))[:, None]
    pred[1] += np.array([0.05, 0, 0])
    valid[1] = False
    res = M.summarize_forecast(M.forecast_errors(pred, gt, valid))
    assert res["best_of_n"]["M"] == pytest.approx(1.0)
    assert res["mean_of_n"]["M"] == pytest.approx(1.0)


def test_best_of_n_picks_lowest_sum_and_mean_of_n_averages():
    gt, valid = make_gt(N=2, T=4)
    offsets = np.array([0.03, 0.01, 0.02])
    pred = gt[:, None] + offsets[None, :, None, None, None, None] * np.array([1.0, 0, 0])
    pred = pred.copy()
    pred[1, 2] = pred[1, 1] - np.array([0.01, 0.0, 0.0])  # clip 1: sample 2 is exact
    e = M.forecast_errors(pred, gt, valid)
    best = M.best_of_n_index(e)
    assert best.tolist() == [1, 2]
    res = M.summarize_forecast(e)
    assert res["best_of_n"]["M"] == pytest.approx((1.0 + 0.0) / 2)
    assert res["mean_of_n"]["M"] == pytest.approx((2.0 + (3 + 1 + 0) / 3) / 2)
    np.testing.assert_allclose(res["horizon_best_of_n"], 0.5, atol=1e-9)
    assert res["horizon_best_of_n"].shape == (4,)


def test_best_of_n_uses_the_sum_not_only_m():
    e = {"M": np.array([[1.0, 2.0]]), "M-G": np.array([[5.0, 0.5]]), "M-F": np.array([[0.0, 0.0]]),
         "MR": np.array([[np.nan, np.nan]])}
    assert M.best_of_n_index(e).tolist() == [1]


def test_chunking_gives_same_answer():
    gt, valid = make_gt(N=5, T=4)
    pred = gt[:, None] + np.random.default_rng(1).normal(size=(5, 2, 4, 2, 21, 3)) * 0.01
    a = M.forecast_errors(pred, gt, valid)
    b = M.forecast_errors(pred, gt, valid, chunk_elems=1)
    for k in a:
        np.testing.assert_allclose(a[k], b[k])


def test_shape_errors():
    gt, valid = make_gt(N=1, T=2)
    with pytest.raises(HandcastError, match="expected"):
        M.forecast_errors(gt[:, None, ..., :2], gt, valid)
    with pytest.raises(HandcastError):
        M.mpjpe_cm(gt, gt, valid[:, :1, :1])


def test_diversity_and_multimodality_known_answers():
    assert M.diversity(np.ones((10, 7))) == 0.0
    assert M.diversity(np.array([[0.0, 0.0], [3.0, 4.0]]), num_pairs=50) == pytest.approx(5.0)
    assert math.isnan(M.diversity(np.zeros((1, 3))))
    x = np.random.default_rng(0).normal(size=(20, 4))
    assert M.diversity(x, seed=3) == M.diversity(x, seed=3)
    assert M.multimodality(np.ones((4, 5, 3))) == 0.0
    two = np.array([[[0.0, 0.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 1.0]]])  # (N=2, S=2, D=2)
    assert M.multimodality(two) == pytest.approx(3.0)
    three = np.array([[[0.0], [1.0], [3.0]]])  # pairs 1, 3, 2
    assert M.multimodality(three) == pytest.approx(2.0)
    g = M.grouped_multimodality(np.array([[0.0], [2.0], [5.0], [9.0]]), np.array(["a", "a", "b", "c"]))
    assert g == pytest.approx(2.0)


def test_motion_params_layout_and_masking():
    pose = np.zeros((3, 2, 16, 6))
    pose[:, 0] = 1.0
    pose[:, 1] = 2.0
    tr = np.zeros((3, 2, 3))
    tr[:, 0] = 3.0
    tr[:, 1] = 4.0
    v = np.ones((3, 2), bool)
    v[1, 1] = False
    x = M.motion_params(pose, tr, v)
    assert x.shape == (3 * 198,)
    f0 = x[:198]
    assert (f0[:96] == 1).all() and (f0[96:192] == 2).all() and (f0[192:195] == 3).all() and (f0[195:] == 4).all()
    f1 = x[198:396]
    assert (f1[96:192] == 0).all() and (f1[195:] == 0).all() and (f1[:96] == 1).all()


def test_pose_estimation_metrics():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(4, 21, 3)) * 0.05
    np.testing.assert_allclose(M.mpjpe(gt + np.array([0.0, 0.003, 0.004]), gt), 5.0)
    R = rot(1, 4)
    pred = 1.2 * np.einsum("bij,bnj->bni", R, gt) + 0.3
    assert (M.mpjpe(pred, gt) > 10).all()
    np.testing.assert_allclose(M.pa_mpjpe(pred, gt), 0.0, atol=1e-9)
    verts = rng.normal(size=(2, 778, 3)) * 0.05
    vp = 0.9 * np.einsum("bij,bnj->bni", R[:2], verts) - 0.1
    np.testing.assert_allclose(M.pa_mpvpe(vp, verts), 0.0, atol=1e-9)
    assert M.pa_mpjpe(torch.from_numpy(pred), torch.from_numpy(gt)).shape == (4,)


def test_f_score_known_answer_and_alignment():
    pred = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    gt = np.array([[0.0, 0.0, 0.004], [0.0, 1.0, 0.0], [0.0, 0.0, 0.005]])
    f = M.f_score(pred, gt, 0.01, align=False)  # P = 1/2, R = 2/3 -> F = 4/7
    assert f == pytest.approx(4 / 7)
    assert M.f_score(pred, gt, 0.001, align=False) == 0.0
    both = M.f_score(pred, gt, [0.001, 0.01], align=False)
    assert both.shape == (2,) and both.tolist() == pytest.approx([0.0, 4 / 7])
    rng = np.random.default_rng(2)
    verts = rng.normal(size=(3, 50, 3)) * 0.05
    R = rot(5, 3)
    moved = 1.1 * np.einsum("bij,bnj->bni", R, verts) + 0.2
    np.testing.assert_allclose(M.f_score(moved, verts, 0.005), 1.0)
    assert (M.f_score(moved, verts, 0.005, align=False) < 0.5).all()
    np.testing.assert_allclose(M.f_score(moved, verts, 0.005, chunk=1), M.f_score(moved, verts, 0.005))


def test_aligned_metrics_ignore_constant_translations():
    # why subtracting the first-frame root (as the reference does) is a no-op for M-G and M-F
    gt, valid = make_gt(N=2, T=5, seed=4)
    pred = gt[:, None] + np.random.default_rng(5).normal(size=(2, 2, 5, 2, 21, 3)) * 0.01
    a = M.forecast_errors(pred, gt, valid)
    b = M.forecast_errors(pred - pred[:, :, :1, :, :1], gt - gt[:, :1, :, :1], valid)
    for k in ("M-G", "M-F", "RA"):
        np.testing.assert_allclose(a[k], b[k], atol=1e-9)
    assert not np.allclose(a["M"], b["M"])
