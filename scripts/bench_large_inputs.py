"""Large and turned real inputs, the cases phones produce: ``python scripts/bench_large_inputs.py [--data
../shared/data/real] [--out out/large_inputs]``.

* **A 12 MP photo** (4000 x 3000: OneHand10K 1402.jpg at twice its size on a flat grey canvas, the hand about 680 px
  tall): ``handcast pose`` on it in a child process, wall time and peak memory (the child's maximum resident set).
* **The detector's tiles** (``HandDetector.detect_tiles``): what they would add to ``detect_image`` on a photo whose
  hand the whole photo already finds (the first frame of the real video, 1280 x 720, and the 12 MP photo above).
* **A 4K video**: the first 150 frames of the real video on a 3840 x 2160 grey canvas (the hand at its 720p size, 9 %
  of the width): hand-frames ``detect_video`` tracks and their distance (px, median) to its tracks of the video itself.
* **A portrait phone video**: the first 150 frames of the real video stored turned a quarter turn with a display
  rotation of -90 degrees, as a phone stores a portrait video: ``handcast lift`` on it and on the video itself
  (``--max-frames 150``), reprojection error and the size of the frames it read.

About 1 minute on 2 cores. On an older source (``PYTHONPATH=<its checkout>/src python scripts/bench_large_inputs.py``)
it measures what that source did (the portrait video needs ``write_video(display_rotation=...)``, from 2026-12-08 on;
the script as of commit ca6a8c3 wrote it itself). Writes only under ``--out``. Needs the ``detect`` extra and the real data folder.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _handcast(*args: str) -> tuple[float, float, str]:
    """Run ``handcast ARGS`` in a child process -> (wall s, the children's peak memory GB so far, stdout)."""
    t = time.perf_counter()
    cp = subprocess.run([sys.executable, "-m", "handcast.cli", *args], capture_output=True, text=True)
    if cp.returncode:
        raise SystemExit(f"handcast {' '.join(args)} failed: {cp.stderr.strip().splitlines()[-1]}")
    return time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2, cp.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/real")
    ap.add_argument("--out", default="out/large_inputs")
    args = ap.parse_args()
    print("command: python scripts/bench_large_inputs.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]), flush=True)

    from PIL import Image

    from handcast.data.images import load_image
    from handcast.detect import detect_image, detect_video, read_video
    from handcast.detect.hands import _STATIC_CACHE
    from handcast.render.video import write_video

    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    video = data / "dex_retargeting" / "human_hand_video.mp4"

    hand = load_image(data / "mmpose" / "onehand10k" / "1402.jpg")
    big = np.full((3000, 4000, 3), (120, 110, 100), np.uint8)
    x2 = np.asarray(Image.fromarray(hand).resize((hand.shape[1] * 2, hand.shape[0] * 2)))
    big[1200:1200 + x2.shape[0], 1800:1800 + x2.shape[1]] = x2
    Image.fromarray(big).save(out / "photo_12mp.jpg", quality=92)
    secs, peak, _ = _handcast("pose", str(out / "photo_12mp.jpg"), "--out", str(out / "pose_12mp"), "--overwrite")
    print(f"\n12 MP photo, handcast pose: {secs:.1f} s, peak memory {peak:.2f} GB")

    frames, fps, size, _ = read_video(video, max_frames=150)
    frames = list(frames)
    print("\ntiles on a photo whose hand the whole photo finds (s):")
    for name, img in (("1280 x 720 frame of the real video", frames[0]), ("the 12 MP photo", load_image(out / "photo_12mp.jpg"))):
        detect_image(img)  # warm
        t = time.perf_counter()
        detect_image(img)
        t_img = time.perf_counter() - t
        det = next(iter(_STATIC_CACHE.values()))
        if not hasattr(det, "detect_tiles"):  # this script run on a source from before the tiles
            print(f"  {name}: detect_image {t_img:.2f}; this source has no tiles")
            continue
        t = time.perf_counter()
        det.detect_tiles(img)
        print(f"  {name}: detect_image {t_img:.2f}, the tiles would add {time.perf_counter() - t:.2f}")

    ref = detect_video(np.stack(frames), progress=False)
    W, H = size
    x0, y0 = int(0.3 * (3840 - W)), int(0.4 * (2160 - H))

    def on_4k():
        for f in frames:
            c = np.full((2160, 3840, 3), 110, np.uint8)
            c[y0:y0 + H, x0:x0 + W] = f
            yield c

    big_v = detect_video(on_4k(), progress=False, fps=fps)
    both = ref.hand_valid & big_v.hand_valid
    d = np.linalg.norm(big_v.uv - np.array([x0, y0]) - ref.uv, axis=-1).mean(-1)[both]
    print(f"\n4K video (3840 x 2160, the hand at its 720p size): hand-frames {int(big_v.hand_valid.sum())} of "
          f"{int(ref.hand_valid.sum())} in the video itself, {np.median(d):.2f} px median from its tracks")

    turned = out / "portrait.mp4"
    write_video(turned, [np.rot90(f, 1) for f in frames], fps=fps, display_rotation=-90)
    print("\nportrait phone video (stored turned, display rotation -90), handcast lift:")
    for name, src, extra in (("stored turned", turned, []), ("the video itself", video, ["--max-frames", "150"])):
        _, _, stdout = _handcast("lift", str(src), "--out", str(out / f"lift_{src.stem}"), "--overwrite", "--quiet",
                                 "--no-video", *extra)
        line = next(ln for ln in stdout.splitlines() if ln.startswith("reprojection error"))
        _, _, read_size, _ = read_video(src, max_frames=1)
        print(f"  {name}: frames read as {read_size[0]} x {read_size[1]}; {line.split(';')[0]}")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
