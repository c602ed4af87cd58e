"""Noise schedules and samplers, from diffusers, with motion settings instead of its image defaults.

Motion settings (systems.md section 3): cosine schedule (``squaredcos_cap_v2``), 1000 training steps, the
model predicts x0 (``prediction_type="sample"``), no sample clipping, "trailing" timestep spacing for the
few-step samplers (leading spacing never visits t = 999 and gives frozen motion).
"""

from __future__ import annotations

from dataclasses import dataclass

from handcast.errors import HandcastError

#: sampler name -> (diffusers class name, default number of steps)
SAMPLERS: dict[str, tuple[str, int]] = {
    "ddpm": ("DDPMScheduler", 1000),
    "ddim": ("DDIMScheduler", 50),
    "dpm": ("DPMSolverMultistepScheduler", 10),
}


@dataclass(frozen=True)
class DiffusionConfig:
    """Training-time diffusion settings (stored with every checkpoint)."""

    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    prediction_type: str = "sample"


def make_scheduler(sampler: str = "ddpm", config: DiffusionConfig = DiffusionConfig()):
    """A diffusers scheduler for ``sampler`` in ('ddpm', 'ddim', 'dpm') with motion settings.

    'ddpm' is ancestral sampling (the paper's: all 1000 steps), 'ddim' is deterministic DDIM (eta = 0),
    'dpm' is DPM-Solver++ (2nd order multistep). Call ``set_timesteps(k)`` before sampling.
    """
    import diffusers

    if sampler not in SAMPLERS:
        raise HandcastError(f"unknown sampler '{sampler}' (choose from: {', '.join(SAMPLERS)})")
    common = dict(
        num_train_timesteps=config.num_train_timesteps,
        beta_schedule=config.beta_schedule,
        prediction_type=config.prediction_type,
    )
    if sampler == "ddpm":
        return diffusers.DDPMScheduler(**common, clip_sample=False, variance_type="fixed_small")
    if sampler == "ddim":
        return diffusers.DDIMScheduler(**common, clip_sample=False, set_alpha_to_one=True,
                                       timestep_spacing="trailing")
    return diffusers.DPMSolverMultistepScheduler(**common, algorithm_type="dpmsolver++", solver_order=2,
                                                 timestep_spacing="trailing", lower_order_final=True)
