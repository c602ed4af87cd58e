"""The single-stage regressor baseline (HaMeR-style): image + keypoints -> hand model parameters in one pass.

Same inputs as the cascade (its own ViT, the same condition tokens), a transformer encoder over
[condition tokens, 21 keypoint tokens, 16 pose queries, 1 shape query]; the pose queries give the 16 joint
rotations in 6D (global orientation in the canonical camera frame, fingers in the flat convention), the shape
query the 10 betas. Mesh and keypoints come from the hand model (root-relative). Deterministic: one answer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from handcast.geometry import sixd_to_rotmat
from handcast.models.cascade.condition import PoseCondition, init_output_small
from handcast.models.cascade.handutil import right_hand


@dataclass(frozen=True)
class RegressorConfig:
    width: int = 128
    layers: int = 4
    heads: int = 4
    ff_width: int = 256
    dropout: float = 0.1

    def to_dict(self) -> dict:
        return asdict(self)


_IDENTITY_6D = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])


class SingleStageRegressor(nn.Module):
    """Predicts (rot6d (B, 16, 6), betas (B, 10)) from image tokens, keypoints and the crop camera."""

    def __init__(self, config: RegressorConfig, feat_dim: int, grid: tuple[int, int], pool: tuple[int, int],
                 keypoint_features: bool = True):
        super().__init__()
        self.config = config
        w = config.width
        self.cond = PoseCondition(w, feat_dim, grid, pool, 0, keypoint_features)
        self.queries = nn.Parameter(torch.zeros(17, w))
        nn.init.normal_(self.queries, std=0.02)
        self.pos = nn.Parameter(torch.zeros(1 + self.cond.num_image_tokens + 21 + 17, w))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(d_model=w, nhead=config.heads, dim_feedforward=config.ff_width,
                                           dropout=config.dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(w)
        self.pose_head = nn.Linear(w, 6)
        self.shape_head = nn.Linear(w, 10)
        init_output_small(self.pose_head)
        init_output_small(self.shape_head)

    def forward(self, feats, kp2d, conf, K_crop) -> tuple[torch.Tensor, torch.Tensor]:
        tokens, joint = self.cond(feats, kp2d, conf, K_crop)
        q = self.queries.unsqueeze(0).expand(kp2d.shape[0], -1, -1)
        seq = torch.cat([tokens, joint, q], 1) + self.pos
        out = self.norm(self.encoder(seq))
        rot6d = self.pose_head(out[:, -17:-1]) + _IDENTITY_6D.to(out)
        betas = self.shape_head(out[:, -1])
        return rot6d, betas

    def predict(self, hand_model, feats, kp2d, conf, K_crop):
        """-> dict rot6d (B, 16, 6), betas (B, 10), vertices (B, V, 3), joints (B, 21, 3) (m, root-relative)."""
        rot6d, betas = self(feats, kp2d, conf, K_crop)
        v, j = right_hand(hand_model, sixd_to_rotmat(rot6d), betas)
        return {"rot6d": rot6d, "betas": betas, "vertices": v, "joints": j}
