"""Hand models: the MANO layer over smplx (official MANO or the open hand model) and pose utilities.

Importing this package reads no files; models are loaded when :class:`HandModel` is constructed.
"""

from handcast.hand.layer import HandModel, HandOutput, describe_installed_models, mano_installed, mano_model_dir
from handcast.hand.mano_import import default_mano_dir, import_mano, mano_import_main
from handcast.hand.pose import (
    clamp_to_limits,
    flat_to_mean_relative,
    mean_relative_to_flat,
    mirror_pose,
    pca_to_pose,
    to_axis_angle,
    to_rotmat,
)

__all__ = [
    "HandModel",
    "HandOutput",
    "clamp_to_limits",
    "default_mano_dir",
    "describe_installed_models",
    "flat_to_mean_relative",
    "import_mano",
    "mano_import_main",
    "mano_installed",
    "mano_model_dir",
    "mean_relative_to_flat",
    "mirror_pose",
    "pca_to_pose",
    "to_axis_angle",
    "to_rotmat",
]
