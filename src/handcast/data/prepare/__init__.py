"""Converters from public hand datasets' raw on-disk layouts into a handcast clip store.

    from handcast.data.prepare import prepare
    summary = prepare("arctic", "/data/arctic/arctic_data/data", "stores/arctic")
    print(summary.format())

Every converter applies the conventions of :mod:`handcast.conventions` as
``shared/reference/datasets.md`` records each dataset's own (units, camera direction, OpenGL vs OpenCV,
keypoint order, flat / mean-relative / PCA poses, the MANO_LEFT shapedirs fix). What each one reads,
converts and skips is documented in docs/datasets.md. Importing this package reads no file.
"""

from __future__ import annotations

import json
import pickle
import re
import tarfile
import zipfile
from pathlib import Path
from typing import Any

from handcast.data.prepare.common import COMMON_OPTIONS, Item, Preparer, PrepareSummary
from handcast.errors import AssetMissingError, HandcastError

__all__ = ["prepare", "PREPARERS", "PrepareSummary", "available_datasets", "canonical_name"]


def _registry() -> dict[str, type[Preparer]]:
    from handcast.data.prepare.arctic import ArcticPreparer
    from handcast.data.prepare.assemblyhands import AssemblyHandsPreparer
    from handcast.data.prepare.dexycb import DexYCBPreparer
    from handcast.data.prepare.egoexo4d import EgoExo4DPreparer
    from handcast.data.prepare.freihand import FreiHANDPreparer
    from handcast.data.prepare.h2o import H2OPreparer
    from handcast.data.prepare.h2o3d import H2O3DPreparer
    from handcast.data.prepare.ho3d import HO3DPreparer
    from handcast.data.prepare.holoassist import HoloAssistPreparer
    from handcast.data.prepare.hot3d import HOT3DPreparer

    classes = (ArcticPreparer, H2OPreparer, H2O3DPreparer, HOT3DPreparer, DexYCBPreparer, AssemblyHandsPreparer,
               HoloAssistPreparer, EgoExo4DPreparer, FreiHANDPreparer, HO3DPreparer)
    return {c.name: c for c in classes}


# name -> converter class (canonical lower-case names; see ALIASES for other spellings)
PREPARERS: dict[str, type[Preparer]] = _registry()
ALIASES = {"arcticego": "arctic", "h2o3d": "h2o3d", "hot3dclips": "hot3d", "egoexo": "egoexo4d",
           "assembly": "assemblyhands", "ho3dv2": "ho3d", "ho3dv3": "ho3d", "holo": "holoassist",
           "dexycb": "dexycb", "freihandv2": "freihand"}


def available_datasets() -> list[str]:
    """Canonical names accepted by :func:`prepare`."""
    return list(PREPARERS)


def canonical_name(dataset: str) -> str:
    """'H2O-3D' -> 'h2o3d', 'HO3D_v2' -> 'ho3d' ...; HandcastError for an unknown name."""
    key = re.sub(r"[\s_\-]", "", str(dataset).lower())
    key = ALIASES.get(key, key)
    if key not in PREPARERS:
        raise HandcastError(f"unknown dataset {dataset!r}; choose one of {', '.join(PREPARERS)}")
    return key


# Exceptions that mean "this item's files are malformed" (reported as a skip, never a traceback).
_DATA_ERRORS = (KeyError, ValueError, TypeError, IndexError, AttributeError, OSError, EOFError,
                json.JSONDecodeError, pickle.UnpicklingError, tarfile.TarError, zipfile.BadZipFile)


_INT_OPTIONS = ("clip_len", "min_frames", "max_items")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _coerce(key: str, value: Any, default: Any) -> Any:
    """Option values given as strings (e.g. from a command line ``key=value``) -> the option's type."""
    if not isinstance(value, str):
        return value
    v = value.strip()
    try:
        if isinstance(default, bool):
            if v.lower() in _TRUE + _FALSE:
                return v.lower() in _TRUE
            raise ValueError
        if key in _INT_OPTIONS or (isinstance(default, int) and not isinstance(default, bool)):
            return int(v)
        if key == "fps" or isinstance(default, float):
            return float(v)
        if isinstance(default, tuple):
            return tuple(x.strip() for x in v.split(",") if x.strip())
    except ValueError:
        kind = type(default).__name__ if default is not None else "a number"
        raise HandcastError(f"option {key}: cannot read {value!r} as {kind}") from None
    if key == "hand_model":
        return v.lower()
    if v.lower() in ("none", "null", ""):
        return None
    return v


def prepare(dataset: str, root: str | Path, out: str | Path, *, split: str | None = None, progress: bool = True,
            overwrite: bool = False, **options: Any) -> PrepareSummary:
    """Convert a public dataset from its raw layout at ``root`` into a clip store at ``out``.

    Args:
        dataset: one of :data:`PREPARERS` (case and '-'/'_' ignored: "ARCTIC", "H2O-3D", "HO3D_v2").
        root: the dataset's download folder (see docs/datasets.md for what each converter expects).
        out: the clip store folder to write (atomically: nothing is left there on failure).
        split: convert only this store split ("train", "val", "test", ...); None = every split found.
        progress: show a tqdm progress bar on stderr.
        overwrite: replace an existing store at ``out`` (only once the new one is complete).
        **options: common options (``hand_model``, ``mano_dir``, ``clip_len``, ``min_frames``, ``images``,
            ``max_items``, ``fps``) and the dataset's own (docs/datasets.md). Values may be given as
            strings (``"false"``, ``"16"``, ``"cam3,cam4"``): they are converted to the option's type.

    Returns:
        A :class:`PrepareSummary`: clips and frames written per split, items skipped with reasons.

    Raises:
        HandcastError (one line) for an unknown dataset, split or option, a missing or foreign root,
        an existing ``out`` without ``overwrite``, nothing convertible, or missing MANO files where
        the dataset needs them (AssetMissingError, saying how to install them).
    """
    from tqdm import tqdm

    from handcast.data.store import ClipStoreWriter

    name = canonical_name(dataset)
    cls = PREPARERS[name]
    known = {**COMMON_OPTIONS, **cls.options}
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise HandcastError(f"unknown option(s) for {name}: {', '.join(unknown)} "
                            f"(accepted: {', '.join(sorted(known))})")
    opts = {**known, **{k: _coerce(k, v, known[k]) for k, v in options.items()}}
    for key in ("clip_len", "min_frames", "max_items"):
        v = opts.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise HandcastError(f"option {key} must be a positive integer, got {v!r}")
    if opts.get("fps") is not None and not (isinstance(opts["fps"], (int, float)) and 0 < opts["fps"] < float("inf")):
        raise HandcastError(f"option fps must be a positive number, got {opts['fps']!r}")
    if opts.get("hand_model") not in (None, "auto", "mano", "open", "none"):
        raise HandcastError(f"option hand_model must be auto, mano, open or none, got {opts['hand_model']!r}")
    root = Path(root).expanduser()
    out = Path(out).expanduser()
    if not root.exists():
        raise HandcastError(f"dataset root not found: {root}")
    if not root.is_dir():
        raise HandcastError(f"dataset root is not a folder: {root}")
    if out.exists() and not overwrite:
        raise HandcastError(f"output store already exists: {out} (remove it or pass --overwrite)")
    try:
        out.resolve().relative_to(root.resolve())
        raise HandcastError(f"the output store {out} must not be inside the dataset root {root}")
    except ValueError:
        pass
    if split is not None and split not in cls.splits:
        raise HandcastError(f"{name} has no split {split!r} (choose from {', '.join(cls.splits)})")

    summary = PrepareSummary(dataset=name, root=str(root), out=str(out))
    prep = cls(root, opts, summary)
    splits = [split] if split is not None else list(cls.splits)
    work: list[Item] = []
    try:
        prep.check_root()
        prep.setup_hands()  # raises AssetMissingError up front where MANO is required and absent
        for s in splits:
            items = prep.items(s)
            if opts.get("max_items"):
                items = items[: opts["max_items"]]
            work.extend(items)
    except _DATA_ERRORS as e:
        raise HandcastError(f"{cls.title or name} index files under {root} are malformed "
                            f"({type(e).__name__}: {' '.join(str(e).split())})") from None
    if not work:
        raise HandcastError(f"no {cls.title or name} data found under {root}"
                            + (f" for split {split!r}" if split else "") + " (see docs/datasets.md for the layout)")

    with ClipStoreWriter(out, overwrite=overwrite) as writer:
        bar = tqdm(work, desc=f"prepare {name}", unit="item", disable=not progress, dynamic_ncols=True)
        for item in bar:
            try:
                produced = prep.convert(item)
            except AssetMissingError:
                raise
            except HandcastError as e:  # SkipItem included
                summary.skip(item.name, str(e))
                continue
            except _DATA_ERRORS as e:
                summary.skip(item.name, f"malformed data ({type(e).__name__}: {e})")
                continue
            for clip, image_bytes in produced:
                try:
                    clip.validate()
                except HandcastError as e:
                    summary.skip(clip.clip_id, str(e))
                    continue
                if writer.contains(item.split, clip.clip_id):
                    summary.skip(clip.clip_id, f"duplicate clip id in split {item.split}")
                    continue
                writer.add(item.split, clip, image_bytes=image_bytes)  # errors here abort the whole store
                summary.add_clip(item.split, clip)
        bar.close()
        if summary.num_clips == 0:
            first = f"; first: {summary.skipped[0][0]}: {summary.skipped[0][1]}" if summary.skipped else ""
            raise HandcastError(f"nothing converted from {root}: {len(summary.skipped)} item(s) skipped{first}")
    return summary
