"""``handcast forecast IMAGE``: many futures of both hands from one everyday image.

Outputs (in ``out``; every file written atomically):

* ``forecast.png``: the first sample over the image and from a second view, in the paper's colours
  (fading over time), with every sample's wrist path drawn faintly;
* ``forecast.mp4``: the first sample's motion over the image and from the second view;
* ``forecast.npz``: ``joints`` (S, T, 2, 21, 3) metres in the input camera (OpenCV), hands (right, left),
  common 21-keypoint order; ``pose`` (S, T, 2, 16, 3) MANO axis-angle, flat convention; ``transl``
  (S, T, 2, 3) MANO translation (m); ``wrist`` (S, T, 2, 3) m; ``betas`` (2, 10) (mean shape);
  ``hand_valid`` (T, 2) (hands present in the input image; both when no keypoints were given); ``input_kp2d`` (2, 21, 2) px and
  ``input_kp2d_conf`` (2, 21) (the keypoints the model saw, NaN / 0 where none); ``K`` (3, 3);
  ``image_size`` (2,) (W, H); ``image`` (H, W, 3) uint8; ``fps``; ``model`` (the checkpoint used).

Which model: ``--ckpt`` if given; otherwise the shipped tiny checkpoints: the keypoint-conditioned F when
2D keypoints are available (``--keypoints`` file, or the mediapipe detector of the ``detect`` extra), the
image-only F when no hand is found (it still runs, and says so).

The camera: ``--intrinsics K.json`` or ``--fov DEG``, else the default field of view
(:func:`handcast.geometry.resolve_intrinsics`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from handcast.conventions import MIN_HAND_KEYPOINTS, NUM_KEYPOINTS
from handcast.data.images import load_image
from handcast.errors import HandcastError
from handcast.geometry import (
    resolve_intrinsics,  # also importable from here, where it used to live
    sixd_to_aa,
)
from handcast.hand import HandModel
from handcast.io import save_npz
from handcast.models.checkpoint import shipped_checkpoint
from handcast.models.forecast import load_forecast
from handcast.models.motion import keypoints_from_motion
from handcast.render.api import render_prediction

SHIPPED = {"image": "forecast_image_tiny.safetensors", "keypoints": "forecast_keypoints_tiny.safetensors"}


def input_keypoints(image: np.ndarray, keypoints: str | os.PathLike | None, detect: bool) -> tuple[np.ndarray, np.ndarray, str]:
    """(uv (2, 21, 2) px, conf (2, 21), where from) of the input image's hands."""
    if keypoints is not None:
        from handcast.data.keypoints import read_keypoints

        uv, conf = read_keypoints(keypoints)
        return uv, conf, f"keypoints file {keypoints}"
    if detect:
        try:
            from handcast.detect import detect_image

            det = detect_image(image)
            return det.uv, det.confidence, "mediapipe"
        except HandcastError as e:
            if "pip install" not in str(e):
                raise
    return np.full((2, NUM_KEYPOINTS, 2), np.nan, np.float32), np.zeros((2, NUM_KEYPOINTS), np.float32), "none"


def forecast_image(model, image: np.ndarray, K: np.ndarray, uv: np.ndarray, conf: np.ndarray, frames: int = 64,
                   samples: int = 5, sampler: str = "ddim", steps: int = 10, seed: int = 0) -> dict:
    """Sample ``samples`` futures of ``frames`` frames for one image (uint8 (H, W, 3)) with intrinsics K and
    input keypoints (uv (2, 21, 2) px, conf (2, 21)). Returns the npz arrays (module docstring)."""
    h, w = image.shape[:2]
    t = int(frames)
    if not 1 <= t <= 1024:
        raise HandcastError(f"--frames must be in [1, 1024], got {frames}")
    if int(samples) < 1:
        raise HandcastError(f"--samples must be >= 1, got {samples}")
    kp = np.where(conf[..., None] > 0, uv, 0.0).astype(np.float32)
    batch = {
        "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div(255.0)[None],
        "kp2d": torch.from_numpy(kp)[None, None].expand(1, t, 2, 21, 2).contiguous(),
        "kp2d_conf": torch.from_numpy(conf.astype(np.float32))[None, None].expand(1, t, 2, 21).contiguous(),
        "K": torch.from_numpy(np.asarray(K, np.float32))[None],
        "image_size": torch.tensor([[w, h]], dtype=torch.float32),
        "frame_mask": torch.ones(1, t, dtype=torch.bool),
    }
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        rot6d, wrist = model.sample(batch, int(samples), sampler, steps, generator=g)
        hands = HandModel("auto")
        betas = torch.zeros(1, rot6d.shape[1], 2, 10)
        joints = keypoints_from_motion(hands, rot6d, wrist, betas)[0]
        j0 = hands.rest_joints(torch.zeros(2, 10))[:, 0]  # (2, 3)
    present = (conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS
    if not present.any():  # an image-only model without keypoints: both hands are drawn
        present = np.ones(2, bool)
    return dict(joints=joints.numpy().astype(np.float32), pose=sixd_to_aa(rot6d[0]).numpy().astype(np.float32),
                transl=(wrist[0] - j0).numpy().astype(np.float32), wrist=wrist[0].numpy().astype(np.float32),
                betas=np.zeros((2, 10), np.float32), hand_valid=np.repeat(present[None], t, 0),
                input_kp2d=uv.astype(np.float32), input_kp2d_conf=conf.astype(np.float32),
                K=np.asarray(K, np.float32), image_size=np.array([w, h], np.int64), image=image, fps=np.float32(30.0))


def run_forecast(image: str | os.PathLike, out: str | os.PathLike, ckpt: str | os.PathLike | None = None,
                 samples: int = 5, frames: int = 64, keypoints: str | os.PathLike | None = None, detect: bool = True,
                 fov: float | None = None, intrinsics: str | os.PathLike | None = None, sampler: str = "ddim",
                 steps: int = 10, seed: int = 0, video: bool = True, int8: bool = False) -> dict:
    """The ``handcast forecast`` command: writes forecast.png / .mp4 / .npz to ``out``; returns
    {"outputs": [paths], "model": path, "keypoints": source, "hands": number of input hands}."""
    img = load_image(image)
    h, w = img.shape[:2]
    K = resolve_intrinsics((w, h), fov=fov, K=intrinsics)
    uv, conf, source = input_keypoints(img, keypoints, detect)
    present = (conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS
    messages = []
    if ckpt is None:
        kind = "keypoints" if present.any() else "image"
        if kind == "image":
            why = (f"the --keypoints file has no hand with {MIN_HAND_KEYPOINTS} keypoints" if keypoints is not None
                   else "no --keypoints and the detector found none or is not installed")
            messages.append(f"no hands found in the input ({why}): running the image-only model")
        ckpt = shipped_checkpoint(SHIPPED[kind], "handcast train forecast")
    model = load_forecast(ckpt)
    if int8:
        from handcast.models.quantize import int8_cpu

        model = int8_cpu(model)
    if model.config.image is None and not present.any():
        raise HandcastError(f"{ckpt} is a keypoint-conditioned model and no hand was found in {image} "
                            "(pass --keypoints KP.json, or install the detect extra)")
    res = forecast_image(model, img, K, uv, conf, frames, samples, sampler, steps, seed)
    res["model"] = np.asarray(str(ckpt))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    npz = out / "forecast.npz"
    save_npz(npz, **res)
    png, mp4 = out / "forecast.png", out / "forecast.mp4"
    render_prediction(img, K, res["joints"], res["hand_valid"], out_png=png, out_mp4=mp4 if video else None,
                      fps=30.0, title=f"forecast: sample 1 of {res['joints'].shape[0]}")
    outputs = [npz, png] + ([mp4] if video else [])
    return {"outputs": outputs, "model": str(ckpt), "keypoints": source, "hands": int(present.sum()),
            "messages": messages}
