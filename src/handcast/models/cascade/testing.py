"""Small cascade models for tests and examples (seconds to build, untrained apart from the autoencoder's PCA)."""

from __future__ import annotations

import torch

from handcast.models.cascade.handutil import finger_pose_pool, sample_meshes
from handcast.models.cascade.model import PoseCascade


def small_model_cfg(**over) -> dict:
    """A ``model`` config section of a very small cascade (every width 32, one layer). ``over``: section ->
    dict of fields to change (or a value for ``hand_model``)."""
    cfg = {
        "hand_model": "open",
        "backbone": {"enabled": True, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0, "drop_path_rate": 0.0},
        "condition": {"pool": [2, 2], "keypoint_features": True},
        "joint": {"width": 32, "layers": 1, "heads": 2, "ff_width": 64, "dropout": 0.0, "joint_scale": 0.05,
                  "p_token_dropout": 0.1, "bone_weight": 1.0},
        "ae": {"pca_components": 16, "latent_dim": 10, "hidden": 64, "layers": 1},
        "mesh": {"width": 32, "layers": 1, "heads": 2, "ff_width": 64, "dropout": 0.0, "token_dim": 8,
                 "p_token_dropout": 0.1, "vertex_weight": 1.0},
        "regressor": {"width": 32, "layers": 1, "heads": 2, "ff_width": 64, "dropout": 0.0},
        "diffusion": {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample"},
    }
    for k, v in over.items():
        cfg[k] = dict(cfg[k], **v) if isinstance(v, dict) else v
    return cfg


def small_cascade(hand_model, seed: int = 0, meshes: int = 40, **over):
    """An eval-mode :class:`~handcast.models.cascade.model.PoseCascade` of :func:`small_model_cfg` with its
    autoencoder's PCA and latent statistics set from ``meshes`` sampled meshes (random everything else)."""
    torch.manual_seed(seed)
    m = PoseCascade(small_model_cfg(**over), hand_model).eval()
    fingers = torch.as_tensor(finger_pose_pool(hand_model, 200, seed), dtype=torch.float32)
    v = sample_meshes(hand_model, meshes, torch.Generator().manual_seed(seed), fingers)
    m.ae.fit_pca(v @ m.ae.canonical_rotation(v))
    with torch.no_grad():
        m.ae.set_latent_statistics(m.ae.encode(v))
    return m
