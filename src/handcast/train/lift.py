"""Training the lifting model L with Lightning (``handcast train lift --config tiny``).

Checkpoints: the final and the best weights are written as handcast safetensors checkpoints (weights +
resolved config, see :mod:`handcast.models.checkpoint`); Lightning's own ``last.ckpt`` in the run folder
holds the optimiser state for resuming an interrupted run (``--resume``). The same command trains on
several GPUs or nodes with DDP (``--devices``, ``--num-nodes``, ``--strategy ddp``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from handcast.data import ClipDataset, ClipStore, collate
from handcast.data.dataset import wrist_statistics
from handcast.errors import HandcastError
from handcast.diffusion import condition_dropout, diffusion_loss, noisy_input
from handcast.fit.impute import impute, lift_initialiser  # noqa: F401 (moved to handcast.fit.impute)
from handcast.geometry import project, transform_points
from handcast.hand import HandModel
from handcast.models.checkpoint import load_model
from handcast.models.lifting import MODALITIES, LiftingConditioning, build_lift, load_lift  # noqa: F401 (load_lift: moved)
from handcast.models.motion import keypoints_from_motion, motion_mask
from handcast.train.augment import LiftAugment, LiftAugmentConfig, augmented_wrist_statistics
from handcast.train.config import load_config, to_container
from handcast.train.runner import check_training_labels, fit, motion_module_base, prepare_run


#: the clip fields L trains on
LIFT_FIELDS = ("pose", "betas", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam", "image_size")


def rest_wrist_of(hands: HandModel):
    """``rest_wrist`` for :class:`~handcast.data.ClipDataset`: betas (..., 10) -> the hand model's rest wrist
    J0 (..., 3) in metres (numpy)."""

    def rest_wrist(betas):
        with torch.no_grad():
            return hands.rest_joints(torch.as_tensor(betas, dtype=torch.float32))[..., 0, :].numpy()

    return rest_wrist


#: cap of one keypoint's squared 2D error in :func:`image_error` (normalised image units: 1 = half the image)
IMAGE_ERROR_CAP = 1.0


def image_error(kp3d: torch.Tensor, target_uv: torch.Tensor, weight: torch.Tensor, batch: dict) -> torch.Tensor:
    """Weighted mean squared 2D distance, in normalised image units ([-1, 1] across the image), between
    keypoints kp3d (B, T, 2, 21, 3) in the frame-0 camera projected into camera t (``batch``'s world_to_cam,
    K, image_size) and ``target_uv`` (B, T, 2, 21, 2) pixels; ``weight`` (B, T, 2, 21).

    Each keypoint's squared error is capped at :data:`IMAGE_ERROR_CAP`: a keypoint predicted on or behind the
    camera plane projects to ~1e9 px, and one such point in a batch would otherwise make the loss ~1e9 and
    its gradient (clipped, and through Adam's second moments for many steps after) all about that point. A
    capped keypoint adds no gradient; the diffusion loss brings it back."""
    uv = project(transform_points(batch["world_to_cam"][:, :, None, None], kp3d), batch["K"][:, None, None, None],
                 behind="clamp")
    wh = batch["image_size"].to(uv.dtype)[:, None, None, None, :]
    err = ((2 * (uv - target_uv) / wh) ** 2).sum(-1).clamp(max=IMAGE_ERROR_CAP)
    w = weight.to(err.dtype)
    return (err * w).sum() / w.sum().clamp_min(1.0)


def reprojection_to_truth(kp3d: torch.Tensor, batch: dict) -> torch.Tensor:
    """:func:`image_error` of keypoints (B, T, 2, 21, 3) in the frame-0 camera against the ground-truth 3D
    keypoints projected into camera t.

    Against the clean projection of the truth, not the (jittered) input tracks, so the model learns to put
    each hand on its viewing rays without learning the noise. Hands that are invalid or whose truth is not
    in front of the camera are left out."""
    cam_gt = transform_points(batch["world_to_cam"][:, :, None, None], batch["joints3d"])
    uv_gt = project(cam_gt, batch["K"][:, None, None, None], behind="clamp")
    ok = batch["hand_valid"][..., None] & (cam_gt[..., 2] > 0.05) & batch["frame_mask"][:, :, None, None]
    return image_error(kp3d, uv_gt, ok, batch)


def _lightning_module():
    class LiftModule(motion_module_base()):
        def __init__(self, cfg: dict):
            super().__init__(cfg, build_lift)

        def losses(self, batch):
            m = self.model
            x0 = m.target(batch)
            mask = motion_mask(batch["hand_valid"])
            tokens, tmask = m.condition(batch)
            if tokens is not None:
                tokens = condition_dropout(tokens, m.config.p_token_dropout, m.config.p_cond_dropout)
            x_t, t, _ = noisy_input(self.scheduler_, x0)  # diffusers moves its tables to x0's device
            pred = m.denoise(x_t, t, tokens, tmask, batch["frame_mask"])
            out = {"diffusion": diffusion_loss(pred, x0, mask)}
            w, wr = float(self.tcfg["aux_joints"]), float(self.tcfg.get("aux_reproj", 0.0))
            if w > 0 or wr > 0:
                rot6d, wrist = m.codec.decode(pred)
                kp = keypoints_from_motion(self.hands, rot6d, wrist, batch["betas"])
                gt = batch["joints3d"]
                if w > 0:
                    err = ((kp - kp[..., :1, :]) - (gt - gt[..., :1, :])).pow(2).sum(-1).mean(-1)  # (B, T, 2)
                    hv = batch["hand_valid"].float()
                    out["joints"] = w * (err * hv).sum() / hv.sum().clamp_min(1.0)
                if wr > 0:
                    out["reproj"] = wr * reprojection_to_truth(kp, batch)
            out["loss"] = sum(out.values())
            return out

        def training_step(self, batch, _):
            out = self.losses(batch)
            self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True, batch_size=len(batch["frame_mask"]))
            return out["loss"]

        def validation_step(self, batch, _):
            rot6d, wrist = self.model.sample(batch, 1, self.tcfg["val_sampler"], self.tcfg["val_steps"],
                                             generator=torch.Generator(device=batch["K"].device).manual_seed(0))
            kp = keypoints_from_motion(self.hands, rot6d[:, 0], wrist[:, 0], batch["betas"])
            err = (kp - batch["joints3d"]).norm(dim=-1).mean(-1)  # (B, T, 2) m
            hv = batch["hand_valid"].float()
            m_cm = 100 * (err * hv).sum() / hv.sum().clamp_min(1.0)
            self.log("val/M_cm", m_cm, prog_bar=True, batch_size=len(hv))

    return LiftModule


class EpochSampler(torch.utils.data.Sampler):
    """Shuffles ``n`` items anew each epoch and yields ``epoch * n + index``, so that the epoch reaches the
    dataset even inside persistent DataLoader workers (Lightning calls ``set_epoch`` on samplers)."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        # advance by itself too, for wrappers (e.g. Lightning's distributed wrapper) that never call set_epoch
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return iter((epoch * self.n + order).tolist())


class EpochDataset(torch.utils.data.Dataset):
    """Decodes :class:`EpochSampler` indices: item ``epoch * n + i`` is item ``i`` of ``dataset`` drawn with
    that epoch's random crop and augmentation."""

    def __init__(self, dataset, augment=None):
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, k: int):
        epoch, i = divmod(int(k), len(self.dataset))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        item = self.dataset[i]
        if self.augment is not None:
            self.augment.set_epoch(epoch)
            item = self.augment(item)
        return item


def _init_model(path: str, model_cfg: dict):
    """The lifting model of checkpoint ``path`` to start from; refused (one line) unless its model config is
    this run's, or this run's with more condition modalities switched on (the model grows: the new
    modalities' token MLPs are added with a zero last layer, so in the ``add`` and ``fuse`` modes the grown
    model starts out computing exactly what the checkpoint did)."""
    if not Path(path).is_file():
        raise HandcastError(f"--init checkpoint not found: {path}")
    model, meta = load_model(path, "lift", build_lift)  # read once: weights and the stored config
    stored = json.loads(meta["handcast_config"])
    if _normalised(stored) == _normalised(model_cfg):  # equal once keys added since read as their defaults
        return model
    added = _added_modalities(stored, model_cfg)
    if added is None:
        diff = sorted(k for k in set(stored) | set(model_cfg) if stored.get(k) != model_cfg.get(k))
        raise HandcastError(f"--init {path}: its model config differs from this run's in {', '.join(diff)} "
                            "(only switching on more condition modalities is allowed)")
    grown = build_lift(model_cfg)
    state = model.state_dict()
    missing, unexpected = grown.load_state_dict(state, strict=False)
    prefixes = tuple(f"conditioner.mlps.{m}." for m in added)
    if unexpected or any(not k.startswith(prefixes) for k in missing):
        raise HandcastError(f"--init {path}: its weights do not fit this run's model")
    with torch.no_grad():
        for m in added:
            last = grown.conditioner.mlps[m].net[-1]
            last.weight.zero_()
            last.bias.zero_()
    return grown


def _normalised(model_cfg: dict) -> dict:
    """A lift model config with its conditioning completed by the defaults (a checkpoint written before a
    conditioning key existed equals today's config with that key at its default)."""
    try:
        return dict(model_cfg, conditioning=LiftingConditioning(**model_cfg["conditioning"]).to_dict())
    except (TypeError, KeyError, HandcastError):
        return model_cfg


def _added_modalities(stored: dict, model_cfg: dict) -> list[str] | None:
    """The condition modalities ``model_cfg`` switches on beyond ``stored``'s, when that is the only
    difference between the two model configs (missing keys read as their defaults); else None."""
    a, b = _normalised(stored), _normalised(model_cfg)
    if set(a) != set(b) or any(a[k] != b[k] for k in a if k != "conditioning"):
        return None
    ca, cb = a["conditioning"], b["conditioning"]
    added = [m for m in MODALITIES if cb.get(m) and not ca.get(m)]
    rest = lambda c: {k: v for k, v in c.items() if k not in added}  # noqa: E731
    return added if added and rest(ca) == rest(cb) else None


def train_lift(config: str = "tiny", overrides: Sequence[str] = (), store: str | None = None,
               out: str | None = None, resume: bool = False, devices: int | str = 1, accelerator: str = "cpu",
               num_nodes: int = 1, strategy: str = "auto", max_steps: int | None = None, progress: bool = True,
               init: str | None = None) -> Path:
    """Train L; returns the path of the final safetensors checkpoint (``<out>/lift.safetensors``).

    init (or ``train.init``): a handcast lift checkpoint whose weights (codec statistics included, unless
    ``data.wrist_stats`` is ``augmented``) start the run, for fine-tuning, e.g. under new augmentation; its
    model config must equal this run's.

    ``data.wrist_stats``: the motion codec's wrist mean and std: ``store`` from the training split's stored
    clips, ``augmented`` from its clips as the augmentation shows them (with ``p_new_camera`` > 0 the wrists
    of real-footage cameras lie 0.15-3 m away, tens of the store's standard deviations off its mean)."""
    ov = list(overrides)
    if max_steps is not None:
        ov.append(f"train.max_steps={int(max_steps)}")
    # paths are set as plain strings, never parsed as YAML
    cfg = to_container(load_config("lift", config, ov, paths={"data.store": store or None, "train.out": out or None,
                                                                  "train.init": init or None}))
    d, t = cfg["data"], cfg["train"]
    st = ClipStore(d["store"])
    check_training_labels(st.split(d["train_split"]))
    start = _init_model(t["init"], cfg["model"]) if t.get("init") else None
    hands = HandModel("auto")
    aug = LiftAugment(LiftAugmentConfig.from_dict(d["augment"]), seed=int(t["seed"]), hands=hands)
    run = prepare_run(t["out"], resume, int(t["seed"]))  # after the input checks: nothing made for a bad input

    train_ds = EpochDataset(ClipDataset(st, d["train_split"], horizon=int(d["horizon"]), fields=LIFT_FIELDS,
                                        random_crop=True, seed=int(t["seed"]), rest_wrist=rest_wrist_of(hands)), aug)
    val_view = st.split(d["val_split"])
    val_idx = np.arange(min(len(val_view), int(t["val_clips"])))
    val_ds = ClipDataset(st, d["val_split"], horizon=int(d["horizon"]), fields=LIFT_FIELDS, indices=val_idx)
    module = _lightning_module()(cfg)
    if start is not None:
        module.model.load_state_dict(start.state_dict())  # the codec statistics of the start model too
    if d["wrist_stats"] == "augmented":  # the wrists as training sees them (a separate draw: aug's epoch untouched)
        stat_aug = LiftAugment(aug.config, seed=int(t["seed"]) + 1, hands=hands)
        mean, std = augmented_wrist_statistics([train_ds.dataset], stat_aug, int(t["seed"]))
        module.model.codec.set_statistics(torch.from_numpy(mean), torch.from_numpy(std))
    elif start is None:
        mean, std = wrist_statistics(st.split(d["train_split"]))
        module.model.codec.set_statistics(torch.from_numpy(mean), torch.from_numpy(std))
    nw = int(t["num_workers"])
    train_dl = torch.utils.data.DataLoader(train_ds, batch_size=int(t["batch_size"]), collate_fn=collate,
                                           sampler=EpochSampler(len(train_ds), int(t["seed"])), num_workers=nw,
                                           drop_last=True, persistent_workers=nw > 0)
    val_dl = torch.utils.data.DataLoader(val_ds, batch_size=int(t["batch_size"]), collate_fn=collate, num_workers=0)

    return fit(module, train_dl, val_dl, run, t, "lift", cfg["model"], resume=resume, devices=devices,
               accelerator=accelerator, num_nodes=num_nodes, strategy=strategy, progress=progress)

