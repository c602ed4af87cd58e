"""Camera augmentation of the stage-1 training crops (handcast.data.crops.camera_views,
handcast.train.pose.camera_batch): the new keypoints are the exact projections of the turned 3D labels."""

import numpy as np
import pytest
import torch

from handcast.data.crops import CROP_SIZE, camera_views


def _hands(b=64, seed=0):
    rng = np.random.default_rng(seed)
    j = rng.normal(0, 0.04, (b, 21, 3))
    j[:, 0] = 0
    return j.astype(np.float32)


def _project(K, X):
    p = X @ np.swapaxes(K, 1, 2)
    return p[..., :2] / p[..., 2:]


def test_keypoints_are_the_exact_projections_of_the_turned_joints():
    j = _hands()
    v = camera_views(j, np.random.default_rng(1), {"fov_deg": [20, 100], "depth_m": [0.2, 1.5]})
    X = v["joints"].astype(np.float64) + v["root"][:, None].astype(np.float64)
    assert (X[..., 2] > 0.05).all()
    np.testing.assert_allclose(v["kp2d"], _project(v["K_crop"].astype(np.float64), X), atol=2e-3)
    # a rigid turn about the root: the wrist stays at 0, every distance is kept
    np.testing.assert_allclose(v["joints"][:, 0], 0, atol=1e-7)
    d0 = np.linalg.norm(j[:, :, None] - j[:, None], axis=-1)
    d1 = np.linalg.norm(v["joints"][:, :, None] - v["joints"][:, None], axis=-1)
    np.testing.assert_allclose(d1, d0, atol=1e-6)
    # ... and the hand is turned (any viewpoint), and lands inside the crop
    assert np.median(np.abs(v["joints"] - j).max((1, 2))) > 0.01
    h, w = CROP_SIZE
    assert (v["kp2d"][..., 0] > -0.5).all() and (v["kp2d"][..., 0] < w - 0.5).all()
    assert (v["kp2d"][..., 1] > -0.5).all() and (v["kp2d"][..., 1] < h - 0.5).all()
    # square pixels, cameras of many fields of view and off-axis crops
    np.testing.assert_allclose(v["K_crop"][:, 0, 0], v["K_crop"][:, 1, 1], rtol=1e-5)
    assert v["K_crop"][:, 0, 0].max() / v["K_crop"][:, 0, 0].min() > 3


def test_no_turn_keeps_the_joints():
    j = _hands(8)
    v = camera_views(j, np.random.default_rng(2), {"rot3d_deg": 0.0, "inplane_deg": 0.0})
    np.testing.assert_allclose(v["joints"], j, atol=1e-6)


@pytest.fixture(scope="module")
def batches(tmp_path_factory):
    from handcast.data.crops import CropBatches, CropSet
    from handcast.synth.crops import build_crops

    path = build_crops(tmp_path_factory.mktemp("crops") / "smoke", "smoke", seed=3, progress=False)
    return CropBatches(CropSet(path, "train"), {"kp_noise_px": 0.0, "p_drop_kp": 0.0, "p_use_detector": 0.0})


def test_camera_batch_default_changes_nothing_and_draws_nothing(batches):
    from handcast.train.pose import _crop_batch, camera_batch

    rng = np.random.default_rng(0)
    b = _crop_batch(batches, np.arange(4), rng, ("joints",))
    state = rng.bit_generator.state
    out = camera_batch(b, rng, {"camera_aug": {"p": 0.0}}, 0.0)
    assert out is b and "image_mask" not in out and rng.bit_generator.state == state


def test_camera_batch_reviews_items_and_hides_their_images(batches):
    from handcast.models.cascade.aggregate import fit_root
    from handcast.train.pose import _crop_batch, camera_batch

    rng = np.random.default_rng(0)
    n = min(6, batches.n)
    b = _crop_batch(batches, np.arange(n), rng, ("joints",))
    out = camera_batch(b, rng, {"camera_aug": {"p": 1.0}, "kp_noise_px": 0.0, "p_drop_kp": 0.0}, 0.0)
    assert out["image_mask"].tolist() == [0.0] * n
    assert not torch.allclose(out["joints"], b["joints"]) and not torch.allclose(out["K"], b["K"])
    # the new keypoints are the projections of the new joints with the new camera (the root refits exactly)
    root = fit_root(out["joints"].double(), out["kp"].double(), out["conf"].double(), out["K"].double())
    X = (out["joints"].double() + root[:, None]).numpy()
    np.testing.assert_allclose(out["kp"].numpy(), _project(out["K"].double().numpy(), X), atol=0.05)
    out2 = camera_batch(b, np.random.default_rng(0), {"camera_aug": {"p": 0.0}}, 1.0)
    assert out2["image_mask"].tolist() == [0.0] * n and torch.equal(out2["joints"], b["joints"])


def test_the_tiny_config_keeps_todays_training():
    from handcast.train.pose import resolve_config

    cfg = resolve_config("tiny")
    assert cfg["data"]["camera_aug"]["p"] == 0.0 and cfg["train"]["joint"]["p_keypoints_only"] == 0.0


def test_camera_batch_pool_hands_replace_items_by_pool_hands_seen_anew(batches, hm):
    """With pool_hands.p = 1 every item becomes a hand of the pool (its bone lengths, not the crop's), seen by a
    new camera, its image hidden; the pool's hands are the hand model's (wrist at 0, bones of a hand's size)."""
    from handcast.train.pose import _crop_batch, camera_batch, hand_pool

    pool = hand_pool(hm, 3, seed=1)
    assert pool.shape == (3, 21, 3) and np.abs(pool[:, 0]).max() < 1e-6
    assert np.array_equal(pool, hand_pool(hm, 3, seed=1)) and not np.allclose(pool, hand_pool(hm, 3, seed=2))
    palm = np.linalg.norm(pool[:, 9], axis=-1)  # wrist -> middle knuckle, m
    assert ((palm > 0.06) & (palm < 0.13)).all(), palm

    def bones(j):
        return np.linalg.norm(j[:, 1:] - j[:, [0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19]],
                              axis=-1)

    rng = np.random.default_rng(0)
    n = min(6, batches.n)
    b = _crop_batch(batches, np.arange(n), rng, ("joints",))
    cfg = {"camera_aug": {"p": 0.0}, "pool_hands": {"p": 1.0}, "kp_noise_px": 0.0, "p_drop_kp": 0.0}
    out = camera_batch(b, rng, cfg, 0.0, pool)
    assert out["image_mask"].tolist() == [0.0] * n
    got, ref = bones(out["joints"].numpy()), bones(pool)
    # each item has the bone lengths of one of the pool's hands (a rigid turn keeps them)
    assert all(np.abs(ref - g).max(-1).min() < 1e-5 for g in got)
    assert not any(np.abs(bones(b["joints"].numpy()) - g).max(-1).min() < 1e-5 for g in got)
    # without a pool the option does nothing and draws nothing
    state = rng.bit_generator.state
    assert camera_batch(b, rng, cfg, 0.0, None) is b and rng.bit_generator.state == state
