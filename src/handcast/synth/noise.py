"""Simulated 2D keypoint detector: turns exact projections into detector-like tracks.

Corruptions (all drawn from the given generator, so they are reproducible):
  * Gaussian jitter whose std grows with depth and with occlusion (keypoints hidden behind the
    palm or behind the other hand), plus a slowly drifting per-hand offset;
  * confidences that fall with the noise level;
  * dropped keypoints and missed frames (conf 0, coordinates 0);
  * swaps of two neighbouring fingers, and of the right/left detections.
"""

from __future__ import annotations

import numpy as np

from handcast.synth.domains import DetectorNoise

__all__ = ["visibility", "occlusion", "detect"]

_FINGER_KPS = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16], [17, 18, 19, 20]])


def visibility(uv: np.ndarray, z: np.ndarray, image_size: tuple[int, int], margin: float = 0.0) -> np.ndarray:
    """Keypoints in front of the camera and inside the image: uv (..., 2) px, z (...) m -> bool (...)."""
    w, h = image_size
    return (
        (z > 0.02)
        & (uv[..., 0] >= -margin) & (uv[..., 0] < w + margin)
        & (uv[..., 1] >= -margin) & (uv[..., 1] < h + margin)
    )


def occlusion(uv: np.ndarray, z: np.ndarray) -> np.ndarray:
    """A cheap occlusion score in [0, 1] per keypoint, (T, 2, 21).

    A keypoint counts as occluded when it lies inside the 2D hull-ish disc of a palm (its own or the
    other hand's) and is more than 1.5 cm behind that palm.
    uv: (T, 2, 21, 2) px; z: (T, 2, 21) camera depth, m.
    """
    palm_idx = [0, 5, 9, 13, 17]
    pc = uv[:, :, palm_idx].mean(axis=2)  # (T, 2, 2)
    pz = z[:, :, palm_idx].mean(axis=2)  # (T, 2)
    pr = np.linalg.norm(uv[:, :, palm_idx] - pc[:, :, None], axis=-1).max(axis=2)  # (T, 2)
    occ = np.zeros(z.shape)
    for h in range(2):  # the occluding palm
        d = np.linalg.norm(uv - pc[:, h][:, None, None], axis=-1)  # (T, 2, 21)
        inside = np.clip(1.2 - d / np.maximum(pr[:, h][:, None, None], 1.0), 0, 1)
        behind = np.clip((z - pz[:, h][:, None, None] - 0.015) / 0.02, 0, 1)
        occ = np.maximum(occ, inside * behind)
    return occ


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
    """Moving average along axis 0 (same length), k >= 1."""
    if k <= 1 or len(x) < 2:
        return x
    pad = np.concatenate([np.repeat(x[:1], k, 0), x, np.repeat(x[-1:], k, 0)])
    c = np.cumsum(pad, axis=0)
    out = (c[2 * k:] - c[:-2 * k]) / (2 * k)
    return out[: len(x)]


def detect(
    uv: np.ndarray,
    z: np.ndarray,
    image_size: tuple[int, int],
    spec: DetectorNoise,
    rng: np.random.Generator,
    rng0: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Detector-like 2D keypoints from exact projections.

    uv: (T, 2, 21, 2) exact pixel projections; z: (T, 2, 21) camera depths (m).
    rng: generator for frames 1..T-1; rng0: generator for frame 0 (default: rng). Giving several
    futures of one first frame the same rng0 makes their frame-0 detections identical.
    Returns (kp2d (T, 2, 21, 2) float64 px, conf (T, 2, 21) float64 in [0, 1]); keypoints outside
    the image or dropped have conf 0 and coordinates 0.
    """
    T = uv.shape[0]
    scale = max(image_size) / 256.0
    vis = visibility(uv, z, image_size)
    occ = occlusion(uv, z)
    sigma = spec.jitter_px * scale * (1 + spec.depth_gain * np.clip(z - 0.35, 0, None)) * (1 + spec.occlusion_gain * occ)

    def draws(g: np.random.Generator, n: int):
        return {
            "white": g.standard_normal((n, 2, 21, 2)),
            "drift": g.standard_normal((n, 2, 2)),
            "drop": g.random((n, 2, 21)),
            "miss": g.random((n, 2)),
            "fswap": g.random((n, 2)),
            "fwhich": g.integers(1, 4, size=(n, 2)),
            "hswap": g.random(n),
            "cnoise": g.uniform(-0.05, 0.05, size=(n, 2, 21)),
        }

    d = draws(rng, T)
    if rng0 is not None:
        d0 = draws(rng0, 1)
        for k in d:
            d[k][:1] = d0[k]
    kp = uv + sigma[..., None] * d["white"]
    drift = _smooth(d["drift"], 5) * spec.drift_px * scale * np.sqrt(5)
    drift = drift - drift[:1] + d["drift"][:1] * spec.drift_px * scale  # frame 0 from rng0's draw only
    kp = kp + drift[:, :, None, :]
    conf = np.clip(1.0 - 0.06 * sigma / scale - 0.35 * occ + d["cnoise"], 0.05, 1.0)
    # neighbouring finger swaps (index-middle, middle-ring or ring-pinky)
    for t, h in zip(*np.nonzero(d["fswap"] < spec.p_finger_swap)):
        a = d["fwhich"][t, h]
        ia, ib = _FINGER_KPS[a], _FINGER_KPS[a + 1]
        kp[t, h, ia], kp[t, h, ib] = kp[t, h, ib].copy(), kp[t, h, ia].copy()
    # right/left swaps
    for t in np.nonzero(d["hswap"] < spec.p_hand_swap)[0]:
        if vis[t].any(axis=-1).all():
            kp[t] = kp[t, ::-1].copy()
            conf[t] = conf[t, ::-1].copy()
            vis[t] = vis[t, ::-1].copy()
    drop = (d["drop"] < spec.p_drop_kp) | (d["miss"] < spec.p_miss_frame)[..., None] | ~vis
    conf = np.where(drop, 0.0, conf)
    kp = np.where(drop[..., None], 0.0, kp)
    return kp, conf
