"""The optimisation-only baseline (handcast.fit.optimize.fit_tracks)."""

import inspect

import pytest
import torch

from handcast.errors import HandcastError
from handcast.fit.kinematics import fixed_shape_keypoints
from handcast.fit.optimize import FitConfig, _fill_missing, _viterbi, candidate_rotations, fit_tracks, initialise
from handcast.fit.testing import synthetic_tracks


pytestmark = pytest.mark.usefixtures("one_thread")  # fixtures one_thread and hm: tests/conftest.py


def _err(hm, d, pose, transl):
    kp = fixed_shape_keypoints(hm, pose.float(), d["betas"], transl.float())
    return (kp - d["joints3d"]).norm(dim=-1)  # (B, T, 2, 21) m


def test_fits_synthetic_tracks_from_mean_pose(hm):
    d = synthetic_tracks(hm, 3, 16, seed=11)
    pose0, transl0 = initialise(hm, d["kp2d"], d["conf"], d["K"], d["world_to_cam"], d["hand_valid"], d["betas"])
    init_err = _err(hm, d, pose0, transl0).mean()
    assert init_err < 0.08  # the initialisation alone is within several cm
    pose, transl, info = fit_tracks(hm, d["kp2d"], d["conf"], d["K"], d["world_to_cam"], d["hand_valid"],
                                    d["betas"], return_info=True)
    assert pose.shape == d["pose"].shape and transl.shape == d["transl"].shape
    err = _err(hm, d, pose, transl)
    assert err.mean() < 0.02 and err.mean((1, 2, 3)).max() < 0.04, err.mean((1, 2, 3))
    assert err.mean() < init_err
    assert (info["reproj_error_px"] < 3.0).all()
    # fingers stay within the joint limits (up to a small violation allowed by the soft penalty)
    lim = hm.joint_limits
    assert (pose[..., 1:, :] >= lim[..., 0] - 0.1).all() and (pose[..., 1:, :] <= lim[..., 1] + 0.1).all()


def test_missing_frames_and_hands(hm):
    d = synthetic_tracks(hm, 2, 10, seed=12, p_invalid=0.2)
    valid = d["hand_valid"].clone()
    valid[1, :, 1] = False  # a hand that never appears
    cfg = FitConfig(stage1_iterations=30, stage2_iterations=30)
    pose, transl = fit_tracks(hm, d["kp2d"], d["conf"], d["K"], d["world_to_cam"], valid, d["betas"], cfg)
    assert torch.isfinite(pose).all() and torch.isfinite(transl).all()
    kp = fixed_shape_keypoints(hm, pose, d["betas"], transl)
    assert (kp[..., 2] > 0).all()  # every hand, seen or not, is placed in front of the camera
    err = _err(hm, d, pose, transl)
    assert err[valid].mean() < 0.06


def test_does_not_take_or_read_3d(hm):
    params = set(inspect.signature(fit_tracks).parameters)
    assert not params & {"joints3d", "pose", "transl", "joints3d_mask"}
    d = synthetic_tracks(hm, 1, 4, seed=13)
    cfg = FitConfig(stage1_iterations=5, stage2_iterations=5)
    a = fit_tracks(hm, d["kp2d"], d["conf"], d["K"], d["world_to_cam"], d["hand_valid"], d["betas"], cfg)
    b = fit_tracks(hm, d["kp2d"], d["conf"], d["K"], d["world_to_cam"], d["hand_valid"], d["betas"], cfg)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])  # deterministic


def test_input_errors(hm):
    d = synthetic_tracks(hm, 1, 3, seed=14)
    K = d["K"].clone()
    K[0, 1, 1] = -5.0
    with pytest.raises(HandcastError):
        fit_tracks(hm, d["kp2d"], d["conf"], K, d["world_to_cam"], d["hand_valid"], d["betas"])
    with pytest.raises(HandcastError, match="betas"):
        fit_tracks(hm, d["kp2d"], d["conf"], d["K"], d["world_to_cam"], d["hand_valid"], d["betas"][:, :1])


def test_helpers():
    R = candidate_rotations(50, seed=3, dtype=torch.float64)
    assert torch.allclose(R @ R.transpose(-1, -2), torch.eye(3, dtype=torch.float64).expand(50, 3, 3), atol=1e-12)
    assert torch.allclose(torch.det(R), torch.ones(50, dtype=torch.float64))
    assert torch.equal(R[0], torch.eye(3, dtype=torch.float64))
    # Viterbi: a costly jump is avoided when staying costs less overall
    cost = torch.tensor([[[0.0, 1.0], [0.6, 0.0], [0.0, 1.0]]])
    trans = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).expand(1, 2, 2, 2)
    assert _viterbi(cost, trans).tolist() == [[0, 0, 0]]
    assert _viterbi(cost, 0.1 * trans).tolist() == [[0, 1, 0]]
    x = torch.arange(5.0).view(1, 5, 1)
    ok = torch.tensor([[False, True, False, False, True]])
    assert _fill_missing(x, ok).flatten().tolist() == [1.0, 1.0, 1.0, 4.0, 4.0]
