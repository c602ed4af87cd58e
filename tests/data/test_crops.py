"""Single-hand crops (handcast.data.crops): boxes, canonical (mirrored) crops, crop intrinsics, a built crop set."""

import numpy as np
import pytest

from handcast.data.crops import (
    CROP_SIZE,
    CropSet,
    canonical_crop,
    crop_hand,
    crop_intrinsics,
    hand_box,
    mirror_x,
    to_crop_pixels,
    unit_to_uv,
    uv_to_unit,
)
from handcast.data.images import uncrop_points
from handcast.errors import HandcastError
from handcast.synth.crops import build_crops

K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 118.0], [0.0, 0.0, 1.0]])


def _points(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.04, (21, 3)) + np.array([0.05, -0.03, 0.5])


def _project(P, K):
    uvw = P @ K.T
    return uvw[..., :2] / uvw[..., 2:]


def _image(w=320, h=240, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_hand_box_contains_the_keypoints_and_ignores_missing_ones():
    uv = _project(_points(), K)
    conf = np.ones(21)
    uv_bad = uv.copy()
    uv_bad[3] = [5000.0, -5000.0]
    conf[3] = 0
    box = hand_box(uv_bad, conf, pad=1.4)
    keep = np.delete(uv, 3, axis=0)
    assert (box[:2] <= keep.min(0)).all() and (box[2:] >= keep.max(0)).all()
    np.testing.assert_allclose(box[2:] - box[:2], (keep.max(0) - keep.min(0)) * 1.4)
    uv_bad[5] = np.nan  # NaN coordinates are missing too
    assert np.isfinite(hand_box(uv_bad, conf)).all()
    with pytest.raises(HandcastError, match="at least 2 keypoints"):
        hand_box(uv, np.eye(21)[0])


@pytest.mark.parametrize("flip", [False, True])
def test_crop_intrinsics_project_canonical_points_to_crop_pixels(flip):
    P = _points(1)
    uv = _project(P, K)
    box = hand_box(uv)
    _, affine = canonical_crop(_image(), box, flip)
    Kc = crop_intrinsics(K, affine, flip)
    Pc = mirror_x(P) if flip else P
    np.testing.assert_allclose(_project(Pc, Kc), to_crop_pixels(uv, affine), atol=1e-9)
    np.testing.assert_allclose(uncrop_points(to_crop_pixels(uv, affine), affine), uv, atol=1e-9)
    assert Kc[0, 0] > 0 and Kc[1, 1] > 0  # the mirrored crop of a mirrored hand is an ordinary camera


def test_canonical_crop_of_a_left_hand_is_the_mirrored_crop():
    img = _image(seed=2)
    box = (100.0, 60.0, 180.0, 160.0)
    t0, a0 = canonical_crop(img, box, False)
    t1, a1 = canonical_crop(img, box, True)
    np.testing.assert_array_equal(t1.numpy(), t0.numpy()[..., ::-1])
    u = np.array([[10.0, 20.0], [150.0, 3.0]])
    mirrored = np.stack([CROP_SIZE[1] - 1 - u[:, 0], u[:, 1]], -1)
    np.testing.assert_allclose(uncrop_points(u, a1), uncrop_points(mirrored, a0))
    assert t0.shape == (3,) + CROP_SIZE


def test_crop_hand_keypoints_round_trip_and_missing_are_zero():
    P = _points(3)
    uv = _project(P, K)
    conf = np.ones(21)
    uv[7] = np.nan
    c = crop_hand(_image(), uv, conf, hand=1, K=K)
    assert c["flip"] and c["conf"][7] == 0 and (c["kp2d"][7] == 0).all()
    ok = np.arange(21) != 7
    np.testing.assert_allclose(uncrop_points(c["kp2d"][ok], c["affine"]), uv[ok], atol=1e-3)
    np.testing.assert_allclose(unit_to_uv(uv_to_unit(c["kp2d"])), c["kp2d"], atol=1e-4)
    with pytest.raises(HandcastError, match="hand must be"):
        crop_hand(_image(), uv, conf, hand=2, K=K)


@pytest.fixture(scope="module")
def smoke_set(tmp_path_factory):
    out = tmp_path_factory.mktemp("crops") / "smoke"
    build_crops(out, "smoke", seed=3, progress=False)
    return out


def test_built_crop_set_is_consistent(smoke_set, hm):
    cs = CropSet(smoke_set, "train")
    a = cs.arrays
    n = len(cs)
    assert n > 0 and cs.images().shape == (n,) + CROP_SIZE + (3,)
    assert cs.hand_model == "open" and cs.domains == ("lab", "diverse", "wild")
    # 3D joints + root project onto the exact 2D keypoints through the crop intrinsics
    P = a["joints"] + a["root"][:, None]
    uvw = np.einsum("nij,nkj->nki", a["K_crop"].astype(np.float64), P.astype(np.float64))
    np.testing.assert_allclose(uvw[..., :2] / uvw[..., 2:], a["kp2d"], atol=0.05)
    # root-relative: the wrist is the origin; the fingertip keypoints are mesh vertices (also for mirrored hands)
    np.testing.assert_allclose(a["joints"][:, 0], 0.0, atol=1e-7)
    tips = list(hm.tip_vertex_ids)
    np.testing.assert_allclose(a["vertices"][:, tips], a["joints"][:, [4, 8, 12, 16, 20]], atol=1e-5)
    assert (a["flip"] == (a["hand"] == 1)).all()
    # the canonical pose through the RIGHT hand model reproduces the canonical mesh, left hands included
    import torch

    from handcast.geometry import aa_to_rotmat
    from handcast.models.cascade.handutil import right_hand

    v, _ = right_hand(hm, aa_to_rotmat(torch.as_tensor(a["pose"])), torch.as_tensor(a["betas"]))
    np.testing.assert_allclose(v.numpy(), a["vertices"], atol=1e-5)


def test_crop_set_errors(smoke_set, tmp_path):
    with pytest.raises(HandcastError, match="no split 'val'"):
        CropSet(smoke_set, "val")
    with pytest.raises(HandcastError, match="not found"):
        CropSet(tmp_path / "nothing", "train")
    with pytest.raises(HandcastError, match="already exists"):
        build_crops(smoke_set, "smoke", progress=False)
    with pytest.raises(HandcastError, match="unknown crop preset"):
        build_crops(tmp_path / "x", "huge", progress=False)
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("name, value", [("joints", np.nan), ("K", np.inf), ("root", 1e30)])
def test_a_damaged_crop_label_is_named(smoke_set, tmp_path, name, value):
    """Training on a crop set with a NaN, infinite or absurd 3D label is refused, naming the array and crop."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(smoke_set, bad)
    with np.load(bad / "train.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays[name] = arrays[name].astype(np.float64)
    arrays[name].reshape(len(arrays[name]), -1)[2, 0] = value
    np.savez(bad / "train.npz", **arrays)
    with pytest.raises(HandcastError, match=rf"'{name}' of crop 2 holds NaN"):
        CropSet(bad, "train")
    CropSet(smoke_set, "train")  # the undamaged set still opens
