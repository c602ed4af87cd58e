"""Training-time augmentation for the lifting model: re-render 3D clips to 2D under new cameras.

Applied to one :class:`handcast.data.ClipDataset` item (torch tensors, CPU). Starting from a clip with 3D
labels (joints in the frame-0 camera, MANO pose, camera trajectory), it

1. moves the scene relative to the frame-0 camera by a random rigid transform (rotation up to
   ``rot_deg`` about the hands' centroid, translation noise), re-expressing joints and global orientations,
2. adds a smooth random rotation to the camera trajectory (identity at frame 0),
3. scales the focal length,
4. projects the joints to 2D, marks keypoints outside the image or behind the camera as missing,
5. adds detector-like noise: per-clip jitter (a fraction of each hand's 2D size), dropped keypoints and
   dropped frames.

The item keeps the frame-0 convention: 3D stays in the (new) frame-0 camera and ``world_to_cam[0]`` is
the identity. Randomness comes from ``numpy.random.default_rng([seed, epoch, index])``, so an item is
reproducible.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

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

    def to_dict(self) -> dict:
        return asdict(self)


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis) + 1e-12
    angle = np.radians(max_deg) * rng.uniform(-1.0, 1.0)
    return axis * angle


class LiftAugment:
    """Callable item transform; ``set_epoch`` changes the draws between epochs."""

    def __init__(self, config: LiftAugmentConfig = LiftAugmentConfig(), seed: int = 0):
        self.config = config
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __call__(self, item: dict) -> dict:
        c = self.config
        rng = np.random.default_rng([self.seed, self.epoch, int(item["index"]), int(item.get("crop_start", 0))])
        joints = item["joints3d"].double()  # (T, 2, 21, 3)
        pose = item["pose"].double()  # (T, 2, 16, 3)
        hand_valid = item["hand_valid"]  # (T, 2)
        T = joints.shape[0]

        # 1. rigid move of the scene in the frame-0 camera, about the frame-0 hands' centroid
        v0 = hand_valid[0]
        pts0 = joints[0][v0] if v0.any() else joints[hand_valid.any(-1)][:1]
        centre = pts0.reshape(-1, 3).mean(0) if pts0.numel() else torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)
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

        # 3. focal length
        K = item["K"].double().clone()
        s = float(np.exp(rng.uniform(np.log(c.focal_scale[0]), np.log(c.focal_scale[1]))))
        K[0, 0] *= s
        K[1, 1] *= s

        # 4. projection and visibility
        cam = transform_points(w2c[:, None, None], joints)  # (T, 2, 21, 3)
        uv = project(cam, K, behind="clamp")
        w, h = [float(x) for x in item["image_size"]]
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
                   kp2d=uv.float(), kp2d_conf=conf.float())
        return out
