import copy

import pytest
import torch

from handcast.models.denoiser import DenoiserConfig, MotionDenoiser
from handcast.models.quantize import int8_cpu, plain_encoders


def _inputs():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 10, 198, generator=g)
    cond = torch.randn(2, 7, 64, generator=g)
    cmask = torch.ones(2, 7, dtype=torch.bool)
    cmask[1, 3:] = False
    fmask = torch.ones(2, 10, dtype=torch.bool)
    fmask[0, 6:] = False
    return x, torch.tensor([5, 900]), cond, cmask, fmask


@pytest.fixture(scope="module")
def denoiser():
    torch.manual_seed(0)
    return MotionDenoiser(DenoiserConfig(motion_dim=198, width=64, layers=2, heads=4, ff_width=128, dropout=0.1)).eval()


def test_plain_encoder_computes_what_the_torch_encoder_computes(denoiser):
    args = _inputs()
    with torch.no_grad():
        want = denoiser(*args)
        got = plain_encoders(copy.deepcopy(denoiser))(*args)
    assert torch.allclose(got, want, atol=1e-5)
    # padded frames and absent tokens stay invisible: changing them does not move the real frames
    x, t, cond, cmask, fmask = args
    x2, cond2 = x.clone(), cond.clone()
    x2[0, 6:] += 5.0
    cond2[1, 3:] -= 3.0
    with torch.no_grad():
        moved = plain_encoders(copy.deepcopy(denoiser))(x2, t, cond2, cmask, fmask)
    assert torch.allclose(moved[0, :6], got[0, :6], atol=1e-5) and torch.allclose(moved[1], got[1], atol=1e-5)


def test_int8_stays_close_and_quantises_every_linear(denoiser):
    args = _inputs()
    q = int8_cpu(copy.deepcopy(denoiser))
    assert not any(isinstance(m, torch.nn.Linear) for m in q.modules())
    with torch.no_grad():
        want, got = denoiser(*args), q(*args)
    rel = (got - want).abs().mean() / want.abs().mean()
    assert 0 < float(rel) < 0.05
