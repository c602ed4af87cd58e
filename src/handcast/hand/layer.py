"""The two-hand MANO layer over smplx, for the official MANO model or the open hand model.

Shapes: every input and output has any number of leading dims ``...`` followed by a hand axis of
size 2 ordered (right, left). Lengths are metres; outputs are in the frame of ``transl``.

Placement: smplx rotates the hand about its rest-pose wrist joint J0(betas), not the origin:
  vertices = R_global (v_local - J0) + J0 + transl,
where v_local is the shaped and finger-posed mesh. So to put the wrist joint at p with global
rotation R, use ``global_orient = R`` (pose joint 0) and ``transl = p - J0(betas)``, with J0 from
:meth:`HandModel.rest_joints`.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from handcast.conventions import (
    MANO21_TO_COMMON,
    MANO_FINGERTIP_VERTEX_IDS,
    NUM_MANO_JOINTS,
)
from handcast.errors import AssetMissingError, HandcastError
from handcast.hand import open_model
from handcast.hand.mano_import import default_mano_dir, validate_mano_arrays
from handcast.hand.pose import (
    CONVENTIONS,
    check_rep,
    clamp_to_limits,
    to_axis_angle,
    to_rotmat,
)
from handcast.io import load_npz

KINDS = ("auto", "open", "mano")
MANO_REQUIRED = ("v_template", "f", "weights", "J_regressor", "shapedirs", "posedirs", "kintree_table",
                 "hands_components", "hands_mean")

# Joints by depth in the kinematic tree (depth 1, 2, 3; same finger order in each list).
_LEVELS = ((1, 4, 7, 10, 13), (2, 5, 8, 11, 14), (3, 6, 9, 12, 15))
_LEVEL_ORDER = (0,) + _LEVELS[0] + _LEVELS[1] + _LEVELS[2]
_FROM_LEVEL_ORDER = tuple(int(i) for i in np.argsort(_LEVEL_ORDER))


@dataclass
class HandOutput:
    """Output of :meth:`HandModel.forward` (metres, frame of ``transl``).

    joints16: (..., 2, 16, 3) MANO joints in MANO order; keypoints: (..., 2, 21, 3) in the common
    21-keypoint order (16 joints + 5 fingertip vertices); vertices: (..., 2, V, 3).
    """

    joints16: torch.Tensor
    keypoints: torch.Tensor
    vertices: torch.Tensor


def mano_model_dir(mano_dir: str | Path | None = None) -> Path:
    """Folder holding MANO_RIGHT.npz / MANO_LEFT.npz (default ``$HANDCAST_HOME/mano``)."""
    return Path(mano_dir).expanduser() if mano_dir is not None else default_mano_dir()


def mano_installed(mano_dir: str | Path | None = None) -> bool:
    """Whether the converted official MANO files (MANO_RIGHT.npz, MANO_LEFT.npz) are present."""
    d = mano_model_dir(mano_dir)
    return (d / "MANO_RIGHT.npz").is_file() and (d / "MANO_LEFT.npz").is_file()


def describe_installed_models(mano_dir: str | Path | None = None) -> str:
    """A few lines saying which hand models are available and which one kind="auto" uses."""
    d = mano_model_dir(mano_dir)
    lines = [f"open hand model: {open_model.asset_path()} (shipped with handcast)"]
    if mano_installed(mano_dir):
        try:
            arrays = {}
            for side in ("RIGHT", "LEFT"):
                arrays[side] = load_npz(d / f"MANO_{side}.npz", required=MANO_REQUIRED)
                validate_mano_arrays(arrays[side], d / f"MANO_{side}.npz")
        except HandcastError as e:  # a damaged file is reported, not raised
            lines.append(f"official MANO: files in {d} are damaged: {e}")
            lines.append("HandModel(kind='auto') uses: mano, and fails until the files are replaced "
                         "(re-run `handcast mano import RIGHT.pkl LEFT.pkl`)")
            return "\n".join(lines)
        z = arrays["LEFT"]
        fixed = ("yes" if bool(z["left_shapedirs_fixed"]) else "no") if "left_shapedirs_fixed" in z else "unknown"
        lines.append(f"official MANO: installed in {d} (left shapedirs x-column fixed: {fixed})")
        lines.append("HandModel(kind='auto') uses: mano")
    else:
        lines.append(f"official MANO: not installed (looked for MANO_RIGHT.npz and MANO_LEFT.npz in {d}; "
                     "convert the downloaded pickles with `handcast mano import RIGHT.pkl LEFT.pkl`)")
        lines.append("HandModel(kind='auto') uses: open")
    return "\n".join(lines)


def _load_arrays(kind: str, mano_dir) -> tuple[str, dict, dict, Path]:
    if kind not in KINDS:
        raise HandcastError(f"unknown hand model kind {kind!r}; use one of {', '.join(KINDS)}")
    if kind == "auto":
        kind = "mano" if mano_installed(mano_dir) else "open"

    if kind == "open":
        return kind, open_model.load_open_model("right"), open_model.load_open_model("left"), open_model.asset_path()
    d = mano_model_dir(mano_dir)
    if not mano_installed(mano_dir):
        raise AssetMissingError(
            f"official MANO files not found in {d} (MANO_RIGHT.npz, MANO_LEFT.npz); convert the "
            "downloaded pickles with `handcast mano import MANO_RIGHT.pkl MANO_LEFT.pkl`, or use kind='open'")

    right = load_npz(d / "MANO_RIGHT.npz", required=MANO_REQUIRED)
    left = load_npz(d / "MANO_LEFT.npz", required=MANO_REQUIRED)
    validate_mano_arrays(right, d / "MANO_RIGHT.npz")
    validate_mano_arrays(left, d / "MANO_LEFT.npz")
    return kind, right, left, d


def _signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    t = v[f] - v.mean(axis=0)
    return float(np.einsum("ij,ij->i", t[:, 0], np.cross(t[:, 1], t[:, 2])).sum() / 6.0)


def _make_layer(arrays: dict, is_rhand: bool, dtype: torch.dtype, model_path: Path) -> nn.Module:
    import smplx
    from smplx.utils import Struct

    data = {k: arrays[k] for k in MANO_REQUIRED}
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 betas
        layer = smplx.MANO(
            model_path=str(model_path), data_struct=Struct(**data), is_rhand=is_rhand, use_pca=False,
            flat_hand_mean=True, num_pca_comps=45, dtype=dtype, create_betas=False,
            create_global_orient=False, create_transl=False, create_hand_pose=False,
            create_body_pose=False)
    return layer


class HandModel(nn.Module):
    """Right and left MANO layers (smplx) plus a fast keypoints-only path.

    kind: "open" (the open hand model shipped with handcast), "mano" (the official model,
    converted by ``handcast mano import``), or "auto" (MANO if installed, else open).
    mano_dir: folder with MANO_RIGHT.npz / MANO_LEFT.npz (default ``$HANDCAST_HOME/mano``).
    All tensors are buffers: ``.to(device)`` / ``.to(dtype)`` move them; nothing is hard-coded.
    """

    def __init__(self, kind: str = "auto", mano_dir: str | Path | None = None, dtype: torch.dtype = torch.float32):
        super().__init__()
        kind, right, left, path = _load_arrays(kind, mano_dir)
        self.kind: str = kind
        self.layers = nn.ModuleList([_make_layer(right, True, dtype, path), _make_layer(left, False, dtype, path)])
        # Faces with outward winding (the official MANO_LEFT shares the right hand's face list,
        # which is inside-out on the mirrored mesh; the open left model is already flipped).

        faces = []
        for arrays in (right, left):
            f = np.asarray(arrays["f"], dtype=np.int64)
            if _signed_volume(np.asarray(arrays["v_template"], np.float64), f) < 0:
                f = f[:, ::-1]
            faces.append(np.ascontiguousarray(f))
        self._faces = tuple(faces)
        if kind == "open":
            self.tip_vertex_ids: tuple[int, ...] = tuple(int(i) for i in right["tip_vertex_ids"])
            limits = np.stack([right["joint_limits"], left["joint_limits"]])
        else:
            self.tip_vertex_ids = tuple(MANO_FINGERTIP_VERTEX_IDS)
            # The official files have no joint limits: use the open model's.
            limits = np.stack([open_model.load_open_model(s)["joint_limits"] for s in ("right", "left")])
        self.register_buffer("hands_mean", torch.tensor(np.stack([right["hands_mean"], left["hands_mean"]]).reshape(2, 45), dtype=dtype))
        self.register_buffer("joint_limits", torch.tensor(limits, dtype=dtype))
        self._register_keypoint_buffers(dtype)

    # ------------------------------------------------------------------------------------------
    def _register_keypoint_buffers(self, dtype: torch.dtype) -> None:
        """Precompute what the keypoints-only path needs (per hand): the joint regressor applied to
        the template and shape directions, and the template/shape/pose-blend/skinning rows of the
        5 fingertip vertices."""
        tips = torch.tensor(self.tip_vertex_ids, dtype=torch.long)
        jt, jd, tt, td, tp, tw = [], [], [], [], [], []
        for layer in self.layers:
            Jr = layer.J_regressor.double()
            v = layer.v_template.double()
            sd = layer.shapedirs.double()
            jt.append(Jr @ v)
            jd.append(torch.einsum("jv,vck->jck", Jr, sd))
            tt.append(v[tips])
            td.append(sd[tips])
            P = layer.posedirs.double()  # (135, V*3)
            cols = (tips[:, None] * 3 + torch.arange(3)[None]).reshape(-1)
            tp.append(P[:, cols])  # (135, 15)
            tw.append(layer.lbs_weights.double()[tips])
        for name, vals in (("kp_J_template", jt), ("kp_J_dirs", jd), ("kp_tip_template", tt),
                           ("kp_tip_dirs", td), ("kp_tip_posedirs", tp), ("kp_tip_weights", tw)):
            self.register_buffer(name, torch.stack(vals).to(dtype))
        self._tip_posedirs_zero = bool(torch.all(torch.stack(tp) == 0))

    def negate_left_shapedirs_x(self) -> None:
        """Negate the x column of the left hand's shape directions, in place (keypoints path included).

        This applies the MANO_LEFT shapedirs fix (``handcast mano import --fix-left-shapedirs``) to a model
        imported without it, or undoes it on one imported with it: to match a dataset fitted with
        the other variant.
        """
        with torch.no_grad():
            self.layers[1].shapedirs[:, 0, :] *= -1.0
        self._register_keypoint_buffers(self.kp_J_template.dtype)

    # ------------------------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        """Number of mesh vertices V (778 for MANO)."""
        return int(self.layers[0].v_template.shape[0])

    def faces(self, hand: int | str) -> np.ndarray:
        """Triangles (F, 3) int64 of hand 0 / "right" or 1 / "left", outward (counter-clockwise)
        winding seen from outside (the left list is the right one with flipped winding)."""
        idx = {0: 0, 1: 1, "right": 0, "left": 1}.get(hand) if isinstance(hand, (int, str)) else None
        if idx is None:
            raise HandcastError(f"hand must be 0/'right' or 1/'left', got {hand!r}")
        return self._faces[idx].copy()

    def _expand(self, x: torch.Tensor | None, lead: tuple[int, ...], size: int, name: str, like: torch.Tensor) -> torch.Tensor:
        shape = lead + (2, size)
        if x is None:
            return like.new_zeros(shape)
        if x.shape[-2:] != (2, size):
            raise HandcastError(f"{name} must have shape (..., 2, {size}), got {tuple(x.shape)}")
        try:
            return torch.broadcast_to(x.to(like.dtype), shape)
        except RuntimeError:
            raise HandcastError(f"{name} of shape {tuple(x.shape)} does not broadcast to {shape}") from None

    def _prepare(self, pose: torch.Tensor, rep: str, convention: str):
        """-> (lead dims, axis-angle (..., 2, 16, 3) or None, rotation matrices or None)."""
        if convention not in CONVENTIONS:
            raise HandcastError(f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}")
        lead = check_rep(pose, rep)
        if len(lead) < 1 or lead[-1] != 2:
            raise HandcastError(f"pose needs a hand axis of size 2 before the 16 joints, got shape {tuple(pose.shape)}")
        lead = lead[:-1]
        pose = pose.to(self.hands_mean.dtype)
        if convention == "mean_relative":
            aa = to_axis_angle(pose, rep)
            fingers = aa[..., 1:, :] + self.hands_mean.reshape(2, 15, 3)
            return lead, torch.cat([aa[..., :1, :], fingers], dim=-2), None
        if rep == "aa":
            return lead, pose, None
        return lead, None, to_rotmat(pose, rep)

    # ------------------------------------------------------------------------------------------
    def forward(self, pose: torch.Tensor, betas: torch.Tensor | None = None, transl: torch.Tensor | None = None,
                rep: str = "aa", convention: str = "flat") -> HandOutput:
        """Full MANO forward pass through smplx (vertices, joints, keypoints) for both hands.

        pose: (..., 2, 16, 3) axis-angle in rad (rep="aa"), (..., 2, 16, 6) 6D (rep="6d") or
        (..., 2, 16, 3, 3) rotation matrices (rep="rotmat"), MANO joint order, rotations in the
        model's rest frame; hand axis (right, left); joint 0 is the global orientation.
        convention: "flat" or "mean_relative" (adds ``hands_mean`` to the finger axis-angles, as
        MANO does). betas: (..., 2, 10) or None (zeros); transl: (..., 2, 3) m or None (zeros).
        Returns a :class:`HandOutput` in metres, in the frame of ``transl``.
        """
        from smplx.lbs import lbs

        lead, aa, rot = self._prepare(pose, rep, convention)
        src = aa if aa is not None else rot
        betas = self._expand(betas, lead, 10, "betas", src)
        transl = self._expand(transl, lead, 3, "transl", src)
        n = int(np.prod(lead)) if lead else 1
        verts, joints = [], []
        for h, layer in enumerate(self.layers):
            b = betas[..., h, :].reshape(n, 10)
            if n == 0:
                verts.append(src.new_zeros((0, self.num_vertices, 3)))
                joints.append(src.new_zeros((0, NUM_MANO_JOINTS, 3)))
                continue
            if aa is not None:
                a = aa[..., h, :, :].reshape(n, 48)
                out = layer(betas=b, global_orient=a[:, :3], hand_pose=a[:, 3:], transl=None)
                v, j = out.vertices, out.joints
            else:
                r = rot[..., h, :, :, :].reshape(n, NUM_MANO_JOINTS, 3, 3)
                v, j = lbs(b, r, layer.v_template, layer.shapedirs, layer.posedirs, layer.J_regressor,
                           layer.parents, layer.lbs_weights, pose2rot=False)
            t = transl[..., h, :].reshape(n, 1, 3)
            verts.append(v + t)
            joints.append(j + t)
        V = torch.stack(verts, dim=1).reshape(lead + (2, self.num_vertices, 3))
        J = torch.stack(joints, dim=1).reshape(lead + (2, NUM_MANO_JOINTS, 3))
        tips = V[..., list(self.tip_vertex_ids), :]
        kp = torch.cat([J, tips], dim=-2)[..., list(MANO21_TO_COMMON), :]
        return HandOutput(joints16=J, keypoints=kp, vertices=V)

    def keypoints(self, pose: torch.Tensor, betas: torch.Tensor | None = None, transl: torch.Tensor | None = None,
                  rep: str = "aa", convention: str = "flat") -> torch.Tensor:
        """Keypoints only, (..., 2, 21, 3) m in the common order; same arguments and result as
        ``forward(...).keypoints`` but computes only the 16 joints and the 5 fingertip vertices
        (never the full mesh), so it is much cheaper inside optimisation loops."""
        lead, aa, rot = self._prepare(pose, rep, convention)
        if rot is None:
            rot = to_rotmat(aa, "aa")
        betas = self._expand(betas, lead, 10, "betas", rot)
        transl = self._expand(transl, lead, 3, "transl", rot)
        J = self.kp_J_template + torch.einsum("...hk,hjck->...hjc", betas, self.kp_J_dirs)  # (..., 2, 16, 3)
        # Global rotations / positions of the joints, one tree level at a time.
        Rg = [rot[..., :1, :, :]]
        tg = [J[..., :1, :]]
        prev = [0] * 5
        for level in _LEVELS:
            Rp, tp = Rg[-1], tg[-1]  # parents: the previous level (the root for level 1)
            rel = (J[..., list(level), :] - J[..., prev, :]).unsqueeze(-1)
            Rg.append(Rp @ rot[..., list(level), :, :])
            tg.append((Rp @ rel).squeeze(-1) + tp)
            prev = list(level)
        Rg = torch.cat(Rg, dim=-3)[..., list(_FROM_LEVEL_ORDER), :, :]
        tg = torch.cat(tg, dim=-2)[..., list(_FROM_LEVEL_ORDER), :]
        # Fingertip vertices: shape blend, pose blend, linear blend skinning.
        tips = self.kp_tip_template + torch.einsum("...hk,hvck->...hvc", betas, self.kp_tip_dirs)
        if not self._tip_posedirs_zero:
            eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
            feat = (rot[..., 1:, :, :] - eye).flatten(-3)  # (..., 2, 135)
            tips = tips + torch.einsum("...hp,hpq->...hq", feat, self.kp_tip_posedirs).unflatten(-1, (5, 3))
        trans = tg - (Rg @ J.unsqueeze(-1)).squeeze(-1)  # A_j = [Rg_j | tg_j - Rg_j J_j]
        TR = torch.einsum("hvj,...hjab->...hvab", self.kp_tip_weights, Rg)
        Tt = torch.einsum("hvj,...hja->...hva", self.kp_tip_weights, trans)
        tips = (TR @ tips.unsqueeze(-1)).squeeze(-1) + Tt
        kp = torch.cat([tg, tips], dim=-2)[..., list(MANO21_TO_COMMON), :]
        return kp + transl.unsqueeze(-2)

    def rest_joints(self, betas: torch.Tensor | None = None) -> torch.Tensor:
        """Rest-pose joints (..., 2, 16, 3) m (no pose, no transl) for betas (..., 2, 10).

        Joint 0 is J0(betas), the point the global orientation rotates about (see module doc).
        With betas None, returns the template joints (2, 16, 3).
        """
        if betas is None:
            return self.kp_J_template.clone()
        if betas.shape[-2:] != (2, 10):
            raise HandcastError(f"betas must have shape (..., 2, 10), got {tuple(betas.shape)}")
        return self.kp_J_template + torch.einsum("...hk,hjck->...hjc", betas.to(self.kp_J_dirs.dtype), self.kp_J_dirs)

    def clamp_to_limits(self, pose_aa: torch.Tensor) -> torch.Tensor:
        """Clamp a flat axis-angle pose (..., 2, 16, 3) to :attr:`joint_limits` (root unchanged)."""
        if pose_aa.shape[-3:] != (2, 16, 3):
            raise HandcastError(f"pose_aa must have shape (..., 2, 16, 3), got {tuple(pose_aa.shape)}")
        return clamp_to_limits(pose_aa, self.joint_limits)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, num_vertices={self.num_vertices}"
