"""DexYCB (one hand per sequence, 8 static RealSense cameras): one clip per (sequence, camera).

Reads ``$DEX_YCB_DIR``:
  <subject>/<YYYYMMDD_HHMMSS>/meta.yml         serials, num_frames, mano_sides (element 0), mano_calib
  <subject>/<seq>/<serial>/labels_%06d.npz     pose_m (1, 51) [global aa 3, 45 PCA coeffs, trans 3] (zeros = no
                                               hand); joint_3d (1, 21, 3) m camera frame, OpenPose order (-1 = no
                                               hand); joint_2d (1, 21, 2) px
  <subject>/<seq>/<serial>/color_%06d.jpg      640 x 480
  calibration/intrinsics/<serial>_640x480.yml  color: fx, fy, ppx, ppy
  calibration/mano_<calib>/mano.yml            betas (10)
MANO: manopth with flat_hand_mean=False, 45 PCA components: flat fingers = coeffs @ hands_components +
hands_mean, of the hand's own side. Joints and 2D keypoints are the dataset's labels.
Splits: DexYCB setup s0 (default; option setup = s0..s3), as in the official toolkit.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.readers import as_array, image_files, read_yaml
from handcast.errors import HandcastError
from handcast.io import load_npz

FPS = 30.0  # not stated by the toolkit
SIZE = (640, 480)
SERIALS = ("836212060125", "839512060362", "840412060917", "841412060263",
           "932122060857", "932122060861", "932122061900", "932122062010")
S3_VAL, S3_TEST = (3, 19), (7, 11, 15)


def split_of(setup: str, subj: int, seq: int, cam: int) -> str:
    """DexYCB split (setups s0..s3) of subject index 0..9, sequence index 0..99, camera index 0..7."""
    if setup == "s0":
        if seq % 5 != 4:
            return "train"
        return "val" if subj in (0, 1) else "test"
    if setup == "s1":
        return "val" if subj == 6 else ("test" if subj in (7, 8) else "train")
    if setup == "s2":
        return "val" if cam == 6 else ("test" if cam == 7 else "train")
    if setup == "s3":
        g = seq // 5
        return "val" if g in S3_VAL else ("test" if g in S3_TEST else "train")
    raise HandcastError(f"option setup must be s0, s1, s2 or s3, got {setup!r}")


class DexYCBPreparer(Preparer):
    name = "dexycb"
    title = "DexYCB"
    uses_mano = True
    options = {"setup": "s0"}

    def check_root(self) -> None:
        split_of(self.opts["setup"], 0, 0, 0)
        self.require("calibration", "camera intrinsics and MANO betas")
        self._cache["subjects"] = self.require_any(self.folders(r".*subject-\d+"), "<date>-subject-NN folders")

    def items(self, split: str) -> list[Item]:
        out = []
        for subj_dir in self._cache["subjects"]:
            subj = int(re.search(r"subject-(\d+)$", subj_dir.name).group(1)) - 1
            seqs = sorted(p for p in subj_dir.iterdir() if p.is_dir())
            for i, seq_dir in enumerate(seqs):
                serials = sorted(p.name for p in seq_dir.iterdir() if p.is_dir())
                for serial in serials:
                    cam = SERIALS.index(serial) if serial in SERIALS else -1
                    if split_of(self.opts["setup"], subj, i, cam) == split:
                        out.append(Item(split, f"{subj_dir.name}/{seq_dir.name}/{serial}", (seq_dir, serial)))
        return out

    def _intrinsics(self, serial: str) -> np.ndarray:
        key = f"K_{serial}"
        if key not in self._cache:
            y = read_yaml(self.root / "calibration" / "intrinsics" / f"{serial}_640x480.yml")
            try:
                c = y["color"]
                self._cache[key] = np.array([[float(c["fx"]), 0.0, float(c["ppx"])],
                                             [0.0, float(c["fy"]), float(c["ppy"])], [0.0, 0.0, 1.0]])
            except (KeyError, TypeError, ValueError):
                raise HandcastError(f"malformed intrinsics file for camera {serial} "
                                    "(expected color: fx, fy, ppx, ppy)") from None
        return self._cache[key]

    def convert(self, item: Item) -> list:
        seq_dir, serial = item.payload
        meta = read_yaml(seq_dir / "meta.yml")
        if not isinstance(meta, dict):
            raise SkipItem("meta.yml is not a mapping")
        side = str((meta.get("mano_sides") or ["right"])[0]).lower()
        if side not in ("right", "left"):
            raise SkipItem(f"unknown mano side {side!r}")
        h = 0 if side == "right" else 1
        K = self._intrinsics(serial)
        cdir: Path = seq_dir / serial
        ids = sorted(int(m.group(1)) for p in cdir.glob("labels_*.npz")
                     if (m := re.fullmatch(r"labels_(\d+)\.npz", p.name)))
        if not ids:
            raise SkipItem("no labels_*.npz files")
        T = len(ids)
        joints = np.zeros((T, 2, 21, 3))
        kp2d = np.zeros((T, 2, 21, 2))
        conf = np.zeros((T, 2, 21))
        valid = np.zeros((T, 2), bool)
        pose_m = np.zeros((T, 51))
        frames = []
        t = 0
        for i in ids:
            try:
                lab = load_npz(cdir / f"labels_{i:06d}.npz", required=("pose_m", "joint_3d", "joint_2d"))
                j3 = as_array(lab["joint_3d"], (21, 3), "joint_3d")
                j2 = as_array(lab["joint_2d"], (21, 2), "joint_2d")
                pm = as_array(lab["pose_m"], (51,), "pose_m")
            except HandcastError as e:
                self.summary.skip(f"{item.name} frame {i}", str(e))
                continue
            frames.append(i)
            present = not np.all(j3 == -1) and np.isfinite(j3).all()
            if present:
                joints[t, h] = j3
                valid[t, h] = True
            ok2 = ~np.all(j2 == -1, axis=-1) & np.isfinite(j2).all(-1)
            if present:
                kp2d[t, h] = j2
                conf[t, h] = ok2
            pose_m[t] = pm
            t += 1
        if not frames:
            raise SkipItem("no readable labels")
        T = len(frames)
        sl = slice(0, T)
        s = Sequence(step=1, base_id=item.name, frame_ids=np.asarray(frames),
                     cam_from_world=np.tile(np.eye(4), (T, 1, 1)), K=K,
                     image_size=SIZE, fps=self.fps(FPS), valid=valid[sl], joints=joints[sl], kp2d=kp2d[sl],
                     kp2d_conf=conf[sl], meta={"side": side, "serial": serial, "sequence": seq_dir.name,
                                               "subject": seq_dir.parent.name, "ycb_ids": meta.get("ycb_ids")})
        if self.poses_on:
            calib = (meta.get("mano_calib") or [None])[0]
            if calib is None:
                raise SkipItem("meta.yml has no mano_calib (needed for the MANO betas)")
            y = read_yaml(self.root / "calibration" / f"mano_{calib}" / "mano.yml")
            betas = np.zeros((2, 10))
            betas[h] = as_array((y or {}).get("betas"), (10,), f"mano_{calib}/mano.yml betas")
            pm = pose_m[sl]
            pose = np.zeros((T, 2, 16, 3))
            pose[:, h] = self.hands.pca_to_flat(pm[:, 0:3], pm[:, 3:48], h)  # mean-relative PCA-45 -> flat
            transl = np.zeros((T, 2, 3))
            transl[:, h] = pm[:, 48:51]
            pv = np.zeros((T, 2), bool)
            pv[:, h] = np.any(pm != 0, axis=-1)
            s.pose, s.transl, s.betas, s.pose_valid = pose, transl, betas, pv
        s.image = image_files(lambda k: cdir / f"color_{frames[k]:06d}.jpg")
        return self.emit(s)
