"""Single-hand crops for the pose estimator (issue 5): from the synthetic generator, both hands, all domains.

Every crop is in the **canonical (right-hand) frame**: a left hand's crop is mirrored left-right and its 3D
quantities have x negated, so one network handles both hands (as HaMeR does). Undo with
:func:`mirror_x` for left hands (``flip`` true).

Geometry of one crop (pixels follow docs/conventions.md, pixel centres at integers):

* ``box`` (x0, y0, x1, y1), original-image pixels: the bounding box of the 21 keypoints grown by ``pad``
  about its centre (:func:`hand_box`), then expanded to the 192 : 256 (W : H) input aspect by
  :func:`handcast.data.images.crop_to_input`;
* ``affine`` (2, 3): crop pixel (u, v, 1) -> original pixel, INCLUDING the left-right flip of left hands;
* ``K_crop`` (3, 3): intrinsics of the crop for canonical camera-frame points: for a canonical point X
  (metres, canonical camera frame) the crop pixel is ``K_crop @ X / X_z`` (:func:`crop_intrinsics`).

A crop set on disk is one ``.npz`` per split (``train.npz``, ``test.npz``, written atomically) with N crops:

==============  =====================  ==============================================================
array           shape / dtype          meaning
==============  =====================  ==============================================================
jpeg            (B,) uint8             the N crop images (256 x 192 RGB, canonical), JPEG, concatenated
jpeg_offsets    (N + 1,) int64         byte offsets of each image in ``jpeg``
kp2d            (N, 21, 2) float32     exact projections of the 21 keypoints, crop pixels, common order
kp2d_det        (N, 21, 2) float32     detector-like keypoints (the domain's simulated detector; the
                                       exact ones for "lab"), crop pixels; 0 where conf_det is 0
conf_det        (N, 21) float32        their confidence in [0, 1]
vis             (N, 21) bool           keypoint projects inside the original image
joints          (N, 21, 3) float32     root-relative keypoints (wrist = 0), m, canonical camera frame
vertices        (N, V, 3) float32      root-relative mesh vertices, m, canonical camera frame
pose            (N, 16, 3) float32     right-hand model pose (axis-angle, flat, MANO order) of the
                                       canonical hand, global orientation in the canonical camera frame
betas           (N, 10) float32        shape coefficients
root            (N, 3) float32         wrist position, m, canonical camera frame
K_crop          (N, 3, 3) float32      crop intrinsics (canonical frame), pixels
affine          (N, 2, 3) float64      crop pixel -> original pixel (flip included)
K               (N, 3, 3) float32      intrinsics of the original image
image_size      (N, 2) int32           original (W, H)
flip            (N,) bool              left hand, mirrored into the canonical frame
hand            (N,) int8              0 right, 1 left (conventions.HANDS)
domain          (N,) int8              index into ``domains``
seed            (N, 4) int64           the synthetic clip's seed
domains         (D,) str               domain names
info            () str                 JSON: preset, hand model kind, render size, version
==============  =====================  ==============================================================
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

from handcast.conventions import NUM_KEYPOINTS
from handcast.errors import HandcastError

__all__ = [
    "CROP_SIZE", "CropPreset", "CROP_PRESETS", "CropSet", "build_crops", "canonical_crop", "crop_intrinsics",
    "crop_hand", "get_crop_preset", "hand_box", "mirror_x", "normalise_images", "to_crop_pixels", "uv_to_unit",
    "unit_to_uv",
]

CROP_SIZE: tuple[int, int] = (256, 192)
"""Network input (H, W) in pixels (as :data:`handcast.data.images.INPUT_SIZE`)."""

CROPS_VERSION = 1
BOX_PAD = 1.4  # keypoint bounding box grown by this factor before the aspect expansion
MIN_BOX_PX = 12.0  # hands whose keypoint box is smaller than this (original pixels) are skipped
MIN_IN_VIEW = 12  # hands with fewer keypoints inside the image are skipped


# ------------------------------------------------------------------------------------------ geometry

def mirror_x(points):
    """Mirror points (..., 3) across the camera's x = 0 plane (left <-> canonical right). numpy or torch."""
    return points * points.new_tensor([-1.0, 1.0, 1.0]) if hasattr(points, "new_tensor") else \
        np.asarray(points) * np.array([-1.0, 1.0, 1.0], dtype=np.asarray(points).dtype)


def hand_box(uv, conf=None, pad: float = BOX_PAD) -> np.ndarray:
    """Box (x0, y0, x1, y1) in pixels around a hand's keypoints: their bounding box grown by ``pad`` about
    its centre, with sides at least 8 pixels. uv: (21, 2) pixels; conf: optional (21,), keypoints with
    conf <= 0 or non-finite coordinates are ignored. Raises HandcastError with fewer than 2 usable keypoints."""
    p = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    ok = np.isfinite(p).all(-1)
    if conf is not None:
        ok &= np.asarray(conf, dtype=np.float64).reshape(-1) > 0
    if ok.sum() < 2:
        raise HandcastError(f"a hand needs at least 2 keypoints to place its crop, got {int(ok.sum())}")
    lo, hi = p[ok].min(0), p[ok].max(0)
    c = (lo + hi) / 2
    half = np.maximum((hi - lo) * pad / 2, 4.0)
    return np.concatenate([c - half, c + half])


def _flip_matrix(width: int = CROP_SIZE[1]) -> np.ndarray:
    """(3, 3) map of crop pixels of the mirrored crop -> crop pixels of the unmirrored one (u -> W-1-u)."""
    return np.array([[-1.0, 0.0, width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def canonical_crop(image: np.ndarray, box, flip: bool, scale: float = 1.0):
    """The network input of one hand: ``crop_to_input`` of ``box``, mirrored left-right if ``flip``.

    Returns (tensor (3, 256, 192) float32 ImageNet-normalised, affine (2, 3) float64 mapping canonical crop
    pixels (u, v, 1) -> original pixels, the flip included)."""
    from handcast.data.images import crop_to_input

    tensor, affine = crop_to_input(image, box, CROP_SIZE, scale=scale)
    if flip:
        tensor = tensor.flip(-1).contiguous()
        affine = affine @ _flip_matrix()
    return tensor, affine


def crop_intrinsics(K, affine, flip: bool) -> np.ndarray:
    """Intrinsics (3, 3) of a canonical crop: crop pixel = K_crop @ X / X_z for canonical camera-frame X.

    K: (3, 3) of the original image; affine: (2, 3) crop pixel -> original pixel (flip included);
    flip: the crop is of a left hand (canonical X = original X with x negated)."""
    A = np.vstack([np.asarray(affine, np.float64), [0.0, 0.0, 1.0]])
    F = np.diag([-1.0, 1.0, 1.0]) if flip else np.eye(3)
    Kc = np.linalg.inv(A) @ np.asarray(K, np.float64) @ F
    return Kc / Kc[2, 2]


def to_crop_pixels(uv, affine) -> np.ndarray:
    """Original pixels (..., 2) -> crop pixels (..., 2) through the inverse of ``affine`` (2, 3)."""
    A = np.asarray(affine, np.float64)
    p = np.asarray(uv, np.float64)
    return (p - A[:, 2]) @ np.linalg.inv(A[:, :2]).T


def uv_to_unit(uv):
    """Crop pixels (..., 2) -> [-1, 1] x [-1, 1] (the grid_sample convention with align_corners=False:
    -1 and 1 are the outer edges of the crop). numpy or torch."""
    h, w = CROP_SIZE
    if hasattr(uv, "new_tensor"):
        return (uv + 0.5) / uv.new_tensor([w, h]) * 2 - 1
    return (np.asarray(uv, np.float64) + 0.5) / np.array([w, h]) * 2 - 1


def unit_to_uv(x):
    """Inverse of :func:`uv_to_unit`."""
    h, w = CROP_SIZE
    if hasattr(x, "new_tensor"):
        return (x + 1) / 2 * x.new_tensor([w, h]) - 0.5
    return (np.asarray(x, np.float64) + 1) / 2 * np.array([w, h]) - 0.5


def normalise_images(images_u8):
    """uint8 (N, 256, 192, 3) numpy/torch -> float32 torch (N, 3, 256, 192), ImageNet-normalised."""
    import torch

    from handcast.data.images import IMAGE_MEAN, IMAGE_STD

    x = torch.as_tensor(np.asarray(images_u8) if not isinstance(images_u8, torch.Tensor) else images_u8)
    x = x.permute(0, 3, 1, 2).to(torch.float32) / 255.0
    mean = torch.tensor(IMAGE_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - mean) / std


def crop_hand(image: np.ndarray, uv, conf=None, hand: int = 0, K=None, pad: float = BOX_PAD,
              box=None) -> dict:
    """Everything the estimator needs about one hand of an image, in the canonical frame.

    image: (H, W, 3) uint8; uv: (21, 2) original pixels (NaN / conf 0 = missing); conf: (21,) or None;
    hand: 0 right, 1 left (left hands are mirrored); K: (3, 3) intrinsics of ``image`` (pixels).
    box: optional (x0, y0, x1, y1) to use instead of the keypoints' box.
    Returns dict: input (3, 256, 192) float32 tensor, kp2d (21, 2) crop pixels (0 where missing),
    conf (21,), affine (2, 3), K_crop (3, 3), box (4,), flip (bool)."""
    if hand not in (0, 1):
        raise HandcastError(f"hand must be 0 (right) or 1 (left), got {hand!r}")
    uv = np.asarray(uv, np.float64).reshape(NUM_KEYPOINTS, 2)
    c = np.ones(NUM_KEYPOINTS) if conf is None else np.asarray(conf, np.float64).reshape(NUM_KEYPOINTS)
    c = np.where(np.isfinite(uv).all(-1), np.clip(c, 0.0, 1.0), 0.0)
    if box is None:
        box = hand_box(uv, c, pad)
    flip = hand == 1
    tensor, affine = canonical_crop(image, box, flip)
    kp = to_crop_pixels(np.where(c[:, None] > 0, uv, 0.0), affine)
    kp = np.where(c[:, None] > 0, kp, 0.0)
    return {"input": tensor, "kp2d": kp.astype(np.float32), "conf": c.astype(np.float32), "affine": affine,
            "K_crop": crop_intrinsics(K, affine, flip).astype(np.float32) if K is not None else None,
            "box": np.asarray(box, np.float64), "flip": flip}


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

    from handcast.data.images import input_to_image
    from handcast.hand import mirror_pose
    from handcast.synth.camera import project_np

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
        inside = (z[hand] > 0.02) & (uv[hand, :, 0] >= -0.5) & (uv[hand, :, 0] <= w - 0.5) \
            & (uv[hand, :, 1] >= -0.5) & (uv[hand, :, 1] <= h - 0.5)
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

    from handcast.hand import HandModel
    from handcast.io import atomic_dir
    from handcast.synth import generate_clip
    from handcast.synth.generate import torch_single_thread

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
            from handcast.io import save_npz

            save_npz(tmp / f"{split}.npz", **arrays)
    if progress:
        print(f"built crop set '{p.name}' in {time.perf_counter() - t0:.1f} s: {out}")
    return out


# ------------------------------------------------------------------------------------------ reading

class CropSet:
    """One split of a crop set, in memory (images decoded on first use and cached).

    ``arrays`` holds every per-crop array of the module table (except the JPEG bytes); ``len(crops)`` is N.
    """

    REQUIRED = ("jpeg", "jpeg_offsets", "kp2d", "kp2d_det", "conf_det", "vis", "joints", "vertices", "pose",
                "betas", "root", "K_crop", "affine", "K", "image_size", "flip", "hand", "domain", "domains", "info")

    def __init__(self, path: str | os.PathLike, split: str = "train"):
        from handcast.io import load_npz

        folder = Path(path)
        f = folder / f"{split}.npz"
        if not folder.is_dir():
            raise HandcastError(f"crop set not found: {folder} (build it with handcast.data.crops.build_crops)")
        if not f.is_file():
            raise HandcastError(f"crop set {folder} has no split '{split}' ({f.name} missing)")
        data = load_npz(f, required=self.REQUIRED)
        self.path, self.split = folder, split
        self._jpeg = data.pop("jpeg")
        self._offsets = data.pop("jpeg_offsets")
        self.domains: tuple[str, ...] = tuple(str(d) for d in data.pop("domains"))
        self.info: dict = json.loads(str(data.pop("info")))
        self.arrays: dict[str, np.ndarray] = data
        self._images: np.ndarray | None = None
        n = len(self._offsets) - 1
        if any(len(v) != n for v in data.values()):
            raise HandcastError(f"{f}: arrays disagree on the number of crops")

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def hand_model(self) -> str:
        return str(self.info.get("hand_model", "open"))

    def image(self, i: int) -> np.ndarray:
        """Crop ``i`` as uint8 (256, 192, 3) RGB (canonical)."""
        from PIL import Image

        a, b = int(self._offsets[i]), int(self._offsets[i + 1])
        with Image.open(_io.BytesIO(self._jpeg[a:b].tobytes())) as im:
            return np.asarray(im.convert("RGB"))

    def images(self, idx=None) -> np.ndarray:
        """uint8 (n, 256, 192, 3) of the crops ``idx`` (all if None); decodes and caches every image once."""
        if self._images is None:
            self._images = np.stack([self.image(i) for i in range(len(self))])
        return self._images if idx is None else self._images[np.asarray(idx)]

    def subset(self, idx) -> dict[str, np.ndarray]:
        """Per-crop arrays of crops ``idx``."""
        idx = np.asarray(idx)
        return {k: v[idx] for k, v in self.arrays.items()}
