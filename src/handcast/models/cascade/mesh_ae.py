"""Mesh autoencoder: a hand mesh of the hand model in use <-> a compact latent (issue 5, section 2).

Latent (``6 + latent_dim`` numbers) = [global rotation in 6D, shape-and-articulation code z]:

* **encode**: the root-relative mesh v (V, 3) is rotated into a canonical orientation by the rotation R that
  best maps the template's palm onto the mesh's palm (rotation-only Procrustes on the vertices that only
  the wrist moves); the canonical mesh R^T v is projected on a PCA basis (``pca_components`` coefficients,
  computed from sampled canonical meshes) and an MLP maps the whitened coefficients to z.
* **decode**: an MLP maps z back to the PCA coefficients; the canonical mesh is the PCA mean plus the basis
  combination, rotated by R = Gram-Schmidt(6D).

Taking the rotation out explicitly keeps the learned part small (fingers and shape only) and the latent
equivariant: rotating the input mesh only changes the 6D part. Trained on meshes sampled from the model's
pose and shape space (:func:`handcast.models.cascade.handutil.sample_meshes`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from handcast.errors import HandcastError
from handcast.geometry import rotmat_to_6d, sixd_to_rotmat


@dataclass(frozen=True)
class MeshAEConfig:
    """Architecture of :class:`MeshAutoencoder`."""

    pca_components: int = 128
    latent_dim: int = 26
    hidden: int = 512
    layers: int = 2

    @property
    def total_latent(self) -> int:
        return 6 + self.latent_dim

    def to_dict(self) -> dict:
        return asdict(self)


def _mlp(i: int, h: int, o: int, layers: int) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = i
    for _ in range(max(int(layers), 1)):
        mods += [nn.Linear(d, h), nn.GELU()]
        d = h
    mods.append(nn.Linear(d, o))
    return nn.Sequential(*mods)


class MeshAutoencoder(nn.Module):
    """Encode root-relative meshes (B, V, 3) [m] into latents (B, 6 + latent_dim) and back.

    Buffers (set by :meth:`fit_pca` and :meth:`set_latent_statistics`, saved with the weights): the PCA
    mean (V, 3), basis (K, V, 3) (orthonormal rows), coefficient std (K,), the palm vertex ids and template
    palm, and the latent mean/std used to normalise the latent for diffusion."""

    def __init__(self, config: MeshAEConfig, num_vertices: int, palm_ids: torch.Tensor, palm_template: torch.Tensor):
        super().__init__()
        self.config = config
        k = config.pca_components
        self.num_vertices = int(num_vertices)
        self.register_buffer("pca_mean", torch.zeros(num_vertices, 3))
        self.register_buffer("pca_basis", torch.zeros(k, num_vertices, 3))
        self.register_buffer("coef_std", torch.ones(k))
        self.register_buffer("palm_ids", torch.as_tensor(palm_ids, dtype=torch.long).clone())
        self.register_buffer("palm_template", torch.as_tensor(palm_template, dtype=torch.float32).clone())
        self.register_buffer("latent_mean", torch.zeros(config.total_latent))
        self.register_buffer("latent_std", torch.ones(config.total_latent))
        self.encoder = _mlp(k, config.hidden, config.latent_dim, config.layers)
        self.decoder = _mlp(config.latent_dim, config.hidden, k, config.layers)

    # ------------------------------------------------------------------ canonical orientation
    def canonical_rotation(self, vertices: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) root-relative meshes -> R (B, 3, 3) with palm(v) ~ R palm(template) (least squares)."""
        import roma

        if vertices.ndim != 3 or vertices.shape[1:] != (self.num_vertices, 3):
            raise HandcastError(f"meshes must be (B, {self.num_vertices}, 3), got {tuple(vertices.shape)}")
        p = vertices[:, self.palm_ids]
        M = torch.einsum("bpi,pj->bij", p - p.mean(1, keepdim=True),
                         self.palm_template - self.palm_template.mean(0, keepdim=True))
        return roma.special_procrustes(M)

    # ------------------------------------------------------------------ PCA front end
    @torch.no_grad()
    def fit_pca(self, canonical: torch.Tensor) -> float:
        """Set the PCA mean/basis/std from canonical meshes (N, V, 3) (N > pca_components). Returns the
        mean per-vertex error (m) of the truncated PCA on those meshes."""
        n = canonical.shape[0]
        k = self.config.pca_components
        if n <= k:
            raise HandcastError(f"PCA of {k} components needs more than {k} meshes, got {n}")
        mean = canonical.mean(0)
        X = (canonical - mean).reshape(n, -1).double()
        g = torch.Generator(device=X.device).manual_seed(0)
        state = torch.random.get_rng_state()
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))  # svd_lowrank draws from the global RNG
        try:
            _, _, V = torch.svd_lowrank(X, q=min(k + 16, min(X.shape)), niter=6)
        finally:
            torch.random.set_rng_state(state)
        basis = V[:, :k].T
        coef = X @ basis.T
        self.pca_mean.copy_(mean)
        self.pca_basis.copy_(basis.reshape(k, self.num_vertices, 3).float())
        self.coef_std.copy_(coef.std(0).clamp_min(1e-8).float())
        rec = (coef @ basis).reshape(n, -1, 3)
        return float((rec - X.reshape(n, -1, 3)).norm(dim=-1).mean())

    def to_coefficients(self, canonical: torch.Tensor) -> torch.Tensor:
        """Canonical meshes (B, V, 3) -> whitened PCA coefficients (B, K)."""
        return torch.einsum("bvc,kvc->bk", canonical - self.pca_mean, self.pca_basis) / self.coef_std

    def from_coefficients(self, coef: torch.Tensor) -> torch.Tensor:
        """Whitened PCA coefficients (B, K) -> canonical meshes (B, V, 3)."""
        return torch.einsum("bk,kvc->bvc", coef * self.coef_std, self.pca_basis) + self.pca_mean

    # ------------------------------------------------------------------ autoencoder
    def encode(self, vertices: torch.Tensor) -> torch.Tensor:
        """Root-relative meshes (B, V, 3) [m] -> latents (B, 6 + latent_dim) (unnormalised)."""
        R = self.canonical_rotation(vertices)
        canonical = vertices @ R  # R^T v for row vectors
        z = self.encoder(self.to_coefficients(canonical))
        return torch.cat([rotmat_to_6d(R), z], -1)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Latents (B, 6 + latent_dim) -> root-relative meshes (B, V, 3) [m]."""
        if latent.shape[-1] != self.config.total_latent:
            raise HandcastError(f"latents must have {self.config.total_latent} values, got {latent.shape[-1]}")
        R = sixd_to_rotmat(latent[..., :6])
        canonical = self.from_coefficients(self.decoder(latent[..., 6:]))
        return canonical @ R.transpose(-1, -2)

    def forward(self, vertices: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(vertices))

    # ------------------------------------------------------------------ normalisation for diffusion
    @torch.no_grad()
    def set_latent_statistics(self, latents: torch.Tensor) -> None:
        """Mean/std (per dimension) of latents (N, 6 + latent_dim) of training meshes."""
        self.latent_mean.copy_(latents.mean(0))
        self.latent_std.copy_(latents.std(0).clamp_min(1e-4))

    def normalise(self, latent: torch.Tensor) -> torch.Tensor:
        return (latent - self.latent_mean) / self.latent_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.latent_std + self.latent_mean
