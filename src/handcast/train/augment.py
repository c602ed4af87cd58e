"""Training-time augmentation for the lifting model: re-render 3D clips to 2D under new cameras.

Applied to one :class:`handcast.data.ClipDataset` item (torch tensors, CPU). Starting from a clip with 3D
labels (joints in the frame-0 camera, MANO pose, camera trajectory), it

-1. with probability ``p_mirror``, mirrors the clip left to right (:func:`mirror_clip`): the right hand becomes a
   left hand and the left a right one, so that L sees each hand doing what the other does in the data (the lab
   clips' two hands do different things, and without it L lifts a left hand far worse than the same hand
   mirrored: results/lift_views.md section 8),
0. with probability ``p_articulation`` per hand, moves the fingers towards free-hand gestures
   (:func:`handcast.synth.grasps.random_gesture`: spread and open hands, the thumb out to the side, pointing,
   counting, fists), blending the clip's own finger motion with one gesture or a smooth change between two,
   within the joint limits, and recomputes the joints by forward kinematics (wrist and global orientation
   kept); the lab clips hold grasps only, and a user's hand in a photo or video is often doing none,
1. moves the scene relative to the frame-0 camera by a random rigid transform (rotation up to
   ``rot_deg`` about the hands' centroid, translation noise), re-expressing joints and global orientations,
2. adds a smooth random rotation to the camera trajectory (identity at frame 0),
3. scales the focal length,
4. projects the joints to 2D, marks keypoints outside the image or behind the camera as missing,
5. adds detector-like noise: per-clip jitter (a fraction of each hand's 2D size), dropped keypoints and
   dropped frames; with ``convention_noise`` > 0, each keypoint is first moved by a per-clip offset in the hand's
   own frame (along the wrist -> middle MCP axis and across the palm; std ``convention_noise`` palm lengths for
   the wrist, thumb CMC and finger MCPs, half that for the others). Detectors and datasets place the wrist,
   the thumb's base and the knuckles differently from the hand model (on the shared real video the refined fit
   leaves mediapipe's wrist and thumb CMC about 14 and 18 px from the model's, the other keypoints 2-8 px:
   ``scripts/bench_lift_video.py``); the 3D labels keep the model's keypoints.

With probability ``p_new_camera`` steps 1 and 3 instead draw a new camera like those of real photos and
videos: an image of width ``image_width`` (px, log-uniform) and a common aspect ratio, a horizontal field
of view in ``hfov_deg``, the scene turned by up to ``view_deg`` about the hands' centroid (180: any
viewpoint, third-person or egocentric; ``view_sampling`` "uniform": every viewpoint equally likely), placed so that the largest hand spans ``hand_px`` pixels
(log-uniform) with its centroid anywhere in the image (with probability ``p_truncate`` near or over its
border, so hands are cut off), and with probability ``p_static`` a still camera (tripod, phone on a desk).

The item keeps the frame-0 convention: 3D stays in the (new) frame-0 camera and ``world_to_cam[0]`` is
the identity. Randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so an item is
reproducible.
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

from handcast.conventions import MIN_HAND_KEYPOINTS
from handcast.errors import HandcastError
from handcast.geometry import aa_to_rotmat, project, rotmat_to_aa, transform_points


@dataclass
class LiftAugmentConfig:
    rot_deg: float = 30.0  # max rotation of the scene about the hands' centroid
    trans_std: float = 0.05  # m, translation noise of the scene
    traj_rot_deg: float = 10.0  # max extra camera rotation reached at the end of the clip
    focal_scale: tuple[float, float] = (0.75, 1.33)
    jitter: float = 0.02  # max per-clip 2D noise std as a fraction of the hand's 2D size
    drop_keypoint: float = 0.05
    drop_frame: float = 0.05
    image_margin: float = 0.1  # keypoints further outside the image than this fraction are missing
    # cameras of real photos and videos (0 = never; the synthetic store's own camera, jittered as above)
    p_new_camera: float = 0.0
    hfov_deg: tuple[float, float] = (20.0, 100.0)  # horizontal field of view, degrees
    hand_px: tuple[float, float] = (40.0, 600.0)  # 2D size of the largest hand (diagonal of its box), px
    image_width: tuple[float, float] = (480.0, 1920.0)  # px
    view_deg: float = 180.0  # max rotation of the scene about the hands' centroid
    p_truncate: float = 0.15  # the hands' centroid near or beyond the image border
    p_static: float = 0.5  # a still camera: the trajectory becomes the identity
    # how the new camera's scene turn is drawn: "axis_angle" (a uniform axis and an angle uniform in
    # +-view_deg: small turns, views near the store's own camera, are over-represented) or "uniform" (uniform
    # over all rotations, the Haar measure, when view_deg >= 180; every viewpoint, palm or back, equally likely)
    view_sampling: str = "axis_angle"
    # free-hand articulation (step 0): the probability per hand (0 = never; needs the item's betas)
    p_articulation: float = 0.0
    # keypoint-convention offsets of the 2D input (step 5), std in palm lengths (0 = none)
    convention_noise: float = 0.0
    # the clip mirrored left to right, hands swapped (step -1): the probability per clip (0 = never)
    p_mirror: float = 0.0

    def __post_init__(self):
        if self.view_sampling not in ("axis_angle", "uniform"):
            raise HandcastError(f"data.augment.view_sampling must be axis_angle or uniform, got '{self.view_sampling}'")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LiftAugmentConfig":
        """From a config's ``data.augment`` section (lists become tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def _uniform_rotation(rng: np.random.Generator) -> np.ndarray:
    """Axis-angle (3,) of a rotation drawn uniformly over SO(3) (a normalised Gaussian quaternion)."""
    q = rng.normal(size=4)
    q /= np.linalg.norm(q) + 1e-12
    if q[0] < 0:
        q = -q
    s = np.linalg.norm(q[1:])
    return q[1:] / max(s, 1e-12) * 2.0 * np.arctan2(s, q[0])


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) + 1e-12
    angle = np.radians(max_deg) * rng.uniform(-1.0, 1.0)
    return axis * angle


def convention_shift(joints: torch.Tensor, rng: np.random.Generator, noise: float) -> torch.Tensor:
    """Keypoints (T, 2, 21, 3) (m, any frame; common order) moved as another keypoint convention would place
    them: one offset per hand and keypoint for the whole clip, in the hand's own frame (along the wrist -> middle
    MCP axis and across the palm), normal with std ``noise`` palm lengths for the wrist, thumb CMC and finger
    MCPs and half that for the others. ``noise`` <= 0 returns ``joints`` unchanged (no draw)."""
    if noise <= 0:
        return joints
    f = joints[..., 9, :] - joints[..., 0, :]  # (T, 2, 3) wrist -> middle MCP
    palm = f.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    f = f / palm
    s = joints[..., 5, :] - joints[..., 17, :]  # across the palm, pinky -> index
    s = s - f * (s * f).sum(-1, keepdim=True)
    s = s / s.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    sigma = np.full(21, 0.5 * noise)
    sigma[[0, 1, 5, 9, 13, 17]] = noise
    ab = torch.from_numpy(rng.normal(size=(2, 21, 2)) * sigma[None, :, None]).to(joints.dtype)  # (hand, kp, 2)
    off = ab[None, :, :, :1] * f[:, :, None] + ab[None, :, :, 1:] * s[:, :, None]  # (T, 2, 21, 3) palm lengths
    return joints + off * palm[..., None, :]


_MIRROR = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=torch.float64))


def mirror_clip(item: dict) -> dict:
    """The clip seen in a mirror: every 3D point's x negated in the frame-0 camera (the plane x = 0 is the mirror),
    the hands swapped, so that what the right hand did a left hand now does and the other way round.

    Changes ``joints3d`` (T, 2, 21, 3), ``pose`` (T, 2, 16, 3) (:func:`handcast.hand.mirror_pose`: the mirrored
    right hand's pose is a left hand's pose of the same shape, the hand model being mirror-symmetric), ``betas``
    (2, 10), ``hand_valid`` (T, 2), ``world_to_cam`` (T, 4, 4) (M A M with M = diag(-1, 1, 1, 1)) and, where
    present, ``kp2d`` (T, 2, 21, 2) px (u -> 2 cx - u with the item's own K: what the mirrored scene projects to)
    and ``kp2d_conf``; drops ``transl`` (MANO's translation depends on J0(betas) of each hand). Everything else
    is kept. Applying it twice gives the clip back."""
    from handcast.hand import mirror_pose

    out = dict(item)
    swap = [1, 0]
    out["joints3d"] = (item["joints3d"] * torch.tensor([-1.0, 1.0, 1.0], dtype=item["joints3d"].dtype))[:, swap]
    out["pose"] = mirror_pose(item["pose"])[:, swap]
    out["hand_valid"] = item["hand_valid"][:, swap]
    if "betas" in item:
        out["betas"] = item["betas"][..., swap, :]
    if "world_to_cam" in item:
        M = _MIRROR.to(item["world_to_cam"].dtype)
        out["world_to_cam"] = M @ item["world_to_cam"] @ M
    if "kp2d" in item:
        uv = item["kp2d"][:, swap].clone()
        conf = item["kp2d_conf"][:, swap] if "kp2d_conf" in item else None
        uv[..., 0] = 2.0 * item["K"][0, 2].to(uv.dtype) - uv[..., 0]
        if conf is not None:
            out["kp2d_conf"] = conf
            uv = torch.where(conf[..., None] > 0, uv, torch.zeros_like(uv))
        out["kp2d"] = uv
    out.pop("transl", None)
    return out


class LiftAugment:
    """Callable item transform; ``set_epoch`` changes the draws between epochs."""

    def __init__(self, config: LiftAugmentConfig = LiftAugmentConfig(), seed: int = 0, hands=None):
        """hands: the :class:`handcast.hand.HandModel` of the data (for ``p_articulation``; default: created on
        first use with ``HandModel("auto")``)."""
        self.config = config
        self.seed = seed
        self.epoch = 0
        self.hands = hands

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, item: dict) -> dict:
        c = self.config
        rng = np.random.default_rng([self.seed, self.epoch, int(item["index"]), int(item.get("crop_start", 0))])
        # -1. the clip in a mirror (no draw when off: the other draws stay those of runs made before it)
        if c.p_mirror > 0 and rng.uniform() < c.p_mirror:
            item = mirror_clip(item)
        joints = item["joints3d"].double()  # (T, 2, 21, 3)
        pose = item["pose"].double()  # (T, 2, 16, 3)
        hand_valid = item["hand_valid"]  # (T, 2)
        T = joints.shape[0]

        # 0. free-hand articulation
        if c.p_articulation > 0:
            joints, pose = self._articulate(rng, joints, pose, item["betas"], int(item.get("num_frames", T)))

        # 1. rigid move of the scene in the frame-0 camera, about the frame-0 hands' centroid
        v0 = hand_valid[0]
        pts0 = joints[0][v0] if v0.any() else joints[hand_valid.any(-1)][:1]
        centre = pts0.reshape(-1, 3).mean(0) if pts0.numel() else torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
        new_camera = c.p_new_camera > 0 and rng.uniform() < c.p_new_camera
        if new_camera:
            R, t, K, image_size, static = self._new_camera(rng, joints[0], hand_valid[0], centre)
        else:
            R = aa_to_rotmat(torch.from_numpy(_random_rotation(rng, c.rot_deg)))
            t = centre - R @ centre + torch.from_numpy(rng.normal(scale=c.trans_std, size=3))
        A = torch.eye(4, dtype=torch.float64)
        A[:3, :3], A[:3, 3] = R, t
        joints = transform_points(A, joints)
        glob = aa_to_rotmat(pose[:, :, 0])  # (T, 2, 3, 3)
        pose = pose.clone()
        pose[:, :, 0] = rotmat_to_aa(R @ glob)
        # keep the scene in front of the camera
        z_min = joints[..., 2][hand_valid].min() if hand_valid.any() else torch.tensor(1.0)
        if z_min < 0.15:
            joints[..., 2] += 0.15 - z_min

        # 2. camera trajectory: old trajectory conjugated into the moved scene, plus a smooth extra rotation
        w2c = item["world_to_cam"].double()
        A_inv = torch.linalg.inv(A)
        w2c = A @ w2c @ A_inv  # same relative camera motion, seen from the moved frame-0 camera
        extra = torch.from_numpy(_random_rotation(rng, c.traj_rot_deg))
        ramp = torch.linspace(0.0, 1.0, T, dtype=torch.float64)[:, None] * extra
        E = torch.eye(4, dtype=torch.float64).repeat(T, 1, 1)
        E[:, :3, :3] = aa_to_rotmat(ramp)
        w2c = E @ w2c
        if new_camera and static:
            w2c = torch.eye(4, dtype=torch.float64).repeat(T, 1, 1)

        # 3. focal length
        if not new_camera:
            K = item["K"].double().clone()
            s = float(np.exp(rng.uniform(np.log(c.focal_scale[0]), np.log(c.focal_scale[1]))))
            K[0, 0] *= s
            K[1, 1] *= s
            image_size = item["image_size"]

        # 4. projection and visibility (of the keypoints as a detector places them, step 5)
        cam = transform_points(w2c[:, None, None], convention_shift(joints, rng, c.convention_noise))  # (T, 2, 21, 3)
        uv = project(cam, K, behind="clamp")
        w, h = [float(x) for x in image_size]
        m = c.image_margin
        inside = (cam[..., 2] > 0.05) & (uv[..., 0] > -m * w) & (uv[..., 0] < (1 + m) * w) \
            & (uv[..., 1] > -m * h) & (uv[..., 1] < (1 + m) * h)
        conf = (inside & hand_valid[..., None]).double()

        # 5. detector-like noise
        extent = (uv.amax(-2) - uv.amin(-2)).norm(dim=-1).clamp_min(1.0)  # (T, 2) hand size in px
        sigma = float(rng.uniform(0.0, c.jitter)) * extent
        uv = uv + torch.from_numpy(rng.normal(size=uv.shape)) * sigma[..., None, None]
        conf = conf * torch.from_numpy(rng.uniform(size=conf.shape) >= c.drop_keypoint).double()
        drop = torch.from_numpy(rng.uniform(size=(T,)) < c.drop_frame)
        drop[0] = False
        conf[drop] = 0.0
        uv = torch.where(conf[..., None] > 0, uv, torch.zeros_like(uv))

        out = dict(item)
        out.pop("transl", None)  # MANO transl would need J0(betas); models use the wrist (joints3d[..., 0, :])
        out.update(joints3d=joints.float(), pose=pose.float(), world_to_cam=w2c.float(), K=K.float(),
                   kp2d=uv.float(), kp2d_conf=conf.float(), image_size=torch.as_tensor(image_size).clone())
        return out

    def _articulate(self, rng: np.random.Generator, joints: torch.Tensor, pose: torch.Tensor, betas: torch.Tensor,
                    n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 0 (module docstring): joints (T, 2, 21, 3) and pose (T, 2, 16, 3) with new finger motion for
        the hands drawn (probability ``p_articulation`` each); ``n``: the clip's real frames (the rest is
        padding)."""
        from handcast.synth.grasps import random_gesture
        from handcast.synth.handkit import HandKit
        from handcast.synth.motion import min_jerk

        sides = [h for h in (0, 1) if rng.uniform() < self.config.p_articulation]
        if not sides:
            return joints, pose
        if self.hands is None:
            from handcast.hand import HandModel

            self.hands = HandModel("auto")
        kit = HandKit(self.hands, betas.numpy())
        T = joints.shape[0]
        new = pose.numpy().copy()
        for h in sides:
            a = random_gesture(rng)
            b = a if rng.uniform() < 0.5 else random_gesture(rng)
            t0, t1 = np.sort(rng.uniform(0.0, 1.0, 2)) * max(n - 1, 1)
            s = min_jerk(np.clip((np.arange(T) - t0) / max(t1 - t0, 1.0), 0.0, 1.0))[:, None]
            g = kit.axes[h].finger_pose(a[None] + s * (b - a)[None])  # (T, 15, 3)
            w = 1.0 if rng.uniform() < 0.5 else float(rng.uniform(0.3, 1.0))  # how much of the clip's own motion goes
            new[:, h, 1:] = kit.clamp(h, (1.0 - w) * new[:, h, 1:] + w * g)
        kp = torch.from_numpy(kit.keypoints(new, np.zeros((T, 2, 3))))  # wrist at J0: re-placed at the clip's wrist
        joints = joints.clone()
        for h in sides:
            joints[:, h] = kp[:, h] - kp[:, h, :1] + joints[:, h, :1]
        return joints, torch.from_numpy(new)

    def _new_camera(self, rng: np.random.Generator, joints0: torch.Tensor, valid0: torch.Tensor, centre: torch.Tensor):
        """(R, t, K, image_size, static): a scene move and a camera like those of real photos (see the module
        docstring). ``joints0``: (2, 21, 3) frame-0 joints (m, frame-0 camera); ``centre``: their centroid."""
        c = self.config
        turn = _uniform_rotation(rng) if c.view_sampling == "uniform" and c.view_deg >= 180.0 else \
            _random_rotation(rng, c.view_deg)
        R = aa_to_rotmat(torch.from_numpy(turn))
        w = float(np.exp(rng.uniform(np.log(c.image_width[0]), np.log(c.image_width[1]))))
        h = w / float(rng.choice([1.0, 4 / 3, 16 / 9, 3 / 4, 9 / 16]))
        w, h = float(round(w)), float(round(h))
        f = 0.5 * w / np.tan(0.5 * np.radians(rng.uniform(*c.hfov_deg)))
        K = torch.tensor([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
        hands = joints0[valid0] if valid0.any() else joints0[:1]  # (n, 21, 3)
        size3d = float((hands.amax(-2) - hands.amin(-2)).norm(dim=-1).max())  # m, the largest hand's box diagonal
        lo, hi = c.hand_px[0], max(c.hand_px[0], min(c.hand_px[1], 1.2 * min(w, h)))
        size_px = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        z = float(np.clip(f * size3d / size_px, 0.15, 3.0))
        span = (-0.1, 1.1) if rng.uniform() < c.p_truncate else (0.15, 0.85)
        u, v = rng.uniform(*span) * w, rng.uniform(*span) * h
        target = torch.tensor([z * (u - w / 2) / f, z * (v - h / 2) / f, z], dtype=torch.float64)
        t = target - R @ centre
        static = bool(rng.uniform() < c.p_static)
        return R, t, K, torch.tensor([w, h]), static


#: the keys of a forecast config's ``data.camera`` besides ``p``: the new-camera draw of :class:`LiftAugmentConfig`
CAMERA_KEYS = ("hfov_deg", "hand_px", "image_width", "view_deg", "p_truncate", "p_static", "view_sampling")


class CameraAugment:
    """Item transform that shows a 3D-labelled clip through a camera of real photos and videos: with
    probability ``p`` per item (with ``labelled_only``, provenance "gt" or "imputed" only: a 2D-only training clip's
    3D is not a label; a benchmark's test clips, 2D-only in training terms, have their 3D truth), the new-camera
    draw of :class:`LiftAugment` (``p_new_camera`` = 1, ``camera``: its :data:`CAMERA_KEYS`) with exact
    projections, nothing dropped and no other change (no articulation, no keypoint noise: the forecasting
    model's batch augmentation adds its own). A hand of the frame-0 image left with fewer than
    ``MIN_HAND_KEYPOINTS`` keypoints inside the new one (cut off by the border, behind the camera) is marked
    absent from the clip (``hand_valid`` False throughout), as a hand the input photo does not show; a hand
    absent from frame 0 before stays as it was. Draws depend on (seed, epoch,
    clip id, crop start) only; ``set_epoch`` changes them. Used for the forecasting model F (training, and
    ``handcast bench forecasting --cameras real``)."""

    def __init__(self, p: float = 1.0, seed: int = 0, labelled_only: bool = True, **camera):
        unknown = sorted(set(camera) - set(CAMERA_KEYS))
        if unknown:
            raise HandcastError(f"unknown camera option(s) {', '.join(unknown)} (expected some of {', '.join(CAMERA_KEYS)})")
        cam = {k: tuple(v) if isinstance(v, list) else v for k, v in camera.items()}
        self.p, self.seed, self.epoch, self.labelled_only = float(p), int(seed), 0, bool(labelled_only)
        self.lift = LiftAugment(LiftAugmentConfig(p_new_camera=1.0, jitter=0.0, drop_keypoint=0.0, drop_frame=0.0,
                                                  **cam), seed=seed)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.lift.set_epoch(epoch)

    def __call__(self, item: dict) -> dict:
        if self.p <= 0 or (self.labelled_only and item.get("provenance", "gt") not in ("gt", "imputed")):
            return item
        key = zlib.crc32(str(item.get("clip_id", item["index"])).encode())
        rng = np.random.default_rng([self.seed, self.epoch, key, int(item.get("crop_start", 0))])
        if rng.uniform() >= self.p:
            return item
        # LiftAugment keys its draws on the item index: give it the clip id's key, so that two sources' clip i differ
        out = self.lift(dict(item, index=key))
        out["index"] = item["index"]
        hv = item["hand_valid"]
        cut = hv[0] & ((out["kp2d_conf"][0] > 0).sum(-1) < MIN_HAND_KEYPOINTS)  # (2,) in frame 0 before, not now
        out["hand_valid"] = hv & ~cut[None, :]
        return out


def augmented_wrists(datasets, camera, seed: int = 0, items: int = 512) -> np.ndarray:
    """The valid wrist positions (N, 3) (m, frame-0 camera, float64) of up to ``items`` items drawn from
    ``datasets`` (datasets of items with 3D labels: ``joints3d``, ``hand_valid``) as ``camera`` shows them: any
    per-item transform with ``set_epoch`` (:class:`CameraAugment`, :class:`LiftAugment`)."""
    rng = np.random.default_rng(seed)
    sizes = np.array([len(ds) for ds in datasets])
    pick = rng.choice(int(sizes.sum()), size=min(int(items), int(sizes.sum())), replace=False)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    wrists = []
    for k, j in enumerate(pick):
        part = int(np.searchsorted(starts, j, side="right") - 1)
        camera.set_epoch(k)
        item = camera(datasets[part][int(j - starts[part])])
        wrists.append(item["joints3d"][..., 0, :][item["hand_valid"]].numpy())
    return np.concatenate(wrists).astype(np.float64)


def augmented_wrist_statistics(datasets, camera, seed: int = 0, items: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (3,) of :func:`augmented_wrists`: the motion codec's statistics for a model trained through
    such cameras (their wrists lie 0.15-3 m away, the store's head camera's within a few decimetres)."""
    w = augmented_wrists(datasets, camera, seed, items)
    if len(w) < 2:
        raise HandcastError("too few valid hands in the training sources to compute the wrist statistics")
    return w.mean(0), w.std(0)
