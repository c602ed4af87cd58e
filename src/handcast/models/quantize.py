"""Int8 inference on CPU: dynamic quantisation of every linear layer of a model (weights int8, activations
quantised on the fly), for few-core machines where a paper-size model is otherwise too slow.

``torch.ao.quantization.quantize_dynamic`` only converts ``nn.Linear`` modules. The denoiser's
``nn.TransformerEncoder`` keeps its attention input projection as a bare parameter (and runs a fused fast
path), so :func:`int8_cpu` first rewrites each encoder into :class:`PlainEncoder`, the same post-norm
computation written with ``nn.Linear`` layers and ``scaled_dot_product_attention``, then quantises.
Results move by quantisation noise only (the benchmark reports what it costs in cm).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from handcast.errors import HandcastError

__all__ = ["PlainEncoder", "plain_encoders", "int8_cpu"]


class PlainEncoderLayer(nn.Module):
    """One post-norm ``nn.TransformerEncoderLayer`` (batch first, ReLU or GELU) with plain linear layers."""

    def __init__(self, layer: nn.TransformerEncoderLayer):
        super().__init__()
        attn = layer.self_attn
        if layer.norm_first or not attn.batch_first or attn.in_proj_weight is None:
            raise HandcastError("plain encoder: only post-norm, batch-first layers with a fused input projection")
        d = attn.embed_dim
        self.heads = attn.num_heads
        self.qkv = nn.Linear(d, 3 * d, bias=attn.in_proj_bias is not None)
        self.proj = nn.Linear(d, d, bias=attn.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight.copy_(attn.in_proj_weight)
            if attn.in_proj_bias is not None:
                self.qkv.bias.copy_(attn.in_proj_bias)
            self.proj.weight.copy_(attn.out_proj.weight)
            if attn.out_proj.bias is not None:
                self.proj.bias.copy_(attn.out_proj.bias)
        self.linear1, self.linear2 = layer.linear1, layer.linear2
        self.norm1, self.norm2 = layer.norm1, layer.norm2
        act = layer.activation
        self.gelu = act is F.gelu or isinstance(act, nn.GELU)
        if not self.gelu and not (act is F.relu or isinstance(act, nn.ReLU)):
            raise HandcastError(f"plain encoder: unsupported activation {act}")

    def forward(self, x: torch.Tensor, attend: torch.Tensor | None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=attend)
        x = self.norm1(x + self.proj(a.transpose(1, 2).reshape(b, n, c)))
        h = self.linear1(x)
        h = F.gelu(h) if self.gelu else F.relu(h)
        return self.norm2(x + self.linear2(h))


class PlainEncoder(nn.Module):
    """Drop-in inference replacement of an ``nn.TransformerEncoder`` of post-norm layers (no dropout)."""

    def __init__(self, encoder: nn.TransformerEncoder):
        super().__init__()
        self.layers = nn.ModuleList(PlainEncoderLayer(layer) for layer in encoder.layers)
        self.norm = encoder.norm

    def forward(self, src: torch.Tensor, mask=None, src_key_padding_mask: torch.Tensor | None = None,
                is_causal: bool | None = None):
        if mask is not None or is_causal:
            raise HandcastError("plain encoder: attention masks other than key padding are not supported")
        attend = None if src_key_padding_mask is None else ~src_key_padding_mask[:, None, None, :]
        x = src
        for layer in self.layers:
            x = layer(x, attend)
        return x if self.norm is None else self.norm(x)


def plain_encoders(model: nn.Module) -> nn.Module:
    """Replace every ``nn.TransformerEncoder`` inside ``model`` by a :class:`PlainEncoder` (in place)."""
    for name, child in list(model.named_children()):
        if isinstance(child, nn.TransformerEncoder):
            setattr(model, name, PlainEncoder(child))
        else:
            plain_encoders(child)
    return model


def int8_cpu(model: nn.Module) -> nn.Module:
    """The model (in eval mode, on the CPU) with every linear layer dynamically quantised to int8."""
    model = plain_encoders(model.cpu().eval())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
