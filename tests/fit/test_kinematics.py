"""The fitting layer's keypoint path (handcast.fit.kinematics) against the hand model."""

import numpy as np
import pytest
import roma
import torch

from handcast.conventions import COMMON_TO_MANO21, MANO21_TO_COMMON
from handcast.fit import kinematics as kin
from handcast.hand import HandModel


@pytest.fixture(scope="module")
def hm64():
    return HandModel(kind="open", dtype=torch.float64)


def _inputs(B=2, T=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    pose = torch.randn(B, T, 2, 16, 3, generator=g, dtype=torch.float64) * 0.6
    betas = torch.randn(B, 2, 10, generator=g, dtype=torch.float64)
    transl = torch.randn(B, T, 2, 3, generator=g, dtype=torch.float64) * 0.2
    return pose, betas, transl


def _reference(hm, pose, betas, transl):
    B, T = pose.shape[:2]
    return hm.keypoints(pose, betas[:, None].expand(B, T, 2, 10), transl)


def test_orders_are_permutations_and_inverse():
    for a, b in ((kin.COMMON_FROM_LEVEL, kin.LEVEL_FROM_COMMON), (kin.JOINT_LEVEL_ORDER, kin.JOINT_FROM_LEVEL)):
        assert sorted(a) == list(range(len(a)))
        assert [a[i] for i in b] == list(range(len(a)))
    x = torch.randn(4, 21, 3)
    assert torch.equal(kin.kp_to_common(kin.kp_to_level(x)), x)
    # the wrist is keypoint 0 in both orders; tips are the last 5 level-order keypoints
    assert kin.COMMON_FROM_LEVEL[0] == 0
    tips_common = [int(MANO21_TO_COMMON.tolist().index(16 + k)) for k in range(5)]
    assert sorted(kin.COMMON_FROM_LEVEL[c] for c in tips_common) == [16, 17, 18, 19, 20]
    assert len(COMMON_TO_MANO21) == 21


def test_matches_hand_model_keypoints(hm64):
    pose, betas, transl = _inputs()
    pose[0, 0, 0, 5] = 0.0  # an exactly zero rotation
    kp = kin.fixed_shape_keypoints(hm64, pose, betas, transl)
    ref = _reference(hm64, pose, betas, transl)
    # smplx's Rodrigues adds 1e-8 to the angle; ours is exact, hence ~1e-8 m
    assert (kp - ref).abs().max() < 1e-7


def test_pose_blend_and_general_skinning_paths(hm64):
    pose, betas, transl = _inputs(seed=1)
    hm = HandModel(kind="open", dtype=torch.float64)
    hm.kp_tip_posedirs.normal_(0, 0.01, generator=torch.Generator().manual_seed(3))
    hm._tip_posedirs_zero = False
    sc = kin.ShapeConstants(hm, betas, pose.shape[1], torch.float64, "cpu")
    assert sc.fast and sc.posedirs is not None
    ref = _reference(hm, pose, betas, transl)
    assert (kin.fixed_shape_keypoints(hm, pose, betas, transl) - ref).abs().max() < 1e-7
    # a fingertip skinned by another finger's joint -> general path
    hm.kp_tip_weights[:, 0, 5] = 0.1
    hm.kp_tip_weights /= hm.kp_tip_weights.sum(-1, keepdim=True)
    sc = kin.ShapeConstants(hm, betas, pose.shape[1], torch.float64, "cpu")
    assert not sc.fast
    ref = _reference(hm, pose, betas, transl)
    assert (kin.fixed_shape_keypoints(hm, pose, betas, transl) - ref).abs().max() < 1e-7
    # wrist and level-1 weights on the tips stay on the fast path
    hm2 = HandModel(kind="open", dtype=torch.float64)
    hm2.kp_tip_weights[:, 2, 0] = 0.05
    hm2.kp_tip_weights[:, 1, 1] = 0.05
    hm2.kp_tip_weights /= hm2.kp_tip_weights.sum(-1, keepdim=True)
    assert kin.ShapeConstants(hm2, betas, 1, torch.float64, "cpu").fast
    ref = _reference(hm2, pose, betas, transl)
    assert (kin.fixed_shape_keypoints(hm2, pose, betas, transl) - ref).abs().max() < 1e-7


def test_camera_folded_into_root(hm64):
    pose, betas, transl = _inputs(seed=2)
    B, T = pose.shape[:2]
    Rc = roma.rotvec_to_rotmat(torch.randn(B, T, 3, dtype=torch.float64))
    tc = torch.randn(B, T, 3, dtype=torch.float64)
    sc = kin.ShapeConstants(hm64, betas, T, torch.float64, "cpu")
    root, fingers = kin.pose_to_soa(pose)
    Rs = Rc.permute(2, 3, 0, 1).unsqueeze(-1).expand(3, 3, B, T, 2)
    root_t = kin.matvec_soa(Rs, kin.to_soa(transl)) + tc.permute(2, 0, 1).unsqueeze(-1)
    X = kin.keypoints_soa(sc.tensors, sc, root, fingers, root_R=Rs, root_t=root_t)
    kp = kin.kp_to_common(kin.from_soa(X))
    ref = _reference(hm64, pose, betas, transl)
    ref_cam = torch.einsum("btij,bthkj->bthki", Rc, ref) + tc[:, :, None, None]
    assert (kp - ref_cam).abs().max() < 1e-7


@pytest.mark.parametrize("scale", [1.0, 1e-2, 1e-4, 0.0])
def test_rodrigues_exact_and_gradcheck(scale):
    g = torch.Generator().manual_seed(0)
    a = (torch.randn(3, 40, generator=g, dtype=torch.float64) * scale).requires_grad_()
    R = kin.rodrigues_soa(a)
    assert (R.permute(2, 0, 1) - roma.rotvec_to_rotmat(a.detach().T)).abs().max() < 1e-14
    assert torch.autograd.gradcheck(kin.rodrigues_soa, (a,))


def test_soa_round_trips():
    x = torch.randn(2, 3, 2, 16, 3)
    root, fingers = kin.pose_to_soa(x)
    assert torch.equal(kin.pose_from_soa(root, fingers), x)
    y = torch.randn(2, 3, 2, 21, 3)
    assert torch.equal(kin.from_soa(kin.to_soa(y)), y)
    assert np.array_equal(kin.from_soa(kin.to_soa(y[..., 0, :])).numpy(), y[..., 0, :].numpy())
