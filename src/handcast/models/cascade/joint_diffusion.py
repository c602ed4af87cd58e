"""Stage 1: joint diffusion. Samples diverse 3D hypotheses of the 21 root-relative keypoints of a hand.

Data: the 21 keypoints, root-relative (wrist = 0), metres, canonical camera frame, divided by
``joint_scale``, as 21 tokens of 3 numbers for the MDM-style :class:`~handcast.models.denoiser.MotionDenoiser`
(the model predicts x0). Condition: the camera token and pooled image tokens as condition tokens, and each
keypoint's token (2D position, confidence, image feature at the keypoint) ADDED to its joint's token, so
joint j and keypoint j are aligned. The root itself is not diffused: :func:`~handcast.models.cascade.aggregate.fit_root`
recovers it exactly from the 2D keypoints and the crop camera once the relative joints are known.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from handcast.diffusion import DiffusionConfig, condition_dropout, diffusion_loss, noisy_input, sample_per_input
from handcast.models.cascade.condition import PoseCondition
from handcast.models.denoiser import DenoiserConfig, MotionDenoiser


@dataclass(frozen=True)
class JointDiffusionConfig:
    width: int = 128
    layers: int = 4
    heads: int = 4
    ff_width: int = 256
    dropout: float = 0.1
    joint_scale: float = 0.05  # metres per unit of the diffused data
    p_token_dropout: float = 0.1  # image-token dropout in training
    bone_weight: float = 1.0  # weight of the bone-vector loss (on top of the x0 loss)

    def to_dict(self) -> dict:
        return asdict(self)


# (parent, child) bones of the common order, as index arrays
_PARENT = torch.tensor([0, 1, 2, 3, 0, 5, 6, 7, 0, 9, 10, 11, 0, 13, 14, 15, 0, 17, 18, 19])
_CHILD = torch.arange(1, 21)


def bone_vectors(j: torch.Tensor) -> torch.Tensor:
    """(..., 21, 3) -> (..., 20, 3) child minus parent."""
    return j[..., _CHILD.to(j.device), :] - j[..., _PARENT.to(j.device), :]


class JointDiffusion(nn.Module):
    """Stage 1 denoiser and sampler."""

    def __init__(self, config: JointDiffusionConfig, feat_dim: int, grid: tuple[int, int], pool: tuple[int, int],
                 keypoint_features: bool = True, diffusion: DiffusionConfig = DiffusionConfig()):
        super().__init__()
        self.config, self.diffusion = config, diffusion
        self.cond = PoseCondition(config.width, feat_dim, grid, pool, 0, keypoint_features)
        self.denoiser = MotionDenoiser(DenoiserConfig(motion_dim=3, width=config.width, layers=config.layers,
                                                      heads=config.heads, ff_width=config.ff_width,
                                                      dropout=config.dropout))

    def condition(self, feats, kp2d, conf, K_crop, image_mask=None):
        """-> (condition tokens (B, N, W), per-joint tokens (B, 21, W)). image_mask (B,): 0 hides an item's
        image (:class:`~handcast.models.cascade.condition.PoseCondition`)."""
        return self.cond(feats, kp2d, conf, K_crop, image_mask=image_mask)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """Predicted x0 (B, 21, 3) from x_t (B, 21, 3) at steps t (B,) given :meth:`condition`'s tokens."""
        return self.denoiser(x_t, t, tokens, frame_cond=joint)

    def loss(self, scheduler, feats, kp2d, conf, K_crop, joints: torch.Tensor,
             generator: torch.Generator | None = None,
             image_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Training losses for root-relative target joints (B, 21, 3) [m]; image_mask (B,): 0 = keypoints-only
        item (its image hidden), None = all use the image."""
        tokens, joint = self.condition(feats, kp2d, conf, K_crop, image_mask)
        n_img = self.cond.num_image_tokens
        if n_img and self.config.p_token_dropout > 0:
            tokens = torch.cat([tokens[:, :1], condition_dropout(tokens[:, 1:], self.config.p_token_dropout,
                                                                 generator=generator)], 1)
        x0 = joints / self.config.joint_scale
        x_t, t, _ = noisy_input(scheduler, x0, generator=generator)
        pred = self.denoise(x_t, t, tokens, joint)
        out = {"x0": diffusion_loss(pred, x0, torch.ones(x0.shape[:2], device=x0.device))}
        if self.config.bone_weight > 0:
            out["bones"] = self.config.bone_weight * (bone_vectors(pred) - bone_vectors(x0)).pow(2).mean()
        out["loss"] = sum(out.values())
        return out

    @torch.no_grad()
    def sample(self, feats, kp2d, conf, K_crop, num_samples: int = 5, sampler: str = "ddim", steps: int = 1,
               generator: torch.Generator | None = None, image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Hypotheses (B, S, 21, 3) [m], root-relative (wrist exactly 0), canonical camera frame; image_mask as
        for :meth:`loss`."""
        x = sample_per_input(self.denoise, self.condition(feats, kp2d, conf, K_crop, image_mask), (21, 3), num_samples,
                             sampler, steps, config=self.diffusion, generator=generator, dtype=kp2d.dtype)
        j = x * self.config.joint_scale
        return j - j[..., :1, :]
