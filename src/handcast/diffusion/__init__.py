"""Diffusion core: noise schedules and samplers (diffusers) configured for motion, the training loss,
condition dropout and classifier-free guidance."""

from handcast.diffusion.schedule import SAMPLERS, DiffusionConfig, make_scheduler
from handcast.diffusion.sampling import cached_scheduler, sample
from handcast.diffusion.training import condition_dropout, diffusion_loss, noisy_input

__all__ = [
    "SAMPLERS", "DiffusionConfig", "make_scheduler", "cached_scheduler", "sample", "condition_dropout", "diffusion_loss",
    "noisy_input",
]
