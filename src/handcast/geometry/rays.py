"""Per-pixel camera encodings used to condition the lifting model: Plucker rays and KPE.

Both are torch, batched over leading dims (which broadcast between uv, K and the extrinsics),
differentiable, and accept numpy arrays (numpy in -> numpy out).
"""

from __future__ import annotations

import torch

from handcast.geometry._compat import as_float, bcross, matTvec, numpy_io
from handcast.geometry.camera import pixel_rays


@numpy_io
def plucker(uv: torch.Tensor, K: torch.Tensor, world_to_cam: torch.Tensor) -> torch.Tensor:
    """Plucker coordinates (..., 6) of the ray from the camera centre through each pixel.

    Args:
        uv: (..., 2) pixels (OpenCV convention).
        K: (..., 3, 3) intrinsics.
        world_to_cam: (..., 4, 4) rigid transform from the reference frame ("world"; in handcast the
            frame-0 camera) to this camera.

    Returns:
        (..., 6) = [d, m] in the reference frame: d (3) the unit ray direction
        ``normalise(R^T K^-1 [u, v, 1])``, m (3) the moment ``c x d`` with the camera centre
        ``c = -R^T t``. The moment equals ``X x d`` for every point X on the ray, so [d, m] does
        not depend on which point along the ray (which depth) defined the pixel.
    """
    uv, K, T = as_float(uv, K, world_to_cam)
    R, t = T[..., :3, :3], T[..., :3, 3]
    d = matTvec(R, pixel_rays(uv, K))
    d = d / torch.linalg.norm(d, dim=-1, keepdim=True)
    c = -matTvec(R, t)
    m = bcross(c, d)
    d, m = torch.broadcast_tensors(d, m)
    return torch.cat([d, m], dim=-1)


@numpy_io
def kpe(uv: torch.Tensor, K: torch.Tensor, num_freqs: int = 4) -> torch.Tensor:
    """Keypoint positional encoding (..., 4 * num_freqs) of pixels (..., 2) under intrinsics K (..., 3, 3).

    The two viewing angles ``phi_x = atan((u - cx) / fx)`` and ``phi_y = atan((v - cy) / fy)``
    (radians; skew ignored) are encoded at frequencies 2^k, k = 0 .. num_freqs - 1, in this fixed
    layout (F = num_freqs):

        [sin(2^k phi_x) for k in 0..F-1,  sin(2^k phi_y) for k in 0..F-1,
         cos(2^k phi_x) for k in 0..F-1,  cos(2^k phi_y) for k in 0..F-1]
    """
    if int(num_freqs) < 1:
        from handcast.errors import HandcastError

        raise HandcastError(f"kpe: num_freqs must be >= 1, got {num_freqs}")
    uv, K = as_float(uv, K)
    phi_x = torch.atan((uv[..., 0] - K[..., 0, 2]) / K[..., 0, 0])
    phi_y = torch.atan((uv[..., 1] - K[..., 1, 2]) / K[..., 1, 1])
    phi = torch.stack(torch.broadcast_tensors(phi_x, phi_y), dim=-1)  # (..., 2)
    freqs = 2.0 ** torch.arange(int(num_freqs), dtype=phi.dtype, device=phi.device)  # (F,)
    ang = (phi.unsqueeze(-1) * freqs).flatten(-2)  # (..., 2F): [x at k=0..F-1, y at k=0..F-1]
    return torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1)


__all__ = ["plucker", "kpe"]
