"""Small hands in large photos: what the detector's tiles (``handcast.detect.hands.HandDetector.detect_tiles``) find
that the whole photo does not: ``python scripts/bench_small_hands.py [--data ../shared/data/real] [--scales 1 2 4 8]``.

Each annotated hand of the mmpose sample photos (as ``handcast bench real``) is put in a larger picture: the photo,
unscaled, on a canvas ``k`` times its longer side (the canvas 4:3 or 3:4 like the photo, at most 4000 px; a flat
background of the photo's mean border colour; the photo placed at 30 % across and 40 % down the free space). For
each scale ``k``: the hands ``detect_image`` finds (default variants) without and with tiles (``tiles=False`` /
``True``, the default), the median and mean distance of its keypoints to the annotations (px, over the hands it
finds), and the mean time per picture. Scale 1 is the photo itself (there are no tiles where the photo finds its
hands).

False hands: the 30 hand-free crops of the real video (``scripts/real_detector_limits.py --hand-free``), as they are
and enlarged 4x (pixel repetition: a large photo with no hand), with tiles: every hand found is false.

About 5 minutes on 2 cores. Nothing is written. Needs the ``detect`` extra and the real data folder.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

MAX_SIDE = 4000


def canvas(photo: np.ndarray, k: float) -> tuple[np.ndarray, np.ndarray]:
    """The photo (H, W, 3) on a canvas ``k`` times its longer side; returns the canvas and the photo's corner (x, y)."""
    H, W = photo.shape[:2]
    if k <= 1:
        return photo, np.zeros(2)
    long_side = min(int(round(k * max(H, W))), MAX_SIDE)
    cw, ch = (long_side, long_side * 3 // 4) if W >= H else (long_side * 3 // 4, long_side)
    cw, ch = max(cw, W), max(ch, H)
    border = np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]]).mean(0)
    out = np.empty((ch, cw, 3), np.uint8)
    out[:] = np.round(border).astype(np.uint8)
    x, y = int(0.3 * (cw - W)), int(0.4 * (ch - H))
    out[y:y + H, x:x + W] = photo
    return out, np.array([x, y], np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/real")
    ap.add_argument("--scales", type=float, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--skip-hand-free", action="store_true")
    args = ap.parse_args()
    print("command: python scripts/bench_small_hands.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]), flush=True)

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from handcast.data.coco_keypoints import read_coco_hand_keypoints
    from handcast.data.images import load_image
    from handcast.detect import detect_image
    from handcast.infer.bench_real import hand_size, kp_distances, match_detection, photo_sets

    data = Path(args.data)
    hands = [h for _, js in photo_sets(data) for h in read_coco_hand_keypoints(js)]
    detect_image(np.zeros((64, 64, 3), np.uint8))  # builds the graph outside the timings
    print(f"\n{len(hands)} annotated hands of {data}; px to the annotations over the hands found\n")
    print("| canvas / photo (longer side) | canvas px (median) | tiles | found | median px | mean px | s per picture |\n"
          "|---|---|---|---|---|---|---|")
    for k in args.scales:
        for tiles in (False, True):
            errs, secs, sides = [], [], []
            for h in hands:
                photo = load_image(h.image)
                pic, corner = canvas(photo, k)
                sides.append(max(pic.shape[:2]))
                t = time.perf_counter()
                d = detect_image(pic, tiles=tiles)
                secs.append(time.perf_counter() - t)
                uv = np.asarray(d.uv, np.float64) - corner
                slot = match_detection(uv, d.present, h.uv, h.vis, hand_size(h.uv))
                if slot is not None:
                    errs.append(float(kp_distances(uv[slot], h.uv, h.vis).mean()))
            e = np.array(errs)
            print(f"| {k:g} | {np.median(sides):.0f} | {'yes' if tiles else 'no'} | {len(e)} of {len(hands)} | "
                  f"{np.median(e) if len(e) else float('nan'):.2f} | {e.mean() if len(e) else float('nan'):.2f} | "
                  f"{np.mean(secs):.2f} |", flush=True)
    if args.skip_hand_free:
        return
    from real_detector_limits import hand_free_crops

    crops = hand_free_crops(data / "dex_retargeting" / "human_hand_video.mp4")
    for name, pics in (("as they are", crops),
                       ("enlarged 4x", [np.repeat(np.repeat(c, 4, 0), 4, 1) for c in crops])):
        found = sum(int(detect_image(c, tiles=True).present.sum()) for c in pics)
        print(f"\nhand-free crops of the real video, {name} ({len(pics)}, median longer side "
              f"{np.median([max(c.shape[:2]) for c in pics]):.0f} px), tiles: {found} hands found (all false)")


if __name__ == "__main__":
    main()
