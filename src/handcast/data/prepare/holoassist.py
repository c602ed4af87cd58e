"""HoloAssist (HoloLens 2 PSI export): 3D hand joints tracked by the headset, in the RGB (PV) camera.

Reads ``<root>/<video>/Export_py/``:
  Video/Pose_sync.txt    per RGB frame: synced time, .NET ticks, then 16 floats = 4x4 row-major camera pose,
                         camera-local -> world, in PSI "MathNet" axes (x forward, y left, z up)
  Video/Intrinsics.txt   25 values: 3x3 K, 6 radial, 2 tangential, FL, FLx, FLy, PPx, PPy, flag, width, height
  Hands/{Right,Left}_sync.txt  per RGB frame: leading fields, 26 joints x 16 floats (4x4 row-major pose in
                         world; the joint position is its translation), 26 valid flags, 26 tracked flags
                         (sliced from the END of the line: the number of leading fields varies; a raw PSI
                         line "time Gripped Pinched Tracked + 416" is read too)
Joints 26 (Palm, Wrist, Thumb metacarpal..tip, Index metacarpal..tip, ...) -> common 21 = Wrist, thumb
metacarpal/proximal/distal/tip, and proximal/intermediate/distal/tip of the other fingers. A hand is valid
in a frame when those 21 joints are valid and tracked. Camera-local MathNet -> OpenCV: (x, y, z)_cv =
(-y, -z, x). fps from the ticks (fallback 30). Every video goes to train unless option ``splits_dir`` holds
train.txt / val.txt / test.txt (one video name per line). The HoloLens joints are the headset's hand
tracking, not motion capture (meta joints_source = "hololens_tracking"). Images are not stored (they live in
an MP4).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.readers import existing_file, read_floats
from handcast.errors import HandcastError

FPS = 30.0
HOLO_TO_COMMON = np.array([1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 14, 15, 17, 18, 19, 20, 22, 23, 24, 25])
MATHNET_TO_OPENCV = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0]])


def as_pose(values: np.ndarray, what: str) -> np.ndarray:
    """16 floats, row-major 4x4 -> rigid (4, 4) with the translation in the last column (a matrix
    stored with its translation in the last row, .NET row-vector style, is transposed)."""
    M = np.asarray(values, np.float64).reshape(4, 4)
    if np.allclose(M[3], (0, 0, 0, 1), atol=1e-4):
        return M
    if np.allclose(M[:, 3], (0, 0, 0, 1), atol=1e-4):
        return M.T
    raise HandcastError(f"{what}: not a 4x4 rigid pose (no (0, 0, 0, 1) row or column)")


def read_table(path: Path) -> list[list[str]]:
    """The whitespace-separated fields of each non-empty line of a text file."""
    text = existing_file(path).read_text(encoding="utf-8", errors="replace")
    return [line.split() for line in text.splitlines() if line.strip()]


def _floats(fields: list[str], what: str) -> np.ndarray:
    try:
        return np.array([float(x) for x in fields], dtype=np.float64)
    except ValueError:
        raise HandcastError(f"{what}: non-numeric field") from None


class HoloAssistPreparer(Preparer):
    name = "holoassist"
    title = "HoloAssist"
    options = {"splits_dir": None}

    def check_root(self) -> None:
        vids = self.require_any(sorted(p.parent.name for p in self.root.glob("*/Export_py") if p.is_dir()),
                                "<video>/Export_py folders")
        split_of = {v: "train" for v in vids}
        if self.opts["splits_dir"]:
            d = Path(self.opts["splits_dir"])
            if not d.is_dir():
                raise HandcastError(f"option splits_dir: folder not found: {d}")
            for s in ("train", "val", "test"):
                f = d / f"{s}.txt"
                if f.is_file():
                    for line in f.read_text(encoding="utf-8", errors="replace").split():
                        if line in split_of:
                            split_of[line] = s
        self._cache["split_of"] = split_of

    def items(self, split: str) -> list[Item]:
        return [Item(split, v, self.root / v / "Export_py") for v, s in self._cache["split_of"].items() if s == split]

    def convert(self, item: Item) -> list:
        from handcast.geometry import invert_rigid

        ex: Path = item.payload
        intr = read_floats(ex / "Video" / "Intrinsics.txt")
        if intr.size < 11:
            raise SkipItem(f"Video/Intrinsics.txt has {intr.size} values, expected 25")
        K = intr[:9].reshape(3, 3)
        if not np.allclose(K[2], (0, 0, 1), atol=1e-6) and np.allclose(K[:, 2], (0, 0, 1), atol=1e-6):
            K = K.T
        w, h = int(intr[-2]), int(intr[-1])
        poses = read_table(ex / "Video" / "Pose_sync.txt")
        hands = [read_table(ex / "Hands" / f"{side}_sync.txt") for side in ("Right", "Left")]
        T = min(len(poses), *(len(x) for x in hands))
        if T == 0:
            raise SkipItem("empty Pose_sync.txt or hand files")
        if len({len(poses), *(len(x) for x in hands)}) > 1:
            self.summary.skip(f"{item.name} (tail)", f"pose/hand files differ in length; the first {T} lines are used")
        frames, cams, joints, valid, ticks = [], [], [], [], []
        for t in range(T):
            try:
                row = poses[t]
                if len(row) < 18:
                    raise HandcastError(f"Pose_sync.txt line {t + 1} has {len(row)} fields, expected 18")
                world_from_local = as_pose(_floats(row[-16:], "pose"), f"Pose_sync.txt line {t + 1}")
                J = np.zeros((2, 21, 3))
                v = np.zeros(2, bool)
                for hnd in range(2):
                    fields = hands[hnd][t]
                    if len(fields) == 4 + 416:  # raw PSI export: time, Gripped, Pinched, Tracked, 416
                        mats = _floats(fields[4:], "hand").reshape(26, 4, 4)
                        flags = np.full((2, 21), 1.0 if fields[3].lower() in ("1", "true") else 0.0)
                    elif len(fields) >= 416 + 52:
                        vals = _floats(fields[-(416 + 52):], "hand")
                        mats = vals[:416].reshape(26, 4, 4)
                        flags = vals[416:].reshape(2, 26)[:, HOLO_TO_COMMON]
                    else:
                        raise HandcastError(f"hand line {t + 1} has {len(fields)} fields, expected >= 468")
                    pos = np.stack([as_pose(m.ravel(), "joint")[:3, 3] for m in mats])
                    J[hnd] = pos[HOLO_TO_COMMON]
                    v[hnd] = bool(np.all(flags > 0))
                try:
                    tick = int(row[1])  # exact: .NET ticks exceed float64's integer precision
                except ValueError:
                    tick = None
            except HandcastError as e:
                self.summary.skip(f"{item.name} frame {t}", str(e))
                continue
            frames.append(t)
            cams.append(MATHNET_TO_OPENCV @ invert_rigid(world_from_local))
            joints.append(J)
            valid.append(v)
            ticks.append(tick)
        if not frames:
            raise SkipItem("no readable frame")
        fps = FPS
        if len(ticks) > 1 and None not in ticks:
            d = np.array([b - a for a, b in zip(ticks[:-1], ticks[1:])], dtype=np.float64) / 1e7  # 100 ns ticks
            med = float(np.median(d))
            if med > 0 and 5.0 <= 1.0 / med <= 120.0:
                fps = 1.0 / med
        s = Sequence(step=1, base_id=item.name, frame_ids=np.asarray(frames), cam_from_world=np.stack(cams), K=K,
                     image_size=(w, h), fps=self.fps(fps), valid=np.stack(valid), joints=np.stack(joints),
                     joints_source="hololens_tracking", meta={"video": item.name})
        return self.emit(s)
