"""The reverse-diffusion loop of the cascade, with the schedulers built once per process.

Same loop and settings as :func:`handcast.diffusion.sample` (x0-predicting denoiser, the samplers of
:func:`handcast.diffusion.make_scheduler`), except that a scheduler is made once per (sampler, diffusion
config) and reused: building a diffusers scheduler costs ~15 ms (its beta table is a Python loop), more
than one-step DDIM itself on a small model.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable

import torch

from handcast.diffusion import SAMPLERS, DiffusionConfig, make_scheduler

_local = threading.local()


@functools.lru_cache(maxsize=16)
def _template(sampler: str, config: DiffusionConfig):
    return make_scheduler(sampler, config)


def scheduler(sampler: str, config: DiffusionConfig):
    """A scheduler of this thread for ``sampler`` (its own copy: schedulers keep state between steps)."""
    cache = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    key = (sampler, config)
    if key not in cache:
        import copy

        cache[key] = copy.deepcopy(_template(sampler, config))
    return cache[key]


@torch.no_grad()
def sample_x0(denoise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], shape: tuple[int, ...],
              sampler: str = "ddim", steps: int | None = None, config: DiffusionConfig = DiffusionConfig(),
              generator: torch.Generator | None = None, device=None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Samples x0 of ``shape`` (B, T, D); ``denoise(x_t, t)`` predicts x0. ``steps`` defaults to the sampler's."""
    sch = scheduler(sampler, config)
    steps = steps or SAMPLERS[sampler][1]
    sch.set_timesteps(int(steps), device=device)
    x = torch.randn(shape, generator=generator, device=device, dtype=dtype) * sch.init_noise_sigma
    kwargs = {"generator": generator} if sampler in ("ddpm", "ddim") else {}
    for t in sch.timesteps:
        tb = torch.full((shape[0],), int(t), device=x.device, dtype=torch.long)
        x = sch.step(denoise(x, tb), t, x, **kwargs).prev_sample
    return x
