"""Forecasting model F: one image (and/or its 2D hand keypoints) -> many futures of both hands.

The lifting model's denoiser with a different condition: [timestep token, condition tokens, motion
tokens], where the condition tokens are

* ``image``: the input image, letterboxed, through a ViT (ViTPose/HaMeR parameter names; 256 x 192 input
  and 192 patch tokens at the paper size, 128 x 96 and 48 tokens in the tiny config), each patch token
  through a 3-layer MLP to the denoiser width (the paper's F);
* ``keypoints``: the input frame's 2D keypoints, one token per hand: normalised pixels, confidence,
  KPE of every keypoint, handedness one-hot and presence (the keypoint-conditioned variant, which runs
  on real photos through any 2D detector because it never sees pixels);

either or both. The output is always both hands' motion tokens (:mod:`handcast.models.motion`) in the
camera frame of the input image (frame 0).

Heads (``ForecastConfig.head``): ``diffusion`` (F) or ``regression`` (the transformer-regressor baseline:
the same network with no noisy input, one deterministic output). Auxiliary 2D heads
(``ForecastConfig.aux2d``), the paper's Table 5 alternatives for using 2D-only data: ``regression`` (a
linear head on the motion tokens' hidden states predicts each frame's normalised 2D keypoints) or
``diffusion`` (the diffused token carries the 84 normalised 2D keypoint coordinates of the frame too; on
2D-only clips only that part is supervised).

Nothing here knows which dataset a batch comes from: a batch says per clip whether its 3D labels may
be used (``has3d``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from handcast.conventions import MIN_HAND_KEYPOINTS, MOTION_DIM, NUM_KEYPOINTS
from handcast.data.dataset import ClipDataset
from handcast.data.images import IMAGE_MEAN, IMAGE_STD
from handcast.diffusion import Condition, ConditionalDiffusion, DiffusionConfig
from handcast.errors import HandcastError
from handcast.geometry import aa_to_rotmat, kpe, rotmat_to_6d, rotmat_to_aa, sixd_to_rotmat
from handcast.models.checkpoint import load_model
from handcast.models.denoiser import DenoiserConfig, MotionDenoiser, TokenMLP
from handcast.models.motion import ROT_DIM, MotionCodec, motion_mask

#: ViT input (height, width) in pixels, as HaMeR's backbone
INPUT_HW = (256, 192)
KP2D_DIM = 2 * NUM_KEYPOINTS * 2  # 84: both hands' normalised (u, v)
HEADS = ("diffusion", "regression")
AUX2D = ("none", "regression", "diffusion")


@dataclass(frozen=True)
class ForecastConfig:
    """Everything that defines a forecasting model (stored in its checkpoint)."""

    denoiser: dict
    diffusion: dict
    #: ViTConfig fields of the image encoder, or None for a model without image tokens
    image: dict | None = None
    #: condition on the input frame's 2D keypoints (one token per hand)
    keypoints: bool = False
    kpe_freqs: int = 4
    head: str = "diffusion"
    aux2d: str = "none"
    p_token_dropout: float = 0.1
    p_cond_dropout: float = 0.0
    #: condition on a known prefix (the observed frame, or a lifted video context): its motion tokens and
    #: their mask enter as a per-frame condition added to the motion tokens (trained on random prefixes,
    #: see ``train.p_prefix``); without it a known prefix can only be imposed during sampling
    prefix: bool = False

    def __post_init__(self):
        if self.image is None and not self.keypoints:
            raise HandcastError("a forecasting model needs image tokens, keypoint tokens or both")
        if self.head not in HEADS:
            raise HandcastError(f"forecast head must be one of {', '.join(HEADS)}, got '{self.head}'")
        if self.aux2d not in AUX2D:
            raise HandcastError(f"forecast aux2d must be one of {', '.join(AUX2D)}, got '{self.aux2d}'")
        if self.head == "regression" and self.aux2d == "diffusion":
            raise HandcastError("aux2d 'diffusion' needs the diffusion head")
        if self.prefix and self.head != "diffusion":
            raise HandcastError("a prefix condition needs the diffusion head")

    def to_dict(self) -> dict:
        return asdict(self)


def letterbox(images: torch.Tensor, size: tuple[int, int] = INPUT_HW) -> torch.Tensor:
    """Fit whole images (B, 3, H, W) in [0, 1] into ``size`` (h, w) without distortion, centred, black bars;
    returns the ImageNet-normalised input (B, 3, h, w)."""
    h, w = images.shape[-2:]
    th, tw = size
    s = min(th / h, tw / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    x = F.interpolate(images, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (th - nh) // 2, (tw - nw) // 2
    x = F.pad(x, (left, tw - nw - left, top, th - nh - top), value=0.0)
    mean = torch.as_tensor(IMAGE_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGE_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def keypoint_features(kp2d: torch.Tensor, conf: torch.Tensor, K: torch.Tensor, image_size: torch.Tensor,
                      kpe_freqs: int = 4) -> torch.Tensor:
    """Per-hand features of the input frame's 2D keypoints.

    Args:
        kp2d: (B, 2, 21, 2) pixels, hands (right, left), common order; may be NaN where conf is 0.
        conf: (B, 2, 21) confidence in [0, 1]; 0 = missing.
        K: (B, 3, 3) intrinsics; image_size: (B, 2) (width, height) pixels.
    Returns:
        (B, 2, 21*2 + 21 + 21*4F + 3): normalised uv in [-1, 1], confidence, KPE, handedness one-hot
        and presence (>= 3 keypoints detected); all zero for an absent hand except its handedness.
    """
    b = kp2d.shape[0]
    present_kp = (conf > 0).to(kp2d.dtype).unsqueeze(-1)
    uv = torch.where(present_kp > 0, kp2d, torch.zeros_like(kp2d))
    wh = image_size.to(kp2d.dtype)[:, None, None, :]
    norm = (2.0 * uv / wh - 1.0) * present_kp
    safe = torch.where(present_kp > 0, uv, K[:, None, None, :2, 2].expand_as(uv))
    enc = kpe(safe, K[:, None, None], kpe_freqs) * present_kp
    hand = (conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS  # (B, 2)
    handed = torch.eye(2, dtype=kp2d.dtype, device=kp2d.device).expand(b, 2, 2)
    feats = torch.cat([norm.flatten(-2), conf, enc.flatten(-2), handed, hand.to(kp2d.dtype).unsqueeze(-1)], -1)
    return feats * torch.cat([hand.to(kp2d.dtype).unsqueeze(-1).expand(b, 2, feats.shape[-1] - 3),
                              torch.ones(b, 2, 3, dtype=kp2d.dtype, device=kp2d.device)], -1)


def keypoint_feature_dim(kpe_freqs: int) -> int:
    return NUM_KEYPOINTS * 2 + NUM_KEYPOINTS + NUM_KEYPOINTS * 4 * kpe_freqs + 3


def normalised_kp2d(kp2d: torch.Tensor, conf: torch.Tensor, image_size: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, 2, 21, 2) pixels -> ((B, T, 84) in [-1, 1] with 0 where missing, (B, T, 84) float mask)."""
    present = (conf > 0).to(kp2d.dtype).unsqueeze(-1)
    uv = torch.where(present > 0, kp2d, torch.zeros_like(kp2d))
    wh = image_size.to(kp2d.dtype)[:, None, None, None, :]
    norm = (2.0 * uv / wh - 1.0) * present
    b, t = kp2d.shape[:2]
    return norm.reshape(b, t, KP2D_DIM), present.expand_as(uv).reshape(b, t, KP2D_DIM)


class ForecastModel(ConditionalDiffusion):
    """Forecasting model F (or the regressor baseline): input frame -> both hands' future motion.

    Batch dicts use the keys of :class:`handcast.data.ClipDataset` (``image`` (B, 3, H, W) in [0, 1] for
    image models; ``kp2d``/``kp2d_conf`` of frame 0, ``K``, ``image_size`` for keypoint models; ``frame_mask``
    (B, T) for the horizon). Only frame 0 of the inputs is ever read.
    """

    kind = "forecast"

    def __init__(self, config: ForecastConfig):
        super().__init__()

        self.config = config
        extra = KP2D_DIM if config.aux2d == "diffusion" else 0
        self.dcfg = DenoiserConfig(**{**config.denoiser, "motion_dim": MOTION_DIM + extra})
        self.diffusion = DiffusionConfig(**config.diffusion)
        self.codec = MotionCodec()
        w = self.dcfg.width
        if config.image is not None:
            from handcast.models.vit import ViT, ViTConfig

            self.backbone = ViT(ViTConfig(**config.image))
            self.image_mlp = TokenMLP(self.backbone.config.embed_dim, w)
        if config.keypoints:
            self.keypoint_mlp = TokenMLP(keypoint_feature_dim(config.kpe_freqs), w)
        if config.prefix:
            self.prefix_mlp = TokenMLP(2 * MOTION_DIM, w)
        self.denoiser = MotionDenoiser(self.dcfg)
        if config.aux2d == "regression":
            self.head2d = nn.Linear(w, KP2D_DIM)

    # ------------------------------------------------------------------ conditioning
    def condition(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition tokens (B, N, width) and their mask (B, N) from the input frame."""
        blocks, masks = [], []
        if self.config.image is not None:
            x = letterbox(batch["image"], self.backbone.config.img_size)
            tok = self.image_mlp(self.backbone(x))
            blocks.append(tok)
            masks.append(torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device))
        if self.config.keypoints:
            feats = keypoint_features(batch["kp2d"][:, 0], batch["kp2d_conf"][:, 0], batch["K"], batch["image_size"],
                                      self.config.kpe_freqs)
            tok = self.keypoint_mlp(feats)
            blocks.append(tok)
            masks.append(torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device))
        return torch.cat(blocks, 1), torch.cat(masks, 1)

    def prefix_features(self, known: torch.Tensor | None, known_mask: torch.Tensor | None,
                        frame_mask: torch.Tensor) -> torch.Tensor:
        """(B, T, 2 * 198) features of a known prefix: its motion tokens where known, zero elsewhere, then the
        mask as 0 / 1. ``known`` (B, T, D) tokens, ``known_mask`` (B, T) or (B, T, D) bool; None = nothing known."""
        b, t = frame_mask.shape
        if known is None:
            return torch.zeros(b, t, 2 * MOTION_DIM, device=frame_mask.device)
        m = torch.as_tensor(known_mask, device=known.device).to(torch.bool)
        m = (m if m.dim() == 3 else m.unsqueeze(-1)).expand(b, t, known.shape[-1])[..., :MOTION_DIM]
        mf = m.to(known.dtype)
        return torch.cat([known[..., :MOTION_DIM] * mf, mf], -1)

    def denoise(self, x_t, t, tokens, token_mask, frame_mask, prefix: torch.Tensor | None = None,
                conditioned: bool = True, return_hidden: bool = False):
        """x0 prediction; ``prefix`` (B, T, 2 * 198): :meth:`prefix_features` (used by prefix models only)."""
        if not conditioned:
            tokens = torch.zeros_like(tokens)
        frame_cond = self.prefix_mlp(prefix) if self.config.prefix and prefix is not None else None
        return self.denoiser(x_t, t, tokens, token_mask, frame_mask, frame_cond=frame_cond,
                             return_hidden=return_hidden)

    def regress(self, tokens, token_mask, frame_mask, return_hidden: bool = False):
        """The regressor's one output: the network with zero motion input at step 0."""
        b, t = frame_mask.shape
        x = torch.zeros(b, t, self.dcfg.motion_dim, device=tokens.device, dtype=tokens.dtype)
        step = torch.zeros(b, dtype=torch.long, device=tokens.device)
        return self.denoiser(x, step, tokens, token_mask, frame_mask, return_hidden=return_hidden)

    # ------------------------------------------------------------------ targets
    def target(self, batch: dict) -> torch.Tensor:
        """Clean tokens (B, T, D): motion (198) [+ normalised 2D keypoints (84) with aux2d diffusion]."""
        x = self.codec.encode_aa(batch["pose"], batch["joints3d"][..., 0, :])
        if self.config.aux2d == "diffusion":
            kp, _ = normalised_kp2d(batch["kp2d"], batch["kp2d_conf"], batch["image_size"])
            x = torch.cat([x, kp], -1)
        return x

    def decode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (..., T, D) -> rot6d (..., T, 2, 16, 6), wrist (..., T, 2, 3) metres."""
        return self.codec.decode(x[..., :MOTION_DIM])

    # ------------------------------------------------------------------ inference
    def sampling_condition(self, batch: dict) -> tuple[Condition, tuple[int, int]]:
        """The condition of :meth:`sample`: (tokens, token mask, frame mask[, prefix features]), and one sample's
        shape (T, D). A prefix model reads the known prefix from ``batch["known"]`` / ``batch["known_mask"]``
        (absent: nothing known)."""
        fmask = batch["frame_mask"]
        cond = (*self.condition(batch), fmask)
        if self.config.prefix:
            cond = (*cond, self.prefix_features(batch.get("known"), batch.get("known_mask"), fmask))
        return cond, (fmask.shape[1], self.dcfg.motion_dim)

    def known_tokens(self, pose_aa: torch.Tensor, wrist: torch.Tensor, known: torch.Tensor,
                     horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A known prefix as tokens for :meth:`sample`.

        pose_aa (B, N, 2, 16, 3) flat axis-angle (MANO order, frame-0 camera), wrist (B, N, 2, 3) metres
        frame-0 camera, known (B, N, 2) bool (which hand of which frame is known; N <= horizon). Returns
        (tokens (B, horizon, D), mask (B, horizon, D) bool): frames 0..N-1 of the hands that are known; the
        rest (later frames, unknown hands, the aux2d keypoint part) is free."""
        b, n = pose_aa.shape[:2]
        if n > horizon:
            raise HandcastError(f"a known prefix of {n} frames does not fit a horizon of {horizon} frames")
        d = self.dcfg.motion_dim
        tok = torch.zeros(b, horizon, d, dtype=pose_aa.dtype, device=pose_aa.device)
        mask = torch.zeros(b, horizon, d, dtype=torch.bool, device=pose_aa.device)
        tok[:, :n, :MOTION_DIM] = self.codec.encode_aa(pose_aa, wrist.to(pose_aa.dtype))
        mask[:, :n, :MOTION_DIM] = motion_mask(known.to(pose_aa.device)) > 0
        return tok, mask

    def harmonise(self, x0: torch.Tensor, known: torch.Tensor, mask: torch.Tensor, fade: int = 16) -> torch.Tensor:
        """Move predicted motion tokens x0 (B, T, D) so that each hand continues from its last known frame.

        For every hand known in some frame of ``mask`` (B, T, D) (known tokens ``known`` (B, T, D)), with r its
        last known frame: the whole predicted motion of that hand is moved rigidly (global orientation and
        wrist path rotated about the predicted frame-r wrist by G = R_known(r) R_pred(r)^T, then translated
        onto the known frame-r wrist), and each finger joint's rotation is corrected by its frame-r difference,
        fading linearly to none ``fade`` frames after r. Imputation alone replaces the known frames but lets
        the tiny F keep its own placement from the next frame on (a jump); this keeps the sampled motion
        and its spread, and starts it at the observed hands. Hands never known are left as they are.
        """
        rp6, wp = self.codec.decode(x0[..., :MOTION_DIM])
        rk6, wk = self.codec.decode(known[..., :MOTION_DIM])
        hk = mask[..., ROT_DIM:MOTION_DIM].reshape(*mask.shape[:2], 2, 3).any(-1)  # (B, T, 2)
        b, t = hk.shape[:2]
        has = hk.any(1)  # (B, 2)
        if not bool(has.any()):
            return x0
        frames = torch.arange(t, device=x0.device)
        ref = torch.where(hk, frames[None, :, None], torch.full_like(frames[None, :, None], -1)).amax(1).clamp_min(0)
        Rp, Rk = sixd_to_rotmat(rp6), sixd_to_rotmat(rk6)  # (B, T, 2, 16, 3, 3)
        gi = ref[:, None, :, None, None, None].expand(b, 1, 2, *Rp.shape[3:])
        Rp_r, Rk_r = Rp.gather(1, gi)[:, 0], Rk.gather(1, gi)[:, 0]  # (B, 2, 16, 3, 3)
        wi = ref[:, None, :, None].expand(b, 1, 2, 3)
        wp_r, wk_r = wp.gather(1, wi)[:, 0], wk.gather(1, wi)[:, 0]  # (B, 2, 3)
        G = Rk_r[:, :, 0] @ Rp_r[:, :, 0].transpose(-1, -2)  # (B, 2, 3, 3)
        root = G[:, None] @ Rp[:, :, :, 0]
        wrist = torch.einsum("bhij,bthj->bthi", G, wp - wp_r[:, None]) + wk_r[:, None]
        dv = rotmat_to_aa(Rk_r[:, :, 1:] @ Rp_r[:, :, 1:].transpose(-1, -2))  # (B, 2, 15, 3)
        w = (1.0 - (frames[None, :, None] - ref[:, None, :]).clamp_min(0) / max(int(fade), 1)).clamp_min(0)
        fingers = aa_to_rotmat(w[..., None, None] * dv[:, None]) @ Rp[:, :, :, 1:]
        R = torch.cat([root.unsqueeze(3), fingers], 3)
        new = self.codec.encode(rotmat_to_6d(R), wrist)
        h = has[:, None, :, None, None]
        rot = torch.where(h, new[..., :ROT_DIM].reshape(b, t, 2, -1, 1), x0[..., :ROT_DIM].reshape(b, t, 2, -1, 1))
        tr = torch.where(h, new[..., ROT_DIM:MOTION_DIM].reshape(b, t, 2, 3, 1),
                         x0[..., ROT_DIM:MOTION_DIM].reshape(b, t, 2, 3, 1))
        return torch.cat([rot.reshape(b, t, ROT_DIM), tr.reshape(b, t, 6), x0[..., MOTION_DIM:]], -1)

    @torch.no_grad()
    def sample(self, batch: dict, num_samples: int = 1, sampler: str = "ddim", steps: int | None = None,
               guidance: float = 1.0, generator: torch.Generator | None = None, progress: bool = False,
               known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None, harmonise: bool = True,
               impose: bool = True, condition: bool = True):
        """``num_samples`` futures per input. Returns rot6d (B, S, T, 2, 16, 6), wrist (B, S, T, 2, 3) m,
        frame-0 camera, hands (right, left).

        The diffusion head samples as :meth:`ConditionalDiffusion.sample`; the regressor returns its single
        output S times. ``known`` (B, T, D) tokens with ``known_mask`` (B, T) or (B, T, D) bool
        (:meth:`known_tokens` makes both from a known prefix) are imposed during sampling: every sample
        reproduces them exactly (the regressor's output takes them too); with ``harmonise`` every predicted x0
        is first moved to continue from the known frames (:meth:`harmonise`).

        A prefix model (``config.prefix``) also takes the known prefix as its condition (``condition``); with
        ``impose`` False the prefix is not imposed (nor harmonised), only given as the condition."""
        if self.config.head == "diffusion":
            if known is not None and self.config.prefix and condition:
                batch = dict(batch, known=known, known_mask=known_mask)
            if not impose:
                known = known_mask = None
            return super().sample(batch, num_samples, sampler, steps, guidance, generator, progress,
                                  known=known, known_mask=known_mask,
                                  harmonise=self.harmonise if harmonise else None)
        x = self.regress(*self.sampling_condition(batch)[0])
        if known is not None:
            m = torch.as_tensor(known_mask, device=x.device).to(torch.bool)
            m = (m if m.dim() == 3 else m.unsqueeze(-1)).expand_as(x)
            if harmonise:
                x = self.harmonise(x, known.to(x), m)
            x = torch.where(m, known.to(x), x)
        b, s = x.shape[0], int(num_samples)
        return tuple(a.unsqueeze(1).expand(b, s, *a.shape[1:]) for a in self.decode(x))


def build_forecast(model_cfg: dict) -> ForecastModel:
    """The forecasting model a checkpoint's ``model`` config section describes (untrained)."""
    return ForecastModel(ForecastConfig(**model_cfg))


def load_forecast(path: str | Path, device: str | torch.device = "cpu") -> ForecastModel:
    """The forecasting model of a handcast checkpoint, in eval mode on ``device``."""
    return load_model(path, "forecast", build_forecast, device)[0]


#: the clip fields F reads (its input frame and its 3D / 2D labels)
FIELDS = ("pose", "betas", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam", "image_size")


def forecast_dataset(store, split: str, horizon: int, needs_image: bool, indices=None, transform=None) -> ClipDataset:
    """Items of the first ``horizon`` frames of each clip of a split (the input image is frame 0);
    ``transform``: an item transform (e.g. a new camera, :class:`handcast.train.augment.CameraAugment`)."""
    return ClipDataset(store, split, horizon=horizon, fields=FIELDS, load_image=needs_image, indices=indices,
                       transform=transform)
