"""The one place that defines handcast's conventions. Everything else imports from here.

Units and frames
  * Lengths are metres internally. Forecasting / lifting metrics are reported in cm, pose-estimation
    metrics in mm (as the papers report).
  * Camera frames follow OpenCV: x right, y down, z forward; pixel (u, v) with u to the right.
  * A clip's 3D quantities live in the camera frame of its first frame ("frame-0 camera").
  * ``world_to_cam[t]`` (4x4) maps frame-0-camera coordinates to camera-t coordinates.

Hand axis
  * Arrays with a hand axis of length 2 are ordered (right, left): index 0 is the right hand.

Keypoints (21, "common" / OpenPose order)
  0 wrist; 1-4 thumb (CMC, MCP, IP, tip); 5-8 index (MCP, PIP, DIP, tip); 9-12 middle;
  13-16 ring; 17-20 pinky. Every 21-keypoint array in handcast uses this order.

MANO joints (16, MANO order)
  0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring, 13-15 thumb (each base to distal).
  Note pinky before ring.

Pose convention
  * handcast stores and passes MANO poses as rotations of the 16 joints in the FLAT convention:
    zero rotation = flat hand (the mean pose is never added implicitly). Datasets stored
    mean-relative are converted when loaded (see ``handcast.hand``).
  * The 6D representation is the first two COLUMNS of the rotation matrix (roma's convention):
    ``rotmat[..., :, :2]`` flattened in row-major order to 6 numbers, as roma.rotmat_to_special_procrustes
    inverse ``roma.special_gramschmidt`` expects.
"""

from __future__ import annotations

import numpy as np

HANDS: tuple[str, str] = ("right", "left")
RIGHT, LEFT = 0, 1

NUM_MANO_JOINTS = 16
NUM_KEYPOINTS = 21

KEYPOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip",
    "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip",
    "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)

MANO_JOINT_NAMES: tuple[str, ...] = (
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
)

# Parent of each MANO joint (MANO's kinematic tree; -1 for the root).
MANO_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14)

# Fingertips, in the order they are appended after the 16 MANO joints (thumb, index, middle, ring, pinky).
FINGERTIP_NAMES: tuple[str, ...] = ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip")
# smplx's fingertip vertex ids for the official MANO topology (smplx/vertex_ids.py, 'mano').
MANO_FINGERTIP_VERTEX_IDS: tuple[int, ...] = (744, 320, 443, 554, 671)

# "MANO-21" = 16 MANO joints then the 5 tips (thumb..pinky). Conversions to/from the common order.
MANO21_TO_COMMON = np.array([0, 13, 14, 15, 16, 1, 2, 3, 17, 4, 5, 6, 18, 10, 11, 12, 19, 7, 8, 9, 20])
COMMON_TO_MANO21 = np.array([0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20])

# Bones of the common 21-keypoint skeleton as (parent, child) pairs, for drawing.
KEYPOINT_BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
    (0, 9), (9, 10), (10, 11), (11, 12),
    (0, 13), (13, 14), (14, 15), (15, 16),
    (0, 17), (17, 18), (18, 19), (19, 20),
)

# Motion token layout (one per frame, 198-d): [right 16x6D, left 16x6D, right transl, left transl].
MOTION_DIM = 2 * NUM_MANO_JOINTS * 6 + 2 * 3

# Paper colours: right hand blue, left hand pink (RGB, 0-255).
HAND_COLORS: tuple[tuple[int, int, int], tuple[int, int, int]] = ((40, 110, 235), (235, 80, 170))

# Provenance of a clip's 3D labels.
PROVENANCES: tuple[str, ...] = ("gt", "imputed", "2d-only")

# The camera assumed for an image that comes without intrinsics (handcast forecast, pose and lift): square
# pixels, principal point at the image centre and this field of view in degrees across the image's longer side
# (the horizontal one of a landscape image; a portrait photo of the same camera gets the same focal length).
DEFAULT_FOV_DEG = 60.0

# A hand counts as detected in a frame (an input to lifting, forecasting and fitting) when at least this many
# of its 2D keypoints have confidence > 0.
MIN_HAND_KEYPOINTS = 3


def mano21_to_common(x: np.ndarray, axis: int = -2) -> np.ndarray:
    """Reorder a MANO-21 keypoint axis (16 MANO joints + 5 tips) to the common order."""
    return np.take(x, MANO21_TO_COMMON, axis=axis)


def common_to_mano21(x: np.ndarray, axis: int = -2) -> np.ndarray:
    """Reorder a common-order 21-keypoint axis to MANO-21 order."""
    return np.take(x, COMMON_TO_MANO21, axis=axis)
