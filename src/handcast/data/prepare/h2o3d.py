"""H2O-3D (two hands, static camera per sequence folder) as clips, from HO-3D-style pickles.

Reads ``<root>/train.txt`` (lines "SEQ/FRAMEID") and ``<root>/train/<SEQ>/meta/<id>.pkl`` (restricted
unpickler) with rightHandJoints3D / leftHandJoints3D (21, 3) MANO-21 order in OpenGL camera metres,
jointValidRight / jointValidLeft (21,), rightHandPose / leftHandPose (48,) flat MANO,
rightHandTrans / leftHandTrans (3,), ONE shared handBeta (10,), camMat (3, 3); ``rgb/<id>.png|jpg``.
A hand is valid in a frame when its 21 joints exist and all are flagged valid. The evaluation split
(root joints only) is skipped. Frames of a sequence are cut into runs of consecutive frame ids.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.h2o import change_frame
from handcast.data.prepare.ho3d import OPENGL_TO_OPENCV, SIZE, opengl_joints, read_list, rgb_path
from handcast.data.prepare.readers import as_array, image_files, read_pickle
from handcast.errors import HandcastError

FPS = 30.0  # not stated by the official scripts
SIDES = (("right", "Right"), ("left", "Left"))


class H2O3DPreparer(Preparer):
    name = "h2o3d"
    title = "H2O-3D"
    splits = ("train", "test")
    uses_mano = True

    def check_root(self) -> None:
        if not (self.root / "train.txt").is_file() and not (self.root / "evaluation.txt").is_file():
            raise self.not_this_dataset("missing train.txt / evaluation.txt")

    def items(self, split: str) -> list[Item]:
        src = {"train": "train", "test": "evaluation"}[split]
        lst = self.root / f"{src}.txt"
        if not lst.is_file():
            return []
        seqs: "OrderedDict[str, list[str]]" = OrderedDict()
        for seq, fid in read_list(lst):
            seqs.setdefault(seq, []).append(fid)
        return [Item(split, f"{src}/{seq}", (src, seq, fids)) for seq, fids in seqs.items()]

    def convert(self, item: Item) -> list:
        src, seq, fids = item.payload
        folder = self.root / src / seq
        try:
            fids = sorted(fids, key=int)
        except ValueError:
            raise SkipItem("frame ids are not integers") from None
        frames, joints, valid, poses, transls, pvalid = [], [], [], [], [], []
        K = betas = None
        root_only = 0
        for fid in fids:
            try:
                meta = read_pickle(folder / "meta" / f"{fid}.pkl")
                if not isinstance(meta, dict):
                    raise HandcastError("meta pickle is not a dict")
                Kf = as_array(meta.get("camMat"), (3, 3), "camMat")
                J = np.zeros((2, 21, 3))
                v = np.zeros(2, bool)
                P = np.zeros((2, 16, 3))
                Tr = np.zeros((2, 3))
                pv = np.zeros(2, bool)
                for h, (_, cap) in enumerate(SIDES):
                    j = meta.get(f"{cap.lower()}HandJoints3D")
                    if j is None or np.asarray(j, dtype=object).size != 63:
                        root_only += j is not None
                        continue
                    J[h] = opengl_joints(j, f"{cap.lower()}HandJoints3D")
                    jv = meta.get(f"jointValid{cap}")
                    v[h] = True if jv is None else bool(np.all(np.asarray(jv, np.float64) > 0))
                    hp, ht = meta.get(f"{cap.lower()}HandPose"), meta.get(f"{cap.lower()}HandTrans")
                    if hp is not None and ht is not None:
                        P[h] = as_array(hp, (16, 3), "HandPose")
                        Tr[h] = as_array(ht, (3,), "HandTrans")
                        pv[h] = True
                if meta.get("handBeta") is not None and betas is None:
                    betas = np.tile(as_array(meta["handBeta"], (10,), "handBeta"), (2, 1))  # shared by both hands
            except HandcastError as e:
                self.summary.skip(f"{item.name}/{fid}", str(e))
                continue
            if K is None:
                K = Kf
            frames.append(int(fid))
            joints.append(J)
            valid.append(v)
            poses.append(P)
            transls.append(Tr)
            pvalid.append(pv)
        if not frames:
            raise SkipItem("no readable frame")
        if not np.any(valid):
            if root_only:
                raise SkipItem("only root joints annotated (evaluation split); nothing to convert")
            raise SkipItem("no frame with a labelled hand")
        T = len(frames)
        s = Sequence(base_id=f"{src}/{seq}", frame_ids=np.asarray(frames),
                     cam_from_world=np.tile(np.eye(4), (T, 1, 1)), K=K, image_size=SIZE, fps=self.fps(FPS),
                     valid=np.stack(valid), joints=np.stack(joints),
                     meta={"sequence": seq, "source_split": src})
        if self.poses_on and betas is not None:
            J0 = self.hands.rest_wrist(betas)
            pose = np.stack(poses)
            transl = np.stack(transls)
            for h in range(2):
                pose[:, h], transl[:, h] = change_frame(pose[:, h], transl[:, h], OPENGL_TO_OPENCV, J0[h])
            s.pose, s.transl, s.betas, s.pose_valid = pose, transl, betas, np.stack(pvalid)
        by_int = {int(f): f for f in fids}  # frame number -> file stem ("0012")
        s.image = image_files(lambda k: rgb_path(folder, by_int[frames[k]]))
        return self.emit(s)
