"""Motion helpers: joint-limit clamping of sampled motion, and the benchmark's joint-limit fraction."""

import numpy as np
import pytest
import torch

from handcast.eval.bench_forecasting import limits_fraction
from handcast.geometry import aa_to_6d, sixd_to_aa
from handcast.hand import HandModel
from handcast.models.motion import clamp_motion_to_limits


@pytest.fixture(scope="module")
def hands():
    return HandModel("auto")


def _inside(hands, n, seed=0):
    """(n, 2, 16, 3) poses strictly inside the joint limits (random points of each box)."""
    g = torch.Generator().manual_seed(seed)
    lim = hands.joint_limits  # (2, 15, 3, 2)
    u = torch.rand(n, 2, 15, 3, generator=g) * 0.8 + 0.1
    fingers = lim[..., 0] + u * (lim[..., 1] - lim[..., 0])
    root = torch.randn(n, 2, 1, 3, generator=g)
    return torch.cat([root, fingers], dim=-2)


def test_clamping_keeps_poses_within_limits_and_moves_the_others_onto_them(hands):
    inside = _inside(hands, 6)
    out = sixd_to_aa(clamp_motion_to_limits(hands, aa_to_6d(inside)))
    torch.testing.assert_close(out, inside, atol=1e-4, rtol=0)
    bent = inside.clone()
    bent[:, :, 5, 0] = hands.joint_limits[:, 4, 0, 1] + 0.6  # index base bent 0.6 rad past its upper limit
    out = sixd_to_aa(clamp_motion_to_limits(hands, aa_to_6d(bent)))
    torch.testing.assert_close(out[:, :, 5, 0], hands.joint_limits[:, 4, 0, 1].expand(6, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(out[:, :, 0], bent[:, :, 0], atol=1e-4, rtol=0)  # the global orientation stays


def test_limits_fraction_counts_hand_frames_past_the_tolerance(hands):
    inside = _inside(hands, 4, seed=1)  # as 1 clip x 1 sample x 4 frames
    pose = inside.clone()
    pose[1, 0, 3, 2] = hands.joint_limits[0, 2, 2, 0] - np.radians(10)  # 10 deg under: out
    pose[2, 1, 7, 1] = hands.joint_limits[1, 6, 1, 1] + np.radians(3)  # 3 deg over: within the 5 deg tolerance
    p6 = aa_to_6d(pose)[None, None].numpy()  # (1, 1, 4, 2, 16, 6)
    valid = np.ones((1, 4, 2), bool)
    assert limits_fraction(hands, p6, valid) == pytest.approx(7 / 8, abs=1e-6)
    valid[0, 1, 0] = False  # the bad hand-frame is not scored
    assert limits_fraction(hands, p6, valid) == pytest.approx(1.0)
