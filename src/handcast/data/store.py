"""The clip store: a versioned, memory-mapped folder of clips (format "handcast-clips", version 1).

Layout (see docs/formats.md for every field)::

    STORE/
      manifest.json                      format, version, splits -> shards, field dtypes/shapes
      <split>/<shard>/                   shard = "00000", "00001" ... (one per writing session)
        frames/<field>.npy               per-frame arrays of all clips of the shard, concatenated in time
        clips/<field>.npy                per-clip arrays (offsets, betas, K, image_size, fps, image_offsets,
                                         unicode strings clip_id/provenance/domain/hand_model/group_id)
        meta.jsonl                       one JSON object per clip
        images.bin                       encoded first-frame images (JPEG or PNG) back to back

Only plain ``.npy`` (never pickles), JSON and raw bytes. Reading memory-maps the ``.npy`` files.
A shard is immutable once the manifest lists it; appending writes new shards and then replaces the
manifest atomically, so readers only ever see complete shards.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import io as _io
import json
import os
import re
import shutil
import struct
import uuid
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from handcast import __version__
from handcast.data.clip import CLIP_ARRAY_FIELDS, FIELDS_3D, FRAME_FIELDS, Clip
from handcast.errors import HandcastError
from handcast.io import atomic_dir, atomic_path, pid_alive

FORMAT = "handcast-clips"
VERSION = 1
MANIFEST = "manifest.json"
SPLIT_NAME_RE = re.compile(r"^[a-z0-9_-]+$")
STRING_FIELDS: tuple[str, ...] = ("clip_id", "provenance", "domain", "hand_model", "group_id")
# Per-clip arrays in clips/: name -> (dtype, shape of one clip).
CLIP_FILES: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    **CLIP_ARRAY_FIELDS,
    "image_size": (np.dtype(np.int64), (2,)),
    "fps": (np.dtype(np.float64), ()),
}
IMAGE_FORMATS = ("jpeg", "png")
_HEADER_BYTES = 128  # reserved .npy header (multiple of 64) so streamed files can be patched in place


def _now() -> str:
    """UTC time stamp for manifests; honours SOURCE_DATE_EPOCH so rebuilt stores can be byte-identical."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and epoch.isdigit():
        return _dt.datetime.fromtimestamp(int(epoch), _dt.timezone.utc).isoformat(timespec="seconds")
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """A version-1.0 .npy header padded to exactly ``_HEADER_BYTES`` bytes."""
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    body = f"{{'descr': {descr!r}, 'fortran_order': False, 'shape': {tuple(shape)!r}, }}".encode("latin1")
    room = _HEADER_BYTES - 10
    if len(body) + 1 > room:  # pragma: no cover - only for absurd shapes
        raise ValueError(f"npy header too long for shape {shape}")
    body = body + b" " * (room - len(body) - 1) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", room) + body


class _NpyStream:
    """Append rows to a .npy file whose leading dimension is unknown until close."""

    def __init__(self, path: Path, dtype: np.dtype, item_shape: tuple[int, ...]):
        self.path, self.dtype, self.item_shape = path, np.dtype(dtype), tuple(item_shape)
        self.rows = 0
        self._f = open(path, "wb", buffering=1 << 20)
        self._f.write(b"\0" * _HEADER_BYTES)

    def write(self, arr) -> None:
        arr = np.ascontiguousarray(arr, dtype=self.dtype)
        if arr.shape[1:] != self.item_shape:  # pragma: no cover - guarded by Clip.validate
            raise ValueError(f"{self.path.name}: row shape {arr.shape[1:]} != {self.item_shape}")
        self._f.write(arr.tobytes())
        self.rows += arr.shape[0]

    def close(self) -> None:
        self._f.flush()
        self._f.seek(0)
        self._f.write(_npy_header(self.dtype, (self.rows, *self.item_shape)))
        self._f.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._f.close()


def encode_image(image: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """uint8 (H, W, 3) RGB -> JPEG (``quality``) or PNG bytes."""
    from PIL import Image

    buf = _io.BytesIO()
    pil = Image.fromarray(np.ascontiguousarray(image))
    if fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=int(quality), subsampling=0)  # 4:4:4 chroma
    elif fmt == "png":
        pil.save(buf, format="PNG", compress_level=3)
    else:
        raise HandcastError(f"unknown image format {fmt!r} (expected one of {', '.join(IMAGE_FORMATS)})")
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> uint8 (H, W, 3) RGB."""
    from PIL import Image

    with Image.open(_io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _check_image_bytes(data: bytes, image_size: tuple[int, int], clip_id: str) -> None:
    from PIL import Image

    try:
        with Image.open(_io.BytesIO(data)) as im:
            fmt, size = im.format, im.size
    except Exception as e:
        raise HandcastError(f"clip {clip_id!r}: image_bytes is not a readable image ({e})") from None
    if fmt not in ("JPEG", "PNG"):
        raise HandcastError(f"clip {clip_id!r}: image_bytes must be JPEG or PNG, got {fmt}")
    if tuple(size) != tuple(image_size):
        raise HandcastError(f"clip {clip_id!r}: image_bytes is {size[0]}x{size[1]}, image_size is {image_size}")


def _sanitise(clip: Clip) -> dict[str, np.ndarray]:
    """Per-frame arrays with non-finite values in unlabelled entries replaced by 0 (the store has no NaN)."""
    out = {name: getattr(clip, name) for name in FRAME_FIELDS}
    T = clip.num_frames
    for name in FIELDS_3D:
        arr = out[name]
        if not np.isfinite(arr).all():
            arr = arr.copy()
            flat = arr.reshape(T, 2, -1)
            flat[~np.isfinite(flat)] = 0.0
            out[name] = arr
    if not np.isfinite(out["kp2d"]).all():
        arr = out["kp2d"].copy()
        arr[~np.isfinite(arr)] = 0.0
        out["kp2d"] = arr
    return out


# ====================================================================== writing
class _ShardWriter:
    """Streams one shard (one split, one writing session) to ``folder``."""

    def __init__(self, folder: Path):
        self.folder = folder
        (folder / "frames").mkdir(parents=True)
        (folder / "clips").mkdir()
        self.frames = {n: _NpyStream(folder / "frames" / f"{n}.npy", d, s) for n, (d, s) in FRAME_FIELDS.items()}
        self.clips = {n: _NpyStream(folder / "clips" / f"{n}.npy", d, s) for n, (d, s) in CLIP_FILES.items()}
        self.offsets = _NpyStream(folder / "clips" / "offsets.npy", np.int64, ())
        self.image_offsets = _NpyStream(folder / "clips" / "image_offsets.npy", np.int64, ())
        self.offsets.write([0])
        self.image_offsets.write([0])
        self.strings: dict[str, list[str]] = {n: [] for n in STRING_FIELDS}
        self.meta = open(folder / "meta.jsonl", "w", encoding="utf-8", newline="\n")
        self.images = open(folder / "images.bin", "wb", buffering=1 << 20)
        self.num_clips = self.num_frames = self.num_images = self.image_bytes = 0
        self.provenance: dict[str, int] = {}
        self.hand_models: set[str] = set()

    def add(self, clip: Clip, image_bytes: bytes | None) -> None:
        for name, arr in _sanitise(clip).items():
            self.frames[name].write(arr)
        self.clips["betas"].write(clip.betas[None])
        self.clips["K"].write(clip.K[None])
        self.clips["image_size"].write(np.asarray([clip.image_size]))
        self.clips["fps"].write([clip.fps])
        for name in STRING_FIELDS:
            self.strings[name].append(str(getattr(clip, name)))
        self.meta.write(json.dumps(clip.meta, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n")
        self.num_frames += clip.num_frames
        self.offsets.write([self.num_frames])
        if image_bytes:
            self.images.write(image_bytes)
            self.image_bytes += len(image_bytes)
            self.num_images += 1
        self.image_offsets.write([self.image_bytes])
        self.num_clips += 1
        self.provenance[clip.provenance] = self.provenance.get(clip.provenance, 0) + 1
        self.hand_models.add(clip.hand_model)

    def close(self) -> dict:
        for s in (*self.frames.values(), *self.clips.values(), self.offsets, self.image_offsets):
            s.close()
        self.meta.close()
        self.images.close()
        for name, values in self.strings.items():
            np.save(self.folder / "clips" / f"{name}.npy", np.asarray(values, dtype=str), allow_pickle=False)
        return {
            "name": self.folder.name,
            "num_clips": self.num_clips,
            "num_frames": self.num_frames,
            "num_images": self.num_images,
            "image_bytes": self.image_bytes,
            "provenance": dict(sorted(self.provenance.items())),
            "hand_models": sorted(self.hand_models),
        }

    def abort(self) -> None:
        for s in (*self.frames.values(), *self.clips.values(), self.offsets, self.image_offsets):
            s.abort()
        for f in (self.meta, self.images):
            with contextlib.suppress(Exception):
                f.close()


def _check_split_name(split: str) -> None:
    if not isinstance(split, str) or not SPLIT_NAME_RE.match(split):
        raise HandcastError(f"invalid split name {split!r} (use lowercase letters, digits, '_' and '-')")


def _field_table() -> tuple[dict, dict]:
    frames = {n: {"dtype": d.name, "shape": ["T", *s]} for n, (d, s) in FRAME_FIELDS.items()}
    clips = {n: {"dtype": d.name, "shape": list(s)} for n, (d, s) in CLIP_FILES.items()}
    clips.update({n: {"dtype": "unicode", "shape": []} for n in STRING_FIELDS})
    return frames, clips


def _split_entry(shards: list[dict]) -> dict:
    prov: dict[str, int] = {}
    for s in shards:
        for k, v in s["provenance"].items():
            prov[k] = prov.get(k, 0) + v
    return {
        "num_clips": sum(s["num_clips"] for s in shards),
        "num_frames": sum(s["num_frames"] for s in shards),
        "num_images": sum(s["num_images"] for s in shards),
        "provenance": dict(sorted(prov.items())),
        "hand_models": sorted({h for s in shards for h in s["hand_models"]}),
        "shards": shards,
    }


def _manifest(splits: dict[str, list[dict]], created: str | None) -> dict:
    hand_models = sorted({h for shards in splits.values() for s in shards for h in s["hand_models"]})
    frame_fields, clip_fields = _field_table()
    return {
        "format": FORMAT,
        "version": VERSION,
        "created": created or _now(),
        "modified": _now(),
        "handcast_version": __version__,
        "hand_model": hand_models[0] if len(hand_models) == 1 else ("mixed" if hand_models else None),
        "splits": {name: _split_entry(shards) for name, shards in splits.items()},
        "frame_fields": frame_fields,
        "clip_fields": clip_fields,
    }


class ClipStoreWriter:
    """Write (or extend) a clip store. Use as a context manager.

    Args:
        path: the store folder.
        overwrite: replace an existing store at ``path`` (only after the new one is complete).
        append: add new clips/splits to an existing store (created if missing). New data goes to
            new shards; the manifest is replaced atomically at the end (or at each :meth:`commit`).
        image_format: "jpeg" (quality ``jpeg_quality``) or "png" (lossless) for ``Clip.image``.
        jpeg_quality: JPEG quality, 1..100.

    Frames are streamed to disk as clips are added (nothing accumulates in RAM but the short
    per-clip strings). On an exception inside the ``with`` block nothing is left at ``path``
    (new store) or the existing store is unchanged (append). A clip_id may appear only once per
    split. One writer at a time per store.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        overwrite: bool = False,
        append: bool = False,
        image_format: str = "jpeg",
        jpeg_quality: int = 95,
    ):
        if overwrite and append:
            raise HandcastError("ClipStoreWriter: choose overwrite or append, not both")
        if image_format not in IMAGE_FORMATS:
            raise HandcastError(f"unknown image format {image_format!r} (expected one of {', '.join(IMAGE_FORMATS)})")
        self.path = Path(path)
        self.overwrite, self.append_mode = overwrite, append
        self.image_format, self.jpeg_quality = image_format, int(jpeg_quality)
        self._stack: contextlib.ExitStack | None = None
        self._root: Path | None = None  # where new shards are written
        self._open: dict[str, _ShardWriter] = {}
        self._splits: dict[str, list[dict]] = {}  # committed shard entries per split
        self._ids: dict[str, set[str]] = {}
        self._existing: ClipStore | None = None
        self._created: str | None = None

    # -------------------------------------------------------------- context
    def __enter__(self) -> "ClipStoreWriter":
        self._stack = contextlib.ExitStack()
        try:
            if self.append_mode and self.path.exists():
                self._existing = ClipStore(self.path)
                self._splits = {k: list(v["shards"]) for k, v in self._existing.manifest["splits"].items()}
                self._created = self._existing.manifest.get("created")
                _clean_staging(self.path)
                self._root = self.path / f".staging-{os.getpid()}-{uuid.uuid4().hex[:12]}"
                self._root.mkdir()
            else:
                if (self.overwrite and self.path.is_dir() and not (self.path / MANIFEST).is_file()
                        and any(self.path.iterdir())):
                    raise HandcastError(f"{self.path} is not a clip store (no {MANIFEST}) and is not empty: "
                                        "--overwrite replaces only a clip store; give another --out")
                self._root = self._stack.enter_context(atomic_dir(self.path, overwrite=self.overwrite))
        except BaseException:
            self._stack.close()
            self._stack = None
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        assert stack is not None
        if exc_type is not None:
            self._abort()
            stack.__exit__(exc_type, exc, tb)  # removes the temporary folder, re-raises nothing itself
            return False
        try:
            self._finish()
        except BaseException as e:
            self._abort()
            stack.__exit__(type(e), e, e.__traceback__)
            raise
        stack.__exit__(None, None, None)
        return False

    def _abort(self) -> None:
        for w in self._open.values():
            w.abort()
        self._open.clear()
        if self._existing is not None and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)

    def _close_open_shards(self) -> dict[str, dict]:
        done = {split: w.close() for split, w in self._open.items()}
        self._open.clear()
        return done

    def _finish(self) -> None:
        if self._existing is None:
            for split, entry in self._close_open_shards().items():
                self._splits.setdefault(split, []).append(entry)
            with atomic_path(self._root / MANIFEST) as tmp:
                tmp.write_text(json.dumps(_manifest(self._splits, self._created), indent=2) + "\n")
        else:
            self.commit()
            shutil.rmtree(self._root, ignore_errors=True)

    # -------------------------------------------------------------- writing
    def _next_shard_name(self, split: str) -> str:
        used = {s["name"] for s in self._splits.get(split, [])}
        if self._existing is not None and (self.path / split).is_dir():
            used |= {p.name for p in (self.path / split).iterdir()}
        nums = [int(n) for n in used if n.isdigit()]
        return f"{(max(nums) + 1) if nums else 0:05d}"

    def _split_ids(self, split: str) -> set[str]:
        if split not in self._ids:
            ids: set[str] = set()
            if self._existing is not None and split in self._existing.splits:
                ids = set(self._existing.split(split).clip_ids)
            self._ids[split] = ids
        return self._ids[split]

    def contains(self, split: str, clip_id: str) -> bool:
        """Whether ``clip_id`` is already in ``split`` (in the existing store or added in this session)."""
        return clip_id in self._split_ids(split)

    def add(self, split: str, clip: Clip, image_bytes: bytes | None = None) -> None:
        """Validate ``clip`` and append it to ``split``.

        ``image_bytes`` (optional): an already-encoded JPEG/PNG of frame 0, stored as is (no
        re-encoding); it takes precedence over ``clip.image`` and must match ``clip.image_size``.
        """
        if self._stack is None:
            raise HandcastError("ClipStoreWriter.add called outside its 'with' block")
        _check_split_name(split)
        clip.validate()
        ids = self._split_ids(split)
        if clip.clip_id in ids:
            raise HandcastError(f"duplicate clip_id {clip.clip_id!r} in split '{split}'")
        if image_bytes is not None:
            _check_image_bytes(image_bytes, clip.image_size, clip.clip_id)
        elif clip.image is not None:
            image_bytes = encode_image(clip.image, self.image_format, self.jpeg_quality)
        w = self._open.get(split)
        if w is None:
            name = self._next_shard_name(split)
            w = self._open[split] = _ShardWriter(self._root / split / name)
        w.add(clip, image_bytes)
        ids.add(clip.clip_id)

    def commit(self) -> None:
        """Append mode: publish what was added so far (move shards in, replace the manifest).

        Later ``add`` calls start new shards. A crash after a commit keeps the committed clips,
        which is what resumable jobs need.
        """
        if self._existing is None:
            raise HandcastError("ClipStoreWriter.commit is only available with append=True on an existing store")
        done = self._close_open_shards()
        for split, entry in done.items():
            dest = self.path / split
            dest.mkdir(exist_ok=True)
            os.replace(self._root / split / entry["name"], dest / entry["name"])
            self._splits.setdefault(split, []).append(entry)
        if done or not (self.path / MANIFEST).exists():
            with atomic_path(self.path / MANIFEST) as tmp:
                tmp.write_text(json.dumps(_manifest(self._splits, self._created), indent=2) + "\n")


_STAGING_RE = re.compile(r"^\.staging-(?:(?P<pid>\d+)-)?[0-9a-f]{12}$")


def _clean_staging(store: Path) -> list[Path]:
    """Remove the ``.staging-*`` folders that killed appends left in ``store`` (their process is gone)."""
    removed = []
    for p in store.iterdir():
        m = _STAGING_RE.match(p.name)
        # a name without a pid comes from an older handcast, whose runs are long over
        if m and p.is_dir() and not (m["pid"] is not None and pid_alive(int(m["pid"]))):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ====================================================================== reading
_PART_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def confined(root: str | os.PathLike, *parts) -> Path:
    """``root / parts...`` for names read from a manifest, refused (one-line HandcastError) unless each part is a
    plain file or folder name (no '/', '..', absolute path, or link) leading inside ``root``."""
    root = Path(root)
    for part in parts:
        if not isinstance(part, str) or not _PART_RE.match(part) or part in (".", ".."):
            raise HandcastError(f"{root / MANIFEST}: refused path {part!r} (names in a manifest must be plain "
                                "names inside the store)")
    path = root.joinpath(*parts)
    try:
        inside = path.resolve().is_relative_to(root.resolve())
    except OSError:
        inside = False
    if not inside:
        raise HandcastError(f"{root / MANIFEST}: refused path {'/'.join(parts)!r}: it leads outside the store")
    return path


def _count(entry: dict, key: str, where: Path) -> int:
    v = entry.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise HandcastError(f"clip store manifest: shard {where}: {key} must be a count (integer >= 0), got {v!r}")
    return v


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _check_array(arr: np.ndarray, rel: str, rows: int, path: Path) -> None:
    """A stored array has the dtype and per-row shape the format says, and ``rows`` rows."""
    folder, name = rel.split("/")[0], rel.split("/")[-1][: -len(".npy")]
    if folder == "frames":
        want = FRAME_FIELDS.get(name)
    elif name in ("offsets", "image_offsets"):
        want = (np.dtype(np.int64), ())
    elif name in STRING_FIELDS:
        want = None
        if arr.dtype.kind != "U" or arr.ndim != 1:
            raise HandcastError(f"clip store file {path}: expected a 1-D unicode array, got {arr.dtype} {arr.shape}")
    else:
        want = CLIP_FILES.get(name)
    if arr.ndim == 0:
        raise HandcastError(f"clip store file {path}: a 0-d array, expected {rows} rows")
    if want is not None:
        dtype, shape = want
        if arr.dtype.kind not in "biuf" or tuple(arr.shape[1:]) != tuple(shape):
            dims = ", ".join(map(str, ("N", *shape)))
            raise HandcastError(f"clip store file {path}: expected {np.dtype(dtype).name} ({dims})"
                                f", got {arr.dtype} {arr.shape}")
    if arr.shape[0] != rows:
        raise HandcastError(f"clip store file {path} has {arr.shape[0]} rows, manifest says {rows}")


def _meta(shard: "_Shard", j: int) -> dict:
    try:
        meta = json.loads(shard.meta_line(j))
    except (ValueError, UnicodeDecodeError) as e:
        raise HandcastError(f"clip store file {shard.folder / 'meta.jsonl'}: line {j + 1} is not JSON "
                            f"({_first_line(e)})") from None
    if not isinstance(meta, dict):
        raise HandcastError(f"clip store file {shard.folder / 'meta.jsonl'}: line {j + 1} is not a JSON object")
    return meta


class _Shard:
    """Lazily memory-mapped files of one shard."""

    def __init__(self, folder: Path, entry: dict):
        self.folder = folder
        self.num_clips = _count(entry, "num_clips", folder)
        self.num_frames = _count(entry, "num_frames", folder)
        self._arrays: dict[str, np.ndarray] = {}
        self._meta_lines: list[bytes] | None = None
        self._images: np.ndarray | None = None

    def __getstate__(self):
        return {"folder": self.folder, "num_clips": self.num_clips, "num_frames": self.num_frames}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._arrays, self._meta_lines, self._images = {}, None, None

    def _load(self, rel: str, rows: int, mmap: bool) -> np.ndarray:
        path = self.folder / rel
        if not path.is_file():
            raise HandcastError(f"clip store is incomplete: missing {path}")
        try:
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except ValueError as e:
            raise HandcastError(f"clip store file {path} is not a plain .npy, or is truncated "
                                f"({_first_line(e)})") from None
        except Exception as e:  # noqa: BLE001 - EOFError / OSError / UnpicklingError for an empty or damaged file
            raise HandcastError(f"clip store file {path} is unreadable "
                                f"({type(e).__name__}: {_first_line(e)})") from None
        _check_array(arr, rel, rows, path)
        if isinstance(arr, np.memmap):
            # A plain ndarray view of the same mapping: slicing it skips np.memmap's per-slice overhead.
            arr = arr.view(np.ndarray)
        return arr

    def frames(self, name: str) -> np.ndarray:
        arr = self._arrays.get("f:" + name)
        if arr is None:
            arr = self._arrays["f:" + name] = self._load(f"frames/{name}.npy", self.num_frames, mmap=True)
        return arr

    def clips(self, name: str) -> np.ndarray:
        arr = self._arrays.get("c:" + name)
        if arr is None:
            if name in ("offsets", "image_offsets"):
                rows, mmap = self.num_clips + 1, False
            else:
                rows, mmap = self.num_clips, name not in STRING_FIELDS
            arr = self._load(f"clips/{name}.npy", rows, mmap=mmap)
            if name in ("offsets", "image_offsets"):
                self._check_offsets(name, arr)
            self._arrays["c:" + name] = arr
        return arr

    def _check_offsets(self, name: str, off: np.ndarray) -> None:
        path = self.folder / "clips" / f"{name}.npy"
        end = self.num_frames if name == "offsets" else _file_size(self.folder / "images.bin")
        if not off.shape[0]:
            return
        if off[0] != 0 or (np.diff(off) < 0).any():
            raise HandcastError(f"clip store file {path}: offsets must rise from 0, "
                                f"got {int(off[0])} .. {int(off[-1])}")
        if name == "offsets" and off[-1] != end:
            raise HandcastError(f"clip store file {path}: offsets end at {int(off[-1])} frames, manifest says {end}")
        if name == "image_offsets" and off[-1] > end:
            raise HandcastError(f"clip store file {path}: offsets ask for {int(off[-1])} bytes, "
                                f"images.bin holds {end}")

    def meta_line(self, j: int) -> bytes:
        if self._meta_lines is None:
            try:
                lines = (self.folder / "meta.jsonl").read_bytes().splitlines()
            except OSError as e:
                raise HandcastError(f"clip store file {self.folder / 'meta.jsonl'} is unreadable "
                                    f"({e.strerror or type(e).__name__})") from None
            if len(lines) != self.num_clips:
                raise HandcastError(f"clip store file {self.folder / 'meta.jsonl'} has {len(lines)} lines, "
                                    f"manifest says {self.num_clips}")
            self._meta_lines = lines
        return self._meta_lines[j]

    def image_bytes(self, j: int) -> bytes | None:
        off = self.clips("image_offsets")
        a, b = int(off[j]), int(off[j + 1])
        if b <= a:
            return None
        if self._images is None:
            path = self.folder / "images.bin"
            if _file_size(path) < int(off[-1]) or _file_size(path) == 0:
                raise HandcastError(f"clip store file {path} holds {_file_size(path)} bytes, its offsets ask for "
                                    f"{int(off[-1])} (truncated or missing)")
            self._images = np.memmap(path, dtype=np.uint8, mode="r")
        return self._images[a:b].tobytes()


class SplitView:
    """Read access to one split of a :class:`ClipStore`. Indexable like a sequence of :class:`Clip`.

    Safe to pickle (memory maps are reopened lazily), so it can go into DataLoader workers.
    """

    def __init__(self, root: Path, name: str, entry: dict):
        self.root, self.name = Path(root), name
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list) or not all(isinstance(s, dict) for s in shards):
            raise HandcastError(f"{self.root / MANIFEST}: split '{name}' has no list of shards")
        self._shards = [_Shard(confined(self.root, name, s.get("name")), s) for s in shards]
        counts = [s.num_clips for s in self._shards]
        self._clip_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._frame_start = np.concatenate([[0], np.cumsum([s.num_frames for s in self._shards])]).astype(np.int64)
        self._ids: dict[str, int] | None = None
        self._offsets: np.ndarray | None = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_ids"] = None
        return d

    def __len__(self) -> int:
        return int(self._clip_start[-1])

    @property
    def total_frames(self) -> int:
        """Number of frames over all clips of the split."""
        return int(self._frame_start[-1])

    def __repr__(self) -> str:
        return f"SplitView({str(self.root)!r}, {self.name!r}, clips={len(self)}, frames={self.total_frames})"

    def _locate(self, i: int) -> tuple[_Shard, int]:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"clip index {i} out of range for split '{self.name}' with {n} clips")
        if len(self._shards) == 1:
            return self._shards[0], i
        k = int(np.searchsorted(self._clip_start, i, side="right")) - 1
        return self._shards[k], i - int(self._clip_start[k])

    # -------------------------------------------------------------- per-clip access
    def num_frames(self, i: int) -> int:
        """Number of frames T of clip ``i``."""
        shard, j = self._locate(i)
        off = shard.clips("offsets")
        return int(off[j + 1] - off[j])

    def read(
        self, i: int, fields: Sequence[str] | None = None, start: int = 0, stop: int | None = None
    ) -> dict[str, np.ndarray]:
        """Only the requested arrays of clip ``i``, frames ``start:stop`` (copies, not views).

        ``fields`` may name per-frame fields (``FRAME_FIELDS``, returned with ``stop - start`` frames)
        and per-clip arrays ("betas", "K", "image_size", "fps"); default all of them.
        """
        shard, j = self._locate(i)
        off = shard.clips("offsets")
        a, b = int(off[j]), int(off[j + 1])
        s, e, _ = slice(start, stop).indices(b - a)
        out: dict[str, np.ndarray] = {}
        for name in FRAME_FIELDS if fields is None else fields:
            if name in FRAME_FIELDS:
                out[name] = np.array(shard.frames(name)[a + s : a + e])
            elif name in CLIP_FILES:
                out[name] = np.array(shard.clips(name)[j])
            else:
                raise HandcastError(f"unknown clip field {name!r} (per-frame: {', '.join(FRAME_FIELDS)}; "
                                    f"per-clip: {', '.join(CLIP_FILES)})")
        if fields is None:
            for name in CLIP_FILES:
                out[name] = np.array(shard.clips(name)[j])
        return out

    def strings(self, i: int) -> dict[str, str]:
        """The string fields of clip ``i``: clip_id, provenance, domain, hand_model, group_id."""
        shard, j = self._locate(i)
        return {n: str(shard.clips(n)[j]) for n in STRING_FIELDS}

    def meta(self, i: int) -> dict:
        """The clip's ``meta`` dict."""
        shard, j = self._locate(i)
        return _meta(shard, j)

    def image_bytes(self, i: int) -> bytes | None:
        """The stored encoded first-frame image (JPEG or PNG bytes), or None."""
        shard, j = self._locate(i)
        return shard.image_bytes(j)

    def image(self, i: int) -> np.ndarray | None:
        """First-frame RGB image, uint8 (height, width, 3), decoded now; None if the clip has none."""
        data = self.image_bytes(i)
        if data is None:
            return None
        try:
            return decode_image(data)
        except Exception as e:  # noqa: BLE001 - PIL raises several error types for damaged bytes
            shard, j = self._locate(i)
            raise HandcastError(f"clip store {shard.folder / 'images.bin'}: image of clip {j} is not a readable "
                                f"JPEG/PNG ({type(e).__name__})") from None

    def has_image(self) -> np.ndarray:
        """bool (N,) whether each clip has a stored image."""
        return np.concatenate([np.diff(s.clips("image_offsets")) > 0 for s in self._shards] or [np.zeros(0, bool)])

    def __getitem__(self, i: int) -> Clip:
        return self.load(i)

    def load(self, i: int, image: bool = True) -> Clip:
        """Clip ``i`` (arrays are copies). ``image=False`` skips decoding the image (faster)."""
        shard, j = self._locate(i)
        arr = self.read(i)
        strings = self.strings(i)
        w, h = arr["image_size"]
        return Clip(
            pose=arr["pose"], transl=arr["transl"], betas=arr["betas"], valid=arr["valid"],
            joints3d=arr["joints3d"], kp2d=arr["kp2d"], kp2d_conf=arr["kp2d_conf"], K=arr["K"],
            world_to_cam=arr["world_to_cam"], image_size=(int(w), int(h)), fps=float(arr["fps"]),
            image=self.image(i) if image else None, meta=_meta(shard, j), **strings,
        )

    def iter_clips(self, image: bool = True) -> Iterator[Clip]:
        """All clips in order."""
        for i in range(len(self)):
            yield self.load(i, image=image)

    def __iter__(self) -> Iterator[Clip]:
        return self.iter_clips()

    # -------------------------------------------------------------- ids
    @property
    def clip_ids(self) -> list[str]:
        """Clip ids in index order."""
        return [str(x) for s in self._shards for x in s.clips("clip_id")]

    def index_of(self, clip_id: str) -> int:
        """Index of ``clip_id``; HandcastError if absent."""
        if self._ids is None:
            self._ids = {cid: k for k, cid in enumerate(self.clip_ids)}
        try:
            return self._ids[clip_id]
        except KeyError:
            raise HandcastError(f"unknown clip_id {clip_id!r} in split '{self.name}'") from None

    def get(self, clip_id: str) -> Clip:
        """The clip with id ``clip_id``."""
        return self[self.index_of(clip_id)]

    def __contains__(self, clip_id: object) -> bool:
        if self._ids is None:
            self._ids = {cid: k for k, cid in enumerate(self.clip_ids)}
        return clip_id in self._ids

    # -------------------------------------------------------------- vectorised access
    @property
    def frame_offsets(self) -> np.ndarray:
        """int64 (N+1,): clip i owns rows ``frame_offsets[i]:frame_offsets[i+1]`` of :meth:`frames`."""
        if self._offsets is None:
            parts = [np.zeros(1, np.int64)]
            for s, base in zip(self._shards, self._frame_start[:-1]):
                parts.append(np.asarray(s.clips("offsets")[1:], dtype=np.int64) + base)
            self._offsets = np.concatenate(parts)
        return self._offsets

    @property
    def lengths(self) -> np.ndarray:
        """int64 (N,) number of frames per clip."""
        return np.diff(self.frame_offsets)

    def frames(self, field: str) -> np.ndarray:
        """A per-frame field over all clips, (total_frames, ...) concatenated in clip order.

        A read-only memory map when the split has one shard (no copy); with several shards
        (after appends) the shards are concatenated into memory — use :meth:`frame_chunks` to stay
        out of RAM. Pair with :attr:`frame_offsets`.
        """
        if field not in FRAME_FIELDS:
            raise HandcastError(f"unknown per-frame field {field!r} (expected one of {', '.join(FRAME_FIELDS)})")
        if len(self._shards) == 1:
            return self._shards[0].frames(field)
        if not self._shards:
            dtype, shape = FRAME_FIELDS[field]
            return np.zeros((0, *shape), dtype)
        return np.concatenate([s.frames(field) for s in self._shards])

    def frame_chunks(self, field: str) -> Iterator[np.ndarray]:
        """The memory maps of ``field`` shard by shard, in clip order (no copies)."""
        if field not in FRAME_FIELDS:
            raise HandcastError(f"unknown per-frame field {field!r} (expected one of {', '.join(FRAME_FIELDS)})")
        for s in self._shards:
            yield s.frames(field)

    def clip_field(self, field: str) -> np.ndarray:
        """A per-clip field over all clips, (N, ...): betas, K, image_size, fps or a string field."""
        if field not in CLIP_FILES and field not in STRING_FIELDS:
            raise HandcastError(f"unknown per-clip field {field!r} (expected one of "
                                f"{', '.join([*CLIP_FILES, *STRING_FIELDS])})")
        if len(self._shards) == 1:
            return self._shards[0].clips(field)
        parts = [np.asarray(s.clips(field)) for s in self._shards]
        if not parts:
            return np.zeros(0, dtype=str) if field in STRING_FIELDS else np.zeros((0, *CLIP_FILES[field][1]))
        return np.concatenate(parts)


class ClipStore:
    """Open a clip store folder read-only.

    ``store.splits`` lists split names; ``store.split(name)`` (or ``store[name]``) gives a
    :class:`SplitView`. Raises HandcastError for a missing folder, an unreadable manifest, or an
    unknown format/version.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        mpath = self.path / MANIFEST
        if not mpath.is_file():
            if not self.path.exists():
                raise HandcastError(f"clip store not found: {self.path}")
            raise HandcastError(f"not a handcast clip store (no {MANIFEST}): {self.path}")
        try:
            manifest = json.loads(mpath.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise HandcastError(f"{mpath}: unreadable manifest ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            fmt = manifest.get("format") if isinstance(manifest, dict) else None
            raise HandcastError(f"{mpath}: format {fmt!r} is not {FORMAT!r}")
        if manifest.get("version") != VERSION:
            raise HandcastError(
                f"{mpath}: clip store version {manifest.get('version')!r} is not supported (this handcast reads "
                f"version {VERSION})"
            )
        if not isinstance(manifest.get("splits"), dict):
            raise HandcastError(f"{mpath}: manifest has no 'splits' table")
        self.manifest = manifest
        self._views: dict[str, SplitView] = {}

    @property
    def splits(self) -> tuple[str, ...]:
        """Split names in manifest order."""
        return tuple(self.manifest["splits"])

    @property
    def hand_model(self) -> str | None:
        """"open", "mano", "mixed" or None (empty store)."""
        return self.manifest.get("hand_model")

    def split(self, name: str) -> SplitView:
        """The :class:`SplitView` of ``name``; HandcastError listing the splits if unknown."""
        if name not in self.manifest["splits"]:
            have = ", ".join(self.splits) or "no splits"
            raise HandcastError(f"unknown split {name!r} (store has: {have})")
        view = self._views.get(name)
        if view is None:
            confined(self.path, name)
            view = self._views[name] = SplitView(self.path, name, self.manifest["splits"][name])
        return view

    __getitem__ = split

    def __contains__(self, name: object) -> bool:
        return name in self.manifest["splits"]

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={v['num_clips']}" for k, v in self.manifest["splits"].items())
        return f"ClipStore({str(self.path)!r}, {parts})"


def write_clips(path: str | os.PathLike, clips_by_split: dict[str, Sequence[Clip]], **kwargs) -> ClipStore:
    """Convenience: write ``{split: clips}`` to a new store at ``path`` and open it."""
    with ClipStoreWriter(path, **kwargs) as w:
        for split, clips in clips_by_split.items():
            for clip in clips:
                w.add(split, clip)
    return ClipStore(path)


def compact_store(src: str | os.PathLike, dst: str | os.PathLike, overwrite: bool = False) -> ClipStore:
    """Copy a store into a new one with a single shard per split (after many appends).

    Images are copied as stored (no re-encoding).
    """
    store = ClipStore(src)
    with ClipStoreWriter(dst, overwrite=overwrite) as w:
        for name in store.splits:
            view = store.split(name)
            for i in range(len(view)):
                w.add(name, view.load(i, image=False), image_bytes=view.image_bytes(i))
    return ClipStore(dst)


def check_store(path: str | os.PathLike, finite: bool = True) -> list[str]:
    """Every problem of the clip store at ``path``, one line each ([] for a sound store): the manifest (format,
    split and shard names confined to the store, counts), every file of every shard (present, plain ``.npy``
    of the right dtype, shape and length; offsets rising within the frames and within ``images.bin``;
    ``meta.jsonl`` one JSON object per clip; images readable JPEG/PNG of the stored size), per-clip values
    (K with positive focal lengths, image_size and fps positive), with ``finite`` non-finite per-frame values,
    and leftovers of interrupted writes (``.staging-*``, temporaries)."""
    from PIL import Image

    problems: list[str] = []
    try:
        store = ClipStore(path)
    except HandcastError as e:
        return [str(e)]
    root = store.path
    for name in store.splits:
        try:
            view = store.split(name)
        except HandcastError as e:
            problems.append(str(e))
            continue
        entry = store.manifest["splits"][name]
        if isinstance(entry, dict) and entry.get("num_clips") not in (None, len(view)):
            problems.append(f"{root / MANIFEST}: split '{name}' says {entry.get('num_clips')!r} clips, its shards hold "
                            f"{len(view)}")
        for shard in view._shards:
            where = f"{name}/{shard.folder.name}"
            if not shard.folder.is_dir():
                problems.append(f"clip store is incomplete: missing shard folder {shard.folder}")
                continue

            def attempt(fn, *a):
                try:
                    return fn(*a)
                except HandcastError as e:
                    problems.append(str(e))
                except Exception as e:  # noqa: BLE001 - a checker reports, it does not crash
                    problems.append(f"{where}: {type(e).__name__}: {_first_line(e)}")
                return None

            for field in FRAME_FIELDS:
                arr = attempt(shard.frames, field)
                if finite and arr is not None and arr.dtype.kind == "f":
                    bad = attempt(lambda a: int((~np.isfinite(a)).reshape(len(a), -1).any(1).sum()) if len(a) else 0,
                                  arr)
                    if bad:
                        problems.append(f"{shard.folder / 'frames' / (field + '.npy')}: {bad} frame(s) with "
                                        "non-finite values")
            w2c = attempt(shard.frames, "world_to_cam")
            if w2c is not None and len(w2c):
                w = np.asarray(w2c, np.float64)
                R = w[:, :3, :3]
                ok = np.isfinite(w).all((1, 2))
                with np.errstate(invalid="ignore"):
                    ok &= (np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max((1, 2)) <= 1e-3)
                    ok &= (np.linalg.det(np.where(np.isfinite(R), R, 0)) > 0)
                    ok &= (np.abs(w[:, 3] - [0, 0, 0, 1]).max(1) <= 1e-6)
                if not ok.all():
                    problems.append(f"{shard.folder / 'frames' / 'world_to_cam.npy'}: {int((~ok).sum())} frame(s) "
                                    "whose camera is not a rigid transform")
            clip = {f: attempt(shard.clips, f) for f in (*CLIP_FILES, *STRING_FIELDS, "offsets", "image_offsets")}
            if clip["K"] is not None and len(clip["K"]):
                K = np.asarray(clip["K"], np.float64)
                bad = ~np.isfinite(K).all((1, 2)) | (K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0)
                if bad.any():
                    problems.append(f"{shard.folder / 'clips' / 'K.npy'}: {int(bad.sum())} clip(s) with a non-finite "
                                    "K or a focal length <= 0")
            if clip["image_size"] is not None and (np.asarray(clip["image_size"]) <= 0).any():
                problems.append(f"{shard.folder / 'clips' / 'image_size.npy'}: sizes must be positive")
            if clip["fps"] is not None:
                fps = np.asarray(clip["fps"], np.float64)
                if (~np.isfinite(fps) | (fps <= 0)).any():
                    problems.append(f"{shard.folder / 'clips' / 'fps.npy'}: fps must be finite and positive")
            meta_ok = attempt(shard.meta_line, 0) if shard.num_clips else None
            if meta_ok is not None:
                for j in range(shard.num_clips):
                    if attempt(_meta, shard, j) is None:
                        break
            if clip["image_offsets"] is not None:
                sizes = clip["image_size"]
                for j in range(shard.num_clips):
                    data = attempt(shard.image_bytes, j)
                    if not data:
                        if problems and "images.bin" in problems[-1]:
                            break
                        continue
                    try:
                        with Image.open(_io.BytesIO(data)) as im:
                            fmt, size = im.format, im.size
                            im.verify()
                    except Exception as e:  # noqa: BLE001
                        problems.append(f"{shard.folder / 'images.bin'}: image of clip {j} is not a readable "
                                        f"JPEG/PNG ({type(e).__name__})")
                        continue
                    if fmt not in ("JPEG", "PNG"):
                        problems.append(f"{shard.folder / 'images.bin'}: image of clip {j} is {fmt}, not JPEG/PNG")
                    elif sizes is not None and tuple(size) != tuple(int(x) for x in sizes[j]):
                        problems.append(f"{shard.folder / 'images.bin'}: image of clip {j} is {size[0]}x{size[1]}, "
                                        f"image_size says {tuple(int(x) for x in sizes[j])}")
    for p in sorted(root.iterdir()):
        if _STAGING_RE.match(p.name) or (p.name.startswith(".") and p.name.endswith(".tmp")):
            problems.append(f"{p}: leftover of an interrupted write (the next append removes it, or remove it)")
    return problems
