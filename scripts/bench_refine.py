"""Speed of the reprojection refinement: ``python scripts/bench_refine.py [--clips 64 --frames 64
--iterations 1000 --threads 2 --tol 0]``.

Inputs are synthetic but plausible (``handcast.fit.testing.synthetic_tracks``): both hands of every
clip posed inside the joint limits, 0.35-0.55 m in front of a moving 640x480 camera, exact 2D
projections (plus ``--noise-px`` Gaussian pixel noise). The refinement starts from the ground truth
perturbed by ``--pose-noise`` rad per axis-angle component and ``--transl-noise`` m per axis.
``--tol 0`` (default here) disables the early stop so that every clip runs all iterations (the
worst case the speed target is about); ``--tol 1e-4`` is the library default.
Prints the wall time of :func:`handcast.fit.refine` and the reprojection / 3D errors before and after.
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--frames", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=0.0, help="early-stop threshold (0 = run all iterations)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kind", default="open", choices=["open", "mano", "auto"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pose-noise", type=float, default=0.1, help="rad, std of the initial pose error")
    ap.add_argument("--transl-noise", type=float, default=0.02, help="m, std of the initial translation error")
    ap.add_argument("--noise-px", type=float, default=0.0, help="std of Gaussian noise added to the 2D keypoints")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from handcast.fit import RefineConfig, refine
    from handcast.fit.kinematics import fixed_shape_keypoints
    from handcast.fit.testing import synthetic_tracks
    from handcast.hand import HandModel

    hm = HandModel(kind=args.kind).to(args.device)
    d = synthetic_tracks(hm, args.clips, args.frames, seed=args.seed, device=args.device)
    g = torch.Generator().manual_seed(args.seed + 1)

    def noise(shape, std):
        return (torch.randn(shape, generator=g) * std).to(args.device)

    pose0 = d["pose"] + noise(d["pose"].shape, args.pose_noise)
    transl0 = d["transl"] + noise(d["transl"].shape, args.transl_noise)
    kp2d = d["kp2d"] + noise(d["kp2d"].shape, args.noise_px)
    cfg = RefineConfig(iterations=args.iterations, tol=args.tol)

    def err3d(pose, transl):
        kp = fixed_shape_keypoints(hm, pose, d["betas"], transl)
        return float((kp - d["joints3d"]).norm(dim=-1).mean()) * 100

    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    res = refine(hm, pose0, transl0, d["betas"], kp2d, d["conf"], d["K"], d["world_to_cam"], d["hand_valid"],
                 config=cfg)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    init = refine(hm, pose0, transl0, d["betas"], kp2d, d["conf"], d["K"], d["world_to_cam"], d["hand_valid"],
                  config=RefineConfig(iterations=0))
    n_it = int(res.iterations.max())
    print(f"refine: {args.clips} clips x {args.frames} frames x 2 hands, {n_it} iterations (max), "
          f"{args.kind} model, {args.device}, {torch.get_num_threads()} threads")
    print(f"  time:                 {dt:8.2f} s  ({dt / max(n_it, 1) * 1e3:.1f} ms / iteration)")
    print(f"  iterations per clip:  mean {float(res.iterations.float().mean()):.0f}, "
          f"early-stopped {int(res.converged.sum())}/{args.clips}")
    e0, e1 = float(init.reproj_error_px.mean()), float(res.reproj_error_px.mean())
    print(f"  reprojection error:   {e0:8.3f} px -> {e1:.3f} px (mean over clips; 2D noise {args.noise_px} px)")
    print(f"  3D keypoint error:    {err3d(pose0, transl0):8.3f} cm -> {err3d(res.pose, res.transl):.3f} cm "
          "(vs ground truth, not used by the loss)")
    print(f"  loss:                 {float(res.initial_loss.mean()):.3e} -> {float(res.final_loss.mean()):.3e}")


if __name__ == "__main__":
    main()
