"""Training the forecasting model F and its regressor baselines (``handcast train forecast --config tiny``).

Training sources are (store, split) pairs: lab clips (provenance "gt") and imputed clips ("imputed")
give 3D labels; "2d-only" clips give only their 2D keypoint tracks (used by the 2D heads and the
reprojection loss; their 3D fields are never read as labels). A hand absent from the input frame has its
3D losses masked for the whole clip (the model still outputs both hands). Checkpoints, resuming and DDP
as for the lifting model (:mod:`handcast.train.runner`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from handcast.conventions import MOTION_DIM
from handcast.data import ClipStore, collate
from handcast.diffusion import condition_dropout, diffusion_loss, noisy_input
from handcast.errors import HandcastError
from handcast.models.forecast import (  # noqa: F401 (load_forecast: moved)
    KP2D_DIM,
    build_forecast,
    forecast_dataset,
    load_forecast,
    normalised_kp2d,
)
from handcast.models.motion import keypoints_from_motion, motion_mask
from handcast.train.config import load_config, to_container
from handcast.train.augment import CameraAugment, augmented_wrist_statistics
from handcast.train.lift import EpochDataset, EpochSampler, image_error, wrist_statistics
from handcast.train.runner import check_training_labels, fit, motion_module_base, prepare_run


@dataclass(frozen=True)
class ForecastAugmentConfig:
    """Input-frame augmentation: pixel noise (std, [0, 1] units), brightness/contrast jitter (relative),
    2D keypoint jitter (pixels, std) and drop rate of input keypoints. Targets are never changed."""

    pixel_noise: float = 0.03
    color_jitter: float = 0.2
    kp_jitter_px: float = 1.5
    kp_drop: float = 0.05


def augment_batch(batch: dict, cfg: ForecastAugmentConfig, generator: torch.Generator | None = None) -> dict:
    """A copy of a training batch with its input frame augmented (image (B, 3, H, W) and frame-0 kp2d)."""
    out = dict(batch)
    if "image" in batch and isinstance(batch["image"], torch.Tensor):
        img = batch["image"]
        b = img.shape[0]
        g = lambda *s: torch.rand(*s, generator=generator, device=img.device)  # noqa: E731
        gain = 1.0 + cfg.color_jitter * (2 * g(b, 1, 1, 1) - 1)
        bias = 0.5 * cfg.color_jitter * (2 * g(b, 1, 1, 1) - 1)
        noise = cfg.pixel_noise * torch.randn(img.shape, generator=generator, device=img.device)
        out["image"] = (img * gain + bias + noise).clamp(0.0, 1.0)
    kp, conf = batch["kp2d"].clone(), batch["kp2d_conf"].clone()
    if cfg.kp_jitter_px > 0:
        kp[:, 0] += cfg.kp_jitter_px * torch.randn(kp[:, 0].shape, generator=generator, device=kp.device)
    if cfg.kp_drop > 0:
        drop = torch.rand(conf[:, 0].shape, generator=generator, device=conf.device) < cfg.kp_drop
        conf[:, 0] = torch.where(drop, torch.zeros_like(conf[:, 0]), conf[:, 0])
    out["kp2d"], out["kp2d_conf"] = kp, conf
    return out


def label_masks(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(has3d (B,) bool: the clip's 3D labels may be used, hand_mask (B, T, 2) bool: 3D-supervised (frame, hand))."""
    has3d = torch.tensor([p in ("gt", "imputed") for p in batch["provenance"]], device=batch["frame_mask"].device)
    present0 = batch["hand_valid"][:, 0]  # (B, 2): hand in the input image
    return has3d, batch["hand_valid"] & present0[:, None, :] & has3d[:, None, None]


def reprojection_error(kp3d: torch.Tensor, batch: dict) -> torch.Tensor:
    """Mean squared 2D error, in normalised image units ([-1, 1] across the image), of keypoints (B, T, 2, 21, 3)
    in the frame-0 camera against the observed 2D tracks (camera t), over detected keypoints of hands present
    in the input frame."""
    w = (batch["kp2d_conf"] > 0) & batch["frame_mask"][:, :, None, None] & batch["hand_valid"][:, :1, :, None]
    obs = torch.where(w.unsqueeze(-1), batch["kp2d"], torch.zeros_like(batch["kp2d"]))  # missing ones may be NaN
    return image_error(kp3d, obs, w, batch)


def random_prefix(supervised: torch.Tensor, p: float, max_frames: int,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Which motion entries a prefix model is told during one training step: (B, T, 198) bool.

    ``supervised`` (B, T, 198) bool: entries with a 3D label. Each item gets a known prefix with probability
    ``p``: half of those the first frame only (one photo), the others the first N frames, N uniform in
    2..``max_frames`` (a video context); within it, the supervised entries are known."""
    b, t = supervised.shape[:2]
    dev = supervised.device
    u = torch.rand(b, generator=generator, device=dev)
    n = torch.randint(2, max(int(max_frames), 2) + 1, (b,), generator=generator, device=dev)
    n = torch.where(u < 0.5 * p, torch.ones_like(n), n)
    n = torch.where(u < p, n, torch.zeros_like(n))
    frames = torch.arange(t, device=dev)
    return supervised & (frames[None, :] < n[:, None])[..., None]


def _lightning_module():
    class ForecastModule(motion_module_base()):
        def __init__(self, cfg: dict):
            super().__init__(cfg, build_forecast)
            self.aug = ForecastAugmentConfig(**cfg["data"]["augment"])

        def losses(self, batch):
            m, c = self.model, self.model.config
            has3d, hv = label_masks(batch)
            mask = motion_mask(hv)
            x0 = m.target(batch)
            # unsupervised entries (2D-only clips' hidden 3D, hands absent from the input frame) are zeroed, so
            # they reach the network neither through the loss nor through the noisy input
            x0 = torch.cat([x0[..., :MOTION_DIM] * mask, x0[..., MOTION_DIM:]], -1)
            kp_norm, kp_mask = normalised_kp2d(batch["kp2d"], batch["kp2d_conf"], batch["image_size"])
            kp_mask = kp_mask * batch["frame_mask"][..., None].to(kp_mask.dtype)
            if c.aux2d == "diffusion":
                mask = torch.cat([mask, kp_mask], -1)
            tokens, tmask = m.condition(batch)
            tokens = condition_dropout(tokens, c.p_token_dropout, c.p_cond_dropout)
            if c.head == "regression":
                pred, hidden = m.regress(tokens, tmask, batch["frame_mask"], return_hidden=True)
            else:
                x_t, t, _ = noisy_input(self.scheduler_, x0)
                prefix = None
                if c.prefix:
                    known = random_prefix(mask[..., :MOTION_DIM] > 0, float(self.tcfg["p_prefix"]),
                                          int(self.tcfg["prefix_max"]))
                    prefix = m.prefix_features(x0, known, batch["frame_mask"])
                pred, hidden = m.denoise(x_t, t, tokens, tmask, batch["frame_mask"], prefix, return_hidden=True)
            out = {"motion": diffusion_loss(pred, x0, mask)}
            w, wr = float(self.tcfg["aux_joints"]), float(self.tcfg["reproj"])
            if w > 0 or wr > 0:
                rot6d, wrist = m.decode(pred)
                kp = keypoints_from_motion(self.hands, rot6d, wrist, batch["betas"])
                if w > 0:
                    gt = batch["joints3d"]
                    err = ((kp - kp[..., :1, :]) - (gt - gt[..., :1, :])).pow(2).sum(-1).mean(-1)  # (B, T, 2)
                    hvf = hv.to(err.dtype)
                    out["joints"] = w * (err * hvf).sum() / hvf.sum().clamp_min(1.0)
                if wr > 0:
                    out["reproj"] = wr * reprojection_error(kp, batch)
            if c.aux2d == "regression":
                e = (m.head2d(hidden) - kp_norm).pow(2) * kp_mask
                out["kp2d"] = float(self.tcfg["w2d"]) * e.sum() / kp_mask.sum().clamp_min(1.0)
            elif c.aux2d == "diffusion":
                out["kp2d"] = float(self.tcfg["w2d"]) * diffusion_loss(pred[..., -KP2D_DIM:], x0[..., -KP2D_DIM:], kp_mask)
            out["loss"] = sum(out.values())
            return out

        def training_step(self, batch, _):
            out = self.losses(augment_batch(batch, self.aug))
            self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True, batch_size=len(batch["frame_mask"]))
            return out["loss"]

        def validation_step(self, batch, _):
            g = torch.Generator(device=batch["K"].device).manual_seed(0)
            rot6d, wrist = self.model.sample(batch, 1, self.tcfg["val_sampler"], self.tcfg["val_steps"], generator=g)
            kp = keypoints_from_motion(self.hands, rot6d[:, 0], wrist[:, 0], batch["betas"])
            err = (kp - batch["joints3d"]).norm(dim=-1).mean(-1)  # (B, T, 2) m
            _, hv = label_masks(batch)
            hvf = hv.float()
            self.log("val/M_cm", 100 * (err * hvf).sum() / hvf.sum().clamp_min(1.0), prog_bar=True, batch_size=len(hv))

    return ForecastModule


def train_forecast(config: str = "tiny", overrides: Sequence[str] = (), store: str | None = None,
                   out: str | None = None, resume: bool = False, devices: int | str = 1, accelerator: str = "cpu",
                   num_nodes: int = 1, strategy: str = "auto", max_steps: int | None = None,
                   init_backbone: str | None = None, progress: bool = True) -> Path:
    """Train F (or a regressor baseline); returns the final checkpoint ``<out>/forecast.safetensors``."""
    ov = list(overrides)
    if max_steps is not None:
        ov.append(f"train.max_steps={int(max_steps)}")
    # paths are set as plain strings, never parsed as YAML
    cfg = to_container(load_config("forecast", config, ov, paths={
        "data.store": store or None, "train.out": out or None, "train.init_backbone": init_backbone or None}))
    d, t, mc = cfg["data"], cfg["train"], cfg["model"]
    needs_image = mc.get("image") is not None
    if not d["train"]:
        raise HandcastError("forecast config: data.train lists no training sources")
    stores: dict[str, ClipStore] = {}

    def open_store(path):
        path = str(path or d["store"])
        if path not in stores:
            stores[path] = ClipStore(path)
        return stores[path]

    cam = dict(d["camera"])
    cam_p = float(cam.pop("p"))
    cam_stats = cam.pop("wrist_stats")  # augmented or store (checked when the config is loaded)
    if cam_p > 0 and needs_image:
        raise HandcastError("data.camera.p > 0 re-views 3D clips through new cameras, which an image model's input "
                            "image cannot follow: use it with a keypoint-only model (model.image=null)")
    camera = CameraAugment(cam_p, seed=int(t["seed"]), **cam) if cam_p > 0 else None
    parts, stats_views, stats_parts = [], [], []
    for src in d["train"]:
        st = open_store(src.get("store"))
        parts.append(forecast_dataset(st, src["split"], int(d["horizon"]), needs_image))
        view = st.split(src["split"])
        check_training_labels(view)
        if any(p in ("gt", "imputed") for p in view.clip_field("provenance")):
            stats_views.append(view)
            stats_parts.append(parts[-1])
    if not stats_views:
        raise HandcastError("forecast training needs at least one source with 3D labels (provenance gt or imputed)")
    val_view = open_store(None).split(d["val_split"])
    # the model, and the --init-backbone weights, before the run folder is made: a bad file makes nothing
    torch.manual_seed(int(t["seed"]))
    module = _lightning_module()(cfg)
    if t.get("init_backbone"):
        if not needs_image:
            raise HandcastError("--init-backbone given but this model has no image encoder (model.image is null)")
        if not Path(t["init_backbone"]).is_file():
            raise HandcastError(f"checkpoint not found: {t['init_backbone']}")
        from handcast.models.vit import load_backbone

        load_backbone(module.model.backbone, t["init_backbone"])
    run = prepare_run(t["out"], resume, int(t["seed"]))
    train_ds = torch.utils.data.ConcatDataset(parts)
    val_ds = forecast_dataset(open_store(None), d["val_split"], int(d["horizon"]), needs_image,
                              indices=np.arange(min(len(val_view), int(t["val_clips"]))))
    if camera is None or cam_stats == "store":
        stats = [wrist_statistics(v) for v in stats_views]
        mean = np.mean([s[0] for s in stats], 0)
        std = np.mean([s[1] for s in stats], 0)
    else:  # the wrists as training sees them: through the store's cameras and the new ones, in their proportion
        mean, std = augmented_wrist_statistics(stats_parts, camera, int(t["seed"]))

    module.model.codec.set_statistics(torch.from_numpy(mean), torch.from_numpy(std))
    nw = int(t["num_workers"])
    if camera is None:
        sampler = torch.utils.data.RandomSampler(train_ds, generator=torch.Generator().manual_seed(int(t["seed"])))
    else:  # new draws every epoch, also inside persistent workers
        sampler = EpochSampler(len(train_ds), int(t["seed"]))
        train_ds = EpochDataset(train_ds, camera)
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=int(t["batch_size"]), collate_fn=collate,
                                           sampler=sampler, num_workers=nw,
                                           drop_last=True, persistent_workers=nw > 0)
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=int(t["batch_size"]), collate_fn=collate, num_workers=0)
    return fit(module, train_dl, val_dl, run, t, "forecast", mc, resume=resume, devices=devices,
               accelerator=accelerator, num_nodes=num_nodes, strategy=strategy, progress=progress)

