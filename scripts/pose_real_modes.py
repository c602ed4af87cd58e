"""Real-photo pose errors of pose checkpoints, image+keypoints vs keypoints-only (results/pose_camera_robust.md).

For every annotated hand of the mmpose sample photos (as ``handcast bench real``: its hands, handedness, keypoint
sources and default camera) and every checkpoint x input mode x keypoint source (ground truth, mediapipe): the
mean distance (px) of the 21 keypoints, projected, to the annotated ones, before the keypoint fit (the cascade's
aggregate placed by its least-squares root) and after it (the ``handcast pose`` output); the median over hands
is reported. ``rot`` is the median rotation (degrees) between the cascade's root-relative joints and the fitted
ones (Kabsch): how far the fit had to turn the network's hand.

    PYTHONPATH=src python scripts/pose_real_modes.py \
        --ckpt shipped=src/handcast/assets/checkpoints/pose_tiny.safetensors \
        --ckpt tuned=runs/pose/camF/pose.safetensors --out out/real_modes.json [--overlays out/overlays]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from handcast.conventions import HANDS, NUM_KEYPOINTS
from handcast.data.coco_keypoints import read_coco_hand_keypoints
from handcast.data.images import load_image
from handcast.fit.keypoint_fit import refine_pose
from handcast.geometry import project
from handcast.infer.bench_real import (_detector, hand_size, known_handedness, kp_distances, match_detection,
                                       photo_sets)
from handcast.models.cascade.estimate import estimate_pose
from handcast.models.cascade.model import load_cascade


def _kabsch_deg(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1, 1, d]) @ vt
    return float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/real")
    ap.add_argument("--ckpt", action="append", required=True, metavar="NAME=PATH")
    ap.add_argument("--out", required=True, help="JSON of every hand's numbers and the summary")
    ap.add_argument("--overlays", default=None, help="write overlay PNGs of the first hands here")
    ap.add_argument("--modes", nargs="+", default=["image+kp", "kp-only"], choices=["image+kp", "kp-only"])
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    ckpts = dict(c.split("=", 1) for c in a.ckpt)
    detect, why = _detector()
    hands = [(name, h) for name, js in photo_sets(Path(a.data)) for h in read_coco_hand_keypoints(js)]
    inputs = []  # per hand: (name, image, {source: (keypoints, slot)})
    for name, h in hands:
        img = load_image(h.image)
        size = hand_size(h.uv)
        slot_mp, det = None, None
        if detect is not None:
            det = detect(img)
            slot_mp = match_detection(det.uv, det.present, h.uv, h.vis, size)
        side = known_handedness(name, h.image) or (HANDS[slot_mp] if slot_mp is not None else "right")
        slot = HANDS.index(side)
        uv = np.full((2, NUM_KEYPOINTS, 2), np.nan)
        cf = np.zeros((2, NUM_KEYPOINTS))
        uv[slot], cf[slot] = h.uv, h.vis.astype(np.float64)
        src = {"gt": ((uv, cf), slot)}
        if slot_mp is not None:
            src["mediapipe"] = ((np.asarray(det.uv, np.float64), np.asarray(det.confidence, np.float64)
                                 * det.present[:, None]), slot_mp)
        inputs.append((name, h, img, size, src))
    rows = []
    for cname, path in ckpts.items():
        model = load_cascade(path)
        for mode in a.modes:
            for i, (name, h, img, size, src) in enumerate(inputs):
                for s, (kps, slot) in src.items():
                    res = estimate_pose(img, model, kps, keypoints_only=mode == "kp-only")
                    fit = refine_pose(res, model.hands)
                    k = [j for j, x in enumerate(fit.hand) if int(x) == slot]
                    if not k:
                        continue
                    k = k[0]
                    net = project(fit.joints_network[k].astype(np.float64) + fit.root_network[k], fit.K)
                    out = project(fit.joints[k].astype(np.float64) + fit.root[k], fit.K)
                    rows.append({"ckpt": cname, "mode": mode, "source": s, "set": name, "image": h.image.name,
                                 "size_px": size, "net_px": float(kp_distances(net, h.uv, h.vis).mean()),
                                 "fit_px": float(kp_distances(out, h.uv, h.vis).mean()),
                                 "rot_deg": _kabsch_deg(fit.joints_network[k], fit.joints[k])})
                    if a.overlays and i in (0, 8, 10, 12):
                        from handcast.infer.pose import overlay_image
                        from handcast.render.overlay import save_png

                        o = Path(a.overlays)
                        o.mkdir(parents=True, exist_ok=True)
                        save_png(o / f"{cname}_{mode}_{s}_{name}_{h.image.stem}.png", overlay_image(img, fit))
                        save_png(o / f"{cname}_{mode}_{s}_{name}_{h.image.stem}_net.png",
                                 overlay_image(img, res))
            print(cname, mode, "done", flush=True)
    summary = {}
    for r in rows:
        summary.setdefault((r["ckpt"], r["mode"], r["source"]), []).append(r)
    table = []
    print("| checkpoint | input | keypoints | hands | net median px | net mean px | fit median px | fit mean px | "
          "net->fit rotation median deg |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (c, m, s), rs in summary.items():
        net, fit, rot = (np.array([r[k] for r in rs]) for k in ("net_px", "fit_px", "rot_deg"))
        e = {"ckpt": c, "mode": m, "source": s, "hands": len(rs), "net_median_px": float(np.median(net)),
             "net_mean_px": float(net.mean()), "fit_median_px": float(np.median(fit)), "fit_mean_px": float(fit.mean()),
             "rot_median_deg": float(np.median(rot))}
        table.append(e)
        print(f"| {c} | {m} | {s} | {len(rs)} | {e['net_median_px']:.1f} | {e['net_mean_px']:.1f} | "
              f"{e['fit_median_px']:.2f} | {e['fit_mean_px']:.2f} | {e['rot_median_deg']:.1f} |")
    Path(a.out).write_text(json.dumps({"detector": why or "mediapipe", "summary": table, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
