"""Evaluation metrics (numpy float64, vectorised; torch tensors are accepted and converted).

Inputs are in metres. Forecasting / lifting metrics are returned in CENTIMETRES, single-hand pose
estimation metrics in MILLIMETRES (as the papers report). docs/metrics.md is the precise spec;
this docstring is the short version.

Forecasting / lifting (bimanual, 21 keypoints in the common order, hands (right, left), keypoint
0 = wrist = root). Every function takes

    pred  (..., T, 2, 21, 3)  joints in the frame-0 camera [m]
    gt    (..., T, 2, 21, 3)  same frame [m]; leading dims broadcast with pred
    valid (..., T, 2) bool    ground-truth validity of each (frame, hand)

and returns one value per clip, shape (...) [cm]: the mean error over every valid (frame, hand)
and all 21 keypoints of the clip (NaN when the clip has nothing valid). With pred (N, S, ...) and
gt (N, 1, ...) this gives an (N, S) table of per-clip, per-sample errors.

  M    no alignment.
  RA   root-aligned: each frame's root (wrist) subtracted from pred and gt, per hand.
  M-G  per hand, ONE similarity (s, R, t) fitted over all valid frames x 21 keypoints of the clip,
       pred -> gt, then the error over those frames. (Subtracting the first-frame root first, as the
       reference code does, changes nothing because the fit has a translation.)
  M-F  per hand, the similarity fitted on the hand's FIRST VALID frame (21 keypoints) only, then
       applied to every frame of that hand and the error taken over its valid frames.
  MR   MRRPE: || (root_R - root_L)_pred - (root_R - root_L)_gt || averaged over the frames where
       BOTH hands are valid (NaN for a clip with no such frame).

Protocols over S samples (:func:`summarize_forecast`): best-of-N picks, per clip, the sample with
the lowest sum M + M-G + M-F + MR (NaN terms count as 0); mean-of-N averages each metric over the
samples. Both then average over clips, skipping clips where the metric is NaN.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
import torch

from handcast.conventions import LEFT, NUM_KEYPOINTS, RIGHT
from handcast.errors import HandcastError
from handcast.geometry.procrustes import apply_similarity, procrustes_align, similarity_procrustes

CM = 100.0  # metres -> centimetres
MM = 1000.0  # metres -> millimetres
#: degrees by which a finger joint may leave the hand model's joint limits and still count as within them
LIMIT_TOL_DEG = 5.0


def limit_violation_deg(pose_aa: np.ndarray, hand: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Flat axis-angle poses (..., 16, 3) of hand (...,) -> (...,) degrees: the largest amount by which a finger
    component leaves ``limits`` (2, 15, 3, 2) rad (0 when all are within)."""
    lim = np.asarray(limits, np.float64)[np.asarray(hand, int)]  # (..., 15, 3, 2)
    f = np.asarray(pose_aa, np.float64)[..., 1:, :]
    return np.degrees(np.maximum(lim[..., 0] - f, f - lim[..., 1]).clip(0.0).max((-1, -2)))


def limits_ok(pose_aa: np.ndarray, hand: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Flat axis-angle poses (..., 16, 3) of hand (...,) -> bool (...,): every finger component within
    ``limits`` (2, 15, 3, 2) rad (``HandModel.joint_limits``) + :data:`LIMIT_TOL_DEG`."""
    return limit_violation_deg(pose_aa, hand, limits) <= LIMIT_TOL_DEG

#: Forecasting metric names, in table order.
FORECAST_METRICS: tuple[str, ...] = ("M", "M-G", "M-F", "MR", "RA")
#: Metrics whose sum selects the best sample in the best-of-N protocol.
BEST_OF_N_KEYS: tuple[str, ...] = ("M", "M-G", "M-F", "MR")


# ----------------------------------------------------------------------------------------- helpers

def _f64(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _bool(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(bool)


def _masked_mean(x: np.ndarray, mask: np.ndarray, axis: tuple[int, ...] | int) -> np.ndarray:
    """Mean of x over ``axis`` where mask is True (x may be NaN where mask is False); NaN if empty."""
    x, mask = np.broadcast_arrays(x, mask)
    total = np.where(mask, x, 0.0).sum(axis=axis)
    count = mask.sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def nanmean(x: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """np.nanmean without the 'mean of empty slice' warning (all-NaN -> NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(x, axis=axis)


def _check_forecast_shapes(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> None:
    if pred.shape[-3:] != (2, NUM_KEYPOINTS, 3):
        raise HandcastError(f"pred has shape {pred.shape} but expected (..., T, 2, 21, 3)")
    if gt.shape[-3:] != (2, NUM_KEYPOINTS, 3):
        raise HandcastError(f"gt has shape {gt.shape} but expected (..., T, 2, 21, 3)")
    if valid.shape[-1:] != (2,) or valid.ndim < 2:
        raise HandcastError(f"valid has shape {valid.shape} but expected (..., T, 2)")
    try:
        np.broadcast_shapes(pred.shape[:-3], gt.shape[:-3], valid.shape[:-1])
    except ValueError:
        raise HandcastError(
            f"pred {pred.shape}, gt {gt.shape} and valid {valid.shape} have incompatible leading dims"
        ) from None


def _prep(pred: Any, gt: Any, valid: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred, gt, valid = _f64(pred), _f64(gt), _bool(valid)
    _check_forecast_shapes(pred, gt, valid)
    return pred, gt, valid


def _kp_mask(valid: np.ndarray) -> np.ndarray:
    """(..., T, 2) -> (..., T, 2, 1) for broadcasting against per-keypoint errors (..., T, 2, 21)."""
    return valid[..., None]


def _dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance over the last axis (broadcasting)."""
    d = a - b
    return np.sqrt(np.einsum("...i,...i->...", d, d))


# ------------------------------------------------------------------------- forecasting / lifting

def mpjpe_cm(pred: Any, gt: Any, valid: Any) -> np.ndarray:
    """M: mean per-joint position error, no alignment. Returns (...) per clip [cm]."""
    pred, gt, valid = _prep(pred, gt, valid)
    return CM * _masked_mean(_dist(pred, gt), _kp_mask(valid), axis=(-3, -2, -1))


def mpjpe_per_timestep_cm(pred: Any, gt: Any, valid: Any) -> np.ndarray:
    """M at each timestep: (..., T) [cm], mean over valid hands and 21 keypoints; NaN where no hand is valid."""
    pred, gt, valid = _prep(pred, gt, valid)
    return CM * _masked_mean(_dist(pred, gt), _kp_mask(valid), axis=(-2, -1))


def root_aligned_mpjpe_cm(pred: Any, gt: Any, valid: Any) -> np.ndarray:
    """RA: each frame's root (keypoint 0) subtracted from pred and gt per hand. (...) per clip [cm].

    The root itself (error 0) is included in the mean over 21 keypoints.
    """
    pred, gt, valid = _prep(pred, gt, valid)
    err = _dist(pred - pred[..., :1, :], gt - gt[..., :1, :])
    return CM * _masked_mean(err, _kp_mask(valid), axis=(-3, -2, -1))


def _hand_major(x: np.ndarray) -> np.ndarray:
    """(..., T, 2, 21, 3) -> (..., 2, T, 21, 3)."""
    return np.moveaxis(x, -4, -3)


def global_aligned_mpjpe_cm(pred: Any, gt: Any, valid: Any) -> np.ndarray:
    """M-G: per hand, one similarity over all valid frames x 21 keypoints of the clip. (...) [cm]."""
    pred, gt, valid = _prep(pred, gt, valid)
    p, g = _hand_major(pred), _hand_major(gt)  # (..., 2, T, 21, 3)
    T = p.shape[-3]
    v = np.moveaxis(valid, -1, -2)  # (..., 2, T)
    w = np.broadcast_to(v[..., None], v.shape + (NUM_KEYPOINTS,)).astype(np.float64)
    batch = np.broadcast_shapes(p.shape[:-3], g.shape[:-3], w.shape[:-2])
    p = np.broadcast_to(p, batch + p.shape[-3:]).reshape(batch + (T * NUM_KEYPOINTS, 3))
    g = np.broadcast_to(g, batch + g.shape[-3:]).reshape(batch + (T * NUM_KEYPOINTS, 3))
    w = np.broadcast_to(w, batch + w.shape[-2:]).reshape(batch + (T * NUM_KEYPOINTS,))
    aligned = procrustes_align(p, g, w)
    err = _dist(aligned, g).reshape(batch + (T, NUM_KEYPOINTS))  # (..., 2, T, 21)
    mask = np.broadcast_to(v[..., None], batch + (T, 1))
    return CM * _masked_mean(err, mask, axis=(-3, -2, -1))


def first_frame_aligned_mpjpe_cm(pred: Any, gt: Any, valid: Any) -> np.ndarray:
    """M-F: per hand, similarity fitted on the hand's first valid frame, applied to all frames. (...) [cm]."""
    pred, gt, valid = _prep(pred, gt, valid)
    p, g = _hand_major(pred), _hand_major(gt)  # (..., 2, T, 21, 3)
    v = np.moveaxis(valid, -1, -2)  # (..., 2, T)
    batch = np.broadcast_shapes(p.shape[:-3], g.shape[:-3], v.shape[:-1])
    p = np.broadcast_to(p, batch + p.shape[-3:])
    g = np.broadcast_to(g, batch + g.shape[-3:])
    v = np.broadcast_to(v, batch + v.shape[-1:])
    first = np.argmax(v, axis=-1)  # (..., 2); 0 when the hand is never valid (masked out below)
    idx = first[..., None, None, None]
    p0 = np.take_along_axis(p, idx, axis=-3)[..., 0, :, :]  # (..., 2, 21, 3)
    g0 = np.take_along_axis(g, idx, axis=-3)[..., 0, :, :]
    # A hand that is never valid gets zero weights (-> identity fit; its NaN entries are ignored).
    w0 = np.broadcast_to(v.any(axis=-1)[..., None], batch + (NUM_KEYPOINTS,)).astype(np.float64)
    scale, R, t = similarity_procrustes(p0, g0, w0)  # (..., 2), (..., 2, 3, 3), (..., 2, 3)
    T = p.shape[-3]
    aligned = apply_similarity(scale, R, t, p.reshape(batch + (T * NUM_KEYPOINTS, 3)))
    err = _dist(aligned.reshape(p.shape), g)  # (..., 2, T, 21)
    return CM * _masked_mean(err, v[..., None], axis=(-3, -2, -1))


def mrrpe_cm(pred: Any, gt: Any, valid: Any) -> np.ndarray:
    """MR: error of the right-minus-left root vector over frames where both hands are valid. (...) [cm]."""
    pred, gt, valid = _prep(pred, gt, valid)
    rel_p = pred[..., RIGHT, 0, :] - pred[..., LEFT, 0, :]  # (..., T, 3)
    rel_g = gt[..., RIGHT, 0, :] - gt[..., LEFT, 0, :]
    both = valid[..., RIGHT] & valid[..., LEFT]  # (..., T)
    return CM * _masked_mean(_dist(rel_p, rel_g), both, axis=-1)


METRIC_FUNCTIONS: dict[str, Callable[[Any, Any, Any], np.ndarray]] = {
    "M": mpjpe_cm,
    "M-G": global_aligned_mpjpe_cm,
    "M-F": first_frame_aligned_mpjpe_cm,
    "MR": mrrpe_cm,
    "RA": root_aligned_mpjpe_cm,
}


def forecast_errors(pred: Any, gt: Any, valid: Any, chunk_elems: int = 500_000) -> dict[str, np.ndarray]:
    """All forecasting metrics per clip and sample.

    Args:
        pred: (N, S, T, 2, 21, 3) S samples per clip [m], frame-0 camera, hands (right, left).
        gt: (N, T, 2, 21, 3) [m]; valid: (N, T, 2) bool.
        chunk_elems: clips are processed in chunks of about this many pred coordinates (memory bound).

    Returns:
        {"M", "M-G", "M-F", "MR", "RA": (N, S) [cm], "M_t": (N, S, T) per-timestep M [cm]}; NaN marks
        a clip (or timestep) with nothing valid for that metric.
    """
    pred, gt, valid = _f64(pred), _f64(gt), _bool(valid)
    if pred.ndim != 6:
        raise HandcastError(f"pred has shape {pred.shape} but expected (N, S, T, 2, 21, 3)")
    if gt.ndim != 5 or valid.ndim != 3:
        raise HandcastError(f"gt {gt.shape} / valid {valid.shape}: expected (N, T, 2, 21, 3) / (N, T, 2)")
    N, S, T = pred.shape[:3]
    if gt.shape[:2] != (N, T) or valid.shape[:2] != (N, T):
        raise HandcastError(f"pred {pred.shape}, gt {gt.shape} and valid {valid.shape} disagree on (N, T)")
    per_clip = max(1, pred[0].size if N else 1)
    step = max(1, chunk_elems // per_clip)
    out: dict[str, list[np.ndarray]] = {k: [] for k in (*FORECAST_METRICS, "M_t")}
    for a in range(0, N, step):
        p, g, v = pred[a:a + step], gt[a:a + step, None], valid[a:a + step, None]
        for name, fn in METRIC_FUNCTIONS.items():
            out[name].append(fn(p, g, v))
        out["M_t"].append(mpjpe_per_timestep_cm(p, g, v))
    if N == 0:
        return {k: np.zeros((0, S) if k != "M_t" else (0, S, T)) for k in out}
    return {k: np.concatenate(v, axis=0) for k, v in out.items()}


def best_of_n_index(errors: dict[str, np.ndarray], keys: tuple[str, ...] = BEST_OF_N_KEYS) -> np.ndarray:
    """Per clip, the sample index (N,) with the lowest sum of the (N, S) errors in ``keys`` (NaN counts 0).

    Ties go to the lowest index.
    """
    score = np.sum([np.nan_to_num(errors[k], nan=0.0) for k in keys], axis=0)  # (N, S)
    return np.argmin(score, axis=-1)


def summarize_forecast(errors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Best-of-N and mean-of-N summaries of :func:`forecast_errors` output.

    Returns {"best_of_n": {metric: float}, "mean_of_n": {metric: float}, "best_index": (N,) int,
    "horizon_best_of_n": (T,), "horizon_mean_of_n": (T,)} (cm; NaN where nothing was valid).
    Per clip: best-of-N takes the chosen sample's values, mean-of-N the mean over samples; then the
    mean over clips skips NaN (clips with nothing valid for that metric).
    """
    best = best_of_n_index(errors)
    n = np.arange(best.shape[0])
    res: dict[str, Any] = {"best_of_n": {}, "mean_of_n": {}, "best_index": best}
    for k in FORECAST_METRICS:
        res["best_of_n"][k] = float(nanmean(errors[k][n, best]))
        res["mean_of_n"][k] = float(nanmean(nanmean(errors[k], axis=1)))
    m_t = errors["M_t"]  # (N, S, T)
    res["horizon_best_of_n"] = nanmean(m_t[n, best], axis=0) if m_t.shape[0] else np.full(m_t.shape[2], np.nan)
    res["horizon_mean_of_n"] = nanmean(nanmean(m_t, axis=1), axis=0) if m_t.shape[0] else np.full(m_t.shape[2], np.nan)
    return res


# --------------------------------------------------------------------- diversity / multimodality

def diversity(params: Any, num_pairs: int = 200, seed: int = 0) -> float:
    """Mean L2 distance between ``num_pairs`` random pairs of distinct items of ``params`` (K, D).

    Pairs (i, j), i != j, are drawn uniformly with ``numpy.random.default_rng(seed)`` (with
    replacement across pairs). Units are those of ``params``. NaN when K < 2.
    """
    x = _f64(params)
    if x.ndim != 2:
        raise HandcastError(f"diversity: params has shape {x.shape} but expected (K, D)")
    K = x.shape[0]
    if K < 2 or num_pairs < 1:
        return float("nan")
    rng = np.random.default_rng(seed)
    i = rng.integers(0, K, size=num_pairs)
    j = (i + rng.integers(1, K, size=num_pairs)) % K
    return float(np.linalg.norm(x[i] - x[j], axis=-1).mean())


def multimodality_per_input(params: Any) -> np.ndarray:
    """Mean L2 distance over all unordered pairs of the S samples of each input: (N, S, D) -> (N,).

    NaN for every input when S < 2.
    """
    x = _f64(params)
    if x.ndim != 3:
        raise HandcastError(f"multimodality: params has shape {x.shape} but expected (N, S, D)")
    N, S = x.shape[:2]
    if S < 2:
        return np.full(N, np.nan)
    a, b = np.triu_indices(S, k=1)
    d = torch.cdist(torch.from_numpy(x), torch.from_numpy(x)).numpy()  # (N, S, S), exact for small S
    return d[:, a, b].mean(axis=-1)


def multimodality(params: Any) -> float:
    """Mean L2 distance over all unordered pairs of the S samples of each input, then over inputs.

    params: (N, S, D). NaN when S < 2 or N == 0.
    """
    per = multimodality_per_input(params)
    return float(per.mean()) if per.size else float("nan")


def grouped_multimodality(params: Any, group_ids: Any) -> float:
    """Multimodality of several items sharing a group (e.g. the ground-truth futures of one image).

    params: (K, D); group_ids: (K,). Within each group of >= 2 items, the mean L2 distance over all
    unordered pairs; then the mean over such groups. NaN when no group has two items.
    """
    x = _f64(params)
    g = np.asarray(group_ids)
    if x.ndim != 2 or g.shape != (x.shape[0],):
        raise HandcastError(f"grouped_multimodality: params {x.shape} / group_ids {g.shape}: expected (K, D) / (K,)")
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    i, j = np.triu_indices(x.shape[0], k=1)
    same = inv[i] == inv[j]
    if not same.any():
        return float("nan")
    i, j = i[same], j[same]
    d = np.linalg.norm(x[i] - x[j], axis=-1)
    grp = inv[i]
    per_group = np.bincount(grp, weights=d, minlength=counts.size) / np.maximum(np.bincount(grp, minlength=counts.size), 1)
    return float(per_group[counts >= 2].mean())


def motion_params(pose6d: Any, wrist: Any, valid: Any | None = None) -> np.ndarray:
    """Flatten MANO motion to one vector per clip for diversity / multimodality.

    pose6d (..., T, 2, 16, 6) (flat-hand-relative 6D rotations) and wrist (..., T, 2, 3) (wrist positions [m],
    frame-0 camera), hands (right, left), become (..., T * 198): per frame the motion-token layout
    [right 16x6D, left 16x6D, right wrist, left wrist].
    With ``valid`` (..., T, 2) (broadcasting), the 99 numbers of an invalid (frame, hand) are zeroed.
    """
    r6, tr = _f64(pose6d), _f64(wrist)
    if r6.shape[-3:] != (2, 16, 6) or tr.shape[-2:] != (2, 3):
        raise HandcastError(f"motion_params: pose6d {r6.shape} / wrist {tr.shape}: expected (..., T, 2, 16, 6) / (..., T, 2, 3)")
    batch = np.broadcast_shapes(r6.shape[:-3], tr.shape[:-2])
    r6 = np.broadcast_to(r6, batch + r6.shape[-3:]).reshape(batch + (2, 96))
    tr = np.broadcast_to(tr, batch + tr.shape[-2:])
    if valid is not None:
        v = _bool(valid)[..., None]
        r6 = np.where(v, r6, 0.0)
        tr = np.where(v, tr, 0.0)
        batch = r6.shape[:-2]
        tr = np.broadcast_to(tr, batch + (2, 3))
    frame = np.concatenate([r6[..., 0, :], r6[..., 1, :], tr[..., 0, :], tr[..., 1, :]], axis=-1)  # (..., T, 198)
    return frame.reshape(frame.shape[:-2] + (-1,))


# ------------------------------------------------------------- single-hand pose estimation (mm)

def _check_points(a: np.ndarray, b: np.ndarray, what: str) -> None:
    if a.ndim < 2 or a.shape[-1] != 3 or b.ndim < 2 or b.shape[-1] != 3:
        raise HandcastError(f"{what}: expected (..., P, 3) arrays, got {a.shape} and {b.shape}")


def mpjpe(pred: Any, gt: Any) -> np.ndarray:
    """Mean per-joint position error, no alignment: pred, gt (..., J, 3) [m] -> (...) [mm]."""
    p, g = _f64(pred), _f64(gt)
    _check_points(p, g, "mpjpe")
    return MM * _dist(p, g).mean(-1)


def pa_mpjpe(pred: Any, gt: Any) -> np.ndarray:
    """MPJPE after a similarity Procrustes (scale, rotation, translation) of pred onto gt, per hand.

    pred, gt (..., J, 3) [m] -> (...) [mm].
    """
    p, g = _f64(pred), _f64(gt)
    _check_points(p, g, "pa_mpjpe")
    return MM * _dist(procrustes_align(p, g), g).mean(-1)


def pa_mpvpe(pred_verts: Any, gt_verts: Any) -> np.ndarray:
    """Mean per-vertex error after similarity Procrustes on the vertices: (..., V, 3) [m] -> (...) [mm]."""
    p, g = _f64(pred_verts), _f64(gt_verts)
    _check_points(p, g, "pa_mpvpe")
    return MM * _dist(procrustes_align(p, g), g).mean(-1)


def _nn_both(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distances both ways for a (B, P, 3) and b (B, Q, 3): ((B, P) a->b, (B, Q) b->a)."""
    centre = b.mean(axis=-2, keepdims=True)  # centring keeps the |x|^2 + |y|^2 - 2xy form accurate
    d = torch.cdist(torch.from_numpy(a - centre), torch.from_numpy(b - centre))  # (B, P, Q)
    return d.min(dim=-1).values.numpy(), d.min(dim=-2).values.numpy()


def f_score(pred_verts: Any, gt_verts: Any, threshold_m: float | Sequence[float], align: bool = True,
            chunk: int = 64) -> np.ndarray:
    """F-score at a distance threshold, as in FreiHAND. Returns (...) in [0, 1] ((..., K) for K thresholds).

    pred_verts (..., P, 3), gt_verts (..., Q, 3) [m]. If ``align``, pred is first moved onto gt by a
    similarity Procrustes (requires P == Q, corresponding points). Precision = fraction of pred points
    whose nearest gt point is closer than the threshold; recall = fraction of gt points whose nearest
    pred point is closer than it (strict <). F = 2PR / (P + R), and 0 when P + R = 0.
    Typical thresholds: 0.005 (F@5mm) and 0.015 (F@15mm); pass both as a sequence to share the
    distance computation.
    """
    p, g = _f64(pred_verts), _f64(gt_verts)
    _check_points(p, g, "f_score")
    ths = np.atleast_1d(np.asarray(threshold_m, dtype=np.float64))
    if ths.ndim != 1:
        raise HandcastError(f"f_score: threshold_m must be a number or a 1-D sequence, got shape {ths.shape}")
    if align:
        if p.shape[-2] != g.shape[-2]:
            raise HandcastError(f"f_score: align=True needs corresponding points, got {p.shape} and {g.shape}")
        p = procrustes_align(p, g)
    batch = np.broadcast_shapes(p.shape[:-2], g.shape[:-2])
    p = np.broadcast_to(p, batch + p.shape[-2:]).reshape((-1,) + p.shape[-2:])
    g = np.broadcast_to(g, batch + g.shape[-2:]).reshape((-1,) + g.shape[-2:])
    prec = np.empty((p.shape[0], ths.size))
    rec = np.empty((p.shape[0], ths.size))
    for a in range(0, p.shape[0], chunk):  # chunks of items bound the (chunk, P, Q) distance matrix
        d_pg, d_gp = _nn_both(p[a:a + chunk], g[a:a + chunk])
        prec[a:a + chunk] = (d_pg[..., None] < ths).mean(-2)
        rec[a:a + chunk] = (d_gp[..., None] < ths).mean(-2)
    denom = prec + rec
    f = np.where(denom > 0, 2 * prec * rec / np.where(denom > 0, denom, 1.0), 0.0)
    if np.ndim(threshold_m) == 0:
        return f[:, 0].reshape(batch)
    return f.reshape(batch + (ths.size,))


__all__ = [
    "CM", "MM", "FORECAST_METRICS", "BEST_OF_N_KEYS", "METRIC_FUNCTIONS", "nanmean",
    "mpjpe_cm", "mpjpe_per_timestep_cm", "root_aligned_mpjpe_cm", "global_aligned_mpjpe_cm",
    "first_frame_aligned_mpjpe_cm", "mrrpe_cm", "forecast_errors", "best_of_n_index", "summarize_forecast",
    "diversity", "multimodality", "multimodality_per_input", "grouped_multimodality", "motion_params",
    "mpjpe", "pa_mpjpe", "pa_mpvpe", "f_score",
]
