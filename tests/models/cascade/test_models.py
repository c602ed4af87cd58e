"""Cascade models (handcast.models.cascade): mesh autoencoder, both diffusion stages, regressor, fitting,
checkpoints and configs."""

import pytest
import torch

from handcast.errors import HandcastError
from handcast.models.cascade.testing import small_cascade, small_model_cfg


@pytest.fixture(scope="module")
def cascade(hm):
    return small_cascade(hm, seed=0)


def _inputs(b=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, 3, 256, 192, generator=g)
    kp = torch.rand(b, 21, 2, generator=g) * torch.tensor([191.0, 255.0])
    conf = torch.ones(b, 21)
    conf[0, 3] = 0
    K = torch.tensor([[400.0, 0, 90.0], [0, 400.0, 130.0], [0, 0, 1]]).expand(b, 3, 3).contiguous()
    return images, kp, conf, K


def test_canonical_rotation_is_recovered_and_the_latent_is_rotation_equivariant(cascade, hm):
    from handcast.models.cascade.handutil import finger_pose_pool, random_rotations, sample_meshes

    g = torch.Generator().manual_seed(1)
    v = sample_meshes(hm, 4, g, torch.as_tensor(finger_pose_pool(hm, 50, 1), dtype=torch.float32))
    R = random_rotations(4, torch.Generator().manual_seed(2))
    vr = v @ R.transpose(-1, -2)
    ae = cascade.ae
    R0, R1 = ae.canonical_rotation(v), ae.canonical_rotation(vr)
    torch.testing.assert_close(R1, R @ R0, atol=1e-4, rtol=0)
    with torch.no_grad():
        z0, z1 = ae.encode(v), ae.encode(vr)
        torch.testing.assert_close(z1[:, 6:], z0[:, 6:], atol=1e-3, rtol=0)
        torch.testing.assert_close(ae.decode(z1), ae.decode(z0) @ R.transpose(-1, -2), atol=1e-4, rtol=0)


def test_autoencoder_reconstructs_its_training_meshes_after_a_short_fit(hm):
    """The training stage itself (train_ae) on a tiny set: below 3 mm mean vertex error."""
    from handcast.models.cascade.model import PoseCascade
    from handcast.train.pose import train_ae

    torch.manual_seed(0)
    m = PoseCascade(small_model_cfg(ae={"pca_components": 24, "latent_dim": 18, "hidden": 128}), hm)
    cfg = {"train": {"seed": 0, "grad_clip": 1.0,
                     "ae": {"steps": 300, "batch_size": 64, "lr": 0.003, "meshes": 300, "crop_meshes": False}}}
    rec = train_ae(m, cfg, progress=False)
    assert rec["recon_train_mm"] < 3.0, rec
    assert rec["pca_floor_mm"] < rec["recon_train_mm"]
    assert rec["recon_heldout_mm"] < 6.0, rec  # 300 meshes: it generalises only roughly


def test_joint_diffusion_samples_shapes_root_and_determinism(cascade):
    images, kp, conf, K = _inputs()
    feats = cascade.backbone(images)
    s1 = cascade.joint.sample(feats, kp, conf, K, 4, "ddim", 2, torch.Generator().manual_seed(7))
    s2 = cascade.joint.sample(feats, kp, conf, K, 4, "ddim", 2, torch.Generator().manual_seed(7))
    s3 = cascade.joint.sample(feats, kp, conf, K, 4, "ddim", 2, torch.Generator().manual_seed(8))
    assert s1.shape == (3, 4, 21, 3)
    assert torch.equal(s1, s2) and not torch.allclose(s1, s3)
    assert torch.all(s1[:, :, 0] == 0)
    assert s1[:, 0].sub(s1[:, 1]).abs().max() > 0  # hypotheses differ


def test_cascade_estimate_crops_shapes_and_determinism(cascade, hm):
    images, kp, conf, K = _inputs()
    a = cascade.estimate_crops(images, kp, conf, K, 3, "ddim", 1, generator=torch.Generator().manual_seed(0))
    b = cascade.estimate_crops(images, kp, conf, K, 3, "ddim", 1, generator=torch.Generator().manual_seed(0))
    V = hm.num_vertices
    assert a["joint_samples"].shape == (3, 3, 21, 3) and a["vertex_samples"].shape == (3, 3, V, 3)
    assert set(a["aggregated"]) == {"single", "mean", "median", "reproj"}
    for j, v in a["aggregated"].values():
        assert j.shape == (3, 21, 3) and v.shape == (3, V, 3) and torch.isfinite(v).all()
    torch.testing.assert_close(a["vertex_samples"], b["vertex_samples"], rtol=0, atol=0)
    with pytest.raises(HandcastError, match="num_samples"):
        cascade.estimate_crops(images, kp, conf, K, 0)


def test_mesh_diffusion_uses_the_joint_condition(cascade):
    images, kp, conf, K = _inputs(2)
    feats = cascade.backbone(images)
    j = torch.randn(2, 21, 3) * 0.03
    z1 = cascade.mesh.sample(feats, kp, conf, K, j, "ddim", 1, torch.Generator().manual_seed(0))
    z2 = cascade.mesh.sample(feats, kp, conf, K, j * 2, "ddim", 1, torch.Generator().manual_seed(0))
    assert z1.shape == (2, cascade.ae_config.total_latent)
    assert not torch.allclose(z1, z2)


def test_checkpoint_round_trip_and_refusals(cascade, hm, tmp_path):
    from handcast.models.cascade.model import (
        RegressorModel, load_cascade, load_regressor, save_cascade, save_regressor,
    )

    p = save_cascade(tmp_path / "pose.safetensors", cascade)
    m2 = load_cascade(p, hand_model=hm)
    images, kp, conf, K = _inputs(2)
    o1 = cascade.estimate_crops(images, kp, conf, K, 2, generator=torch.Generator().manual_seed(3))
    o2 = m2.estimate_crops(images, kp, conf, K, 2, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(o1["vertex_samples"], o2["vertex_samples"], rtol=0, atol=0)
    part = save_cascade(tmp_path / "part.safetensors", cascade, ("ae",))
    with pytest.raises(HandcastError, match="not fully trained"):
        load_cascade(part, hand_model=hm)
    assert load_cascade(part, require_complete=False, hand_model=hm).trained_stages == ("ae",)
    with pytest.raises(HandcastError, match="expected 'pose-regressor'"):
        load_regressor(p, hand_model=hm)
    reg = RegressorModel(small_model_cfg(), hm)
    rp = save_regressor(tmp_path / "reg.safetensors", reg)
    with pytest.raises(HandcastError, match="expected 'pose'"):
        load_cascade(rp, hand_model=hm)
    assert load_regressor(rp, hand_model=hm).regressor_config.width == 32


def test_regressor_starts_at_the_flat_hand(hm):
    from handcast.geometry import sixd_to_rotmat
    from handcast.models.cascade.model import RegressorModel

    torch.manual_seed(0)
    reg = RegressorModel(small_model_cfg(), hm).eval()
    images, kp, conf, K = _inputs(2)
    with torch.no_grad():
        out = reg.predict(images, kp, conf, K)
    assert out["vertices"].shape == (2, hm.num_vertices, 3) and out["joints"].shape == (2, 21, 3)
    R = sixd_to_rotmat(out["rot6d"])
    assert (R - torch.eye(3)).abs().max() < 0.05
    torch.testing.assert_close(out["joints"][:, 0], torch.zeros(2, 3))


def test_fit_mesh_to_joints_recovers_a_known_hand(hm):
    from handcast.geometry import aa_to_rotmat
    from handcast.models.cascade.fitting import fit_mesh_to_joints
    from handcast.models.cascade.handutil import finger_pose_pool, random_rotations, right_hand

    g = torch.Generator().manual_seed(4)
    fingers = torch.as_tensor(finger_pose_pool(hm, 2, 4), dtype=torch.float32)
    R = torch.cat([random_rotations(2, g).unsqueeze(1), aa_to_rotmat(fingers)], 1)
    betas = torch.randn(2, 10, generator=g) * 0.5
    v, j = right_hand(hm, R, betas)
    fit = fit_mesh_to_joints(hm, j, iterations=200)
    err_j = (fit["joints"] - j).norm(dim=-1).mean() * 1000
    err_v = (fit["vertices"] - v).norm(dim=-1).mean() * 1000
    assert err_j < 3.0 and err_v < 6.0, (float(err_j), float(err_v))


def test_configs_and_model_building():
    from handcast.models.cascade.model import PoseCascade
    from handcast.train.pose import resolve_config

    tiny, paper = resolve_config("tiny"), resolve_config("paper")
    assert tiny["kind"] == paper["kind"] == "pose"
    assert (6 + tiny["model"]["ae"]["latent_dim"]) % tiny["model"]["mesh"]["token_dim"] == 0
    assert (6 + paper["model"]["ae"]["latent_dim"]) % paper["model"]["mesh"]["token_dim"] == 0
    with pytest.raises(HandcastError, match="invalid pose config"):
        resolve_config("tiny", ["model.joint.widht=3"])
    with pytest.raises(HandcastError, match="not a multiple of token_dim"):
        PoseCascade(small_model_cfg(ae={"latent_dim": 11}))
    with pytest.raises(HandcastError, match="unknown pose training stage"):
        from handcast.train.pose import train_pose

        train_pose("tiny", stages=["warmup"])


