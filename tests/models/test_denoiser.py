"""The MDM-style denoiser: shapes, masking, sizes."""

import torch

from handcast.models import DenoiserConfig, MotionDenoiser, TokenMLP


def _tiny():
    torch.manual_seed(0)
    m = MotionDenoiser(DenoiserConfig(width=32, layers=2, heads=4, ff_width=64, dropout=0.0))
    return m.eval()


def test_output_shape_and_dependence_on_condition():
    m = _tiny()
    x = torch.randn(2, 7, 198)
    t = torch.tensor([0, 500])
    cond = torch.randn(2, 5, 32)
    y = m(x, t, cond)
    assert y.shape == (2, 7, 198)
    y2 = m(x, t, cond + 1.0)
    assert not torch.allclose(y, y2)
    assert not torch.allclose(m(x, t + 100, cond), y)


def test_padded_frames_and_absent_tokens_do_not_leak():
    m = _tiny()
    x = torch.randn(1, 6, 198)
    cond = torch.randn(1, 4, 32)
    fmask = torch.tensor([[True, True, True, True, False, False]])
    cmask = torch.tensor([[True, True, False, True]])
    y = m(x, torch.tensor([10]), cond, cmask, fmask)
    x2, cond2 = x.clone(), cond.clone()
    x2[0, 4:] = 99.0
    cond2[0, 2] = -50.0
    y2 = m(x2, torch.tensor([10]), cond2, cmask, fmask)
    assert torch.allclose(y[0, :4], y2[0, :4], atol=1e-5)


def test_paper_size_matches_published_architecture():
    c = DenoiserConfig.paper()
    assert (c.layers, c.heads, c.width, c.ff_width, c.dropout) == (16, 4, 1024, 1024, 0.1)
    m = MotionDenoiser(c)
    layer = m.encoder.layers[0]
    assert layer.linear1.out_features == 1024 and layer.norm_first is False
    n = sum(p.numel() for p in m.encoder.parameters())
    # 16 layers x (4 w^2 attention + 2 w*ff feed-forward + biases and norms)
    assert abs(n - 16 * (4 * 1024**2 + 2 * 1024 * 1024)) / n < 0.01


def test_token_mlp():
    mlp = TokenMLP(84, 32)
    assert mlp(torch.randn(3, 10, 84)).shape == (3, 10, 32)
    assert len([l for l in mlp.net if isinstance(l, torch.nn.Linear)]) == 3
