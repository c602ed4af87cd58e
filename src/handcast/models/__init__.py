"""Models: the MDM-style motion denoiser and its conditioning blocks."""

from handcast.models.denoiser import DenoiserConfig, MotionDenoiser, TokenMLP

__all__ = ["DenoiserConfig", "MotionDenoiser", "TokenMLP"]
