"""H2O (two hands; egocentric head-mounted cam4 by default) from its per-frame text files.

Reads ``<root>/subject<N>[_ego]/<scene>/<take>/<cam>/``:
  cam_intrinsics.txt        fx fy cx cy width height
  cam_pose/%06d.txt         16 floats, 4x4 row-major, camera -> world (README; option cam_pose)
  hand_pose/%06d.txt        128 floats: LEFT [valid, 21 x xyz] then RIGHT; metres, this camera's frame,
                            OpenPose (= common) order
  hand_pose_mano/%06d.txt   124 floats: LEFT [valid, trans 3, pose 48, beta 10] then RIGHT; flat MANO
                            (manopth flat_hand_mean=True), this camera's frame
  rgb/%06d.png              1280 x 720 (frame 0 of each clip is stored)
Splits (H2O README): train = subject1, subject2, subject3/{h1,h2,k1}; val = subject3/{k2,o1,o2};
test = subject4. Joints are the dataset's keypoints; MANO poses are converted when a model is available.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.readers import image_files, read_floats, rel
from handcast.errors import HandcastError

FPS = 30.0  # not stated by the official README (3rd-party loaders assume 30)
VAL_SCENES = ("k2", "o1", "o2")


def split_of(subject: int, scene: str) -> str | None:
    if subject in (1, 2):
        return "train"
    if subject == 3:
        return "val" if scene in VAL_SCENES else "train"
    if subject == 4:
        return "test"
    return None


def change_frame(pose: np.ndarray, transl: np.ndarray, M: np.ndarray, J0: np.ndarray):
    """MANO fit in frame A -> frame B with x_B = M x_A (M (..., 4, 4)):
    R_g' = R R_g, transl' = R (transl + J0) + t - J0.

    pose (..., 16, 3) flat, transl (..., 3), J0 (3,) metres.
    """
    from handcast.geometry import aa_to_rotmat, rotmat_to_aa

    R, t = M[..., :3, :3], M[..., :3, 3]
    out = np.array(pose, dtype=np.float64)
    out[..., 0, :] = rotmat_to_aa(R @ aa_to_rotmat(out[..., 0, :]))
    tr = (R @ (np.asarray(transl, np.float64) + J0)[..., None])[..., 0] + t - J0
    return out, tr


class H2OPreparer(Preparer):
    name = "h2o"
    title = "H2O"
    uses_mano = True
    options = {"cams": ("cam4",), "cam_pose": "cam_to_world"}

    def check_root(self) -> None:
        if self.opts["cam_pose"] not in ("cam_to_world", "world_to_cam"):
            raise HandcastError(f"option cam_pose must be cam_to_world or world_to_cam, got {self.opts['cam_pose']!r}")
        if isinstance(self.opts["cams"], str):
            self.opts["cams"] = (self.opts["cams"],)
        self._cache["subjects"] = self.require_any(self.folders(r"subject\d+(_ego)?"), "subject<N> folders")

    def items(self, split: str) -> list[Item]:
        out = []
        for sdir in self._cache["subjects"]:
            subject = int(re.match(r"subject(\d+)", sdir.name).group(1))
            for scene in sorted(p for p in sdir.iterdir() if p.is_dir()):
                if split_of(subject, scene.name) != split:
                    continue
                for take in sorted((p for p in scene.iterdir() if p.is_dir()), key=lambda p: (len(p.name), p.name)):
                    for cam in self.opts["cams"]:
                        cdir = take / cam
                        if cdir.is_dir():
                            out.append(Item(split, rel(cdir, self.root), cdir))
        return out

    def convert(self, item: Item) -> list:
        from handcast.geometry import invert_rigid

        cdir: Path = item.payload
        intr = read_floats(cdir / "cam_intrinsics.txt")
        if intr.size < 4:
            raise SkipItem(f"cam_intrinsics.txt has {intr.size} numbers, expected 6 (fx fy cx cy width height)")
        fx, fy, cx, cy = intr[:4]
        w, h = (int(intr[4]), int(intr[5])) if intr.size >= 6 else (1280, 720)
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        if not (cdir / "hand_pose").is_dir():
            raise SkipItem("no hand_pose/ folder")
        ids = sorted(int(p.stem) for p in (cdir / "hand_pose").glob("*.txt") if p.stem.isdigit())
        frames, joints, jvalid, cams, manos = [], [], [], [], []
        use_mano = self.poses_on and (cdir / "hand_pose_mano").is_dir()
        for i in ids:
            try:
                hp = read_floats(cdir / "hand_pose" / f"{i:06d}.txt", 128).reshape(2, 64)
                P = read_floats(cdir / "cam_pose" / f"{i:06d}.txt", 16).reshape(4, 4)
                mp = read_floats(cdir / "hand_pose_mano" / f"{i:06d}.txt", 124).reshape(2, 62) if use_mano else None
            except HandcastError as e:
                self.summary.skip(f"{item.name} frame {i}", str(e))
                continue
            frames.append(i)
            # files list LEFT first; handcast is (right, left)
            joints.append(hp[::-1, 1:].reshape(2, 21, 3))
            jvalid.append(hp[::-1, 0] > 0.5)
            cams.append(P)
            if use_mano:
                manos.append(mp[::-1])
        if not frames:
            raise SkipItem("no readable annotated frame")
        T = len(frames)
        J = np.stack(joints)
        valid = np.stack(jvalid)
        P = np.stack(cams)
        if self.opts["cam_pose"] == "cam_to_world":
            world_from_cam = P
        else:
            world_from_cam = invert_rigid(P)
        cam_from_world = invert_rigid(world_from_cam)
        Jw = (J.reshape(T, -1, 3) @ np.swapaxes(world_from_cam[:, :3, :3], -1, -2)
              + world_from_cam[:, None, :3, 3]).reshape(J.shape)
        seq = Sequence(step=1, base_id=item.name, frame_ids=np.asarray(frames), cam_from_world=cam_from_world, K=K,
                       image_size=(w, h), fps=self.fps(FPS), valid=valid, joints=Jw,
                       meta={"camera": cdir.name, "cam_pose_direction": self.opts["cam_pose"]})
        if use_mano:
            Mp = np.stack(manos)  # (T, 2, 62) [valid, trans 3, pose 48, beta 10]
            pv = Mp[..., 0] > 0.5
            betas = np.zeros((2, 10))
            for hnd in range(2):
                if pv[:, hnd].any():
                    betas[hnd] = Mp[pv[:, hnd], hnd, 52:62].mean(axis=0)
            J0 = self.hands.rest_wrist(betas)
            pose = np.zeros((T, 2, 16, 3))
            transl = np.zeros((T, 2, 3))
            for hnd in range(2):
                pose[:, hnd], transl[:, hnd] = change_frame(Mp[:, hnd, 4:52].reshape(T, 16, 3), Mp[:, hnd, 1:4],
                                                            world_from_cam, J0[hnd])
            seq.pose, seq.transl, seq.betas, seq.pose_valid = pose, transl, betas, pv
        rgb = cdir / "rgb"
        seq.image = image_files(lambda k: rgb / f"{frames[k]:06d}.png")
        return self.emit(seq)
