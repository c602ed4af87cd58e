"""Conditioning shared by the cascade's stages and the regressor: image tokens, 2D keypoints, crop camera.

* :class:`ImageBackbone`: the ViT of :mod:`handcast.models.vit` (crop (B, 3, 256, 192), ImageNet-normalised ->
  tokens (B, 192, C), grid 16 x 12), or nothing (``enabled: false``: keypoints only).
* :class:`PoseCondition`: turns (tokens, keypoints, crop camera) into transformer tokens of width ``width``:

  - one camera token from the crop intrinsics: the crop centre's ray ((c - centre) / f in x and y) and
    log(f / 500 px) (what a perspective crop cannot show by itself);
  - ``pool[0] * pool[1]`` image tokens: the 16 x 12 token grid average-pooled, then a linear map;
  - 21 per-keypoint tokens: the keypoint in [-1, 1] crop coordinates (times its confidence), its
    confidence, the image feature bilinearly sampled at the keypoint (zero if missing), and optional extra
    per-joint inputs (stage 2: the joint hypothesis), through a :class:`~handcast.models.denoiser.TokenMLP`.

  An ``image_mask`` (B,) of 0 / 1 hides the image of an item: its image tokens are zeroed (as the training
  token dropout zeroes them) and so are the image features of its keypoint tokens, so an item with mask 0
  depends on its keypoints and crop camera only (keypoints-only estimation, :func:`keypoints_only_inputs`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from handcast.data.crops import CROP_SIZE, uv_to_unit
from handcast.models.denoiser import TokenMLP


def camera_features(K_crop: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) crop intrinsics -> (B, 3): [(cx - centre_u) / fx, (cy - centre_v) / fy, log(fx / 500)]."""
    h, w = CROP_SIZE
    fx, fy = K_crop[:, 0, 0], K_crop[:, 1, 1]
    cx, cy = K_crop[:, 0, 2], K_crop[:, 1, 2]
    return torch.stack([(cx - (w - 1) / 2) / fx, (cy - (h - 1) / 2) / fy, torch.log(fx.abs().clamp_min(1e-3) / 500.0)], -1)


class ImageBackbone(nn.Module):
    """ViT image encoder or none. ``vit``: dict of :class:`handcast.models.vit.ViTConfig` fields."""

    def __init__(self, enabled: bool = True, vit: dict | None = None):
        super().__init__()
        self.enabled = bool(enabled)
        if self.enabled:
            from handcast.models.vit import ViT, ViTConfig

            self.vit = ViT(ViTConfig.from_dict(dict(vit or {})))
            self.dim = self.vit.config.embed_dim
            self.grid = self.vit.config.grid
        else:
            self.vit = None
            self.dim = 0
            self.grid = (16, 12)

    def forward(self, images: torch.Tensor) -> torch.Tensor | None:
        """images (B, 3, 256, 192) -> tokens (B, 192, C), or None when disabled."""
        if not self.enabled:
            return None
        return self.vit(images)


class PoseCondition(nn.Module):
    """Tokens of one stage's condition (see the module docstring)."""

    def __init__(self, width: int, feat_dim: int, grid: tuple[int, int], pool: tuple[int, int] = (4, 3),
                 extra_dim: int = 0, keypoint_features: bool = True):
        super().__init__()
        self.feat_dim, self.grid, self.pool = int(feat_dim), tuple(grid), tuple(int(p) for p in pool)
        self.extra_dim = int(extra_dim)
        self.keypoint_features = bool(keypoint_features) and self.feat_dim > 0
        self.camera = TokenMLP(3, width)
        self.image = nn.Linear(self.feat_dim, width) if self.feat_dim > 0 else None
        kin = 3 + (self.feat_dim if self.keypoint_features else 0) + self.extra_dim
        self.joint = TokenMLP(kin, width)
        self.joint_id = nn.Parameter(torch.zeros(21, width))
        nn.init.normal_(self.joint_id, std=0.02)

    @property
    def num_image_tokens(self) -> int:
        return self.pool[0] * self.pool[1] if self.feat_dim > 0 else 0

    def forward(self, feats: torch.Tensor | None, kp2d: torch.Tensor, conf: torch.Tensor, K_crop: torch.Tensor,
                extra: torch.Tensor | None = None,
                image_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """feats (B, 192, C) or None; kp2d (B, 21, 2) crop pixels; conf (B, 21); K_crop (B, 3, 3);
        extra (B, 21, E) or None; image_mask (B,) 1 = use the image, 0 = hide it (module docstring), None = all 1.
        Returns (global tokens (B, 1 + n_image, width), per-joint tokens (B, 21, width))."""
        b = kp2d.shape[0]
        keep = None if image_mask is None else image_mask.to(kp2d.dtype).reshape(b, 1, 1)
        c = conf.clamp(0.0, 1.0).unsqueeze(-1)
        unit = uv_to_unit(kp2d) * c
        tokens = [self.camera(camera_features(K_crop)).unsqueeze(1)]
        parts = [unit, c]
        if feats is not None and self.feat_dim > 0:
            gh, gw = self.grid
            fmap = feats.transpose(1, 2).reshape(b, self.feat_dim, gh, gw)
            pooled = F.adaptive_avg_pool2d(fmap, self.pool).flatten(2).transpose(1, 2)
            img = self.image(pooled)
            tokens.append(img if keep is None else img * keep)
            if self.keypoint_features:
                grid = unit.unsqueeze(2)  # (B, 21, 1, 2), x = u, y = v in [-1, 1]
                s = F.grid_sample(fmap, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
                s = s.squeeze(-1).transpose(1, 2) * c
                parts.append(s if keep is None else s * keep)
        if self.extra_dim:
            if extra is None:
                raise ValueError("this condition needs per-joint extra inputs")
            parts.append(extra)
        joint = self.joint(torch.cat(parts, -1)) + self.joint_id
        return torch.cat(tokens, 1), joint


def keypoints_only_inputs(batch: int, feat_dim: int, grid: tuple[int, int], device,
                          dtype=torch.float32) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(feats, image_mask) for keypoints-only estimation of ``batch`` items: zero tokens (B, gh * gw, C) in
    place of the backbone's (the image is never looked at) and an all-zero mask; (None, None) without a
    backbone (``feat_dim`` 0), where the estimate is keypoints-only anyway."""
    if feat_dim <= 0:
        return None, None
    gh, gw = grid
    z = torch.zeros(batch, gh * gw, feat_dim, device=device, dtype=dtype)
    return z, torch.zeros(batch, device=device, dtype=dtype)


def init_output_small(layer: nn.Linear, std: float = 1e-3) -> None:
    """Start an output layer near zero (so the first predictions are the data mean)."""
    nn.init.normal_(layer.weight, std=std)
    nn.init.zeros_(layer.bias)


def count_parameters(module: nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


__all__ = ["ImageBackbone", "PoseCondition", "camera_features", "count_parameters", "init_output_small",
           "keypoints_only_inputs"]
