"""The cascade as one module (backbone + stage 1 + mesh autoencoder + stage 2), the regressor baseline as
another, built from the ``model`` section of a ``pose`` config, and their checkpoints.

Checkpoints are handcast safetensors files (:mod:`handcast.models.checkpoint`): kind ``pose`` (the cascade,
with the stages trained so far in the metadata ``pose_stages``) and kind ``pose-regressor``. The hand model
itself is never stored in them (it is rebuilt from ``model.hand_model``); note that the autoencoder's PCA
buffers are derived from the hand model's meshes, so a checkpoint trained with official MANO carries
MANO-derived data and falls under MANO's licence.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from handcast.diffusion import DiffusionConfig
from handcast.errors import HandcastError
from handcast.hand import HandModel
from handcast.models.cascade.aggregate import AGGREGATIONS, aggregate
from handcast.models.cascade.condition import ImageBackbone, keypoints_only_inputs
from handcast.models.cascade.handutil import palm_vertex_ids, right_hand
from handcast.models.cascade.joint_diffusion import JointDiffusion, JointDiffusionConfig
from handcast.models.cascade.mesh_ae import MeshAEConfig, MeshAutoencoder
from handcast.models.cascade.mesh_diffusion import (
    MeshDiffusionConfig,
    MeshLatentDiffusion,
)
from handcast.models.cascade.regressor import RegressorConfig, SingleStageRegressor
from handcast.models.checkpoint import load_model, resolve_checkpoint, save_checkpoint

KIND = "pose"
REGRESSOR_KIND = "pose-regressor"
STAGES: tuple[str, ...] = ("ae", "joint", "mesh")


def _hand_model(kind: str):
    return HandModel(kind)


def _sub(cfg: dict, key: str, cls):
    d = dict(cfg.get(key) or {})
    try:
        return cls(**d)
    except TypeError as e:
        raise HandcastError(f"pose config: bad model.{key} section ({e})") from None


class _WithHands(nn.Module):
    """Holds a hand model that is moved with the module but never saved in its state_dict."""

    def __init__(self, model_cfg: dict, hand_model=None):
        super().__init__()
        kind = str(model_cfg.get("hand_model", "auto"))
        hm = hand_model if hand_model is not None else _hand_model(kind)
        if kind != "auto" and hm.kind != kind:
            raise HandcastError(f"pose model was built for hand model '{kind}', got '{hm.kind}'")
        object.__setattr__(self, "hands", hm)
        self.model_cfg = dict(model_cfg, hand_model=hm.kind)
        b = dict(model_cfg.get("backbone") or {})
        enabled = bool(b.pop("enabled", True))
        self.backbone = ImageBackbone(enabled, b)
        c = dict(model_cfg.get("condition") or {})
        self.pool = tuple(int(p) for p in c.get("pool", (4, 3)))
        self.keypoint_features = bool(c.get("keypoint_features", True))
        self.diffusion = _sub(model_cfg, "diffusion", DiffusionConfig)

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self.hands._apply(fn, *args, **kwargs)
        return out


class PoseCascade(_WithHands):
    """Backbone + joint diffusion + mesh autoencoder + mesh latent diffusion (canonical right hands)."""

    def __init__(self, model_cfg: dict, hand_model=None):
        super().__init__(model_cfg, hand_model)
        self.joint_config = _sub(model_cfg, "joint", JointDiffusionConfig)
        self.ae_config = _sub(model_cfg, "ae", MeshAEConfig)
        self.mesh_config = _sub(model_cfg, "mesh", MeshDiffusionConfig)
        bb = self.backbone
        self.joint = JointDiffusion(self.joint_config, bb.dim, bb.grid, self.pool, self.keypoint_features, self.diffusion)
        hm = self.hands
        palm = palm_vertex_ids(hm)
        with torch.no_grad():
            eye = torch.eye(3, dtype=hm.hands_mean.dtype).expand(1, 16, 3, 3).contiguous()
            v0, _ = right_hand(hm, eye)
        self.ae = MeshAutoencoder(self.ae_config, hm.num_vertices, torch.as_tensor(palm), v0[0, palm].float())
        self.mesh = MeshLatentDiffusion(self.mesh_config, self.ae_config.total_latent, bb.dim, bb.grid, self.pool,
                                        self.joint_config.joint_scale, self.keypoint_features, self.diffusion)

    @property
    def num_vertices(self) -> int:
        return self.hands.num_vertices

    def faces(self) -> "np.ndarray":  # noqa: F821
        """Right-hand triangles (F, 3) int64 (outward winding)."""
        return self.hands.faces(0)

    @torch.no_grad()
    def estimate_crops(self, images: torch.Tensor | None, kp2d: torch.Tensor, conf: torch.Tensor, K_crop: torch.Tensor,
                       num_samples: int = 5, sampler: str = "ddim", steps: int = 1, mesh_steps: int | None = None,
                       aggregations: tuple[str, ...] = AGGREGATIONS, tau: float = 4.0,
                       generator: torch.Generator | None = None, feats: torch.Tensor | None = None,
                       keypoints_only: bool = False) -> dict:
        """Run the cascade on B canonical crops.

        images (B, 3, 256, 192) normalised (or ``feats`` (B, 192, C) precomputed backbone tokens);
        kp2d (B, 21, 2) crop pixels; conf (B, 21); K_crop (B, 3, 3). keypoints_only: ignore the images (never
        run the backbone; both stages see the image hidden as by the training's keypoints-only items, see
        :class:`~handcast.models.cascade.condition.PoseCondition`): the estimate depends on the keypoints and
        crop cameras alone.
        Returns dict: joint_samples (B, S, 21, 3), vertex_samples (B, S, V, 3) (m, root-relative, canonical
        camera frame) and ``aggregated``: {method: (joints (B, 21, 3), vertices (B, V, 3))}."""
        if num_samples < 1:
            raise HandcastError(f"num_samples must be >= 1, got {num_samples}")
        b, s = kp2d.shape[0], int(num_samples)
        mask = None
        if keypoints_only:
            feats, mask = keypoints_only_inputs(b, self.backbone.dim, self.backbone.grid, kp2d.device, kp2d.dtype)
        elif feats is None and images is not None:
            feats = self.backbone(images)
        js = self.joint.sample(feats, kp2d, conf, K_crop, s, sampler, steps, generator, image_mask=mask)

        def rep(x):
            return None if x is None else x.repeat_interleave(s, 0)

        lat = self.mesh.sample(rep(feats), rep(kp2d), rep(conf), rep(K_crop), js.reshape(b * s, 21, 3), sampler,
                               mesh_steps or steps, generator, image_mask=rep(mask))
        verts = self.ae.decode(self.ae.denormalise(lat)).reshape(b, s, -1, 3)
        agg = {m: aggregate(js, verts, m, kp2d, conf, K_crop, tau) for m in aggregations}
        return {"joint_samples": js, "vertex_samples": verts, "aggregated": agg}


class RegressorModel(_WithHands):
    """Backbone + :class:`SingleStageRegressor` (the baseline)."""

    def __init__(self, model_cfg: dict, hand_model=None):
        super().__init__(model_cfg, hand_model)
        self.regressor_config = _sub(model_cfg, "regressor", RegressorConfig)
        bb = self.backbone
        self.regressor = SingleStageRegressor(self.regressor_config, bb.dim, bb.grid, self.pool, self.keypoint_features)

    def predict(self, images, kp2d, conf, K_crop, feats=None) -> dict:
        """-> dict rot6d, betas, vertices (B, V, 3), joints (B, 21, 3) (m, root-relative, canonical)."""
        if feats is None and images is not None:
            feats = self.backbone(images)
        return self.regressor.predict(self.hands, feats, kp2d, conf, K_crop)


# ---------------------------------------------------------------------------------------------- checkpoints

def resolve_pose_checkpoint(ckpt: str | os.PathLike | None) -> Path:
    """A cascade checkpoint path: the file itself, ``<folder>/pose.safetensors`` for a run folder, or (None)
    ``$HANDCAST_HOME/models/pose.safetensors`` if it exists, else the shipped tiny checkpoint."""
    return resolve_checkpoint(ckpt, "pose.safetensors", "pose_tiny.safetensors", "handcast train pose")


def save_cascade(path: str | Path, model: PoseCascade, stages: tuple[str, ...] = STAGES) -> Path:
    """Write the cascade (weights + resolved model config; ``stages``: those trained so far)."""
    return save_checkpoint(path, model, KIND, model.model_cfg, extra_metadata={"pose_stages": ",".join(stages)})


def _load(path, kind, cls, device, hand_model=None):
    return load_model(path, kind, lambda cfg: cls(cfg, hand_model), device)


def load_cascade(path: str | Path, device: str | torch.device = "cpu", require_complete: bool = True,
                 hand_model=None) -> PoseCascade:
    """The cascade of a ``pose`` checkpoint, in eval mode. With ``require_complete`` a checkpoint whose
    stages are not all trained is refused."""
    model, meta = _load(path, KIND, PoseCascade, device, hand_model)
    stages = tuple(s for s in meta.get("pose_stages", "").split(",") if s)
    model.trained_stages = stages
    if require_complete and set(stages) != set(STAGES):
        missing = sorted(set(STAGES) - set(stages))
        raise HandcastError(f"{path}: the cascade is not fully trained (missing stages: {', '.join(missing)})")
    return model


def save_regressor(path: str | Path, model: RegressorModel) -> Path:
    return save_checkpoint(path, model, REGRESSOR_KIND, model.model_cfg)


def load_regressor(path: str | Path, device: str | torch.device = "cpu", hand_model=None) -> RegressorModel:
    return _load(path, REGRESSOR_KIND, RegressorModel, device, hand_model)[0]
