"""Reprojection refinement (handcast.fit.refine) on synthetic hands made with the hand model."""

import dataclasses

import pytest
import torch

from handcast.errors import HandcastError
from handcast.fit import RefineConfig, refine
from handcast.fit.kinematics import fixed_shape_keypoints
from handcast.fit.testing import synthetic_tracks
from handcast.hand import HandModel


pytestmark = pytest.mark.usefixtures("one_thread")  # fixtures one_thread and hm: tests/conftest.py


@pytest.fixture(scope="module")
def data(hm):
    return synthetic_tracks(hm, 3, 8, seed=7)


def _perturbed(d, seed=0, pose_std=0.1, transl_std=0.02):
    g = torch.Generator().manual_seed(seed)
    pose = d["pose"] + torch.randn(d["pose"].shape, generator=g) * pose_std
    transl = d["transl"] + torch.randn(d["transl"].shape, generator=g) * transl_std
    return pose, transl


def _run(hm, d, pose, transl, cfg=RefineConfig(), **kw):
    args = dict(kp2d=d["kp2d"], conf=d["conf"], K=d["K"], world_to_cam=d["world_to_cam"], hand_valid=d["hand_valid"])
    args.update(kw)
    return refine(hm, pose, transl, d["betas"], config=cfg, **args)


def _err3d(hm, d, pose, transl):
    kp = fixed_shape_keypoints(hm, pose, d["betas"], transl)
    return (kp - d["joints3d"]).norm(dim=-1).mean((1, 2, 3))


def test_recovers_pose_from_exact_2d(hm, data):
    pose, transl = _perturbed(data)
    before = _err3d(hm, data, pose, transl)
    res = _run(hm, data, pose, transl, RefineConfig(iterations=300, tol=1e-10))
    assert res.iterations.tolist() == [300] * 3
    assert (res.reproj_error_px < 1.0).all(), res.reproj_error_px
    after = _err3d(hm, data, res.pose, res.transl)
    assert (before > 0.02).all() and (after < 0.006).all(), (before, after)
    assert (res.final_loss < 1e-3 * res.initial_loss).all()
    assert res.loss_history.shape == (300, 3) and torch.isfinite(res.loss_history).all()
    # default tolerance: stops early at roughly 1 % of the focal length (documented)
    res2 = _run(hm, data, pose, transl)
    assert res2.converged.all() and (res2.iterations < 300).all() and (res2.final_loss < 1e-4).all()


def test_early_stop_at_the_answer_is_bit_identical(hm, data):
    pose, transl = _perturbed(data, seed=1)
    pose[0], transl[0] = data["pose"][0], data["transl"][0]
    res = _run(hm, data, pose, transl)
    assert res.iterations[0] == 1 and bool(res.converged[0])
    assert torch.equal(res.pose[0], pose[0]) and torch.equal(res.transl[0], transl[0])
    assert torch.isnan(res.loss_history[1:, 0]).all()
    assert (res.iterations[1:] > 1).all()
    # a clip's result does not depend on the other clips of the batch
    alone = refine(hm, pose[1:2], transl[1:2], data["betas"][1:2], data["kp2d"][1:2], data["conf"][1:2],
                   data["K"][1:2], data["world_to_cam"][1:2], data["hand_valid"][1:2])
    assert torch.allclose(alone.pose[0], res.pose[1], atol=1e-5)
    assert int(alone.iterations[0]) == int(res.iterations[1])


def test_deterministic(hm, data):
    pose, transl = _perturbed(data, seed=2)
    cfg = RefineConfig(iterations=40)
    a, b = _run(hm, data, pose, transl, cfg), _run(hm, data, pose, transl, cfg)
    assert torch.equal(a.pose, b.pose) and torch.equal(a.transl, b.transl)


def test_masked_keypoints_and_hands_have_no_influence(hm, data):
    pose, transl = _perturbed(data, seed=3)
    conf = data["conf"].clone()
    valid = data["hand_valid"].clone()
    conf[0, :, 0, 5:9] = 0.0  # index finger of the right hand missing in clip 0
    valid[1, 2:5, 1] = False  # left hand absent in frames 2-4 of clip 1
    valid[2, :, 0] = False  # right hand absent from clip 2
    cfg = RefineConfig(iterations=60)
    ref = _run(hm, data, pose, transl, cfg, conf=conf, hand_valid=valid)
    kp2d = data["kp2d"].clone()
    kp2d[0, :, 0, 5:9] = float("nan")
    kp2d[1, 2:5, 1] = 1e9
    kp2d[2, :, 0] = -3e7
    conf2 = conf.clone()
    conf2[1, 2:5, 1] = 1.0  # confidences of invalid hands are ignored too
    pose2, transl2 = pose.clone(), transl.clone()
    pose2[2, :, 0] = float("nan")  # non-finite initial values of an invalid hand are ignored
    res = _run(hm, data, pose2, transl2, cfg, kp2d=kp2d, conf=conf2, hand_valid=valid)
    for name in ("pose", "transl"):
        a, b = getattr(ref, name), getattr(res, name)
        m = valid
        assert torch.equal(a[m], b[m]), name
    # invalid hands are left as they were
    assert torch.equal(ref.pose[1, 2:5, 1], pose[1, 2:5, 1])
    assert torch.equal(ref.transl[2, :, 0], transl[2, :, 0])
    assert torch.equal(res.pose[2, :, 0], torch.zeros_like(pose[2, :, 0]))
    assert torch.isfinite(res.final_loss).all() and torch.isfinite(res.reproj_error_px).all()
    # a non-finite initial value on a valid hand is a user error
    pose3 = pose.clone()
    pose3[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(HandcastError, match="valid hand"):
        _run(hm, data, pose3, transl, cfg)


def test_3d_loss_only_where_given(hm, data):
    pose, transl = _perturbed(data, seed=4)
    cfg = RefineConfig(iterations=60)
    base = _run(hm, data, pose, transl, cfg)
    poisoned = data["joints3d"] + 1e3
    none = _run(hm, data, pose, transl, cfg, joints3d=poisoned,
                joints3d_mask=torch.zeros_like(data["hand_valid"]))
    assert torch.equal(base.pose, none.pose) and torch.equal(base.transl, none.transl)
    assert torch.isnan(none.joints3d_error).all()
    # labels on clip 0 only (mask), poison elsewhere: clips 1-2 are unchanged, clip 0 uses 3D
    mask = torch.zeros_like(data["hand_valid"])
    mask[0] = data["hand_valid"][0]
    j3d = poisoned.clone()
    j3d[0] = data["joints3d"][0]
    part = _run(hm, data, pose, transl, cfg, joints3d=j3d, joints3d_mask=mask)
    # (equal up to float rounding: clip 0 stops at another iteration, which reshapes the working batch)
    assert torch.allclose(part.pose[1:], base.pose[1:], atol=1e-5, rtol=0)
    assert torch.allclose(part.transl[1:], base.transl[1:], atol=1e-6, rtol=0)
    assert (part.pose[0] - base.pose[0]).abs().max() > 1e-3
    assert torch.isfinite(part.joints3d_error[0]) and torch.isnan(part.joints3d_error[1:]).all()
    # with 3D labels the depth error of a far-off start is removed quickly
    transl_far = transl.clone()
    transl_far[..., 2] += 0.08
    full = _run(hm, data, pose, transl_far, RefineConfig(iterations=300, tol=1e-12), joints3d=data["joints3d"])
    assert (full.joints3d_error < 0.003).all(), full.joints3d_error
    assert (_err3d(hm, data, full.pose, full.transl) < 0.003).all()


def test_behind_the_camera_gives_no_nan(hm, data):
    pose, transl = _perturbed(data, seed=5)
    transl[0, ..., 2] -= 0.8  # clip 0: both hands ~0.35 m behind the camera
    transl[1, 3, 0, 2] = -0.455  # one wrist exactly on the camera plane region
    res = _run(hm, data, pose, transl, RefineConfig(iterations=150))
    for x in (res.pose, res.transl, res.final_loss, res.reproj_error_px):
        assert torch.isfinite(x).all()
    for b in range(3):  # the history is finite until a clip stops, NaN after
        n = int(res.iterations[b])
        assert torch.isfinite(res.loss_history[:n, b]).all() and torch.isnan(res.loss_history[n:, b]).all()
    kp = fixed_shape_keypoints(hm, res.pose, data["betas"], res.transl)
    assert (kp[0, ..., 2] > 0.1).all()  # pulled back in front of the camera
    assert res.final_loss[0] < 1e-3 * res.initial_loss[0]


def test_limits_and_smoothness_terms(hm, data):
    pose, transl = _perturbed(data, seed=6)
    pose[..., 1:, :] += 2.0  # far outside the joint limits
    conf = torch.zeros_like(data["conf"])  # no 2D: only the regularisers act
    cfg = RefineConfig(iterations=200, w_limits=1.0, w_smooth=1.0, tol=0.0)
    res = _run(hm, data, pose, transl, cfg, conf=conf)
    lim = hm.joint_limits

    def over(p):
        return (torch.relu(p[..., 1:, :] - lim[..., 1]) + torch.relu(lim[..., 0] - p[..., 1:, :])).mean()

    assert over(res.pose) < 0.5 * over(pose)
    # no term at all -> loss 0 -> stops at once, nothing moves
    res0 = _run(hm, data, pose, transl, RefineConfig(), conf=conf)
    assert (res0.iterations == 1).all() and torch.equal(res0.pose, pose)


def test_input_errors(hm, data):
    pose, transl = _perturbed(data)
    K = data["K"].clone()
    K[1, 0, 0] = 0.0
    with pytest.raises(HandcastError, match="focal"):
        _run(hm, data, pose, transl, K=K)
    with pytest.raises(HandcastError, match="kp2d"):
        _run(hm, data, pose, transl, kp2d=data["kp2d"][:, :, :, :20])
    with pytest.raises(HandcastError, match="pose"):
        _run(hm, data, pose[..., :15, :], transl)
    with pytest.raises(HandcastError, match="joints3d"):
        _run(hm, data, pose, transl, joints3d=data["joints3d"][:, :4])


def test_config_is_documented_default():
    cfg = RefineConfig()
    got = (cfg.iterations, cfg.lr, cfg.grad_clip, cfg.tol, cfg.w_3d, cfg.w_2d_with_3d, cfg.w_2d)
    assert got == (1000, 0.01, 1.0, 1e-4, 1.0, 0.1, 1.0)
    assert dataclasses.replace(cfg, iterations=5).iterations == 5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_input_device(hm, data):
    dev = torch.device("cuda")
    hmc = HandModel(kind="open").to(dev)
    d = {k: v.to(dev) for k, v in data.items()}
    pose, transl = _perturbed(data)
    res = refine(hmc, pose.to(dev), transl.to(dev), d["betas"], d["kp2d"], d["conf"], d["K"], d["world_to_cam"],
                 d["hand_valid"], config=RefineConfig(iterations=50))
    assert res.pose.device.type == "cuda" and torch.isfinite(res.pose).all()
    cpu = _run(hm, data, pose, transl, RefineConfig(iterations=50))
    assert torch.allclose(res.pose.cpu(), cpu.pose, atol=1e-3)
