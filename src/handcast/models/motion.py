"""The motion token: one 198-d vector per frame, [right 16x6D, left 16x6D, right wrist, left wrist].

Rotations are the 16 MANO joint rotations (flat convention, joint 0 = global orientation in the frame-0
camera) in roma's 6D, left unnormalised as in the reference code. The translation part is the WRIST
position in metres in the frame-0 camera (= MANO transl + the rest wrist J0(betas)), normalised with
training statistics (mean, std per axis) that models keep as buffers, so it does not depend on the hand
shape.
"""

from __future__ import annotations

import torch
from torch import nn

from handcast.conventions import MOTION_DIM, NUM_MANO_JOINTS
from handcast.geometry import aa_to_6d, sixd_to_aa

ROT_DIM = 2 * NUM_MANO_JOINTS * 6  # 192
#: reference code's training-wrist statistics (metres), used until a model is fitted to its own data
DEFAULT_WRIST_MEAN = (0.103, 0.029, 0.478)
DEFAULT_WRIST_STD = (0.201, 0.181, 0.255)


class MotionCodec(nn.Module):
    """Packs (rotations, wrist positions) into normalised motion tokens and back. Holds the statistics."""

    #: buffer names of older handcast checkpoints (read by :func:`handcast.models.checkpoint.load_model`)
    RENAMED_STATE = {"transl_mean": "wrist_mean", "transl_std": "wrist_std"}

    def __init__(self, mean=DEFAULT_WRIST_MEAN, std=DEFAULT_WRIST_STD):
        super().__init__()
        self.register_buffer("wrist_mean", torch.as_tensor(mean, dtype=torch.float32).reshape(3))
        self.register_buffer("wrist_std", torch.as_tensor(std, dtype=torch.float32).reshape(3))

    def set_statistics(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Wrist statistics (3,) each, metres; std is floored at 1 mm."""
        self.wrist_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.wrist_std.copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-3))

    def encode(self, rot6d: torch.Tensor, wrist: torch.Tensor) -> torch.Tensor:
        """rot6d (..., T, 2, 16, 6), wrist (..., T, 2, 3) metres -> tokens (..., T, 198)."""
        lead = rot6d.shape[:-3]
        w = (wrist - self.wrist_mean) / self.wrist_std
        return torch.cat([rot6d.reshape(*lead, ROT_DIM), w.reshape(*lead, 6)], dim=-1)

    def encode_aa(self, pose_aa: torch.Tensor, wrist: torch.Tensor) -> torch.Tensor:
        """pose_aa (..., T, 2, 16, 3) axis-angle, wrist (..., T, 2, 3) -> tokens (..., T, 198)."""
        return self.encode(aa_to_6d(pose_aa), wrist)

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens (..., T, 198) -> rot6d (..., T, 2, 16, 6), wrist (..., T, 2, 3) metres."""
        lead = x.shape[:-1]
        rot6d = x[..., :ROT_DIM].reshape(*lead, 2, NUM_MANO_JOINTS, 6)
        wrist = x[..., ROT_DIM:].reshape(*lead, 2, 3) * self.wrist_std + self.wrist_mean
        return rot6d, wrist


def motion_mask(hand_valid: torch.Tensor) -> torch.Tensor:
    """(..., T, 2) bool -> (..., T, 198) float: the entries of a token supervised where each hand is valid."""
    hv = hand_valid.to(torch.float32)
    rot = hv.unsqueeze(-1).expand(*hv.shape, NUM_MANO_JOINTS * 6).reshape(*hv.shape[:-1], ROT_DIM)
    tr = hv.unsqueeze(-1).expand(*hv.shape, 3).reshape(*hv.shape[:-1], 6)
    out = torch.cat([rot, tr], dim=-1)
    assert out.shape[-1] == MOTION_DIM
    return out


def clamp_motion_to_limits(hand_model, rot6d: torch.Tensor) -> torch.Tensor:
    """rot6d (..., 2, 16, 6) with every finger joint's axis-angle components clamped to the hand model's
    joint limits (``HandModel.joint_limits``, hand order right, left); the global orientation (joint 0) is
    kept. A sampled motion's articulation becomes one the hand model allows; a motion within the limits
    comes back unchanged up to the 6D round trip."""
    return aa_to_6d(hand_model.clamp_to_limits(sixd_to_aa(rot6d)))


def keypoints_from_motion(hand_model, rot6d: torch.Tensor, wrist: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
    """Keypoints (..., T, 2, 21, 3) metres of motion (rot6d (..., T, 2, 16, 6), wrist (..., T, 2, 3) m) with
    betas (..., 2, 10), through the hand model's keypoints-only path (differentiable).

    MANO transl = wrist - J0(betas) (global orientation rotates about J0)."""
    j0 = hand_model.rest_joints(betas)[..., 0, :].unsqueeze(-3)  # (..., 1, 2, 3), broadcast over T
    b = betas.unsqueeze(-3).expand(*rot6d.shape[:-3], 2, betas.shape[-1])
    return hand_model.keypoints(rot6d, b, wrist - j0, rep="6d", convention="flat")
