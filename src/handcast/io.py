"""Atomic file output: nothing half-written is ever left behind.

Every writer in handcast goes through :func:`atomic_path` (or :func:`atomic_dir`): the data is
written to a temporary sibling and renamed into place only when the writer finished without error.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from handcast.errors import HandcastError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it to ``path`` on success.

    The temporary keeps ``path``'s suffix so libraries that dispatch on it still work.
    On any exception the temporary is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it to ``path`` on success.

    With ``overwrite`` an existing folder at ``path`` is replaced only after the new one is complete.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        from handcast.errors import HandcastError

        raise HandcastError(f"output folder already exists: {path} (remove it or pass --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp_path
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp_path, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp_path, path)
    except BaseException:
        shutil.rmtree(tmp_path, ignore_errors=True)
        raise


def save_npz(path: str | os.PathLike, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Write arrays to an ``.npz`` atomically (no object arrays: loadable with allow_pickle=False)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; handcast never writes pickled arrays")
    with atomic_path(path) as tmp:
        (np.savez_compressed if compressed else np.savez)(tmp, **arrays)


def load_npz(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Read an ``.npz`` safely (never unpickles) and check that ``required`` keys exist.

    Raises HandcastError with a one-line message for a missing, corrupt or incomplete file.
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"file not found: {path}")
    if not zipfile.is_zipfile(path):  # np.load would otherwise try to read it as a pickle / .npy
        raise HandcastError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except ValueError as e:
        raise HandcastError(f"{path}: contains pickled objects, refused ({e})") from None
    except Exception as e:  # zipfile.BadZipFile, OSError, EOFError ...
        raise HandcastError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    missing = [k for k in required if k not in data]
    if missing:
        raise HandcastError(f"{path}: missing array(s) {', '.join(missing)}")
    return data


def numeric_field(data, key: str, src: str) -> np.ndarray:
    """``data[key]`` as an array; HandcastError (naming ``src``) unless it is numeric (bool, int or float)."""
    a = np.asarray(data[key])
    if a.dtype.kind not in "biuf":
        raise HandcastError(f"{src}: {key} must be numeric, got dtype {a.dtype}")
    return a


def check_world_to_cam(w2c: np.ndarray, num_frames: int, src: str) -> np.ndarray:
    """``w2c`` as float64 (T, 4, 4) after checking it is a finite rigid transform (rotation + translation) in
    every one of ``num_frames`` frames; HandcastError (naming ``src``) otherwise."""
    w2c = np.asarray(w2c, np.float64)
    T = int(num_frames)
    if w2c.shape != (T, 4, 4) or not np.isfinite(w2c).all():
        raise HandcastError(f"{src}: world_to_cam must be finite (T, 4, 4) = ({T}, 4, 4), got {w2c.shape}")
    R = w2c[:, :3, :3]
    if (np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max() > 1e-3 or (np.linalg.det(R) <= 0).any()
            or np.abs(w2c[:, 3] - [0, 0, 0, 1]).max() > 1e-6):
        raise HandcastError(f"{src}: world_to_cam is not a rigid transform (rotation + translation) in every frame")
    return w2c
