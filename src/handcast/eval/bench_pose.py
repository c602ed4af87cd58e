"""The pose benchmark (``handcast bench pose``): issue 5, sections 5 and 7, on the synthetic crop set.

Main table (one-step DDIM by default, S hypotheses): MPJPE (root-relative, no alignment), PA-MPJPE,
PA-MPVPE (mm, similarity Procrustes per hand), F@5 mm and F@15 mm (on Procrustes-aligned vertices), for

* a reference that ignores the input: the hand model's mean pose and shape (what PA metrics give a
  constant hand);
* the single-stage regressor baseline;
* joint diffusion alone: stage-1 hypotheses aggregated by the joint-level median, the hand model fitted to
  them (:func:`~handcast.models.cascade.fitting.fit_mesh_to_joints`);
* the cascade with each aggregation: one sample (none), pose-level mean, joint-level median,
  2D-consistency weighting;
* best-of-N (ORACLE, needs the ground truth; reported separately): the hypothesis closest to the ground truth,
  chosen per hand separately for the joints (PA-MPJPE) and the mesh (PA-MPVPE).

Steps table: the cascade (joint-level median, and one sample) for several DDIM step counts, with the time
per hand. Per-domain table: PA-MPJPE / PA-MPVPE of every row on each synthetic domain.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from handcast.data.crops import CropBatches, CropSet
from handcast.errors import HandcastError
from handcast.eval.metrics import f_score, mpjpe, pa_mpjpe, pa_mpvpe
from handcast.models.cascade.aggregate import (
    AGGREGATIONS,
    best_of_n,
    joint_median,
    select,
)
from handcast.models.cascade.fitting import fit_mesh_to_joints
from handcast.fit.keypoint_fit import fit_keypoints
from handcast.models.cascade.model import (
    load_cascade,
    load_regressor,
    resolve_pose_checkpoint,
)

ROW_ORDER = ("mean-pose", "regressor", "joint+fit", "cascade-single", "cascade-mean", "cascade-median", "cascade-reproj",
             "cascade-median+kpfit")
ROW_NAMES = {
    "mean-pose": "reference: the hand model's mean pose (input ignored)",
    "regressor": "single-stage regressor",
    "joint+fit": "joint diffusion + fitted mesh (median joints)",
    "cascade-single": "cascade, one sample (no aggregation)",
    "cascade-mean": "cascade + pose-level mean",
    "cascade-median": "cascade + joint-level median",
    "cascade-reproj": "cascade + 2D-consistency weighting",
    "cascade-median+kpfit": "cascade + joint-level median + keypoint fit (the `handcast pose` default)",
    "oracle": "best-of-N (ORACLE, uses the ground truth)",
}


def _metrics(joints, verts, gt_j, gt_v) -> dict[str, np.ndarray]:
    """Per-item metrics (N,) for numpy/torch inputs."""
    f = f_score(verts, gt_v, [0.005, 0.015])
    return {"MPJPE": mpjpe(joints, gt_j), "PA-MPJPE": pa_mpjpe(joints, gt_j), "PA-MPVPE": pa_mpvpe(verts, gt_v),
            "F@5": f[..., 0], "F@15": f[..., 1]}


def _cat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _summary(m: dict[str, np.ndarray], mask=None) -> dict[str, float]:
    sel = slice(None) if mask is None else mask
    return {k: float(np.mean(v[sel])) for k, v in m.items()}


def bench_pose(ckpt: str | Path, regressor: str | Path | None = None, crops: str | Path = "out/pose_crops_tiny",
               split: str = "test", num_samples: int = 5, sampler: str = "ddim", steps: int = 1,
               steps_table: Sequence[int] = (1, 2, 5, 10), keypoints: str = "det", tau: float = 4.0, seed: int = 0,
               max_items: int | None = None, fit_iterations: int = 150, batch_size: int = 64, out: str | Path | None = None,
               command: str | None = None, device: str = "cpu", progress: bool = True, keypoint_fit: bool = True,
               keypoints_only: bool = False) -> dict:
    """Run the benchmark; returns the result dict (``format_report`` makes the markdown). With ``out`` (a path
    without suffix, e.g. ``results/pose_tiny``) writes ``out.md`` and ``out.json`` atomically.

    ckpt: the cascade (``pose.safetensors`` or its run folder); regressor: the baseline's checkpoint (default
    ``regressor.safetensors`` beside ckpt, if present). keypoints: "det" (the domain's simulated detector;
    exact projections for lab) or "gt" (exact projections for every domain). keypoint_fit: add the row of the
    median aggregate fitted to the keypoints (:func:`handcast.fit.keypoint_fit.fit_keypoints`) and its wrist error.
    keypoints_only: the cascade ignores the crop images (:meth:`PoseCascade.estimate_crops`)."""
    ck = resolve_pose_checkpoint(ckpt)
    model = load_cascade(ck, device)
    reg_path = Path(regressor) if regressor else ck.parent / "regressor.safetensors"
    reg = load_regressor(reg_path, device, model.hands) if reg_path.is_file() else None
    if regressor and reg is None:
        raise HandcastError(f"regressor checkpoint not found: {reg_path}")
    cs = CropSet(crops, split)
    if cs.hand_model != model.hands.kind:
        raise HandcastError(f"crop set {crops} uses the '{cs.hand_model}' hand model, the checkpoint '{model.hands.kind}'")
    data = CropBatches(cs, {}, device)
    n = len(cs) if max_items is None else min(int(max_items), len(cs))
    idx_all = np.arange(n)
    domain = cs.arrays["domain"][:n]
    steps_list = sorted(set([int(steps)] + [int(s) for s in steps_table]))

    rows: dict[str, list] = {k: [] for k in ROW_ORDER + ("oracle",)}
    step_rows: dict[int, dict[str, list]] = {s: {"median": [], "single": []} for s in steps_list}
    step_time: dict[int, float] = {s: 0.0 for s in steps_list}
    reg_time = 0.0
    ae_err = []
    root_err = []  # keypoint fit: wrist position error, mm
    with torch.no_grad():  # the reference row: one constant hand (mean finger pose, mean shape) for every input
        from handcast.geometry import aa_to_rotmat
        from handcast.models.cascade.handutil import right_hand

        aa = torch.cat([torch.zeros(1, 3), model.hands.hands_mean[0].reshape(15, 3).cpu()]).to(device)
        mv, mj = right_hand(model.hands, aa_to_rotmat(aa)[None])
    batches = [idx_all[i:i + batch_size] for i in range(0, n, batch_size)]
    it = batches
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(batches, desc="bench pose", leave=False)
    with torch.no_grad():
        for bi, idx in enumerate(it):
            kp, c = data.keypoints(idx, None, keypoints)
            Kc = data.tensor("K_crop", idx)
            gj, gv = data.tensor("joints", idx), data.tensor("vertices", idx)
            images = data.images(idx)
            rows["mean-pose"].append(_metrics(mj.expand(len(idx), -1, -1), mv.expand(len(idx), -1, -1), gj, gv))
            ae_err.append(((model.ae(gv) - gv).norm(dim=-1).mean(-1) * 1000).cpu().numpy())
            for s in steps_list:
                g = torch.Generator(device=kp.device).manual_seed(seed * 1000 + bi)
                t0 = time.perf_counter()
                est = model.estimate_crops(images, kp, c, Kc, num_samples, sampler, s,
                                           aggregations=AGGREGATIONS if s == steps else ("median", "single"),
                                           tau=tau, generator=g, keypoints_only=keypoints_only)
                step_time[s] += time.perf_counter() - t0
                for a in ("median", "single"):
                    step_rows[s][a].append(_metrics(*est["aggregated"][a], gj, gv))
                if s != steps:
                    continue
                for a in AGGREGATIONS:
                    rows[f"cascade-{a}"].append(_metrics(*est["aggregated"][a], gj, gv))
                js, vs = est["joint_samples"], est["vertex_samples"]
                bj = select(js, best_of_n(js, gj))
                bv = select(vs, best_of_n(vs, gv))
                rows["oracle"].append(_metrics(bj, bv, gj, gv))
                with torch.enable_grad():
                    fit = fit_mesh_to_joints(model.hands, joint_median(js), iterations=fit_iterations)
                rows["joint+fit"].append(_metrics(joint_median(js), fit["vertices"], gj, gv))
                if keypoint_fit:
                    kf = fit_keypoints(model.hands, est["aggregated"]["median"][0], kp, c, Kc)
                    rows["cascade-median+kpfit"].append(_metrics(kf["joints"], kf["vertices"], gj, gv))
                    root_err.append(((kf["root"] - data.tensor("root", idx)).norm(dim=-1) * 1000).cpu().numpy())
            if reg is not None:
                t0 = time.perf_counter()
                p = reg.predict(images, kp, c, Kc)
                reg_time += time.perf_counter() - t0
                rows["regressor"].append(_metrics(p["joints"], p["vertices"], gj, gv))

    table, per_item = {}, {}
    for k, v in rows.items():
        if v:
            per_item[k] = _cat(v)
            table[k] = _summary(per_item[k])
    by_domain = {d: {k: _summary(m, domain == i) for k, m in per_item.items()} for i, d in enumerate(cs.domains)
                 if (domain == i).any()}
    steps_out = {}
    for s in steps_list:
        steps_out[str(s)] = {a: _summary(_cat(v)) for a, v in step_rows[s].items()}
        steps_out[str(s)]["ms_per_hand"] = 1000.0 * step_time[s] / n
    agg_rows = [f"cascade-{a}" for a in ("mean", "median", "reproj")]
    best_agg = min(agg_rows, key=lambda r: table[r]["PA-MPVPE"])
    checks = {
        "cascade_beats_regressor_pa_mpvpe": (None if "regressor" not in table else
                                             bool(table["cascade-median"]["PA-MPVPE"] < table["regressor"]["PA-MPVPE"])),
        "aggregation_beats_single_pa_mpvpe": bool(table[best_agg]["PA-MPVPE"] < table["cascade-single"]["PA-MPVPE"]),
        "aggregation_beats_single_pa_mpjpe": bool(min(table[r]["PA-MPJPE"] for r in agg_rows)
                                                  < table["cascade-single"]["PA-MPJPE"]),
        "best_aggregation": best_agg,
    }
    result = {
        "command": command, "checkpoint": str(ck), "regressor": str(reg_path) if reg is not None else None,
        "crops": str(crops), "split": split, "items": int(n), "domains": list(cs.domains),
        "keypoints": keypoints, "keypoints_only": bool(keypoints_only), "num_samples": int(num_samples),
        "sampler": sampler, "steps": int(steps),
        "tau_px": tau, "seed": seed, "torch_threads": torch.get_num_threads(), "hand_model": model.hands.kind,
        "num_vertices": model.hands.num_vertices, "ae_recon_mm": float(np.concatenate(ae_err).mean()),
        "table": table, "by_domain": by_domain, "steps_table": steps_out, "checks": checks,
        "regressor_ms_per_hand": (1000.0 * reg_time / n) if reg is not None else None,
        "keypoint_fit_root_mm": (None if not root_err else
                                 {"mean": float(np.concatenate(root_err).mean()),
                                  "median": float(np.median(np.concatenate(root_err)))}),
        "training_log": _training_log(ck.parent),
    }
    if out is not None:
        from handcast.io import atomic_path, write_report_text

        outp = Path(out)
        with atomic_path(outp.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(result, indent=1))
        write_report_text(outp.with_suffix(".md"), format_report(result))
    return result


def _training_log(run: Path) -> list[dict] | None:
    f = run / "log.jsonl"
    if not f.is_file():
        return None
    try:
        return [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError:
        return None


def _fmt_row(name: str, m: dict) -> str:
    return (f"| {name} | {m['MPJPE']:.2f} | {m['PA-MPJPE']:.2f} | {m['PA-MPVPE']:.2f} | {m['F@5']:.3f} | "
            f"{m['F@15']:.3f} |")


def format_report(r: dict) -> str:
    """Markdown tables of a :func:`bench_pose` result."""
    lines = ["# Pose benchmark (cascaded diffusion, issue 5)", ""]
    if r.get("command"):
        lines += ["Command:", "", "```bash", r["command"], "```", ""]
    lines += [f"Checkpoint `{r['checkpoint']}`; regressor `{r['regressor']}`; crop set `{r['crops']}` split "
              f"`{r['split']}` ({r['items']} hands; domains {', '.join(r['domains'])}); 2D keypoints: "
              f"`{r['keypoints']}`{' (keypoints only: the cascade ignores the images)' if r.get('keypoints_only') else ''}; "
              f"hand model `{r['hand_model']}` ({r['num_vertices']} vertices); "
              f"{r['num_samples']} hypotheses, {r['sampler']} {r['steps']} step(s); torch threads {r['torch_threads']}.",
              "", f"Mesh autoencoder reconstruction of the test meshes: {r['ae_recon_mm']:.2f} mm (mean per-vertex).", "",
              "## Main table (mm; F-scores on Procrustes-aligned vertices)", "",
              "| method | MPJPE | PA-MPJPE | PA-MPVPE | F@5 | F@15 |", "|---|---|---|---|---|---|"]
    for k in ROW_ORDER:
        if k in r["table"]:
            lines.append(_fmt_row(ROW_NAMES[k], r["table"][k]))
    if r.get("keypoint_fit_root_mm"):
        kr = r["keypoint_fit_root_mm"]
        lines += ["", f"Keypoint fit: wrist position error (absolute, camera frame of the crop) {kr['median']:.1f} mm "
                  f"median, {kr['mean']:.1f} mm mean."]
    lines += ["", "Oracle (not a deployable estimate):", "", "| method | MPJPE | PA-MPJPE | PA-MPVPE | F@5 | F@15 |",
              "|---|---|---|---|---|---|", _fmt_row(ROW_NAMES["oracle"], r["table"]["oracle"]), ""]
    lines += ["## Steps table (DDIM steps in both stages)", "",
              "| steps | PA-MPJPE median | PA-MPVPE median | F@5 median | F@15 median | PA-MPJPE one sample | "
              "PA-MPVPE one sample | ms per hand |", "|---|---|---|---|---|---|---|---|"]
    for s, v in sorted(r["steps_table"].items(), key=lambda kv: int(kv[0])):
        m, o = v["median"], v["single"]
        lines.append(f"| {s} | {m['PA-MPJPE']:.2f} | {m['PA-MPVPE']:.2f} | {m['F@5']:.3f} | {m['F@15']:.3f} | "
                     f"{o['PA-MPJPE']:.2f} | {o['PA-MPVPE']:.2f} | {v['ms_per_hand']:.1f} |")
    if r.get("regressor_ms_per_hand") is not None:
        lines += ["", f"Regressor: {r['regressor_ms_per_hand']:.1f} ms per hand. Times are for batches of crops "
                  "(backbone included, cropping excluded) with the thread count above."]
    lines += ["", "## By domain (PA-MPJPE / PA-MPVPE, mm)", "",
              "| method | " + " | ".join(r["by_domain"]) + " |", "|---|" + "---|" * len(r["by_domain"])]
    for k in ROW_ORDER + ("oracle",):
        if k in r["table"]:
            cells = [f"{r['by_domain'][d][k]['PA-MPJPE']:.2f} / {r['by_domain'][d][k]['PA-MPVPE']:.2f}"
                     for d in r["by_domain"]]
            lines.append(f"| {ROW_NAMES[k]} | " + " | ".join(cells) + " |")
    c = r["checks"]
    yn = {True: "yes", False: "NO", None: "n/a (no regressor)"}
    lines += ["", "## Expectations (issue 5, section 7)", "",
              f"* the cascade (joint-level median) beats the single-stage regressor on PA-MPVPE: "
              f"{yn[c['cascade_beats_regressor_pa_mpvpe']]}",
              f"* an aggregation beats a single sample on PA-MPVPE: {yn[c['aggregation_beats_single_pa_mpvpe']]} "
              f"(best: {c['best_aggregation']}); on PA-MPJPE: {yn[c['aggregation_beats_single_pa_mpjpe']]}", ""]
    return "\n".join(lines)
