"""``handcast lift`` on rendered synthetic videos, against their 3D truth:
``python scripts/bench_lift_rendered.py [--domains lab diverse wild] [--clips 8] [--frames 64] [--size 640 480]
[--per-frame-labels] [--scale] [--threads 1] [--out results/lift_rendered.md]``.

The real video of ``../shared/data/real`` has no 3D truth, so ``scripts/bench_lift_video.py`` can only report
its reprojection error. Here each clip of the synthetic benchmark's generator is rendered frame by frame
(:func:`handcast.synth.generate_video_clip`, every frame seen by that frame's head camera) and lifted three ways,
with L (the shipped tiny lifting model, ``handcast lift``'s defaults: 16 samples, 2 kept, DDIM 10 steps, seed 0)
and its refinement:

* **exact 2D, camera poses known**: the exact projections as a tracks file with the clip's ``world_to_cam``
  (what ``--synthetic`` of ``bench_lift_video.py`` lifts);
* **exact 2D, static camera**: the same keypoints without camera poses, as a video gives them (the head's motion
  then looks like hand motion);
* **video (mediapipe)**: the rendered video through ``handcast lift``'s video path (mediapipe's video tracker,
  :func:`handcast.infer.lift.video_input`, with the true intrinsics); ``--per-frame-labels``: with each frame's
  own handedness labels instead of the track-level identities (``handcast.detect.consistent_identities``).

For each: the hand-frames lifted (of those where the hand is in view), the 3D error of the joints in the camera
of each frame (cm: absolute, and root-relative after subtracting the wrist), PA-MPJPE (mm, per hand and frame,
similarity-aligned) and the reprojection's distance to the exact 2D keypoints (px, visible keypoints), for L alone
(+ its per-frame translation solve) and after refinement; for the video, also mediapipe's own distance to the
exact keypoints and the share of hand-frames it found. Truth and output use the hand model's keypoints
(mean shape in the output, the clip's shape in the truth). The objects are drawn where they start, so a hand
that moves an object moves it in 3D only. ``--scale`` also prints, per clip, the lifted wrist depth and palm
length over the truth's (the exact 2D keypoints, static camera).

About 4-5 minutes on 2 cores with the defaults (rendering about 0.07 s a frame). Writes the table to ``--out`` (the
command line at its top) and prints it.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def cam_t(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """(T, 2, P, 3) points of the frame-0 camera -> camera t (W (T, 4, 4))."""
    from handcast.geometry import transform_points

    return transform_points(W[:, None, None], x)


def project(x: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 3) camera points -> (uv (..., 2) px, depth (...)); points behind the camera get huge, finite uv."""
    from handcast.geometry import project as project_points

    return project_points(x, K, behind="clamp"), x[..., 2]


def lift(inp, hands, model, iterations: int):
    """L alone (+ translation solve) and refined: two (T, 2, 21, 3) keypoint arrays in the input's world frame
    (the frame-0 camera with camera poses, else each frame's camera), NaN where the input has no hand."""
    from handcast.infer.lift import RefineSchedule, align_translation, lift_windows, refine_motion

    with torch.no_grad():
        pose0, transl0, _ = lift_windows(model, hands, inp, progress=False)
        transl0 = align_translation(hands, pose0, transl0, inp)
    pose, transl, _ = refine_motion(hands, pose0, transl0, inp, RefineSchedule(iterations=iterations), progress=False)
    T = inp.num_frames
    betas = torch.zeros(T, 2, 10)
    with torch.no_grad():
        out = [hands.keypoints(p, betas, t, rep="aa", convention="flat").numpy().astype(np.float64)
               for p, t in ((pose0, transl0), (pose, transl))]
    obs = inp.observed
    for o in out:
        o[~obs] = np.nan
    return out


def per_frame_input(video, K: np.ndarray):
    """The video path's LiftInput (as :func:`handcast.infer.lift.video_input` makes it, with intrinsics ``K``) from
    each frame's own handedness labels (``detect_video(consistent=False)``)."""
    from handcast.detect import detect_video
    from handcast.infer.lift import LiftInput

    tr = detect_video(video, progress=False, consistent=False)
    conf = np.where(tr.hand_valid[..., None], tr.confidence, 0.0).astype(np.float32)
    return LiftInput(uv=tr.uv, conf=conf, hand_valid=tr.hand_valid, K=K.astype(np.float32), world_to_cam=None,
                     fps=tr.fps, image_size=tr.image_size, video=Path(video))


def scale_line(alone: np.ndarray, refined: np.ndarray, gt_cam: np.ndarray, ok: np.ndarray) -> str:
    """Medians over the hand-frames ``ok`` of the lifted wrist depth and palm length (wrist to middle knuckle) over
    the truth's: absolute depth from one view follows the hand's size, and the output uses the mean shape."""
    palm = lambda x: np.linalg.norm(x[:, 9] - x[:, 0], axis=-1)
    g = gt_cam[ok]
    depth = [np.median(x[ok][:, 0, 2] / g[:, 0, 2]) for x in (alone, refined)]
    return (f"wrist depth / truth: L alone {depth[0]:.3f}, refined {depth[1]:.3f}; palm length / truth "
            f"{np.median(palm(refined[ok]) / palm(g)):.3f}")


def errors(pred_cam: np.ndarray, gt_cam: np.ndarray, uv_gt: np.ndarray, vis: np.ndarray, ok: np.ndarray,
           K: np.ndarray) -> dict:
    """Means over the hand-frames ``ok`` (T, 2) of the camera-frame joints (T, 2, 21, 3), metres."""
    from handcast.geometry import procrustes_align

    p, g = pred_cam[ok], gt_cam[ok]
    absolute = np.linalg.norm(p - g, axis=-1).mean()
    rr = np.linalg.norm((p - p[:, :1]) - (g - g[:, :1]), axis=-1).mean()
    pa = np.linalg.norm(procrustes_align(p, g) - g, axis=-1).mean()
    uv, _ = project(pred_cam, K)
    d = np.linalg.norm(uv - uv_gt, axis=-1)
    px = d[ok[..., None] & vis].mean()
    return {"abs_cm": 100 * absolute, "rr_cm": 100 * rr, "pa_mm": 1000 * pa, "px": px}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--domains", nargs="+", default=["lab", "diverse", "wild"])
    ap.add_argument("--clips", type=int, default=8, help="clips per domain (seeds 1000 + i)")
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    ap.add_argument("--refine-iterations", type=int, default=None)
    ap.add_argument("--scale", action="store_true",
                    help="also print, per clip, the lifted wrist depth and wrist-to-middle-knuckle length over the "
                         "truth's (exact 2D, static camera; median over hand-frames)")
    ap.add_argument("--per-frame-labels", action="store_true",
                    help="the video path with each frame's own handedness labels (detect_video consistent=False), "
                         "as before the track-level identities")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="write the table here (markdown)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from handcast.detect import detect_video  # noqa: F401  (fails early without the detect extra)
    from handcast.hand import HandModel
    from handcast.infer.lift import LiftInput, RefineSchedule, shipped_lift_checkpoint, video_input
    from handcast.models.lifting import load_lift
    from _rendered import rendered_videos

    its = RefineSchedule.iterations if args.refine_iterations is None else args.refine_iterations
    hands = HandModel("auto")
    model = load_lift(shipped_lift_checkpoint())
    ways = ("exact 2D, camera poses known", "exact 2D, static camera", "video (mediapipe)")
    acc: dict = {}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_lift_rendered_") as tmp:
        t0 = time.perf_counter()
        for dom, seed, c, frames, video, kj in rendered_videos(tmp, args.domains, args.clips, args.frames, args.size):
            t_render = time.perf_counter() - t0
            W, K = c.world_to_cam.astype(np.float64), c.K.astype(np.float64)
            gt_cam = cam_t(c.joints3d.astype(np.float64), W)
            uv_gt, z = project(gt_cam, K)
            w, h = c.image_size
            vis = (z > 0) & (uv_gt[..., 0] >= 0) & (uv_gt[..., 0] <= w - 1) & (uv_gt[..., 1] >= 0) \
                & (uv_gt[..., 1] <= h - 1)
            in_view = c.valid & (vis.sum(-1) >= 4)
            conf = vis.astype(np.float32) * in_view[..., None]
            uv_in = np.where(conf[..., None] > 0, uv_gt, np.nan).astype(np.float32)
            inputs = {
                ways[0]: LiftInput(uv=uv_in, conf=conf, hand_valid=in_view, K=K.astype(np.float32),
                                   world_to_cam=W.astype(np.float32), fps=c.fps, image_size=(w, h)),
                ways[1]: LiftInput(uv=uv_in, conf=conf, hand_valid=in_view, K=K.astype(np.float32),
                                   world_to_cam=None, fps=c.fps, image_size=(w, h)),
                ways[2]: per_frame_input(video, K) if args.per_frame_labels
                else video_input(video, intrinsics=str(kj), progress=False),
            }
            det = inputs[ways[2]]
            for way, inp in inputs.items():
                alone, refined = lift(inp, hands, model, its)
                if inp.world_to_cam is not None:  # outputs in the frame-0 camera
                    alone, refined = cam_t(alone, W), cam_t(refined, W)
                ok = in_view & inp.observed
                if args.scale and way == ways[1] and ok.any():
                    print(f"{dom} seed {seed}, {way}: " + scale_line(alone, refined, gt_cam, ok), flush=True)
                a = acc.setdefault((dom, way), {"alone": [], "refined": [], "n": 0, "of": 0})
                a["n"] += int(ok.sum())
                a["of"] += int(in_view.sum())
                if ok.any():
                    a["alone"].append((int(ok.sum()), errors(alone, gt_cam, uv_gt, vis, ok, K)))
                    a["refined"].append((int(ok.sum()), errors(refined, gt_cam, uv_gt, vis, ok, K)))
            found = in_view & det.observed
            dd = np.linalg.norm(det.uv.astype(np.float64) - uv_gt, axis=-1)
            m = found[..., None] & vis & (det.conf > 0)
            a = acc.setdefault((dom, "detector"), {"px": [], "found": 0, "of": 0})
            a["px"].append(dd[m])
            a["found"] += int(found.sum())
            a["of"] += int(in_view.sum())
            print(f"{dom} seed {seed}: rendered {args.frames} frames in {t_render:.1f} s; hand-frames in view "
                  f"{int(in_view.sum())}, found by mediapipe {int(found.sum())}; "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
            t0 = time.perf_counter()

    def wmean(rows, key):
        n = sum(k for k, _ in rows)
        return sum(k * r[key] for k, r in rows) / max(n, 1)

    lines = [f"command: `python {shlex.join(sys.argv)}`", "",
             f"{args.clips} clips per domain (seeds 1000-{999 + args.clips}), {args.frames} frames at "
             f"{args.size[0]}x{args.size[1]}, the shipped tiny L, {its} refinement iterations; "
             f"{time.perf_counter() - t_start:.0f} s in all.", "",
             "| domain | input | hand-frames lifted | L alone: abs / root-rel cm, PA mm, px | refined: abs / root-rel cm, "
             "PA mm, px |", "|---|---|---|---|---|"]
    for dom in args.domains:
        for way in ways:
            a = acc[(dom, way)]
            cells = []
            for stage in ("alone", "refined"):
                r = a[stage]
                cells.append(f"{wmean(r, 'abs_cm'):.2f} / {wmean(r, 'rr_cm'):.2f}, {wmean(r, 'pa_mm'):.1f}, "
                             f"{wmean(r, 'px'):.1f}" if r else "-")
            lines.append(f"| {dom} | {way} | {a['n']} of {a['of']} | {cells[0]} | {cells[1]} |")
    lines += ["", "| domain | mediapipe found (hand-frames) | mediapipe to the exact keypoints: median / mean px |",
              "|---|---|---|"]
    for dom in args.domains:
        a = acc[(dom, "detector")]
        px = np.concatenate(a["px"]) if a["px"] else np.zeros(0)
        lines.append(f"| {dom} | {a['found']} of {a['of']} ({100 * a['found'] / max(a['of'], 1):.0f} %) | "
                     + (f"{np.median(px):.1f} / {px.mean():.1f} |" if px.size else "- |"))
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
