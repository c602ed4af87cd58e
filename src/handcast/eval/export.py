"""Ground-truth files from a clip store (``handcast export-gt``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from handcast.data.store import ClipStore
from handcast.eval.evaluate import write_ground_truth
from handcast.geometry import aa_to_6d


def ground_truth_arrays(store: ClipStore | str | Path, split: str) -> dict[str, np.ndarray]:
    """The arrays of a ground-truth file for one split, clips padded to the longest with valid = False.

    ``joints`` (N, T, 2, 21, 3) m frame-0 camera, ``valid`` (N, T, 2), ``pose6d`` (N, T, 2, 16, 6) flat
    convention, ``wrist`` (N, T, 2, 3) m the wrist position (MANO transl + rest wrist J0(betas), which is
    the same as keypoint 0), ``group_ids`` (N,), ``clip_ids`` (N,). Hands (right, left).
    """
    store = store if isinstance(store, ClipStore) else ClipStore(store)
    view = store.split(split)
    n = len(view)
    lengths = np.asarray(view.lengths, dtype=np.int64)
    t_max = int(lengths.max()) if n else 0
    joints = np.zeros((n, t_max, 2, 21, 3), np.float32)
    valid = np.zeros((n, t_max, 2), bool)
    pose6d = np.zeros((n, t_max, 2, 16, 6), np.float32)
    wrist = np.zeros((n, t_max, 2, 3), np.float32)
    for i in range(n):
        a = view.read(i, fields=("joints3d", "valid", "pose"))
        t = len(a["valid"])
        joints[i, :t] = a["joints3d"]
        valid[i, :t] = a["valid"]
        pose6d[i, :t] = aa_to_6d(a["pose"].astype(np.float32))
        wrist[i, :t] = a["joints3d"][:, :, 0]
    return dict(
        clip_ids=np.asarray(view.clip_ids, dtype=str), joints=joints, valid=valid, pose6d=pose6d,
        wrist=wrist, group_ids=np.asarray(view.clip_field("group_id"), dtype=str),
    )


def export_ground_truth(store: str | Path, split: str, out: str | Path) -> int:
    """Write the ground-truth file of ``split`` to ``out`` (atomically); returns the number of clips."""
    arrays = ground_truth_arrays(store, split)
    write_ground_truth(out, **arrays)
    return len(arrays["clip_ids"])
