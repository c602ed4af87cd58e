"""Anchors for forecasting: L + alignment + refinement on the observed frames' 2D keypoints."""

import torch

from handcast.fit.anchor import AnchorConfig, lift_prefix
from handcast.hand import HandModel
from handcast.models.checkpoint import shipped_checkpoint
from handcast.models.lifting import load_lift


def _project(X, K):
    return X[..., :2] / X[..., 2:] * torch.stack([K[0, 0], K[1, 1]]) + K[:2, 2]


def test_anchor_reprojects_onto_the_keypoints_and_skips_hands_with_too_few(one_thread):
    torch.manual_seed(0)
    hands = HandModel("auto")
    lift = load_lift(shipped_checkpoint("lift_tiny.safetensors", "handcast train lift"))
    K = torch.tensor([[500.0, 0, 319.5], [0, 500, 239.5], [0, 0, 1]])
    n = 3
    pose = (0.1 * torch.randn(1, 1, 2, 16, 3) + 0.02 * torch.arange(n).view(1, n, 1, 1, 1)).expand(1, n, 2, 16, 3)  # a slow motion
    transl = torch.tensor([[0.08, 0.0, 0.55], [-0.08, 0.02, 0.6]]).expand(1, n, 2, 3)
    X = hands.keypoints(pose, torch.zeros(1, n, 2, 10), transl, rep="aa", convention="flat")
    uv = _project(X, K)
    conf = torch.ones(1, n, 2, 21)
    conf[:, :, 1, 2:] = 0  # the left hand: 2 keypoints, not enough
    cfg = AnchorConfig(static_frames=8, steps=2, iterations=300)
    p, w, known, err = lift_prefix(lift, hands, uv, conf, K[None], torch.tensor([[640.0, 480.0]]), config=cfg,
                                   generator=torch.Generator().manual_seed(0))
    assert p.shape == (1, n, 2, 16, 3) and w.shape == (1, n, 2, 3)
    assert known[..., 0].all() and not known[..., 1].any()
    # the right hand's result reprojects onto its keypoints (a few px; L alone is tens of px off)
    Y = hands.keypoints(p, torch.zeros(1, n, 2, 10), w - hands.rest_joints(torch.zeros(2, 10))[:, 0], rep="aa",
                        convention="flat")
    d = (_project(Y, K) - uv).norm(dim=-1)[..., 0, :]
    assert d.mean() < 8, d.mean()  # measured 5.6 px; the hand is ~80 px tall
    torch.testing.assert_close(err[0], d.mean(), atol=1e-3, rtol=1e-3)
    # L + alignment alone (no refinement) is further off
    _, _, _, e0 = lift_prefix(lift, hands, uv, conf, K[None], torch.tensor([[640.0, 480.0]]),
                              config=AnchorConfig(static_frames=8, steps=2, iterations=0),
                              generator=torch.Generator().manual_seed(0))
    assert float(e0[0]) > 2 * float(err[0]), (e0, err)
    # one photo (N = 1) goes through L as a still track of static_frames
    p1, w1, k1, e1 = lift_prefix(lift, hands, uv[:, :1], conf[:, :1], K[None], torch.tensor([[640.0, 480.0]]),
                                 config=cfg)
    assert p1.shape == (1, 1, 2, 16, 3) and k1[0, 0].tolist() == [True, False] and float(e1[0]) < 8
