"""Timing of the keypoints-only path against the full smplx forward pass.

Run ``python scripts/bench_hand.py`` (or call :func:`keypoints_speed`).
"""

from __future__ import annotations

import time

import torch

from handcast.hand import HandModel


def _time(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return best


@torch.no_grad()
def keypoints_speed(batch: tuple[int, ...] = (64, 64), kind: str = "open", device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32, repeats: int = 3, seed: int = 0) -> dict:
    """Best-of-``repeats`` seconds for ``HandModel.forward`` (full smplx mesh) and for
    ``HandModel.keypoints`` on random poses of shape (*batch, 2, 16, 3), both hands.

    Returns a dict with keys forward_s, keypoints_s, speedup, batch, num_vertices, device, kind.
    """
    device = torch.device(device)
    model = HandModel(kind, dtype=dtype).to(device)
    g = torch.Generator().manual_seed(seed)
    pose = (torch.randn(tuple(batch) + (2, 16, 3), generator=g) * 0.4).to(device=device, dtype=dtype)
    betas = torch.randn(tuple(batch) + (2, 10), generator=g).to(device=device, dtype=dtype)
    t_full = _time(lambda: model(pose, betas), repeats, device)
    t_kp = _time(lambda: model.keypoints(pose, betas), repeats, device)
    return dict(forward_s=t_full, keypoints_s=t_kp, speedup=t_full / t_kp, batch=tuple(batch),
                num_vertices=model.num_vertices, device=str(device), kind=model.kind)
