"""L alone on the real photos: ``python scripts/real_photos_lift_alone.py [--ckpt L.safetensors ...]
[--samples 8] [--keep 2] [--data ../shared/data/real]``.

Each annotated hand of the mmpose sample photos (as ``handcast bench real``: handedness from the data, else
mediapipe's; default 60 degree field of view) is lifted from its annotated 2D keypoints as the forecast anchor
lifts a photo (:func:`handcast.fit.anchor.lift_prefix`), but with L's own orientation only and no refinement
(``orientation_starts=1``, ``iterations=0``: L + the closed-form placement on the keypoints). Printed per
checkpoint: the mean pixel distance of the placed hand's projected keypoints to the annotation, median and mean
over the hands, in px and in hand sizes. A real-photo counterpart of the real video's "L alone"; the placement
puts every hand on its keypoints, so what is left is L's orientation and articulation. Nothing is written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", default=None, help="lifting checkpoint(s) (default: the shipped L)")
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--keep", type=int, default=2, help="samples averaged, the most consistent (0: all)")
    ap.add_argument("--data", default="../shared/data/real")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from handcast.conventions import DEFAULT_FOV_DEG
    from handcast.data.coco_keypoints import read_coco_hand_keypoints
    from handcast.data.images import load_image
    from handcast.detect import detect_image
    from handcast.fit.anchor import AnchorConfig, lift_prefix
    from handcast.geometry import project, resolve_intrinsics
    from handcast.hand import HandModel
    from handcast.infer.bench_real import hand_size, kp_distances, known_handedness, match_detection, photo_sets
    from handcast.infer.lift import shipped_lift_checkpoint
    from handcast.models.lifting import load_lift

    print(f"command: python {shlex.join(sys.argv)}")
    hands = HandModel("auto")
    items = []
    for set_name, js in photo_sets(Path(args.data)):
        for h in read_coco_hand_keypoints(js):
            img = load_image(h.image)
            side = known_handedness(set_name, h.image)
            if side is None:
                det = detect_image(img)
                s = match_detection(det.uv, det.present, h.uv, h.vis, hand_size(h.uv))
                side = "right" if s in (None, 0) else "left"
            H, W = img.shape[:2]
            K = resolve_intrinsics((W, H), fov=DEFAULT_FOV_DEG)
            items.append((h, 0 if side == "right" else 1, np.asarray(K, np.float64), (W, H)))
    cfg = AnchorConfig(orientation_starts=1, iterations=0, samples=args.samples, keep=args.keep or None)
    print(f"{len(items)} hands; L: {args.samples} samples, {args.keep or 'all'} kept; no refinement, one orientation")
    print("| L | median px | mean px | median / size | mean / size |\n|---|---|---|---|---|")
    for ckpt in args.ckpt or [str(shipped_lift_checkpoint())]:
        lift = load_lift(ckpt)
        d, r = [], []
        for h, slot, K, (W, H) in items:
            kp = torch.zeros(1, 1, 2, 21, 2)
            conf = torch.zeros(1, 1, 2, 21)
            kp[0, 0, slot] = torch.from_numpy(np.nan_to_num(h.uv)).float()
            conf[0, 0, slot] = torch.from_numpy(h.vis.astype(np.float32))
            with torch.no_grad():
                pose, wrist, _, _ = lift_prefix(lift, hands, kp, conf, torch.from_numpy(K)[None].float(),
                                                torch.tensor([[W, H]], dtype=torch.float32), config=cfg,
                                                generator=torch.Generator().manual_seed(0))
                j0 = hands.rest_joints()[:, 0]
                j3 = hands.keypoints(pose[0, 0], transl=wrist[0, 0] - j0)[slot]
                uv = project(j3.double(), torch.from_numpy(K)).numpy()
            dist = kp_distances(uv, h.uv, h.vis).mean()
            d.append(dist)
            r.append(dist / hand_size(h.uv))
        print(f"| {ckpt} | {np.median(d):.2f} | {np.mean(d):.2f} | {np.median(r):.3f} | {np.mean(r):.3f} |", flush=True)


if __name__ == "__main__":
    main()
