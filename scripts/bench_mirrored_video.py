"""A selfie video lifted with ``--mirrored``: ``python scripts/bench_mirrored_video.py [--frames 240] [--seed 0]``.

The real video (``../shared/data/real/dex_retargeting/human_hand_video.mp4``, a right hand) is flipped left to right
(its first ``--frames`` frames), which makes it look like a selfie of that right hand, and lifted twice with
``handcast.infer.lift.run_lift``'s defaults: as an ordinary video (the hand is then read as the left hand it looks
like) and with ``mirrored=True`` (a selfie: the hand should be its owner's right hand, with the same 3D as the
video itself). Printed, per run: the frames each slot holds a hand, the reprojection error, and the fingertips'
depth relative to the wrist (mean over the four finger tips and the frames, camera z, cm; negative: the
fingertips nearer the camera than the wrist). Then the mean joint distance (cm, root included) between the
``--mirrored`` right hand and the ordinary run's left hand, as found and mirrored in x. About 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "dex_retargeting" / "human_hand_video.mp4"


def tip_depth_cm(j: np.ndarray) -> float:
    """j (T, 21, 3) m -> mean (fingertips - wrist) camera depth, cm."""
    return float(100 * (j[:, [8, 12, 16, 20]].mean(1) - j[:, 0])[:, 2].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", default=str(REAL))
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    from handcast.detect import read_video
    from handcast.infer.lift import run_lift
    from handcast.render.video import write_video

    torch.set_num_threads(1)
    print(f"command: python {shlex.join(sys.argv)}\n")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        frames, fps, _, _ = read_video(args.video, max_frames=args.frames)
        write_video(tmp / "selfie.mp4", (np.ascontiguousarray(f[:, ::-1]) for f in frames), fps=fps)
        out = {}
        for name, mirrored in (("ordinary", False), ("mirrored", True)):
            res = run_lift(tmp / "selfie.mp4", tmp / name, mirrored=mirrored, video=False, progress=False,
                           seed=args.seed)
            z = np.load(tmp / name / "lift.npz")
            out[name] = (z["joints"].copy(), z["hand_valid"].copy())
            v = z["hand_valid"]
            slot = 0 if v[:, 0].sum() >= v[:, 1].sum() else 1
            print(f"{name}: right hand in {int(v[:, 0].sum())} frames, left in {int(v[:, 1].sum())}; reprojection "
                  f"{res['metrics']['reproj_error_px']:.2f} px; fingertips - wrist depth "
                  f"{tip_depth_cm(z['joints'][v[:, slot], slot]):+.1f} cm ({('right', 'left')[slot]} hand)")
        (jo, vo), (jm, vm) = out["ordinary"], out["mirrored"]
        ok = vo[:, 1] & vm[:, 0]
        left, right = jo[ok, 1], jm[ok, 0]
        flip = np.array([-1.0, 1.0, 1.0])
        print(f"\n--mirrored right hand vs the ordinary run's left hand, {int(ok.sum())} frames: "
              f"{100 * np.linalg.norm(right - left, axis=-1).mean():.1f} cm as found, "
              f"{100 * np.linalg.norm(right - left * flip, axis=-1).mean():.1f} cm mirrored in x")


if __name__ == "__main__":
    main()
