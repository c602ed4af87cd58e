"""Sampling loop shared by every diffusion model in handcast."""

from __future__ import annotations

import copy
import functools
import threading
from typing import Callable

import torch

from handcast.diffusion.schedule import SAMPLERS, DiffusionConfig, make_scheduler
from handcast.errors import HandcastError

_local = threading.local()


@functools.lru_cache(maxsize=16)
def _template(sampler: str, config: DiffusionConfig):
    return make_scheduler(sampler, config)


def cached_scheduler(sampler: str, config: DiffusionConfig = DiffusionConfig()):
    """This thread's scheduler for (``sampler``, ``config``), built once and reused (building a diffusers
    scheduler costs ~15 ms, more than one-step DDIM on a small model). Each thread has its own copy because
    schedulers keep state between steps; ``set_timesteps`` resets it."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (sampler, config)
    if key not in cache:
        cache[key] = copy.deepcopy(_template(sampler, config))
    return cache[key]

#: denoiser(x_t (B, T, D), t (B,) long, conditioned: bool) -> predicted x0 (B, T, D)
Denoise = Callable[[torch.Tensor, torch.Tensor, bool], torch.Tensor]


@torch.no_grad()
def sample(
    denoise: Denoise,
    shape: tuple[int, ...],
    sampler: str = "ddim",
    steps: int | None = None,
    guidance: float = 1.0,
    config: DiffusionConfig = DiffusionConfig(),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    harmonise: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Draw samples x0 of ``shape`` (B, T, D) by reverse diffusion.

    ``denoise`` predicts x0; ``guidance`` != 1 applies classifier-free guidance on x0:
    x0 = x0_uncond + guidance * (x0_cond - x0_uncond) (``denoise(..., conditioned=False)`` must give the
    unconditional prediction). ``steps`` defaults to the sampler's (ddpm 1000, ddim 50, dpm 10).

    Known entries (imputation, e.g. a known prefix of frames): ``known`` (B, T, D) holds their clean values
    and ``known_mask`` (B, T) or (B, T, D) (bool, True = known) says which they are. At every step the
    predicted x0 takes the known values there before the scheduler step (so x_{t-1} carries them, noised
    as the scheduler noises its x0 estimate), and the returned samples equal ``known`` exactly where the
    mask is set; the other entries are sampled given them. Without ``known`` the loop is unchanged.
    ``harmonise(x0, known, mask)`` (optional, model-specific) maps each predicted x0 to one consistent with
    the known values before they are imposed (e.g. moving a whole motion so that it starts where the known
    frames are); it is called only with ``known``.
    """
    if sampler not in SAMPLERS:
        make_scheduler(sampler, config)  # the one-line error naming the samplers
    scheduler = cached_scheduler(sampler, config)
    steps = steps or SAMPLERS[sampler][1]
    scheduler.set_timesteps(int(steps), device=device)
    mask = None
    if known is not None:
        mask = _known_mask(known, known_mask, shape)
        known = known.to(device=device, dtype=dtype)
        mask = mask.to(device)
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype)
    x = x * scheduler.init_noise_sigma
    timesteps = scheduler.timesteps
    if progress:
        from tqdm.auto import tqdm

        timesteps = tqdm(timesteps, desc=f"sampling ({sampler}-{steps})", leave=False)
    for t in timesteps:
        tb = torch.full((shape[0],), int(t), device=x.device, dtype=torch.long)
        x0 = denoise(x, tb, True)
        if guidance != 1.0:
            x0_u = denoise(x, tb, False)
            x0 = x0_u + guidance * (x0 - x0_u)
        if mask is not None:
            if harmonise is not None:
                x0 = harmonise(x0, known, mask)
            x0 = torch.where(mask, known, x0)
        # the generator feeds the stochastic samplers' noise (DDPM; DDIM with eta > 0); the others ignore it
        x = scheduler.step(x0, t, x, generator=generator).prev_sample
    if mask is not None:
        x = torch.where(mask, known, x)
    return x


def _known_mask(known: torch.Tensor, known_mask: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """The known-entry mask broadcast to ``shape`` (B, T, D), bool; HandcastError for mismatched shapes."""
    if tuple(known.shape) != tuple(shape):
        raise HandcastError(f"known must have the samples' shape {tuple(shape)}, got {tuple(known.shape)}")
    if known_mask is None:
        raise HandcastError("known needs known_mask ((B, T) or (B, T, D) bool: which entries are known)")
    m = torch.as_tensor(known_mask).to(torch.bool)
    if m.dim() == len(shape) - 1:
        m = m.unsqueeze(-1)
    try:
        return m.expand(shape)
    except RuntimeError:
        raise HandcastError(f"known_mask {tuple(known_mask.shape)} does not fit the samples' shape {tuple(shape)}") from None
