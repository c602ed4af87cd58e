"""The hand model of the dataset converters: which one a dataset's MANO parameters are read with
(official MANO, the open model standing in for it, or none), and the conversions of those parameters
(mean-relative and PCA poses to flat, keypoints, rest-pose wrist J0), in float64 numpy.
"""

from __future__ import annotations

import numpy as np

from handcast.errors import AssetMissingError, HandcastError

MANO_HELP = ("register at https://mano.is.tue.mpg.de, download the MANO model (mano_v1_2), then run "
             "`handcast mano import MANO_RIGHT.pkl MANO_LEFT.pkl`")


class HandModels:
    """The hand model a converter uses for MANO parameters (lazy; float64).

    choice: None/"auto" (official MANO if installed; for datasets that need MANO, MANO or a clear
    error), "mano", "open" (the open hand model standing in for MANO: tests, no licensed files),
    "none" (do not convert poses; only for keypoint datasets).
    left_fixed: whether the dataset's left-hand fits used the MANO_LEFT shapedirs fix (HOT3D: yes;
    the others: no). With the official model, a copy whose left shapedirs match the dataset is used
    to compute joints and J0, whatever ``handcast mano import`` chose.
    """

    def __init__(self, choice: str | None, mano_dir, *, required: bool, left_fixed: bool, dataset: str):
        from handcast.hand import mano_installed, mano_model_dir

        if choice not in (None, "auto", "mano", "open", "none"):
            raise HandcastError(f"option hand_model must be auto, mano, open or none, got {choice!r}")
        self.mano_dir = mano_dir
        self.left_fixed = bool(left_fixed)
        installed = mano_installed(mano_dir)
        if choice in (None, "auto"):
            kind = "mano" if (required or installed) else None
        elif choice == "none":
            if required:
                raise HandcastError(f"{dataset} stores only MANO parameters, so it needs a hand model "
                                    "(hand_model must be auto or mano)")
            kind = None
        else:
            kind = choice
        if kind == "mano" and not installed:
            d = mano_model_dir(mano_dir)
            what = ("stores hands only as MANO parameters; computing its joints needs"
                    if required else "poses are MANO parameters; converting them was requested and needs")
            raise AssetMissingError(f"{dataset} {what} the official MANO model, which is not installed "
                                    f"(MANO_RIGHT.npz / MANO_LEFT.npz not found in {d}): {MANO_HELP}")
        self.kind: str | None = kind
        self._model = None
        self._arrays: dict[str, np.ndarray] | None = None

    @property
    def available(self) -> bool:
        return self.kind is not None

    def _load_arrays(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            if self.kind == "open":
                from handcast.hand import open_model

                sides = [open_model.load_open_model(s) for s in ("right", "left")]
            else:
                from handcast.hand import mano_model_dir
                from handcast.io import load_npz

                d = mano_model_dir(self.mano_dir)
                sides = [load_npz(d / f"MANO_{s}.npz", required=("hands_mean", "hands_components"))
                         for s in ("RIGHT", "LEFT")]
                left_flag = bool(sides[1]["left_shapedirs_fixed"]) if "left_shapedirs_fixed" in sides[1] else False
                self._installed_left_fixed = left_flag
            self._arrays = {
                "hands_mean": np.stack([np.asarray(s["hands_mean"], np.float64).reshape(45) for s in sides]),
                "hands_components": np.stack([np.asarray(s["hands_components"], np.float64).reshape(-1, 45)
                                              for s in sides]),
            }
        return self._arrays

    @property
    def model(self):
        """The :class:`handcast.hand.HandModel` (float64), built on first use."""
        if self.kind is None:
            raise HandcastError("no hand model selected")
        if self._model is None:
            import torch

            from handcast.hand import HandModel

            hm = HandModel(self.kind, mano_dir=self.mano_dir, dtype=torch.float64)
            if self.kind == "mano":
                self._load_arrays()
                if self._installed_left_fixed != self.left_fixed:
                    hm.negate_left_shapedirs_x()  # match the dataset's MANO_LEFT
            self._model = hm
        return self._model

    def hands_mean(self, hand: int) -> np.ndarray:
        """(45,) finger mean pose (axis-angle, rad) of hand 0 (right) / 1 (left)."""
        return self._load_arrays()["hands_mean"][hand]

    def components(self, hand: int) -> np.ndarray:
        """(n, 45) PCA basis (rows = components) of hand 0 (right) / 1 (left)."""
        return self._load_arrays()["hands_components"][hand]

    def mean_relative_to_flat(self, pose: np.ndarray, hand: int) -> np.ndarray:
        """(..., 16, 3) mean-relative axis-angle -> flat (adds hands_mean to the 15 finger joints)."""
        from handcast.hand import mean_relative_to_flat

        return mean_relative_to_flat(np.asarray(pose, np.float64), self.hands_mean(hand))

    def pca_to_flat(self, global_aa: np.ndarray, coeffs: np.ndarray, hand: int) -> np.ndarray:
        """Global axis-angle (..., 3) and PCA coefficients (..., n) of a mean-relative PCA pose
        (MANO ``use_pca``, ``flat_hand_mean=False``) -> flat pose (..., 16, 3)."""
        from handcast.hand import pca_to_pose

        coeffs = np.asarray(coeffs, np.float64)
        fingers = pca_to_pose(coeffs, self.components(hand), coeffs.shape[-1])
        pose = np.concatenate([np.asarray(global_aa, np.float64)[..., None, :],
                               fingers.reshape(fingers.shape[:-1] + (15, 3))], axis=-2)
        return self.mean_relative_to_flat(pose, hand)

    def rest_wrist(self, betas: np.ndarray) -> np.ndarray:
        """J0 per hand, (2, 3) metres, for betas (2, 10)."""
        import torch

        b = torch.as_tensor(np.asarray(betas, np.float64))
        with torch.no_grad():
            return self.model.rest_joints(b)[..., 0, :].numpy()

    def keypoints(self, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> np.ndarray:
        """(T, 2, 21, 3) metres, common order, frame of ``transl``, from a flat pose (T, 2, 16, 3),
        betas (2, 10) and transl (T, 2, 3)."""
        import torch

        pose = np.nan_to_num(np.asarray(pose, np.float64))
        transl = np.nan_to_num(np.asarray(transl, np.float64))
        with torch.no_grad():
            out = self.model.keypoints(torch.as_tensor(pose), torch.as_tensor(np.asarray(betas, np.float64)),
                                       torch.as_tensor(transl))
        return out.numpy()
