"""The forecasting benchmark (``handcast bench forecasting``): paper Tables 3-5 on the synthetic benchmark.

Rows: the static-pose baseline (the input frame's ground-truth pose held still; optionally also the pose
estimator's input-frame hands held still), and every given
forecasting checkpoint (F trained on lab 3D labels, F with imputed labels, the transformer regressors,
F with a 2D regression or 2D diffusion head, the keypoint-conditioned F). Columns: M, M-G, M-F, MR in cm
on ``lab_test`` (in domain), ``diverse_test`` and ``wild_test`` (zero-shot), best-of-N and mean-of-N
(N = ``samples``; a regressor's N outputs are identical, so both equal its single-output error).
Table 4: diversity (MANO parameter space, random pairs across the split) against ground truth's, and
multimodality (spread of the N samples of one input; ground truth's from its several futures per image).
The error over the horizon is drawn as a PNG.

Protocol: each model sees only the input frame (its image and/or its 2D keypoints, the intrinsics);
the hand shape (betas) is the ground truth's (the paper: "mean shape, or ground-truth betas where
known"), so M measures motion, not shape.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from handcast.data import collate
from handcast.data.store import ClipStore
from handcast.eval.baselines import estimated_static_pose, static_pose
from handcast.eval.evaluate import GroundTruth, Predictions, evaluate
from handcast.conventions import MIN_HAND_KEYPOINTS
from handcast.errors import HandcastError
from handcast.eval.export import ground_truth_arrays
from handcast.eval.metrics import LIMIT_TOL_DEG, limits_ok
from handcast.geometry import aa_to_6d, sixd_to_aa
from handcast.fit.anchor import lift_prefix
from handcast.hand import HandModel
from handcast.io import atomic_path, write_report_text
from handcast.models.checkpoint import shipped_checkpoint
from handcast.models.forecast import forecast_dataset, load_forecast
from handcast.models.lifting import load_lift
from handcast.models.motion import clamp_motion_to_limits, keypoints_from_motion

METRICS = ("M", "M-G", "M-F", "MR")
SPLITS = ("lab_test", "diverse_test", "wild_test")


def known_prefix(model, hands, batch: dict, context: int, lift=None, oracle: bool = False,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """F's known tokens and mask (B, T, D) for a batch: the first ``context`` frames of each clip, from L +
    refinement on the clip's own 2D keypoints of those frames (``lift``, :func:`handcast.fit.anchor.lift_prefix`;
    what a user has), or its ground-truth 3D (``oracle``). A hand is known in a frame where it has
    >= MIN_HAND_KEYPOINTS 2D keypoints."""
    n = int(context)
    conf = batch["kp2d_conf"][:, :n]
    if oracle:
        pose, wrist = batch["pose"][:, :n].float(), batch["joints3d"][:, :n, :, 0].float()
        known = (conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS
    else:
        g = torch.Generator().manual_seed(int(seed))
        pose, wrist, known, _ = lift_prefix(lift, hands, batch["kp2d"][:, :n], conf, batch["K"], batch["image_size"],
                                            batch["world_to_cam"][:, :n], generator=g)
    return model.known_tokens(pose, wrist, known, batch["frame_mask"].shape[1])


@torch.no_grad()
def forecast_split(model, hands, store: ClipStore, split: str, samples: int = 5, sampler: str = "ddim",
                   steps: int = 10, seed: int = 0, batch_size: int = 16, progress: bool = False,
                   context: int = 0, lift=None, oracle: bool = False, max_clips: int | None = None,
                   harmonise: bool = True, clamp_limits: bool = False, prefix_use: str = "both",
                   transform=None) -> dict:
    """Predictions of ``model`` for every clip of a split: {clip_ids, joints (N, S, T, 2, 21, 3) m,
    pose6d (N, S, T, 2, 16, 6), wrist (N, S, T, 2, 3) m, seconds_per_clip}; T = the longest clip.
    ``context`` > 0: the first ``context`` frames are a known prefix (:func:`known_prefix`) imposed on every
    sample; ``max_clips``: only the first clips of the split; ``clamp_limits``: every sample's finger joints
    clamped to the hand model's joint limits (as ``handcast forecast`` does). ``prefix_use`` (prefix models,
    see :class:`handcast.models.forecast.ForecastConfig`): the known prefix is imposed and given as the
    condition ("both"), only imposed ("impose") or only the condition ("condition"). ``transform``: an item
    transform applied to every clip first (e.g. a new camera; score against :func:`viewed_ground_truth`)."""
    from tqdm.auto import tqdm


    view = store.split(split)
    horizon = int(np.max(view.lengths))
    idx = None if max_clips is None else list(range(min(int(max_clips), len(view))))
    ds = forecast_dataset(store, split, horizon, needs_image=model.config.image is not None, indices=idx,
                          transform=transform)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, collate_fn=collate)
    g = torch.Generator().manual_seed(seed)
    joints, pose6d, wrists, ids = [], [], [], []
    t0 = time.perf_counter()
    for batch in tqdm(dl, desc=f"forecast {split}", disable=not progress, leave=False):
        known = mask = None
        if context > 0:
            known, mask = known_prefix(model, hands, batch, context, lift, oracle, seed)
        rot6d, wrist = model.sample(batch, samples, sampler, steps, generator=g, known=known, known_mask=mask,
                                    harmonise=harmonise, impose=prefix_use != "condition",
                                    condition=prefix_use != "impose")
        if clamp_limits:
            rot6d = clamp_motion_to_limits(hands, rot6d)
        betas = batch["betas"][:, None].expand(-1, rot6d.shape[1], 2, batch["betas"].shape[-1])
        joints.append(keypoints_from_motion(hands, rot6d, wrist, betas).numpy())
        pose6d.append(rot6d.numpy())
        wrists.append(wrist.numpy())
        ids += list(batch["clip_id"])
    dt = (time.perf_counter() - t0) / max(len(ids), 1)
    return dict(clip_ids=np.asarray(ids, dtype=str), joints=np.concatenate(joints).astype(np.float32),
                pose6d=np.concatenate(pose6d).astype(np.float32), wrist=np.concatenate(wrists).astype(np.float32),
                seconds_per_clip=dt)


def viewed_ground_truth(store: ClipStore, split: str, transform, max_clips: int | None = None) -> dict:
    """The arrays of :func:`handcast.eval.export.ground_truth_arrays` (joints, valid, pose6d, wrist, clip_ids,
    group_ids; frame-0 camera) of the first ``max_clips`` clips of a split (all for None) after the item
    ``transform`` (as :func:`forecast_split` applies it), e.g. seen through a new camera."""
    view = store.split(split)
    horizon = int(np.max(view.lengths))
    idx = list(range(len(view) if max_clips is None else min(int(max_clips), len(view))))
    ds = forecast_dataset(store, split, horizon, needs_image=False, indices=idx, transform=transform)
    items = [ds[i] for i in range(len(ds))]
    pose = torch.stack([it["pose"] for it in items]).float()
    return dict(clip_ids=np.asarray([it["clip_id"] for it in items], dtype=str),
                joints=torch.stack([it["joints3d"] for it in items]).float().numpy(),
                valid=torch.stack([it["hand_valid"] for it in items]).numpy().astype(bool),
                pose6d=np.asarray(aa_to_6d(pose).numpy(), np.float32),
                wrist=torch.stack([it["joints3d"][..., 0, :] for it in items]).float().numpy(),
                group_ids=np.asarray([it["group_id"] for it in items], dtype=str))


def limits_fraction(hands, pose6d: np.ndarray, valid: np.ndarray) -> float:
    """Fraction of the valid sampled hand-frames whose finger joints all lie within the hand model's joint
    limits (+ :data:`LIMIT_TOL_DEG`). pose6d (N, S, T, 2, 16, 6); valid (N, T, 2) bool."""
    aa = sixd_to_aa(np.asarray(pose6d, np.float32))  # (N, S, T, 2, 16, 3)
    ok = limits_ok(aa, np.arange(2), hands.joint_limits.detach().cpu().numpy())  # (N, S, T, 2)
    m = np.broadcast_to(np.asarray(valid, bool)[:, None], ok.shape)
    return float(ok[m].mean()) if m.any() else float("nan")


def _first(arrays: dict, n: int | None) -> dict:
    """The first n clips of a dict of per-clip arrays (all of them for None)."""
    if n is None:
        return arrays
    return {k: (v[:n] if isinstance(v, np.ndarray) and v.ndim >= 1 and k != "seconds_per_clip" else v)
            for k, v in arrays.items()}


def _gt(arrays: dict) -> GroundTruth:
    return GroundTruth(arrays["clip_ids"], arrays["joints"], arrays["valid"], arrays["pose6d"], arrays["wrist"],
                       arrays["group_ids"])


def _summary(res: dict) -> dict:
    return {
        "best_of_n": {k: res["best_of_n"][k] for k in METRICS},
        "mean_of_n": {k: res["mean_of_n"][k] for k in METRICS},
        "diversity": res["diversity"],
        "multimodality": res["multimodality"],
        "horizon_M": [float("nan") if v is None else float(v) for v in res["horizon_M"]],
    }


ESTIMATED_STATIC = "static pose (pose estimator)"


#: row-label suffixes of the prefix uses (bench_forecasting's ``prefix_uses``)
USE_LABELS = {"both": " [prefix imposed + condition]", "impose": " [prefix imposed]", "condition": " [prefix as condition]"}


def bench_forecasting(store: str | Path, ckpts: dict[str, str], splits=SPLITS, samples: int = 5,
                      sampler: str = "ddim", steps: int = 10, static: bool = True, pose_ckpt: str | None = None,
                      out: str | Path | None = None, progress: bool = True, command: str = "",
                      contexts: tuple[int, ...] = (), oracle_anchor: bool = False, lift_ckpt: str | None = None,
                      max_clips: int | None = None, impute_only: bool = False, clamp_limits: bool = False,
                      prefix_uses: tuple[str, ...] = ("both",), transform=None, cameras: str = "") -> dict:
    """Run the benchmark; returns {"table": {row: {split: summary}}, "seconds_per_clip": ...} and writes
    ``<out>.md``, ``<out>.json`` and ``<out>_horizon.png`` when ``out`` is given. With ``pose_ckpt`` (a pose
    cascade checkpoint, or "shipped") a second static row holds the pose estimator's input-frame hands still.

    ``contexts`` (e.g. (1, 8, 16)): for every checkpoint, one more row per N with the clip's first N frames
    imposed as a known prefix, lifted by L (``lift_ckpt``, default the shipped tiny one) + refinement from
    their 2D keypoints (N = 1: the anchored forecast of one image); ``oracle_anchor``: a row with the
    ground-truth frame 0 imposed instead. ``max_clips``: only the first clips of every split (also for the
    ground truth). ``impute_only``: also the N = 1 row without :meth:`ForecastModel.harmonise` (known frame
    replaced at every step, nothing else). With a context N > 1, every F row is also scored on the frames
    after the longest prefix only (rows ``[frames >= N]``). ``clamp_limits``: one more row per F row (not for
    the ``[frames >= N]`` and imputation-only ones) with every sample clamped to the joint limits (what
    ``handcast forecast`` writes); every F row also reports the fraction of sampled hand-frames within the
    limits. ``prefix_uses``: for a model trained with a prefix condition, one row per context and use
    ("both": imposed and the condition, "impose", "condition"; see :func:`forecast_split`), labelled with
    the use unless it is "both" alone. ``transform``: an item transform applied to every test clip, to its
    ground truth and its model inputs alike (e.g. :class:`handcast.train.augment.CameraAugment`: the clips seen
    through cameras of real photos); ``cameras`` describes it in the report."""
    from tqdm.auto import tqdm


    if transform is not None and pose_ckpt:
        raise HandcastError("the pose estimator's static row reads the store's own images: it cannot be scored "
                            "on clips seen through other cameras")
    st = ClipStore(store)
    hands = HandModel("auto")
    models = {name: load_forecast(p) for name, p in ckpts.items()}
    # row -> (model, context, oracle, clamp, prefix use)
    variants = {name: (name, 0, False, False, "both") for name in models}
    for name in models:
        uses = tuple(prefix_uses) if models[name].config.prefix else ("both",)
        for use in uses:
            tag = "" if uses == ("both",) else USE_LABELS[use]
            for n in contexts:
                label = f"{name}, anchored (L + refinement, frame 0)" if n == 1 else f"{name}, context {n} (L + refinement)"
                variants[label + tag] = (name, int(n), False, False, use)
            if oracle_anchor:
                variants[f"{name}, anchored (ground-truth frame 0){tag}"] = (name, 1, True, False, use)
        if impute_only and 1 in contexts:
            variants[f"{name}, anchored, imputation only"] = (name, 1, "impute", False, "impose")
    if clamp_limits:
        variants.update({f"{row}, clamped to joint limits": (*v[:3], True, v[4]) for row, v in list(variants.items())
                         if v[2] != "impute"})
    lift = None
    if contexts:
        lift = load_lift(shipped_checkpoint("lift_tiny.safetensors", "handcast train lift") if lift_ckpt is None
                         else lift_ckpt)
    rows: dict[str, dict] = {}
    secs: dict[str, dict] = {}
    gts = {s: _first(ground_truth_arrays(st, s), max_clips) if transform is None else
           viewed_ground_truth(st, s, transform, max_clips) for s in splits}
    statics = (["static pose (GT input frame)"] if static else []) + ([ESTIMATED_STATIC] if pose_ckpt else [])
    work = [(s, r) for s in splits for r in statics + list(variants)]
    for split, row in tqdm(work, desc="bench forecasting", disable=not progress):
        gt = gts[split]
        if row in variants:
            name, n, oracle, clamp, use = variants[row]
            pred = forecast_split(models[name], hands, st, split, samples, sampler, steps, context=n, lift=lift,
                                  oracle=oracle is True, max_clips=max_clips, harmonise=oracle != "impute",
                                  clamp_limits=clamp, prefix_use=use, transform=transform)
            secs.setdefault(row, {})[split] = pred.pop("seconds_per_clip")
        elif row == ESTIMATED_STATIC:
            pred = _first(estimated_static_pose(st, split, None if pose_ckpt == "shipped" else pose_ckpt), max_clips)
        else:
            pred = static_pose(gt)
        t = gt["joints"].shape[1]
        cut = lambda a: None if a is None else a[:, :, :t]  # noqa: E731
        p = Predictions(pred["clip_ids"], cut(pred["joints"]), cut(pred["pose6d"]), cut(pred["wrist"]))
        rows.setdefault(row, {})[split] = _summary(evaluate(p, _gt(gt)))
        if row in variants:
            rows[row][split]["limits_ok"] = limits_fraction(hands, p.pose6d, gt["valid"][:, :t])
        late = max(contexts, default=0)
        if late > 1 and row in variants and variants[row][2] is False and not variants[row][3]:  # the future beyond every prefix
            g2 = dict(gt, valid=gt["valid"].copy())
            g2["valid"][:, :late] = False
            rows.setdefault(f"{row} [frames >= {late}]", {})[split] = _summary(evaluate(p, _gt(g2)))
    result = {"table": rows, "seconds_per_clip": secs, "splits": list(splits), "samples": samples,
              "sampler": f"{sampler}-{steps}", "checkpoints": {k: str(v) for k, v in ckpts.items()},
              "command": command, "max_clips": max_clips, "cameras": cameras}
    if out is not None:
        write_report(result, Path(out))
    return result


def _f(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def format_report(result: dict) -> str:
    splits, n = result["splits"], result["samples"]
    lines = ["# Forecasting benchmark (paper Tables 3-5, synthetic)", ""]
    if result.get("command"):
        lines += ["Made by:", "", "```bash", result["command"], "```", ""]
    if result.get("cameras"):
        lines += [f"Cameras: {result['cameras']}", ""]
    lines += [f"Errors in cm over the whole horizon; {n} samples per input ({result['sampler']}); best-of-{n} is the",
              "reference code's protocol, mean-of-{n} the average sample. Regressors give one output (both equal).",
              "Inputs: the first frame only (image and/or its 2D keypoints); hand shape = ground truth's.", ""]
    for proto, label in (("best_of_n", f"best-of-{n}"), ("mean_of_n", f"mean-of-{n}")):
        lines += [f"## Table 3 ({label})", ""]
        lines += ["| method | " + " | ".join(f"{s} {m}" for s in splits for m in METRICS) + " |",
                  "|" + "---|" * (1 + len(splits) * len(METRICS))]
        for row, by in result["table"].items():
            cells = [_f(by[s][proto][m]) if s in by else "-" for s in splits for m in METRICS]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Table 4 (diversity and multimodality, MANO parameter space)", "",
              "| method | " + " | ".join(f"{s} diversity | {s} multimodality" for s in splits) + " |",
              "|" + "---|" * (1 + 2 * len(splits))]
    first = next(iter(result["table"].values()))
    gt_cells = []
    for s in splits:
        gt_cells += [_f(first[s]["diversity"]["gt"]), _f(first[s]["multimodality"]["gt"])]
    lines.append("| ground truth | " + " | ".join(gt_cells) + " |")
    for row, by in result["table"].items():
        cells = []
        for s in splits:
            cells += [_f(by[s]["diversity"]["pred"]), _f(by[s]["multimodality"]["pred"])]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lim = [(row, by) for row, by in result["table"].items() if all("limits_ok" in by.get(s, {}) for s in splits)]
    if lim:
        lines += ["", f"## Joint limits (fraction of sampled hand-frames with every finger joint within the hand "
                  f"model's limits + {LIMIT_TOL_DEG:g} deg; ground truth 100 %)", "",
                  "| method | " + " | ".join(splits) + " |", "|" + "---|" * (1 + len(splits))]
        lines += [f"| {row} | " + " | ".join(f"{100 * by[s]['limits_ok']:.0f} %" for s in splits) + " |"
                  for row, by in lim]
    if result["seconds_per_clip"]:
        lines += ["", f"Seconds per input ({n} samples, batched, 2 CPU cores): " + ", ".join(
            f"{r} {np.mean(list(v.values())):.3f}" for r, v in result["seconds_per_clip"].items())]
    return "\n".join(lines) + "\n"


def plot_horizon(result: dict, path: Path) -> None:
    """Best-of-N M (cm) against the forecast time (frames) per method, one panel per split."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = result["splits"]
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.6), sharey=True, squeeze=False)
    for ax, s in zip(axes[0], splits):
        for row, by in result["table"].items():
            if s in by:
                ax.plot(by[s]["horizon_M"], label=row, lw=1.5)
        ax.set_title(s)
        ax.set_xlabel("frame (30 fps)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"M, best-of-{result['samples']} (cm)")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_report(result: dict, out: Path) -> None:
    write_report_text(out.with_suffix(".md"), format_report(result))
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    plot_horizon(result, out.with_name(out.name + "_horizon.png"))
