import math

import numpy as np
import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handcast.geometry import (
    camera_center,
    invert_rigid,
    kpe,
    make_intrinsics,
    plucker,
    project,
    rigid,
    transform_points,
)

D = torch.float64


def random_camera(seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    world_to_cam = rigid(roma.random_rotmat(dtype=D), torch.randn(3, generator=g, dtype=D))
    K = make_intrinsics(550.0, 580.0, 300.0, 250.0, dtype=D)
    return K, world_to_cam


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_plucker_same_ray_for_every_depth(seed):
    K, w2c = random_camera(seed)
    c2w = invert_rigid(w2c)
    g = torch.Generator().manual_seed(seed + 1)
    dir_cam = torch.randn(3, generator=g, dtype=D)
    dir_cam[2] = dir_cam[2].abs() + 0.5  # a ray in front of the camera
    depths = torch.tensor([0.3, 1.0, 2.5, 10.0], dtype=D)
    X_cam = depths[:, None] * dir_cam  # points along one camera ray
    X_world = transform_points(c2w, X_cam)
    uv = project(X_cam, K)
    pl = plucker(uv, K, w2c)  # (4, 6)
    assert pl.shape == (4, 6)
    assert torch.allclose(pl, pl[:1].expand(4, 6), atol=1e-9)
    d, m = pl[:, :3], pl[:, 3:]
    assert torch.allclose(d.norm(dim=-1), torch.ones(4, dtype=D), atol=1e-12)
    assert torch.allclose((d * m).sum(-1), torch.zeros(4, dtype=D), atol=1e-10)
    # the moment is X x d for any point X on the ray (world frame)
    assert torch.allclose(torch.linalg.cross(X_world, d, dim=-1), m, atol=1e-9)
    assert torch.allclose(torch.linalg.cross(camera_center(w2c).expand(4, 3), d, dim=-1), m, atol=1e-9)
    # the direction points from the camera centre towards the points
    to_pts = X_world - camera_center(w2c)
    assert torch.allclose(d, to_pts / to_pts.norm(dim=-1, keepdim=True), atol=1e-9)


def test_plucker_identity_camera_known_answer():
    K = make_intrinsics(100.0, 100.0, 50.0, 50.0, dtype=D)
    pl = plucker(torch.tensor([150.0, 50.0], dtype=D), K, torch.eye(4, dtype=D))
    s = 1 / math.sqrt(2)
    assert pl.tolist() == pytest.approx([s, 0.0, s, 0.0, 0.0, 0.0])
    # a camera translated by +1 in world x: centre (1, 0, 0); optical-axis ray has moment c x d
    w2c = rigid(torch.eye(3, dtype=D), torch.tensor([-1.0, 0, 0], dtype=D))
    pl = plucker(torch.tensor([50.0, 50.0], dtype=D), K, w2c)
    assert pl.tolist() == pytest.approx([0, 0, 1, 0, -1, 0])


def test_plucker_batched_shapes_and_numpy():
    K = np.broadcast_to(np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]), (8, 1, 3, 3))
    T = np.broadcast_to(np.eye(4), (8, 1, 4, 4))
    uv = np.random.default_rng(0).uniform(0, 640, size=(8, 42, 2))
    out = plucker(uv, K, T)
    assert isinstance(out, np.ndarray) and out.shape == (8, 42, 6)


def test_kpe_known_answer():
    K = make_intrinsics(100.0, 200.0, 50.0, 60.0, dtype=D)
    uv = torch.tensor([150.0, 60.0 - 200.0 * math.sqrt(3)], dtype=D)  # phi_x = pi/4, phi_y = -pi/3
    out = kpe(uv, K, num_freqs=2)
    px, py = math.pi / 4, -math.pi / 3
    expected = [math.sin(px), math.sin(2 * px), math.sin(py), math.sin(2 * py),
                math.cos(px), math.cos(2 * px), math.cos(py), math.cos(2 * py)]
    assert out.shape == (8,)
    assert out.tolist() == pytest.approx(expected, abs=1e-12)


def test_kpe_shape_default_four_freqs():
    K = make_intrinsics(500.0, 500.0, 320.0, 240.0)
    out = kpe(torch.rand(3, 2, 21, 2) * 640, K)
    assert out.shape == (3, 2, 21, 16)
    # principal point: all sines 0, all cosines 1
    c = kpe(torch.tensor([320.0, 240.0]), K)
    assert c[:8].abs().max() < 1e-7 and (c[8:] - 1).abs().max() < 1e-7
