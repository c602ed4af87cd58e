"""Anchors for forecasting: L + alignment + refinement on the observed frames' 2D keypoints."""

import pytest
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


class _FixedLift:
    """A stand-in for L that returns a given motion (B, T, 2, 16, 3) / wrists (B, T, 2, 3) for any input."""

    def __init__(self, pose, wrist):
        self.pose, self.wrist = pose, wrist

    def sample(self, batch, n, sampler, steps, generator=None):
        from handcast.geometry import aa_to_6d

        t = batch["kp2d"].shape[1]
        return aa_to_6d(self.pose[:, :1].expand(-1, t, -1, -1, -1))[:, None], self.wrist[:, :1].expand(-1, t, -1, -1)[:, None]


def _misread_scene():
    """Two hands 0.86-0.91 m away seen by a 1280 x 720 camera, and a stand-in L that reads both turned over about
    their own axis (``orientation_turns()[9]``, one of the 24 starts) with the wrists 10 cm too far:
    (hands, K, true keypoints X (1, 1, 2, 21, 3), stand-in L)."""
    from handcast.fit.anchor import orientation_turns
    from handcast.geometry import aa_to_rotmat, rotmat_to_aa

    hands = HandModel("auto")
    K = torch.tensor([[900.0, 0, 639.5], [0, 900, 359.5], [0, 0, 1]])
    g = torch.Generator().manual_seed(3)
    pose = 0.15 * torch.randn(1, 1, 2, 16, 3, generator=g)
    pose[..., 0, :] = torch.tensor([[0.4, 2.6, 0.3], [0.2, -0.5, 0.1]])
    transl = torch.tensor([[[[0.05, 0.02, 0.9], [-0.12, 0.0, 0.85]]]])
    X = hands.keypoints(pose, torch.zeros(1, 1, 2, 10), transl, rep="aa", convention="flat")
    wrong = pose.clone()
    wrong[..., 0, :] = rotmat_to_aa(aa_to_rotmat(pose[..., 0, :]) @ orientation_turns()[9])
    return hands, K, X, _FixedLift(wrong, X[..., 0, :] + torch.tensor([0.0, 0.0, 0.1]))


def test_orientation_starts_recover_a_misread_hand(one_thread):
    """From one view L may read a hand turned over (palm for back): the refinement alone stays in that
    minimum, the 24 orientation starts find the true hand (exact keypoints: a near-zero error, the true wrist)."""
    from handcast.fit.anchor import orientation_turns

    turns = orientation_turns()
    assert turns.shape == (24, 3, 3) and torch.allclose(turns[0], torch.eye(3))
    assert torch.allclose(turns @ turns.transpose(-1, -2), torch.eye(3).expand(24, 3, 3))
    assert len({tuple(t.flatten().tolist()) for t in turns}) == 24 and (torch.linalg.det(turns) > 0).all()

    hands, K, X, fake = _misread_scene()
    uv, conf, wrist = _project(X, K), torch.ones(1, 1, 2, 21), X[..., 0, :]
    res = {}
    for m, ratio in ((1, 0.75), (24, 0.75), (24, 0.0)):
        cfg = AnchorConfig(static_frames=2, iterations=300, orientation_starts=m, switch_ratio=ratio)
        p, w, known, err = lift_prefix(fake, hands, uv, conf, K[None], torch.tensor([[1280.0, 720.0]]), config=cfg)
        res[m, ratio] = (float(err[0]), float((w - wrist).norm(dim=-1).max()))
    assert res[1, 0.75][0] > 3.0 and res[1, 0.75][1] > 0.02, res  # one start: stuck, px and m off
    assert res[24, 0.75][0] < 0.5 and res[24, 0.75][1] < 0.01, res  # the starts: on the keypoints and the true wrist
    assert res[24, 0.0] == pytest.approx(res[1, 0.75], abs=1e-4), res  # switch_ratio 0: L's start always kept


def test_anchor_prefers_starts_beyond_min_depth(one_thread):
    """A start whose wrist comes nearer than min_depth is taken only when no start stays beyond it: with the
    floor between the two true hands' depths the nearer hand moves beyond it (a worse fit), the farther one keeps
    its true place; with the floor beyond every start the choice is the usual one."""
    hands, K, X, fake = _misread_scene()
    wrist = X[..., 0, :]  # true wrist depths about 0.906 (right) and 0.856 m (left)
    out = {}
    for md in (0.15, 0.88, 5.0):
        cfg = AnchorConfig(static_frames=2, min_depth=md)
        _, w, _, err = lift_prefix(fake, hands, _project(X, K), torch.ones(1, 1, 2, 21), K[None],
                                   torch.tensor([[1280.0, 720.0]]), config=cfg)
        out[md] = (w[0, 0], float(err[0]))
    assert torch.allclose(out[0.15][0], wrist[0, 0], atol=0.01) and out[0.15][1] < 0.5
    assert torch.allclose(out[0.88][0][0], out[0.15][0][0]) and out[0.88][0][1, 2] >= 0.88  # left moved beyond
    assert out[0.88][1] > out[0.15][1] + 0.5
    assert torch.allclose(out[5.0][0], out[0.15][0]) and out[5.0][1] == pytest.approx(out[0.15][1])  # none beyond


def test_anchor_averages_l_samples():
    """AnchorConfig.samples: L's samples (global orientation turned by +-0.5 rad, wrists moved by +-3 cm) are
    averaged back to the motion they straddle; with one sample the turn stays."""
    from handcast.fit.anchor import AnchorConfig, _lift
    from handcast.geometry import aa_to_6d, aa_to_rotmat, geodesic_angle, rotmat_to_aa

    g = torch.Generator().manual_seed(1)
    pose = 0.3 * torch.randn(2, 1, 2, 16, 3, generator=g)
    wrist = torch.randn(2, 1, 2, 3, generator=g)

    class Spread:
        def sample(self, batch, n, sampler, steps, generator=None):
            t = batch["kp2d"].shape[1]
            out_r, out_w = [], []
            for k in range(n):
                s = (-1) ** k
                R = aa_to_rotmat(pose) @ aa_to_rotmat(torch.tensor([0.0, 0.5 * s, 0.0]))
                p = rotmat_to_aa(R)
                out_r.append(aa_to_6d(p.expand(-1, t, -1, -1, -1)))
                out_w.append((wrist + 0.03 * s).expand(-1, t, -1, -1))
            return torch.stack(out_r, 1), torch.stack(out_w, 1)

    kp = torch.zeros(2, 4, 2, 21, 2)
    args = (kp, torch.ones(2, 4, 2, 21), torch.eye(3).expand(2, 3, 3), torch.ones(2, 2), torch.eye(4).expand(2, 4, 4, 4), None)
    for n, turn, shift in ((1, 0.5, 0.03), (2, 0.0, 0.0), (4, 0.0, 0.0)):
        p, w = _lift(Spread(), None, *args, AnchorConfig(samples=n, keep=None))
        ang = geodesic_angle(aa_to_rotmat(p.double()), aa_to_rotmat(pose.expand(-1, 4, -1, -1, -1).double()))
        assert torch.allclose(ang, torch.full_like(ang, turn), atol=1e-4), n
        assert torch.allclose(w, (wrist + shift).expand(-1, 4, -1, -1), atol=1e-5), n
    from handcast.errors import HandcastError

    with pytest.raises(HandcastError, match="at least one sample"):
        AnchorConfig(samples=0)
    with pytest.raises(HandcastError, match="keeps at least one"):
        AnchorConfig(keep=0)


def test_anchor_keeps_the_samples_that_explain_the_2d():
    """AnchorConfig.keep: of L's samples (one right, the others with the hand turned by 0.6 k rad), the anchor
    averages those that best explain the 2D keypoints: keep=1 returns the right one, all of them do not."""
    from handcast.fit.anchor import AnchorConfig, _lift
    from handcast.geometry import aa_to_6d, aa_to_rotmat, geodesic_angle, project, rotmat_to_aa

    hands = HandModel("open")
    g = torch.Generator().manual_seed(2)
    pose = 0.3 * torch.randn(2, 1, 2, 16, 3, generator=g)
    wrist = torch.tensor([[0.1, 0.0, 0.5], [-0.1, 0.0, 0.5]]).expand(2, 1, 2, 3)
    K = torch.tensor([[500.0, 0, 200], [0, 500, 200], [0, 0, 1]]).expand(2, 3, 3)
    kp3 = hands.keypoints(pose, transl=wrist - hands.rest_joints()[:, 0])
    kp = project(kp3, K[:, None, None, None]).expand(-1, 4, -1, -1, -1)

    class Misread:
        def sample(self, batch, n, sampler, steps, generator=None):
            t = batch["kp2d"].shape[1]
            out_r = []
            for k in range(n):
                p = pose.clone()
                p[..., 0, :] = rotmat_to_aa(aa_to_rotmat(pose[..., 0, :]) @ aa_to_rotmat(torch.tensor([0.0, 0.6 * k, 0.0])))
                out_r.append(aa_to_6d(p.expand(-1, t, -1, -1, -1)))
            return torch.stack(out_r, 1), wrist.expand(-1, t, -1, -1)[:, None].expand(-1, n, -1, -1, -1)

    args = (kp, torch.ones(2, 4, 2, 21), K, torch.full((2, 2), 400.0), torch.eye(4).expand(2, 4, 4, 4), None)
    err = {}
    for keep in (1, None):
        p, _ = _lift(Misread(), hands, *args, AnchorConfig(samples=4, keep=keep))
        err[keep] = float(geodesic_angle(aa_to_rotmat(p[..., 0, :].double()),
                                         aa_to_rotmat(pose[..., 0, :].expand(-1, 4, -1, -1).double())).max())
    assert err[1] < 1e-3 < 0.3 < err[None], err
