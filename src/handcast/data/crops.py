"""Single-hand crops for the pose estimator: their geometry, the crop-set format, reading and batching.

Crop sets are built from the synthetic generator by :func:`handcast.synth.crops.build_crops`.

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
from pathlib import Path

import numpy as np
import torch

from handcast.conventions import NUM_KEYPOINTS
from handcast.data.images import IMAGE_MEAN, IMAGE_STD, crop_to_input
from handcast.errors import HandcastError
from handcast.geometry import aa_to_rotmat
from handcast.io import load_npz

__all__ = [
    "CAMERA_AUG_DEFAULTS", "CROP_SIZE", "CropBatches", "CropSet", "camera_views", "canonical_crop", "crop_intrinsics",
    "crop_hand", "hand_box", "mirror_x", "normalise_images", "to_crop_pixels", "uv_to_unit", "unit_to_uv",
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


# ------------------------------------------------------------------------------------------ reading

class CropSet:
    """One split of a crop set, in memory (images decoded on first use and cached).

    ``arrays`` holds every per-crop array of the module table (except the JPEG bytes); ``len(crops)`` is N.
    """

    REQUIRED = ("jpeg", "jpeg_offsets", "kp2d", "kp2d_det", "conf_det", "vis", "joints", "vertices", "pose",
                "betas", "root", "K_crop", "affine", "K", "image_size", "flip", "hand", "domain", "domains", "info")

    #: the 3D labels and cameras, which must be finite and within MAX_LABEL (m, px) in every crop; the detector's
    #: keypoints (kp2d_det, conf_det) may hold NaN where it found nothing
    LABELS = ("kp2d", "joints", "vertices", "pose", "betas", "root", "K_crop", "affine", "K")
    MAX_LABEL = 1e6

    def __init__(self, path: str | os.PathLike, split: str = "train"):
        folder = Path(path)
        f = folder / f"{split}.npz"
        if not folder.is_dir():
            raise HandcastError(f"crop set not found: {folder} (build it with handcast.synth.crops.build_crops)")
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
        for name in self.LABELS:
            a = np.asarray(data[name])
            if a.dtype.kind not in "fiu":
                raise HandcastError(f"{f}: '{name}' is not a numeric array (dtype {a.dtype})")
            bad = ~(np.isfinite(a) & (np.abs(a) <= self.MAX_LABEL)).reshape(n, -1).all(1) if n else np.zeros(0, bool)
            if bad.any():
                raise HandcastError(f"{f}: '{name}' of crop {int(np.flatnonzero(bad)[0])} holds NaN, infinite or values "
                                    f"beyond {self.MAX_LABEL:g}: the crop set is damaged")

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


class CropBatches:
    """Training/evaluation batches from a :class:`~handcast.data.crops.CropSet` (kept in memory)."""

    def __init__(self, crops, data_cfg: dict | None = None, device: str | torch.device = "cpu"):
        self.crops = crops
        self.cfg = dict(data_cfg or {})
        self.device = torch.device(device)
        a = crops.arrays
        self.n = len(crops)
        self.kp2d = a["kp2d"].astype(np.float32)
        self.kp2d_det = a["kp2d_det"].astype(np.float32)
        self.conf_det = a["conf_det"].astype(np.float32)
        self.vis = a["vis"].astype(np.float32)
        diff = np.abs(self.kp2d_det - self.kp2d).max(-1)
        self.has_detector = ((diff > 1e-2) & (self.conf_det > 0)).any(-1) | ((self.conf_det == 0) & (self.vis > 0)).any(-1)
        self._t = {k: torch.as_tensor(a[k].astype(np.float32), device=self.device)
                   for k in ("joints", "vertices", "K_crop", "betas", "pose", "root")}

    def tensor(self, name: str, idx) -> torch.Tensor:
        return self._t[name][torch.as_tensor(np.asarray(idx), device=self.device)]

    def images(self, idx, rng: np.random.Generator | None = None) -> torch.Tensor:
        """(B, 3, 256, 192) normalised crops; with ``rng`` a per-channel gain/offset colour jitter."""
        x = normalise_images(self.crops.images(np.asarray(idx))).to(self.device)
        cj = float(self.cfg.get("color_jitter", 0.0))
        if rng is not None and cj > 0:
            b = x.shape[0]
            gain = torch.as_tensor(rng.uniform(1 - cj, 1 + cj, (b, 3, 1, 1)), dtype=x.dtype, device=x.device)
            off = torch.as_tensor(rng.uniform(-cj, cj, (b, 3, 1, 1)), dtype=x.dtype, device=x.device)
            x = x * gain + off
        return x

    def keypoints(self, idx, rng: np.random.Generator | None = None, source: str = "det") -> tuple[torch.Tensor, torch.Tensor]:
        """(kp2d (B, 21, 2) crop px, conf (B, 21)).

        With ``rng`` (training): the simulated detector's keypoints with probability ``p_use_detector`` where
        the domain has a detector, else the exact projections with Gaussian jitter (std ~ U(0, kp_noise_px))
        and random drops (``p_drop_kp``); keypoints outside the original image are missing. Without ``rng``:
        ``source`` "det" (the detector's) or "gt" (exact projections of the keypoints inside the image)."""
        idx = np.asarray(idx)
        if rng is None:
            if source == "det":
                kp, c = self.kp2d_det[idx], self.conf_det[idx]
            elif source == "gt":
                kp, c = self.kp2d[idx], self.vis[idx]
            else:
                raise HandcastError(f"keypoint source must be 'det' or 'gt', got {source!r}")
        else:
            b = len(idx)
            sigma = rng.uniform(0, float(self.cfg.get("kp_noise_px", 0.0)), (b, 1, 1))
            kp = self.kp2d[idx] + rng.standard_normal((b, 21, 2)) * sigma
            c = self.vis[idx] * (rng.random((b, 21)) >= float(self.cfg.get("p_drop_kp", 0.0)))
            use_det = self.has_detector[idx] & (rng.random(b) < float(self.cfg.get("p_use_detector", 0.0)))
            kp = np.where(use_det[:, None, None], self.kp2d_det[idx], kp)
            c = np.where(use_det[:, None], self.conf_det[idx], c)
        kp = np.where(c[..., None] > 0, kp, 0.0)
        return (torch.as_tensor(kp, dtype=torch.float32, device=self.device),
                torch.as_tensor(c, dtype=torch.float32, device=self.device))


# ------------------------------------------------------------------------------------------ camera augmentation

CAMERA_AUG_DEFAULTS: dict = {
    "p": 0.0,  # probability that a training crop is re-viewed by a random camera (0: off, today's behaviour)
    "rot3d_deg": 180.0,  # the hand turns about its root by up to this angle about a random axis (180: any viewpoint)
    "inplane_deg": 180.0,  # then about the viewing ray through its root by up to this angle (in-plane rotation)
    "fov_deg": [20.0, 100.0],  # horizontal field of view of the new camera, uniform in this range
    "image_size": [640, 480],  # (W, H) of the new camera's image; the root projects anywhere inside it
    "depth_m": [0.2, 1.5],  # wrist depth (m), log-uniform in this range (the perspective's strength)
}


def _rotation(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Unit axes (B, 3), angles (B,) radians -> rotation matrices (B, 3, 3)."""
    return aa_to_rotmat(np.asarray(axis, np.float64) * np.asarray(angle, np.float64)[:, None])


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def camera_views(joints, rng: np.random.Generator, cfg: dict | None = None) -> dict[str, np.ndarray]:
    """The hands ``joints`` (B, 21, 3) (root-relative, m, canonical camera frame) seen by random cameras of
    real photos: each hand is turned about its root (``rot3d_deg``, then ``inplane_deg`` about the viewing ray
    through the root), placed so that its root projects anywhere in the image of a camera with a random
    horizontal field of view (``fov_deg``) at a depth ``depth_m``, and cropped as
    :func:`crop_hand` crops the keypoints' box (centre and size jittered as the training crops are).
    cfg: keys of :data:`CAMERA_AUG_DEFAULTS` (missing ones take the defaults).

    Returns dict joints (B, 21, 3) the turned root-relative keypoints (m, the new crops' canonical camera
    frame), kp2d (B, 21, 2) their exact projections in the new crops (crop px: ``K_crop @ X / X_z`` with X the
    joints plus ``root``), K_crop (B, 3, 3), root (B, 3) m."""
    c = dict(CAMERA_AUG_DEFAULTS, **(cfg or {}))
    j = np.asarray(joints, np.float64)
    b = len(j)
    w, h = (float(x) for x in c["image_size"])
    # the turn about the root
    ang = np.radians(float(c["rot3d_deg"])) * rng.random(b)
    R = _rotation(_unit(rng.standard_normal((b, 3))), ang)
    # the camera and where the root lands in its image
    fov = np.radians(rng.uniform(*(float(x) for x in c["fov_deg"]), b))
    f = (w / 2) / np.tan(fov / 2)
    lo, hi = (float(x) for x in c["depth_m"])
    depth = np.exp(rng.uniform(np.log(lo), np.log(hi), b))
    uv_root = rng.random((b, 2)) * np.array([w, h]) - 0.5
    ray = np.stack([(uv_root[:, 0] - (w - 1) / 2) / f, (uv_root[:, 1] - (h - 1) / 2) / f, np.ones(b)], -1)
    # in-plane turn: about the viewing ray through the root
    R = _rotation(_unit(ray), np.radians(float(c["inplane_deg"])) * rng.uniform(-1, 1, b)) @ R
    jr = j @ np.swapaxes(R, 1, 2)
    reach = np.linalg.norm(jr, axis=-1).max(-1)
    depth = np.maximum(depth, reach * 1.5 + 0.02)  # every keypoint well in front of the camera
    root = ray * depth[:, None]
    K = np.zeros((b, 3, 3))
    K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = f, f, (w - 1) / 2, (h - 1) / 2, 1.0
    X = jr + root[:, None]
    p = X @ np.swapaxes(K, 1, 2)
    uv = p[..., :2] / p[..., 2:]
    # the crop of crop_hand: keypoint box grown by BOX_PAD, jittered, then expanded to the input aspect
    lo2, hi2 = uv.min(1), uv.max(1)
    centre, half = (lo2 + hi2) / 2, np.maximum((hi2 - lo2) * BOX_PAD / 2, 4.0)
    centre = centre + rng.uniform(-0.06, 0.06, (b, 2)) * 2 * half
    half = half * rng.uniform(0.9, 1.15, (b, 1))
    ch, cw = CROP_SIZE
    half = np.maximum(half, np.stack([half[:, 1] * cw / ch, half[:, 0] * ch / cw], -1))  # aspect W : H
    x0 = centre - half
    s = 2 * half[:, 0] / cw  # original pixels per crop pixel
    A = np.zeros((b, 3, 3))
    A[:, 0, 0], A[:, 1, 1], A[:, 2, 2] = s, s, 1.0
    A[:, :2, 2] = x0 + 0.5 * s[:, None]
    Kc = np.linalg.inv(A) @ K
    Kc = Kc / Kc[:, 2:, 2:]
    pc = X @ np.swapaxes(Kc, 1, 2)
    return {"joints": jr.astype(np.float32), "kp2d": (pc[..., :2] / pc[..., 2:]).astype(np.float32),
            "K_crop": Kc.astype(np.float32), "root": root.astype(np.float32)}
