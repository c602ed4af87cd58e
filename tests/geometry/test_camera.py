import json

import numpy as np
import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handcast.conventions import DEFAULT_FOV_DEG
from handcast.errors import HandcastError
from handcast.geometry import (
    camera_center,
    check_intrinsics,
    compose,
    focal_from_fov,
    fov_intrinsics,
    invert_rigid,
    look_at,
    make_intrinsics,
    project,
    read_intrinsics,
    resolve_intrinsics,
    rigid,
    transform_points,
    unproject,
)

D = torch.float64


def K64(fx=600.0, fy=620.0, cx=320.0, cy=240.0, skew=0.0):
    return make_intrinsics(fx, fy, cx, cy, skew, dtype=D)


def test_project_known_answer():
    K = K64(500.0, 500.0, 320.0, 240.0)
    uv = project(torch.tensor([0.1, -0.2, 2.0], dtype=D), K)
    assert uv.tolist() == pytest.approx([320 + 500 * 0.05, 240 - 500 * 0.1])


def test_points_behind_camera():
    K = K64()
    pts = torch.tensor([[0.1, 0.1, 1.0], [0.1, 0.1, -1.0], [0.0, 0.0, 0.0]], dtype=D, requires_grad=True)
    uv = project(pts, K)
    assert torch.isfinite(uv[0]).all() and torch.isnan(uv[1:]).all()
    uv[0].sum().backward()  # NaNs elsewhere do not poison the gradient of valid points
    assert torch.isfinite(pts.grad).all()
    assert torch.isfinite(project(pts, K, behind="clamp")).all()
    with pytest.raises(HandcastError):
        project(pts, K, behind="bogus")


@given(st.integers(0, 2**31 - 1), st.floats(0.0, 0.05))
@settings(max_examples=40, deadline=None)
def test_project_unproject_round_trip(seed, skew):
    g = torch.Generator().manual_seed(seed)
    p = torch.randn(5, 21, 3, generator=g, dtype=D)
    p[..., 2] = p[..., 2].abs() + 0.2
    K = K64(skew=skew * 600)
    uv = project(p, K)
    assert torch.allclose(unproject(uv, p[..., 2], K), p, atol=1e-10)


def test_batched_per_frame_intrinsics_broadcast():
    K = torch.stack([K64(fx=500.0), K64(fx=800.0)])[:, None]  # (2, 1, 3, 3)
    p = torch.tensor([[0.1, 0.0, 1.0]], dtype=D).expand(2, 3, 3)  # (2, 3, 3) points
    uv = project(p, K)
    assert uv.shape == (2, 3, 2)
    assert uv[0, 0, 0].item() == pytest.approx(370.0) and uv[1, 0, 0].item() == pytest.approx(400.0)


def test_check_intrinsics_rejects_degenerate():
    good = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    assert check_intrinsics(good) is good
    for bad in ([[0.0, 0, 320], [0, 500, 240], [0, 0, 1]],
                [[500.0, 0, 320], [0, -5, 240], [0, 0, 1]],
                [[np.nan, 0, 320], [0, 500, 240], [0, 0, 1]],
                [[500.0, 0, 320], [0, 500, 240], [0, 1, 1]]):
        with pytest.raises(HandcastError):
            check_intrinsics(np.array(bad))
    with pytest.raises(HandcastError, match="shape"):
        check_intrinsics(np.eye(4))
    with pytest.raises(HandcastError):
        make_intrinsics(0.0, 500.0, 1.0, 1.0)
    with pytest.raises(HandcastError):
        make_intrinsics(float("inf"), 500.0, 1.0, 1.0)


def test_make_intrinsics_dtype_follows_tensors():
    assert make_intrinsics(1.0, 1.0, 0.0, 0.0).dtype == torch.get_default_dtype()
    fx = torch.tensor([100.0, 200.0], dtype=D)
    K = make_intrinsics(fx, fx, 5.0, 6.0)
    assert K.shape == (2, 3, 3) and K.dtype == D


def test_focal_from_fov():
    assert focal_from_fov(90.0, 640) == pytest.approx(320.0)
    assert focal_from_fov(60.0, 100) == pytest.approx(50.0 / np.tan(np.pi / 6))
    with pytest.raises(HandcastError):
        focal_from_fov(180.0, 640)
    K = fov_intrinsics(90.0, 641, 481)
    assert K[0, 0].item() == pytest.approx(320.5) and K[0, 2].item() == 320.0 and K[1, 2].item() == 240.0


def test_resolve_intrinsics_known_answers(tmp_path):
    f60 = 320.0 / np.tan(np.radians(30.0))  # 60 deg across 640 px
    K = resolve_intrinsics((640, 480))
    assert DEFAULT_FOV_DEG == 60.0
    np.testing.assert_allclose(K, [[f60, 0, 319.5], [0, f60, 239.5], [0, 0, 1]], rtol=1e-12)
    np.testing.assert_allclose(resolve_intrinsics((640, 480), fov=90.0)[0, 0], 320.0)
    # the field of view is across the longer side: a portrait image of the same camera has the same focal length
    np.testing.assert_allclose(resolve_intrinsics((480, 640)), [[f60, 0, 239.5], [0, f60, 319.5], [0, 0, 1]], rtol=1e-12)
    np.testing.assert_allclose(resolve_intrinsics((480, 640), fov=90.0)[0, 0], 320.0)
    np.testing.assert_allclose(resolve_intrinsics((640, 480), focal=500.0)[:2, :2], np.diag([500.0, 500.0]))
    given = np.array([[500.0, 0, 300], [0, 510, 200], [0, 0, 1]])
    np.testing.assert_array_equal(resolve_intrinsics(None, K=given), given)
    (tmp_path / "K.json").write_text(json.dumps(given.tolist()))
    np.testing.assert_array_equal(resolve_intrinsics(None, K=tmp_path / "K.json"), given)
    np.testing.assert_array_equal(read_intrinsics(str(tmp_path / "K.json")), given)


@pytest.mark.parametrize("kwargs,needle", [
    ({"fov": 60.0, "K": "missing.json"}, "give either --fov or --intrinsics, not both"),
    ({"fov": 60.0, "focal": 500.0}, "give either --fov or --focal, not both"),
    ({"fov": 4.0}, r"within \[5, 170\]"),
    ({"fov": 171.0}, r"within \[5, 170\]"),
    ({"focal": -1.0}, "positive number of pixels"),
    ({"focal": float("nan")}, "positive number of pixels"),
    ({"K": np.eye(2)}, "3x3"),
    ({"K": np.diag([0.0, 1.0, 1.0])}, "fx"),
    ({"K": "missing.json"}, "intrinsics file not found"),
    ({"K": "notjson.json"}, "not a JSON 3x3 matrix"),
    ({"K": "two.json"}, "must be a 3x3 matrix"),
])
def test_resolve_intrinsics_refuses_bad_options(tmp_path, monkeypatch, kwargs, needle):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notjson.json").write_text("[[1, 0")
    (tmp_path / "two.json").write_text("[[1, 0], [0, 1]]")
    with pytest.raises(HandcastError, match=needle) as e:
        resolve_intrinsics((640, 480), **kwargs)
    assert "\n" not in str(e.value)


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_rigid_inverse_and_compose(seed):
    torch.manual_seed(seed)
    A = rigid(roma.random_rotmat(4, dtype=D), torch.randn(4, 3, dtype=D))
    B = rigid(roma.random_rotmat(4, dtype=D), torch.randn(4, 3, dtype=D))
    p = torch.randn(4, 3, dtype=D)
    assert torch.allclose(compose(A, invert_rigid(A)), torch.eye(4, dtype=D).expand(4, 4, 4), atol=1e-12)
    assert torch.allclose(transform_points(compose(A, B), p), transform_points(A, transform_points(B, p)), atol=1e-12)
    assert torch.allclose(transform_points(invert_rigid(A), transform_points(A, p)), p, atol=1e-12)
    # camera centre maps to the camera origin
    assert torch.allclose(transform_points(A, camera_center(A)), torch.zeros(4, 3, dtype=D), atol=1e-12)


def test_look_at_identity_for_opencv_world():
    assert torch.allclose(look_at(torch.zeros(3, dtype=D), torch.tensor([0.0, 0, 1], dtype=D)), torch.eye(4, dtype=D))


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_look_at_proper_rotation_target_on_axis(seed):
    g = torch.Generator().manual_seed(seed)
    eye = torch.randn(6, 3, generator=g, dtype=D) * 2
    target = torch.randn(6, 3, generator=g, dtype=D) * 0.3
    T = look_at(eye, target)
    R = T[:, :3, :3]
    assert roma.is_rotation_matrix(R, epsilon=1e-9)
    assert torch.allclose(torch.linalg.det(R), torch.ones(6, dtype=D), atol=1e-12)
    tc = transform_points(T, target)
    assert torch.allclose(tc[:, :2], torch.zeros(6, 2, dtype=D), atol=1e-10)  # on the optical axis
    assert (tc[:, 2] > 0).all()  # in front of the camera
    assert torch.allclose(tc[:, 2], (target - eye).norm(dim=-1), atol=1e-10)
    assert torch.allclose(transform_points(T, eye), torch.zeros(6, 3, dtype=D), atol=1e-10)
    K = K64(cx=320.0, cy=240.0)
    assert torch.allclose(project(tc, K), K[:2, 2].expand(6, 2), atol=1e-8)  # projects to the principal point


def test_look_at_y_points_down_relative_to_up():
    # world with +z up, camera looking along +x: image "down" must be world -z
    T = look_at(torch.zeros(3, dtype=D), torch.tensor([1.0, 0, 0], dtype=D), up=torch.tensor([0.0, 0, 1], dtype=D))
    y_axis_world = T[1, :3]
    assert torch.allclose(y_axis_world, torch.tensor([0.0, 0, -1], dtype=D))
    x_axis_world = T[0, :3]  # right-handed: looking along +x with z up, right is -y
    assert torch.allclose(x_axis_world, torch.tensor([0.0, -1, 0], dtype=D))


def test_look_at_degenerate():
    with pytest.raises(HandcastError):
        look_at(torch.zeros(3), torch.zeros(3))
    with pytest.raises(HandcastError):
        look_at(torch.zeros(3), torch.tensor([0.0, 1, 0]), up=torch.tensor([0.0, -1, 0]))


def test_numpy_in_numpy_out():
    K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
    uv = project(np.array([[0.0, 0.0, 1.0]]), K)
    assert isinstance(uv, np.ndarray) and uv.tolist() == [[320.0, 240.0]]
