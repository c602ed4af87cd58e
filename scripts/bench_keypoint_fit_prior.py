"""How strongly the keypoint fit of ``handcast pose`` should hold the fingers to the network's estimate:
``python scripts/bench_keypoint_fit_prior.py [--crops out/pose_crops_tiny] [--data ../shared/data/real]
[--weights 100 30 10 3] [--wrist 1 3] [--max-items N] [--ckpt CKPT] [--samples S] [--per-hand] [--per-keypoint]``.

``handcast.fit.keypoint_fit.KeypointFitConfig.w_prior`` weighs a Geman-McClure pull of the 15 finger rotations
towards the network's (the 2D keypoints cannot say which way a finger bends in depth). For each weight:

* **synthetic test crops** (``out/pose_crops_tiny``, split ``test``; the shipped cascade, keypoints-only as
  ``handcast pose`` runs it, median of 5 hypotheses, 1 DDIM step; build the set with
  ``python -c "from handcast.synth.crops import build_crops; build_crops('out/pose_crops_tiny', 'tiny', seed=0,
  hand_model='auto')"``): the fit from the simulated detector's keypoints (exact for the lab domain) and from the
  exact projections, with the 3D errors of ``handcast bench pose`` (MPJPE root-relative, PA-MPJPE, PA-MPVPE, mm)
  and the fitted keypoints' distance to the true projections (px in the 256 x 192 crop, mean over visible
  keypoints, mean over crops); with ``--noise F`` also from the exact projections plus Gaussian noise whose mean
  distance is F hand sizes (the diagonal of the true keypoints' box; mediapipe is 0.08 from the annotations of the
  real photos, ``results/real.md``), one fixed draw; with ``--sources mediapipe`` from mediapipe's keypoints on
  the crop images (``handcast.detect.detect_image``; the rows are over the crops where it finds the hand);
* **the real sample photos** (as ``handcast bench real``): the fit from the annotations and from mediapipe's
  keypoints (``handcast.detect.detect_image``'s default), the fitted keypoints' distance to the annotations (px,
  median and mean over hands; ``--per-hand``: each hand's too). There is no 3D truth here.

``--wrist``: values of ``KeypointFitConfig.w_wrist`` (the wrist keypoint's weight in the fit; default: the
config's), each with each ``--weights``. ``--per-keypoint``: on the real photos, each keypoint's mean distance to
the annotations (mediapipe's own too).

``--samples S``: hypotheses per hand of the cascade (``handcast pose --samples``; default 5).

``--ckpt``: another pose checkpoint (results/pose_camera_robust.md compares stage-1 fine-tunes with it).

The cascade runs once per input; only the fit changes. Nothing is written. About 25 minutes on 2 cores (the
synthetic part about 20: 147 crops, three starts, eight fits).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch


def synthetic(crops: str, weights, max_items: int | None, noise: float | None = None,
              sources=("det", "gt"), ckpt: str | None = None, wrists=(None,), samples: int = 5) -> None:
    from handcast.data.crops import CropBatches, CropSet
    from handcast.eval.metrics import mpjpe, pa_mpjpe, pa_mpvpe
    from handcast.fit.keypoint_fit import fit_keypoints
    from handcast.geometry import project
    from handcast.models.cascade.model import load_cascade, resolve_pose_checkpoint

    model = load_cascade(resolve_pose_checkpoint(ckpt), "cpu")
    cs = CropSet(crops, "test")
    data = CropBatches(cs, {}, "cpu")
    n = len(cs) if max_items is None else min(max_items, len(cs))
    idx = np.arange(n)
    gj, gv, Kc = data.tensor("joints", idx), data.tensor("vertices", idx), data.tensor("K_crop", idx)
    true_kp, vis = data.keypoints(idx, None, "gt")
    print(f"synthetic: {n} test crops of {crops}; px in the crop\n")
    print("| keypoints | w_prior | w_wrist | MPJPE mm | PA-MPJPE mm | PA-MPVPE mm | fitted keypoints to the truth, px |\n"
          "|---|---|---|---|---|---|---|")
    if noise is not None:
        sources = tuple(sources) + ("noisy",)
    for source in sources:
        if source == "noisy":
            kp, c = true_kp.clone(), vis.clone()
            m = c > 0
            lo = torch.where(m[..., None], kp, torch.inf).amin(1)
            hi = torch.where(m[..., None], kp, -torch.inf).amax(1)
            sigma = noise * (hi - lo).norm(dim=-1) / np.sqrt(np.pi / 2)  # E|N(0, s^2 I_2)| = s sqrt(pi / 2)
            g = torch.Generator().manual_seed(1)
            kp = torch.where(m[..., None], kp + torch.randn(kp.shape, generator=g) * sigma[:, None, None], kp)
        elif source == "mediapipe":
            kp, c = _mediapipe(cs, idx, true_kp, vis)
        else:
            kp, c = data.keypoints(idx, None, source)
        keep = c.sum(-1) > 0 if source == "mediapipe" else torch.ones(n, dtype=torch.bool)  # where mediapipe finds it
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            est = model.estimate_crops(data.images(idx), kp, c, Kc, samples, "ddim", 1, aggregations=("median",),
                                       generator=g, keypoints_only=True)
        joints = est["aggregated"]["median"][0]
        m = vis > 0
        given = m & (c > 0)  # the input's distance over the keypoints it gives (a detector drops some)
        d_in = ((kp - true_kp).norm(dim=-1) * given).sum(-1) / given.sum(-1).clamp_min(1)
        print(f"| {source} | (the input keypoints, where given: {int(given.sum())} of {int(m.sum())}; "
              f"{int(keep.sum())} of {n} crops) | | | | | {d_in[keep].mean():.2f} |")
        for w, a in [(w, a) for w in weights for a in wrists]:
            cfg = _config(w, a)
            kf = fit_keypoints(model.hands, joints, kp, c, Kc, cfg)
            uv = project(kf["joints"] + kf["root"][:, None], Kc[:, None], behind="clamp")
            d = ((uv - true_kp).norm(dim=-1) * m).sum(-1) / m.sum(-1).clamp_min(1)
            print(f"| {source} | {w:g} | {cfg.w_wrist:g} | {mpjpe(kf['joints'], gj)[keep].mean():.2f} "
                  f"| {pa_mpjpe(kf['joints'], gj)[keep].mean():.2f} | {pa_mpvpe(kf['vertices'], gv)[keep].mean():.2f} "
                  f"| {d[keep].mean():.2f} |", flush=True)


def _config(w_prior: float, w_wrist: float | None):
    from handcast.fit.keypoint_fit import KeypointFitConfig

    return KeypointFitConfig(w_prior=float(w_prior)) if w_wrist is None else \
        KeypointFitConfig(w_prior=float(w_prior), w_wrist=float(w_wrist))


def _mediapipe(cs, idx, true_kp: torch.Tensor, vis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mediapipe's keypoints on each crop image (``handcast.detect.detect_image`` as ``handcast pose`` runs it),
    the detection matched to the crop's hand; confidence 0 everywhere where it found none."""
    from handcast.detect import detect_image
    from handcast.infer.bench_real import hand_size, match_detection

    images = cs.images(idx)
    kp, c = torch.zeros_like(true_kp), torch.zeros(true_kp.shape[:2], dtype=true_kp.dtype)
    for j in range(len(idx)):
        gt, v = true_kp[j].double().numpy(), vis[j].numpy() > 0
        d = detect_image(np.ascontiguousarray(images[j]))
        s = match_detection(d.uv, d.present, gt, v, hand_size(gt[v]))
        if s is not None:
            kp[j] = torch.as_tensor(np.asarray(d.uv[s], np.float64), dtype=kp.dtype)
            c[j] = torch.as_tensor(np.asarray(d.confidence[s], np.float64), dtype=c.dtype)
    return kp, c


def real(data_dir: Path, weights, ckpt: str | None = None, per_hand: bool = False, wrists=(None,),
         per_keypoint: bool = False, samples: int = 5) -> None:
    from handcast.data.coco_keypoints import read_coco_hand_keypoints
    from handcast.data.images import load_image
    from handcast.data.keypoints import keypoints_json, parse_keypoints
    from handcast.detect import detect_image
    from handcast.fit.keypoint_fit import refine_pose
    from handcast.infer.bench_real import (hand_size, kp_distances, known_handedness, match_detection, photo_sets,
                                           project_np)
    from handcast.infer.pose import DEFAULT_KEYPOINTS_ONLY
    from handcast.models.cascade.estimate import estimate_pose
    from handcast.models.cascade.model import load_cascade, resolve_pose_checkpoint

    model = load_cascade(resolve_pose_checkpoint(ckpt), "cpu")
    hands = [(n, h) for n, js in photo_sets(data_dir) for h in read_coco_hand_keypoints(js)]
    dist: dict[tuple[str, float, float], list[float]] = {}
    rows: dict[int, dict] = {}
    per_kp: dict[tuple, list[np.ndarray]] = {}  # (21,) px to the annotation per hand, NaN where not annotated

    def keypoint_px(uv21):
        return np.where(h.vis, np.linalg.norm(np.asarray(uv21, np.float64) - h.uv, axis=-1), np.nan)

    for i, (name, h) in enumerate(hands):
        img, size = load_image(h.image), hand_size(h.uv)
        d = detect_image(img)  # as handcast pose detects (handcast.infer.pose.detect_keypoints)
        slot_mp = match_detection(d.uv, d.present, h.uv, h.vis, size)
        side = known_handedness(name, h.image)
        slot_gt = slot_mp if side is None else ("right", "left").index(side)
        slot_gt = 0 if slot_gt is None else slot_gt
        uv = np.full((2, 21, 2), np.nan)
        cf = np.zeros((2, 21))
        uv[slot_gt], cf[slot_gt] = h.uv, h.vis.astype(np.float64)
        gt = parse_keypoints(keypoints_json(uv, cf))  # as a --keypoints file reads (unannotated keypoints missing)
        mp = (np.asarray(d.uv, np.float64), np.asarray(d.confidence, np.float64) * d.present[:, None])
        if slot_mp is not None:
            per_kp.setdefault(("mediapipe itself", "", ""), []).append(keypoint_px(d.uv[slot_mp]))
        for source, slot, kps in (("annotations", slot_gt, gt), ("mediapipe", slot_mp, mp)):
            if slot is None:
                continue
            # handcast pose's estimate before its keypoint fit (run_pose's defaults)
            res = estimate_pose(img, model, kps, num_samples=samples, keypoints_only=DEFAULT_KEYPOINTS_ONLY)
            k = [q for q, hh in enumerate(res.hand) if int(hh) == slot][0]
            for w, a in [(w, a) for w in weights for a in wrists]:
                cfg = _config(w, a)
                r = refine_pose(res, model.hands, cfg)
                j3 = r.joints[k].astype(np.float64) + r.root[k].astype(np.float64)
                key = (source, w, cfg.w_wrist)
                dist.setdefault(key, []).append(kp_distances(project_np(j3, r.K), h.uv, h.vis).mean())
                rows.setdefault(i, {})[key] = dist[key][-1]
                per_kp.setdefault(key, []).append(keypoint_px(project_np(j3, r.K)))
    print(f"\nreal photos: {len(hands)} annotated hands of {data_dir}; fitted keypoints to the annotations, px\n")
    print("| keypoints | w_prior | w_wrist | hands | median px | mean px |\n|---|---|---|---|---|---|")
    for (source, w, a), v in dist.items():
        print(f"| {source} | {w:g} | {a:g} | {len(v)} | {np.median(v):.2f} | {np.mean(v):.2f} |")
    if per_hand:
        print("\nper hand, px:\n\n| hand | " + " | ".join(f"{s} {w:g}/{a:g}" for s, w, a in dist) + " |\n"
              + "|---" * (len(dist) + 1) + "|")
        for i, (name, h) in enumerate(hands):
            cells = [f"{rows[i][k]:.2f}" if k in rows.get(i, {}) else "-" for k in dist]
            print(f"| {name}/{h.image.name} | " + " | ".join(cells) + " |")
    if per_keypoint:
        names = ["wrist"] + [f"{f} {p}" for f in ("thumb", "index", "middle", "ring", "pinky")
                             for p in ("base", "2", "3", "tip")]
        cols = list(per_kp)
        print("\nper keypoint, px to the annotations (mean over the hands where it is annotated):\n\n| keypoint | "
              + " | ".join(" ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in c).strip() for c in cols)
              + " |\n" + "|---" * (len(cols) + 1) + "|")
        for j, nm in enumerate(names):
            print(f"| {nm} | " + " | ".join(f"{np.nanmean(np.stack(per_kp[c])[:, j]):.2f}" for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", default="out/pose_crops_tiny")
    ap.add_argument("--data", default="../shared/data/real")
    ap.add_argument("--weights", type=float, nargs="+", default=[100.0, 30.0, 10.0, 3.0])
    ap.add_argument("--max-items", type=int, default=None)
    ap.add_argument("--wrist", type=float, nargs="+", default=[None],
                    help="w_wrist values to compare (default: KeypointFitConfig's)")
    ap.add_argument("--ckpt", default=None, help="pose checkpoint or run folder (default: the shipped one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=5, help="hypotheses per hand (handcast pose --samples; default 5)")
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--per-hand", action="store_true", help="also each real hand's distance (every hand found)")
    ap.add_argument("--per-keypoint", action="store_true",
                    help="also each keypoint's mean distance on the real photos (and mediapipe's own)")
    ap.add_argument("--skip-synthetic", action="store_true")
    ap.add_argument("--noise", type=float, default=None, help="also exact keypoints + Gaussian noise of F hand sizes")
    ap.add_argument("--sources", nargs="*", choices=("det", "gt", "mediapipe"), default=["det", "gt"],
                    help="synthetic keypoint sources besides --noise")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"command: python {shlex.join(sys.argv)}\n")
    if not args.skip_synthetic:
        synthetic(args.crops, args.weights, args.max_items, args.noise, args.sources, args.ckpt, args.wrist, args.samples)
    if not args.skip_real:
        real(Path(args.data), args.weights, args.ckpt, args.per_hand, args.wrist, args.per_keypoint, args.samples)


if __name__ == "__main__":
    main()
