"""Small helpers shared by the geometry modules: numpy in -> numpy out, dtype promotion."""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import numpy as np
import torch

F = TypeVar("F", bound=Callable[..., Any])


def _to_numpy(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, tuple):
        return tuple(_to_numpy(v) for v in x)
    if isinstance(x, list):
        return [_to_numpy(v) for v in x]
    if isinstance(x, dict):
        return {k: _to_numpy(v) for k, v in x.items()}
    return x


def numpy_io(fn: F) -> F:
    """Let a torch function also take numpy arrays.

    If any argument is a numpy array and none is a torch tensor, the arrays are converted to CPU
    tensors (same dtype), the function runs, and tensor results come back as numpy arrays.
    If torch tensors are among the arguments, numpy arrays are moved to the first tensor's device
    and the result stays torch.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = list(args) + list(kwargs.values())
        has_np = any(isinstance(v, np.ndarray) for v in values)
        if not has_np:
            return fn(*args, **kwargs)
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")

        def conv(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                v = np.ascontiguousarray(v)
                if not v.flags.writeable:  # torch warns on read-only memory (e.g. np.broadcast_to views)
                    v = v.copy()
                return torch.from_numpy(v).to(device)
            return v

        out = fn(*[conv(a) for a in args], **{k: conv(v) for k, v in kwargs.items()})
        return out if tensors else _to_numpy(out)

    return wrapper  # type: ignore[return-value]


def as_float(*xs: Any) -> list[torch.Tensor]:
    """Convert inputs to tensors of one common floating dtype on the first tensor's device.

    Python numbers and sequences become tensors; integer tensors are promoted to the default float
    dtype unless a floating tensor is present, whose (promoted) dtype wins.
    """
    device = next((x.device for x in xs if isinstance(x, torch.Tensor)), torch.device("cpu"))
    dtype = None
    for x in xs:  # only tensors and numpy arrays decide the dtype; Python numbers are "weak"
        if isinstance(x, torch.Tensor) and x.is_floating_point():
            d = x.dtype
        elif isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
            d = torch.from_numpy(np.zeros(0, dtype=x.dtype)).dtype
        else:
            continue
        dtype = d if dtype is None else torch.promote_types(dtype, d)
    if dtype is None:
        dtype = torch.get_default_dtype()
    return [torch.as_tensor(x, device=device).to(dtype) if not isinstance(x, torch.Tensor)
            else x.to(device=device, dtype=dtype) for x in xs]


def bcross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product over the last axis with broadcasting of the leading dims."""
    a, b = torch.broadcast_tensors(a, b)
    return torch.linalg.cross(a, b, dim=-1)


def matvec(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``M @ v`` for M (..., n, m) and v (..., m) with broadcasting of the leading dims -> (..., n)."""
    return (M @ v.unsqueeze(-1)).squeeze(-1)


def matTvec(M: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``M^T @ v`` for M (..., m, n) and v (..., m) with broadcasting -> (..., n)."""
    return (M.transpose(-1, -2) @ v.unsqueeze(-1)).squeeze(-1)
