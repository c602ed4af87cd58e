"""HO-3D v2 (and v3) for the pose estimator: every annotated image becomes a 1-frame clip.

Reads ``<root>/{train,evaluation}.txt`` (lines "SEQ/FRAMEID") and per frame
``<root>/{train,evaluation}/<SEQ>/meta/<id>.pkl`` (a Python pickle, read with the restricted
unpickler) and ``rgb/<id>.png`` (v2) or ``.jpg`` (v3), 640 x 480:
  handJoints3D (21, 3) MANO-21 order, metres, OpenGL camera (y up, z towards the viewer);
  handPose (48,) flat MANO (original loader, flat_hand_mean=True), handTrans (3,), handBeta (10,),
  camMat (3, 3). Right hand only.
OpenGL -> OpenCV: points are multiplied by diag(1, -1, -1); the MANO fit gets R_g' = D R_g and
transl' = D (transl + J0) - J0. The evaluation split (-> store split "test") has only the root joint in its
meta files; its 21 joints come from the released ground truth ``evaluation_xyz.json`` (same
conventions, in the order of evaluation.txt) when it is found (option ``eval_xyz``, default
``<root>/evaluation_xyz.json``), otherwise the split is skipped.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcast.conventions import mano21_to_common
from handcast.data.prepare.clips import SkipItem
from handcast.data.prepare.common import Item, StillImagePreparer
from handcast.data.prepare.h2o import change_frame
from handcast.data.prepare.readers import (as_array, existing_file, first_existing, image_files, read_json,
                                           read_pickle)
from handcast.errors import HandcastError

OPENGL_TO_OPENCV = np.diag([1.0, -1.0, -1.0, 1.0])
SIZE = (640, 480)
SPLITS = {"train": "train", "test": "evaluation"}


def read_list(path: Path) -> list[tuple[str, str]]:
    """Lines 'SEQ/FRAMEID' -> [(SEQ, FRAMEID)]; HandcastError if missing or malformed."""
    out = []
    for n, line in enumerate(existing_file(path).read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.replace("\\", "/").split("/")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise HandcastError(f"malformed line {n} in {path}: {line[:60]!r} (expected SEQ/FRAMEID)")
        out.append((parts[0], parts[1]))
    return out


def opengl_joints(j: object, what: str) -> np.ndarray:
    """(21, 3) MANO-21 order, OpenGL -> (21, 3) common order, OpenCV."""
    arr = as_array(j, (21, 3), what)
    return mano21_to_common(arr * np.array([1.0, -1.0, -1.0]), axis=0)


def rgb_path(folder: Path, fid: str) -> Path | None:
    return first_existing([folder / "rgb" / f"{fid}.png", folder / "rgb" / f"{fid}.jpg"])


class HO3DPreparer(StillImagePreparer):
    name = "ho3d"
    title = "HO-3D"
    options = {"eval_xyz": None}

    def check_root(self) -> None:
        if not any((self.root / f"{s}.txt").is_file() for s in SPLITS.values()):
            raise self.not_this_dataset("missing train.txt / evaluation.txt")

    def items(self, split: str) -> list[Item]:
        src = SPLITS[split]
        lst = self.root / f"{src}.txt"
        if not lst.is_file():
            return []
        entries = read_list(lst)
        if src == "evaluation":
            gt = Path(self.opts["eval_xyz"]) if self.opts["eval_xyz"] else self.root / "evaluation_xyz.json"
            if not gt.is_file():
                return [Item(split, "evaluation", ("no-gt", gt))]
            xyz = read_json(gt)
            if not isinstance(xyz, list) or len(xyz) != len(entries):
                raise HandcastError(f"{gt}: expected a list of {len(entries)} (21, 3) joint arrays "
                                    f"(one per line of evaluation.txt), found {type(xyz).__name__} "
                                    f"of length {len(xyz) if isinstance(xyz, list) else '?'}")
            return [Item(split, f"{seq}/{fid}", (src, seq, fid, xyz[i])) for i, (seq, fid) in enumerate(entries)]
        return [Item(split, f"{seq}/{fid}", (src, seq, fid, None)) for seq, fid in entries]

    def convert(self, item: Item) -> list:
        if item.payload[0] == "no-gt":
            raise SkipItem(f"evaluation split skipped: its meta files hold only the root joint and the released "
                           f"ground truth {item.payload[1]} was not found (option eval_xyz)")
        src, seq, fid, xyz = item.payload
        folder = self.root / src / seq
        meta = read_pickle(folder / "meta" / f"{fid}.pkl")
        if not isinstance(meta, dict):
            raise SkipItem("meta pickle is not a dict")
        K = as_array(meta.get("camMat"), (3, 3), "camMat")
        joints_src = xyz if xyz is not None else meta.get("handJoints3D")
        if joints_src is None or np.asarray(joints_src, dtype=object).size != 63:
            raise SkipItem("no 21-joint hand annotation in this frame")
        s = self.still_image(f"{seq}/{fid}", K, SIZE, opengl_joints(joints_src, "handJoints3D"),
                             {"sequence": seq, "frame": fid, "source_split": src, "single_image": True})
        has_fit = all(meta.get(k) is not None for k in ("handPose", "handTrans", "handBeta"))
        if self.poses_on and xyz is None and has_fit:
            betas = np.zeros((2, 10))
            betas[0] = as_array(meta["handBeta"], (10,), "handBeta")
            J0 = self.hands.rest_wrist(betas)[0]
            p, t = change_frame(as_array(meta["handPose"], (16, 3), "handPose"),  # flat already
                                as_array(meta["handTrans"], (3,), "handTrans"), OPENGL_TO_OPENCV, J0)
            pose = np.zeros((1, 2, 16, 3))
            transl = np.zeros((1, 2, 3))
            pose[0, 0], transl[0, 0] = p, t
            s.pose, s.transl, s.betas, s.pose_valid = pose, transl, betas, s.valid.copy()
        s.image = image_files(lambda _k: rgb_path(folder, fid))
        return self.emit(s)
