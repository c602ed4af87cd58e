"""Prediction / ground-truth files and the function behind ``handcast evaluate``.

File formats (``.npz``, no pickled objects; see docs/metrics.md)

Prediction file
    clip_ids  (N,) str              unique clip identifiers
    joints    (N, S, T, 2, 21, 3)   float32, metres, frame-0 camera, hands (right, left), common 21-kp
                                    order, S samples per clip (S = 1 for a deterministic model)
    pose6d    (N, S, T, 2, 16, 6)   optional, flat-hand MANO rotations in roma 6D
    wrist     (N, S, T, 2, 3)       optional, float32, wrist position (keypoint 0) [m], frame-0 camera,
                                    hands (right, left) (= MANO transl + rest wrist J0(betas))

Ground-truth file
    clip_ids  (N,) str
    joints    (N, T, 2, 21, 3)      float32, metres; may be NaN where ``valid`` is False
    valid     (N, T, 2) bool        a (frame, hand) enters the metrics only where True
    pose6d    (N, T, 2, 16, 6)      optional
    wrist     (N, T, 2, 3)          optional, float32, wrist position [m], frame-0 camera, hands (right, left)
    group_ids (N,) str              optional: clips with the same group id share their first frame
                                    (several ground-truth futures of one image)

Files written by an older handcast name the wrist position ``transl`` (which elsewhere, in clip stores and
result files, is MANO's translation); the readers accept them as ``wrist`` and say so on stderr.

Matching rules of :func:`evaluate`: every ground-truth clip must be predicted and predictions may
not contain clips absent from the ground truth (both are errors naming the clips). Predictions are
reordered to the ground-truth order. A prediction horizon longer than the ground truth is truncated
to it; a shorter one is accepted only if every ground-truth frame beyond it is invalid (those frames
are then dropped), otherwise it is an error.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handcast.conventions import NUM_KEYPOINTS, NUM_MANO_JOINTS
from handcast.errors import HandcastError
from handcast.eval import metrics as M
from handcast.io import atomic_path, load_npz, save_npz

#: what prediction / ground-truth files written by an older handcast call ``wrist`` (not MANO's translation)
OLD_WRIST_NAME = "transl"


@dataclass
class Predictions:
    """Model outputs for N clips, S samples each (shapes as in the module docstring)."""

    clip_ids: np.ndarray  # (N,) str
    joints: np.ndarray  # (N, S, T, 2, 21, 3) float32 [m], frame-0 camera, hands (right, left)
    pose6d: np.ndarray | None = None  # (N, S, T, 2, 16, 6) float32
    wrist: np.ndarray | None = None  # (N, S, T, 2, 3) float32 [m] wrist position, frame-0 camera, hands (right, left)

    @property
    def num_clips(self) -> int:
        return int(self.joints.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.joints.shape[1])


@dataclass
class GroundTruth:
    """Ground truth for N clips (shapes as in the module docstring)."""

    clip_ids: np.ndarray  # (N,) str
    joints: np.ndarray  # (N, T, 2, 21, 3) float32 [m], frame-0 camera, hands (right, left)
    valid: np.ndarray  # (N, T, 2) bool
    pose6d: np.ndarray | None = None  # (N, T, 2, 16, 6) float32
    wrist: np.ndarray | None = None  # (N, T, 2, 3) float32 [m] wrist position, frame-0 camera, hands (right, left)
    group_ids: np.ndarray | None = None  # (N,) str

    @property
    def num_clips(self) -> int:
        return int(self.joints.shape[0])


# ------------------------------------------------------------------------------------ validation

def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(str(s) for s in shape) + ")"


def _check_ids(name: str, what: str, ids: Any, n: int | None) -> np.ndarray:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise HandcastError(f"{name}: {what} has shape {_fmt_shape(arr.shape)} but expected (N,)")
    if arr.size and arr.dtype.kind not in "UST":
        raise HandcastError(f"{name}: {what} has dtype {arr.dtype} but expected strings")
    arr = arr.astype(str)
    if n is not None and arr.shape[0] != n:
        raise HandcastError(f"{name}: {what} has {arr.shape[0]} entries but joints has {n} clips")
    return arr


def _check_float(name: str, what: str, x: Any, expected: tuple[Any, ...], finite_where: np.ndarray | None = None,
                 allow_nonfinite: bool = False) -> np.ndarray:
    """Check a float array's shape against ``expected`` (ints fixed, strings free) and its values."""
    arr = np.asarray(x)
    exp_txt = "(" + ", ".join(str(e) for e in expected) + ")"
    ok = arr.ndim == len(expected) and all(isinstance(e, str) or arr.shape[i] == e for i, e in enumerate(expected))
    if not ok:
        raise HandcastError(f"{name}: {what} has shape {_fmt_shape(arr.shape)} but expected {exp_txt}")
    if arr.dtype.kind != "f":
        raise HandcastError(f"{name}: {what} has dtype {arr.dtype} but expected float32")
    arr = arr.astype(np.float32, copy=False)
    if not allow_nonfinite:
        bad = ~np.isfinite(arr)
        if finite_where is not None:
            bad &= finite_where
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise HandcastError(f"{name}: {what} has {int(bad.sum())} NaN/inf value(s) (first at index {first})")
    return arr


def _check_valid(name: str, x: Any, n: int, t: int) -> np.ndarray:
    arr = np.asarray(x)
    if arr.shape != (n, t, 2):
        raise HandcastError(f"{name}: valid has shape {_fmt_shape(arr.shape)} but expected (N, T, 2) = ({n}, {t}, 2)")
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind in "iu" and np.isin(arr, (0, 1)).all():
        return arr.astype(bool)
    raise HandcastError(f"{name}: valid has dtype {arr.dtype} but expected bool")


def _unique_ids(name: str, ids: np.ndarray) -> None:
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = ", ".join(uniq[counts > 1][:5])
        raise HandcastError(f"{name}: clip_ids are not unique (repeated: {dup})")


def validate_predictions(clip_ids: Any, joints: Any, pose6d: Any = None, wrist: Any = None,
                         name: str = "predictions") -> Predictions:
    """Check arrays against the prediction format; return them as :class:`Predictions` (float32)."""
    j = _check_float(name, "joints", joints, ("N", "S", "T", 2, NUM_KEYPOINTS, 3))
    n, s, t = j.shape[:3]
    ids = _check_ids(name, "clip_ids", clip_ids, n)
    _unique_ids(name, ids)
    if s < 1 or t < 1:
        raise HandcastError(f"{name}: joints has shape {_fmt_shape(j.shape)}: need S >= 1 samples and T >= 1 frames")
    p6 = tr = None
    if pose6d is not None:
        p6 = _check_float(name, "pose6d", pose6d, (n, s, t, 2, NUM_MANO_JOINTS, 6))
    if wrist is not None:
        tr = _check_float(name, "wrist", wrist, (n, s, t, 2, 3))
    return Predictions(ids, j, p6, tr)


def validate_ground_truth(clip_ids: Any, joints: Any, valid: Any, pose6d: Any = None, wrist: Any = None,
                          group_ids: Any = None, name: str = "ground truth") -> GroundTruth:
    """Check arrays against the ground-truth format; return them as :class:`GroundTruth` (float32).

    Joints (and pose6d / wrist) must be finite wherever ``valid`` is True.
    """
    jt = np.asarray(joints)
    if jt.ndim != 5:
        raise HandcastError(f"{name}: joints has shape {_fmt_shape(jt.shape)} but expected (N, T, 2, 21, 3)")
    n, t = jt.shape[:2]
    v = _check_valid(name, valid, n, t)
    j = _check_float(name, "joints", jt, ("N", "T", 2, NUM_KEYPOINTS, 3), finite_where=v[..., None, None])
    ids = _check_ids(name, "clip_ids", clip_ids, n)
    _unique_ids(name, ids)
    p6 = tr = g = None
    if pose6d is not None:
        p6 = _check_float(name, "pose6d", pose6d, (n, t, 2, NUM_MANO_JOINTS, 6), finite_where=v[..., None, None])
    if wrist is not None:
        tr = _check_float(name, "wrist", wrist, (n, t, 2, 3), finite_where=v[..., None])
    if group_ids is not None:
        g = _check_ids(name, "group_ids", group_ids, n)
    return GroundTruth(ids, j, v, p6, tr, g)


# ------------------------------------------------------------------------------------------ files

def write_predictions(path: str | os.PathLike, clip_ids: Any, joints: Any, pose6d: Any = None,
                      wrist: Any = None) -> None:
    """Validate and write a prediction file atomically (shapes in the module docstring)."""
    p = validate_predictions(clip_ids, joints, pose6d, wrist, name=Path(path).name)
    arrays = {"clip_ids": p.clip_ids, "joints": p.joints}
    for k in ("pose6d", "wrist"):
        if getattr(p, k) is not None:
            arrays[k] = getattr(p, k)
    save_npz(path, **arrays)


def write_ground_truth(path: str | os.PathLike, clip_ids: Any, joints: Any, valid: Any, pose6d: Any = None,
                       wrist: Any = None, group_ids: Any = None) -> None:
    """Validate and write a ground-truth file atomically (shapes in the module docstring)."""
    g = validate_ground_truth(clip_ids, joints, valid, pose6d, wrist, group_ids, name=Path(path).name)
    arrays = {"clip_ids": g.clip_ids, "joints": g.joints, "valid": g.valid}
    for k in ("pose6d", "wrist", "group_ids"):
        if getattr(g, k) is not None:
            arrays[k] = getattr(g, k)
    save_npz(path, **arrays)


def _no_extra(name: str, data: dict[str, np.ndarray], allowed: tuple[str, ...]) -> None:
    extra = sorted(set(data) - set(allowed))
    if extra:
        raise HandcastError(f"{name}: unexpected array(s) {', '.join(extra)} (allowed: {', '.join(allowed)})")


def _wrist(path: str | os.PathLike, data: dict[str, np.ndarray]) -> np.ndarray | None:
    """The file's wrist positions: ``wrist``, or ``transl`` in a file from an older handcast (said on stderr)."""
    if OLD_WRIST_NAME not in data:
        return data.get("wrist")
    if "wrist" in data:
        raise HandcastError(f"{Path(path).name}: has both wrist and {OLD_WRIST_NAME} (its older name); keep wrist")
    print(f"handcast: warning: {path} was written by an older handcast: reading its '{OLD_WRIST_NAME}' as 'wrist' "
          "(the wrist position)", file=sys.stderr)
    return data[OLD_WRIST_NAME]


def read_predictions(path: str | os.PathLike) -> Predictions:
    """Read and validate a prediction file; HandcastError (one line) on any problem."""
    data = load_npz(path, required=("clip_ids", "joints"))
    _no_extra(Path(path).name, data, ("clip_ids", "joints", "pose6d", "wrist", OLD_WRIST_NAME))
    return validate_predictions(data["clip_ids"], data["joints"], data.get("pose6d"), _wrist(path, data),
                                name=Path(path).name)


def read_ground_truth(path: str | os.PathLike) -> GroundTruth:
    """Read and validate a ground-truth file; HandcastError (one line) on any problem."""
    data = load_npz(path, required=("clip_ids", "joints", "valid"))
    _no_extra(Path(path).name, data, ("clip_ids", "joints", "valid", "pose6d", "wrist", OLD_WRIST_NAME, "group_ids"))
    return validate_ground_truth(data["clip_ids"], data["joints"], data["valid"], data.get("pose6d"),
                                 _wrist(path, data), data.get("group_ids"), name=Path(path).name)


# -------------------------------------------------------------------------------------- matching

def _list_ids(ids: np.ndarray, k: int = 5) -> str:
    shown = ", ".join(ids[:k])
    return shown + (f", ... ({len(ids) - k} more)" if len(ids) > k else "")


def match(pred: Predictions, gt: GroundTruth) -> tuple[Predictions, GroundTruth]:
    """Reorder predictions to the ground-truth clip order and reconcile horizons (rules in the module doc)."""
    missing = np.setdiff1d(gt.clip_ids, pred.clip_ids)
    if missing.size:
        raise HandcastError(f"predictions lack {missing.size} ground-truth clip(s): {_list_ids(missing)}")
    extra = np.setdiff1d(pred.clip_ids, gt.clip_ids)
    if extra.size:
        raise HandcastError(f"predictions have {extra.size} clip(s) not in the ground truth: {_list_ids(extra)}")
    pos = {c: i for i, c in enumerate(pred.clip_ids)}
    order = np.array([pos[c] for c in gt.clip_ids], dtype=np.int64)
    tp, tg = pred.joints.shape[2], gt.joints.shape[1]
    if tp < tg:
        if gt.valid[:, tp:].any():
            raise HandcastError(
                f"predictions cover {tp} frames but the ground truth has valid frames up to "
                f"{int(np.nonzero(gt.valid.any(axis=(0, 2)))[0].max()) + 1}; predict at least that many"
            )
        gt = GroundTruth(gt.clip_ids, gt.joints[:, :tp], gt.valid[:, :tp],
                         None if gt.pose6d is None else gt.pose6d[:, :tp],
                         None if gt.wrist is None else gt.wrist[:, :tp], gt.group_ids)
    t = min(tp, tg)

    def take(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x[order][:, :, :t]

    pred = Predictions(pred.clip_ids[order], take(pred.joints), take(pred.pose6d), take(pred.wrist))  # type: ignore[arg-type]
    return pred, gt


# ------------------------------------------------------------------------------------ evaluation

def _json_num(x: Any) -> Any:
    """float/NaN -> float/None, recursively through lists / arrays."""
    if isinstance(x, np.ndarray):
        return [_json_num(v) for v in x.tolist()]
    if isinstance(x, (list, tuple)):
        return [_json_num(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return None if not math.isfinite(float(x)) else float(x)
    return x


def evaluate(pred: Predictions | str | os.PathLike, gt: GroundTruth | str | os.PathLike,
             diversity_pairs: int = 200, seed: int = 0, per_clip: bool = False) -> dict[str, Any]:
    """Score predictions against ground truth; returns a JSON-ready dict (NaN -> None).

    Keys (forecasting metrics in cm, see docs/metrics.md):
      best_of_n / mean_of_n: {"M", "M-G", "M-F", "MR", "RA"} means over clips;
      num_clips, num_samples, num_frames;
      horizon_M: (T,) per-timestep M under best-of-N; horizon_M_mean_of_n: the same under mean-of-N;
      diversity: {"pred", "gt"} (MANO parameter space, None when pose6d / wrist are absent);
      multimodality: {"pred" (S samples of each clip), "gt" (clips sharing a group id)};
      per_clip (only with ``per_clip=True``): clip_ids, best_sample, and per metric the (N,) best-of-N values.
    """
    if isinstance(pred, Predictions):  # objects built by hand get the same checks as files
        pred = validate_predictions(pred.clip_ids, pred.joints, pred.pose6d, pred.wrist)
    else:
        pred = read_predictions(pred)
    if isinstance(gt, GroundTruth):
        gt = validate_ground_truth(gt.clip_ids, gt.joints, gt.valid, gt.pose6d, gt.wrist, gt.group_ids)
    else:
        gt = read_ground_truth(gt)
    pred, gt = match(pred, gt)
    errors = M.forecast_errors(pred.joints, gt.joints, gt.valid)
    summ = M.summarize_forecast(errors)
    N, S, T = pred.joints.shape[:3]

    div: dict[str, Any] = {"pred": None, "gt": None}
    mm: dict[str, Any] = {"pred": None, "gt": None}
    if pred.pose6d is not None and pred.wrist is not None:
        # Per clip (S, T*198); invalid ground-truth (frame, hand) entries zeroed so pred and gt share
        # support. Chunked over clips to bound memory; sample 0 of every clip enters the diversity.
        first, per = [], []
        step = max(1, 20_000_000 // max(1, S * T * 198))
        for a in range(0, N, step):
            pp = M.motion_params(pred.pose6d[a:a + step], pred.wrist[a:a + step], gt.valid[a:a + step, None])
            first.append(pp[:, 0].astype(np.float32))
            per.append(M.multimodality_per_input(pp))
        div["pred"] = M.diversity(np.concatenate(first), diversity_pairs, seed)
        mm["pred"] = float(np.mean(np.concatenate(per))) if S > 1 else None
    if gt.pose6d is not None and gt.wrist is not None:
        gp = M.motion_params(gt.pose6d, gt.wrist, gt.valid)
        div["gt"] = M.diversity(gp, diversity_pairs, seed)
        if gt.group_ids is not None:
            mm["gt"] = M.grouped_multimodality(gp, gt.group_ids)

    result: dict[str, Any] = {
        "best_of_n": summ["best_of_n"],
        "mean_of_n": summ["mean_of_n"],
        "num_clips": int(N),
        "num_samples": int(S),
        "num_frames": int(T),
        "units": "cm",
        "horizon_M": summ["horizon_best_of_n"],
        "horizon_M_mean_of_n": summ["horizon_mean_of_n"],
        "diversity": div,
        "multimodality": mm,
    }
    if per_clip:
        best = summ["best_index"]
        n = np.arange(N)
        result["per_clip"] = {"clip_ids": gt.clip_ids.tolist(), "best_sample": best.tolist(),
                              **{k: errors[k][n, best] for k in M.FORECAST_METRICS}}
    return _jsonify(result)


def _jsonify(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _jsonify(v) for k, v in d.items()}
    return _json_num(d)


def _cell(x: Any, width: int) -> str:
    return f"{'-':>{width}}" if x is None else f"{x:>{width}.2f}"


def format_table(result: dict[str, Any]) -> str:
    """Readable text table of an :func:`evaluate` result: rows = protocols, columns = metrics (cm)."""
    S = result.get("num_samples", 1)
    names = list(M.FORECAST_METRICS)
    w0, w = 14, 9
    lines = [f"{'protocol':<{w0}}" + "".join(f"{n:>{w}}" for n in names)]
    lines.append("-" * len(lines[0]))
    for key, label in (("best_of_n", f"best-of-{S}"), ("mean_of_n", f"mean-of-{S}")):
        row = result.get(key, {})
        lines.append(f"{label:<{w0}}" + "".join(_cell(row.get(n), w) for n in names))
    lines.append(f"errors in cm; {result.get('num_clips', '?')} clips, {S} sample(s), "
                 f"{result.get('num_frames', '?')} frames")
    extras = []
    for key in ("diversity", "multimodality"):
        d = result.get(key) or {}
        if d.get("pred") is not None or d.get("gt") is not None:
            extras.append(f"{key}: pred {_cell(d.get('pred'), 0).strip()}, gt {_cell(d.get('gt'), 0).strip()}")
    lines.extend(extras)
    return "\n".join(lines)


def evaluate_files(pred_path: str | os.PathLike, gt_path: str | os.PathLike,
                   json_out: str | os.PathLike | None = None, **kwargs: Any) -> tuple[dict[str, Any], str]:
    """Read both files, :func:`evaluate`, optionally write the JSON atomically; return (result, table text)."""
    result = evaluate(read_predictions(pred_path), read_ground_truth(gt_path), **kwargs)
    table = format_table(result)
    if json_out is not None:
        text = json.dumps(result, indent=2, allow_nan=False)
        with atomic_path(json_out) as tmp:
            tmp.write_text(text + "\n")
    return result, table


__all__ = [
    "Predictions", "GroundTruth", "validate_predictions", "validate_ground_truth", "read_predictions",
    "read_ground_truth", "write_predictions", "write_ground_truth", "match", "evaluate", "format_table",
    "evaluate_files",
]
