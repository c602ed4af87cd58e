"""Speed and accuracy of ``handcast lift`` on a real video:
``python scripts/bench_lift_video.py [VIDEO] [--ckpt L.safetensors] [--threads 1] [--out DIR] [--no-video]
[--max-frames N] [--rigid] [--self] [--guidance G] [--lift-seed S] [--sampler ddim --steps 10 --samples 16 --keep 2]
[--mirror]``.

Default video: ../shared/data/real/dex_retargeting/human_hand_video.mp4 (1280x720, 30 fps, 621 frames,
a right hand; no 3D ground truth). Runs :func:`handcast.infer.lift.run_lift` with its defaults (mediapipe
detection at full resolution, the shipped tiny L over 64-frame windows with 16 frames of overlap, 500
refinement iterations, overlay video) and prints:

* the wall time of the whole command (imports included) and of each stage;
* the reprojection error (px) of L alone (after the per-frame translation solve) and after refinement;
* jitter: the mean 3D joint acceleration (mm / frame^2) of L alone and of the result, and the mean 2D
  acceleration (px / frame^2) of the raw detections against the result reprojected (same keypoints);
* when ``human_joint_right_mediapipe_world.npy`` lies beside the default video (mediapipe's own per-frame
  3D "world" landmarks of the right hand, a detector output, not ground truth): the right hand's
  per-frame similarity-aligned error against them (PA, mm), and the hand-local 3D acceleration (joints
  in a frame built from the wrist, index MCP and pinky MCP, so the global rotation is factored out)
  of both: a jitter comparison against a 3D raw detection.

``--rigid``: also re-runs L on the tracks and fits, per frame, each hand's global orientation and translation
to the 2D keypoints with L's finger articulation kept (150 Adam steps): the reprojection error left is what
articulation (and shape) explain; the drop from "L alone" is what the global orientation explains.

``--self``: also lifts, with L alone, the refined result's own reprojection (the 2D keypoints of a 3D hand of the
hand model, in its keypoint convention, that lies within ~5 px of the tracks): if L misses these as much as the
detector's tracks, the error is not the detector's keypoint convention or noise but the pose, motion or view.

``--mirror``: lifts the tracks seen in a mirror (a tracks file; detect the video first with ``handcast detect``):
u -> W - 1 - u and the hands swapped, so the video's right hand becomes a left hand doing the same. A lifter that
treats both hands alike gives the same numbers (results/lift_views.md section 8).

``--synthetic N`` instead lifts a synthetic ``lab`` clip of N frames (handcast.synth, seed ``--seed``,
moving camera, its exact 2D projections plus ``--noise-px`` Gaussian noise, written as a tracks file) and
adds the 3D error against its ground truth (cm; absolute, and root-relative).

Nothing is written outside ``--out`` (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "dex_retargeting"


def hand_local(j: np.ndarray) -> np.ndarray:
    """(T, 21, 3) joints -> (T, 21, 3) in a per-frame palm frame (origin wrist, x to the index MCP, z normal
    to the wrist / index MCP / pinky MCP plane)."""
    o = j[:, :1]
    x = j[:, 5] - j[:, 0]
    x /= np.linalg.norm(x, axis=-1, keepdims=True)
    z = np.cross(x, j[:, 17] - j[:, 0])
    z /= np.linalg.norm(z, axis=-1, keepdims=True)
    y = np.cross(z, x)
    R = np.stack([x, y, z], axis=1)  # rows: local axes
    return np.einsum("tij,tkj->tki", R, j - o)


def accel_mm(x: np.ndarray, ok: np.ndarray) -> float:
    a = np.linalg.norm(x[2:] - 2 * x[1:-1] + x[:-2], axis=-1).mean(-1)
    m = ok[2:] & ok[1:-1] & ok[:-2]
    return float(1000 * a[m].mean())


def lift_alone(args, z: dict, uv: np.ndarray):
    """L alone (+ the per-frame translation solve, as ``handcast lift`` does before refining) on tracks ``uv``
    (T, 2, 21, 2) with the confidences, hands, K and fps of ``z`` (a lift.npz). Returns (hands, inp, pose,
    transl)."""
    from handcast.hand import HandModel
    from handcast.infer.lift import LiftInput, align_translation, lift_windows, shipped_lift_checkpoint
    from handcast.models.lifting import load_lift

    inp = LiftInput(uv=uv, conf=z["confidence"], hand_valid=z["input_hand_valid"], K=z["K"], world_to_cam=None,
                    fps=float(z["fps"]), image_size=tuple(int(v) for v in z["image_size"]))
    hands = HandModel("auto")
    model = load_lift(args.ckpt or shipped_lift_checkpoint())
    with torch.no_grad():
        pose, transl, _ = lift_windows(model, hands, inp, progress=False, guidance=args.guidance, seed=args.lift_seed,
                                       sampler=args.sampler, steps=args.steps, num_samples=args.samples,
                                       keep=args.keep)
        transl = align_translation(hands, pose, transl, inp)
    return hands, inp, pose, transl


def self_error(args, z: dict) -> float:
    """Reprojection error (px, ``motion_metrics``: the measure of "L alone" in ``handcast lift``) of L alone on
    the refined result's reprojection (``reproj_uv`` of the lift.npz ``z``) as its input tracks (``--self``)."""
    from handcast.infer.lift import motion_metrics

    hands, inp, pose, transl = lift_alone(args, z, z["reproj_uv"])
    with torch.no_grad():
        j = hands.keypoints(pose, torch.zeros(pose.shape[0], 2, 10), transl, rep="aa", convention="flat")
    return motion_metrics(j.numpy(), inp.observed, inp)["reproj_error_px"]


def rigid_error(args, z: dict) -> tuple[float, float]:
    """Mean reprojection error (px) of L's motion after a per-frame fit of each hand's global orientation and
    translation to the tracks of the lift.npz ``z`` (see ``--rigid``), and the mean angle (degrees) between L's
    global orientation and the refined result's, over observed hand-frames."""
    import roma

    from handcast.geometry import project

    hands, inp, pose, transl = lift_alone(args, z, z["uv"])
    turn = roma.rotmat_geodesic_distance(roma.rotvec_to_rotmat(pose[:, :, 0].double()),
                                         roma.rotvec_to_rotmat(torch.from_numpy(z["pose"][:, :, 0]).double()))
    turn_deg = float(np.degrees(turn.numpy()[inp.observed]).mean())
    obs = torch.from_numpy(inp.observed)
    w = torch.from_numpy(np.where(inp.observed[..., None], inp.conf, 0.0)).float()
    uv = torch.from_numpy(np.nan_to_num(inp.uv)).float()
    K = torch.from_numpy(inp.K).float()
    root = pose[:, :, :1].clone().requires_grad_(True)
    t = transl.clone().requires_grad_(True)
    opt = torch.optim.Adam([root, t], lr=0.02)

    def reproj():
        j = hands.keypoints(torch.cat([root, pose[:, :, 1:]], 2), torch.zeros(pose.shape[0], 2, 10), t, rep="aa",
                            convention="flat")
        return project(j, K, behind="clamp")

    for _ in range(150):
        loss = ((reproj() - uv).pow(2).sum(-1) * w).sum() / K[0, 0] ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        e = (reproj() - uv).norm(dim=-1)
    m = obs[..., None] & (w > 0)
    return float(e[m].mean()), turn_deg


def mirror_tracks(src: str, dst: Path) -> str:
    """A tracks file (``src``, .npz) mirrored left to right with the hands swapped, written to ``dst``."""
    from handcast.errors import HandcastError
    from handcast.io import save_npz

    if not src.endswith(".npz"):
        raise HandcastError(f"--mirror needs a tracks file (handcast detect VIDEO --out TRACKS.npz), got {src}")
    z = dict(np.load(src, allow_pickle=False))
    W = float(z["image_size"][0])
    uv = z["uv"][:, ::-1].copy()
    uv[..., 0] = W - 1 - uv[..., 0]
    out = dict(z, uv=uv)
    for k in ("hand_valid", "confidence", "score"):
        if k in z:
            out[k] = z[k][:, ::-1].copy()
    if "K" in z:
        out["K"] = z["K"].copy()
        out["K"][0, 2] = W - 1 - z["K"][0, 2]
    save_npz(dst, **out)
    return str(dst)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("video", nargs="?", default=str(REAL / "human_hand_video.mp4"))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: on a shared machine 2 OpenMP threads contend badly)")
    ap.add_argument("--out", default=None, help="keep the outputs here (default: a temporary folder)")
    ap.add_argument("--no-video", action="store_true", help="skip the overlay video")
    ap.add_argument("--max-frames", type=int, default=None)
    ap.add_argument("--ckpt", default=None, help="lifting checkpoint (default: the shipped one)")
    ap.add_argument("--refine-iterations", type=int, default=None)
    ap.add_argument("--guidance", type=float, default=1.0, help="L's classifier-free guidance scale (default 1: none)")
    ap.add_argument("--synthetic", type=int, default=None, metavar="N", help="lift a synthetic clip of N frames")
    ap.add_argument("--seed", type=int, default=1, help="synthetic clip seed")
    ap.add_argument("--lift-seed", type=int, default=0, help="seed of L's sampling noise (default 0, as handcast lift)")
    ap.add_argument("--noise-px", type=float, default=0.0, help="synthetic: std of the 2D noise (px)")
    ap.add_argument("--sampler", default="ddim", help="L's sampler (default ddim, as handcast lift)")
    ap.add_argument("--steps", type=int, default=10, help="L's sampling steps (default 10, as handcast lift)")
    ap.add_argument("--keep", type=int, default=None,
                    help="of the samples, how many are averaged, the most consistent with the 2D (default: handcast lift's)")
    ap.add_argument("--samples", type=int, default=None,
                    help="samples of L drawn per window (default: handcast lift's, 16 since section 9 of results/lift_views.md; 8 before, 1 before section 7)")
    ap.add_argument("--rigid", action="store_true", help="also L with a per-frame orientation + translation solve")
    ap.add_argument("--self", dest="self_input", action="store_true",
                    help="also L alone on the refined result's own reprojection")
    ap.add_argument("--mirror", action="store_true", help="lift the tracks mirrored left to right, hands swapped")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from handcast.infer.lift import DEFAULT_KEEP, DEFAULT_SAMPLES, RefineSchedule, run_lift

    if args.samples is None:
        args.samples = DEFAULT_SAMPLES
    if args.keep is None:
        args.keep = DEFAULT_KEEP

    tmp = tempfile.TemporaryDirectory(prefix="bench_lift_")
    out = args.out if args.out is not None else str(Path(tmp.name) / "out")
    its = RefineSchedule.iterations if args.refine_iterations is None else args.refine_iterations
    gt = None
    if args.synthetic:
        from handcast.io import save_npz
        from handcast.synth import generate_clip

        c = generate_clip(args.seed, "lab", n_frames=args.synthetic, render=False)
        rng = np.random.default_rng(args.seed)
        uv = c.kp2d + rng.normal(0.0, args.noise_px, c.kp2d.shape).astype(np.float32)
        args.video = str(Path(tmp.name) / "synthetic_tracks.npz")
        save_npz(args.video, uv=uv, hand_valid=c.valid, confidence=c.kp2d_conf, K=c.K, world_to_cam=c.world_to_cam,
                 fps=np.float64(c.fps), image_size=np.asarray(c.image_size))
        gt = c.joints3d.astype(np.float64)
    if args.mirror:
        args.video = mirror_tracks(args.video, Path(tmp.name) / "mirrored_tracks.npz")
    t0 = time.perf_counter()
    res = run_lift(args.video, out, ckpt=args.ckpt, video=not args.no_video, max_frames=args.max_frames, refine_iterations=its,
                   progress=False, guidance=args.guidance, seed=args.lift_seed, sampler=args.sampler, steps=args.steps,
                   samples=args.samples, keep=args.keep)
    wall = time.perf_counter() - T_START
    z = dict(np.load(Path(out) / "lift.npz"))
    m, l = res["metrics"], res["metrics"]["lift_only"]
    s = res["seconds"]
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"video: {args.video}: {res['frames']} frames at {res['fps']:g} fps, {res['windows']} windows; "
          f"frames with a right hand {res['hands_observed']['right']}, with a left hand {res['hands_observed']['left']}")
    print(f"torch threads {torch.get_num_threads()}; refinement iterations {its}")
    print(f"wall time: {wall:.1f} s in all (before run_lift: {t0 - T_START:.1f} s); run_lift {s['total']:.1f} s = "
          + ", ".join(f"{k} {v:.1f} s" for k, v in s.items() if k != "total"))
    print("| | reprojection error (px) | 3D accel (mm/frame^2) | 2D accel (px/frame^2) |")
    print("|---|---|---|---|")
    gt_acc = "-"
    if gt is not None:
        ok3 = c.valid[2:] & c.valid[1:-1] & c.valid[:-2]
        a = np.linalg.norm(gt[2:] - 2 * gt[1:-1] + gt[:-2], axis=-1).mean(-1)
        gt_acc = f"{1000 * a[ok3].mean():.2f}"
    print(f"| raw detections (input; 3D: ground truth) | - | {gt_acc} | {m['accel2d_raw_px']:.2f} |")
    print(f"| L (+ translation solve) | {l['reproj_error_px']:.2f} | {l['accel3d_mm']:.2f} | {l['accel2d_result_px']:.2f} |")
    print(f"| L + refinement (result) | {m['reproj_error_px']:.2f} | {m['accel3d_mm']:.2f} | {m['accel2d_result_px']:.2f} |")
    if gt is not None:
        j, v = z["joints"].astype(np.float64), z["hand_valid"]
        e = np.linalg.norm(j - gt, axis=-1)[v].mean()
        rr = np.linalg.norm((j - j[..., :1, :]) - (gt - gt[..., :1, :]), axis=-1)[v].mean()
        print(f"3D error against the ground truth (mean shape used, true shape in the data): {100 * e:.2f} cm, "
              f"root-relative {100 * rr:.2f} cm")
    ok = z["input_hand_valid"][..., None] & (z["confidence"] > 0)
    res = np.where(ok, np.linalg.norm(z["reproj_uv"] - z["uv"], axis=-1), np.nan).reshape(-1, 21)
    print("refined result, mean residual per keypoint (px; wrist, thumb CMC..tip, index MCP..tip, ...): "
          + " ".join(f"{v:.1f}" for v in np.nanmean(res, axis=0)))
    if args.rigid:
        px, turn = rigid_error(args, z)
        print(f"L alone's global orientation differs from the refined result's by {turn:.1f} deg (mean)")
        print(f"L + per-frame global orientation and translation solve (articulation kept): {px:.2f} px")
    if args.self_input:
        print(f"L alone on the refined result's reprojection (the hand model's own keypoints): {self_error(args, z):.2f} px")
    mp_path = Path(args.video).with_name("human_joint_right_mediapipe_world.npy")
    if mp_path.is_file() and not args.mirror:
        from handcast.geometry import procrustes_align

        mp = np.load(mp_path).astype(np.float64)
        T = min(len(mp), len(z["joints"]))
        ours = z["joints"][:T, 0].astype(np.float64)
        ok = z["hand_valid"][:T, 0] & np.isfinite(ours).all((-1, -2)) & np.isfinite(mp[:T]).all((-1, -2))
        al = procrustes_align(ours[ok], mp[:T][ok])
        pa = 1000 * np.linalg.norm(al - mp[:T][ok], axis=-1).mean()
        ours_l = hand_local(np.where(ok[:, None, None], ours, np.nan))
        mp_l = hand_local(mp[:T])
        print(f"right hand against mediapipe's own 3D world landmarks ({mp_path.name}, a detector output): "
              f"PA error {pa:.1f} mm; hand-local 3D accel: ours {accel_mm(ours_l, ok):.2f}, mediapipe "
              f"{accel_mm(mp_l, ok):.2f} mm/frame^2")
    tmp.cleanup()


if __name__ == "__main__":
    main()
