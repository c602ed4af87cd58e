import numpy as np
import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from handcast.geometry import procrustes_align, similarity_procrustes


def random_similarity(seed, batch=()):
    g = torch.Generator().manual_seed(seed)
    R = roma.random_rotmat(batch if batch else 1, dtype=torch.float64)
    R = R if batch else R[0]
    s = 0.2 + 3 * torch.rand(batch, generator=g, dtype=torch.float64)
    t = torch.randn(*batch, 3, generator=g, dtype=torch.float64)
    src = torch.randn(*batch, 21, 3, generator=g, dtype=torch.float64)
    return s, R, t, src


@given(st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_recovers_random_similarity_exactly(seed):
    torch.manual_seed(seed)
    s, R, t, src = random_similarity(seed, (3,))
    dst = s[:, None, None] * src @ R.transpose(-1, -2) + t[:, None]
    s_hat, R_hat, t_hat = similarity_procrustes(src, dst)
    assert torch.allclose(s_hat, s, atol=1e-9)
    assert torch.allclose(R_hat, R, atol=1e-9)
    assert torch.allclose(t_hat, t, atol=1e-9)
    assert torch.allclose(torch.linalg.det(R_hat), torch.ones(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(procrustes_align(src, dst), dst, atol=1e-9)


def test_reflection_is_not_allowed():
    src = torch.randn(30, 3, dtype=torch.float64)
    dst = src * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # a mirror image
    _, R, _ = similarity_procrustes(src, dst)
    assert float(torch.linalg.det(R)) == pytest.approx(1.0, abs=1e-12)


def test_numpy_in_numpy_out_and_zero_weight_points_ignored():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(2, 10, 3))
    R = roma.random_rotmat(2, dtype=torch.float64).numpy()
    dst = 2.0 * np.einsum("bij,bnj->bni", R, src) + 0.5
    w = np.ones((2, 10))
    w[:, 6:] = 0.0
    dst_bad = dst.copy()
    dst_bad[:, 6:] = np.nan  # garbage where weight is zero
    src_bad = src.copy()
    src_bad[:, 6:] = 1e6
    s, R_hat, t = similarity_procrustes(src_bad, dst_bad, w)
    assert isinstance(s, np.ndarray) and s.shape == (2,) and R_hat.shape == (2, 3, 3) and t.shape == (2, 3)
    np.testing.assert_allclose(s, 2.0, atol=1e-10)
    np.testing.assert_allclose(R_hat, R, atol=1e-10)
    np.testing.assert_allclose(t, 0.5, atol=1e-10)


def test_broadcast_dst_over_samples():
    src = torch.randn(4, 5, 21, 3, dtype=torch.float64)  # (N, S, 21, 3)
    dst = torch.randn(4, 1, 21, 3, dtype=torch.float64)
    assert procrustes_align(src, dst).shape == (4, 5, 21, 3)


def test_degenerate_cases_are_finite():
    # all weights zero -> identity
    src = torch.randn(5, 3, dtype=torch.float64)
    s, R, t = similarity_procrustes(src, src + 1, torch.zeros(5, dtype=torch.float64))
    assert float(s) == 1.0 and torch.equal(R, torch.eye(3, dtype=torch.float64)) and torch.equal(t, torch.zeros(3, dtype=torch.float64))
    # all source points identical -> pure translation onto the target mean
    src = torch.ones(5, 3, dtype=torch.float64)
    dst = torch.randn(5, 3, dtype=torch.float64)
    aligned = procrustes_align(src, dst)
    assert torch.allclose(aligned, dst.mean(0).expand(5, 3), atol=1e-12)


def test_gradient_flows_through_fit():
    src = torch.randn(2, 21, 3, dtype=torch.float64, requires_grad=True)
    dst = torch.randn(2, 21, 3, dtype=torch.float64)
    ((procrustes_align(src, dst) - dst) ** 2).sum().backward()
    assert torch.isfinite(src.grad).all()
