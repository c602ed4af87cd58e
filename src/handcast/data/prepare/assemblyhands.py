"""AssemblyHands (egocentric, 3D keypoints only): one clip per (sequence, ego camera, run of frames).

Reads ``<root>/annotations/<split>/assemblyhands_<split>_{ego_data,ego_calib,joint_3d}_v1-1.json``:
  ego_data (COCO): images[] {id, file_name, width, height, seq_name, camera, frame_idx};
                   annotations[] {image_id, joint_valid (42,)}
  ego_calib: calibration[seq] {intrinsics[<cam>_mono10bit] 3x3, extrinsics["%06d"][<cam>_mono10bit] 3x4}
             world -> camera, translation in MILLIMETRES (rectified pinhole cameras)
  joint_3d:  annotations[seq]["%06d"] {world_coord (42, 3) MILLIMETRES}; 0-20 right, 21-41 left, each hand
             thumb tip..base, index tip..base, middle, ring, pinky, wrist (index 20)
and frame-0 images ``images/ego_images_rectified/<split>/<file_name>`` (monochrome, 636 x 480).
Everything is converted to metres and the common order. A hand is valid in a frame when all 21 of its
joints are flagged valid (the rest keep 2D confidence 0). Frames of a camera are cut into runs of a constant
frame step; fps = option fps (default 30, not stated by the toolkit) / step.
With ``upright`` the ego cameras, mounted rotated, are turned upright (ForeHand4D's per-camera angles).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.readers import as_array, existing_file, read_json
from handcast.errors import HandcastError

FPS = 30.0  # not stated by the toolkit
# AssemblyHands per-hand order -> common (OpenPose) order
ASSEMBLY_TO_COMMON = np.array([20, 3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 19, 18, 17, 16])
# Clockwise rotation (degrees) that makes each ego camera upright (ForeHand4D assembly_utils CAM_ROT).
CAM_ROT = {"84346135": 0, "84347414": 180, "84355350": 270, "84358933": 270, "21110305": 270, "21176623": 180,
           "21176875": 0, "21179183": 270}
SPLIT_DIRS = {"train": "train", "val": "val", "test": "test", "demo": "demo"}


class AssemblyHandsPreparer(Preparer):
    name = "assemblyhands"
    title = "AssemblyHands"
    splits = ("train", "val", "test", "demo")
    options = {"upright": True}

    def check_root(self) -> None:
        self.require("annotations", "the ego_data / ego_calib / joint_3d JSON files")

    def _files(self, split: str) -> dict[str, Path]:
        d = self.root / "annotations" / SPLIT_DIRS[split]
        return {k: d / f"assemblyhands_{split}_{k}_v1-1.json" for k in ("ego_data", "ego_calib", "joint_3d")}

    def items(self, split: str) -> list[Item]:
        files = self._files(split)
        if not files["ego_data"].is_file():
            return []
        for f in files.values():
            existing_file(f)
        data = read_json(files["ego_data"])
        try:
            images = {int(im["id"]): im for im in data["images"]}
            anns = {int(a["image_id"]): a for a in data["annotations"]}
        except (KeyError, TypeError, ValueError):
            raise HandcastError(f"malformed {files['ego_data']}: expected COCO images[] / annotations[]") from None
        groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
        for iid, im in images.items():
            try:
                groups[(str(im["seq_name"]), str(im["camera"]))].append({**im, "ann": anns.get(iid)})
            except (KeyError, TypeError):
                continue
        self._cache[split] = {"calib": None, "j3d": None}
        return [Item(split, f"{seq}/{cam}", (split, seq, cam, ims)) for (seq, cam), ims in sorted(groups.items())]

    def _loaded(self, split: str):
        c = self._cache[split]
        if c["calib"] is None:
            files = self._files(split)
            calib = read_json(files["ego_calib"])
            j3d = read_json(files["joint_3d"])
            if not isinstance(calib, dict) or "calibration" not in calib:
                raise HandcastError(f"malformed {files['ego_calib']}: no 'calibration'")
            if not isinstance(j3d, dict) or "annotations" not in j3d:
                raise HandcastError(f"malformed {files['joint_3d']}: no 'annotations'")
            c["calib"], c["j3d"] = calib["calibration"], j3d["annotations"]
        return c["calib"], c["j3d"]

    def convert(self, item: Item) -> list:
        from handcast.geometry import in_image, project_frames

        split, seq, cam, ims = item.payload
        calib_all, j3d_all = self._loaded(split)
        calib = calib_all.get(seq)
        if calib is None:
            raise SkipItem("sequence missing from the calibration file")
        camkey = cam if cam.endswith("_mono10bit") else f"{cam}_mono10bit"
        K = as_array(calib["intrinsics"][camkey], (3, 3), "intrinsics")
        ims = sorted(ims, key=lambda im: int(im["frame_idx"]))
        frames, cams, joints, jvalid, files = [], [], [], [], []
        size = None
        for im in ims:
            fkey = f"{int(im['frame_idx']):06d}"
            try:
                E = as_array(calib["extrinsics"][fkey][camkey], (3, 4), f"extrinsics {fkey}")
                X = as_array(j3d_all[seq][fkey]["world_coord"], (42, 3), f"world_coord {fkey}") / 1000.0  # mm -> m
            except (KeyError, TypeError, HandcastError) as e:
                self.summary.skip(f"{item.name} frame {fkey}", f"no calibration or 3D joints ({e})")
                continue
            M = np.eye(4)
            M[:3, :4] = E
            M[:3, 3] /= 1000.0  # mm -> m
            ann = im.get("ann") or {}
            jv = np.asarray(ann.get("joint_valid", np.ones(42)), np.float64).ravel()
            if jv.size != 42:
                jv = np.zeros(42)
            hands = np.stack([X[:21][ASSEMBLY_TO_COMMON], X[21:][ASSEMBLY_TO_COMMON]])  # (right, left)
            jvh = np.stack([jv[:21][ASSEMBLY_TO_COMMON], jv[21:][ASSEMBLY_TO_COMMON]]) > 0
            frames.append(int(im["frame_idx"]))
            cams.append(M)
            joints.append(hands)
            jvalid.append(jvh)
            files.append(im.get("file_name"))
            if size is None and im.get("width") and im.get("height"):
                size = (int(im["width"]), int(im["height"]))
        if not frames:
            raise SkipItem("no frame with calibration and 3D joints")
        size = size or (636, 480)
        jvalid = np.stack(jvalid)
        s = Sequence(base_id=item.name, frame_ids=np.asarray(frames), cam_from_world=np.stack(cams), K=K,
                     image_size=size, fps=self.fps(FPS), valid=jvalid.all(-1), joints=np.stack(joints),
                     meta={"sequence": seq, "camera": cam})
        # 2D: the projections of the 3D joints, confident only where the joint is flagged valid
        uv = project_frames(K, s.cam_from_world, s.joints)  # NaN behind the camera: not in the image
        s.kp2d, s.kp2d_conf, s.kp2d_source = uv, (in_image(uv, size) & jvalid).astype(np.float64), "projected"
        roots = (self.root / "images", self.root / "images" / "ego_images_rectified" / split)

        def image(k: int):
            name = files[k]
            for r in roots if name else ():
                if (r / name).is_file():
                    return (r / name).read_bytes(), None
            return None, None

        s.image = image
        if self.opts["upright"]:
            serial = re.sub(r"\D", "", cam.split("_")[1] if "_" in cam else cam)
            deg = CAM_ROT.get(serial, 0)
            if deg:
                s.rotate_cw(deg // 90)
        return self.emit(s)
