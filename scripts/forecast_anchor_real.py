"""Frame-0 distance of ``handcast forecast`` on the real mmpose photos with their true 2D keypoints.

For every photo of /work/shared/data/real/mmpose (FreiHAND: right hands; Panoptic: ``_l`` / ``_r`` in the
file name; OneHand10K: the handedness mediapipe gives the annotated hand, right where it misses it, as
``handcast bench real`` does; before 2026-12-07 OneHand10K hands were all taken as right hands) a keypoints json is written from the COCO annotations, then
``run_forecast`` runs anchored and unanchored (keypoint-conditioned shipped F, default 60 deg field of
view). Reported: the median over photos x samples of the mean pixel distance at frame 0 between the
forecast keypoints projected with K and the input keypoints.

    PYTHONPATH=src OMP_NUM_THREADS=1 python scripts/forecast_anchor_real.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import numpy as np

from handcast.data.keypoints import keypoints_json
from handcast.infer.forecast import run_forecast
from handcast.io import load_npz

ROOT = Path("/work/shared/data/real/mmpose")


def handedness(set_name: str, image: Path, kp: np.ndarray) -> int:
    """0 (right) or 1 (left): from the data where it says (``handcast.infer.bench_real.known_handedness``), else
    mediapipe's slot for the annotated hand (``match_detection``), else right."""
    from handcast.conventions import HANDS
    from handcast.data.images import load_image
    from handcast.detect import detect_image
    from handcast.infer.bench_real import hand_size, known_handedness, match_detection

    side = known_handedness(set_name, image)
    if side is not None:
        return HANDS.index(side)
    vis = kp[:, 2] > 0
    uv = np.where(vis[:, None], kp[:, :2], np.nan)
    det = detect_image(load_image(image))
    slot = match_detection(det.uv, det.present, uv, vis, hand_size(uv))
    return 0 if slot is None else int(slot)


def photos(out: Path):
    for f in sorted(ROOT.glob("*/test_*.json")):
        d = json.loads(f.read_text())
        for img in d["images"]:
            ann = [a for a in d["annotations"] if a["image_id"] == img["id"]]
            if not ann:
                continue
            kp = np.asarray(ann[0]["keypoints"], np.float64).reshape(21, 3)
            side = handedness(f.parent.name, f.parent / img["file_name"], kp)
            uv = np.full((2, 21, 2), np.nan)
            conf = np.zeros((2, 21))
            uv[side], conf[side] = kp[:, :2], (kp[:, 2] > 0).astype(float)
            js = out / "keypoints" / f"{f.parent.name}_{Path(img['file_name']).stem}.json"
            js.parent.mkdir(parents=True, exist_ok=True)
            js.write_text(json.dumps(keypoints_json(uv, conf)))
            yield f.parent.name, f.parent / img["file_name"], js


def frame0_px(res) -> np.ndarray:
    """(S,) mean px distance at frame 0 over the input hands' keypoints."""
    K, j = res["K"], res["joints"][:, 0]
    uv = j[..., :2] / j[..., 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
    ok = res["input_kp2d_conf"] > 0
    d = np.linalg.norm(uv - res["input_kp2d"][None], axis=-1)
    return np.array([d[s][ok].mean() for s in range(d.shape[0])])


def main(out: Path) -> None:
    rows = {True: [], False: []}
    per = []
    for ds, img, js in photos(out):
        line = [ds, img.name]
        for anchor in (False, True):
            o = out / ("anchored" if anchor else "free") / f"{ds}_{img.stem}"
            run_forecast(img, o, keypoints=js, samples=5, frames=32, detect=False, video=False, anchor=anchor)
            e = frame0_px(load_npz(o / "forecast.npz"))
            rows[anchor] += e.tolist()
            line.append(f"{np.median(e):.1f}")
        per.append(line)
    print("| dataset | photo | frame-0 px unanchored | frame-0 px anchored |")
    print("|---|---|---|---|")
    for line in per:
        print("| " + " | ".join(line) + " |")
    for anchor in (False, True):
        print(f"{'anchored' if anchor else 'unanchored'}: median {np.median(rows[anchor]):.2f} px, "
              f"mean {np.mean(rows[anchor]):.2f} px, max {np.max(rows[anchor]):.2f} px over {len(rows[anchor])} samples")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
