"""Lifting conditioning: per-frame features of the 2D keypoint tracks and the camera, as token blocks.

Four modalities, each switchable (the paper's Table 2 ablation), each a block of one token per frame
made by its own :class:`~handcast.models.denoiser.TokenMLP`:

==============  ======================================================================  ==========
name            per-frame feature                                                       dim
==============  ======================================================================  ==========
``keypoints``   2D keypoints of both hands normalised to [-1, 1] by the image size,     2x21x2 + 2x21
                zero where missing, plus the per-keypoint confidence
``camera``      extrinsics frame-0 camera -> camera t: 6D rotation + translation (m)    9
``plucker``     Plucker ray [unit direction, moment] of every keypoint in the frame-0   2x21x6
                camera, zero where missing
``kpe``         keypoint positional encoding (viewing angles, 2^0..2^(F-1)) of every    2x21x4F
                keypoint, zero where missing
``local``       per hand, its keypoints in normalised camera coordinates (K^-1 uv)      2x21x2 + 2x4
                relative to their centre and divided by their box diagonal, zero where
                missing; plus the centre (2), the log of the diagonal (1) and a
                presence flag (1). Not in the paper: the hand's 2D shape at any size
                and position in the image, so that its orientation and articulation
                can be read the same way for a 40 px and a 600 px hand
==============  ======================================================================  ==========

A clip in which mostly the left hand is seen is lifted as its mirror image, mostly a right hand, and the
result mirrored back (:meth:`LiftingModel.sample`, ``mirror_left``; :func:`mostly_left`): trained on lab clips
whose two hands do different things, L reads a lone right hand far better than the same hand mirrored
(results/lift_views.md section 8). The hand model is mirror-symmetric, so nothing is lost.

The paper's four modalities are on by default; ``local`` is off by default and in the presets (measured in
results/lift_views.md: it helps synthetic new viewpoints and not the real video).

Nothing here knows which dataset the tracks come from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from handcast.conventions import MIN_HAND_KEYPOINTS
from handcast.diffusion import Condition, ConditionalDiffusion, DiffusionConfig
from handcast.geometry import (
    kpe,
    mean_rotmat,
    pixel_rays,
    plucker,
    project,
    rotmat_to_6d,
    sixd_to_rotmat,
    transform_points,
)
from handcast.models.checkpoint import load_model
from handcast.models.denoiser import DenoiserConfig, MotionDenoiser, TokenMLP
from handcast.models.motion import MotionCodec

MODALITIES = ("keypoints", "camera", "plucker", "kpe", "local")


@dataclass(frozen=True)
class LiftingConditioning:
    """Which condition blocks the lifting model uses (all four = the paper's full model)."""

    keypoints: bool = True
    camera: bool = True
    plucker: bool = True
    kpe: bool = True
    kpe_freqs: int = 4
    local: bool = False
    #: how condition tokens enter the denoiser: "prepend" (paper: one block of T tokens per modality),
    #: "fuse" (modalities summed into ONE prepended block of T tokens) or "add" (summed and added to the
    #: motion token of the same frame; no extra tokens, the cheapest)
    mode: str = "prepend"

    def __post_init__(self):
        if self.mode not in ("prepend", "fuse", "add"):
            from handcast.errors import HandcastError

            raise HandcastError(f"conditioning mode must be prepend, fuse or add, got '{self.mode}'")

    def enabled(self) -> tuple[str, ...]:
        return tuple(m for m in MODALITIES if getattr(self, m))

    def feature_dims(self) -> dict[str, int]:
        dims = {"keypoints": 2 * 21 * 3, "camera": 9, "plucker": 2 * 21 * 6, "kpe": 2 * 21 * 4 * self.kpe_freqs,
                "local": 2 * 21 * 2 + 2 * 4}
        return {m: dims[m] for m in self.enabled()}

    def to_dict(self) -> dict:
        return asdict(self)


def lifting_features(
    kp2d: torch.Tensor,
    conf: torch.Tensor,
    K: torch.Tensor,
    world_to_cam: torch.Tensor,
    image_size: torch.Tensor,
    cond: LiftingConditioning,
) -> dict[str, torch.Tensor]:
    """Per-frame condition features.

    Args:
        kp2d: (B, T, 2, 21, 2) pixels in camera t, hands (right, left), common keypoint order.
        conf: (B, T, 2, 21) confidence in [0, 1]; 0 = missing (its features are zeroed).
        K: (B, 3, 3) intrinsics.
        world_to_cam: (B, T, 4, 4) frame-0 camera -> camera t.
        image_size: (B, 2) (width, height) in pixels.
    Returns:
        {modality: (B, T, dim)} for the enabled modalities (see the module docstring).
    """
    b, t = kp2d.shape[:2]
    present = (conf > 0).to(kp2d.dtype).unsqueeze(-1)  # (B, T, 2, 21, 1)
    uv = torch.where(present > 0, kp2d, torch.zeros_like(kp2d))  # missing keypoints may hold NaN
    Kb = K[:, None, None, None]  # (B, 1, 1, 1, 3, 3)
    out: dict[str, torch.Tensor] = {}
    if cond.keypoints:
        wh = image_size.to(kp2d.dtype)[:, None, None, None, :]
        norm = (2.0 * uv / wh - 1.0) * present
        out["keypoints"] = torch.cat([norm.reshape(b, t, -1), conf.reshape(b, t, -1)], dim=-1)
    if cond.camera:
        rot6d = rotmat_to_6d(world_to_cam[..., :3, :3])
        out["camera"] = torch.cat([rot6d, world_to_cam[..., :3, 3]], dim=-1)
    if cond.plucker:
        # uv with missing keypoints replaced by the principal point so no NaN/inf enters; then zeroed
        safe = torch.where(present > 0, uv, K[:, None, None, None, :2, 2].expand_as(uv))
        rays = plucker(safe, Kb, world_to_cam[:, :, None, None])
        out["plucker"] = (rays * present).reshape(b, t, -1)
    if cond.kpe:
        enc = kpe(uv, Kb, cond.kpe_freqs)
        out["kpe"] = (enc * present).reshape(b, t, -1)
    if cond.local:
        out["local"] = local_shape(uv, present[..., 0], K)
    return out


def local_shape(uv: torch.Tensor, present: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """The ``local`` block: each hand's 2D shape independent of its size and place in the image.

    uv (B, T, 2, 21, 2) px (any value where missing), present (B, T, 2, 21) 0/1, K (B, 3, 3).
    Returns (B, T, 2*21*2 + 2*4): per hand, (x - c) / s for its 21 keypoints (x = K^-1 uv, c their mean,
    s their box diagonal; zero where missing), then c (2), log s (1) and 1 (0 for a hand with fewer than
    2 keypoints, whose whole block is zero).
    """
    b, t = uv.shape[:2]
    x = pixel_rays(uv, K[:, None, None, None])[..., :2]  # normalised camera coordinates K^-1 uv
    w = present.unsqueeze(-1)
    n = w.sum(-2)  # (B, T, 2, 1)
    ok = (n >= 2).to(uv.dtype)
    c = (x * w).sum(-2) / n.clamp_min(1.0)  # (B, T, 2, 2)
    inside = torch.where(w > 0, x, c.unsqueeze(-2))  # missing keypoints sit on the centre: no effect on the box
    s = torch.where(ok > 0, (inside.amax(-2) - inside.amin(-2)).norm(dim=-1, keepdim=True), torch.ones_like(ok))
    s = s.clamp_min(1e-4)
    rel = (x - c.unsqueeze(-2)) / s.unsqueeze(-2) * w * ok.unsqueeze(-2)
    extra = torch.cat([c, s.log(), torch.ones_like(s)], -1) * ok  # (B, T, 2, 4)
    return torch.cat([rel.reshape(b, t, -1), extra.reshape(b, t, -1)], -1)


class LiftingConditioner(nn.Module):
    """Turns the lifting features into condition tokens: one block of T tokens per enabled modality."""

    def __init__(self, cond: LiftingConditioning, width: int):
        super().__init__()
        self.cond = cond
        self.mlps = nn.ModuleDict({m: TokenMLP(d, width) for m, d in cond.feature_dims().items()})

    def forward(
        self, features: dict[str, torch.Tensor], frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """features: {modality: (B, T, dim)}; frame_mask (B, T) bool. Returns tokens (B, M*T, width) and
        their mask (B, M*T) (padded frames' tokens are masked out), or (None, None) with no modality."""
        blocks = [self.mlps[m](features[m]) for m in self.cond.enabled()]
        if not blocks:
            return None, None
        if self.cond.mode == "prepend":
            return torch.cat(blocks, dim=1), frame_mask.repeat(1, len(blocks))
        return torch.stack(blocks).sum(0), frame_mask


@dataclass(frozen=True)
class LiftConfig:
    """Everything that defines a lifting model (stored in its checkpoint)."""

    denoiser: dict
    conditioning: dict
    diffusion: dict
    p_token_dropout: float = 0.1
    p_cond_dropout: float = 0.1


class LiftingModel(ConditionalDiffusion):
    """Lifting model L: 2D keypoint tracks + cameras -> 3D MANO motion of both hands (frame-0 camera).

    A conditional diffusion model over motion tokens (see :mod:`handcast.models.motion`) whose condition
    is the lifting feature blocks. Batch dicts use the keys of :class:`handcast.data.ClipDataset`.
    ``sample(batch, num_samples, ...)`` (:meth:`ConditionalDiffusion.sample`) draws S motions per clip:
    rot6d (B, S, T, 2, 16, 6) and wrist (B, S, T, 2, 3) m, frame-0 camera, hands (right, left).
    """

    kind = "lift"

    def __init__(self, config: LiftConfig):
        super().__init__()

        self.config = config
        self.cond = LiftingConditioning(**config.conditioning)
        self.dcfg = DenoiserConfig(**config.denoiser)
        self.diffusion = DiffusionConfig(**config.diffusion)
        self.codec = MotionCodec()
        self.conditioner = LiftingConditioner(self.cond, self.dcfg.width)
        self.denoiser = MotionDenoiser(self.dcfg)

    def condition(self, batch: dict) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        feats = lifting_features(batch["kp2d"], batch["kp2d_conf"], batch["K"], batch["world_to_cam"],
                                 batch["image_size"], self.cond)
        return self.conditioner(feats, batch["frame_mask"])

    def denoise(self, x_t, t, tokens, token_mask, frame_mask, conditioned: bool = True) -> torch.Tensor:
        if tokens is not None and not conditioned:
            tokens = torch.zeros_like(tokens)
        if self.cond.mode == "add":
            return self.denoiser(x_t, t, None, None, frame_mask, frame_cond=tokens)
        return self.denoiser(x_t, t, tokens, token_mask, frame_mask)

    def target(self, batch: dict) -> torch.Tensor:
        """Clean motion tokens (B, T, 198) of a batch: its MANO rotations and wrist positions."""
        return self.codec.encode_aa(batch["pose"], batch["joints3d"][..., 0, :])

    def sampling_condition(self, batch: dict) -> tuple[Condition, tuple[int, int]]:
        """The condition of :meth:`sample`: (tokens, token mask, frame mask), and one sample's shape (T, 198)."""
        fmask = batch["frame_mask"]
        return (*self.condition(batch), fmask), (fmask.shape[1], self.dcfg.motion_dim)

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (..., T, 198) -> rot6d (..., T, 2, 16, 6), wrist (..., T, 2, 3) metres, frame-0 camera."""
        return self.codec.decode(x)

    def sample(self, inputs: dict, num_samples: int = 1, sampler: str = "ddim", steps: int | None = None,
               guidance: float = 1.0, generator: torch.Generator | None = None, progress: bool = False,
               known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None, harmonise=None,
               mirror_left: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`ConditionalDiffusion.sample` -> (rot6d (B, S, T, 2, 16, 6), wrist (B, S, T, 2, 3)). With
        ``mirror_left`` (and no ``known`` prefix), each clip in which mostly the left hand is seen
        (:func:`mostly_left`) is given to L mirrored, mostly a right hand, and its samples are mirrored back
        (:func:`mirror_batch`, :func:`mirror_motion`)."""
        flip = mostly_left(inputs) if mirror_left and known is None else None
        if flip is not None and bool(flip.any()):
            inputs = mirror_batch(inputs, flip)
        rot6d, wrist = super().sample(inputs, num_samples, sampler, steps, guidance, generator, progress, known,
                                      known_mask, harmonise)
        if flip is not None and bool(flip.any()):
            rot6d, wrist = mirror_motion(rot6d, wrist, flip)
        return rot6d, wrist


#: :func:`mostly_left`: a clip is mirrored when its right hand is seen in fewer than this fraction of the frames
#: its left hand is seen in (a lone left hand, or one with a few stray right-hand detections)
MIRROR_BELOW = 0.5


def mostly_left(batch: dict) -> torch.Tensor:
    """(B,) bool: clips whose left hand is seen (at least ``MIN_HAND_KEYPOINTS`` keypoints with conf > 0) in some
    frame, and whose right hand is seen in fewer than :data:`MIRROR_BELOW` times as many frames."""
    seen = (batch["kp2d_conf"] > 0).sum(-1) >= MIN_HAND_KEYPOINTS  # (B, T, 2)
    if "frame_mask" in batch:
        seen = seen & batch["frame_mask"][..., None]
    n = seen.sum(1)  # (B, 2)
    return (n[:, 1] > 0) & (n[:, 0] < MIRROR_BELOW * n[:, 1])


_MIRROR_X = (-1.0, 1.0, 1.0)


def mirror_batch(batch: dict, which: torch.Tensor) -> dict:
    """L's input batch with the clips ``which`` (B,) seen in a mirror: the hands swapped, u -> W - 1 - u (W the
    clip's image width, missing keypoints left as they are), the principal point likewise, and the cameras
    conjugated by the mirror diag(-1, 1, 1) (x negated in every camera frame). A pinhole camera sees the mirrored
    scene exactly so. Other keys are kept."""
    out = dict(batch)
    w = which.to(torch.bool)
    m5 = w[:, None, None, None, None]
    kp = batch["kp2d"][:, :, [1, 0]].clone()
    W1 = batch["image_size"][:, 0].to(kp.dtype)[:, None, None, None] - 1.0  # (B, 1, 1, 1)
    kp[..., 0] = W1 - kp[..., 0]
    out["kp2d"] = torch.where(m5, kp, batch["kp2d"])
    out["kp2d_conf"] = torch.where(w[:, None, None, None], batch["kp2d_conf"][:, :, [1, 0]], batch["kp2d_conf"])
    K = batch["K"].clone()
    K[:, 0, 2] = torch.where(w, batch["image_size"][:, 0].to(K.dtype) - 1.0 - batch["K"][:, 0, 2], batch["K"][:, 0, 2])
    out["K"] = K
    M = torch.diag(torch.tensor(_MIRROR_X + (1.0,), dtype=batch["world_to_cam"].dtype, device=K.device))
    out["world_to_cam"] = torch.where(w[:, None, None, None], M @ batch["world_to_cam"] @ M, batch["world_to_cam"])
    return out


def mirror_motion(rot6d: torch.Tensor, wrist: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """L's samples of mirrored clips mirrored back, for the clips ``which`` (B,): rot6d (B, S, T, 2, 16, 6) (every
    rotation R -> M R M with M = diag(-1, 1, 1): the mirrored right hand's pose is the left hand's, the hand model
    being mirror-symmetric) and wrist (B, S, T, 2, 3) (x negated), the hands swapped back."""
    M = torch.diag(torch.tensor(_MIRROR_X, dtype=rot6d.dtype, device=rot6d.device))
    R = M @ sixd_to_rotmat(rot6d[:, :, :, [1, 0]]) @ M
    w = which.to(torch.bool)
    r = torch.where(w.reshape(-1, 1, 1, 1, 1, 1), rotmat_to_6d(R), rot6d)
    x = wrist[:, :, :, [1, 0]] * torch.tensor(_MIRROR_X, dtype=wrist.dtype, device=wrist.device)
    return r, torch.where(w.reshape(-1, 1, 1, 1, 1), x, wrist)


def average_samples(rot6d: torch.Tensor, wrist: torch.Tensor, weights: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """L's samples averaged: rot6d (B, S, T, 2, 16, 6) and wrist (B, S, T, 2, 3), as :meth:`LiftingModel.sample`
    returns them, -> rotation matrices (B, T, 2, 16, 3, 3) (the chordal mean of the S samples' matrices,
    :func:`handcast.geometry.mean_rotmat`) and wrists (B, T, 2, 3) (their mean): an estimate of the posterior
    mean. ``weights`` summing to 1 over S, (B, S, 2) per hand (:func:`best_samples_weights`) or (B, S, T, 2, 16)
    per frame, hand and joint (:func:`select_weights`): the rotations are a weighted mean, the wrists still the
    mean of all samples (the 2D scores are blind to placement, and on the synthetic lifting benchmark the mean
    of all is the better wrist: results/lift_views.md section 9). One sample (S = 1) is returned as it is."""
    if rot6d.shape[1] == 1:
        return sixd_to_rotmat(rot6d[:, 0]), wrist[:, 0]
    w = None if weights is None else _joint_weights(weights).expand(*rot6d.shape[:-1])  # (B, S, T, 2, 16)
    return mean_rotmat(sixd_to_rotmat(rot6d), 1, w), wrist.mean(1)


def _joint_weights(weights: torch.Tensor) -> torch.Tensor:
    """Weights (B, S, 2) or (B, S, T, 2, 16) -> broadcastable to (B, S, T, 2, 16)."""
    return weights[:, :, None, :, None] if weights.dim() == 3 else weights


def frame_consistency(R: torch.Tensor, wrist: torch.Tensor, inputs: dict, hand_model
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """How well each of L's samples explains its input's 2D keypoints, per frame: (err, seen), err (B, S, T, 2)
    per sample, frame and hand (right, left), the keypoints' mean 2D distance to the input after the best 2D
    scale and shift of that frame, in units of the input hand's size there (root-mean-square distance of its
    keypoints from their centre); seen (B, 1, T, 2) float, 1 where the hand is seen (at least
    ``MIN_HAND_KEYPOINTS`` keypoints, inside ``frame_mask``). Scale and shift absorb the wrist's depth and
    placement, which the translation solve and the refinement fix anyway; what is left is orientation and
    articulation.

    R (B, S, T, 2, 16, 3, 3) rotation matrices and wrist (B, S, T, 2, 3) (metres, the clip's frame-0 camera);
    ``inputs`` the batch L was given (kp2d px, kp2d_conf, K, world_to_cam frame-0 camera -> camera t, optional
    frame_mask); ``hand_model`` a :class:`handcast.hand.HandModel` (mean shape)."""
    R = R.float()
    j0 = hand_model.rest_joints().to(R)[:, 0]  # (2, 3) the wrist joint at rest, mean shape
    kp3 = hand_model.keypoints(R, transl=wrist.float() - j0, rep="rotmat")  # (B, S, T, 2, 21, 3) frame-0 camera
    cam = transform_points(inputs["world_to_cam"].float()[:, None, :, None, None], kp3)  # camera t
    uv = project(cam, inputs["K"].float()[:, None, None, None, None], behind="clamp")  # (B, S, T, 2, 21, 2)
    m = (inputs["kp2d_conf"] > 0).float()[:, None]  # (B, 1, T, 2, 21)
    obs = inputs["kp2d"].float()[:, None]
    n = m.sum(-1, keepdim=True).clamp_min(1.0)
    seen = (m.sum(-1) >= MIN_HAND_KEYPOINTS)
    if "frame_mask" in inputs:
        seen = seen & inputs["frame_mask"].to(torch.bool)[:, None, :, None]
    cp = (uv * m[..., None]).sum(-2, keepdim=True) / n[..., None]
    co = (obs * m[..., None]).sum(-2, keepdim=True) / n[..., None]
    p, q = (uv - cp) * m[..., None], (obs - co) * m[..., None]
    scale = (p * q).sum((-1, -2)) / (p * p).sum((-1, -2)).clamp_min(1e-9)  # (B, S, T, 2)
    size = ((q * q).sum((-1, -2)) / n[..., 0]).sqrt().clamp_min(1e-6)
    err = ((scale[..., None, None] * p - q).norm(dim=-1) * m).sum(-1) / n[..., 0] / size  # (B, S, T, 2)
    return err, seen.float()


def sample_consistency(rot6d: torch.Tensor, wrist: torch.Tensor, inputs: dict, hand_model) -> torch.Tensor:
    """:func:`frame_consistency` per sample and hand: (B, S, 2), the mean over the frames where the hand is seen
    (a hand seen in no frame scores 0). rot6d (B, S, T, 2, 16, 6) and wrist (B, S, T, 2, 3) as
    :meth:`LiftingModel.sample` returns them; the other arguments as :func:`frame_consistency`."""
    err, seen = frame_consistency(sixd_to_rotmat(rot6d.float()), wrist, inputs, hand_model)
    seen = seen.expand_as(err)
    return (err * seen).sum(2) / seen.sum(2).clamp_min(1.0)


def best_samples_weights(score: torch.Tensor, keep: int) -> torch.Tensor:
    """Weights 1 / keep on the ``keep`` lowest-scoring samples, 0 elsewhere: score (B, S, ...) -> the same shape,
    summing to 1 over S (dim 1)."""
    k = max(1, min(int(keep), score.shape[1]))
    idx = score.topk(k, dim=1, largest=False).indices
    return torch.zeros_like(score).scatter_(1, idx, 1.0 / k)


#: :func:`select_weights`: standard deviation (frames) of the Gaussian over time with which each frame's 2D
#: score is averaged before the samples are ranked, and with which the kept samples' weights are then smoothed
SCORE_SIGMA = 3.0
WEIGHT_SIGMA = 2.0
#: :func:`select_weights`: a finger's score adds this fraction of the whole sample's, so that among samples whose
#: finger reprojects alike (a twist about the bone moves no keypoint) the one that explains the whole hand is kept
TIE_BREAK = 0.01
#: the kinematic chains of the fingers, MANO joint indices (index, middle, pinky, ring, thumb)
FINGER_CHAINS = ((1, 2, 3), (4, 5, 6), (7, 8, 9), (10, 11, 12), (13, 14, 15))
#: the parts :func:`select_weights` ranks in turn after whole samples: each finger's chain, then the global
#: orientation (joint 0) again, now with the chosen fingers
SELECTION_PARTS = FINGER_CHAINS + ((0,),)


def smooth_in_time(x: torch.Tensor, sigma: float, seen: torch.Tensor | None = None) -> torch.Tensor:
    """x (B, S, T, ...) averaged over time (dim 2) with a Gaussian of ``sigma`` frames. With ``seen`` (broadcastable
    to x, 1 where a value counts), the average is over the frames that count; where none count near a frame it
    falls back to the mean over all the frames that count (0 if none)."""
    T = x.shape[2]
    t = torch.arange(T, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * ((t[:, None] - t[None]) / float(sigma)) ** 2)  # (T, T)
    if seen is None:
        return torch.einsum("ut,bst...->bsu...", k, x) / k.sum(1).reshape(1, 1, T, *([1] * (x.dim() - 3)))
    seen = seen.expand_as(x).to(x.dtype)
    num, den = torch.einsum("ut,bst...->bsu...", k, x * seen), torch.einsum("ut,bst...->bsu...", k, seen)
    glob = (x * seen).sum(2, keepdim=True) / seen.sum(2, keepdim=True).clamp_min(1.0)
    return torch.where(den > 1e-3, num / den.clamp_min(1e-9), glob.expand_as(x))


def _frame_keep(err: torch.Tensor, seen: torch.Tensor, keep: int) -> torch.Tensor:
    """(B, S, T, 2) weights: per frame the ``keep`` samples of the lowest time-smoothed score, smoothed in time
    (a normalised average over frames of weights that sum to 1 over S, so they still do)."""
    return smooth_in_time(best_samples_weights(smooth_in_time(err, SCORE_SIGMA, seen), keep), WEIGHT_SIGMA)


def select_weights(rot6d: torch.Tensor, wrist: torch.Tensor, inputs: dict, hand_model, keep: int) -> torch.Tensor:
    """Weights (B, S, T, 2, 16) for :func:`average_samples`: per frame, hand and joint, 1 / keep on the ``keep``
    samples that best explain the 2D keypoints (:func:`frame_consistency`, averaged over a few frames,
    :data:`SCORE_SIGMA`; the weights smoothed in time, :data:`WEIGHT_SIGMA`, so that the average does not jump
    where the ranking changes). First whole samples are ranked, which sets a first mean hand; then each part of
    :data:`SELECTION_PARTS` in turn (each finger's chain, then the global orientation again): the mean hand with that
    part's rotations taken from each sample in turn is ranked (ties, such as a twist about the bone that moves no
    keypoint, going to the sample that explains the whole hand best, :data:`TIE_BREAK`), and the part gets the mean
    of its best ``keep``. This is the joint-level reprojection-based aggregation of pose hypotheses (D3DP, Shan et al.
    2023) made to follow the hand's kinematic chains, where a joint's rotation moves the keypoints below it.
    Arguments as :func:`sample_consistency`."""
    R = sixd_to_rotmat(rot6d.float())  # (B, S, T, 2, 16, 3, 3)
    err, seen = frame_consistency(R, wrist, inputs, hand_model)
    w = _frame_keep(err, seen, keep)  # (B, S, T, 2)
    W = w[..., None].expand(*w.shape, R.shape[-3]).clone()  # (B, S, T, 2, 16)
    mean = mean_rotmat(R, 1, W)  # (B, T, 2, 16, 3, 3)
    for part in SELECTION_PARTS:
        c = list(part)
        mixed = mean[:, None].expand_as(R).clone()
        mixed[..., c, :, :] = R[..., c, :, :]
        ef = frame_consistency(mixed, wrist, inputs, hand_model)[0] + TIE_BREAK * err
        wf = _frame_keep(ef, seen, keep)
        W[..., c] = wf[..., None]
        mean[..., c, :, :] = mean_rotmat(R[..., c, :, :], 1, W[..., c])
    return W


#: :func:`keep_weights` ranks the samples of at most this many sample-frames (samples x frames x clips) at once
SELECT_CHUNK = 16 * 256 * 16


def keep_weights(rot6d: torch.Tensor, wrist: torch.Tensor, inputs: dict, hand_model, keep: int | None
                 ) -> torch.Tensor | None:
    """The weights (B, S, T, 2, 16) of :func:`average_samples` that keep, per frame, hand and finger, the ``keep``
    samples most consistent with the 2D (:func:`select_weights`), or None (all samples alike) when ``keep`` is
    None or not below the number of samples. Arguments as :func:`sample_consistency`."""
    if keep is None or int(keep) >= rot6d.shape[1]:
        return None
    B, S, T = rot6d.shape[:3]
    n = max(1, SELECT_CHUNK // (S * T))  # clips at a time (16 of 16 samples x 256 frames), bounding the memory
    return torch.cat([select_weights(rot6d[i:i + n], wrist[i:i + n],
                                     {k: v[i:i + n] if torch.is_tensor(v) and v.shape[:1] == (B,) else v
                                      for k, v in inputs.items()}, hand_model, int(keep))
                      for i in range(0, B, n)])


def build_lift(model_cfg: dict) -> LiftingModel:
    """The lifting model a checkpoint's ``model`` config section describes (untrained)."""
    return LiftingModel(LiftConfig(**model_cfg))


def load_lift(path: str | Path, device: str | torch.device = "cpu") -> LiftingModel:
    """The lifting model of a handcast checkpoint, in eval mode on ``device``."""
    return load_model(path, "lift", build_lift, device)[0]
