"""Non-learned baselines that write prediction files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcast.data.store import ClipStore
from handcast.errors import HandcastError
from handcast.eval.evaluate import write_predictions
from handcast.eval.export import ground_truth_arrays
from handcast.models.cascade.estimate import estimate_pose
from handcast.models.cascade.model import load_cascade, resolve_pose_checkpoint


def _fill_absent(x: np.ndarray, present: np.ndarray, default: np.ndarray) -> None:
    """In place: entries x (N, 2, ...) of a hand absent from the input frame (present (N, 2) False) become the
    mean of that hand's entries where present, or ``default`` if it is never present."""
    for h in range(2):
        absent = ~present[:, h]
        if absent.any():
            x[absent, h] = x[present[:, h], h].mean(0) if present[:, h].any() else default


def estimated_static_pose(store: ClipStore | str | Path, split: str, pose_ckpt: str | Path | None = None,
                          horizon: int | None = None) -> dict[str, np.ndarray]:
    """The static-pose baseline from the single-image pose estimator instead of the ground truth.

    For each clip, the cascaded pose estimator (:mod:`handcast.models.cascade`) sees only the input frame: its
    image, its 2D keypoints (the stored track's frame 0) and the intrinsics; its hands (wrist-relative joints +
    the wrist placed from the 2D keypoints) are held still for the whole horizon. Clips sharing a first frame
    (a ``group_id``) are estimated once. Returns ``clip_ids``, ``joints`` (N, 1, H, 2, 21, 3) m, ``wrist``
    (N, 1, H, 2, 3) m; no ``pose6d`` (the estimator returns joints and meshes)."""
    st = store if isinstance(store, ClipStore) else ClipStore(store)
    view = st.split(split)
    model = load_cascade(resolve_pose_checkpoint(pose_ckpt))
    n = len(view)
    joints0 = np.zeros((n, 2, 21, 3), np.float32)
    present = np.zeros((n, 2), bool)
    groups = [str(g) for g in view.clip_field("group_id")]
    done: dict[str, int] = {}
    for i in range(n):
        if groups[i] in done:
            j = done[groups[i]]
            joints0[i], present[i] = joints0[j], present[j]
            continue
        done[groups[i]] = i
        a = view.read(i, fields=("kp2d", "kp2d_conf", "K"), stop=1)
        conf = a["kp2d_conf"][0]
        uv = np.where(conf[..., None] > 0, a["kp2d"][0], np.nan)
        try:
            res = estimate_pose(view.image(i), model, keypoints=(uv, conf), K=a["K"])
        except HandcastError:  # no hand with enough keypoints in the input frame
            continue
        for k, hand in enumerate(res.hand):
            joints0[i, int(hand)] = res.joints[k] + res.root[k]
            present[i, int(hand)] = True
    _fill_absent(joints0, present, np.array([0.0, 0.0, 0.5], np.float32))
    h = int(horizon or np.max(view.lengths))
    rep = lambda x: np.repeat(x[:, None, None], h, axis=2)  # noqa: E731
    return dict(clip_ids=np.asarray(view.clip_ids, dtype=str), joints=rep(joints0), pose6d=None,
                wrist=rep(joints0[:, :, 0]))


def static_pose(gt: dict[str, np.ndarray], horizon: int | None = None) -> dict[str, np.ndarray]:
    """The static-pose baseline: each hand's frame-0 joints and pose held still for the whole horizon.

    ``gt`` holds ground-truth arrays as from :func:`ground_truth_arrays`. A hand absent from frame 0
    (the input image) is placed at the mean frame-0 joints of that hand over the clips where it is
    present (so the baseline never looks at future frames). Returns prediction arrays with S = 1:
    ``joints`` (N, 1, H, 2, 21, 3), ``pose6d`` (N, 1, H, 2, 16, 6), ``wrist`` (N, 1, H, 2, 3) (metres, frame-0
    camera, hands (right, left)).
    """
    joints0 = gt["joints"][:, 0].copy()  # (N, 2, 21, 3)
    pose0 = gt["pose6d"][:, 0].copy()
    present = gt["valid"][:, 0]  # (N, 2)
    _fill_absent(joints0, present, np.array([0.0, 0.0, 0.5], np.float32))
    _fill_absent(pose0, present, np.tile(np.array([1, 0, 0, 1, 0, 0], np.float32), (16, 1)))
    h = int(horizon or gt["joints"].shape[1])
    rep = lambda x: np.repeat(x[:, None, None], h, axis=2)  # noqa: E731  (N, ...) -> (N, 1, H, ...)
    return dict(clip_ids=gt["clip_ids"], joints=rep(joints0), pose6d=rep(pose0), wrist=rep(joints0[:, :, 0]))


def static_pose_predictions(store: str | Path, split: str, out: str | Path, horizon: int | None = None) -> int:
    """Write the static-pose baseline's predictions for ``split`` to ``out``; returns the number of clips."""
    pred = static_pose(ground_truth_arrays(ClipStore(store), split), horizon)
    write_predictions(out, **pred)
    return len(pred["clip_ids"])
