"""Ego-Exo4D hand ego-pose annotations, in the Aria camera (undistorted 512 x 512, f = 150 linear camera).

Reads ``<root>/annotations/ego_pose/<train|val|test>/``:
  hand/annotation/<take_uid>.json   (manual; option annotation="auto" reads hand/automatic/)
        {"<frame>": [{"annotation2D": {<cam>: {<kp>: {x, y, placement}}},
                      "annotation3D": {<kp>: {x, y, z, num_views_for_3d}}}]}
        kp = {right|left}_wrist, {right|left}_{thumb|index|middle|ring|pinky}_{1..4} (1 = base, 4 = tip);
        3D in the take's world frame, metres; missing joints are absent
  camera_pose/<take_uid>.json       {<cam>: {camera_intrinsics 3x3, camera_extrinsics {"<frame>": 3x4 world -> cam}}}
The Aria camera is the one whose name starts with "aria". A 3D joint counts when num_views_for_3d >=
``min_views`` (3, as the official preparation); a hand is valid in 3D when all 21 joints count, and its
2D keypoints are the stored Aria annotations. Takes without any 3D hand are "2d-only" clips. Frames are
cut into runs of a constant frame step; fps = option fps (default 30) / step. With ``upright`` the
landscape (sensor-orientation) Aria frame is turned 90 degrees clockwise to the upright view.
Images are not stored (they must be extracted and undistorted from the take videos).
"""

from __future__ import annotations

import numpy as np

from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.readers import as_array, read_json
from handcast.errors import HandcastError

FPS = 30.0  # not stated in the annotation files (3rd-party: 30)
FINGERS = ("thumb", "index", "middle", "ring", "pinky")
KP_NAMES = ("wrist",) + tuple(f"{f}_{i}" for f in FINGERS for i in range(1, 5))  # common order
SIZE = (512, 512)


class EgoExo4DPreparer(Preparer):
    name = "egoexo4d"
    title = "Ego-Exo4D"
    options = {"annotation": "manual", "min_views": 3, "upright": True}

    def check_root(self) -> None:
        if self.opts["annotation"] not in ("manual", "auto"):
            raise HandcastError(f"option annotation must be manual or auto, got {self.opts['annotation']!r}")
        self.require("annotations/ego_pose", "the hand ego-pose annotations")

    def items(self, split: str) -> list[Item]:
        base = self.root / "annotations" / "ego_pose" / split
        sub = "annotation" if self.opts["annotation"] == "manual" else "automatic"
        d = base / "hand" / sub
        if not d.is_dir():
            return []
        return [Item(split, p.stem, (p, base / "camera_pose" / p.name)) for p in sorted(d.glob("*.json"))]

    def convert(self, item: Item) -> list:
        ann_path, cam_path = item.payload
        ann = read_json(ann_path)
        cams = read_json(cam_path)
        if not isinstance(ann, dict) or not isinstance(cams, dict):
            raise SkipItem("annotation / camera_pose file is not a JSON object")
        aria = sorted(k for k in cams if str(k).lower().startswith("aria"))
        if not aria:
            raise SkipItem("no Aria camera in the camera_pose file")
        cam_name = aria[0]
        cam = cams[cam_name]
        K = as_array(cam["camera_intrinsics"], (3, 3), "camera_intrinsics")
        extr = cam.get("camera_extrinsics") or {}
        min_views = int(self.opts["min_views"])
        frames, mats, joints, valid, kp2d, conf = [], [], [], [], [], []
        for key in sorted(ann, key=lambda k: int(k) if str(k).isdigit() else -1):
            if not str(key).isdigit():
                continue
            entry = ann[key]
            if isinstance(entry, list):
                entry = entry[0] if entry else {}
            E = extr.get(key)
            if E is None or not isinstance(entry, dict):
                self.summary.skip(f"{item.name} frame {key}", "no Aria extrinsics for this frame")
                continue
            try:
                M = np.eye(4)
                M[:3, :4] = as_array(E, (3, 4), "camera_extrinsics")
                a3 = entry.get("annotation3D") or {}
                a2 = (entry.get("annotation2D") or {}).get(cam_name) or {}
                J = np.zeros((2, 21, 3))
                ok3 = np.zeros((2, 21), bool)
                uv = np.zeros((2, 21, 2))
                c2 = np.zeros((2, 21))
                for h, side in enumerate(("right", "left")):
                    for k, kp in enumerate(KP_NAMES):
                        p = a3.get(f"{side}_{kp}")
                        if p is not None and int(p.get("num_views_for_3d", min_views)) >= min_views:
                            J[h, k] = [float(p["x"]), float(p["y"]), float(p["z"])]
                            ok3[h, k] = True
                        q = a2.get(f"{side}_{kp}")
                        if q is not None:
                            uv[h, k] = [float(q["x"]), float(q["y"])]
                            c2[h, k] = 1.0
            except (HandcastError, KeyError, TypeError, ValueError) as e:
                self.summary.skip(f"{item.name} frame {key}", f"malformed annotation ({e})")
                continue
            frames.append(int(key))
            mats.append(M)
            joints.append(J)
            valid.append(ok3.all(-1))
            kp2d.append(uv)
            conf.append(c2)
        if not frames:
            raise SkipItem("no annotated frame with an Aria camera pose")
        s = Sequence(base_id=item.name, frame_ids=np.asarray(frames), cam_from_world=np.stack(mats), K=K,
                     image_size=SIZE, fps=self.fps(FPS), valid=np.stack(valid), joints=np.stack(joints),
                     kp2d=np.stack(kp2d), kp2d_conf=np.stack(conf),
                     meta={"take_uid": item.name, "camera": cam_name, "annotation": self.opts["annotation"]})
        if self.opts["upright"]:
            s.rotate_cw(1)
        return self.emit(s)
