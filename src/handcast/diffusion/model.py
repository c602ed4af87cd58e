"""How a conditional diffusion model draws samples: the condition is encoded once per input, repeated for
the input's S samples, which are denoised together in one batch, then decoded.

:func:`sample_per_input` is that loop for any denoiser; :class:`ConditionalDiffusion` is the base of a model
whose ``sample(inputs, ...)`` is exactly that, given three hooks (condition, denoise, decode).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from handcast.diffusion.sampling import sample
from handcast.diffusion.schedule import DiffusionConfig

#: a condition: tensors (B, ...) with one entry per input (or None), passed to the denoiser after (x_t, t)
Condition = tuple[torch.Tensor | None, ...]


@torch.no_grad()
def sample_per_input(
    denoise: Callable[..., torch.Tensor],
    cond: Condition,
    shape: tuple[int, ...],
    num_samples: int = 1,
    sampler: str = "ddim",
    steps: int | None = None,
    guidance: float = 1.0,
    config: DiffusionConfig = DiffusionConfig(),
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    progress: bool = False,
    known: torch.Tensor | None = None,
    known_mask: torch.Tensor | None = None,
    harmonise: Callable | None = None,
) -> torch.Tensor:
    """``num_samples`` samples x0 of ``shape`` per input: (B, S, *shape), on the condition's device.

    ``denoise(x_t, t, *cond)`` predicts x0 (B*S, *shape) from x_t (B*S, *shape) and t (B*S,) given the
    condition repeated S times along the batch (sample s of input b is row b*S + s);
    ``denoise(x_t, t, *cond, conditioned=False)``, the unconditional prediction, is called only for
    classifier-free guidance (``guidance`` != 1). The first non-None entry of ``cond`` gives B and the device.
    Sampler, steps, guidance and generator as in :func:`handcast.diffusion.sample`. ``known`` (B, *shape)
    and ``known_mask`` (B, T) or (B, *shape), one per input and shared by its S samples, are the entries
    imposed during sampling (:func:`handcast.diffusion.sample`).
    """
    s = int(num_samples)
    first = next(c for c in cond if c is not None)
    b = first.shape[0]
    cond = tuple(None if c is None else c.repeat_interleave(s, dim=0) for c in cond)

    def den(x_t, t, conditioned):
        return denoise(x_t, t, *cond) if conditioned else denoise(x_t, t, *cond, conditioned=False)

    if known is not None:
        known = known.to(first.device).repeat_interleave(s, dim=0)
        if known_mask is not None:
            known_mask = torch.as_tensor(known_mask, device=first.device).repeat_interleave(s, dim=0)
    x = sample(den, (b * s, *shape), sampler=sampler, steps=steps, guidance=guidance, config=config,
               generator=generator, device=first.device, dtype=dtype, progress=progress, known=known,
               known_mask=known_mask, harmonise=harmonise)
    return x.reshape(b, s, *shape)


class ConditionalDiffusion(nn.Module):
    """Base of a diffusion model whose :meth:`sample` draws S samples per input (:func:`sample_per_input`).

    A subclass sets ``self.diffusion`` (its :class:`DiffusionConfig`) and defines the hooks
    :meth:`sampling_condition`, :meth:`denoise` and :meth:`decode`.
    """

    diffusion: DiffusionConfig

    def sampling_condition(self, inputs: Any) -> tuple[Condition, tuple[int, ...]]:
        """The condition of a batch of B inputs (tensors (B, ...) or None, passed to :meth:`denoise`) and the
        shape of one sample x0."""
        raise NotImplementedError

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, *cond, conditioned: bool = True) -> torch.Tensor:
        """Predicted x0 from x_t (B, *shape) at steps t (B,) given the condition (the unconditional
        prediction with ``conditioned=False``)."""
        raise NotImplementedError

    def decode(self, x0: torch.Tensor) -> Any:
        """Samples x0 (B, S, *shape) -> the model's outputs, each (B, S, ...)."""
        raise NotImplementedError

    @torch.no_grad()
    def sample(self, inputs: Any, num_samples: int = 1, sampler: str = "ddim", steps: int | None = None,
               guidance: float = 1.0, generator: torch.Generator | None = None, progress: bool = False,
               known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None,
               harmonise: Callable | None = None) -> Any:
        """``num_samples`` samples per input, decoded (:meth:`decode`). The condition is encoded once per input
        and shared by its samples, which are denoised together in one batch. ``sampler`` is one of
        :data:`handcast.diffusion.SAMPLERS`; ``steps`` defaults to the sampler's; ``guidance`` != 1 applies
        classifier-free guidance. ``known`` / ``known_mask`` (one per input, in x0's space) are imposed
        during sampling (:func:`sample_per_input`)."""
        cond, shape = self.sampling_condition(inputs)
        return self.decode(sample_per_input(self.denoise, cond, shape, num_samples, sampler, steps, guidance,
                                            self.diffusion, generator, progress=progress, known=known,
                                            known_mask=known_mask, harmonise=harmonise))
