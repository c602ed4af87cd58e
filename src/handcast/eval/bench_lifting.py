"""The lifting benchmark (``handcast bench lifting``): paper Tables 1 and 2 on the synthetic benchmark.

Rows: the optimisation-only baseline (EasyMocap style), the lifting model L with each given checkpoint
(e.g. each conditioning subset of Table 2), L + closed-form placement on the 2D keypoints, and L +
reprojection refinement. Columns: M, M-G, M-F, MR in cm on the 2D-only test splits (``diverse_test``;
``wild_test`` zero-shot). Two reference rows made from the hidden truth bound what the protocol allows
(:func:`reference_predict`). A second table compares the samplers (time per clip and M).

Protocol: every method sees only the stored 2D tracks (with their detector-like noise), the intrinsics
and the camera trajectory. The hand shape is not observable from 2D, so every method uses the mean
shape (betas = 0); the ground truth keeps its true shape. A hand enters a method's input in a frame
when at least 3 of its keypoints are detected. Each method gives one output per clip (S = 1).
Refinement runs all 1000 iterations (no early stop): in handcast's loss units (docs/fitting.md) the
reference's early-stop threshold of 1e-4 stops at a few pixels of reprojection error.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from handcast.conventions import MIN_HAND_KEYPOINTS
from handcast.data.store import ClipStore
from handcast.eval.evaluate import GroundTruth, Predictions, evaluate
from handcast.eval.export import ground_truth_arrays
from handcast.fit.align import align_to_tracks
from handcast.fit.impute import lift_initialiser
from handcast.fit.optimize import fit_tracks
from handcast.fit.refine import RefineConfig, refine
from handcast.geometry import sixd_to_aa
from handcast.hand import HandModel
from handcast.io import atomic_path, write_report_text
from handcast.models.lifting import load_lift

METRICS = ("M", "M-G", "M-F", "MR")


def split_inputs(store: ClipStore, split: str) -> dict[str, torch.Tensor]:
    """The 2D-only inputs of a split, padded to its longest clip: kp2d, kp2d_conf, K, world_to_cam,
    image_size, frame_mask (B, T), hand_obs (B, T, 2) (>= 3 keypoints detected), betas = zeros."""
    view = store.split(split)
    n = len(view)
    lengths = np.asarray(view.lengths)
    t = int(lengths.max())
    kp = np.zeros((n, t, 2, 21, 2), np.float32)
    conf = np.zeros((n, t, 2, 21), np.float32)
    w2c = np.tile(np.eye(4, dtype=np.float32), (n, t, 1, 1))
    for i in range(n):
        a = view.read(i, fields=("kp2d", "kp2d_conf", "world_to_cam"))
        m = len(a["kp2d"])
        kp[i, :m], conf[i, :m], w2c[i, :m] = a["kp2d"], a["kp2d_conf"], a["world_to_cam"]
    frame_mask = np.arange(t)[None] < lengths[:, None]
    out = dict(kp2d=kp, kp2d_conf=conf, world_to_cam=w2c, K=np.array(view.clip_field("K"), np.float32),  # copies: memmaps are read-only
               image_size=np.array(view.clip_field("image_size"), np.int64), frame_mask=frame_mask,
               hand_obs=((conf > 0).sum(-1) >= MIN_HAND_KEYPOINTS) & frame_mask[..., None], betas=np.zeros((n, 2, 10), np.float32))
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def _batches(inputs: dict, size: int):
    n = len(inputs["K"])
    for s in range(0, n, size):
        yield {k: v[s : s + size] for k, v in inputs.items()}


def lift_predict(model, hands, inputs: dict, sampler: str = "ddim", steps: int = 10, seed: int = 0,
                 batch_size: int = 64, num_samples: int = 1, keep: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """L per clip, one sample or the average of ``num_samples`` (:func:`handcast.fit.impute.lift_initialiser`):
    pose (B, T, 2, 16, 3) axis-angle and MANO transl (B, T, 2, 3), mean shape."""
    init = lift_initialiser(model, hands, sampler, steps, seed, num_samples, keep)
    poses, transls = [], []
    for b in _batches(inputs, batch_size):
        p, tr = init(b)
        poses.append(p)
        transls.append(tr)
    return torch.cat(poses), torch.cat(transls)


def refine_predict(hands, pose, transl, inputs: dict, iterations: int = 1000, tol: float = 1e-4):
    r = refine(hands, pose, transl, inputs["betas"], inputs["kp2d"], inputs["kp2d_conf"], inputs["K"],
               inputs["world_to_cam"], inputs["hand_obs"], config=RefineConfig(iterations=iterations, tol=tol,
                                                                                record_history=False))
    return r.pose, r.transl


def align_predict(hands, pose, transl, inputs: dict):
    """Closed-form placement of each hand on its 2D keypoints (:mod:`handcast.fit.align`), rotations kept."""
    return align_to_tracks(hands, pose, transl, inputs["betas"], inputs["kp2d"], inputs["kp2d_conf"],
                           inputs["hand_obs"], inputs["K"], inputs["world_to_cam"])


REFERENCES = ("true articulation and wrist, mean shape", "true articulation, mean shape, placed on the 2D")


def reference_predict(hands, gt: dict, inputs: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The reference rows, made from the hidden truth (they are bounds, not methods): the true rotations and
    wrist positions with the mean shape (what the shape alone costs), and the true rotations placed on the
    2D tracks by :func:`align_predict` (the best a method can do that keeps its hands on the 2D keypoints
    and uses the mean shape: the depth then follows the unknown hand size)."""
    pose = sixd_to_aa(torch.from_numpy(gt["pose6d"]))  # both padded to the split's longest clip
    with torch.no_grad():
        j0 = hands.rest_joints(torch.zeros(2, 10))[:, 0]  # (2, 3) mean-shape rest wrist
    transl = torch.from_numpy(gt["wrist"]) - j0  # MANO transl of the true wrist with the mean shape
    return {REFERENCES[0]: (pose, transl), REFERENCES[1]: (pose, align_predict(hands, pose, transl, inputs))}


def optimisation_predict(hands, inputs: dict, batch_size: int = 16):
    poses, transls = [], []
    for b in _batches(inputs, batch_size):
        p, tr = fit_tracks(hands, b["kp2d"], b["kp2d_conf"], b["K"], b["world_to_cam"], b["hand_obs"], b["betas"])
        poses.append(p)
        transls.append(tr)
    return torch.cat(poses), torch.cat(transls)


@torch.no_grad()
def keypoints_of(hands, pose, transl, betas) -> np.ndarray:
    """(B, T, 2, 21, 3) keypoints, metres, frame-0 camera."""
    b = betas[:, None].expand(*pose.shape[:2], 2, 10)
    return hands.keypoints(pose, b, transl, rep="aa", convention="flat").numpy()


def score(joints: np.ndarray, gt: dict) -> dict:
    """M, M-G, M-F, MR (cm) of single predictions (B, T, 2, 21, 3) against ground-truth arrays."""
    t = gt["joints"].shape[1]
    pred = Predictions(gt["clip_ids"], joints[:, None, :t].astype(np.float32))
    res = evaluate(pred, GroundTruth(gt["clip_ids"], gt["joints"], gt["valid"]))
    return {k: res["best_of_n"][k] for k in METRICS}


def _timed(fn: Callable, n: int):
    t0 = time.perf_counter()
    out = fn()
    return out, (time.perf_counter() - t0) / max(n, 1)


def bench_lifting(store: str | Path, ckpts: dict[str, str], splits=("diverse_test", "wild_test"),
                  main: str | None = None, samplers=(("ddpm", 1000), ("ddim", 50), ("ddim", 10), ("dpm", 10)),
                  out: str | Path | None = None, refine_iterations: int = 1000, refine_tol: float = 0.0,
                  optimisation: bool = True, progress: bool = True, command: str = "", lift_samples: int = 1,
                  lift_keep: int | None = None) -> dict:
    """Run the benchmark; returns {"table": {row: {split: {metric: cm}}}, "samplers": [...], "seconds": ...}
    and writes ``<out>.md`` and ``<out>.json`` when ``out`` is given. ``lift_samples``: samples of L averaged
    per clip in the checkpoint rows and the main model's alignment and refinement rows (1: one sample, the
    paper's protocol); the sampler table keeps one. ``lift_keep``: of those, only the rotations of the
    ``lift_keep`` most consistent with the 2D keypoints are averaged (:func:`handcast.fit.impute.lift_initialiser`;
    None: all)."""
    from tqdm.auto import tqdm


    st = ClipStore(store)
    hands = HandModel("auto")
    models = {name: load_lift(p) for name, p in ckpts.items()}
    main = main or next(iter(models))
    rows: dict[str, dict] = {}
    secs: dict[str, float] = {}
    work = [(s, r) for s in splits for r in (["optimisation"] if optimisation else []) + list(models)
            + [f"{main} + alignment", f"{main} + refinement"]]
    bar = tqdm(work, desc="bench lifting", disable=not progress)
    cache: dict = {}
    for split, row in bar:
        bar.set_postfix_str(f"{split}: {row}")
        if split not in cache:
            cache[split] = (split_inputs(st, split), ground_truth_arrays(st, split))
        inputs, gt = cache[split]
        n = len(inputs["K"])
        if row == "optimisation":
            (pose, tr), dt = _timed(lambda: optimisation_predict(hands, inputs), n)
        elif row in models:
            (pose, tr), dt = _timed(lambda: lift_predict(models[row], hands, inputs, num_samples=lift_samples,
                                                        keep=lift_keep), n)
            cache[(split, row)] = (pose, tr, dt)
        else:  # the main model's output, placed on the 2D or refined
            p0, t0, dt0 = cache[(split, main)]
            if row.endswith(" + alignment"):
                (pose, tr), dt = _timed(lambda: (p0, align_predict(hands, p0, t0, inputs)), n)
            else:
                (pose, tr), dt = _timed(lambda: refine_predict(hands, p0, t0, inputs, refine_iterations, refine_tol), n)
            dt += dt0
        rows.setdefault(row, {})[split] = score(keypoints_of(hands, pose, tr, inputs["betas"]), gt)
        secs.setdefault(row, {})[split] = dt
    refs: dict[str, dict] = {}
    for split in splits:
        inputs, gt = cache[split]
        for name, (pose, tr) in reference_predict(hands, gt, inputs).items():
            refs.setdefault(name, {})[split] = score(keypoints_of(hands, pose, tr, inputs["betas"]), gt)
    sampler_rows = []
    if samplers:
        inputs, gt = cache[splits[0]]
        n = len(inputs["K"])
        for name, steps in tqdm(samplers, desc="samplers", disable=not progress):
            (pose, tr), dt = _timed(lambda: lift_predict(models[main], hands, inputs, name, steps), n)
            m = score(keypoints_of(hands, pose, tr, inputs["betas"]), gt)["M"]
            one = {k: v[:1] for k, v in inputs.items()}
            _, latency = _timed(lambda: lift_predict(models[main], hands, one, name, steps), 1)
            sampler_rows.append({"sampler": f"{name}-{steps}", "seconds_per_clip": dt, "latency_one_clip": latency,
                                 "M": m})
    result = {"table": rows, "references": refs, "seconds_per_clip": secs, "samplers": sampler_rows, "splits": list(splits),
              "checkpoints": {k: str(v) for k, v in ckpts.items()}, "command": command, "lift_samples": int(lift_samples),
              "lift_keep": None if lift_keep is None else int(lift_keep)}
    if out is not None:
        write_report(result, Path(out))
    return result


def _lift_protocol(result: dict) -> str:
    """How the report's L rows used L's samples (``lift_samples``, ``lift_keep``), one sentence."""
    n, keep = result.get("lift_samples", 1), result.get("lift_keep")
    if n == 1:
        return "one sample per clip."
    if not keep or keep >= n:
        return (f"the average of {n} samples per clip (rotation matrices averaged and projected to SO(3), wrists "
                "averaged).")
    return (f"{n} samples per clip; the rotation matrices of the {keep} most consistent with the 2D keypoints, per "
            "frame, hand and finger, averaged and projected to SO(3) (`handcast lift --keep`), the wrists of all averaged.")


def format_report(result: dict) -> str:
    splits = result["splits"]
    lines = ["# Lifting benchmark (paper Tables 1 and 2, synthetic)", ""]
    if result.get("command"):
        lines += ["Made by:", "", "```bash", result["command"], "```", ""]
    lines += ["Errors in cm (M: no alignment; M-G: one similarity per hand and clip; M-F: similarity fitted on",
              "the first frame; MR: right-minus-left root). Inputs: the stored 2D tracks only; mean hand shape.",
              "L: " + _lift_protocol(result), ""]
    head = "| method | " + " | ".join(f"{s} {m}" for s in splits for m in METRICS) + " | s/clip |"
    lines += [head, "|" + "---|" * (2 + len(splits) * len(METRICS))]
    for row, by_split in result["table"].items():
        cells = [f"{by_split[s][m]:.2f}" if s in by_split else "-" for s in splits for m in METRICS]
        t = np.mean(list(result["seconds_per_clip"][row].values()))
        lines.append(f"| {row} | " + " | ".join(cells) + f" | {t:.3f} |")
    if result.get("references"):
        lines += ["", "References from the hidden truth (bounds, not methods): the true rotations with the mean shape,",
                  "at the true wrist, and placed on the 2D tracks like a method that keeps its hands on the 2D keypoints", "",
                  "| reference | " + " | ".join(f"{s} {m}" for s in splits for m in METRICS) + " |",
                  "|" + "---|" * (1 + len(splits) * len(METRICS))]
        for row, by_split in result["references"].items():
            cells = [f"{by_split[s][m]:.2f}" if s in by_split else "-" for s in splits for m in METRICS]
            lines.append(f"| {row} | " + " | ".join(cells) + " |")
    if result["samplers"]:
        lines += ["", f"Samplers (main model, {splits[0]}): seconds per clip with all clips batched, and the",
                  "latency of one clip alone:", "",
                  "| sampler | s/clip (batched) | s for one clip | M |", "|---|---|---|---|"]
        for r in result["samplers"]:
            lines.append(f"| {r['sampler']} | {r['seconds_per_clip']:.4f} | {r['latency_one_clip']:.3f} | {r['M']:.2f} |")
    return "\n".join(lines) + "\n"


def write_report(result: dict, out: Path) -> None:
    write_report_text(out.with_suffix(".md"), format_report(result))
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
