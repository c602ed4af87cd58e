"""Rotation conversions through roma (torch, batched over leading dims, differentiable).

Representations
  * axis-angle ("aa"): (..., 3), rotation vector = unit axis x angle in radians.
  * rotation matrix ("rotmat"): (..., 3, 3), proper rotation (det +1), acting on column vectors.
  * 6D ("sixd"): (..., 6), the first two COLUMNS of the rotation matrix, ``R[..., :, :2]`` flattened
    row-major, i.e. ``[R00, R01, R10, R11, R20, R21]`` (the convention of
    :mod:`handcast.conventions`). Back to a matrix with ``roma.special_gramschmidt`` on the (3, 2)
    reshape, so any 6D vector (even unnormalised network output) maps to a rotation.

Every function also accepts numpy arrays (numpy in -> numpy out).
"""

from __future__ import annotations

import roma
import torch

from handcast.geometry._compat import as_float, numpy_io

# Clamp used by Gram-Schmidt so that a degenerate (zero / colinear) 6D input gives a finite matrix.
_GS_EPS = 1e-8


@numpy_io
def aa_to_rotmat(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) [rad] -> rotation matrix (..., 3, 3)."""
    (aa,) = as_float(aa)
    return roma.rotvec_to_rotmat(aa)


@numpy_io
def rotmat_to_aa(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> axis-angle (..., 3) [rad], angle in [0, pi]."""
    (R,) = as_float(R)
    return roma.rotmat_to_rotvec(R)


@numpy_io
def rotmat_to_6d(R: torch.Tensor) -> torch.Tensor:
    """Rotation matrix (..., 3, 3) -> 6D (..., 6) = first two columns, flattened row-major."""
    (R,) = as_float(R)
    return R[..., :, :2].reshape(*R.shape[:-2], 6)


@numpy_io
def sixd_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D (..., 6) -> rotation matrix (..., 3, 3) by Gram-Schmidt on the two stored columns.

    Exact inverse of :func:`rotmat_to_6d` on rotation matrices; for arbitrary input the first
    column is normalised, the second made orthogonal to it, the third is their cross product.
    """
    (x,) = as_float(x)
    return roma.special_gramschmidt(x.reshape(*x.shape[:-1], 3, 2), epsilon=_GS_EPS)


@numpy_io
def aa_to_6d(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle (..., 3) [rad] -> 6D (..., 6)."""
    return rotmat_to_6d(aa_to_rotmat(aa))


@numpy_io
def sixd_to_aa(x: torch.Tensor) -> torch.Tensor:
    """6D (..., 6) -> axis-angle (..., 3) [rad]."""
    return rotmat_to_aa(sixd_to_rotmat(x))


@numpy_io
def slerp_rotmat(R0: torch.Tensor, R1: torch.Tensor, w: torch.Tensor | float) -> torch.Tensor:
    """Geodesic interpolation between rotation matrices, elementwise with broadcasting.

    R0, R1: (..., 3, 3); w: scalar or (...) weights (0 -> R0, 1 -> R1; values outside [0, 1]
    extrapolate). Returns ``R0 @ exp(w * log(R0^T R1))`` with shape (..., 3, 3). Takes the short way
    round (relative angle <= pi).
    """
    R0, R1, w = as_float(R0, R1, w)
    rel = rotmat_to_aa(R0.transpose(-1, -2) @ R1)  # (..., 3)
    return R0 @ aa_to_rotmat(w.unsqueeze(-1) * rel)


@numpy_io
def mean_rotmat(R: torch.Tensor, dim: int, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The chordal mean of rotation matrices R (..., 3, 3) along ``dim`` (a batch dimension, not one of the
    last two): the rotation nearest their arithmetic mean (``roma.special_procrustes``). Used to average a
    diffusion model's samples (an estimate of the posterior mean). ``weights`` (R's shape without the last two
    dimensions, summing to 1 along ``dim``): the weighted chordal mean."""
    (R,) = as_float(R)
    if dim % R.ndim >= R.ndim - 2:
        raise ValueError("mean_rotmat averages over a batch dimension, not the matrix dimensions")
    if weights is None:
        return roma.special_procrustes(R.mean(dim))
    return roma.special_procrustes((R * weights.to(R)[..., None, None]).sum(dim))


@numpy_io
def geodesic_angle(R0: torch.Tensor, R1: torch.Tensor) -> torch.Tensor:
    """Angle in radians (...) of the rotation taking R0 to R1 (both (..., 3, 3))."""
    R0, R1 = as_float(R0, R1)
    return roma.rotmat_geodesic_distance(R0, R1)
