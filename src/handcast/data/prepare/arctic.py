"""ARCTIC, egocentric view (protocol p2), from ``raw_seqs`` (MANO fits in world) + the ego camera.

Reads (``root`` = ``arctic_data/data`` or a folder holding it):
  raw_seqs/<sid>/<seq>.mano.npy        dict right/left: rot (F,3), pose (F,45) mean-relative, trans (F,3) m,
                                       shape (10,) or (F,10)  [np.save of a dict: read with the restricted
                                       unpickler, never np.load(allow_pickle=True)]
  raw_seqs/<sid>/<seq>.egocam.dist.npy dict: R_k_cam_np (F,3,3), T_k_cam_np (F,3,1) world->ego, intrinsics (3,3),
                                       dist8 (8,)
  meta/misc.json                       per subject: image_size (9 x [w, h], index 0 = ego), ioi_offset
  splits_json/protocol_<p2>.json       {"train"?, "val", "test": ["sid/seq", ...]}
Joints come from the MANO fits (smplx fingertips), so this converter needs the MANO model.
Clips: one per sequence, the first and last ``trim`` frames dropped (they may be black). 2D keypoints
are the pinhole projections in the UNDISTORTED ego camera (the distortion is kept in meta); the
distorted ego images are therefore not stored.
"""

from __future__ import annotations

import numpy as np

from handcast.data.prepare.clips import Sequence, SkipItem
from handcast.data.prepare.common import Item, Preparer
from handcast.data.prepare.readers import as_array, read_json, read_npy_object, rel
from handcast.errors import HandcastError

FPS = 30.0


class ArcticPreparer(Preparer):
    name = "arctic"
    title = "ARCTIC"
    requires_mano = True
    options = {"protocol": "p2", "trim": 10}

    def check_root(self) -> None:
        for cand in (self.root, self.root / "data", self.root / "arctic_data" / "data"):
            if (cand / "raw_seqs").is_dir():
                self.root = cand
                break
        self.require("raw_seqs", "the MANO fits and ego cameras")
        self.require("meta/misc.json", "per-subject image sizes")
        if self.opts["protocol"] not in ("p1", "p2"):
            raise HandcastError(f"option protocol must be p1 or p2, got {self.opts['protocol']!r}")
        if self.opts["protocol"] != "p2":
            raise HandcastError("only the egocentric protocol p2 is converted (option protocol=p2)")
        trim = self.opts["trim"]
        if not isinstance(trim, int) or trim < 0:
            raise HandcastError(f"option trim must be a non-negative integer, got {trim!r}")

    def _split_of(self) -> dict[str, str]:
        if "split_of" in self._cache:
            return self._cache["split_of"]
        seqs = sorted(f"{p.parent.name}/{p.name[:-len('.mano.npy')]}"
                      for p in (self.root / "raw_seqs").glob("*/*.mano.npy"))
        path = self.root / "splits_json" / f"protocol_{self.opts['protocol']}.json"
        split_of: dict[str, str] = {}
        if path.is_file():
            data = read_json(path)
            if not isinstance(data, dict):
                raise HandcastError(f"malformed split file {path}: expected an object with train/val/test lists")
            for s in ("val", "test", "train"):
                for name in data.get(s) or []:
                    split_of.setdefault(str(name).strip("./"), s)
            for name in seqs:  # train = everything not in val or test
                split_of.setdefault(name, "train")
        else:
            self.summary.note(f"{rel(path, self.root)} not found: every sequence goes to train")
            split_of = {name: "train" for name in seqs}
        self._cache["split_of"] = split_of
        self._cache["seqs"] = set(seqs)
        return split_of

    def items(self, split: str) -> list[Item]:
        split_of = self._split_of()
        names = [n for n, s in sorted(split_of.items()) if s == split]
        return [Item(split, n, n) for n in names]

    def convert(self, item: Item) -> list:
        from handcast.geometry import rigid

        name = item.payload
        if name not in self._cache["seqs"]:
            raise SkipItem("listed in the split file but raw_seqs/<sid>/<seq>.mano.npy is missing")
        sid, seq = name.split("/", 1)
        base = self.root / "raw_seqs" / sid
        mano = read_npy_object(base / f"{seq}.mano.npy")
        ego = read_npy_object(base / f"{seq}.egocam.dist.npy")
        if not isinstance(mano, dict) or not isinstance(ego, dict):
            raise SkipItem("mano.npy / egocam.dist.npy do not hold a dict")
        misc = self._cache.get("misc")
        if misc is None:
            misc = self._cache["misc"] = read_json(self.root / "meta" / "misc.json")
        if sid not in misc:
            raise SkipItem(f"subject {sid} not in meta/misc.json")
        w, h = (int(v) for v in misc[sid]["image_size"][0])
        R = np.asarray(ego["R_k_cam_np"], np.float64)
        F = R.shape[0]
        Rk = as_array(R, (F, 3, 3), "egocam R_k_cam_np")
        Tk = as_array(ego["T_k_cam_np"], (F, 3), "egocam T_k_cam_np")
        K = as_array(ego["intrinsics"], (3, 3), "egocam intrinsics")
        hands = self.hands
        pose = np.zeros((F, 2, 16, 3))
        transl = np.zeros((F, 2, 3))
        betas = np.zeros((2, 10))
        for h_idx, side in enumerate(("right", "left")):
            d = mano.get(side)
            if not isinstance(d, dict):
                raise SkipItem(f"mano.npy has no '{side}' hand")
            rot = as_array(d["rot"], (F, 3), f"{side} rot")
            fingers = as_array(d["pose"], (F, 15, 3), f"{side} pose")
            transl[:, h_idx] = as_array(d["trans"], (F, 3), f"{side} trans")
            shape = np.asarray(d["shape"], np.float64)
            betas[h_idx] = as_array(shape.reshape(-1, 10)[0] if shape.ndim == 2 else shape, (10,), f"{side} shape")
            mean_rel = np.concatenate([rot[:, None], fingers], axis=1)
            pose[:, h_idx] = hands.mean_relative_to_flat(mean_rel, h_idx)  # ARCTIC: flat_hand_mean=False
        joints = hands.keypoints(pose, betas, transl)  # world frame, smplx fingertips
        trim = int(self.opts["trim"])
        keep = np.arange(trim, F - trim)
        if keep.size == 0:
            raise SkipItem(f"only {F} frames, fewer than 2 x trim={trim}")
        cam = rigid(Rk, Tk)
        valid = np.isfinite(joints).all(axis=(-1, -2))
        seq_obj = Sequence(
            step=1, base_id=name, frame_ids=keep, cam_from_world=cam[keep], K=K, image_size=(w, h), fps=self.fps(FPS),
            valid=valid[keep], joints=joints[keep], pose=pose[keep], transl=transl[keep], betas=betas,
            joints_source="mano_fk",
            meta={"subject": sid, "sequence": seq, "object": seq.split("_")[0], "view": 0,
                  "ioi_offset": int(misc[sid].get("ioi_offset", 0)),
                  "ego_dist8": [float(x) for x in np.asarray(ego.get("dist8", np.zeros(8)), np.float64).ravel()],
                  "left_shapedirs_fixed": False, "camera": "undistorted ego pinhole"},
        )
        return self.emit(seq_obj)
