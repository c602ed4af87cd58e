"""Training the cascaded diffusion pose estimator and its regressor baseline (``handcast train pose``).

Stages, in order, each a LightningModule trained by :func:`handcast.train.runner.fit` as the lifting and
forecasting models are (AdamW with a warm-up + cosine schedule, gradient clipping, CSV logs, ``--resume``,
DDP; docs/pose.md):

1. ``ae``        mesh autoencoder on meshes sampled from the hand model's pose and shape space (plus the
                 training crops' meshes): PCA front end, then the MLP bottleneck.
2. ``joint``     backbone + stage 1 (joint diffusion) on the training crops.
3. ``mesh``      first the stage-1 hypotheses of every training crop (a few DDIM step counts, the noisy
                 training keypoints they were drawn with are kept); then stage 2 (mesh latent diffusion)
                 with the backbone frozen, on those hypotheses (and a fraction of ground-truth joints).
4. ``regressor`` the single-stage baseline (its own backbone), trained as long as stage 1.

Outputs in the run folder (``train.out``): ``pose.safetensors`` (the cascade; rewritten after each cascade
stage, its metadata lists the stages done), ``regressor.safetensors``, ``hyps.npz``, ``config.yaml`` (the
resolved config), ``log.jsonl`` (one JSON line per stage: losses, timings, validation numbers) and, per
stage, Lightning's training state ``last_<stage>.ckpt`` (a killed stage resumes from it) and CSV logs
``logs/<stage>/``. A resumed run skips the stages its checkpoints already hold.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from handcast.data.crops import CAMERA_AUG_DEFAULTS, CropBatches, CropSet, camera_views
from handcast.diffusion import make_scheduler
from handcast.errors import HandcastError
from handcast.eval.metrics import pa_mpjpe, pa_mpvpe
from handcast.geometry import aa_to_6d
from handcast.io import atomic_path, load_npz, save_npz
from handcast.models.cascade.handutil import finger_pose_pool, sample_hands, sample_meshes
from handcast.models.cascade.model import (
    PoseCascade,
    RegressorModel,
    load_cascade,
    save_cascade,
    save_regressor,
)
from handcast.synth.crops import build_crops
from handcast.train.config import load_config, to_container
from handcast.train.lift import EpochSampler
from handcast.train.runner import check_run_folder, cosine_lr_factor, fit, prepare_run

ALL_STAGES: tuple[str, ...] = ("ae", "joint", "mesh", "regressor")
VAL_ITEMS = 128  # validation on the first test crops


# ------------------------------------------------------------------------------------------ helpers

def _rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def _log(run: Path, record: dict, progress: bool) -> None:
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    if progress:
        print(json.dumps(record, sort_keys=True))


def _device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


class _StepBatches(torch.utils.data.Dataset):
    """Training batches, one per item: item ``k`` is ``draw(rng)`` with a numpy generator seeded by
    (``*seed``, k), so a fixed seed gives the same batches. Read with :class:`handcast.train.lift.EpochSampler`
    (``steps`` items an epoch, new keys every epoch), each DDP process draws its own batches."""

    def __init__(self, steps: int, draw: Callable[[np.random.Generator], dict], seed: Sequence[int]):
        self.steps, self.draw, self.seed = int(steps), draw, [int(s) for s in seed]

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, k: int) -> dict:
        return self.draw(np.random.default_rng([*self.seed, int(k)]))


def _crop_batch(batches: CropBatches, idx, rng: np.random.Generator | None = None, fields: Sequence[str] = (),
               images: bool = True) -> dict:
    """The batch of crops ``idx`` as tensors on ``batches``' device: ``idx`` (B,), ``kp`` (B, 21, 2) crop px and
    ``conf`` (B, 21) (with ``rng`` the training jitter of :meth:`CropBatches.keypoints`, else the detector's),
    ``K`` (B, 3, 3) crop intrinsics, ``images`` (B, 3, 256, 192) normalised (colour jitter with ``rng``) unless
    ``images`` is false, and the per-crop ``fields`` (joints, vertices: m, root-relative, canonical camera frame;
    pose, betas)."""
    kp, c = batches.keypoints(idx, rng)
    out = {"idx": torch.as_tensor(np.asarray(idx)), "kp": kp, "conf": c, "K": batches.tensor("K_crop", idx),
           **{f: batches.tensor(f, idx) for f in fields}}
    if images:
        out["images"] = batches.images(idx, rng)
    return out


def _val_batches(test: CropBatches | None) -> list[dict] | None:
    """The validation batch: the first :data:`VAL_ITEMS` test crops, detector keypoints, no jitter."""
    if test is None:
        return None
    return [_crop_batch(test, np.arange(min(VAL_ITEMS, test.n)), None, ("joints", "vertices"))]


# ------------------------------------------------------------------------------------------ stage modules

def _stage_modules() -> dict:
    """The LightningModule of each stage, by name (built on first use: lightning is imported lazily)."""
    import lightning as L


    class Stage(L.LightningModule):
        """One stage on ``model``: the parameters of the ``trained`` submodules are optimised (the others are
        frozen) by AdamW (weight decay 1e-4) under the warm-up + cosine schedule of the stage's ``steps``.
        Subclasses give ``losses(batch) -> dict`` (with "loss") and may log ``val/...`` numbers in
        ``validation_step``; :meth:`record` is the stage's log line."""

        def __init__(self, name: str, model, trained, cfg: dict):
            super().__init__()
            self.name, self.model, self.cfg, self.trained = name, model, cfg, list(trained)
            self.t, self.seed = cfg["train"][name], int(cfg["train"]["seed"])
            keep = {id(p) for m in trained for p in m.parameters()}
            for p in model.parameters():
                p.requires_grad_(id(p) in keep)
            self.hist: dict[str, deque] = {}
            self.val: dict[str, float] = {}
            self.seconds = 0.0

        def configure_optimizers(self):
            opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=float(self.t["lr"]),
                                    weight_decay=1e-4)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine_lr_factor(int(self.t["steps"])))
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

        def generator(self) -> torch.Generator:
            """This step's generator (diffusion noise), seeded by (seed, stage, global step, process)."""
            key = [self.seed, ALL_STAGES.index(self.name), self.global_step, self.global_rank]
            return torch.Generator(device=self.device).manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))

        def training_step(self, batch, _):
            out = self.losses(batch)
            self.log_dict({f"train/{k}": v for k, v in out.items()}, prog_bar=True,
                          batch_size=len(next(iter(batch.values()))))
            for k, v in out.items():
                self.hist.setdefault(k, deque(maxlen=50)).append(float(v.detach()))
            return out["loss"]

        def log_val(self, batch, joints, vertices=None) -> None:
            """Log the PA-MPJPE (and PA-MPVPE) in mm of predictions for a validation batch."""
            n = len(batch["idx"])
            self.log("val/pa_mpjpe_mm", float(pa_mpjpe(joints, batch["joints"]).mean()), prog_bar=True, batch_size=n,
                     sync_dist=True)
            if vertices is not None:
                self.log("val/pa_mpvpe_mm", float(pa_mpvpe(vertices, batch["vertices"]).mean()), prog_bar=True,
                         batch_size=n, sync_dist=True)

        def on_fit_start(self):
            self.model.eval()  # the frozen parts stay in eval mode (Lightning keeps the modes it finds)
            for m in self.trained:
                m.train()

        def on_train_start(self):
            self._t0 = time.perf_counter()

        def on_train_end(self):
            self.seconds = time.perf_counter() - self._t0

        def on_validation_end(self):
            self.val = {k.replace("/", "_"): round(float(v), 3) for k, v in self.trainer.callback_metrics.items()
                        if k.startswith("val/")}

        def record(self) -> dict:
            return {"stage": self.name, "steps": int(self.t["steps"]), "seconds": round(self.seconds, 1),
                    **{f"final_{k}": float(np.mean(v)) for k, v in self.hist.items()}, **self.val}

    class AEStage(Stage):
        """Encoder + decoder of ``model.ae`` on whitened PCA coefficients (batches: ``coef`` (B, K))."""

        def __init__(self, model, cfg: dict):
            super().__init__("ae", model, [model.ae.encoder, model.ae.decoder], cfg)

        def losses(self, batch):
            ae, c = self.model.ae, batch["coef"]
            r = ae.decoder(ae.encoder(c))
            return {"loss": ((r - c) * ae.coef_std).pow(2).sum(-1).mean() / ae.num_vertices * 1e4}  # mean sq. vertex error, cm^2

    class JointStage(Stage):
        """Backbone + stage 1 (batches: :func:`_crop_batch` with joints)."""

        def __init__(self, model, cfg: dict):
            super().__init__("joint", model, [model.backbone, model.joint], cfg)
            self.sched = make_scheduler("ddpm", model.diffusion)

        def losses(self, b):
            feats = self.model.backbone(b["images"])
            return self.model.joint.loss(self.sched, feats, b["kp"], b["conf"], b["K"], b["joints"], self.generator(),
                                         image_mask=b.get("image_mask"))

        def validation_step(self, b, _):
            g = torch.Generator(device=self.device).manual_seed(0)
            js = self.model.joint.sample(self.model.backbone(b["images"]), b["kp"], b["conf"], b["K"], 1, "ddim", 5, g)
            self.log_val(b, js[:, 0])

    class MeshStage(Stage):
        """Stage 2 on stage-1 hypotheses, backbone and autoencoder frozen (batches: :func:`_crop_batch` with
        joints and vertices, no images, plus ``k`` (B,) the hypothesis to use and ``gt`` (B,) bool: use the
        ground-truth joints with freshly jittered keypoints instead). At the start of training, on the
        training device: the backbone features of every training crop, the stage-1 hypotheses (unless given;
        then written by ``save_hyps``) and the normalised mesh latents of the training crops."""

        def __init__(self, model, cfg: dict, batches: CropBatches, hyps: dict | None, save_hyps, progress: bool):
            super().__init__("mesh", model, [model.mesh], cfg)
            self.sched = make_scheduler("ddpm", model.diffusion)
            self.batches, self.hyps, self.save_hyps, self.progress = batches, hyps, save_hyps, progress

        def on_fit_start(self):
            m, b, ae = self.model, self.batches, self.model.ae
            self.feats = backbone_features(m, b)
            if self.hyps is None:
                self.hyps = sample_hypotheses(m, self.cfg, b, self.feats, self.progress)
                if self.trainer.is_global_zero and self.save_hyps is not None:
                    self.save_hyps(self.hyps)
            self.h = {k: torch.as_tensor(v, device=self.device) for k, v in self.hyps.items()}
            verts = b.tensor("vertices", np.arange(b.n)).to(self.device)
            with torch.no_grad():
                self.lat = torch.cat([ae.normalise(ae.encode(verts[i:i + 256])) for i in range(0, b.n, 256)])
            super().on_fit_start()

        def losses(self, b):
            i, k, gt, ae = b["idx"], b["k"], b["gt"], self.model.ae
            joints = torch.where(gt[:, None, None], b["joints"], self.h["joints"][i, k])
            kp = torch.where(gt[:, None, None], b["kp"], self.h["kp2d"][i, k])
            c = torch.where(gt[:, None], b["conf"], self.h["conf"][i, k])
            f = None if self.feats is None else self.feats[i]
            return self.model.mesh.loss(self.sched, f, kp, c, b["K"], joints, self.lat[i],
                                        lambda x: ae.decode(ae.denormalise(x)), b["vertices"], self.generator())

        def validation_step(self, b, _):
            g = torch.Generator(device=self.device).manual_seed(0)
            out = self.model.estimate_crops(b["images"], b["kp"], b["conf"], b["K"], 5, "ddim", 1,
                                            aggregations=("median",), generator=g)
            self.log_val(b, *out["aggregated"]["median"])

    class RegressorStage(Stage):
        """The single-stage baseline (batches: :func:`_crop_batch` with joints, vertices, pose and betas)."""

        def __init__(self, model, cfg: dict):
            super().__init__("regressor", model, [model], cfg)

        def losses(self, b):
            out = self.model.predict(b["images"], b["kp"], b["conf"], b["K"])
            v_err = ((out["vertices"] - b["vertices"]) * 100).pow(2).sum(-1).mean()
            j_err = ((out["joints"] - b["joints"]) * 100).pow(2).sum(-1).mean()
            p_err = (out["rot6d"] - aa_to_6d(b["pose"])).pow(2).sum(-1).mean()
            b_err = (out["betas"] - b["betas"]).pow(2).mean()
            return {"loss": v_err + j_err + p_err + 0.1 * b_err, "vertices": v_err, "joints": j_err, "pose": p_err,
                    "betas": b_err}

        def validation_step(self, b, _):
            out = self.model.predict(b["images"], b["kp"], b["conf"], b["K"])
            self.log_val(b, out["joints"], out["vertices"])

    return {"ae": AEStage, "joint": JointStage, "mesh": MeshStage, "regressor": RegressorStage}


def _fit_stage(module, draw, val: list[dict] | None, progress: bool, run: str | Path | None = None,
               resume: bool = False, devices: int | str = 1, accelerator: str = "cpu", num_nodes: int = 1,
               strategy: str = "auto") -> dict:
    """Train a stage module through :func:`handcast.train.runner.fit` on batches ``draw(rng)`` (validation
    batches ``val``: once, at the end) and return its log record. run: the run folder (None: a temporary
    one); ``resume`` continues the stage from ``<run>/last_<stage>.ckpt``; devices, accelerator, num_nodes,
    strategy: as for :func:`handcast.train.lift.train_lift`."""
    tr, steps = module.cfg["train"], int(module.t["steps"])
    seed = (int(tr["seed"]), ALL_STAGES.index(module.name))
    train_dl = torch.utils.data.DataLoader(_StepBatches(steps, draw, seed), batch_size=None,
                                           sampler=EpochSampler(steps, seed[0]))
    val_dl = None if val is None else torch.utils.data.DataLoader(val, batch_size=None)
    t = {"max_steps": steps, "grad_clip": tr["grad_clip"], "val_every_steps": steps,
         "save_every_steps": tr.get("save_every_steps", steps)}
    with tempfile.TemporaryDirectory() if run is None else contextlib.nullcontext(run) as folder:
        fit(module, train_dl, val_dl, Path(folder), t, resume=resume, devices=devices, accelerator=accelerator,
            num_nodes=num_nodes, strategy=strategy, progress=progress, name=module.name)
    module.model.eval()
    for p in module.model.parameters():
        p.requires_grad_(True)
    rec = module.record()
    if val:
        rec["val_items"] = len(val[0]["idx"])
    return rec


# ------------------------------------------------------------------------------------------ stages

def train_ae(model, cfg: dict, train_crops=None, test_crops=None, progress: bool = True, **fit_kw) -> dict:
    """Stage ``ae`` on ``model.ae`` (in place). Returns the log record (reconstruction errors in mm).
    fit_kw: run folder, resume and devices (:func:`_fit_stage`; default: one CPU, a temporary folder)."""
    t, seed = cfg["train"]["ae"], int(cfg["train"]["seed"])
    ae, hm = model.ae, model.hands
    g = torch.Generator().manual_seed(seed)
    n = int(t["meshes"])
    fingers = torch.as_tensor(finger_pose_pool(hm, max(n, 2000), seed), dtype=torch.float32)
    chunks = [sample_meshes(hm, min(1000, n - i), g, fingers) for i in range(0, n, 1000)]
    meshes = torch.cat(chunks)
    if t.get("crop_meshes", True) and train_crops is not None:
        meshes = torch.cat([meshes, torch.as_tensor(train_crops.arrays["vertices"])])
    held = sample_meshes(hm, 500, torch.Generator().manual_seed(seed + 1), fingers)
    dev = _device(model)
    with torch.no_grad():
        canon = meshes.to(dev) @ ae.canonical_rotation(meshes.to(dev))
        pca_err = ae.fit_pca(canon)
        coef = ae.to_coefficients(canon).cpu()
    bs = int(t["batch_size"])
    rec = _fit_stage(_stage_modules()["ae"](model, cfg), lambda rng: {"coef": coef[rng.integers(0, len(coef), bs)]},
                     None, progress, **fit_kw)
    dev = _device(model)
    meshes, held = meshes.to(dev), held.to(dev)

    def err(v):
        return round(1000 * float((ae(v) - v).norm(dim=-1).mean()), 3)

    with torch.no_grad():
        ae.set_latent_statistics(ae.encode(meshes))
        rec.update({"pca_floor_mm": round(1000 * pca_err, 3), "recon_heldout_mm": err(held),
                    "recon_train_mm": err(meshes[:1000]), "num_meshes": int(meshes.shape[0])})
        if test_crops is not None:
            rec["recon_test_crops_mm"] = err(torch.as_tensor(test_crops.arrays["vertices"], device=dev))
    return rec


def hand_pool(hand_model, n: int, seed: int) -> np.ndarray:
    """(n, 21, 3) root-relative right-hand keypoints (m; wrist = 0) of random hands, no image: the finger
    poses of :func:`~handcast.models.cascade.handutil.finger_pose_pool`, random global orientations and shapes
    (:func:`~handcast.models.cascade.handutil.sample_hands`). Deterministic given ``seed``."""
    fingers = torch.as_tensor(finger_pose_pool(hand_model, max(n, 2000), seed), dtype=torch.float32)
    g = torch.Generator().manual_seed(seed)
    return torch.cat([sample_hands(hand_model, min(1000, n - i), g, fingers)[1]
                      for i in range(0, n, 1000)]).cpu().numpy().astype(np.float32)


def camera_batch(b: dict, rng: np.random.Generator, data_cfg: dict,
                 p_keypoints_only: float = 0.0, pool: np.ndarray | None = None) -> dict:
    """Stage-1 training batch ``b`` (:func:`_crop_batch` with joints) with the camera augmentation of
    ``data_cfg["camera_aug"]`` (keys of :data:`~handcast.data.crops.CAMERA_AUG_DEFAULTS`) and keypoints-only
    items: each item is re-viewed with probability ``camera_aug.p`` by a random camera of real photos
    (:func:`~handcast.data.crops.camera_views`: joints, K and keypoints replaced, the keypoints the exact
    projections of the turned joints, then jittered and dropped as the training keypoints are) and then hides
    its image (which no longer shows it); any other item hides its image with probability
    ``p_keypoints_only``. pool: (P, 21, 3) root-relative hands without images (:func:`hand_pool`); with
    probability ``data_cfg["pool_hands"]["p"]`` an item becomes one of them, re-viewed as above (more
    articulations than the crop set has, for the keypoints-only estimate). Adds ``image_mask`` (B,) (1 image
    used, 0 hidden). Draws nothing from ``rng`` when all probabilities are 0 (then ``b`` is returned unchanged)."""
    aug = dict(CAMERA_AUG_DEFAULTS, **(data_cfg.get("camera_aug") or {}))
    p_aug, p_kp = float(aug["p"]), float(p_keypoints_only)
    p_pool = float((data_cfg.get("pool_hands") or {}).get("p", 0.0)) if pool is not None and len(pool) else 0.0
    if p_aug <= 0 and p_kp <= 0 and p_pool <= 0:
        return b
    n = len(b["idx"])
    keep = rng.random(n) >= p_kp
    viewed = rng.random(n) < p_aug if p_aug > 0 else np.zeros(n, bool)
    pooled = rng.random(n) < p_pool if p_pool > 0 else np.zeros(n, bool)
    sel = np.flatnonzero(viewed | pooled)
    if len(sel):
        dev = b["kp"].device
        joints, from_pool = b["joints"][sel].cpu().numpy(), pooled[sel]
        if from_pool.any():
            joints[from_pool] = pool[rng.integers(0, len(pool), int(from_pool.sum()))]
        v = camera_views(joints, rng, aug)
        sigma = rng.uniform(0, float(data_cfg.get("kp_noise_px", 0.0)), (len(sel), 1, 1))
        kp = v["kp2d"] + rng.standard_normal((len(sel), 21, 2)) * sigma
        c = (rng.random((len(sel), 21)) >= float(data_cfg.get("p_drop_kp", 0.0))).astype(np.float32)
        kp = np.where(c[..., None] > 0, kp, 0.0)
        t = torch.as_tensor(sel, device=dev)
        b = dict(b)
        for key, val in (("kp", kp), ("conf", c), ("K", v["K_crop"]), ("joints", v["joints"])):
            b[key] = b[key].clone()
            b[key][t] = torch.as_tensor(val, dtype=b[key].dtype, device=dev)
        keep[sel] = False
    b["image_mask"] = torch.as_tensor(keep, dtype=torch.float32, device=b["kp"].device)
    return b


def train_joint(model, cfg: dict, batches: CropBatches, test: CropBatches | None = None, progress: bool = True,
                **fit_kw) -> dict:
    """Stage ``joint``: backbone + stage 1 (in place), with the camera augmentation and keypoints-only items of
    :func:`camera_batch` (``data.camera_aug``, ``train.joint.p_keypoints_only``). fit_kw as for :func:`train_ae`."""
    t = cfg["train"]["joint"]
    bs, p_kp = int(t["batch_size"]), float(t.get("p_keypoints_only", 0.0))
    pc = cfg["data"].get("pool_hands") or {}
    pool = None
    if float(pc.get("p", 0.0)) > 0:
        pool = hand_pool(model.hands, int(pc.get("size", 20000)), int(cfg["train"]["seed"]) + 3)

    def draw(rng):
        b = _crop_batch(batches, rng.integers(0, batches.n, bs), rng, ("joints",))
        return camera_batch(b, rng, cfg["data"], p_kp, pool)

    return _fit_stage(_stage_modules()["joint"](model, cfg), draw, _val_batches(test), progress, **fit_kw)


@torch.no_grad()
def backbone_features(model, batches: CropBatches, idx=None, chunk: int = 64) -> torch.Tensor | None:
    """Backbone tokens (N, 192, C) of crops ``idx`` (all if None), eval mode, no jitter, on the model's device;
    None without backbone."""
    if not model.backbone.enabled:
        return None
    idx = np.arange(batches.n) if idx is None else np.asarray(idx)
    model.backbone.eval()
    dev = _device(model)
    return torch.cat([model.backbone(batches.images(idx[i:i + chunk]).to(dev)) for i in range(0, len(idx), chunk)])


@torch.no_grad()
def sample_hypotheses(model, cfg: dict, batches: CropBatches, feats: torch.Tensor | None, progress: bool = True) -> dict:
    """Stage-1 hypotheses of every training crop, on the model's device: ``samples`` per crop, each drawn with
    freshly noised training keypoints and a DDIM step count from ``steps``. Returns numpy arrays joints
    (N, S, 21, 3) m, kp2d (N, S, 21, 2), conf (N, S, 21)."""
    h, seed = cfg["train"]["hyps"], int(cfg["train"]["seed"])
    S = int(h["samples"])
    steps = [int(x) for x in (h["steps"] if isinstance(h["steps"], (list, tuple)) else [h["steps"]])]
    rng = np.random.default_rng([seed, 2])
    dev = _device(model)
    g = torch.Generator(device=dev).manual_seed(seed + 2)
    model.eval()
    J = np.zeros((batches.n, S, 21, 3), np.float32)
    KP = np.zeros((batches.n, S, 21, 2), np.float32)
    C = np.zeros((batches.n, S, 21), np.float32)
    chunk = 64
    t0 = time.perf_counter()
    for s in range(S):
        for i in range(0, batches.n, chunk):
            idx = np.arange(i, min(i + chunk, batches.n))
            kp, c = batches.keypoints(idx, rng)
            f = None if feats is None else feats[idx]
            k = steps[int(rng.integers(len(steps)))]
            K = batches.tensor("K_crop", idx).to(dev)
            js = model.joint.sample(f, kp.to(dev), c.to(dev), K, 1, h.get("sampler", "ddim"), k, g)[:, 0]
            J[idx, s], KP[idx, s], C[idx, s] = js.cpu().numpy(), kp.cpu().numpy(), c.cpu().numpy()
    if progress:
        print(f"stage-1 hypotheses: {batches.n} crops x {S} in {time.perf_counter() - t0:.1f} s")
    return {"joints": J, "kp2d": KP, "conf": C}


def train_mesh(model, cfg: dict, batches: CropBatches, hyps: dict | None = None, test: CropBatches | None = None,
               progress: bool = True, **fit_kw) -> dict:
    """Stage ``mesh``: stage 2 on stage-1 hypotheses (backbone and autoencoder frozen), in place. hyps: as
    :func:`sample_hypotheses` returns them; None: drawn at the start of the stage on the training device (and
    written to ``<run>/hyps.npz`` when ``fit_kw`` names a run folder). fit_kw as for :func:`train_ae`."""
    t = cfg["train"]["mesh"]
    bs, p_gt, S = int(t["batch_size"]), float(t["p_gt_joints"]), int(cfg["train"]["hyps"]["samples"])
    run = fit_kw.get("run")
    save = None if run is None else (lambda h: save_npz(Path(run) / "hyps.npz", **h))

    def draw(rng):
        b = _crop_batch(batches, rng.integers(0, batches.n, bs), rng, ("joints", "vertices"), images=False)
        b["k"] = torch.as_tensor(rng.integers(0, S, bs))
        b["gt"] = torch.as_tensor(rng.random(bs) < p_gt)
        return b

    module = _stage_modules()["mesh"](model, cfg, batches, hyps, save, progress)
    return _fit_stage(module, draw, _val_batches(test), progress, **fit_kw)


def train_regressor(model, cfg: dict, batches: CropBatches, test: CropBatches | None = None, progress: bool = True,
                    **fit_kw) -> dict:
    """Stage ``regressor``: the single-stage baseline (in place). fit_kw as for :func:`train_ae`."""
    bs = int(cfg["train"]["regressor"]["batch_size"])
    fields = ("joints", "vertices", "pose", "betas")
    return _fit_stage(_stage_modules()["regressor"](model, cfg),
                      lambda rng: _crop_batch(batches, rng.integers(0, batches.n, bs), rng, fields),
                      _val_batches(test), progress, **fit_kw)


# ------------------------------------------------------------------------------------------ driver

def resolve_config(config: str = "tiny", overrides: Sequence[str] = (), crops: str | None = None,
                   out: str | None = None) -> dict:
    """The resolved ``pose`` config as a plain dict (preset name or YAML path, dot-list overrides)."""
    return to_container(load_config("pose", config, overrides, paths={"data.crops": crops or None,
                                                                      "train.out": out or None}))


def train_pose(config: str = "tiny", overrides: Sequence[str] = (), crops: str | None = None, out: str | None = None,
               stages: Sequence[str] | None = None, resume: bool = False, device: str | None = None,
               progress: bool = True, devices: int | str = 1, accelerator: str = "cpu", num_nodes: int = 1,
               strategy: str = "auto", init: str | os.PathLike | None = None) -> dict[str, Path]:
    """Train the cascade and the regressor (``handcast train pose``). Returns {"pose": path, "regressor": path}
    for the checkpoints that exist at the end.

    stages: subset of ``ae, joint, mesh, regressor`` (default all). A stage needs the ones before it
    (from this call or from ``pose.safetensors`` of a resumed run). The crop set ``data.crops`` is built
    (preset ``data.preset``) when it does not exist. ``resume``: continue a run folder: the stages already in
    its checkpoints are skipped, an unfinished one goes on from its ``last_<stage>.ckpt``; without it a
    non-empty run folder is refused. devices, accelerator, num_nodes, strategy: as for
    :func:`handcast.train.lift.train_lift` (several GPUs or nodes with DDP). device: the older one-device form
    ("cuda", "cuda:1"; "cpu" changes nothing), sets accelerator and devices. init: fine-tune: start from the
    weights (and the stored model config; the config's ``model`` section is not used) of this cascade
    checkpoint or run folder; its stages not in ``stages`` are kept as they are (e.g. ``stages=("joint",)``
    re-trains stage 1 only and writes a complete cascade). A resumed run with a ``pose.safetensors`` starts
    from that instead."""
    cfg = resolve_config(config, overrides, crops, out)
    stages = tuple(stages) if stages else ALL_STAGES
    bad = [s for s in stages if s not in ALL_STAGES]
    if bad:
        raise HandcastError(f"unknown pose training stage(s) {', '.join(bad)}; choose from {', '.join(ALL_STAGES)}")
    if device is not None and device != "cpu":
        d = torch.device(device)
        accelerator, devices = d.type, [d.index] if d.index is not None else 1
    fit_kw = {"resume": resume, "devices": devices, "accelerator": accelerator, "num_nodes": num_nodes,
              "strategy": strategy}
    t = cfg["train"]
    threads = int(t.get("threads", 0))
    old_threads = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    run = check_run_folder(t["out"], resume)
    try:
        crops_dir = Path(cfg["data"]["crops"])
        if not crops_dir.exists():
            build_crops(crops_dir, cfg["data"]["preset"], seed=int(t["seed"]),
                        hand_model=str(cfg["model"]["hand_model"]), progress=progress)
        train_set, test_set = CropSet(crops_dir, "train"), CropSet(crops_dir, "test")
        kind = cfg["model"]["hand_model"]
        if kind != "auto" and train_set.hand_model != kind:
            raise HandcastError(f"crop set {crops_dir} was built with the '{train_set.hand_model}' hand model, "
                                f"the config asks for '{kind}'")
        pose_path = run / "pose.safetensors"
        done: tuple[str, ...] = ()
        if resume and pose_path.is_file():
            from handcast.models.checkpoint import read_checkpoint

            done = tuple(x for x in read_checkpoint(pose_path, "pose")[2].get("pose_stages", "").split(",") if x)
        init_model, kept = None, ()
        if init is not None and not done:
            from handcast.models.cascade.model import resolve_pose_checkpoint

            init_model = load_cascade(resolve_pose_checkpoint(init), require_complete=False)
            kept = tuple(getattr(init_model, "trained_stages", ()))
            if init_model.hands.kind != train_set.hand_model:
                raise HandcastError(f"--init checkpoint uses the '{init_model.hands.kind}' hand model, the crop set "
                                    f"{crops_dir} '{train_set.hand_model}'")
        have = set(done) | set(kept)
        for s in ("ae", "joint", "mesh"):  # every stage needs the ones before it, done earlier or in this call
            if s in stages and s not in done:
                need = {"ae": (), "joint": (), "mesh": ("ae", "joint")}[s]
                missing = [x for x in need if x not in have]
                if missing:
                    raise HandcastError(f"stage '{s}' needs the stage(s) {', '.join(missing)} first")
                have.add(s)

        run = prepare_run(run, resume, int(t["seed"]))  # seeds every generator (the model's initialisation)
        if _rank_zero():
            from omegaconf import OmegaConf

            with atomic_path(run / "config.yaml") as tmp:
                OmegaConf.save(OmegaConf.create(cfg), tmp)
        model_cfg = dict(cfg["model"], hand_model=train_set.hand_model)
        batches, test = CropBatches(train_set, cfg["data"]), CropBatches(test_set, cfg["data"])
        if done:
            model = load_cascade(pose_path, require_complete=False)
        else:
            model = init_model if init_model is not None else PoseCascade(model_cfg)
        for s in [s for s in ("ae", "joint", "mesh") if s in stages and s not in done]:
            if s == "ae":
                rec = train_ae(model, cfg, train_set, test_set, progress, run=run, **fit_kw)
            elif s == "joint":
                rec = train_joint(model, cfg, batches, test, progress, run=run, **fit_kw)
            else:
                saved = run / "hyps.npz"
                hyps = load_npz(saved, ("joints", "kp2d", "conf")) if resume and saved.is_file() else None
                rec = train_mesh(model, cfg, batches, hyps, test, progress, run=run, **fit_kw)
            done = tuple(x for x in ("ae", "joint", "mesh") if x in done or x in kept or x == s)
            if _rank_zero():
                save_cascade(pose_path, model, done)
                _log(run, rec, progress)
        paths: dict[str, Path] = {}
        if pose_path.is_file():
            paths["pose"] = pose_path
        reg_path = run / "regressor.safetensors"
        if "regressor" in stages and not (resume and reg_path.is_file()):
            torch.manual_seed(int(t["seed"]) + 10)
            reg = RegressorModel(model_cfg, model.hands)
            rec = train_regressor(reg, cfg, batches, test, progress, run=run, **fit_kw)
            if _rank_zero():
                save_regressor(reg_path, reg)
                _log(run, rec, progress)
        if reg_path.is_file():
            paths["regressor"] = reg_path
        return paths
    finally:
        torch.set_num_threads(old_threads)
