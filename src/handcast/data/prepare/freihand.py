"""FreiHAND v2 for the pose estimator: every image becomes a 1-frame clip (right hand only).

Reads (each file a top-level JSON list, one entry per annotation):
  <root>/training_K.json (3x3), training_xyz.json (21x3 m, OpenCV camera, OpenPose = common order),
  training_mano.json ([[61]] = pose 48 mean-relative, betas 10, uv_root 2, scale 1)
  <root>/training/rgb/%08d.jpg   224 x 224; image id = annotation index + 32560 x version index for the
                                 versions (gs, hom, sample, auto)
  evaluation (-> store split "test"): evaluation_{K,xyz,mano}.json and evaluation/rgb/%08d.jpg from the
  released ground-truth folder FreiHAND_pub_v2_eval (option eval_root; default: <root> itself if it holds
  evaluation_xyz.json, else <root>/FreiHAND_pub_v2_eval, else the sibling <root>/../FreiHAND_pub_v2_eval).
``training_verts.json`` is not read. Joints are the dataset's; with a hand model the pose gets hands_mean
added (flat) and transl = the least-squares offset putting the model's 16 joints on the stored ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcast.data.prepare.common import Item, StillImagePreparer
from handcast.data.prepare.readers import as_array, image_files, read_json
from handcast.errors import HandcastError

VERSIONS = ("gs", "hom", "sample", "auto")
SIZE = (224, 224)
NON_TIPS = np.array([i for i in range(21) if i not in (4, 8, 12, 16, 20)])


class FreiHANDPreparer(StillImagePreparer):
    name = "freihand"
    title = "FreiHAND"
    options = {"versions": VERSIONS, "eval_root": None}

    def check_root(self) -> None:
        vs = self.opts["versions"]
        if isinstance(vs, str):
            vs = self.opts["versions"] = (vs,)
        bad = [v for v in vs if v not in VERSIONS]
        if bad or not vs:
            raise HandcastError(f"option versions must be a subset of {', '.join(VERSIONS)}, got {vs!r}")
        if not (self.root / "training_K.json").is_file() and self._eval_root() is None:
            raise self.not_this_dataset("missing training_K.json (and no evaluation_xyz.json found)")

    def _eval_root(self) -> Path | None:
        if self.opts["eval_root"]:
            d = Path(self.opts["eval_root"])
            if not (d / "evaluation_xyz.json").is_file():
                raise HandcastError(f"option eval_root: {d / 'evaluation_xyz.json'} not found")
            return d
        for d in (self.root, self.root / "FreiHAND_pub_v2_eval", self.root.parent / "FreiHAND_pub_v2_eval"):
            if (d / "evaluation_xyz.json").is_file():
                return d
        return None

    def _lists(self, d: Path, prefix: str) -> dict[str, list]:
        key = f"lists_{prefix}"
        if key not in self._cache:
            lists = {}
            for k in ("K", "xyz", "mano"):
                path = d / f"{prefix}_{k}.json"
                if k == "mano" and not path.is_file():
                    continue
                data = read_json(path)
                if not isinstance(data, list):
                    raise HandcastError(f"malformed {path}: expected a JSON list")
                lists[k] = data
            n = {k: len(v) for k, v in lists.items()}
            if len(set(n.values())) != 1:
                raise HandcastError(f"FreiHAND {prefix} annotation files differ in length: {n}")
            self._cache[key] = lists
        return self._cache[key]

    def items(self, split: str) -> list[Item]:
        if split == "train":
            if not (self.root / "training_K.json").is_file():
                return []
            n = len(self._lists(self.root, "training")["K"])
            out = []
            for v in self.opts["versions"]:
                off = n * VERSIONS.index(v)
                rgb = self.root / "training" / "rgb"
                for i in range(n):
                    img = rgb / f"{i + off:08d}.jpg"
                    if v == "gs" or img.is_file():  # only versions whose images exist (gs always)
                        out.append(Item(split, f"{v}/{i + off:08d}", ("training", self.root, i, i + off, v)))
            return out
        d = self._eval_root()
        if d is None:
            if (self.root / "evaluation_K.json").is_file():
                self.summary.note("FreiHAND evaluation skipped: its ground truth (FreiHAND_pub_v2_eval/"
                                  "evaluation_xyz.json) was not found (option eval_root)")
            return []
        n = len(self._lists(d, "evaluation")["K"])
        return [Item(split, f"{i:08d}", ("evaluation", d, i, i, None)) for i in range(n)]

    def convert(self, item: Item) -> list:
        prefix, d, idx, image_id, version = item.payload
        lists = self._lists(d, prefix)
        K = as_array(lists["K"][idx], (3, 3), "K")
        xyz = as_array(lists["xyz"][idx], (21, 3), "xyz")
        meta = {"annotation_index": idx, "image_id": image_id, "source_split": prefix, "single_image": True}
        if version:
            meta["version"] = version
        s = self.still_image(item.name, K, SIZE, xyz, meta)
        if self.poses_on and "mano" in lists:
            theta = as_array(lists["mano"][idx], (61,), "mano")
            betas = np.zeros((2, 10))
            betas[0] = theta[48:58]
            pose = np.zeros((1, 2, 16, 3))
            pose[0, 0] = self.hands.mean_relative_to_flat(theta[:48].reshape(16, 3), 0)
            fk = self.hands.keypoints(pose, betas, np.zeros((1, 2, 3)))[0, 0]
            transl = np.zeros((1, 2, 3))
            transl[0, 0] = (xyz[NON_TIPS] - fk[NON_TIPS]).mean(axis=0)
            s.pose, s.transl, s.betas, s.pose_valid = pose, transl, betas, s.valid.copy()
        sub = "training" if prefix == "training" else "evaluation"
        path = d / sub / "rgb" / f"{image_id:08d}.jpg"
        s.image = image_files(lambda _k: path)
        return self.emit(s)
