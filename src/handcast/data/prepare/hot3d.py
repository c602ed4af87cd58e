"""HOT3D-Clips (webdataset tars of 150 frames at 30 fps) with the MANO hand annotations.

Reads ``<root>/{train,test}_{aria,quest3}/clip-<ID>.tar`` (read in place with tarfile, nothing is
extracted). In a tar, per frame key ``%06d``:
  <fid>.cameras.json   {stream_id: {calibration: {projection_model_type, projection_params, image_width,
                        image_height, ...}, T_world_from_camera: {translation_xyz, quaternion_wxyz}}}
  <fid>.hands.json     {left|right (either may be missing): {mano_pose: {thetas (15 PCA coeffs),
                        wrist_xform (6 = global axis-angle, transl m; world)}}}
  __hand_shapes.json__ {mano: (10) betas shared by both hands}
MANO: smplx use_pca=True, 15 components, flat_hand_mean=False (flat fingers = thetas @ components[:15] +
hands_mean) and the MANO_LEFT shapedirs fix. Joints come from the MANO fits, so the model is needed.
Camera: the FISHEYE624 stream (default Aria RGB "214-1"; Quest3 clips "1201-1") is replaced by the pinhole
camera with the same focal length and principal point (the "linear" camera HOT3D's undistortion helper
warps to); 2D keypoints are projections in that undistorted image, so the stored fisheye images are not
kept. Aria images are stored sideways: with ``upright`` the camera is turned 90 degrees clockwise (as
HOT3D's viewer shows them). Splits: train_* tars -> train, except a deterministic ``val_fraction`` of the
clips (by a hash of the clip name) -> val; test_* tars -> test (they have no hand poses: skipped).
"""

from __future__ import annotations

import json
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from handcast.data.prepare.cameras import quat_wxyz_to_rotmat
from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.readers import as_array
from handcast.errors import HandcastError

FPS = 30.0
ARIA_RGB = "214-1"
QUEST_SLAM = "1201-1"


def _split_of(folder: str, clip: str, val_fraction: float) -> str | None:
    if folder.startswith("test"):
        return "test"
    if folder.startswith("train"):
        if val_fraction > 0 and (zlib.crc32(clip.encode()) % 10000) < val_fraction * 10000:
            return "val"
        return "train"
    return None


def pinhole_from_calibration(calib: dict) -> tuple[np.ndarray, tuple[int, int]]:
    """FISHEYE624 calibration -> pinhole K with the same f and c, and (width, height)."""
    params = np.asarray(calib["projection_params"], np.float64).ravel()
    if params.size == 15:  # Aria: f, cx, cy, 6 radial, 2 tangential, 4 thin-prism
        fx = fy = params[0]
        cx, cy = params[1], params[2]
    elif params.size >= 16:  # Quest3: fx, fy, cx, cy, ...
        fx, fy, cx, cy = params[:4]
    else:
        raise HandcastError(f"unexpected projection_params of length {params.size} (expected 15 or 16)")
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return K, (int(calib["image_width"]), int(calib["image_height"]))


def pose_to_matrix(d: dict, what: str) -> np.ndarray:
    from handcast.geometry import rigid

    t = as_array(d["translation_xyz"], (3,), f"{what} translation_xyz")
    q = as_array(d["quaternion_wxyz"], (4,), f"{what} quaternion_wxyz")
    return rigid(quat_wxyz_to_rotmat(q), t)


class HOT3DPreparer(Preparer):
    name = "hot3d"
    title = "HOT3D-Clips"
    requires_mano = True
    left_shapedirs_fixed = True
    options = {"stream": None, "upright": True, "val_fraction": 0.2}

    def check_root(self) -> None:
        vf = self.opts["val_fraction"]
        if not isinstance(vf, (int, float)) or not 0 <= vf < 1:
            raise HandcastError(f"option val_fraction must be in [0, 1), got {vf!r}")
        self._cache["tars"] = self.require_any(
            sorted(self.root.glob("*/clip-*.tar")) + sorted(self.root.glob("clip-*.tar")),
            "<train|test>_<aria|quest3>/clip-*.tar")

    def items(self, split: str) -> list[Item]:
        out = []
        for p in self._cache["tars"]:
            folder = p.parent.name if p.parent != self.root else "train"
            clip = f"{folder}/{p.stem}"
            if _split_of(folder, p.stem, float(self.opts["val_fraction"])) == split:
                out.append(Item(split, clip, p))
        return out

    def convert(self, item: Item) -> list:
        from handcast.geometry import invert_rigid

        path: Path = item.payload
        with tarfile.open(path, "r:*") as tar:
            files: dict[str, tarfile.TarInfo] = {m.name: m for m in tar.getmembers() if m.isfile()}

            def load(name: str):
                m = files.get(name)
                if m is None:
                    raise HandcastError(f"missing {name} in the tar")
                fh = tar.extractfile(m)
                try:
                    return json.loads(fh.read().decode("utf-8"))
                except (ValueError, UnicodeDecodeError) as e:
                    raise HandcastError(f"malformed JSON {name} ({e})") from None

            fids = sorted({n.split(".", 1)[0] for n in files if re.fullmatch(r"\d+\..*", n)})
            if not any(f"{f}.hands.json" in files for f in fids):
                raise SkipItem("no hands.json in the clip (test clips have no hand poses)")
            shapes = load("__hand_shapes.json__")
            betas = np.tile(as_array(shapes["mano"], (10,), "__hand_shapes.json__ mano"), (2, 1))
            stream = self.opts["stream"]
            frames, cams, poses, transls, valid = [], [], [], [], []
            K = size = None
            for fid in fids:
                try:
                    cameras = load(f"{fid}.cameras.json")
                    hands = load(f"{fid}.hands.json") if f"{fid}.hands.json" in files else {}
                    if stream is None:
                        stream = ARIA_RGB if ARIA_RGB in cameras else QUEST_SLAM
                    cam = cameras.get(stream)
                    if cam is None:
                        raise HandcastError(f"no camera stream {stream} in cameras.json")
                    Kf, sz = pinhole_from_calibration(cam["calibration"])
                    world_from_cam = pose_to_matrix(cam["T_world_from_camera"], "T_world_from_camera")
                    P = np.zeros((2, 16, 3))
                    Tr = np.zeros((2, 3))
                    v = np.zeros(2, bool)
                    for h, side in enumerate(("right", "left")):
                        mp = (hands.get(side) or {}).get("mano_pose")
                        if not mp:
                            continue
                        thetas = as_array(mp["thetas"], (15,), f"{side} thetas")
                        wx = as_array(mp["wrist_xform"], (6,), f"{side} wrist_xform")
                        P[h] = self.hands.pca_to_flat(wx[:3], thetas, h)  # mean-relative PCA-15 -> flat
                        Tr[h] = wx[3:]
                        v[h] = True
                except (HandcastError, KeyError, TypeError, ValueError) as e:
                    self.summary.skip(f"{item.name} frame {fid}", str(e))
                    continue
                if K is None:
                    K, size = Kf, sz
                frames.append(int(fid))
                cams.append(invert_rigid(world_from_cam))
                poses.append(P)
                transls.append(Tr)
                valid.append(v)
        if not frames:
            raise SkipItem("no readable frame")
        pose, transl, valid = np.stack(poses), np.stack(transls), np.stack(valid)
        joints = self.hands.keypoints(pose, betas, transl)  # world, smplx fingertips, left shapedirs fixed
        s = Sequence(step=1, base_id=item.name, frame_ids=np.asarray(frames), cam_from_world=np.stack(cams), K=K,
                     image_size=size, fps=self.fps(FPS), valid=valid, joints=joints, pose=pose, transl=transl,
                     betas=betas, pose_valid=valid, joints_source="mano_fk",
                     meta={"stream": stream, "camera": "pinhole with the fisheye's f and c (undistorted)",
                           "left_shapedirs_fixed": True})
        if self.opts["upright"] and stream == ARIA_RGB:
            s.rotate_cw(1)
        return self.emit(s)
