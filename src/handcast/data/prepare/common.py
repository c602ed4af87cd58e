"""The converter base class and the conversion summary of :func:`handcast.data.prepare.prepare`.

A converter (one module per dataset) subclasses :class:`Preparer` (or :class:`StillImagePreparer`): it
lists the items of a split and turns each into clips (a :class:`~handcast.data.prepare.clips.Sequence`
cut by :meth:`Preparer.emit`). The other shared pieces live by concern: ``readers`` (file formats),
``hands`` (the hand model), ``cameras`` (numpy camera helpers) and ``clips`` (sequences -> clips).

Nothing here reads a file at import time.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from handcast.data.clip import Clip
from handcast.data.prepare.clips import Sequence, emit_sequence
from handcast.data.prepare.hands import HandModels
from handcast.errors import HandcastError

STORE_SPLITS = ("train", "val", "test")

# Options every converter accepts (name -> default). Converters add their own.
COMMON_OPTIONS: dict[str, Any] = {
    "hand_model": None,   # None/"auto": MANO if installed (required datasets: MANO); "mano"; "open"; "none"
    "mano_dir": None,     # folder with MANO_RIGHT.npz / MANO_LEFT.npz (default $HANDCAST_HOME/mano)
    "clip_len": None,     # cut sequences into clips of at most this many frames (None: whole runs)
    "min_frames": 1,      # drop clips shorter than this
    "images": True,       # store the first frame's image where the converter supports it
    "max_items": None,    # convert only the first N items of each split (quick trials)
    "fps": None,          # override the frame rate where the dataset does not state it
}


# ============================================================================ summary
@dataclass
class PrepareSummary:
    """What :func:`handcast.data.prepare.prepare` converted and skipped.

    Attributes:
        dataset: canonical dataset name (also the clips' ``domain``).
        root: the raw dataset folder read; out: the clip store written.
        clips: split -> clip ids written, in order.
        frames: split -> number of frames written.
        skipped: (item, reason) for every sequence / frame / clip left out.
        notes: dataset-wide remarks (e.g. MANO poses not converted because MANO is not installed).
    """

    dataset: str
    root: str
    out: str
    clips: dict[str, list[str]] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def num_clips(self) -> int:
        return sum(len(v) for v in self.clips.values())

    def add_clip(self, split: str, clip: Clip) -> None:
        self.clips.setdefault(split, []).append(clip.clip_id)
        self.frames[split] = self.frames.get(split, 0) + clip.num_frames

    def skip(self, item: str, reason: str) -> None:
        reason = " ".join(str(reason).split())
        if self.root:  # paths inside the dataset are shown relative to it
            reason = reason.replace(self.root.rstrip("/") + "/", "")
        self.skipped.append((str(item), reason))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def format(self, max_skipped: int = 10) -> str:
        """A short human summary (a few lines) for the CLI."""
        parts = [f"{s} {len(ids)} clips / {self.frames.get(s, 0)} frames" for s, ids in self.clips.items()]
        lines = [f"prepared {self.dataset} from {self.root} -> {self.out}: "
                 + ("; ".join(parts) if parts else "nothing converted")]
        lines += [f"note: {n}" for n in self.notes]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} item(s):")
            lines += [f"  {item}: {reason}" for item, reason in self.skipped[:max_skipped]]
            if len(self.skipped) > max_skipped:
                lines.append(f"  ... and {len(self.skipped) - max_skipped} more")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Item:
    """One unit of work: a sequence (or a still image) of one split."""

    split: str
    name: str
    payload: Any = None


# ============================================================================ converter base class
class Preparer:
    """Base class of a dataset converter. Subclasses set the class attributes and implement
    :meth:`check_root`, :meth:`items` and :meth:`convert`.

    Attributes:
        name: canonical lower-case name (the clips' ``domain``); title: human name.
        splits: store splits the converter can write.
        requires_mano: the dataset stores hands only as MANO parameters (joints need the model).
        uses_mano: the dataset has MANO parameters at all (converted when a model is available);
            implied by ``requires_mano``.
        left_shapedirs_fixed: the dataset's left-hand fits used the MANO_LEFT shapedirs fix.
        options: dataset-specific options and their defaults (on top of COMMON_OPTIONS).
        single_image: items are still images stored as 1-frame clips.
    """

    name: str = ""
    title: str = ""
    splits: tuple[str, ...] = STORE_SPLITS
    requires_mano: bool = False
    uses_mano: bool = False
    left_shapedirs_fixed: bool = False
    options: dict[str, Any] = {}
    single_image: bool = False

    def __init__(self, root: Path, options: dict, summary: PrepareSummary):
        self.root = Path(root)
        self.opts = options
        self.summary = summary
        self.hands: HandModels | None = None
        self._cache: dict[str, Any] = {}

    # -- to implement ---------------------------------------------------------------------------
    def check_root(self) -> None:
        """Raise HandcastError (one line) if ``root`` does not look like this dataset."""

    def items(self, split: str) -> list[Item]:
        """Units of work of ``split`` (possibly empty)."""
        raise NotImplementedError

    def convert(self, item: Item) -> list[tuple[Clip, bytes | None]]:
        """Clips of one item; raise SkipItem / HandcastError to skip it with a reason."""
        raise NotImplementedError

    # -- helpers --------------------------------------------------------------------------------
    def setup_hands(self) -> None:
        if self.uses_mano or self.requires_mano:
            self.hands = HandModels(self.opts.get("hand_model"), self.opts.get("mano_dir"),
                                    required=self.requires_mano, left_fixed=self.left_shapedirs_fixed,
                                    dataset=self.title or self.name)
            if not self.hands.available:
                self.summary.note("MANO poses not converted (official MANO not installed or hand_model=none); "
                                  "joints and 2D keypoints are the dataset's, pose/transl/betas are zeros "
                                  "(meta pose_params = 'none')")

    @property
    def poses_on(self) -> bool:
        return self.hands is not None and self.hands.available

    def emit(self, seq: Sequence) -> list[tuple[Clip, bytes | None]]:
        return emit_sequence(seq, dataset=self.name, options=self.opts, hands=self.hands, skip=self.summary.skip)

    def fps(self, default: float) -> float:
        return float(self.opts.get("fps") or default)

    def not_this_dataset(self, what: str) -> HandcastError:
        """The one-line error for a root that is not this dataset: '<root> does not look like <title>: <what>'."""
        return HandcastError(f"{self.root} does not look like {self.title or self.name}: {what}")

    def require(self, rel_path: str, what: str | None = None) -> Path:
        """``root / rel_path``; :meth:`not_this_dataset` if it does not exist (``what``: what it holds)."""
        p = self.root / rel_path
        if not p.exists():
            raise self.not_this_dataset(f"missing {rel_path}" + (f" ({what})" if what else ""))
        return p

    def folders(self, pattern: str) -> list[Path]:
        """The folders directly under the root whose whole name matches the regex ``pattern``, sorted."""
        return sorted(p for p in self.root.iterdir() if p.is_dir() and re.fullmatch(pattern, p.name))

    def require_any(self, found: list, what: str) -> list:
        """``found`` (the dataset's folders or files found under the root); :meth:`not_this_dataset`
        ('no <what>') if it is empty."""
        if not found:
            raise self.not_this_dataset(f"no {what}")
        return found


class StillImagePreparer(Preparer):
    """A converter whose items are still images of one right hand, each stored as a 1-frame clip
    (store splits train / test; MANO fits converted when a model is available)."""

    splits = ("train", "test")
    uses_mano = True
    single_image = True

    def still_image(self, base_id: str, K: np.ndarray, image_size: tuple[int, int], joints: np.ndarray,
                    meta: dict) -> Sequence:
        """A 1-frame :class:`Sequence` of a right hand: ``joints`` (21, 3) m, common order, in the
        camera frame (= world); K (3, 3); fps a placeholder (30)."""
        J = np.zeros((1, 2, 21, 3))
        J[0, 0] = joints
        return Sequence(base_id=base_id, frame_ids=np.array([0]), cam_from_world=np.eye(4)[None], K=K,
                        image_size=image_size, fps=30.0, valid=np.array([[True, False]]), joints=J, meta=meta)
