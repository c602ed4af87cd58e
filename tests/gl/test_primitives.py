"""Procedural textures and object meshes."""

from __future__ import annotations

import numpy as np
import pytest

from handcast.errors import HandcastError
from handcast.gl import primitives as P
from handcast.gl.renderer import Mesh, Renderer


@pytest.mark.parametrize("kind", P.TEXTURE_KINDS)
def test_texture_deterministic_and_shaped(kind):
    a = P.procedural_texture(kind, np.random.default_rng(5), (48, 32))
    b = P.procedural_texture(kind, np.random.default_rng(5), (48, 32))
    c = P.procedural_texture(kind, np.random.default_rng(6), (48, 32))
    assert a.shape == (32, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    if kind != "plain":
        assert a.reshape(-1, 3).std(0).max() > 4  # has a pattern


def test_texture_kinds_differ_and_errors():
    rng = np.random.default_rng(0)
    imgs = [P.procedural_texture(k, rng, 32) for k in ("checker", "wood", "random")]
    assert all(i.shape == (32, 32, 3) for i in imgs)
    with pytest.raises(HandcastError):
        P.procedural_texture("velvet", rng, 32)
    with pytest.raises(HandcastError):
        P.procedural_texture("wood", rng, 0)


def test_textured_plane_geometry():
    tex = np.zeros((8, 8, 3), np.uint8)
    m = P.textured_plane([0, 0.1, 0.6], [0, -1, 0], (0.4, 0.2), tex, up=[0, 0, 1], texture_scale=0.1)
    assert isinstance(m, Mesh) and m.vertices.shape == (4, 3) and m.uv.shape == (4, 2)
    np.testing.assert_allclose(m.vertices[:, 1], 0.1, atol=1e-6)
    np.testing.assert_allclose(np.ptp(m.vertices[:, 0]), 0.4, atol=1e-6)
    np.testing.assert_allclose(np.ptp(m.vertices[:, 2]), 0.2, atol=1e-6)
    np.testing.assert_allclose(np.ptp(m.uv, axis=0), [4.0, 2.0], atol=1e-6)  # repeats every 10 cm


@pytest.mark.parametrize("kind", P.OBJECT_KINDS)
def test_objects(kind):
    rng = np.random.default_rng(0)
    m = P.random_object(rng, kind)
    assert np.isfinite(m.vertices).all() and len(m.faces) > 10
    ext = np.ptp(m.vertices, axis=0)
    assert (ext > 0.005).all() and (ext < 0.3).all()
    T = np.eye(4)
    T[:3, 3] = [0.1, 0.2, 0.3]
    moved = m.transformed(T)
    np.testing.assert_allclose(moved.vertices.mean(0), m.vertices.mean(0) + [0.1, 0.2, 0.3], atol=1e-5)


def test_box_extents_and_mug_handle():
    b = P.box((0.1, 0.2, 0.3))
    np.testing.assert_allclose(np.ptp(b.vertices, axis=0), [0.1, 0.2, 0.3], atol=1e-6)
    m = P.mug(radius=0.04, height=0.1, handle=True)
    assert m.vertices[:, 0].max() > 0.05  # the handle sticks out on +x
    assert abs(m.vertices[:, 0].min() + 0.04) < 1e-3


def test_scene_renders():
    rng = np.random.default_rng(2)
    K = np.array([[100.0, 0, 32], [0, 100.0, 32], [0, 0, 1]])
    table = P.textured_plane([0, 0.1, 0.5], [0, -1, 0], (1.0, 1.0), P.procedural_texture("wood", rng, 64), up=[0, 0, 1])
    T = np.eye(4)
    T[:3, :3] = [[1, 0, 0], [0, 0, -1], [0, 1, 0]]  # object z-up -> camera -y
    T[:3, 3] = [0, 0.05, 0.5]
    obj = P.mug(color=(200, 30, 30), transform=T)
    img = Renderer(64, 64).render([table, obj], K, background=(0, 0, 0))
    assert img[32, 32, 0] > img[32, 32, 1] + 50  # the red mug in the middle
    assert img[60, 5].sum() > 60  # the table at the bottom
