"""Inference subcommands on a user's images and videos: ``pose``, ``forecast``, ``lift`` and ``detect``."""

from __future__ import annotations

import argparse

from handcast.cli.common import (
    add_camera,
    add_device,
    add_image_use,
    add_out_overwrite,
    add_overwrite,
    add_quiet,
    add_sampler,
    add_samples,
    add_seed,
    attention_memory,
    check_device,
    check_memory,
    float_range,
    int_range,
    refuse_existing,
)
from handcast.conventions import DEFAULT_FOV_DEG


def _pose(args: argparse.Namespace) -> None:
    from handcast.infer.pose import run_pose

    check_device(args.device)
    out = run_pose(args.image, args.out, keypoints=args.keypoints, ckpt=args.ckpt, num_samples=args.samples,
                   sampler=args.sampler, steps=args.steps, aggregation=args.aggregation, focal=args.focal,
                   fov=args.fov, intrinsics=args.intrinsics, seed=args.seed, overwrite=args.overwrite,
                   device=args.device, mesh_format=args.mesh_format, refine=args.refine,
                   keypoints_only=args.keypoints_only, detect_once=args.detect_once, fit_prior=args.fit_prior,
                   mirrored=args.mirrored)
    print(f"wrote {out}")


def _forecast(args: argparse.Namespace) -> None:
    from handcast.infer.forecast import run_forecast

    check_memory(attention_memory(args.samples, args.frames + 64), f"--samples {args.samples} x --frames {args.frames}")
    refuse_existing(args.out, ["forecast.npz", "forecast.png", "forecast.mp4"], args.overwrite)
    res = run_forecast(args.image, args.out, ckpt=args.ckpt, samples=args.samples, frames=args.frames,
                       keypoints=args.keypoints, detect=not args.no_detect, fov=args.fov, intrinsics=args.intrinsics,
                       sampler=args.sampler, steps=args.steps, seed=args.seed, video=not args.no_video,
                       int8=args.int8, anchor=not args.no_anchor, clamp_limits=not args.no_clamp,
                       context=args.context, at=args.at, mirrored=args.mirrored, detect_once=args.detect_once)
    for m in res["messages"]:
        print(m)
    print(f"model {res['model']}; input hands: {res['hands']} (keypoints from {res['keypoints']})")
    for p in res["outputs"]:
        print(f"wrote {p}")


def _lift(args: argparse.Namespace) -> None:
    from handcast.infer.lift import run_lift

    if args.window is not None:
        check_memory(attention_memory(16, args.window), f"--window {args.window}")
    refuse_existing(args.out, ["lift.npz", "lift.mp4", "tracks.npz"], args.overwrite)
    res = run_lift(args.source, args.out, ckpt=args.ckpt, fov=args.fov, intrinsics=args.intrinsics, window=args.window,
                   overlap=args.overlap, refine_iterations=args.refine_iterations, smooth=args.smooth,
                   video=not args.no_video, max_frames=args.max_frames, progress=not args.quiet, sampler=args.sampler,
                   steps=args.steps, seed=args.seed, mirrored=args.mirrored, guidance=args.guidance,
                   samples=args.samples, keep=args.keep)
    for m in res["messages"]:
        print(m)
    m = res["metrics"]
    print(f"{res['frames']} frames ({res['windows']} windows of L); right hand in {res['hands_observed']['right']}, "
          f"left hand in {res['hands_observed']['left']} frames; K from {res['intrinsics']}")
    print(f"reprojection error {m['reproj_error_px']:.2f} px; 2D acceleration {m['accel2d_raw_px']:.2f} (input) -> "
          f"{m['accel2d_result_px']:.2f} px/frame^2; 3D acceleration {m['accel3d_mm']:.2f} mm/frame^2")
    for p in res["outputs"]:
        print(f"wrote {p}")


def _detect(args: argparse.Namespace) -> None:
    from handcast.detect import detect_video
    from handcast.io import check_output_file

    check_output_file(args.out, overwrite=args.overwrite, suffix=".npz")
    tracks = detect_video(args.video, mirrored=args.mirrored, progress=not args.quiet, max_frames=args.max_frames)
    tracks.save(args.out)
    found = tracks.hand_valid.any(0)
    print(f"wrote {args.out}: {len(tracks.hand_valid)} frames; right hand in {int(tracks.hand_valid[:, 0].sum())}, "
          f"left hand in {int(tracks.hand_valid[:, 1].sum())}" + ("" if found.any() else " (no hand anywhere)"))


def add_detect_once(p: argparse.ArgumentParser) -> None:
    p.add_argument("--detect-once", action="store_true",
                   help="the detector on the photo as is only, not its test-time variants (default: the average "
                        "over 4 variants of the photo, which finds more hands; either way, a photo that finds no hand "
                        "is searched again in tiles, for small hands; docs/detect.md)")


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("pose", help="3D hand pose and mesh of every hand in one image (cascaded diffusion)")
    s.add_argument("image", help="input image")
    add_out_overwrite(s, "output folder (default <image stem>_pose)", "replace an existing output folder",
                      required=False)
    s.add_argument("--keypoints", default=None, metavar="KP.json",
                   help="2D keypoints of the hands (docs/pose.md); default: the mediapipe detector")
    add_detect_once(s)
    s.add_argument("--ckpt", default=None, help="pose checkpoint or run folder (default: the shipped tiny model)")
    add_samples(s, "hypotheses per hand")
    add_sampler(s, steps=1, steps_help="sampler steps (default 1: one-step DDIM)")
    s.add_argument("--aggregation", choices=["single", "mean", "median", "reproj"], default="median")
    add_camera(s, f"the photo's EXIF focal length where it records one, else {DEFAULT_FOV_DEG:g}")
    s.add_argument("--focal", type=float_range(0, None, lo_open=True), default=None, metavar="PX",
                   help="focal length in pixels: an alias kept from older versions, the camera by its focal length "
                   "instead of --fov")
    add_seed(s)
    s.add_argument("--mesh-format", choices=["ply", "obj"], default="ply")
    s.add_argument("--no-refine", dest="refine", action="store_false",
                   help="skip the keypoint fit: the cascade's own estimate, placed by a least-squares root (docs/pose.md)")
    s.add_argument("--mirrored", action="store_true",
                   help="the photo is a selfie (mirrored) view; it is un-mirrored first, so each hand has its owner's "
                   "handedness and shape (outputs are of the un-mirrored photo; a --keypoints file names each hand's "
                   "owner)")
    s.add_argument("--fit-prior", type=float_range(0, None), default=None, metavar="W",
                   help="the keypoint fit's pull of the fingers towards the network's estimate (default 100); lower "
                   "follows the keypoints more closely in 2D, at a cost in 3D (docs/pose.md)")
    add_image_use(s)
    add_device(s)
    s.set_defaults(func=_pose)

    s = sub.add_parser("forecast", help="forecast both hands' future 3D motion from one image (PNG, MP4, npz)")
    s.add_argument("image", metavar="IMAGE|VIDEO",
                   help="input image (JPEG, PNG, ...) or a video (with --context / --at: the forecast continues it)")
    s.add_argument("--out", default="forecast_out", help="output folder (default: forecast_out)")
    add_overwrite(s, "forecast.npz / .png / .mp4 in --out")
    add_samples(s, "futures to sample")
    s.add_argument("--frames", type=int_range(1, 1024), default=64, help="frames to forecast at 30 fps (default 64)")
    s.add_argument("--ckpt", default=None, help="forecasting checkpoint (default: the shipped tiny models)")
    s.add_argument("--keypoints", default=None, metavar="KP.json",
                   help="2D keypoints of the image's hands from any detector (format: docs/forecasting.md)")
    s.add_argument("--no-detect", action="store_true", help="do not run the mediapipe detector")
    add_detect_once(s)
    add_camera(s, f"the photo's EXIF focal length where it records one, else {DEFAULT_FOV_DEG:g}")
    add_sampler(s)
    add_seed(s)
    s.add_argument("--no-video", action="store_true", help="write only the PNG and the npz")
    s.add_argument("--int8", action="store_true",
                   help="int8 dynamic quantisation of the linear layers (CPU; 1.6-2x faster here, results/speed.md)")
    s.add_argument("--no-clamp", action="store_true",
                   help="keep the sampled finger rotations as F gives them (default: clamped to the hand model's "
                        "joint limits)")
    s.add_argument("--no-anchor", action="store_true",
                   help="do not impose the observed hands as frame 0 (default: anchored, docs/forecasting.md)")
    s.add_argument("--context", type=int, default=None, metavar="N",
                   help="a video: the N frames ending at --at are lifted (L + refinement) and become the known "
                   "first N frames of the forecast (default 1)")
    s.add_argument("--at", type=float_range(0.0), default=None, metavar="SECONDS",
                   help="a video: the time of the last context frame (default: (N - 1) / fps, the first N frames)")
    s.add_argument("--mirrored", action="store_true", help="the photo or video is a selfie (mirrored) view; it is un-mirrored first, so each hand has its "
                   "owner's handedness and shape (outputs are of the un-mirrored input; a --keypoints file names "
                   "each hand's owner)")
    s.set_defaults(func=_forecast)

    s = sub.add_parser("lift", help="3D motion of both hands from a video or a 2D tracks file (npz + overlay MP4)")
    s.add_argument("source", metavar="VIDEO|TRACKS.npz",
                   help="a video (mediapipe detection, extra 'detect') or a tracks .npz (docs/lift_video.md)")
    s.add_argument("--out", default="lift_out", help="output folder (default: lift_out)")
    add_overwrite(s, "lift.npz / .mp4 and tracks.npz in --out")
    add_camera(s, f"the tracks file's K, else {DEFAULT_FOV_DEG:g}")
    s.add_argument("--ckpt", default=None, help="lifting checkpoint (default: the shipped tiny model)")
    s.add_argument("--max-frames", type=int_range(1), default=None, help="only the first N frames")
    s.add_argument("--no-video", action="store_true", help="write only the npz files")
    s.add_argument("--window", type=int_range(8, 1024), default=None, help="frames per lifting window (default 64)")
    s.add_argument("--overlap", type=int_range(0, 1023), default=16, help="frames shared by consecutive windows (default 16)")
    s.add_argument("--refine-iterations", type=int_range(0, 10**6), default=500, help="refinement iterations (default 500; 0 = L only)")
    s.add_argument("--smooth", type=float_range(0, 1e6), default=3.0, help="weight of the joint-acceleration term (default 3)")
    s.add_argument("--mirrored", action="store_true", help="the video is mirrored (selfie view); it is un-mirrored first, so each hand has its owner's "
                   "handedness and shape (outputs are of the un-mirrored video)")
    add_sampler(s)
    s.add_argument("--guidance", type=float_range(0, 20, lo_open=True), default=1.0,
                   help="classifier-free guidance scale of L (default 1: none)")
    # defaults: handcast.infer.lift.DEFAULT_SAMPLES / DEFAULT_KEEP / MAX_SAMPLES (not imported here: torch)
    s.add_argument("--samples", type=int_range(1, 64), default=16,
                   help="samples of L drawn per window (default 16; 1 = one sample, fastest)")
    s.add_argument("--keep", type=int_range(1, 64), default=2,
                   help="of those, how many are averaged: per frame, finger and orientation, the ones most "
                        "consistent with the 2D keypoints (default 2; --keep equal to --samples averages all)")
    add_seed(s)
    add_quiet(s)
    s.set_defaults(func=_lift)

    s = sub.add_parser("detect", help="2D hand tracks of a video with mediapipe (extra 'detect'): a tracks .npz")
    s.add_argument("video", help="input video")
    s.add_argument("--out", required=True, help="output tracks .npz (the handcast lift tracks format)")
    add_overwrite(s, "--out")
    s.add_argument("--mirrored", action="store_true", help="the video is mirrored (selfie view); it is un-mirrored first, so each hand has its owner's "
                   "handedness and shape (outputs are of the un-mirrored video)")
    s.add_argument("--max-frames", type=int_range(1), default=None, help="detect at most this many frames")
    add_quiet(s)
    s.set_defaults(func=_detect)
