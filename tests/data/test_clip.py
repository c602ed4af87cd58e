"""Clip schema: validation, slicing, rebasing (handcast.data.clip) and the random_clip helper."""

import dataclasses

import numpy as np
import pytest

from handcast.data.clip import FRAME_FIELDS, Clip
from handcast.geometry import aa_to_rotmat as _rotvec_to_matrix
from handcast.data.testing import project, random_clip
from handcast.errors import HandcastError


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_random_clip_is_valid_and_self_consistent(rng):
    for T in (1, 16, 37):
        clip = random_clip(rng, T, with_image=True).validate()
        assert clip.num_frames == T
        assert clip.pose.dtype == np.float32 and clip.valid.dtype == np.bool_
        assert clip.image.shape == (clip.image_size[1], clip.image_size[0], 3)
        np.testing.assert_allclose(clip.world_to_cam[0], np.eye(4), atol=0)
        # every joint in front of every camera, kp2d = exact projection
        W = clip.world_to_cam.astype(np.float64)
        cam = np.einsum("tij,thkj->thki", W[:, :3, :3], clip.joints3d) + W[:, None, None, :3, 3]
        assert (cam[..., 2] > 0.2).all()
        np.testing.assert_allclose(project(clip.K, clip.world_to_cam, clip.joints3d), clip.kp2d, atol=1e-3)
        assert ((clip.kp2d_conf > 0) == clip.valid[..., None]).all()
        assert clip.group_id == clip.clip_id


def test_construction_converts_floats_and_int_valid(rng):
    c = random_clip(rng, 5)
    c2 = dataclasses.replace(c, pose=c.pose.astype(np.float64), valid=c.valid.astype(np.int64))
    assert c2.pose.dtype == np.float32 and c2.valid.dtype == np.bool_
    np.testing.assert_array_equal(c2.valid, c.valid)
    with pytest.raises(HandcastError, match="'valid' must be boolean"):
        dataclasses.replace(c, valid=np.full((5, 2), 0.5))
    with pytest.raises(HandcastError, match="'image' must be uint8"):
        dataclasses.replace(c, image=np.zeros((48, 64, 3), np.float32))


def _bad(clip, **kw):
    return dataclasses.replace(clip, **kw)


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda c: _bad(c, pose=np.zeros((8, 2, 15, 3))), r"'pose' has shape \(8, 2, 15, 3\), expected \(T, 2, 16, 3\)"),
        (lambda c: _bad(c, transl=np.zeros((7, 2, 3))), r"'transl' has 7 frames, expected T = 8"),
        (lambda c: _bad(c, joints3d=np.zeros((8, 21, 3))), r"'joints3d' has shape"),
        (lambda c: _bad(c, kp2d=np.zeros((8, 2, 21, 3))), r"'kp2d' has shape"),
        (lambda c: _bad(c, betas=np.zeros((2, 16))), r"'betas' has shape \(2, 16\), expected \(2, 10\)"),
        (lambda c: _bad(c, K=np.zeros((3, 4))), r"'K' has shape"),
        (lambda c: _bad(c, K=np.diag([np.nan, 1.0, 1.0])), r"'K' contains NaN"),
        (lambda c: _bad(c, K=np.diag([0.0, 100.0, 1.0])), r"non-positive focal length"),
        (lambda c: _bad(c, K=np.diag([-5.0, 100.0, 1.0])), r"non-positive focal length"),
        (lambda c: _bad(c, provenance="guess"), r"unknown provenance 'guess'"),
        (lambda c: _bad(c, hand_model="smplx"), r"unknown hand_model 'smplx'"),
        (lambda c: _bad(c, fps=0.0), r"'fps' must be a positive number"),
        (lambda c: _bad(c, clip_id=""), r"clip_id"),
        (lambda c: _bad(c, meta={"x": object()}), r"'meta' is not JSON-serialisable"),
        (lambda c: _bad(c, kp2d_conf=np.full((8, 2, 21), 1.5)), r"kp2d_conf"),
        (lambda c: _bad(c, image=np.zeros((10, 10, 3), np.uint8)), r"'image' has shape \(10, 10, 3\)"),
        (lambda c: _bad(c, world_to_cam=np.tile(np.diag([2.0, 2, 2, 1]), (8, 1, 1))), r"not proper rotations"),
        (lambda c: _bad(c, world_to_cam=np.tile(np.diag([1.0, 1, -1, 1]), (8, 1, 1))), r"not proper rotations"),
        (lambda c: _bad(c, world_to_cam=np.tile(2 * np.eye(4), (8, 1, 1))), r"last row"),
        (lambda c: _bad(c, image_size=(0, 48)), r"image_size"),
    ],
)
def test_validate_rejects(rng, make, pattern):
    clip = random_clip(rng, 8, with_image=True)
    with pytest.raises(HandcastError, match=pattern):
        make(clip).validate()


def test_validate_zero_frames(rng):
    c = random_clip(rng, 4)
    empty = dataclasses.replace(c, **{n: getattr(c, n)[:0] for n in FRAME_FIELDS})
    with pytest.raises(HandcastError, match=r"0 frames"):
        empty.validate()


def test_nan_only_allowed_where_unlabelled(rng):
    c = random_clip(rng, 6, p_valid=1.0)
    c.valid[2, 1] = False
    c.kp2d_conf[2, 1] = 0.0
    j = c.joints3d.copy()
    j[2, 1] = np.nan  # hand not valid there: allowed
    kp = c.kp2d.copy()
    kp[2, 1] = np.nan  # conf 0 there: allowed
    dataclasses.replace(c, joints3d=j, kp2d=kp).validate()
    j[3, 0, 5, 2] = np.nan  # valid hand: error naming field, frame and hand
    with pytest.raises(HandcastError, match=r"'joints3d' has NaN/inf at frame 3, hand 0"):
        dataclasses.replace(c, joints3d=j).validate()
    p = c.pose.copy()
    p[0, 0, 0, 0] = np.inf
    with pytest.raises(HandcastError, match=r"'pose' has NaN/inf at frame 0, hand 0"):
        dataclasses.replace(c, pose=p).validate()
    kp[4, 0, 3] = np.nan
    with pytest.raises(HandcastError, match=r"'kp2d' has NaN/inf at frame 4, hand 0, keypoint 3"):
        dataclasses.replace(c, kp2d=kp).validate()
    # a 2d-only clip carries no 3D information: NaN 3D is fine
    dataclasses.replace(c, provenance="2d-only", joints3d=np.full_like(j, np.nan)).validate()


def test_slice(rng):
    c = random_clip(rng, 30, with_image=True)
    s = c.slice(5, 12)
    assert s.num_frames == 7 and s.image is None
    for name in FRAME_FIELDS:
        np.testing.assert_array_equal(getattr(s, name), getattr(c, name)[5:12])
    # nothing re-expressed: world_to_cam still relative to the original frame 0
    np.testing.assert_array_equal(s.world_to_cam[0], c.world_to_cam[5])
    s0 = c.slice(0, 10)
    assert s0.image is c.image and s0.num_frames == 10
    assert c.slice(-4).num_frames == 4
    s.pose[:] = 0  # a copy, not a view
    assert np.abs(c.pose[5:12]).sum() > 0
    with pytest.raises(HandcastError, match="empty"):
        c.slice(10, 10)


def test_rebase_zero_is_identity(rng):
    c = random_clip(rng, 12, with_image=True)
    r = c.rebase(0, rest_wrist=rng.normal(0, 0.05, (2, 3)))
    assert r.image is c.image
    for name in ("transl", "joints3d", "world_to_cam", "kp2d", "valid"):
        np.testing.assert_allclose(getattr(r, name), getattr(c, name), atol=1e-6)
    np.testing.assert_allclose(_rotvec_to_matrix(r.pose), _rotvec_to_matrix(c.pose), atol=1e-5)


def test_rebase_reprojects_and_moves_rigid_hands(rng):
    c = random_clip(rng, 40)
    J0 = rng.normal(0, 0.05, (2, 3))
    t0 = 17
    r = c.rebase(t0, J0).validate()
    assert r.num_frames == 40 - t0 and r.image is None
    np.testing.assert_array_equal(r.world_to_cam[0], np.eye(4, dtype=np.float32))
    # projecting the rebased joints with the rebased cameras gives the same 2D as before
    np.testing.assert_allclose(project(r.K, r.world_to_cam, r.joints3d), c.kp2d[t0:], atol=2e-3)
    np.testing.assert_allclose(
        project(r.K, r.world_to_cam, r.joints3d), project(c.K, c.world_to_cam[t0:], c.joints3d[t0:]), atol=2e-3
    )
    # MANO global transform: x = R_g (p - J0) + J0 + transl must map to the rebased frame like any point
    p = rng.normal(0, 0.08, (2, 7, 3)) + J0[:, None]
    M = c.world_to_cam[t0].astype(np.float64)
    for t in (0, 5, 22):
        for h in range(2):
            Rg = _rotvec_to_matrix(c.pose[t0 + t, h, 0].astype(np.float64))
            x = (p[h] - J0[h]) @ Rg.T + J0[h] + c.transl[t0 + t, h]
            x_new_expected = x @ M[:3, :3].T + M[:3, 3]
            Rg2 = _rotvec_to_matrix(r.pose[t, h, 0].astype(np.float64))
            x_new = (p[h] - J0[h]) @ Rg2.T + J0[h] + r.transl[t, h]
            np.testing.assert_allclose(x_new, x_new_expected, atol=1e-5)
    # finger rotations untouched
    np.testing.assert_array_equal(r.pose[:, :, 1:], c.pose[t0:, :, 1:])


def test_rebase_composes(rng):
    c = random_clip(rng, 30)
    J0 = rng.normal(0, 0.05, (2, 3))
    a = c.rebase(5, J0).rebase(7, J0)
    b = c.rebase(12, J0)
    for name in ("transl", "joints3d", "world_to_cam"):
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5)
    np.testing.assert_allclose(_rotvec_to_matrix(a.pose), _rotvec_to_matrix(b.pose), atol=1e-5)


def test_rebase_errors(rng):
    c = random_clip(rng, 5)
    with pytest.raises(HandcastError, match="outside"):
        c.rebase(5, np.zeros((2, 3)))
    with pytest.raises(HandcastError, match=r"rest_wrist must have shape \(2, 3\)"):
        c.rebase(1, np.zeros(3))


def test_clip_is_a_dataclass_with_defaults(rng):
    c = random_clip(rng, 3)
    assert isinstance(c, Clip)
    c2 = dataclasses.replace(c, group_id="g1")
    assert c2.group_id == "g1" and c2.meta == c.meta
