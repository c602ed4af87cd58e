"""HandModel (smplx MANO layer over the open model): FK, keypoints path, reps, conventions, mirror."""

from __future__ import annotations

import numpy as np
import pytest
import roma
import torch

from handcast.conventions import MANO21_TO_COMMON, MANO_PARENTS
from handcast.errors import AssetMissingError, HandcastError
from handcast.hand import (
    HandModel,
    clamp_to_limits,
    describe_installed_models,
    flat_to_mean_relative,
    mean_relative_to_flat,
    mirror_pose,
    pca_to_pose,
)
from handcast.hand import open_model as om

F64 = torch.float64


@pytest.fixture(scope="module")
def model():
    return HandModel("open", dtype=F64)


def _rand(shape, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64) * scale


# ------------------------------------------------------------------------------------------------
# Independent reference: Rodrigues + kinematic chain + LBS in numpy float64
# ------------------------------------------------------------------------------------------------

def _rodrigues(aa):
    th = np.linalg.norm(aa)
    if th < 1e-15:
        return np.eye(3)
    k = aa / th
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * K + (1 - np.cos(th)) * K @ K


def _reference_fk(arr, pose, betas, transl):
    """pose (16, 3) axis-angle, betas (10,), transl (3,) -> vertices (V, 3), joints (16, 3)."""
    v = arr["v_template"] + arr["shapedirs"] @ betas
    J = arr["J_regressor"] @ v
    R = np.stack([_rodrigues(p) for p in pose])
    v = v + (arr["posedirs"].reshape(-1, 135) @ (R[1:] - np.eye(3)).ravel()).reshape(-1, 3)
    G = np.zeros((16, 4, 4))
    for j in range(16):
        local = np.eye(4)
        local[:3, :3] = R[j]
        p = MANO_PARENTS[j]
        local[:3, 3] = J[j] - (J[p] if p >= 0 else 0)
        G[j] = local if p < 0 else G[p] @ local
    A = G.copy()
    A[:, :3, 3] -= np.einsum("jab,jb->ja", G[:, :3, :3], J)
    T = np.einsum("vj,jab->vab", arr["weights"], A)
    verts = np.einsum("vab,vb->va", T[:, :3, :3], v) + T[:, :3, 3]
    return verts + transl, G[:, :3, 3] + transl


def test_smplx_layer_matches_independent_fk(model):
    pose, betas, transl = _rand((3, 2, 16, 3), 0.6, 1), _rand((3, 2, 10), 1.0, 2), _rand((3, 2, 3), 0.2, 3)
    out = model(pose, betas, transl)
    for h, side in enumerate(("right", "left")):
        arr = om.load_open_model(side)
        for b in range(3):
            v, j = _reference_fk(arr, pose[b, h].numpy(), betas[b, h].numpy(), transl[b, h].numpy())
            np.testing.assert_allclose(out.vertices[b, h].numpy(), v, atol=1e-6)
            np.testing.assert_allclose(out.joints16[b, h].numpy(), j, atol=1e-6)
            tips = v[list(model.tip_vertex_ids)]
            np.testing.assert_allclose(out.keypoints[b, h].numpy(), np.concatenate([j, tips])[MANO21_TO_COMMON], atol=1e-6)


def test_keypoints_path_equals_full_forward(model):
    for lead, seed in (((), 0), ((5,), 1), ((2, 3), 2)):
        pose = _rand(lead + (2, 16, 3), 0.8, seed)
        betas = _rand(lead + (2, 10), 1.5, seed + 10)
        transl = _rand(lead + (2, 3), 0.3, seed + 20)
        full = model(pose, betas, transl).keypoints
        fast = model.keypoints(pose, betas, transl)
        assert fast.shape == lead + (2, 21, 3)
        torch.testing.assert_close(fast, full, atol=1e-6, rtol=0)
    # betas/transl None = zeros, and broadcasting of shared betas
    pose = _rand((4, 2, 16, 3), 0.5, 7)
    torch.testing.assert_close(model.keypoints(pose), model(pose).keypoints, atol=1e-6, rtol=0)
    b = _rand((2, 10), 1.0, 8)
    torch.testing.assert_close(model.keypoints(pose, b), model(pose, b.expand(4, 2, 10)).keypoints, atol=1e-6, rtol=0)


def test_keypoints_path_has_gradients(model):
    pose = _rand((3, 2, 16, 3), 0.5, 4).requires_grad_(True)
    betas = _rand((3, 2, 10), 1.0, 5).requires_grad_(True)
    model.keypoints(pose, betas).square().sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    assert torch.isfinite(betas.grad).all() and betas.grad.abs().sum() > 0


def test_rotation_representations_agree(model):
    pose, betas, transl = _rand((4, 2, 16, 3), 0.7, 11), _rand((4, 2, 10), 1.0, 12), _rand((4, 2, 3), 0.1, 13)
    R = roma.rotvec_to_rotmat(pose)
    six = R[..., :, :2].flatten(-2)  # handcast's 6D: first two columns, row-major
    ref = model(pose, betas, transl)
    for rep, x in (("rotmat", R), ("6d", six)):
        out = model(x, betas, transl, rep=rep)
        torch.testing.assert_close(out.vertices, ref.vertices, atol=1e-7, rtol=0)
        torch.testing.assert_close(model.keypoints(x, betas, transl, rep=rep), ref.keypoints, atol=1e-7, rtol=0)
        for conv in ("mean_relative",):
            a = model(pose, betas, transl, convention=conv)
            b = model(x, betas, transl, rep=rep, convention=conv)
            torch.testing.assert_close(b.vertices, a.vertices, atol=1e-7, rtol=0)


def test_mean_relative_convention_and_round_trip(model):
    pose = _rand((6, 2, 16, 3), 0.5, 21)
    mean = model.hands_mean
    flat = mean_relative_to_flat(pose, mean)
    torch.testing.assert_close(flat_to_mean_relative(flat, mean), pose)
    torch.testing.assert_close(flat[..., 0, :], pose[..., 0, :])  # global orientation untouched
    torch.testing.assert_close(flat[..., 1:, :] - pose[..., 1:, :], mean.reshape(2, 15, 3).expand(6, 2, 15, 3))
    a = model(pose, convention="mean_relative")
    b = model(flat, convention="flat")
    torch.testing.assert_close(a.vertices, b.vertices, atol=1e-9, rtol=0)
    # zeros in mean-relative convention = the mean pose: a relaxed curl, fingertips nearer the wrist
    zero = torch.zeros(1, 2, 16, 3, dtype=F64)
    rel = model.keypoints(zero, convention="mean_relative")
    flat0 = model.keypoints(zero)
    d_rel = (rel[..., 12, :] - rel[..., 0, :]).norm(dim=-1)
    d_flat = (flat0[..., 12, :] - flat0[..., 0, :]).norm(dim=-1)
    assert (d_rel < d_flat - 0.01).all()
    # numpy works too, single hand
    p = pose[0, 0].numpy()
    np.testing.assert_allclose(flat_to_mean_relative(mean_relative_to_flat(p, mean[0].numpy()), mean[0].numpy()), p)
    with pytest.raises(HandcastError):
        model(pose, convention="relative")


def test_left_is_mirror_of_right(model):
    pose, betas = _rand((5, 16, 3), 0.7, 31), _rand((5, 10), 1.0, 32)
    transl = _rand((5, 3), 0.2, 33)
    m = torch.tensor([-1.0, 1.0, 1.0], dtype=F64)
    both = torch.stack([pose, mirror_pose(pose)], dim=1)
    out = model(both, torch.stack([betas, betas], 1), torch.stack([transl, transl * m], 1))
    # (smplx's Rodrigues adds 1e-8 to the axis-angle vector, which is not mirror symmetric)
    torch.testing.assert_close(out.joints16[:, 1], out.joints16[:, 0] * m, atol=1e-7, rtol=0)
    torch.testing.assert_close(out.vertices[:, 1], out.vertices[:, 0] * m, atol=1e-7, rtol=0)
    torch.testing.assert_close(out.keypoints[:, 1], out.keypoints[:, 0] * m, atol=1e-7, rtol=0)
    np.testing.assert_array_equal(model.faces(1), model.faces(0)[:, ::-1])
    np.testing.assert_allclose(mirror_pose(mirror_pose(pose.numpy())), pose.numpy())


def test_global_orient_rotates_about_rest_wrist(model):
    betas = _rand((3, 2, 10), 1.0, 41)
    J0 = model.rest_joints(betas)[..., 0, :]  # (3, 2, 3)
    R = roma.random_rotmat((3, 2), dtype=F64, device="cpu")
    p = _rand((3, 2, 3), 0.3, 42)
    pose = torch.zeros(3, 2, 16, 3, 3, dtype=F64) + torch.eye(3, dtype=F64)
    pose[..., 0, :, :] = R
    out = model(pose, betas, p - J0, rep="rotmat")
    torch.testing.assert_close(out.joints16[..., 0, :], p, atol=1e-7, rtol=0)
    rest = model(torch.zeros(3, 2, 16, 3, dtype=F64), betas)
    expect = torch.einsum("...ab,...vb->...va", R, rest.vertices - J0[..., None, :]) + p[..., None, :]
    torch.testing.assert_close(out.vertices, expect, atol=1e-7, rtol=0)
    torch.testing.assert_close(model.rest_joints(betas), rest.joints16, atol=1e-7, rtol=0)


def test_clamp_pca_and_limits(model):
    assert model.joint_limits.shape == (2, 15, 3, 2) and model.hands_mean.shape == (2, 45)
    pose = _rand((8, 2, 16, 3), 2.0, 51)
    c = model.clamp_to_limits(pose)
    lim = model.joint_limits
    assert (c[..., 1:, :] >= lim[..., 0] - 1e-12).all() and (c[..., 1:, :] <= lim[..., 1] + 1e-12).all()
    torch.testing.assert_close(c[..., 0, :], pose[..., 0, :])
    inside = clamp_to_limits(c, lim)
    torch.testing.assert_close(inside, c)  # idempotent
    assert (c != pose).any()
    # numpy path agrees
    np.testing.assert_allclose(clamp_to_limits(pose.numpy(), lim.numpy()), c.numpy())
    # PCA: projecting a pose on all 45 components and back recovers it
    arr = om.load_open_model("right")
    comps = torch.tensor(arr["hands_components"], dtype=F64)
    fingers = _rand((7, 45), 0.3, 52)
    coeffs = (fingers - model.hands_mean[0]) @ comps.T
    torch.testing.assert_close(pca_to_pose(coeffs, comps) + model.hands_mean[0], fingers)
    # a few components only: matches the explicit product
    torch.testing.assert_close(pca_to_pose(coeffs[:, :6], comps, 6), coeffs[:, :6] @ comps[:6])
    with pytest.raises(HandcastError):
        pca_to_pose(coeffs[:, :6], comps, 7)


def test_module_behaviour(model):
    assert model.kind == "open" and model.num_vertices == len(om.load_open_model()["v_template"])
    assert len(list(model.parameters())) == 0  # nothing trainable sneaks into optimisers
    assert model.tip_vertex_ids == tuple(int(i) for i in om.load_open_model()["tip_vertex_ids"])
    f0 = model.faces(0)
    assert f0.shape[1] == 3 and f0.max() == model.num_vertices - 1
    m32 = HandModel("open")
    assert m32.kp_J_template.dtype == torch.float32
    pose = _rand((2, 2, 16, 3), 0.3, 61)
    out32 = m32(pose.float())
    assert out32.vertices.dtype == torch.float32
    torch.testing.assert_close(out32.keypoints.double(), model(pose).keypoints, atol=1e-5, rtol=0)
    m64 = m32.to(F64)
    torch.testing.assert_close(m64.keypoints(pose), model.keypoints(pose), atol=1e-6, rtol=0)
    empty = model(torch.zeros(0, 2, 16, 3, dtype=F64))
    assert empty.vertices.shape == (0, 2, model.num_vertices, 3)


def test_errors_and_model_selection(model, tmp_path, monkeypatch):
    with pytest.raises(HandcastError):
        model(torch.zeros(2, 16, 4, dtype=F64))
    with pytest.raises(HandcastError):
        model(torch.zeros(3, 16, 3, dtype=F64))  # no hand axis of size 2
    with pytest.raises(HandcastError):
        model(torch.zeros(2, 16, 3, dtype=F64), rep="quat")
    with pytest.raises(HandcastError):
        model(torch.zeros(2, 16, 3, dtype=F64), betas=torch.zeros(2, 9, dtype=F64))
    with pytest.raises(HandcastError):
        model.faces(2)
    np.testing.assert_array_equal(model.faces("left"), model.faces(1))
    with pytest.raises(HandcastError):
        HandModel("smpl")
    with pytest.raises(AssetMissingError):
        HandModel("mano", mano_dir=tmp_path)
    monkeypatch.setenv("HANDCAST_HOME", str(tmp_path))
    assert HandModel("auto").kind == "open"
    text = describe_installed_models()
    assert "not installed" in text and str(tmp_path / "mano") in text and text.endswith("uses: open")
