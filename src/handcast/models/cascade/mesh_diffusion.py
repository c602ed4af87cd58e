"""Stage 2: mesh latent diffusion. Samples a mesh latent conditioned on ONE joint hypothesis + the image.

Data: the mesh autoencoder's latent (6 + latent_dim numbers), normalised with the autoencoder's latent
statistics, cut into tokens of ``token_dim`` numbers. Condition tokens: the camera token, the pooled image
tokens and 21 per-joint tokens carrying the joint hypothesis (root-relative, / joint_scale) together with
the keypoint's 2D position, confidence and image feature. Trained on joint hypotheses drawn from stage 1
(plus a fraction of ground-truth joints), so it learns how meshes relate to the joints stage 1 actually
produces, not only to perfect ones.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from handcast.diffusion import DiffusionConfig, condition_dropout, diffusion_loss, noisy_input, sample_per_input
from handcast.errors import HandcastError
from handcast.models.cascade.condition import PoseCondition
from handcast.models.denoiser import DenoiserConfig, MotionDenoiser


@dataclass(frozen=True)
class MeshDiffusionConfig:
    width: int = 128
    layers: int = 4
    heads: int = 4
    ff_width: int = 256
    dropout: float = 0.1
    token_dim: int = 8
    p_token_dropout: float = 0.1
    vertex_weight: float = 1.0  # weight of the decoded-mesh loss (mean squared vertex error in cm^2)

    def to_dict(self) -> dict:
        return asdict(self)


class MeshLatentDiffusion(nn.Module):
    """Stage 2 denoiser and sampler over normalised mesh latents."""

    def __init__(self, config: MeshDiffusionConfig, latent_size: int, feat_dim: int, grid: tuple[int, int],
                 pool: tuple[int, int], joint_scale: float, keypoint_features: bool = True,
                 diffusion: DiffusionConfig = DiffusionConfig()):
        super().__init__()
        if latent_size % config.token_dim:
            raise HandcastError(f"mesh latent size {latent_size} is not a multiple of token_dim {config.token_dim}")
        self.config, self.diffusion = config, diffusion
        self.latent_size = int(latent_size)
        self.num_tokens = self.latent_size // config.token_dim
        self.joint_scale = float(joint_scale)
        self.cond = PoseCondition(config.width, feat_dim, grid, pool, 3, keypoint_features)
        self.denoiser = MotionDenoiser(DenoiserConfig(motion_dim=config.token_dim, width=config.width,
                                                      layers=config.layers, heads=config.heads,
                                                      ff_width=config.ff_width, dropout=config.dropout))

    def to_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.num_tokens, self.config.token_dim)

    def from_tokens(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], self.latent_size)

    def condition(self, feats, kp2d, conf, K_crop, joints: torch.Tensor, image_mask=None) -> torch.Tensor:
        """Condition tokens (B, 1 + n_image + 21, W) for ONE joint hypothesis per item, joints (B, 21, 3) m;
        image_mask (B,): 0 hides an item's image (:class:`~handcast.models.cascade.condition.PoseCondition`)."""
        tokens, joint = self.cond(feats, kp2d, conf, K_crop, extra=joints / self.joint_scale, image_mask=image_mask)
        return torch.cat([tokens, joint], 1)

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.denoiser(x_t, t, cond)

    def loss(self, scheduler, feats, kp2d, conf, K_crop, joints, latent_norm: torch.Tensor,
             decode=None, vertices: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Losses for target normalised latents (B, latent_size) given joint hypotheses (B, 21, 3).
        With ``decode`` (normalised latent -> vertices) and target ``vertices`` (B, V, 3) also a mesh loss."""
        cond = self.condition(feats, kp2d, conf, K_crop, joints)
        n_img = self.cond.num_image_tokens
        if n_img and self.config.p_token_dropout > 0:
            img = condition_dropout(cond[:, 1:1 + n_img], self.config.p_token_dropout, generator=generator)
            cond = torch.cat([cond[:, :1], img, cond[:, 1 + n_img:]], 1)
        x0 = self.to_tokens(latent_norm)
        x_t, t, _ = noisy_input(scheduler, x0, generator=generator)
        pred = self.denoise(x_t, t, cond)
        out = {"x0": diffusion_loss(pred, x0, torch.ones(x0.shape[:2], device=x0.device))}
        if decode is not None and vertices is not None and self.config.vertex_weight > 0:
            v = decode(self.from_tokens(pred))
            out["vertices"] = self.config.vertex_weight * ((v - vertices) * 100).pow(2).sum(-1).mean()
        out["loss"] = sum(out.values())
        return out

    @torch.no_grad()
    def sample(self, feats, kp2d, conf, K_crop, joints: torch.Tensor, sampler: str = "ddim", steps: int = 1,
               generator: torch.Generator | None = None, image_mask: torch.Tensor | None = None) -> torch.Tensor:
        """One normalised latent (B, latent_size) per joint hypothesis joints (B, 21, 3); image_mask as for
        :meth:`condition`."""
        x = sample_per_input(self.denoise, (self.condition(feats, kp2d, conf, K_crop, joints, image_mask),),
                             (self.num_tokens, self.config.token_dim), 1, sampler, steps, config=self.diffusion,
                             generator=generator, dtype=joints.dtype)
        return self.from_tokens(x[:, 0])
