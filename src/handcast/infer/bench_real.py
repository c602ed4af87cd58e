"""The real-input benchmark (``handcast bench real``): how well every real-input path lands on real hands.

Data (``../shared/data/real/`` by default; third-party, read-only):

* the mmpose sample photos ``mmpose/<set>/*.jpg`` with COCO-style 2D keypoints (FreiHAND, OneHand10K, CMU
  Panoptic; :func:`handcast.data.coco_keypoints.read_coco_hand_keypoints`). Handedness: FreiHAND hands are all
  right hands; Panoptic file names end in ``_l`` / ``_r``; for the others (OneHand10K) it is unknown: the
  mediapipe detector's handedness when it finds that hand, else right.
* the real hand video ``dex_retargeting/human_hand_video.mp4`` (a right hand, no ground truth).

The photos have no intrinsics: every path uses the default camera (field of view
:data:`~handcast.conventions.DEFAULT_FOV_DEG` across the longer side, :func:`handcast.geometry.resolve_intrinsics`).

Paths, each with two keypoint sources: ``gt`` (the annotated keypoints, handed over as a keypoints file, the
``--keypoints`` route a user has) and ``mediapipe`` (the detector, as the commands run it without
``--keypoints``):

* ``detect``: :func:`handcast.detect.detect_image`. A ground-truth hand is *found* when a detected hand's mean
  keypoint distance to it is below :data:`MATCH_FRACTION` hand sizes. Rate of found hands; over found
  hands, the per-hand mean keypoint distance and PCK.
* ``pose``: :func:`handcast.infer.pose.run_pose` (``handcast pose``): root + joints reprojected with its K.
* ``forecast``: :func:`handcast.infer.forecast.run_forecast` (``handcast forecast``, shipped keypoint model):
  frame 0 reprojected; best of the samples and mean over samples.
* ``lift``: :func:`handcast.infer.lift.run_lift` (``handcast lift``) on the video; no ground truth, so the
  reference is mediapipe's own tracks: L alone (``--refine-iterations 0`` on the tracks) and the refined
  result.

2D metrics (per hand: the mean pixel distance over the annotated keypoints; the table gives the median and
mean over hands, in pixels and in hand sizes, and PCK@0.1 / 0.2 pooled over keypoints). The hand size is the
diagonal of the box of the annotated keypoints (of mediapipe's keypoints for the video).

3D sanity (fractions of estimated hands, or hand-frames):

* wrist depth within [:data:`DEPTH_RANGE_M`] m;
* bones: all 20 bone lengths of the 21-keypoint skeleton within the range the hand model spans over
  shapes ``betas`` in [-3, 3] and poses within its joint limits (:func:`skeleton_ranges`), widened by
  :data:`BONE_TOL` (relative);
* bends: the 15 finger joints' bend angles (between a bone and the next) at most the largest the hand model
  makes within its joint limits (:func:`skeleton_ranges`) plus :data:`BEND_TOL_DEG`;
* joint limits (forecast and lift, which output MANO axis-angle poses): every finger component within
  ``HandModel.joint_limits`` (+ :data:`LIMIT_TOL_DEG`; the JSON also gives the median over hand-frames of
  the largest violation, degrees).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from handcast.conventions import DEFAULT_FOV_DEG, HANDS, KEYPOINT_BONES, NUM_KEYPOINTS
from handcast.data.coco_keypoints import CocoHand, read_coco_hand_keypoints
from handcast.data.images import load_image
from handcast.data.keypoints import keypoints_json
from handcast.errors import HandcastError
from handcast.geometry import (
    project as project_np,  # numpy in, numpy out; NaN behind the camera
)
from handcast.hand import HandModel
from handcast.infer.forecast import run_forecast
from handcast.infer.lift import run_lift
from handcast.infer.pose import run_pose
from handcast.eval.metrics import LIMIT_TOL_DEG, limit_violation_deg, limits_ok
from handcast.io import atomic_path, write_report_text

DEPTH_RANGE_M = (0.15, 3.0)
MATCH_FRACTION = 0.5
BETAS_RANGE = 3.0
BONE_TOL = 0.05
BEND_TOL_DEG = 5.0
SOURCES = ("gt", "mediapipe")
PATHS = ("detect", "pose", "forecast", "lift")
VIDEO = Path("dex_retargeting") / "human_hand_video.mp4"
SMALL = {"photos_per_set": 2, "max_frames": 60}

# The 15 finger joints with a bone in and a bone out: (parent, joint, child) in the common order.
BEND_TRIPLES: tuple[tuple[int, int, int], ...] = tuple(
    (0 if j % 4 == 1 else j - 1, j, j + 1) for j in range(1, NUM_KEYPOINTS) if j % 4 != 0)


# ----------------------------------------------------------------------------------------------
# 3D sanity


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """(..., 21, 3) m -> (..., 20) m, the bones of :data:`KEYPOINT_BONES`."""
    j = np.asarray(joints, np.float64)
    a, b = np.array(KEYPOINT_BONES).T
    return np.linalg.norm(j[..., b, :] - j[..., a, :], axis=-1)


def bend_angles(joints: np.ndarray) -> np.ndarray:
    """(..., 21, 3) m -> (..., 15) degrees: at each finger joint the angle between the bone into it and the
    bone out of it (0 = straight), joints of :data:`BEND_TRIPLES`."""
    j = np.asarray(joints, np.float64)
    p, m, c = np.array(BEND_TRIPLES).T
    u, v = j[..., m, :] - j[..., p, :], j[..., c, :] - j[..., m, :]
    cos = (u * v).sum(-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-12)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def skeleton_ranges(hand_model: HandModel, betas_range: float = BETAS_RANGE, n_poses: int = 4096,
                    seed: int = 0) -> dict[str, np.ndarray]:
    """What the hand model can make, per hand (right, left): ``bone_min`` / ``bone_max`` (2, 20) m over shapes
    at the 1024 corners of the box ``betas`` in [-betas_range, betas_range]^10 (rest pose) and ``n_poses``
    random poses (every finger component uniform within ``hand_model.joint_limits``, flat convention) each
    with a random corner shape; ``bend_max`` (2, 15) degrees over those poses (:func:`bend_angles`)."""
    g = np.random.default_rng(seed)
    corners = np.array(np.meshgrid(*[[-1.0, 1.0]] * 10, indexing="ij")).reshape(10, -1).T * betas_range
    lim = hand_model.joint_limits.detach().cpu().double().numpy()  # (2, 15, 3, 2)
    fingers = lim[None, ..., 0] + g.random((n_poses, 2, 15, 3)) * (lim[None, ..., 1] - lim[None, ..., 0])
    pose = np.zeros((len(corners) + n_poses, 2, 16, 3))
    pose[len(corners):, :, 1:] = fingers
    betas = np.concatenate([corners, corners[g.integers(0, len(corners), n_poses)]])
    betas = np.repeat(betas[:, None], 2, axis=1)
    dtype = hand_model.joint_limits.dtype
    with torch.no_grad():
        kp = hand_model.keypoints(torch.tensor(pose, dtype=dtype), torch.tensor(betas, dtype=dtype),
                                  rep="aa", convention="flat").double().numpy()  # (N, 2, 21, 3)
    bones = bone_lengths(kp)
    return {"bone_min": bones.min(0), "bone_max": bones.max(0),
            "bend_max": bend_angles(kp[len(corners):]).max(0)}


def skeleton_sanity(joints: np.ndarray, hand: np.ndarray, ranges: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per skeleton (..., 21, 3) m (any frame) of hand (...,) 0 right / 1 left -> bool (...,) arrays
    ``bones_ok`` (every bone within the range, :data:`BONE_TOL`) and ``bends_ok`` (every bend within the range,
    :data:`BEND_TOL_DEG`)."""
    h = np.asarray(hand, int)
    bl = bone_lengths(joints)
    bones_ok = ((bl >= ranges["bone_min"][h] * (1 - BONE_TOL)) & (bl <= ranges["bone_max"][h] * (1 + BONE_TOL))).all(-1)
    bends_ok = (bend_angles(joints) <= ranges["bend_max"][h] + BEND_TOL_DEG).all(-1)
    return {"bones_ok": bones_ok, "bends_ok": bends_ok}


def depth_ok(wrist: np.ndarray) -> np.ndarray:
    """Wrist positions (..., 3) m camera frame -> bool (...,): depth within :data:`DEPTH_RANGE_M`."""
    z = np.asarray(wrist, np.float64)[..., 2]
    return (z >= DEPTH_RANGE_M[0]) & (z <= DEPTH_RANGE_M[1])


# ----------------------------------------------------------------------------------------------
# 2D


def hand_size(uv: np.ndarray) -> float:
    """Diagonal (px) of the box of the finite keypoints (21, 2)."""
    p = uv[np.isfinite(uv).all(-1)]
    return float(np.linalg.norm(p.max(0) - p.min(0))) if len(p) else float("nan")


def kp_distances(uv: np.ndarray, gt: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Pixel distances (n_vis,) between uv (21, 2) and gt (21, 2) at the annotated keypoints vis (21,) (a point
    that did not project counts as infinitely far)."""
    d = np.linalg.norm(np.asarray(uv, np.float64) - gt, axis=-1)[vis]
    return np.where(np.isfinite(d), d, np.inf)


def match_detection(det_uv: np.ndarray, present: np.ndarray, gt: np.ndarray, vis: np.ndarray,
                    size: float) -> int | None:
    """The detected hand slot (0 right / 1 left) closest to a ground-truth hand (mean distance over its
    annotated keypoints), or None if none is within :data:`MATCH_FRACTION` hand sizes."""
    best, slot = np.inf, None
    for k in range(2):
        if present[k]:
            d = float(kp_distances(det_uv[k], gt, vis).mean())
            if d < best:
                best, slot = d, k
    return slot if best < MATCH_FRACTION * size else None


def _row(d: np.ndarray, size: float) -> dict:
    """Per-hand 2D entry from keypoint distances d (px)."""
    return {"mean_px": float(d.mean()), "median_px": float(np.median(d)), "mean_frac": float(d.mean() / size),
            "pck01": float((d < 0.1 * size).mean()), "pck02": float((d < 0.2 * size).mean()), "n_kp": int(d.size)}


# ----------------------------------------------------------------------------------------------
# The photos


def photo_sets(data_dir: Path) -> list[tuple[str, Path]]:
    """(set name, json path) of every ``mmpose/<set>/*.json`` under the data folder, sorted."""
    return [(p.parent.name, p) for p in sorted((data_dir / "mmpose").glob("*/*.json"))]


def known_handedness(set_name: str, image: Path) -> str | None:
    """'right' / 'left' where the data says it (module docstring), None where unknown."""
    if set_name == "freihand":
        return "right"
    stem = image.stem.lower()
    if set_name == "panoptic" and stem[-2:] in ("_l", "_r"):
        return "left" if stem.endswith("_l") else "right"
    return None


def _detector_settings() -> str:
    """The photo detector as the commands run it, in words (the report's "Detector")."""
    from handcast.detect.hands import MEDIAPIPE_VERSION, PHOTO_MIN_CONFIDENCE, PHOTO_RETRACK, PHOTO_VARIANTS

    return (f"mediapipe {MEDIAPIPE_VERSION} as `handcast.detect.detect_image` runs it on photos (palm threshold "
            f"{PHOTO_MIN_CONFIDENCE:g}, re-tracked {PHOTO_RETRACK} times, averaged over the variants "
            f"{', '.join(PHOTO_VARIANTS)}); the video as `detect_video` tracks it")


def _detector():
    """(detect_image, None), or (None, why) when the mediapipe detector is unavailable."""
    try:
        from handcast.detect import detect_image

        detect_image(np.zeros((8, 8, 3), np.uint8))  # imports mediapipe and builds the graph, or says why not
        return detect_image, None
    except (ImportError, HandcastError) as e:
        return None, str(e).splitlines()[0]


def _pose_row(npz: Path, slot: int, gt: np.ndarray, vis: np.ndarray, size: float, ranges) -> dict | None:
    z = np.load(npz)
    idx = [i for i, h in enumerate(z["hand"]) if int(h) == slot]
    if not idx:
        return None
    i = idx[0]
    j3 = z["joints"][i].astype(np.float64) + z["root"][i].astype(np.float64)
    r = _row(kp_distances(project_np(j3, z["K"]), gt, vis), size)
    s = skeleton_sanity(j3, np.array(slot), ranges(str(z["hand_model"])))
    r.update(depth_ok=bool(depth_ok(j3[0])), bones_ok=bool(s["bones_ok"]), bends_ok=bool(s["bends_ok"]),
             wrist_z_m=float(j3[0, 2]))
    return r


def _forecast_row(npz: Path, slot: int, gt: np.ndarray, vis: np.ndarray, size: float, ranges, limits) -> dict:
    z = np.load(npz)
    j = z["joints"][:, :, slot].astype(np.float64)  # (S, T, 21, 3)
    per_sample = np.stack([kp_distances(project_np(j[s, 0], z["K"]), gt, vis) for s in range(len(j))])
    best = int(np.argmin(per_sample.mean(-1)))
    r = {"best": _row(per_sample[best], size), "samples": _row(per_sample.reshape(-1), size)}
    s = skeleton_sanity(j, np.full(j.shape[:2], slot), ranges("auto"))
    r.update(depth_ok=float(depth_ok(j[..., 0, :]).mean()), bones_ok=float(s["bones_ok"].mean()),
             bends_ok=float(s["bends_ok"].mean()),
             limits_ok=float(limits_ok(z["pose"][:, :, slot], np.full(j.shape[:2], slot), limits).mean()),
             limit_violation_median_deg=float(np.median(limit_violation_deg(z["pose"][:, :, slot],
                                                                             np.full(j.shape[:2], slot), limits))),
             wrist_z0_m=float(np.median(j[:, 0, 0, 2])), model=str(z["model"]))
    return r


def _photo(h: CocoHand, set_name: str, detect, work: Path, ckpts: dict, ranges, limits, num: int) -> dict:
    """Every path on one annotated hand."""
    img = load_image(h.image)
    size = hand_size(h.uv)
    row = {"set": set_name, "image": h.image.name, "annotation_id": h.annotation_id, "image_size": list(img.shape[1::-1]),
           "hand_size_px": size, "n_annotated": int(h.vis.sum())}
    slot_mp, det = None, None
    if detect is not None:
        det = detect(img)
        slot_mp = match_detection(det.uv, det.present, h.uv, h.vis, size)
        row["detect"] = {"found": slot_mp is not None, "hands_detected": int(det.present.sum())}
        if slot_mp is not None:
            row["detect"].update(_row(kp_distances(det.uv[slot_mp], h.uv, h.vis), size))
            row["detect"]["handedness"] = HANDS[slot_mp]
    side = known_handedness(set_name, h.image)
    if side is not None:
        row["handedness"], row["handedness_from"] = side, "data"
    elif slot_mp is not None:
        row["handedness"], row["handedness_from"] = HANDS[slot_mp], "mediapipe"
    else:
        row["handedness"], row["handedness_from"] = "right", "default"
    slot_gt = HANDS.index(row["handedness"])
    kp_file = work / f"{num:03d}_keypoints.json"
    uv = np.full((2, NUM_KEYPOINTS, 2), np.nan)
    cf = np.zeros((2, NUM_KEYPOINTS))
    uv[slot_gt], cf[slot_gt] = h.uv, h.vis.astype(np.float64)
    kp_file.write_text(json.dumps(keypoints_json(uv, cf)))
    row["pose"], row["forecast"] = {}, {}
    for source, slot in (("gt", slot_gt), ("mediapipe", slot_mp)):
        if slot is None:
            continue
        kp = kp_file if source == "gt" else None
        out = run_pose(h.image, work / f"{num:03d}_pose_{source}", keypoints=kp, ckpt=ckpts.get("pose"),
                       overwrite=True, verbose=False)  # the camera used is the header's
        row["pose"][source] = _pose_row(out / "pose.npz", slot, h.uv, h.vis, size, ranges)
        fdir = work / f"{num:03d}_forecast_{source}"
        run_forecast(h.image, fdir, ckpt=ckpts.get("forecast"), keypoints=kp, detect=source == "mediapipe",
                     video=False)
        row["forecast"][source] = _forecast_row(fdir / "forecast.npz", slot, h.uv, h.vis, size, ranges, limits)
    return row


# ----------------------------------------------------------------------------------------------
# The video


def _lift(video: Path, work: Path, ckpt, max_frames: int | None, ranges, limits) -> dict:
    """run_lift on the video (mediapipe tracks), then L alone (no refinement) on the same tracks."""
    t0 = time.perf_counter()
    res = run_lift(video, work / "lift", ckpt=ckpt, video=False, max_frames=max_frames, progress=False)
    seconds = time.perf_counter() - t0
    res0 = run_lift(work / "lift" / "tracks.npz", work / "lift_only", ckpt=ckpt, video=False, refine_iterations=0,
                    progress=False)
    out = {"frames": res["frames"], "windows": res["windows"], "hands_observed": res["hands_observed"],
           "intrinsics": res["intrinsics"], "seconds": seconds, "seconds_detect": res["seconds"].get("detect")}
    for name, r, d in (("lift_only", res0, work / "lift_only"), ("refined", res, work / "lift")):
        z = np.load(d / "lift.npz")
        ok = z["hand_valid"][..., None] & (z["confidence"] > 0) & np.isfinite(z["uv"]).all(-1)
        dist = np.linalg.norm(z["reproj_uv"].astype(np.float64) - z["uv"], axis=-1)
        dist = np.where(np.isfinite(dist), dist, np.inf)
        sizes = np.array([[hand_size(np.where(ok[t, k, :, None], z["uv"][t, k], np.nan)) for k in range(2)]
                          for t in range(len(ok))])
        per_hand = np.array([dist[t, k][ok[t, k]].mean() for t, k in zip(*np.nonzero(ok.any(-1)))])
        frac = per_hand / sizes[ok.any(-1)]
        valid = z["hand_valid"]
        hand = np.broadcast_to(np.arange(2), valid.shape)
        j = z["joints"].astype(np.float64)
        s = skeleton_sanity(j[valid], hand[valid], ranges(str(z["hand_model"])))
        kp_sizes = np.broadcast_to(sizes[..., None], ok.shape)[ok]
        out[name] = {
            "mean_px": float(dist[ok].mean()), "median_px": float(np.median(dist[ok])),
            "hand_median_px": float(np.median(per_hand)), "hand_mean_px": float(per_hand.mean()),
            "mean_frac": float(frac.mean()), "median_frac": float(np.median(frac)),
            "pck01": float((dist[ok] < 0.1 * kp_sizes).mean()), "pck02": float((dist[ok] < 0.2 * kp_sizes).mean()),
            "reported_reproj_error_px": float(r["metrics"]["reproj_error_px"]),
            "depth_ok": float(depth_ok(j[valid][:, 0]).mean()), "bones_ok": float(s["bones_ok"].mean()),
            "bends_ok": float(s["bends_ok"].mean()), "limits_ok": float(limits_ok(z["pose"][valid], hand[valid], limits).mean()),
            "limit_violation_median_deg": float(np.median(limit_violation_deg(z["pose"][valid], hand[valid], limits))),
            "hand_frames": int(valid.sum()), "hand_size_median_px": float(np.median(sizes[ok.any(-1)])),
        }
    return out


# ----------------------------------------------------------------------------------------------
# Summary and the command


def _summarise(rows: list[dict], detector_ok: bool) -> dict:
    """Median / mean over hands per path and source (module docstring)."""
    def pooled(entries, key="mean_px"):
        e = [x for x in entries if x is not None]
        if not e:
            return None
        px = np.array([x[key] if key in x else x["mean_px"] for x in e])
        frac = np.array([x["mean_frac"] for x in e])
        n = np.array([x["n_kp"] for x in e])
        return {"hands": len(e), "median_px": float(np.median(px)), "mean_px": float(px.mean()),
                "median_frac": float(np.median(frac)), "mean_frac": float(frac.mean()),
                "pck01": float((np.array([x["pck01"] for x in e]) * n).sum() / n.sum()),
                "pck02": float((np.array([x["pck02"] for x in e]) * n).sum() / n.sum())}

    def rate(entries, key):
        e = [x[key] for x in entries if x is not None and key in x]
        return float(np.mean(e)) if e else None

    s: dict = {"hands": len(rows), "hand_size_median_px": float(np.median([r["hand_size_px"] for r in rows]))}
    if detector_ok:
        det = [r["detect"] for r in rows]
        s["detect"] = {"mediapipe": dict(pooled([d for d in det if d["found"]]) or {"hands": 0},
                                         rate=float(np.mean([d["found"] for d in det])))}
    for path in ("pose", "forecast"):
        s[path] = {}
        for src in SOURCES:
            e = [r[path].get(src) for r in rows]
            if not any(x is not None for x in e):
                continue
            ent = {}
            if path == "pose":
                ent.update(pooled(e) or {"hands": 0})
            else:
                ent["best"] = pooled([x["best"] for x in e if x is not None])
                ent["samples"] = pooled([x["samples"] for x in e if x is not None])
            ent["rate"] = sum(x is not None for x in e) / len(rows)
            for k in ("depth_ok", "bones_ok", "bends_ok", "limits_ok"):
                v = rate(e, k)
                if v is not None:
                    ent[k] = v
            s[path][src] = ent
    return s


def bench_real(data_dir: str | os.PathLike = "../shared/data/real", *, small: bool = False,
               photos_per_set: int | None = None, max_frames: int | None = None, video: bool = True,
               ckpt_pose=None, ckpt_forecast=None, ckpt_lift=None, out: str | os.PathLike | None = None,
               json_out: str | os.PathLike | None = None, command: str | None = None, progress: bool = True) -> dict:
    """Run the benchmark (module docstring) -> result dict (``rows``: one per annotated hand; ``summary``;
    ``lift``; timings and settings). ``small``: the CI version (:data:`SMALL`: 2 photos a set, 60 video
    frames) unless ``photos_per_set`` / ``max_frames`` say otherwise. ``video=False`` skips the lift path.
    ``out``: write the markdown there; ``json_out``: the JSON (both atomically). Raises HandcastError when the
    data folder has no photo set."""
    t_start = time.perf_counter()
    data_dir = Path(data_dir)
    sets = photo_sets(data_dir)
    if not sets:
        raise HandcastError(f"no mmpose/<set>/*.json keypoint files under {data_dir} (the real data folder)")
    if small:
        photos_per_set = SMALL["photos_per_set"] if photos_per_set is None else photos_per_set
        max_frames = SMALL["max_frames"] if max_frames is None else max_frames
    detect, why = _detector()
    ckpts = {"pose": ckpt_pose, "forecast": ckpt_forecast}
    cache: dict[str, dict] = {}
    hm = HandModel("auto")
    limits = hm.joint_limits.detach().cpu().double().numpy()

    def ranges(kind: str) -> dict:
        kind = hm.kind if kind == "auto" else kind
        if kind not in cache:
            cache[kind] = skeleton_ranges(hm if kind == hm.kind else HandModel(kind))
        return cache[kind]

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_real_") as tmp:
        work = Path(tmp)
        hands = [(name, h) for name, js in sets for h in read_coco_hand_keypoints(js)[:photos_per_set]]
        for i, (name, h) in enumerate(hands):
            t0 = time.perf_counter()
            row = _photo(h, name, detect, work, ckpts, ranges, limits, i)
            row["seconds"] = time.perf_counter() - t0
            rows.append(row)
            if progress:
                print(f"bench real: {i + 1}/{len(hands)} {name}/{h.image.name} ({row['seconds']:.1f} s)", flush=True)
        lift = None
        vid = data_dir / VIDEO
        if video and detect is not None and vid.is_file():
            lift = _lift(vid, work, ckpt_lift, max_frames, ranges, limits)
            if progress:
                print(f"bench real: lift {lift['frames']} frames ({lift['seconds']:.1f} s)", flush=True)
    result = {
        "command": command, "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
                   f"{platform.python_version()}, torch {torch.__version__}, {torch.get_num_threads()} torch threads)",
        "data_dir": str(data_dir), "small": bool(small), "photos_per_set": photos_per_set, "max_frames": max_frames,
        "camera": f"default: {DEFAULT_FOV_DEG:g} degree field of view across the longer side, principal point at the centre",
        "detector": _detector_settings() if detect is not None else f"unavailable ({why})",
        "checkpoints": {"pose": str(ckpt_pose or "shipped"), "forecast": str(ckpt_forecast or "shipped"),
                        "lift": str(ckpt_lift or "shipped")},
        "hand_model": hm.kind,
        "ranges": {k: {n: np.round(v, 5).tolist() for n, v in r.items()} for k, r in cache.items()},
        "summary": _summarise(rows, detect is not None), "lift": lift, "rows": rows,
        "wall_s": time.perf_counter() - t_start,
    }
    if json_out is not None:
        with atomic_path(json_out) as p:
            p.write_text(json.dumps(result, indent=1))
    if out is not None:
        write_report_text(out, format_report(result))
    return result


def _f(x, fmt="{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.0f} %"


def format_report(r: dict) -> str:
    """The markdown report of :func:`bench_real`."""
    s = r["summary"]
    L = ["# Real-input benchmark (`handcast bench real`)", ""]
    if r.get("command"):
        L += ["```bash", r["command"], "```", ""]
    L += [f"Date {r['date']}; machine {r['machine']}; wall time {r['wall_s']:.0f} s.", "",
          f"Data: `{r['data_dir']}`: {s['hands']} annotated hands in the mmpose sample photos (FreiHAND, OneHand10K, "
          f"Panoptic; hand size = diagonal of the annotated keypoints' box, median {s['hand_size_median_px']:.0f} px)"
          + (f" and the first {r['max_frames']} frames of" if r.get("max_frames") else " and")
          + " the real hand video. Camera: the photos have no intrinsics: "
          f"{r['camera']}. Detector: {r['detector']}. Checkpoints: pose {r['checkpoints']['pose']}, forecast "
          f"{r['checkpoints']['forecast']}, lift {r['checkpoints']['lift']}; hand model `{r['hand_model']}`.", "",
          ("2D: per hand the mean pixel distance over its annotated keypoints; the columns give the median and "
          "mean over hands, in pixels and in hand sizes, and PCK (fraction of keypoints within 0.1 / 0.2 hand "
          "sizes). `found`: fraction of annotated hands the path produced an output for (the detector's hand "
          f"must lie within {MATCH_FRACTION:g} hand sizes). 3D sanity: fraction of estimated hands (forecast: "
          f"hand-frames of all samples; lift: hand-frames) with wrist depth in [{DEPTH_RANGE_M[0]:g}, "
          f"{DEPTH_RANGE_M[1]:g}] m, all bones within the hand model's range (betas in [-{BETAS_RANGE:g}, "
          f"{BETAS_RANGE:g}], poses within its joint limits; +-{100 * BONE_TOL:g} %), all finger bends within "
          f"its range (+{BEND_TOL_DEG:g} deg), and (MANO-pose outputs) all finger components within its joint "
          f"limits (+{LIMIT_TOL_DEG:g} deg)."), "",
          ("| path | keypoints | found | median px | mean px | median / size | mean / size | PCK@0.1 | PCK@0.2 "
          "| depth ok | bones ok | bends ok | limits ok |"),
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def line(path, src, e, found):
        if e is None:
            return
        L.append(f"| {path} | {src} | {_pct(found)} | {_f(e.get('median_px'))} | {_f(e.get('mean_px'))} | "
                 f"{_f(e.get('median_frac'), '{:.2f}')} | {_f(e.get('mean_frac'), '{:.2f}')} | {_pct(e.get('pck01'))} | "
                 f"{_pct(e.get('pck02'))} | {_pct(e.get('depth_ok'))} | {_pct(e.get('bones_ok'))} | "
                 f"{_pct(e.get('bends_ok'))} | {_pct(e.get('limits_ok'))} |")

    L.append("| detect | gt | 100 % | 0 | 0 | 0 | 0 | 100 % | 100 % | - | - | - | - |")
    if "detect" in s:
        line("detect", "mediapipe", s["detect"]["mediapipe"], s["detect"]["mediapipe"]["rate"])
    for src, e in s.get("pose", {}).items():
        line("pose", src, e, e["rate"])
    for src, e in s.get("forecast", {}).items():
        sanity = {k: e.get(k) for k in ("depth_ok", "bones_ok", "bends_ok", "limits_ok")}
        line("forecast frame 0, best sample", src, dict(e["best"], **sanity), e["rate"])
        line("forecast frame 0, all samples", src, e["samples"], e["rate"])
    lf = r.get("lift")
    if lf:
        for name, label in (("lift_only", "lift: L alone"), ("refined", "lift: L + refinement")):
            e = lf[name]
            line(label, "mediapipe (reference)", {"median_px": e["hand_median_px"], "mean_px": e["hand_mean_px"],
                                                  **{k: e[k] for k in ("median_frac", "mean_frac", "pck01", "pck02",
                                                                      "depth_ok", "bones_ok", "bends_ok", "limits_ok")}},
                 None)
        L += ["", (f"Lift: `{VIDEO}`, {lf['frames']} frames, {lf['windows']} windows, K {lf['intrinsics']}; "
              f"hand-frames right {lf['hands_observed']['right']}, left {lf['hands_observed']['left']}. The reference "
              "is mediapipe's own tracks (no ground truth); per hand-frame mean distance, then median / mean over "
              f"hand-frames (pooled over keypoints: L alone {lf['lift_only']['mean_px']:.2f} px mean, "
              f"{lf['lift_only']['median_px']:.2f} px median; refined {lf['refined']['mean_px']:.2f} / "
              f"{lf['refined']['median_px']:.2f} px). Hand size median {lf['refined']['hand_size_median_px']:.0f} px. "
              f"run_lift {lf['seconds']:.0f} s (detection {_f(lf['seconds_detect'])} s).")]
    L += ["", "Per hand (px: mean over the annotated keypoints; forecast: best of the samples; `-`: no output):", "",
          "| set | image | hand (from) | size px | detect px | pose gt | pose mp | forecast gt | forecast mp |",
          "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        d = row.get("detect") or {}
        pg, pm = row["pose"].get("gt"), row["pose"].get("mediapipe")
        fg, fm = row["forecast"].get("gt"), row["forecast"].get("mediapipe")
        L.append(f"| {row['set']} | {row['image']} | {row['handedness']} ({row['handedness_from']}) | "
                 f"{row['hand_size_px']:.0f} | {_f(d.get('mean_px'))} | {_f(pg and pg['mean_px'])} | "
                 f"{_f(pm and pm['mean_px'])} | {_f(fg and fg['best']['mean_px'])} | {_f(fm and fm['best']['mean_px'])} |")
    return "\n".join(L) + "\n"
