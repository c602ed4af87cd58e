"""Non-learned baselines that write prediction files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcast.data.store import ClipStore
from handcast.eval.evaluate import write_predictions
from handcast.eval.export import ground_truth_arrays


def static_pose(gt: dict[str, np.ndarray], horizon: int | None = None) -> dict[str, np.ndarray]:
    """The static-pose baseline: each hand's frame-0 joints and pose held still for the whole horizon.

    ``gt`` holds ground-truth arrays as from :func:`ground_truth_arrays`. A hand absent from frame 0
    (the input image) is placed at the mean frame-0 joints of that hand over the clips where it is
    present (so the baseline never looks at future frames). Returns prediction arrays with S = 1:
    ``joints`` (N, 1, H, 2, 21, 3), ``pose6d`` (N, 1, H, 2, 16, 6), ``transl`` (N, 1, H, 2, 3).
    """
    joints0 = gt["joints"][:, 0].copy()  # (N, 2, 21, 3)
    pose0 = gt["pose6d"][:, 0].copy()
    present = gt["valid"][:, 0]  # (N, 2)
    identity6d = np.tile(np.array([1, 0, 0, 1, 0, 0], np.float32), (16, 1))
    for h in range(2):
        absent = ~present[:, h]
        if absent.any():
            if present[:, h].any():
                joints0[absent, h] = joints0[present[:, h], h].mean(0)
                pose0[absent, h] = pose0[present[:, h], h].mean(0)
            else:
                joints0[absent, h] = np.array([0.0, 0.0, 0.5], np.float32)
                pose0[absent, h] = identity6d
    h = int(horizon or gt["joints"].shape[1])
    rep = lambda x: np.repeat(x[:, None, None], h, axis=2)  # noqa: E731  (N, ...) -> (N, 1, H, ...)
    return dict(clip_ids=gt["clip_ids"], joints=rep(joints0), pose6d=rep(pose0), transl=rep(joints0[:, :, 0]))


def static_pose_predictions(store: str | Path, split: str, out: str | Path, horizon: int | None = None) -> int:
    """Write the static-pose baseline's predictions for ``split`` to ``out``; returns the number of clips."""
    pred = static_pose(ground_truth_arrays(ClipStore(store), split), horizon)
    write_predictions(out, **pred)
    return len(pred["clip_ids"])
