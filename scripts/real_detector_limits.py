"""How far the detector bounds ``handcast pose`` on real photos, and two things that did not move it:
``python scripts/real_detector_limits.py [--data ../shared/data/real] [--threads 1] [--detector-only]
[--min-confidence C]``.

On every annotated hand of the mmpose sample photos (as ``handcast bench real``), prints the mean distance
(px) of mediapipe's keypoints to the annotations for:

* the detector on each test-time variant of the photo alone (``handcast.detect.hands.PHOTO_VARIANTS``: as is;
  mirrored, its keypoints mirrored back and its hands swapped; upscaled 2x; padded with black by 0.2 of the
  longer side), and on all of them, matched to each other and averaged (``detect_image``'s default since
  2026-12-07; ``--detect-once`` in ``handcast pose`` / ``forecast`` is the first row); the opt-in quarter turns
  (``DETECTOR_VARIANTS``) alone and all six averaged;
* ``handcast pose`` on the detector's keypoints with the keypoint fit weighting each keypoint as given, or by
  per-keypoint weights from an independent source: the refined result's mean residual per keypoint on the
  real video (``python scripts/bench_lift_video.py`` prints it; where mediapipe's convention and the hand
  model's differ most, wrist and thumb base, the residual is largest), as (median / residual) and its square,
  capped at 1.

``--spread``: only, per hand the default four variants find, how far apart they are (mean distance of each
variant's keypoint from their mean, in hand sizes) against how far their average is from the annotation, and the
rank correlation of the two over all keypoints: whether the variants' disagreement could serve as a per-keypoint
confidence.

``--passes``: only, re-tracking (``handcast.detect.hands.PHOTO_RETRACK``): per number of landmark passes after
the first (0-3), the detector's distance to the annotations with one pass and with the default variants averaged,
how far the last pass moved the keypoints (median over hands, in hand sizes), and, as a check that needs no
annotation, the frame-to-frame jitter (second difference, px) of the first 240 frames of the real video each
detected on its own as a photo, and on the fully visible hands of the synthetic test crops (``--crops``), whose truth
is the hand model's keypoints (about 2 minutes).

``--synthetic``: only, the detector against exact keypoints on the synthetic test crops (``--crops``, default
``out/pose_crops_tiny``, the hand model's keypoints; fully visible hands) and against the annotations of the real
photos: mean error per keypoint in hand sizes, and its signed part along the wrist -> middle-knuckle axis (about 1
minute). Where the detector and the hand model agree, and the annotations differ, the error is a convention of the
annotations, not noise of the detector.

``--timing``: only, the time of ``detect_image`` on a 224 x 224 FreiHAND photo and on a 1280 x 720 frame of the real
video, one pass and the default four variants, without and with re-tracking (mean of five calls after a warm-up).

``--freihand``: only, the accuracy figures of docs/detect.md on the 8 FreiHAND photos (all right hands), as
``tests/detect/test_hands.py::test_freihand_right_hands_and_keypoints`` bounds them: hands found as right, PCK at 0.3
and 0.2 hand sizes, mean error and the finger joints' (PIP, DIP, tip) mean error, in hand sizes; one pass and the
default four variants, without and with re-tracking.

``--retrack K``: the landmark passes after the first in every table but ``--passes`` (default: the photo default,
``handcast.detect.hands.PHOTO_RETRACK``; ``--retrack 0`` gives the tables of docs/pose.md, from before re-tracking).

``--hand-free``: only, the palm threshold against false hands: 30 frames of the real video, each cropped to
the wider side beside its hand (found at mediapipe's default threshold, 60 px margin), and the hands found there
(all false) at palm thresholds 0.5, 0.3 and 0.1, with the default variants and with one pass.

Nothing is written. Needs the ``detect`` extra and the real data folder.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

#: mean residual (px) per keypoint of the refined result on the real video (shipped L of 2026-12-07,
#: ``python scripts/bench_lift_video.py``, its "refined result, mean residual per keypoint" line)
VIDEO_RESIDUAL_PX = np.array([14.1, 15.0, 3.9, 3.1, 3.5, 6.3, 3.9, 3.2, 3.0, 7.2, 3.2, 3.2, 3.2, 7.9, 2.3, 3.3,
                              3.1, 8.4, 3.4, 2.9, 3.0])


def variants(img: np.ndarray, detector) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{name: (uv (2, 21, 2) px in the photo, present (2,))} of the detector on each test-time variant of the photo
    alone (``DETECTOR_VARIANTS``), on the default ones averaged (``handcast.detect.detect_image``'s default) and on
    all of them averaged."""
    from handcast.detect.hands import DETECTOR_VARIANTS, PHOTO_VARIANTS

    out = {}
    for name in DETECTOR_VARIANTS:
        d = detector.detect_variants(img, (name,))
        out[name.replace("_", " ")] = (d.uv, d.present)
    d = detector.detect_variants(img, PHOTO_VARIANTS)
    out["averaged (handcast detect_image)"] = (d.uv, d.present)
    d = detector.detect_variants(img, DETECTOR_VARIANTS)
    out["all six averaged"] = (d.uv, d.present)
    return out


def passes_table(hands, video: Path, crops: str, retracks=(0, 1, 2, 3), frames_used: int = 240) -> None:
    """The ``--passes`` table: the detector against the number of re-tracking passes."""
    from handcast.data.crops import CropSet
    from handcast.data.images import load_image
    from handcast.detect.hands import PHOTO_VARIANTS, HandDetector
    from handcast.detect.video import read_video
    from handcast.infer.bench_real import hand_size, kp_distances, match_detection

    frames, _, _, _ = read_video(video, max_frames=frames_used)
    frames = list(frames)
    cs = CropSet(crops, "test")
    images, kp2d, vis = cs.images(np.arange(len(cs))), cs.arrays["kp2d"].astype(np.float64), cs.arrays["vis"]
    full = [i for i in range(len(cs)) if vis[i].sum() == 21]
    print(f"| landmark passes after the first | found | one pass: median px | mean px | variants averaged: median px "
          f"| mean px | last pass moved (median, hand sizes) | video jitter, {len(frames)} frames: median px | "
          f"mean px | synthetic crops ({len(full)} fully visible hands, one pass): found | mean / size | median / size |"
          "\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    photos = [load_image(h.image) for h in hands]
    sizes = [hand_size(h.uv) for h in hands]
    prev = None
    for k in retracks:
        det = HandDetector(video=False, retrack=k)
        one, avg, uv_one = [], [], []
        for h, img, size in zip(hands, photos, sizes):
            d = det.detect(img)
            s = match_detection(d.uv, d.present, h.uv, h.vis, size)
            uv_one.append(None if s is None else d.uv[s])
            if s is not None:
                one.append(kp_distances(d.uv[s], h.uv, h.vis).mean())
            d = det.detect_variants(img, PHOTO_VARIANTS)
            s = match_detection(d.uv, d.present, h.uv, h.vis, size)
            if s is not None:
                avg.append(kp_distances(d.uv[s], h.uv, h.vis).mean())
        moved = "-"
        if prev is not None:  # how far this many passes moved each hand from one pass fewer
            moves = [np.linalg.norm(a - b, axis=-1).mean() / size for a, b, size in zip(uv_one, prev, sizes)
                     if a is not None and b is not None]
            moved = f"{np.median(moves):.4f}"
        prev = uv_one
        track = []
        for f in frames:
            d = det.detect(f)
            track.append(d.uv[d.present][0] if d.present.sum() == 1 else np.full((21, 2), np.nan))
        a = np.stack(track)
        jit = np.linalg.norm(a[2:] - 2 * a[1:-1] + a[:-2], axis=-1).mean(-1)
        syn = []
        for i in full:
            size = hand_size(kp2d[i])
            d = det.detect(np.ascontiguousarray(images[i]))
            s = match_detection(d.uv, d.present, kp2d[i], vis[i], size)
            if s is not None:
                syn.append(kp_distances(d.uv[s], kp2d[i], vis[i] > 0).mean() / size)
        print(f"| {k} | {len(one)} | {np.median(one):.2f} | {np.mean(one):.2f} | {np.median(avg):.2f} | {np.mean(avg):.2f} "
              f"| {moved} | {np.nanmedian(jit):.2f} | {np.nanmean(jit):.2f} | {len(syn)} | {np.mean(syn):.4f} "
              f"| {np.median(syn):.4f} |", flush=True)
        det.close()


def synthetic_table(hands, crops: str) -> None:
    """The ``--synthetic`` lines: per-keypoint detector error on synthetic crops and on the real photos."""
    from handcast.data.crops import CropSet
    from handcast.data.images import load_image
    from handcast.detect import detect_image
    from handcast.infer.bench_real import hand_size, match_detection

    def errors(pairs):  # -> error (N, 21), along the wrist -> middle MCP axis (N, 21), hand sizes, NaN unannotated
        err, along = [], []
        for uv, gt, vis in pairs:
            ax = (gt[9] - gt[0]) / max(np.linalg.norm(gt[9] - gt[0]), 1e-9)
            e = (uv - gt) / hand_size(gt[vis > 0])
            err.append(np.where(vis > 0, np.linalg.norm(e, axis=-1), np.nan))
            along.append(np.where(vis > 0, e @ ax, np.nan))
        return np.array(err), np.array(along)

    cs = CropSet(crops, "test")
    images, kp2d, vis = cs.images(np.arange(len(cs))), cs.arrays["kp2d"].astype(np.float64), cs.arrays["vis"]
    full = [i for i in range(len(cs)) if vis[i].sum() == 21]
    syn = []
    for i in full:
        d = detect_image(np.ascontiguousarray(images[i]))
        s = match_detection(d.uv, d.present, kp2d[i], vis[i], hand_size(kp2d[i]))
        if s is not None:
            syn.append((d.uv[s].astype(np.float64), kp2d[i], vis[i]))
    real = []
    for h in hands:
        d = detect_image(load_image(h.image))
        s = match_detection(d.uv, d.present, h.uv, h.vis, hand_size(h.uv))
        if s is not None:
            real.append((d.uv[s].astype(np.float64), h.uv.astype(np.float64), h.vis))
    names = ["wrist", "thumb CMC", "thumb MCP", "thumb IP", "thumb tip"] + [
        f"{f} {j}" for f in ("index", "middle", "ring", "pinky") for j in ("MCP", "PIP", "DIP", "tip")]
    (es, as_), (er, ar) = errors(syn), errors(real)
    print(f"synthetic: {len(syn)} of {len(full)} fully visible test crops of {crops} found; real: {len(real)} of "
          f"{len(hands)} annotated hands\n")
    print("| keypoint | synthetic: error / size | along the hand's axis | real photos: error / size | along |\n"
          "|---|---|---|---|---|")
    for k, name in enumerate(names):
        print(f"| {name} | {np.nanmean(es[:, k]):.3f} | {np.nanmean(as_[:, k]):+.3f} | {np.nanmean(er[:, k]):.3f} "
              f"| {np.nanmean(ar[:, k]):+.3f} |")
    print(f"| **all** | **{np.nanmean(es):.3f}** | | **{np.nanmean(er):.3f}** | |")
    print(f"\nmedian over hands of the mean error / size: synthetic {np.median(np.nanmean(es, 1)):.3f}, "
          f"real {np.median(np.nanmean(er, 1)):.3f}")


def freihand_table(hands) -> None:
    """The ``--freihand`` lines."""
    from handcast.data.images import load_image
    from handcast.detect import detect_image

    photos = [(load_image(h.image), h.uv.astype(np.float64)) for h in hands if h.image.parent.name == "freihand"]
    fingers = [6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20]
    print(f"{len(photos)} FreiHAND photos; errors in hand sizes (the annotated keypoints' box diagonal)\n")
    print("| variants | re-tracked | found as right | PCK@0.3 | PCK@0.2 | mean | fingers mean |\n|---|---|---|---|---|---|---|")
    for variants in (None, "default"):
        for retrack in (0, 2):
            errs = []
            for img, kp in photos:
                d = detect_image(img, retrack=retrack) if variants else detect_image(img, variants=None, retrack=retrack)
                if d.present[0]:
                    errs.append(np.linalg.norm(d.uv[0] - kp, axis=-1) / np.linalg.norm(kp.max(0) - kp.min(0)))
            e = np.stack(errs)
            print(f"| {'four' if variants else 'as is'} | {retrack} | {len(errs)} | {(e < 0.3).mean():.2f} | "
                  f"{(e < 0.2).mean():.2f} | {e.mean():.3f} | {e[:, fingers].mean():.3f} |")


def timing_table(hands, video: Path, calls: int = 5) -> None:
    """The ``--timing`` lines: ms per ``detect_image`` call."""
    import time

    from handcast.data.images import load_image
    from handcast.detect import detect_image
    from handcast.detect.hands import PHOTO_VARIANTS
    from handcast.detect.video import read_video

    frames, _, _, _ = read_video(video, max_frames=calls)
    images = {"224 x 224 photo": [load_image(hands[0].image)] * calls, "1280 x 720 video frame": list(frames)}
    print("| image | variants | re-tracked | ms per call |\n|---|---|---|---|")
    for retrack in (0, 2):
        for variants in (None, PHOTO_VARIANTS):
            for name, imgs in images.items():
                detect_image(imgs[0], retrack=retrack, variants=variants)  # warm-up (builds the graph)
                t = time.perf_counter()
                for img in imgs:
                    detect_image(img, retrack=retrack, variants=variants)
                ms = 1000 * (time.perf_counter() - t) / len(imgs)
                print(f"| {name} | {'four' if variants else 'as is'} | {retrack} | {ms:.0f} |", flush=True)


def hand_free_crops(video: Path, n: int = 30, margin: float = 60.0) -> list[np.ndarray]:
    """``n`` frames of ``video`` evenly spaced, each cropped to the wider side beside its hand (found at mediapipe's
    default palm threshold, ``margin`` px away), where that side is at least 200 px wide."""
    from handcast.detect.hands import HandDetector
    from handcast.detect.video import read_video

    frames, _, _, count = read_video(video)
    keep = set(np.linspace(0, count - 1, n).astype(int).tolist())
    locate = HandDetector(video=False, min_confidence=0.5)
    crops = []
    for t, f in enumerate(frames):
        if t not in keep:
            continue
        d = locate.detect(f)
        if not d.present.any():
            continue
        u = d.uv[d.present][..., 0]
        W = f.shape[1]
        left, right = int(max(0.0, u.min() - margin)), int(min(W, u.max() + margin))
        crop = f[:, :left] if left >= W - right else f[:, right:]
        if crop.shape[1] >= 200:
            crops.append(np.ascontiguousarray(crop))
    return crops


def hand_free_table(video: Path, n: int = 30, margin: float = 60.0) -> None:
    """The ``--hand-free`` lines: hands found on ``n`` crops of ``video`` beside its hand."""
    from handcast.detect.hands import PHOTO_VARIANTS, HandDetector

    crops = hand_free_crops(video, n, margin)
    print(f"{len(crops)} hand-free crops of {video.name} (the wider side beside the hand, {margin:.0f} px margin)")
    for mc in (0.5, 0.3, 0.1):
        det = HandDetector(video=False, min_confidence=mc)
        avg = sum(int(det.detect_variants(c, PHOTO_VARIANTS).present.sum()) for c in crops)
        one = sum(int(det.detect(c).present.sum()) for c in crops)
        print(f"palm threshold {mc}: hands found (all false): averaged variants {avg}, one pass {one}")


def spread_table(hands, detector) -> None:
    """The ``--spread`` table: per hand, the variants' spread and their average's error, in hand sizes."""
    from scipy.stats import spearmanr

    from handcast.data.images import load_image
    from handcast.detect.hands import PHOTO_VARIANTS
    from handcast.infer.bench_real import hand_size, match_detection

    spreads, errors = [], []
    print("| photo | variants finding it | spread / size | error / size | correlation over its keypoints |\n"
          "|---|---|---|---|---|")
    for _, h in hands:
        img = load_image(h.image)
        size = hand_size(h.uv)
        d = detector.detect_variants(img, PHOTO_VARIANTS)
        s = match_detection(d.uv, d.present, h.uv, h.vis, size)
        if s is None:
            continue
        per = []
        for v in PHOTO_VARIANTS:
            dv = detector.detect_variants(img, (v,))
            sv = match_detection(dv.uv, dv.present, h.uv, h.vis, size)
            if sv is not None:
                per.append(dv.uv[sv])
        if len(per) < 2:
            continue
        per = np.stack(per)
        vis = h.vis > 0
        spread = (np.linalg.norm(per - per.mean(0), axis=-1).mean(0) / size)[vis]
        err = (np.linalg.norm(d.uv[s] - h.uv, axis=-1) / size)[vis]
        spreads.append(spread)
        errors.append(err)
        print(f"| {Path(h.image).name} | {len(per)} | {spread.mean():.3f} | {err.mean():.3f} | "
              f"{np.corrcoef(spread, err)[0, 1]:.2f} |")
    S, E = np.concatenate(spreads), np.concatenate(errors)
    half = S < np.median(S)
    print(f"\n{len(spreads)} hands, {len(S)} keypoints: Spearman rank correlation {spearmanr(S, E)[0]:.2f}; error / size "
          f"{E[half].mean():.3f} where the spread is below its median, {E[~half].mean():.3f} above, {E.mean():.3f} in all")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/real")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-confidence", type=float, default=None,
                    help="palm detection threshold of the detector tables (default: the photo default, "
                         "handcast.detect.hands.PHOTO_MIN_CONFIDENCE)")
    ap.add_argument("--detector-only", action="store_true", help="only the detector table")
    ap.add_argument("--spread", action="store_true", help="only the variants' spread against their error")
    ap.add_argument("--hand-free", action="store_true", help="only false hands on hand-free crops of the real video")
    ap.add_argument("--passes", action="store_true", help="only the detector against the re-tracking passes")
    ap.add_argument("--timing", action="store_true", help="only the time of detect_image")
    ap.add_argument("--freihand", action="store_true", help="only the detector's accuracy on the FreiHAND photos")
    ap.add_argument("--synthetic", action="store_true",
                    help="only the per-keypoint detector error on synthetic crops and on the real photos")
    ap.add_argument("--crops", default="out/pose_crops_tiny", help="synthetic crop set of --synthetic and --passes")
    ap.add_argument("--retrack", type=int, default=None,
                    help="landmark passes after the first (default: handcast.detect.hands.PHOTO_RETRACK)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.retrack is not None:  # every detector the tables make, handcast pose's included
        import handcast.detect.hands as hands_module

        hands_module.PHOTO_RETRACK = args.retrack

    import handcast.infer.pose as pose_cmd
    from handcast.data.coco_keypoints import read_coco_hand_keypoints
    from handcast.data.images import load_image
    from handcast.detect.hands import HandDetector
    from handcast.infer.bench_real import hand_size, kp_distances, match_detection, photo_sets, project_np

    hands = [(n, h) for n, js in photo_sets(Path(args.data)) for h in read_coco_hand_keypoints(js)]
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"{len(hands)} annotated hands; px = mean distance to the annotated keypoints; median / mean over the hands "
          "the detector found (n)\n")

    if args.hand_free:
        hand_free_table(Path(args.data) / "dex_retargeting" / "human_hand_video.mp4")
        return
    if args.freihand:
        freihand_table([h for _, h in hands])
        return
    if args.timing:
        timing_table([h for _, h in hands], Path(args.data) / "dex_retargeting" / "human_hand_video.mp4")
        return
    if args.synthetic:
        synthetic_table([h for _, h in hands], args.crops)
        return
    if args.passes:
        passes_table([h for _, h in hands], Path(args.data) / "dex_retargeting" / "human_hand_video.mp4", args.crops)
        return
    detector = HandDetector(video=False, min_confidence=args.min_confidence)
    if args.spread:
        spread_table(hands, detector)
        return
    det_d: dict[str, list] = {}
    slots = []  # the detector's slot of each annotated hand on the photo as is (None: not found)
    for _, h in hands:
        img = load_image(h.image)
        size = hand_size(h.uv)
        for name, (uv, present) in variants(img, detector).items():
            s = match_detection(uv, present, h.uv, h.vis, size)
            det_d.setdefault(name, []).append(None if s is None else kp_distances(uv[s], h.uv, h.vis).mean())
            if name == "as is":
                slots.append(s)
    common = [all(ds[i] is not None for ds in det_d.values()) for i in range(len(hands))]
    base = [d for d, ok in zip(det_d["as is"], common) if ok]
    print(f"| detector | n | median px | mean px | median px on the {sum(common)} hands all found | closer than as is on |\n"
          "|---|---|---|---|---|---|")
    for name, ds in det_d.items():
        v = [d for d in ds if d is not None]
        c = [d for d, ok in zip(ds, common) if ok]
        closer = sum(x < b for x, b in zip(c, base))
        print(f"| {name} | {len(v)} | {np.median(v):.2f} | {np.mean(v):.2f} | {np.median(c):.2f} | {closer} of {len(c)} |")

    if args.detector_only:
        return
    r = VIDEO_RESIDUAL_PX
    schemes = {"as given (handcast pose)": np.ones(21), "median / residual": np.minimum(np.median(r) / r, 1.0),
               "(median / residual)^2": np.minimum((np.median(r) / r) ** 2, 1.0)}
    refine = pose_cmd.refine_pose
    print("\n| keypoint fit weights | n | median px | mean px |\n|---|---|---|---|")
    try:
        for name, w in schemes.items():
            pose_cmd.refine_pose = lambda res, hm, w=w: refine(replace(res, kp2d_conf=res.kp2d_conf * w[None]), hm)
            ds = []
            for (_, h), slot in zip(hands, slots):
                if slot is None:
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    z = np.load(pose_cmd.run_pose(h.image, Path(tmp) / "o", overwrite=True, detect_once=True)
                                / "pose.npz")
                i = [k for k, hh in enumerate(z["hand"]) if int(hh) == slot][0]
                j3 = z["joints"][i].astype(np.float64) + z["root"][i].astype(np.float64)
                ds.append(kp_distances(project_np(j3, z["K"]), h.uv, h.vis).mean())
            print(f"| {name} | {len(ds)} | {np.median(ds):.2f} | {np.mean(ds):.2f} |", flush=True)
    finally:
        pose_cmd.refine_pose = refine


if __name__ == "__main__":
    main()
