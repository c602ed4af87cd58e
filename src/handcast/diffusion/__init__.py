"""Diffusion core: noise schedules and samplers (diffusers) configured for motion, the training loss,
condition dropout, classifier-free guidance and the conditional diffusion model base.

:data:`SAMPLERS` is the one list of sampler names (name -> (diffusers class, default steps)).
"""

from handcast.diffusion.schedule import SAMPLERS, DiffusionConfig, make_scheduler
from handcast.diffusion.sampling import cached_scheduler, sample
from handcast.diffusion.model import Condition, ConditionalDiffusion, sample_per_input
from handcast.diffusion.training import condition_dropout, diffusion_loss, noisy_input

__all__ = [
    "SAMPLERS", "DiffusionConfig", "make_scheduler", "cached_scheduler", "sample", "condition_dropout", "diffusion_loss",
    "noisy_input", "Condition", "ConditionalDiffusion", "sample_per_input",
]
