"""Geometry: rotations (roma), pinhole cameras and rigid transforms, similarity Procrustes,
Plucker rays and keypoint positional encoding. Torch-first, batched over leading dims,
differentiable; numpy arrays are accepted too (numpy in -> numpy out)."""

from handcast.geometry.camera import (
    FOV_RANGE_DEG,
    Z_EPS,
    camera_center,
    check_intrinsics,
    compose,
    focal_from_fov,
    fov_intrinsics,
    invert_rigid,
    look_at,
    make_intrinsics,
    pixel_rays,
    project,
    read_intrinsics,
    resolve_intrinsics,
    rigid,
    transform_points,
    unproject,
)
from handcast.geometry.frames import in_image, project_frames
from handcast.geometry.procrustes import apply_similarity, procrustes_align, similarity_procrustes
from handcast.geometry.rays import kpe, plucker
from handcast.geometry.rotations import (
    aa_to_6d,
    aa_to_rotmat,
    geodesic_angle,
    mean_rotmat,
    rotmat_to_6d,
    rotmat_to_aa,
    sixd_to_aa,
    sixd_to_rotmat,
    slerp_rotmat,
)

__all__ = [
    "FOV_RANGE_DEG", "Z_EPS", "camera_center", "check_intrinsics", "compose", "focal_from_fov", "fov_intrinsics",
    "invert_rigid", "look_at", "make_intrinsics", "pixel_rays", "project", "read_intrinsics", "resolve_intrinsics", "rigid",
    "transform_points", "unproject", "apply_similarity", "procrustes_align", "similarity_procrustes", "kpe", "plucker",
    "aa_to_6d", "aa_to_rotmat", "geodesic_angle", "mean_rotmat", "rotmat_to_6d", "rotmat_to_aa", "sixd_to_aa",
    "sixd_to_rotmat", "slerp_rotmat",
    "in_image", "project_frames",
]
