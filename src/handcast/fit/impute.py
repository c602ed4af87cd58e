"""Imputation of 3D labels for 2D-only data: initialiser (the lifting model, or any callable) +
reprojection refinement, written to a clip store as provenance "imputed". Resumable.

:func:`impute_split` reads a split of a clip store batch by batch, reading only the 2D inputs,
cameras and shapes of each clip (``kp2d``, ``kp2d_conf``, ``K``, ``world_to_cam``, ``valid``,
``betas``; plus ``joints3d`` of clips whose provenance is "gt" when ``use_3d_labels`` is set — the
3D fields of any other clip are never read), calls the initialiser, refines with
:func:`handcast.fit.refine`, recomputes ``joints3d`` with the hand model and appends the clips to
``out_split`` of the store at ``out_path``, committing after every batch. A run that stops midway
(an exception, a kill) keeps every committed batch; running it again skips the clip ids already in
the output.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from handcast.data.clip import Clip
from handcast.data.store import MANIFEST, ClipStore, ClipStoreWriter
from handcast.errors import HandcastError
from handcast.fit.refine import RefineConfig, refine
from handcast.geometry import rotmat_to_aa
from handcast.hand import HandModel
from handcast.io import make_dirs
from handcast.models.lifting import average_samples, keep_weights, load_lift

#: fields read from every source clip (never pose / transl / joints3d)
INPUT_FIELDS: tuple[str, ...] = ("kp2d", "kp2d_conf", "world_to_cam", "valid", "betas", "K", "image_size", "fps")

Initialiser = Callable[[dict], "tuple[torch.Tensor, torch.Tensor]"]


def _check_K(K: np.ndarray, clip_id: str) -> None:
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all():
        raise HandcastError(f"clip {clip_id!r}: intrinsics K are not a finite 3x3 matrix")
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        raise HandcastError(f"clip {clip_id!r}: degenerate intrinsics (fx={K[0, 0]:g}, fy={K[1, 1]:g}, must be > 0)")
    if not np.allclose(K[2], (0.0, 0.0, 1.0), atol=1e-6) or abs(K[1, 0]) > 1e-6:
        raise HandcastError(f"clip {clip_id!r}: intrinsics K must be upper triangular with last row (0, 0, 1)")


def _sanitise_2d(arr: dict) -> None:
    """In place: conf 0 (and kp 0) where a keypoint or its confidence is not finite; conf clipped to [0, 1]."""
    kp, conf = arr["kp2d"], arr["kp2d_conf"]
    bad = ~np.isfinite(kp).all(-1) | ~np.isfinite(conf)
    conf = np.where(bad, 0.0, np.clip(np.nan_to_num(conf), 0.0, 1.0)).astype(np.float32)
    arr["kp2d_conf"] = conf
    arr["kp2d_model"] = np.where(bad[..., None], 0.0, kp).astype(np.float32)  # what the models see


def _pad(x: np.ndarray, T: int, fill=0.0) -> np.ndarray:
    if x.shape[0] == T:
        return x
    pad = np.full((T - x.shape[0],) + x.shape[1:], fill, dtype=x.dtype)
    return np.concatenate([x, pad], 0)


def make_batch(items: list[dict], device) -> dict:
    """Stack clips of different lengths into padded tensors (what the initialiser receives).

    Keys: ``clip_ids`` (list of str), ``provenance`` (list of str), ``lengths`` (B,) int64,
    ``frame_mask`` (B, T) bool (False on padding), ``kp2d`` (B, T, 2, 21, 2) float32 pixels (0 where
    missing), ``kp2d_conf`` (B, T, 2, 21) float32 (0 where missing or NaN), ``K`` (B, 3, 3),
    ``world_to_cam`` (B, T, 4, 4) (identity on padding), ``valid`` (B, T, 2) bool (False on
    padding), ``betas`` (B, 2, 10), ``image_size`` (B, 2) int64 (width, height), ``fps`` (B,)
    float64. T = the longest clip of the batch. No 3D quantity is included.
    """
    T = max(int(it["kp2d"].shape[0]) for it in items)
    eye = np.eye(4, dtype=np.float32)

    def stack(name, fill=0.0):
        return np.stack([_pad(it[name], T, fill) for it in items])

    W = np.stack([np.concatenate([it["world_to_cam"], np.broadcast_to(eye, (T - len(it["world_to_cam"]), 4, 4))])
                  for it in items])
    lengths = np.array([it["kp2d"].shape[0] for it in items], dtype=np.int64)
    out = {
        "kp2d": stack("kp2d_model"), "kp2d_conf": stack("kp2d_conf"), "valid": stack("valid", False),
        "world_to_cam": W.astype(np.float32), "K": np.stack([it["K"] for it in items]).astype(np.float32),
        "betas": np.stack([it["betas"] for it in items]).astype(np.float32),
        "image_size": np.stack([it["image_size"] for it in items]).astype(np.int64),
        "fps": np.array([float(it["fps"]) for it in items]), "lengths": lengths,
        "frame_mask": np.arange(T)[None] < lengths[:, None],
    }
    batch = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in out.items()}
    batch["clip_ids"] = [it["clip_id"] for it in items]
    batch["provenance"] = [it["provenance"] for it in items]
    return batch


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(float(x)) else None


@contextlib.contextmanager
def _remove_if_still_empty(out_path: Path, created: bool):
    """On an error, remove the output store this run ``created`` if it still holds no clip (so a failed first
    run leaves nothing behind); a store with committed clips is kept, for resuming."""
    try:
        yield
    except BaseException:
        if created:
            with contextlib.suppress(Exception):
                if not any(ClipStore(out_path).manifest["splits"].values()):
                    shutil.rmtree(out_path)
        raise


def impute_split(store_path: str | Path, split: str, out_path: str | Path, out_split: str, initialiser: Initialiser,
                 hand_model, batch_size: int = 64, refine_config: RefineConfig = RefineConfig(),
                 use_3d_labels: bool = False, progress: bool = True, device=None,
                 initialiser_name: str | None = None) -> dict:
    """Impute 3D labels for every clip of ``split`` and append them to ``out_split`` of ``out_path``.

    Args:
        store_path, split: the source clip store and split.
        out_path, out_split: the output store (created if missing; may be the source store, then
            ``out_split`` must differ from ``split``) and split.
        initialiser: ``initialiser(batch) -> (pose (B, T, 2, 16, 3), transl (B, T, 2, 3))`` flat
            axis-angle / metres in the frame-0 camera, torch or numpy; ``batch`` is the dict of
            :func:`make_batch` (2D inputs, cameras, betas; never 3D).
        hand_model: :class:`handcast.hand.HandModel` used for the refinement and ``joints3d``.
        batch_size: clips per initialiser call / refinement batch / commit.
        refine_config: :class:`RefineConfig` of the refinement.
        use_3d_labels: pass the source ``joints3d`` to the refinement for clips whose provenance is
            "gt" (never for others).
        progress: show a tqdm progress bar.
        device: where the refinement runs (default: the hand model's device).
        initialiser_name: recorded in each clip's meta (default: the callable's name).

    Writes clips with provenance "imputed": ``pose``/``transl`` refined, ``joints3d`` from the hand
    model, ``kp2d``, ``K``, ``world_to_cam``, ``valid``, ``betas``, ``image``, ``domain``, ``fps``,
    ``group_id`` copied, ``kp2d_conf`` copied with NaN keypoints set to 0, ``hand_model`` = the
    hand model's kind, ``meta`` = the source meta plus ``meta["imputation"]`` (source store, split,
    clip id and index, source provenance / hand model, initialiser, refinement iterations, final
    loss and reprojection error in px).

    Returns a summary dict: ``total`` clips in the split, ``already_done`` (skipped because their
    id was in the output), ``written``, ``skipped`` (list of {clip_id, reason}), reprojection error
    statistics of the written clips (px), ``seconds``.
    Raises HandcastError for an unknown split, degenerate intrinsics (checked for all clips before
    any work) or an initialiser returning wrong shapes.
    """
    t_start = time.perf_counter()
    store_path, out_path = Path(store_path), Path(out_path)
    view = ClipStore(store_path).split(split)
    same = out_path.exists() and store_path.resolve() == out_path.resolve()
    if same and out_split == split:
        raise HandcastError(f"impute_split: out_split must differ from split '{split}' when writing into the "
                            "source store")
    if batch_size < 1:
        raise HandcastError(f"batch_size must be >= 1, got {batch_size}")
    ids = view.clip_ids
    provs = [str(p) for p in view.clip_field("provenance")]
    for cid, K in zip(ids, np.asarray(view.clip_field("K"))):
        _check_K(K, cid)
    if device is None:
        device = hand_model.kp_J_template.device
    name = initialiser_name or getattr(initialiser, "__name__", type(initialiser).__name__)
    created = not (out_path / MANIFEST).is_file()
    if created:
        if out_path.exists():  # impute appends to a clip store or makes a new one; it never replaces anything
            what = "a folder that is not a clip store" if out_path.is_dir() else "a file"
            raise HandcastError(f"--out {out_path} is {what}; give a clip store to add to, or a new folder")
        make_dirs(out_path.parent)
        with ClipStoreWriter(out_path):  # an empty store, so that append mode can commit batches
            pass
    skipped: list[dict] = []
    errors: list[float] = []
    written = 0
    from tqdm.auto import tqdm

    with _remove_if_still_empty(out_path, created), ClipStoreWriter(out_path, append=True) as writer:
        todo = [i for i in range(len(ids)) if not writer.contains(out_split, ids[i])]
        already = len(ids) - len(todo)
        bar = tqdm(total=len(ids), initial=already, disable=not progress, desc=f"impute {split}", unit="clip")
        try:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                items = []
                for i in chunk:
                    arr = view.read(i, INPUT_FIELDS)
                    arr["clip_id"], arr["provenance"], arr["index"] = ids[i], provs[i], i
                    _sanitise_2d(arr)
                    if not (arr["valid"][..., None] & (arr["kp2d_conf"] > 0)).any():
                        skipped.append({"clip_id": ids[i], "reason": "no valid hand with a visible 2D keypoint"})
                        continue
                    if use_3d_labels and provs[i] == "gt":
                        arr["joints3d"] = view.read(i, ("joints3d",))["joints3d"]
                    items.append(arr)
                if items:
                    n = _impute_batch(view, items, writer, out_split, initialiser, hand_model, refine_config,
                                      device, store_path, split, name, errors)
                    written += n
                    writer.commit()
                bar.update(len(chunk))
        finally:
            bar.close()
    errs = np.asarray(errors, dtype=np.float64)
    errs = errs[np.isfinite(errs)]
    return {
        "split": split, "out_path": str(out_path), "out_split": out_split, "total": len(ids),
        "already_done": already, "written": written, "skipped": skipped,
        "mean_reproj_error_px": float(errs.mean()) if errs.size else None,
        "median_reproj_error_px": float(np.median(errs)) if errs.size else None,
        "seconds": time.perf_counter() - t_start,
    }


def _as_tensor(x, name: str, shape: tuple, device) -> torch.Tensor:
    t = torch.as_tensor(x)
    if tuple(t.shape) != shape:
        raise HandcastError(f"initialiser returned {name} of shape {tuple(t.shape)}, expected {shape}")
    return t.to(device=device, dtype=torch.float32)


def _impute_batch(view, items, writer, out_split, initialiser, hand_model, cfg, device, store_path, split, name,
                  errors) -> int:
    batch = make_batch(items, device)
    B, T = batch["kp2d"].shape[:2]
    pose0, transl0 = initialiser(batch)
    pose0 = _as_tensor(pose0, "pose", (B, T, 2, 16, 3), device)
    transl0 = _as_tensor(transl0, "transl", (B, T, 2, 3), device)
    joints3d = mask3d = None
    if any("joints3d" in it for it in items):
        j = np.zeros((B, T, 2, 21, 3), np.float32)
        m = np.zeros((B, T, 2), bool)
        for b, it in enumerate(items):
            if "joints3d" in it:
                n = it["joints3d"].shape[0]
                j[b, :n] = np.nan_to_num(it["joints3d"])
                m[b, :n] = it["valid"] & np.isfinite(it["joints3d"]).all((-1, -2))
        joints3d, mask3d = torch.from_numpy(j).to(device), torch.from_numpy(m).to(device)
    res = refine(hand_model, pose0, transl0, batch["betas"].to(torch.float32), batch["kp2d"], batch["kp2d_conf"],
                 batch["K"], batch["world_to_cam"], batch["valid"], joints3d=joints3d, joints3d_mask=mask3d,
                 config=cfg)
    with torch.no_grad():
        betas_t = batch["betas"].to(hand_model.kp_J_template.dtype).unsqueeze(1).expand(B, T, 2, 10)
        kp3d = hand_model.keypoints(res.pose.to(hand_model.kp_J_template.dtype), betas_t,
                                    res.transl.to(hand_model.kp_J_template.dtype))
    pose = res.pose.detach().cpu().numpy()
    transl = res.transl.detach().cpu().numpy()
    kp3d = kp3d.detach().cpu().numpy()
    for b, it in enumerate(items):
        i, n = it["index"], it["kp2d"].shape[0]
        strings = view.strings(i)
        meta = view.meta(i)
        err = float(res.reproj_error_px[b])
        meta["imputation"] = {
            "source_store": str(store_path), "source_split": split, "source_clip_id": it["clip_id"],
            "source_index": int(i), "source_provenance": it["provenance"], "source_hand_model": strings["hand_model"],
            "initialiser": name, "used_3d_labels": "joints3d" in it,
            "iterations": int(res.iterations[b]), "final_loss": _finite_or_none(res.final_loss[b]),
            "reproj_error_px": _finite_or_none(err),
        }
        w, h = (int(v) for v in it["image_size"])
        clip = Clip(
            clip_id=it["clip_id"], pose=pose[b, :n], transl=transl[b, :n], betas=it["betas"], valid=it["valid"],
            joints3d=kp3d[b, :n], kp2d=it["kp2d"], kp2d_conf=it["kp2d_conf"], K=it["K"],
            world_to_cam=it["world_to_cam"], image_size=(w, h), provenance="imputed", domain=strings["domain"],
            fps=float(it["fps"]), hand_model=hand_model.kind, group_id=strings["group_id"], meta=meta,
        )
        writer.add(out_split, clip, image_bytes=view.image_bytes(i))
        errors.append(err)
    return len(items)


def lift_initialiser(model, hand_model, sampler: str = "ddim", steps: int = 10, seed: int = 0, num_samples: int = 1,
                     keep: int | None = None):
    """An initialiser for :func:`handcast.fit.impute.impute_split`: L per clip, one sample or the average of
    ``num_samples`` (rotation matrices averaged and projected to SO(3), wrists averaged: an estimate of the
    posterior mean, as ``handcast lift --samples``); ``keep`` < ``num_samples``: only the ``keep`` samples most
    consistent with the clip's 2D keypoints are averaged, per frame, hand and part
    (:func:`handcast.models.lifting.select_weights`, as ``handcast lift --keep``).

    Returns ``init(batch) -> (pose (B, T, 2, 16, 3) axis-angle flat, transl (B, T, 2, 3) MANO transl)``."""
    def init(batch):
        g = torch.Generator(device=batch["K"].device).manual_seed(seed)
        rot6d, wrist = model.sample(batch, int(num_samples), sampler, steps, generator=g)
        R, wrist = average_samples(rot6d, wrist, keep_weights(rot6d, wrist, batch, hand_model, keep))
        j0 = hand_model.rest_joints(batch["betas"])[..., 0, :]  # (B, 2, 3)
        return rotmat_to_aa(R), wrist - j0[:, None]

    return init


def impute(ckpt: str | Path, data: str | Path, split: str, out: str | Path, out_split: str | None = None,
           batch_size: int = 64, sampler: str = "ddim", steps: int = 10, iterations: int = 1000,
           tol: float = 1e-4, use_3d_labels: bool = False, device: str = "cpu", progress: bool = True,
           samples: int = 1, keep: int | None = None) -> dict:
    """``handcast impute``: L + reprojection refinement turns a split's 2D tracks into 3D labels.

    Writes clips with provenance ``imputed`` to the store ``out`` (split ``out_split``, default
    ``<split>_imputed``); resumable: clips already there are skipped. ``samples``: L's samples averaged per clip
    before the refinement (:func:`lift_initialiser`)."""
    if int(samples) < 1:
        raise HandcastError(f"--samples must be at least 1, got {samples}")
    if keep is not None and int(keep) < 1:
        raise HandcastError(f"--keep must be at least 1, got {keep}")
    model = load_lift(ckpt, device)
    hands = HandModel("auto").to(device)
    init = lift_initialiser(model, hands, sampler, steps, num_samples=int(samples), keep=keep)
    name = f"lift:{Path(ckpt).name}:{sampler}-{steps}" + (f"x{int(samples)}" if int(samples) > 1 else "") \
        + (f"k{int(keep)}" if keep is not None and int(keep) < int(samples) else "")
    return impute_split(data, split, out, out_split or f"{split}_imputed", init, hands, batch_size=batch_size,
                        refine_config=RefineConfig(iterations=iterations, tol=tol), use_3d_labels=use_3d_labels,
                        progress=progress, device=device, initialiser_name=name)
