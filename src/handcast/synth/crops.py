"""Building pose-estimator crop sets from the synthetic generator (the format: :mod:`handcast.data.crops`).

Every hand of frame 0 of a rendered synthetic clip, from every domain, becomes one crop in the canonical
(right-hand) frame.
"""

from __future__ import annotations

import io as _io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from handcast.data.crops import (
    CROP_SIZE,
    CROPS_VERSION,
    MIN_BOX_PX,
    MIN_IN_VIEW,
    canonical_crop,
    crop_intrinsics,
    hand_box,
    to_crop_pixels,
)
from handcast.data.images import input_to_image
from handcast.errors import HandcastError
from handcast.geometry import in_image
from handcast.hand import HandModel, mirror_pose
from handcast.io import atomic_dir, save_npz
from handcast.synth import generate_clip
from handcast.synth.camera import project_np
from handcast.synth.generate import torch_single_thread

# ------------------------------------------------------------------------------------------ presets

@dataclass(frozen=True)
class CropPreset:
    """How many synthetic clips per domain and split, and the render size of their first frame."""

    name: str
    train_clips: int  # per domain
    test_clips: int  # per domain
    render_size: int = 512
    domains: tuple[str, ...] = ("lab", "diverse", "wild")
    jitter_train: bool = True


CROP_PRESETS: dict[str, CropPreset] = {
    "smoke": CropPreset("smoke", train_clips=2, test_clips=1, render_size=384),
    "tiny": CropPreset("tiny", train_clips=75, test_clips=25),
    "small": CropPreset("small", train_clips=600, test_clips=100),
    "paper": CropPreset("paper", train_clips=20000, test_clips=500, render_size=768),
}


def get_crop_preset(name: str | CropPreset) -> CropPreset:
    if isinstance(name, CropPreset):
        return name
    if name not in CROP_PRESETS:
        raise HandcastError(f"unknown crop preset {name!r}; choose from {', '.join(CROP_PRESETS)}")
    return CROP_PRESETS[name]


# ------------------------------------------------------------------------------------------ building

def _clip_crops(clip, hands_model, rng: np.random.Generator, jitter: bool) -> list[dict]:
    """The crops of frame 0 of a rendered synthetic clip (0, 1 or 2 hands)."""
    import torch


    w, h = clip.image_size
    K = clip.K.astype(np.float64)
    joints = clip.joints3d[0].astype(np.float64)  # (2, 21, 3) frame-0 camera
    uv, z = project_np(joints, K)
    with torch.no_grad():
        out = hands_model(torch.as_tensor(clip.pose[:1]), torch.as_tensor(clip.betas[None]),
                          torch.as_tensor(clip.transl[:1]))
    verts = out.vertices[0].numpy().astype(np.float64)  # (2, V, 3)
    crops = []
    for hand in (0, 1):
        if not clip.valid[0, hand]:
            continue
        inside = (z[hand] > 0.02) & in_image(uv[hand], (w, h))
        if inside.sum() < MIN_IN_VIEW or (z[hand] <= 0.02).any():
            continue
        lo, hi = uv[hand].min(0), uv[hand].max(0)
        if (hi - lo).max() < MIN_BOX_PX:
            continue
        box = hand_box(uv[hand])
        if jitter:
            c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2
            size = float(half.max())
            c = c + rng.uniform(-0.06, 0.06, 2) * 2 * size
            half = half * rng.uniform(0.9, 1.15)
            box = np.concatenate([c - half, c + half])
        flip = hand == 1
        tensor, affine = canonical_crop(clip.image, box, flip)
        Kc = crop_intrinsics(K, affine, flip)
        F = np.array([-1.0, 1.0, 1.0]) if flip else np.ones(3)
        root = joints[hand, 0] * F
        jrel = (joints[hand] - joints[hand, :1]) * F
        vrel = (verts[hand] - joints[hand, :1]) * F
        pose = clip.pose[0, hand].astype(np.float64)
        if flip:
            pose = mirror_pose(pose)
        kp_det = clip.kp2d[0, hand].astype(np.float64)
        conf_det = clip.kp2d_conf[0, hand].astype(np.float64)
        kp_det_c = np.where(conf_det[:, None] > 0, to_crop_pixels(kp_det, affine), 0.0)
        crops.append({
            "image": input_to_image(tensor),
            "kp2d": to_crop_pixels(uv[hand], affine),
            "kp2d_det": kp_det_c,
            "conf_det": conf_det,
            "vis": inside,
            "joints": jrel,
            "vertices": vrel,
            "pose": pose,
            "betas": clip.betas[hand].astype(np.float64),
            "root": root,
            "K_crop": Kc,
            "affine": affine,
            "K": K,
            "image_size": np.array([w, h]),
            "flip": flip,
            "hand": hand,
        })
    return crops


_FLOAT32 = ("kp2d", "kp2d_det", "conf_det", "joints", "vertices", "pose", "betas", "root", "K_crop", "K")


def _encode_jpeg(image: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _pack(crops: list[dict], seeds: list[tuple], domains_idx: list[int], domains: Sequence[str], info: dict) -> dict:
    if not crops:
        raise HandcastError("no hand crops were produced (every hand was out of view or too small)")
    jpegs = [np.frombuffer(_encode_jpeg(c["image"]), np.uint8) for c in crops]
    offsets = np.zeros(len(jpegs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(j) for j in jpegs])
    arrays = {"jpeg": np.concatenate(jpegs), "jpeg_offsets": offsets}
    for k in _FLOAT32:
        arrays[k] = np.stack([c[k] for c in crops]).astype(np.float32)
    arrays["vis"] = np.stack([c["vis"] for c in crops]).astype(bool)
    arrays["affine"] = np.stack([c["affine"] for c in crops]).astype(np.float64)
    arrays["image_size"] = np.stack([c["image_size"] for c in crops]).astype(np.int32)
    arrays["flip"] = np.array([c["flip"] for c in crops], bool)
    arrays["hand"] = np.array([c["hand"] for c in crops], np.int8)
    arrays["domain"] = np.array(domains_idx, np.int8)
    arrays["seed"] = np.array(seeds, np.int64)
    arrays["domains"] = np.array(list(domains), dtype=str)
    arrays["info"] = np.array(json.dumps(info, sort_keys=True))
    return arrays


def build_crops(out: str | os.PathLike, preset: str | CropPreset = "tiny", seed: int = 0, hand_model: str = "open",
                overwrite: bool = False, progress: bool = True) -> Path:
    """Render synthetic clips and write the crop set ``out`` (folder with ``train.npz`` and ``test.npz``).

    Clip ``i`` of domain ``d`` (index in the preset's domains) and split ``s`` (0 train, 1 test) has the
    synthetic seed ``(seed, d, s, i)``, so train and test never share a scene. Training boxes are jittered
    (centre +-6 % of the box, size x0.9..1.15, drawn from that seed); test boxes are not.
    hand_model: "open", "mano" or "auto" (resolved once; stored in ``info``).
    The folder is written atomically (nothing is left behind if building fails)."""
    import torch


    p = get_crop_preset(preset)
    hm = HandModel(hand_model)
    out = Path(out)
    t0 = time.perf_counter()
    info = {"preset": p.name, "seed": int(seed), "hand_model": hm.kind, "render_size": p.render_size,
            "version": CROPS_VERSION, "crop_size": list(CROP_SIZE), "num_vertices": hm.num_vertices,
            "preset_spec": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(p).items()}}
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for s, (split, n) in enumerate((("train", p.train_clips), ("test", p.test_clips))):
            crops, seeds, dom_idx = [], [], []
            jobs = [(d, i) for i in range(n) for d in range(len(p.domains))]
            it = jobs
            if progress:
                from tqdm.auto import tqdm

                it = tqdm(jobs, desc=f"crops {split}", leave=False)
            with torch_single_thread(), torch.no_grad():
                for d, i in it:
                    sd = (int(seed), d, s, i)
                    clip = generate_clip(sd, p.domains[d], n_frames=2, image_size=(p.render_size, p.render_size),
                                         hand_model=hm.kind)
                    rng = np.random.default_rng(list(sd) + [7])
                    for c in _clip_crops(clip, hm, rng, jitter=(s == 0 and p.jitter_train)):
                        crops.append(c)
                        seeds.append(sd)
                        dom_idx.append(d)
            arrays = _pack(crops, seeds, dom_idx, p.domains, dict(info, split=split))

            save_npz(tmp / f"{split}.npz", **arrays)
    if progress:
        print(f"built crop set '{p.name}' in {time.perf_counter() - t0:.1f} s: {out}")
    return out
