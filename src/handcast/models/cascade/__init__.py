"""Cascaded diffusion single-image 3D hand pose and mesh estimation (issue 5; docs/pose.md).

Stage 1 (:mod:`.joint_diffusion`) samples 3D joint hypotheses from a hand crop's image tokens and 2D
keypoints; the mesh autoencoder (:mod:`.mesh_ae`) gives a compact latent of the hand model's meshes; stage 2
(:mod:`.mesh_diffusion`) samples that latent conditioned on ONE joint hypothesis and the image; the hypotheses
are aggregated (:mod:`.aggregate`). :mod:`.regressor` is the single-stage baseline, :mod:`.estimate` the
whole-image API (``estimate_pose``); the ``handcast pose`` command is :func:`handcast.infer.pose.run_pose`.

Importing this package reads no file and builds no model.
"""

from handcast.models.cascade.aggregate import (
    AGGREGATIONS,
    aggregate,
    best_of_n,
    fit_root,
    joint_median,
    pose_mean,
    reprojection_errors,
    reprojection_weights,
    weighted_mean,
)

__all__ = [
    "AGGREGATIONS", "aggregate", "best_of_n", "fit_root", "joint_median", "pose_mean", "reprojection_errors",
    "reprojection_weights", "weighted_mean",
    "PoseCascade", "RegressorModel", "load_cascade", "load_regressor", "save_cascade", "save_regressor",
    "estimate_pose", "PoseResult",
]


def __getattr__(name: str):
    if name in ("PoseCascade", "RegressorModel", "load_cascade", "load_regressor", "save_cascade", "save_regressor"):
        from handcast.models.cascade import model

        return getattr(model, name)
    if name in ("estimate_pose", "PoseResult"):
        from handcast.models.cascade import estimate

        return getattr(estimate, name)
    raise AttributeError(f"module 'handcast.models.cascade' has no attribute {name!r}")
