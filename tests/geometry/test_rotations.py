import numpy as np
import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handcast.geometry import (
    aa_to_6d,
    aa_to_rotmat,
    geodesic_angle,
    rotmat_to_6d,
    rotmat_to_aa,
    sixd_to_aa,
    sixd_to_rotmat,
    slerp_rotmat,
)

seeds = st.integers(0, 2**31 - 1)


def rand_aa(seed, shape, max_angle=3.0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.randn(*shape, 3, generator=g, dtype=torch.float64)
    axis = axis / axis.norm(dim=-1, keepdim=True)
    ang = torch.rand(*shape, 1, generator=g, dtype=torch.float64) * max_angle
    return axis * ang


def test_6d_layout_is_first_two_columns_row_major():
    R = torch.arange(9, dtype=torch.float64).reshape(3, 3)
    assert rotmat_to_6d(R).tolist() == [0, 1, 3, 4, 6, 7]


@given(seeds)
@settings(max_examples=30, deadline=None)
def test_rotmat_6d_round_trip(seed):
    R = aa_to_rotmat(rand_aa(seed, (4, 5)))
    assert R.shape == (4, 5, 3, 3)
    back = sixd_to_rotmat(rotmat_to_6d(R))
    assert torch.allclose(back, R, atol=1e-12)


@given(seeds)
@settings(max_examples=30, deadline=None)
def test_aa_6d_round_trip(seed):
    aa = rand_aa(seed, (7,))  # angles < 3 rad, away from the pi ambiguity
    assert torch.allclose(sixd_to_aa(aa_to_6d(aa)), aa, atol=1e-9)
    assert torch.allclose(rotmat_to_aa(aa_to_rotmat(aa)), aa, atol=1e-9)


def test_sixd_to_rotmat_of_arbitrary_input_is_rotation():
    x = torch.randn(100, 6, dtype=torch.float64) * 3
    R = sixd_to_rotmat(x)
    assert roma.is_rotation_matrix(R, epsilon=1e-9)
    # the first column keeps the direction of the first stored column
    c0 = x.reshape(100, 3, 2)[..., 0]
    assert torch.allclose(R[..., 0], c0 / c0.norm(dim=-1, keepdim=True), atol=1e-12)


def test_sixd_to_rotmat_degenerate_input_is_finite():
    assert torch.isfinite(sixd_to_rotmat(torch.zeros(2, 6))).all()


def test_known_rotation_about_z():
    aa = torch.tensor([0.0, 0.0, np.pi / 2], dtype=torch.float64)
    R = aa_to_rotmat(aa)
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                          torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12)


def test_numpy_in_numpy_out():
    aa = np.array([[0.1, -0.2, 0.3]])
    R = aa_to_rotmat(aa)
    assert isinstance(R, np.ndarray) and R.shape == (1, 3, 3) and R.dtype == np.float64
    assert isinstance(rotmat_to_6d(R), np.ndarray)


def test_gradients_flow():
    x = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    sixd_to_aa(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_slerp_endpoints_and_midpoint():
    R0 = aa_to_rotmat(torch.tensor([0.0, 0.0, 0.2], dtype=torch.float64))
    R1 = aa_to_rotmat(torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(slerp_rotmat(R0, R1, 0.0), R0, atol=1e-12)
    assert torch.allclose(slerp_rotmat(R0, R1, 1.0), R1, atol=1e-12)
    mid = slerp_rotmat(R0, R1, torch.tensor(0.5, dtype=torch.float64))
    assert torch.allclose(mid, aa_to_rotmat(torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64)), atol=1e-12)
    assert float(geodesic_angle(R0, R1)) == pytest.approx(0.8, abs=1e-9)


def test_mean_rotmat_known_answers():
    """The chordal mean: turns of +-a about one axis average to no turn, equal rotations to themselves, and a
    single rotation along dim is unchanged; the matrix dimensions are refused."""
    from handcast.geometry import mean_rotmat

    g = torch.Generator().manual_seed(0)
    R = roma.random_rotmat((4, 3), generator=g).double()
    a = 0.7
    turn = aa_to_rotmat(torch.tensor([[a, 0.0, 0.0], [-a, 0.0, 0.0]], dtype=torch.float64))  # (2, 3, 3)
    both = R[:, None] @ turn[None, :, None]  # (4, 2, 3, 3, 3): each R turned both ways
    assert torch.allclose(mean_rotmat(both, 1), R, atol=1e-10)
    assert torch.allclose(mean_rotmat(R[:, None].expand(4, 5, 3, 3, 3), 1), R, atol=1e-10)
    assert torch.allclose(mean_rotmat(R[None], 0), R, atol=1e-10)
    # three turns 0, +a, +2a about one axis: their mean is the middle one
    fan = aa_to_rotmat(torch.tensor([[0.0, 0.0, 0.0], [0.0, a, 0.0], [0.0, 2 * a, 0.0]], dtype=torch.float64))
    assert torch.allclose(mean_rotmat(fan, 0), fan[1], atol=1e-10)
    with pytest.raises(ValueError):
        mean_rotmat(R, -1)
