import numpy as np
import pytest
import torch

from handcast.fit.align import align_offsets, align_to_tracks
from handcast.geometry import aa_to_rotmat, project, transform_points
from handcast.hand import HandModel


@pytest.fixture(scope="module")
def hands():
    return HandModel("open")


def _scene(T=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    pose = 0.3 * torch.randn(T, 2, 16, 3, generator=g)
    transl = torch.tensor([[0.08, 0.02, 0.45], [-0.08, 0.03, 0.5]]).expand(T, 2, 3).clone()
    transl += 0.02 * torch.randn(T, 2, 3, generator=g)
    K = torch.tensor([[300.0, 0, 128], [0, 300, 96], [0, 0, 1]])
    w2c = torch.eye(4).repeat(T, 1, 1)
    w2c[:, :3, :3] = aa_to_rotmat(torch.linspace(0, 0.2, T)[:, None] * torch.tensor([0.0, 1.0, 0.3]))
    w2c[:, :3, 3] = torch.linspace(0, 0.05, T)[:, None] * torch.tensor([1.0, 0.0, 0.5])
    return pose, transl, K, w2c


def test_recovers_a_translation_from_exact_tracks(hands):
    pose, transl, K, w2c = _scene()
    betas = torch.zeros(2, 10)
    X = hands.keypoints(pose, betas.expand(4, 2, 10), transl, rep="aa", convention="flat")
    uv = project(transform_points(w2c[:, None, None], X), K)
    conf = torch.ones(4, 2, 21)
    obs = torch.ones(4, 2, dtype=torch.bool)
    start = transl + torch.tensor([0.03, -0.02, 0.1])
    got = align_to_tracks(hands, pose, start, betas, uv, conf, obs, K, w2c)
    assert torch.allclose(got, transl, atol=1e-5)
    # batched over clips gives the same offsets as one clip at a time
    X0 = hands.keypoints(pose, betas.expand(4, 2, 10), start, rep="aa", convention="flat").numpy()
    one = align_offsets(X0, uv.numpy(), conf.numpy(), obs.numpy(), K.numpy(), w2c.numpy())
    two = align_offsets(np.stack([X0, X0]), np.stack([uv.numpy()] * 2), np.stack([conf.numpy()] * 2),
                        np.stack([obs.numpy()] * 2), np.stack([K.numpy()] * 2), np.stack([w2c.numpy()] * 2))
    assert np.allclose(two[0], one) and np.allclose(two[1], one)


def test_unobserved_and_sparse_hands_keep_their_translation(hands):
    pose, transl, K, w2c = _scene(seed=1)
    betas = torch.zeros(2, 10)
    X = hands.keypoints(pose, betas.expand(4, 2, 10), transl, rep="aa", convention="flat")
    uv = project(transform_points(w2c[:, None, None], X), K)
    conf = torch.ones(4, 2, 21)
    conf[1, 0, 2:] = 0.0  # two keypoints: too few
    uv[conf == 0] = float("nan")
    obs = torch.ones(4, 2, dtype=torch.bool)
    obs[2, 1] = False
    start = transl + 0.05
    got = align_to_tracks(hands, pose, start, betas, uv, conf, obs, K, w2c)
    assert torch.equal(got[1, 0], start[1, 0]) and torch.equal(got[2, 1], start[2, 1])
    assert torch.isfinite(got).all()
    assert torch.allclose(got[0], transl[0], atol=1e-5)


def test_a_larger_hand_is_placed_closer(hands):
    # the depth follows the hand's size in the image: the mean-shape model of a hand scaled by s about the
    # camera centre lands at about 1 / s of its true depth ratio
    pose, transl, K, w2c = _scene(seed=2)
    w2c = torch.eye(4).repeat(4, 1, 1)
    betas = torch.zeros(2, 10)
    X = hands.keypoints(pose, betas.expand(4, 2, 10), transl, rep="aa", convention="flat")
    wrist = X[..., :1, :]
    big = wrist + 1.2 * (X - wrist)  # a 20 % larger hand at the same wrist
    uv = project(big, K)
    got = align_to_tracks(hands, pose, transl, betas, uv, torch.ones(4, 2, 21), torch.ones(4, 2, dtype=torch.bool), K, w2c)
    ratio = (got[..., 2] + (X[..., 0, 2] - transl[..., 2])) / X[..., 0, 2]  # new wrist depth / true
    assert torch.allclose(ratio, torch.full_like(ratio, 1 / 1.2), atol=0.03)
