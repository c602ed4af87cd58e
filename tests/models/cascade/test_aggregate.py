"""Aggregation of hypotheses and root fitting (handcast.models.cascade.aggregate): known answers on hand-made inputs."""

import numpy as np
import pytest
import torch

from handcast.errors import HandcastError
from handcast.models.cascade.aggregate import (
    aggregate,
    best_of_n,
    fit_root,
    joint_median,
    pose_mean,
    reprojection_errors,
    reprojection_weights,
    select,
    weighted_mean,
)

K = np.array([[500.0, 0.0, 95.5], [0.0, 500.0, 127.5], [0.0, 0.0, 1.0]])


def _hand(seed=0, n=21):
    rng = np.random.default_rng(seed)
    j = rng.normal(0, 0.04, (n, 3))
    return j - j[:1]


def _project(P, K=K):
    uvw = P @ K.T
    return uvw[..., :2] / uvw[..., 2:]


def test_pose_mean_known_answer():
    x = np.stack([np.zeros((3, 3)), np.ones((3, 3)) * 2.0])
    np.testing.assert_allclose(pose_mean(x), np.ones((3, 3)))
    assert isinstance(pose_mean(x), np.ndarray)  # numpy in -> numpy out


def test_joint_median_ignores_a_minority_of_outliers():
    good = np.array([[0.01, 0.02, 0.03]])
    x = np.concatenate([np.repeat(good[None], 4, 0), np.array([[[5.0, -3.0, 2.0]]])])  # (5, 1, 3)
    np.testing.assert_allclose(joint_median(x), good, atol=1e-6)
    assert np.linalg.norm(pose_mean(x) - good) > 0.5  # the mean is dragged away


def test_joint_median_minimises_the_sum_of_distances():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(7, 4, 3))
    m = joint_median(x, iterations=200)
    cost = np.linalg.norm(x - m, axis=-1).sum(0)
    for _ in range(20):
        p = m + rng.normal(0, 0.05, m.shape)
        assert (np.linalg.norm(x - p, axis=-1).sum(0) >= cost - 1e-6).all()


def test_joint_median_of_two_is_the_mean():
    x = np.array([[[0.0, 0, 0]], [[2.0, 0, 0]]])
    np.testing.assert_allclose(joint_median(x), [[1.0, 0, 0]])


def test_fit_root_recovers_the_translation_exactly():
    J = _hand(0)
    t = np.array([0.03, -0.02, 0.45])
    uv = _project(J + t)
    np.testing.assert_allclose(fit_root(J, uv, np.ones(21), K), t, atol=1e-9)


def test_fit_root_ignores_missing_keypoints_and_falls_back():
    J = _hand(1)
    t = np.array([-0.05, 0.01, 0.6])
    uv = _project(J + t)
    conf = np.ones(21)
    uv[3:8] = np.nan  # missing keypoints carry garbage; conf 0 must make them irrelevant
    conf[3:8] = 0
    np.testing.assert_allclose(fit_root(J, uv, conf, K), t, atol=1e-9)
    conf[:] = 0
    conf[0] = 1
    np.testing.assert_allclose(fit_root(J, uv, conf, K, min_depth=0.05), [0, 0, 0.05])


def test_reprojection_weighting_prefers_the_consistent_hypothesis():
    J = _hand(2)
    t = np.array([0.0, 0.0, 0.5])
    uv = _project(J + t)
    wrong = J.copy()
    wrong[5:] = wrong[5:] * np.array([-1.0, 1.0, 1.0])  # fingers mirrored: inconsistent with the 2D keypoints
    samples = np.stack([wrong, J, wrong])  # (3, 21, 3)
    err = reprojection_errors(samples, uv, np.ones(21), K)
    assert err.shape == (3, 21)
    np.testing.assert_allclose(err[1], 0.0, atol=1e-6)
    w = reprojection_weights(err, tau=1.0)
    np.testing.assert_allclose(w.sum(0), 1.0)
    out = weighted_mean(samples, w)
    np.testing.assert_allclose(out, J, atol=1e-3)
    j, v = aggregate(torch.as_tensor(samples)[None], torch.as_tensor(samples)[None], "reproj", torch.as_tensor(uv)[None],
                     torch.ones(1, 21, dtype=torch.float64), torch.as_tensor(K)[None], tau=1.0)
    np.testing.assert_allclose(j[0].numpy(), J, atol=1e-3)
    assert v.shape == (1, 21, 3)


def test_weighted_mean_with_one_hot_weights_selects():
    x = np.random.default_rng(3).normal(size=(2, 4, 5, 3))
    w = np.zeros((2, 4))
    w[0, 2] = 1
    w[1, 0] = 1
    out = weighted_mean(x, w)
    np.testing.assert_allclose(out, select(x, np.array([2, 0])))


def test_best_of_n_is_an_oracle_that_sees_through_similarity():
    gt = _hand(4)
    noisy = gt + np.random.default_rng(5).normal(0, 0.01, gt.shape)
    R = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])
    similar = 1.3 * gt @ R.T + 0.2  # same shape, other scale / rotation / position
    samples = np.stack([noisy, similar])
    assert int(best_of_n(samples, gt, procrustes=True)) == 1
    assert int(best_of_n(samples, gt, procrustes=False)) == 0


def test_aggregate_single_mean_median_shapes():
    js = torch.randn(3, 5, 21, 3)
    vs = torch.randn(3, 5, 40, 3)
    for m in ("single", "mean", "median"):
        j, v = aggregate(js, vs, m)
        assert j.shape == (3, 21, 3) and v.shape == (3, 40, 3)
    torch.testing.assert_close(aggregate(js, vs, "single")[0], js[:, 0])


def test_bad_inputs_are_clear_errors():
    js = torch.randn(2, 3, 21, 3)
    with pytest.raises(HandcastError, match="unknown aggregation"):
        aggregate(js, None, "vote")
    with pytest.raises(HandcastError, match="needs the 2D keypoints"):
        aggregate(js, None, "reproj")
    with pytest.raises(HandcastError, match=r"\(\.\.\., S, P, 3\)"):
        pose_mean(np.zeros((4, 2)))
    with pytest.raises(HandcastError, match="tau"):
        reprojection_weights(np.zeros((3, 21)), tau=0.0)
    with pytest.raises(HandcastError, match="do not match"):
        weighted_mean(np.zeros((3, 21, 3)), np.ones(4))
