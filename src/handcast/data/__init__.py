"""Data layer: the clip schema (:class:`Clip`), the memory-mapped clip store and the PyTorch dataset.

``ClipDataset`` and ``collate`` live in :mod:`handcast.data.dataset` (imports torch); they are
reachable from here lazily so that importing ``handcast.data`` stays light.
"""

from handcast.data.clip import FRAME_FIELDS, HAND_MODELS, Clip
from handcast.data.store import ClipStore, ClipStoreWriter, SplitView, compact_store, write_clips

__all__ = [
    "Clip", "FRAME_FIELDS", "HAND_MODELS", "ClipStore", "ClipStoreWriter", "SplitView", "compact_store",
    "write_clips", "ClipDataset", "collate",
]


def __getattr__(name: str):
    if name in ("ClipDataset", "collate"):
        from handcast.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'handcast.data' has no attribute {name!r}")
