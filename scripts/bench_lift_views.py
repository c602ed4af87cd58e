"""L alone on synthetic clips seen through cameras like those of real footage:
``python scripts/bench_lift_views.py --ckpt L.safetensors [--ckpt L2 ...] [--store out/synth_tiny]
[--split diverse_test] [--clips 24] [--hand-px 250 450] [--fov 60]``.

Each clip (its first 64 frames) is re-rendered by :class:`handcast.train.augment.LiftAugment` through one new
still camera (``p_new_camera=1``: any viewpoint, the hands ``--hand-px`` pixels large in a 1280 px wide image
with a ``--fov`` degree horizontal field of view, exact projections plus 1 % jitter, nothing dropped; seed 7),
lifted by L as ``handcast lift`` does, but with one ddim-10 sample (``handcast lift`` averages 8 since 2026-12-07; ``--sampler`` / ``--steps`` / ``--samples`` change it), the per-frame translation solve, no refinement),
and scored against the truth: the reprojection error (px, mean over observed keypoints, then over clips), the
global-orientation error of each hand (degrees, geodesic, mean over observed hand-frames, then over clips), and
``--camera synthetic`` gives the store's own head camera instead (``p_new_camera=0``, no scene move) for
comparison. ``--view palm`` / ``--view back`` instead turn each clip so that in its first frame the right
hand's palm (back) faces the camera with its fingers pointing up, the pose of a hand raised in front of a
webcam (hands ``--hand-px`` large, centred, ``--fov`` field of view, 1280 x 720 px). This isolates what the real-video number (``scripts/bench_lift_video.py``) mixes: how well L reads
orientation and articulation from 2D under new viewpoints, with no detector or keypoint-convention gap.
``--free-hands`` first gives every hand free-hand finger poses (``LiftAugment`` with ``p_articulation=1``, seed
11: spread and open hands, the thumb out, pointing, fists; see ``handcast.synth.grasps.random_gesture``) in
place of the clips' grasps, as a user's hand away from objects; ``--convention-noise S`` moves the 2D input
keypoints by per-clip offsets in the hand frame (S palm lengths; a detector's keypoint convention), the truth
staying the hand model's keypoints.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import numpy as np
import torch


def facing(item: dict, view: str, size_px: float, fov: float, seed: int, convention_noise: float = 0.0) -> dict:
    """``item`` turned so that its frame-0 right hand shows its palm (``view`` "palm") or back ("back") to a
    still 1280 x 720 camera with ``fov`` degrees horizontal field of view, fingers up, ``size_px`` large,
    centred; projected with 1 % jitter (see the module docstring)."""
    from handcast.geometry import aa_to_rotmat, project, rotmat_to_aa

    j = item["joints3d"].double()  # (T, 2, 21, 3) frame-0 camera
    pose = item["pose"].double().clone()
    hv = item["hand_valid"]
    r0 = j[0, 0]
    up = r0[9] - r0[0]  # wrist -> middle MCP
    n = torch.linalg.cross(r0[5] - r0[0], r0[17] - r0[0])  # palm normal of the right hand (one side)
    n = n if view == "palm" else -n
    a1 = up / up.norm()
    a2 = n - (n @ a1) * a1
    a2 = a2 / a2.norm()
    A = torch.stack([a1, a2, torch.linalg.cross(a1, a2)], 1)  # columns: hand axes
    b1, b2 = torch.tensor([0.0, -1.0, 0.0], dtype=torch.float64), torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
    B = torch.stack([b1, b2, torch.linalg.cross(b1, b2)], 1)
    R = B @ A.T
    w, h = 1280.0, 720.0
    f = 0.5 * w / np.tan(0.5 * np.radians(fov))
    size3d = float((r0.amax(0) - r0.amin(0)).norm())
    c = r0.mean(0)
    j = (j - c) @ R.T + torch.tensor([0.0, 0.0, f * size3d / size_px], dtype=torch.float64)
    pose[:, :, 0] = rotmat_to_aa(R @ aa_to_rotmat(pose[:, :, 0]))
    K = torch.tensor([[f, 0.0, w / 2], [0.0, f, h / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    rng = np.random.default_rng(seed)
    from handcast.train.augment import convention_shift

    uv = project(convention_shift(j, rng, convention_noise), K, behind="clamp")
    ext = (uv.amax(-2) - uv.amin(-2)).norm(dim=-1).clamp_min(1.0)
    uv = uv + torch.from_numpy(rng.normal(size=uv.shape)) * 0.01 * ext[..., None, None]
    ok = (j[..., 2] > 0.05) & hv[..., None]
    out = dict(item)
    out.update(joints3d=j.float(), pose=pose.float(), K=K.float(), kp2d=uv.float(), kp2d_conf=ok.float(),
               world_to_cam=torch.eye(4).repeat(j.shape[0], 1, 1), image_size=torch.tensor([w, h]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", action="append", required=True, help="lifting checkpoint (repeatable)")
    ap.add_argument("--store", default="out/synth_tiny")
    ap.add_argument("--split", default="diverse_test")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--hand-px", type=float, nargs=2, default=(250.0, 450.0))
    ap.add_argument("--fov", type=float, default=60.0)
    ap.add_argument("--camera", choices=("real", "synthetic"), default="real")
    ap.add_argument("--view", choices=("any", "palm", "back"), default="any")
    ap.add_argument("--free-hands", action="store_true", help="free-hand finger poses instead of the clips' grasps")
    ap.add_argument("--convention-noise", type=float, default=0.0, help="keypoint-convention offsets (palm lengths)")
    ap.add_argument("--sampler", default="ddim", help="L's sampler (default ddim, as handcast lift)")
    ap.add_argument("--steps", type=int, default=10, help="L's sampling steps (default 10, as handcast lift)")
    ap.add_argument("--samples", type=int, default=1, help="samples of L averaged per window (default 1)")
    ap.add_argument("--keep", type=int, default=None, help="average only the KEEP samples most consistent with the 2D")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import roma

    from handcast.data import ClipDataset, ClipStore
    from handcast.hand import HandModel
    from handcast.infer.lift import LiftInput, _project_seq, align_translation, lift_windows
    from handcast.models.lifting import load_lift
    from handcast.train.augment import LiftAugment, LiftAugmentConfig

    hands = HandModel("auto")
    ds = ClipDataset(ClipStore(args.store), args.split, horizon=64,
                     fields=("pose", "betas", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam", "image_size"))
    real = args.camera == "real"
    aug = LiftAugment(LiftAugmentConfig(p_new_camera=1.0 if real else 0.0, p_static=1.0, hand_px=tuple(args.hand_px),
                                        hfov_deg=(args.fov, args.fov), p_truncate=0.0, jitter=0.01, drop_keypoint=0.0,
                                        drop_frame=0.0, image_width=(1280.0, 1280.0), rot_deg=0.0 if not real else 30.0,
                                        trans_std=0.0 if not real else 0.05, traj_rot_deg=0.0 if not real else 10.0,
                                        focal_scale=(1.0, 1.0), convention_noise=args.convention_noise), seed=7)
    base = [ds[i] for i in range(min(args.clips, len(ds)))]
    if args.free_hands:
        free = LiftAugment(LiftAugmentConfig(p_articulation=1.0, rot_deg=0.0, trans_std=0.0, traj_rot_deg=0.0,
                                             focal_scale=(1.0, 1.0), jitter=0.0, drop_keypoint=0.0, drop_frame=0.0,
                                             image_margin=10.0), seed=11, hands=hands)
        base = [free(it) for it in base]
    items = [aug(it) for it in base]
    if args.view != "any":
        items = [facing(it, args.view, float(np.mean(args.hand_px)), args.fov, seed=i,
                        convention_noise=args.convention_noise) for i, it in enumerate(base)]
    print(f"command: python {shlex.join(sys.argv)}")
    print(f"{len(items)} clips of {args.split}, {args.camera} camera, view {args.view}"
          + (", free-hand finger poses" if args.free_hands else "")
          + (f", convention noise {args.convention_noise:g}" if args.convention_noise else "") + (f", hands {args.hand_px[0]:g}-{args.hand_px[1]:g} px, "
                                                                         f"{args.fov:g} deg field of view" if real else "")
          + f"; L: {args.sampler}-{args.steps}, {args.samples} sample(s) averaged")
    print("| L | reprojection px (mean) | median clip | global orientation error deg (mean) | median clip |")
    print("|---|---|---|---|---|")
    for ck in args.ckpt:
        model = load_lift(ck)
        E, A = [], []
        for it in items:
            inp = LiftInput(uv=it["kp2d"].numpy(), conf=it["kp2d_conf"].numpy(), hand_valid=it["hand_valid"].numpy(),
                            K=it["K"].numpy(), world_to_cam=it["world_to_cam"].numpy(), fps=30.0,
                            image_size=tuple(int(x) for x in it["image_size"]))
            with torch.no_grad():
                pose, transl, _ = lift_windows(model, hands, inp, seed=0, progress=False, sampler=args.sampler,
                                               steps=args.steps, num_samples=args.samples, keep=args.keep)
                transl = align_translation(hands, pose, transl, inp)
                j = hands.keypoints(pose, torch.zeros(pose.shape[0], 2, 10), transl, rep="aa", convention="flat")
            rp = _project_seq(j.double().numpy(), inp.K.astype(np.float64), inp.cameras().astype(np.float64))
            obs = inp.observed
            m = obs[..., None] & (inp.conf > 0)
            E.append(float(np.linalg.norm(rp - inp.uv, axis=-1)[m].mean()))
            ang = roma.rotmat_geodesic_distance(roma.rotvec_to_rotmat(pose[..., 0, :].double()),
                                                roma.rotvec_to_rotmat(it["pose"][..., 0, :].double()))
            A.append(float(np.degrees(ang.numpy()[obs]).mean()))
        print(f"| {ck} | {np.mean(E):.1f} | {np.median(E):.1f} | {np.mean(A):.1f} | {np.median(A):.1f} |", flush=True)


if __name__ == "__main__":
    main()
