"""Training the cascaded diffusion pose estimator and its regressor baseline (``handcast train pose``).

Stages, in order (each one a plain PyTorch loop on one device; docs/pose.md):

1. ``ae``        mesh autoencoder on meshes sampled from the hand model's pose and shape space (plus the
                 training crops' meshes): PCA front end, then the MLP bottleneck.
2. ``joint``     backbone + stage 1 (joint diffusion) on the training crops.
3. ``mesh``      first ``hyps``: stage-1 hypotheses of every training crop (a few DDIM step counts, the
                 noisy training keypoints they were drawn with are kept); then stage 2 (mesh latent
                 diffusion) with the backbone frozen, on those hypotheses (and a fraction of ground-truth
                 joints).
4. ``regressor`` the single-stage baseline (its own backbone), trained as long as stage 1.

Outputs in the run folder (``train.out``): ``pose.safetensors`` (the cascade; rewritten after each cascade
stage, its metadata lists the stages done), ``regressor.safetensors``, ``hyps.npz``, ``config.yaml`` (the
resolved config) and ``log.jsonl`` (one JSON line per stage: losses, timings, validation numbers).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from handcast.data.crops import CropBatches, CropSet
from handcast.errors import HandcastError

ALL_STAGES: tuple[str, ...] = ("ae", "joint", "mesh", "regressor")


# ------------------------------------------------------------------------------------------ data

# ------------------------------------------------------------------------------------------ helpers

def _lr_lambda(total: int, warmup_frac: float = 0.05, floor: float = 0.1):
    warm = max(1, int(total * warmup_frac))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        p = min(1.0, (step - warm) / max(1, total - warm))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))

    return f


def _optimiser(params, lr: float, steps: int):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(steps))


def _loop(name: str, steps: int, step_fn, params, lr: float, grad_clip: float, progress: bool) -> dict:
    """Run ``steps`` optimiser steps of ``step_fn(step) -> dict of losses (with 'loss')``."""
    params = [p for p in params if p.requires_grad]
    opt, sched = _optimiser(params, lr, steps)
    it = range(int(steps))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        it = bar = tqdm(it, desc=f"train pose/{name}", leave=False)
    t0 = time.perf_counter()
    hist: dict[str, list[float]] = {}
    for s in it:
        out = step_fn(s)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        for k, v in out.items():
            hist.setdefault(k, []).append(float(v.detach()) if torch.is_tensor(v) else float(v))
        if bar is not None and s % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(hist['loss'][-20:]):.4f}")
    tail = max(1, min(50, len(hist.get("loss", [1]))))
    return {"steps": int(steps), "seconds": round(time.perf_counter() - t0, 1),
            **{f"final_{k}": float(np.mean(v[-tail:])) for k, v in hist.items()}}


def _log(run: Path, record: dict, progress: bool) -> None:
    with open(run / "log.jsonl", "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    if progress:
        print(json.dumps(record, sort_keys=True))


# ------------------------------------------------------------------------------------------ stages

def train_ae(model, cfg: dict, train_crops=None, test_crops=None, progress: bool = True) -> dict:
    """Stage ``ae`` on ``model.ae`` (in place). Returns the log record (reconstruction errors in mm)."""
    from handcast.models.cascade.handutil import finger_pose_pool, sample_meshes

    t, seed = cfg["train"]["ae"], int(cfg["train"]["seed"])
    ae, hm = model.ae, model.hands
    dev = ae.pca_mean.device
    g = torch.Generator().manual_seed(seed)
    n = int(t["meshes"])
    fingers = torch.as_tensor(finger_pose_pool(hm, max(n, 2000), seed), dtype=torch.float32)
    chunks = [sample_meshes(hm, min(1000, n - i), g, fingers) for i in range(0, n, 1000)]
    meshes = torch.cat(chunks).to(dev)
    if t.get("crop_meshes", True) and train_crops is not None:
        meshes = torch.cat([meshes, torch.as_tensor(train_crops.arrays["vertices"], device=dev)])
    held = sample_meshes(hm, 500, torch.Generator().manual_seed(seed + 1), fingers).to(dev)
    with torch.no_grad():
        canon = meshes @ ae.canonical_rotation(meshes)
        pca_err = ae.fit_pca(canon)
        coef = ae.to_coefficients(canon)
    V = ae.num_vertices
    bs = int(t["batch_size"])

    def step(s):
        idx = torch.randint(0, coef.shape[0], (bs,), generator=g).to(dev)
        c = coef[idx]
        r = ae.decoder(ae.encoder(c))
        loss = ((r - c) * ae.coef_std).pow(2).sum(-1).mean() / V * 1e4  # mean squared vertex error, cm^2
        return {"loss": loss}

    ae.train()
    rec = _loop("ae", int(t["steps"]), step, list(ae.encoder.parameters()) + list(ae.decoder.parameters()),
                float(t["lr"]), float(cfg["train"]["grad_clip"]), progress)
    ae.eval()
    with torch.no_grad():
        ae.set_latent_statistics(ae.encode(meshes))
        rec.update({"stage": "ae", "pca_floor_mm": round(1000 * pca_err, 3),
                    "recon_heldout_mm": round(1000 * float((ae(held) - held).norm(dim=-1).mean()), 3),
                    "recon_train_mm": round(1000 * float((ae(meshes[:1000]) - meshes[:1000]).norm(dim=-1).mean()), 3),
                    "num_meshes": int(meshes.shape[0])})
        if test_crops is not None:
            tv = torch.as_tensor(test_crops.arrays["vertices"], device=dev)
            rec["recon_test_crops_mm"] = round(1000 * float((ae(tv) - tv).norm(dim=-1).mean()), 3)
    return rec


def _val_joint(model, batches: CropBatches, n: int = 128, steps: int = 5) -> dict:
    from handcast.eval.metrics import pa_mpjpe

    idx = np.arange(min(n, batches.n))
    kp, c = batches.keypoints(idx, None, "det")
    g = torch.Generator(device=kp.device).manual_seed(0)
    model.eval()
    with torch.no_grad():
        feats = model.backbone(batches.images(idx))
        js = model.joint.sample(feats, kp, c, batches.tensor("K_crop", idx), 1, "ddim", steps, g)[:, 0]
    return {"val_pa_mpjpe_mm": round(float(pa_mpjpe(js, batches.tensor("joints", idx)).mean()), 3), "val_items": len(idx)}


def train_joint(model, cfg: dict, batches: CropBatches, test: CropBatches | None = None, progress: bool = True) -> dict:
    """Stage ``joint``: backbone + stage 1 (in place)."""
    from handcast.diffusion import make_scheduler

    t, seed = cfg["train"]["joint"], int(cfg["train"]["seed"])
    rng = np.random.default_rng([seed, 1])
    g = torch.Generator(device=batches.device).manual_seed(seed + 1)
    sched = make_scheduler("ddpm", model.diffusion)
    bs = int(t["batch_size"])
    model.backbone.train()
    model.joint.train()

    def step(s):
        idx = rng.integers(0, batches.n, bs)
        kp, c = batches.keypoints(idx, rng)
        feats = model.backbone(batches.images(idx, rng))
        return model.joint.loss(sched, feats, kp, c, batches.tensor("K_crop", idx), batches.tensor("joints", idx), g)

    params = list(model.backbone.parameters()) + list(model.joint.parameters())
    rec = _loop("joint", int(t["steps"]), step, params, float(t["lr"]), float(cfg["train"]["grad_clip"]), progress)
    rec["stage"] = "joint"
    if test is not None:
        rec.update(_val_joint(model, test))
    model.eval()
    return rec


@torch.no_grad()
def backbone_features(model, batches: CropBatches, idx=None, chunk: int = 64) -> torch.Tensor | None:
    """Backbone tokens (N, 192, C) of crops ``idx`` (all if None), eval mode, no jitter; None without backbone."""
    if not model.backbone.enabled:
        return None
    idx = np.arange(batches.n) if idx is None else np.asarray(idx)
    model.backbone.eval()
    return torch.cat([model.backbone(batches.images(idx[i:i + chunk])) for i in range(0, len(idx), chunk)])


@torch.no_grad()
def sample_hypotheses(model, cfg: dict, batches: CropBatches, feats: torch.Tensor | None, progress: bool = True) -> dict:
    """Stage-1 hypotheses of every training crop: ``samples`` per crop, each drawn with freshly noised training
    keypoints and a DDIM step count from ``steps``. Returns numpy arrays joints (N, S, 21, 3) m, kp2d
    (N, S, 21, 2), conf (N, S, 21)."""
    h, seed = cfg["train"]["hyps"], int(cfg["train"]["seed"])
    S = int(h["samples"])
    steps = [int(x) for x in (h["steps"] if isinstance(h["steps"], (list, tuple)) else [h["steps"]])]
    rng = np.random.default_rng([seed, 2])
    g = torch.Generator(device=batches.device).manual_seed(seed + 2)
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
            js = model.joint.sample(f, kp, c, batches.tensor("K_crop", idx), 1, h.get("sampler", "ddim"), k, g)[:, 0]
            J[idx, s], KP[idx, s], C[idx, s] = js.cpu().numpy(), kp.cpu().numpy(), c.cpu().numpy()
    if progress:
        print(f"stage-1 hypotheses: {batches.n} crops x {S} in {time.perf_counter() - t0:.1f} s")
    return {"joints": J, "kp2d": KP, "conf": C}


def train_mesh(model, cfg: dict, batches: CropBatches, hyps: dict, feats: torch.Tensor | None,
               test: CropBatches | None = None, progress: bool = True) -> dict:
    """Stage ``mesh``: stage 2 on stage-1 hypotheses (backbone and autoencoder frozen)."""
    from handcast.diffusion import make_scheduler

    t, seed = cfg["train"]["mesh"], int(cfg["train"]["seed"])
    rng = np.random.default_rng([seed, 3])
    g = torch.Generator(device=batches.device).manual_seed(seed + 3)
    sched = make_scheduler("ddpm", model.diffusion)
    ae = model.ae
    ae.eval()
    for p in list(ae.parameters()) + list(model.backbone.parameters()):
        p.requires_grad_(False)
    with torch.no_grad():
        verts = batches._t["vertices"]
        lat = torch.cat([ae.normalise(ae.encode(verts[i:i + 256])) for i in range(0, batches.n, 256)])
    HJ = torch.as_tensor(hyps["joints"], device=batches.device)
    HK = torch.as_tensor(hyps["kp2d"], device=batches.device)
    HC = torch.as_tensor(hyps["conf"], device=batches.device)
    S = HJ.shape[1]
    bs = int(t["batch_size"])
    p_gt = float(t["p_gt_joints"])
    model.mesh.train()

    def decode(x):
        return ae.decode(ae.denormalise(x))

    def step(s):
        idx = rng.integers(0, batches.n, bs)
        k = rng.integers(0, S, bs)
        ti, tk = torch.as_tensor(idx, device=batches.device), torch.as_tensor(k, device=batches.device)
        joints, kp, c = HJ[ti, tk], HK[ti, tk], HC[ti, tk]
        gt = torch.as_tensor(rng.random(bs) < p_gt, device=batches.device)
        if gt.any():
            kp_f, c_f = batches.keypoints(idx, rng)
            joints = torch.where(gt[:, None, None], batches.tensor("joints", idx), joints)
            kp = torch.where(gt[:, None, None], kp_f, kp)
            c = torch.where(gt[:, None], c_f, c)
        f = None if feats is None else feats[ti]
        return model.mesh.loss(sched, f, kp, c, batches.tensor("K_crop", idx), joints, lat[ti], decode,
                               verts[ti], g)

    rec = _loop("mesh", int(t["steps"]), step, model.mesh.parameters(), float(t["lr"]),
                float(cfg["train"]["grad_clip"]), progress)
    for p in list(ae.parameters()) + list(model.backbone.parameters()):
        p.requires_grad_(True)
    model.eval()
    rec["stage"] = "mesh"
    if test is not None:
        rec.update(_val_cascade(model, test))
    return rec


def _val_cascade(model, batches: CropBatches, n: int = 128) -> dict:
    from handcast.eval.metrics import pa_mpjpe, pa_mpvpe

    idx = np.arange(min(n, batches.n))
    kp, c = batches.keypoints(idx, None, "det")
    g = torch.Generator(device=kp.device).manual_seed(0)
    out = model.estimate_crops(batches.images(idx), kp, c, batches.tensor("K_crop", idx), 5, "ddim", 1,
                               aggregations=("median",), generator=g)
    j, v = out["aggregated"]["median"]
    return {"val_pa_mpjpe_mm": round(float(pa_mpjpe(j, batches.tensor("joints", idx)).mean()), 3),
            "val_pa_mpvpe_mm": round(float(pa_mpvpe(v, batches.tensor("vertices", idx)).mean()), 3),
            "val_items": len(idx)}


def train_regressor(model, cfg: dict, batches: CropBatches, test: CropBatches | None = None, progress: bool = True) -> dict:
    """Stage ``regressor``: the single-stage baseline (in place)."""
    from handcast.geometry import aa_to_6d

    t, seed = cfg["train"]["regressor"], int(cfg["train"]["seed"])
    rng = np.random.default_rng([seed, 4])
    bs = int(t["batch_size"])
    model.train()

    def step(s):
        idx = rng.integers(0, batches.n, bs)
        kp, c = batches.keypoints(idx, rng)
        out = model.predict(batches.images(idx, rng), kp, c, batches.tensor("K_crop", idx))
        v_err = ((out["vertices"] - batches.tensor("vertices", idx)) * 100).pow(2).sum(-1).mean()
        j_err = ((out["joints"] - batches.tensor("joints", idx)) * 100).pow(2).sum(-1).mean()
        p_err = (out["rot6d"] - aa_to_6d(batches.tensor("pose", idx))).pow(2).sum(-1).mean()
        b_err = (out["betas"] - batches.tensor("betas", idx)).pow(2).mean()
        loss = v_err + j_err + p_err + 0.1 * b_err
        return {"loss": loss, "vertices": v_err, "joints": j_err, "pose": p_err, "betas": b_err}

    rec = _loop("regressor", int(t["steps"]), step, model.parameters(), float(t["lr"]),
                float(cfg["train"]["grad_clip"]), progress)
    model.eval()
    rec["stage"] = "regressor"
    if test is not None:
        from handcast.eval.metrics import pa_mpjpe, pa_mpvpe

        idx = np.arange(min(128, test.n))
        kp, c = test.keypoints(idx, None, "det")
        with torch.no_grad():
            out = model.predict(test.images(idx), kp, c, test.tensor("K_crop", idx))
        rec["val_pa_mpjpe_mm"] = round(float(pa_mpjpe(out["joints"], test.tensor("joints", idx)).mean()), 3)
        rec["val_pa_mpvpe_mm"] = round(float(pa_mpvpe(out["vertices"], test.tensor("vertices", idx)).mean()), 3)
    return rec


# ------------------------------------------------------------------------------------------ driver

def resolve_config(config: str = "tiny", overrides: Sequence[str] = (), crops: str | None = None,
                   out: str | None = None) -> dict:
    """The resolved ``pose`` config as a plain dict (preset name or YAML path, dot-list overrides)."""
    from handcast.train.config import load_config, to_container

    ov = list(overrides)
    if crops:
        ov.append(f"data.crops={crops}")
    if out:
        ov.append(f"train.out={out}")
    return to_container(load_config("pose", config, ov))


def train_pose(config: str = "tiny", overrides: Sequence[str] = (), crops: str | None = None, out: str | None = None,
               stages: Sequence[str] | None = None, resume: bool = False, device: str = "cpu",
               progress: bool = True) -> dict[str, Path]:
    """Train the cascade and the regressor (``handcast train pose``). Returns {"pose": path, "regressor": path}
    for the checkpoints that exist at the end.

    stages: subset of ``ae, joint, mesh, regressor`` (default all). A stage needs the ones before it
    (from this call or from ``pose.safetensors`` of a resumed run). The crop set ``data.crops`` is built
    (preset ``data.preset``) when it does not exist. ``resume``: continue a run folder, skipping the stages
    already in its checkpoints."""
    from handcast.synth.crops import build_crops
    from handcast.io import atomic_path, save_npz
    from handcast.models.cascade.model import PoseCascade, RegressorModel, load_cascade, save_cascade, save_regressor

    cfg = resolve_config(config, overrides, crops, out)
    stages = tuple(stages) if stages else ALL_STAGES
    bad = [s for s in stages if s not in ALL_STAGES]
    if bad:
        raise HandcastError(f"unknown pose training stage(s) {', '.join(bad)}; choose from {', '.join(ALL_STAGES)}")
    t = cfg["train"]
    threads = int(t.get("threads", 0))
    old_threads = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    run = Path(t["out"])
    if run.exists() and any(run.iterdir()) and not resume:
        raise HandcastError(f"run folder {run} is not empty (pass --resume to continue it, or another --out)")
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
        have = set(done)
        for s in ("ae", "joint", "mesh"):  # every stage needs the ones before it, done earlier or in this call
            if s in stages and s not in done:
                need = {"ae": (), "joint": (), "mesh": ("ae", "joint")}[s]
                missing = [x for x in need if x not in have]
                if missing:
                    raise HandcastError(f"stage '{s}' needs the stage(s) {', '.join(missing)} first")
                have.add(s)

        run.mkdir(parents=True, exist_ok=True)
        from omegaconf import OmegaConf

        with atomic_path(run / "config.yaml") as tmp:
            OmegaConf.save(OmegaConf.create(cfg), tmp)
        torch.manual_seed(int(t["seed"]))
        model_cfg = dict(cfg["model"], hand_model=train_set.hand_model)
        batches = CropBatches(train_set, cfg["data"], device)
        test = CropBatches(test_set, cfg["data"], device)
        paths: dict[str, Path] = {}
        if done:
            model = load_cascade(pose_path, device, require_complete=False)
        else:
            model = PoseCascade(model_cfg).to(device)
        cascade_todo = [s for s in ("ae", "joint", "mesh") if s in stages and s not in done]
        for s in cascade_todo:
            if s == "ae":
                rec = train_ae(model, cfg, train_set, test_set, progress)
            elif s == "joint":
                rec = train_joint(model, cfg, batches, test, progress)
            else:
                feats = backbone_features(model, batches)
                hyps = sample_hypotheses(model, cfg, batches, feats, progress)
                save_npz(run / "hyps.npz", **hyps)
                rec = train_mesh(model, cfg, batches, hyps, feats, test, progress)
            done = tuple(x for x in ("ae", "joint", "mesh") if x in done or x == s)
            save_cascade(pose_path, model, done)
            _log(run, rec, progress)
        if pose_path.is_file():
            paths["pose"] = pose_path
        reg_path = run / "regressor.safetensors"
        if "regressor" in stages and not (resume and reg_path.is_file()):
            torch.manual_seed(int(t["seed"]) + 10)
            reg = RegressorModel(model_cfg, model.hands).to(device)
            rec = train_regressor(reg, cfg, batches, test, progress)
            save_regressor(reg_path, reg)
            _log(run, rec, progress)
        if reg_path.is_file():
            paths["regressor"] = reg_path
        return paths
    finally:
        torch.set_num_threads(old_threads)
