"""Atomic file output: nothing half-written is ever left behind.

Every writer in handcast goes through :func:`atomic_path` (or :func:`atomic_dir`): the data is
written to a temporary sibling and renamed into place only when the writer finished without error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from handcast.errors import HandcastError

# Temporaries are named ".<final name>.<pid>.<random>.tmp[<suffix>]" beside their final path, so the next run
# can tell a dead run's leftovers (its pid no longer runs) from a live writer's and remove them.
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[^/]*)?$")
# OS errors of writing that are the environment's fault (not a bug): turned into one-line HandcastErrors.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
                 errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.ENOTEMPTY, errno.EXDEV}


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def os_error(e: OSError, path: str | os.PathLike, doing: str = "write") -> HandcastError:
    """A one-line HandcastError for an OS error met while doing ``doing`` to ``path``."""
    why = e.strerror or type(e).__name__
    return HandcastError(f"cannot {doing} {path}: {why}")


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (this process counts; a pid we may not signal counts as running)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove the temporaries (files or folders) that a killed handcast run left in ``folder`` (only those of
    final name ``name`` if given): the ones whose writer's pid no longer runs. Returns what was removed."""
    folder = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir()) if folder.is_dir() else []
    except OSError:
        return removed
    for p in entries:
        m = _TMP_RE.match(p.name)
        if not m or (name is not None and m["name"] != name) or pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
    return removed


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """The existing regular file (or other non-folder) among ``path``'s parents that stops ``path`` from being
    created under it, or None."""
    return next((p for p in Path(path).parents if p.exists() and not p.is_dir()), None)


def make_dirs(path: str | os.PathLike) -> Path:
    """Create folder ``path`` (and its parents) if missing; one-line HandcastError when it cannot be (a file
    is in the way, no permission, read-only file system ...)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HandcastError(f"cannot create folder {path}: a file of that name exists")
    if (parent := file_in_the_way(path)) is not None:
        raise HandcastError(f"cannot create folder {path}: {parent} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, path, "create folder") from None
    return path


def check_output_file(path: str | os.PathLike, overwrite: bool = True, suffix: str | None = None,
                      flag: str = "--out") -> Path:
    """``path`` as an output file path, checked before any work: not a folder, ``suffix`` (e.g. ".npz") if
    given, not an existing file unless ``overwrite``, and a parent that is (or can become) a folder.
    One-line HandcastError otherwise."""
    path = Path(path)
    if str(path).endswith(os.sep) or path.is_dir():
        raise HandcastError(f"{flag} {path} is a folder; give a file name"
                            + (f" ending in {suffix}" if suffix else ""))
    if suffix and path.suffix.lower() != suffix:
        raise HandcastError(f"{flag} {path} must end in {suffix} (e.g. {path.name}{suffix})")
    if path.exists() and not overwrite:
        raise HandcastError(f"{flag} {path} already exists (remove it or pass --overwrite)")
    if (parent := file_in_the_way(path)) is not None:
        raise HandcastError(f"{flag} {path}: {parent} is a file, not a folder")
    return path


def check_output_dir(path: str | os.PathLike, overwrite: bool = True, flag: str = "--out",
                     replaceable: tuple[str, ...] | None = None) -> Path:
    """``path`` as an output folder, checked before any work: not an existing file, no file among its
    parents, and (unless ``overwrite``) not an existing folder. ``replaceable``: the folder will be replaced
    as a whole, so an existing one may hold only these names (a command's own earlier output), never
    other files of the user's. One-line HandcastError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HandcastError(f"{flag} {path} is an existing file, expected a folder (refusing to touch it)")
    if path.exists() and not overwrite:
        raise HandcastError(f"output folder already exists: {path} (remove it or pass --overwrite)")
    if path.is_dir() and replaceable is not None:
        other = sorted(p.name for p in path.iterdir() if p.name not in replaceable)
        if other:
            raise HandcastError(f"{flag} {path} holds other files ({', '.join(other[:3])}"
                                f"{', ...' if len(other) > 3 else ''}); --overwrite replaces only an earlier "
                                "output folder of this command: give another --out")
    if (parent := file_in_the_way(path)) is not None:
        raise HandcastError(f"{flag} {path}: {parent} is a file, not a folder")
    return path


def _tmp_name(path: Path) -> str:
    return f".{path.name}.{os.getpid()}."


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the same folder; rename it to ``path`` on success.

    The temporary keeps ``path``'s suffix so libraries that dispatch on it still work. It gets the umask's
    permissions. On any exception (Ctrl-C included) the temporary is removed and ``path`` is left untouched;
    OS errors of writing (disk full, no permission, a folder in the way ...) become one-line HandcastErrors.
    """
    path = Path(path)
    if path.is_dir():
        raise HandcastError(f"cannot write {path}: it is a folder")
    make_dirs(path.parent)
    clean_stale_temps(path.parent, path.name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_tmp_name(path), suffix=f".tmp{path.suffix}", dir=path.parent)
    except OSError as e:
        raise os_error(e, path) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            raise os_error(e, path) from None
        raise


#: a results report's line below which a reader's notes live; :func:`write_report_text` keeps them on a re-run
KEEP_BELOW = "<!-- handcast: written by hand below this line, kept when the report is re-run -->"


def write_report_text(path: str | os.PathLike, text: str) -> None:
    """Write a generated Markdown report to ``path`` atomically (:func:`atomic_path`). If the file there has the
    line :data:`KEEP_BELOW`, that line and everything after it (the notes written under the tables) are kept,
    after the new text."""
    path = Path(path)
    kept = ""
    if path.is_file():
        old = path.read_text(errors="replace")
        i = old.find("\n" + KEEP_BELOW)
        if old.startswith(KEEP_BELOW):
            kept = old
        elif i >= 0:
            kept = old[i + 1:]
    if kept:
        text = text.rstrip("\n") + "\n\n" + kept
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _replace_dir(tmp_path: Path, path: Path) -> None:
    """Move folder ``tmp_path`` to ``path``, replacing an existing folder only once the move can no longer fail
    half-way: the old folder is set aside, and put back if the move fails."""
    if not path.exists():
        os.replace(tmp_path, path)
        return
    old = Path(tempfile.mkdtemp(prefix=_tmp_name(path), suffix=".tmp", dir=path.parent))
    os.rmdir(old)
    os.replace(path, old)
    try:
        os.replace(tmp_path, path)
    except BaseException:
        os.replace(old, path)  # put the user's folder back
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; move it to ``path`` on success.

    With ``overwrite`` an existing folder at ``path`` is replaced only after the new one is complete (and kept
    if the move fails); an existing *file* at ``path`` is never replaced by a folder. The folder gets the
    umask's permissions. On failure or Ctrl-C the temporary folder is removed; a killed run's temporaries
    are removed by the next run writing ``path``.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise HandcastError(f"output folder {path} exists and is a file (refusing to replace a file with a folder)")
    if path.exists() and not overwrite:
        raise HandcastError(f"output folder already exists: {path} (remove it or pass --overwrite)")
    make_dirs(path.parent)
    clean_stale_temps(path.parent, path.name)
    try:
        tmp_path = Path(tempfile.mkdtemp(prefix=_tmp_name(path), suffix=".tmp", dir=path.parent))
    except OSError as e:
        raise os_error(e, path, "create folder") from None
    try:
        os.chmod(tmp_path, 0o777 & ~_umask())  # mkdtemp makes 0700
        yield tmp_path
        _replace_dir(tmp_path, path)
    except BaseException as e:
        shutil.rmtree(tmp_path, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            raise os_error(e, path) from None
        raise


@contextlib.contextmanager
def atomic_outputs(out_dir: str | os.PathLike, names: list[str] | None = None,
                   overwrite: bool = True) -> Iterator[Path]:
    """Write several files that belong together (an npz, its PNG and video; a set of meshes) into a
    temporary folder; move them into ``out_dir`` only when the block succeeds. A new ``out_dir`` appears in
    one rename, complete; into an existing folder the finished files are moved one by one (never a partial
    one). ``names`` (optional): the file names that will be written, checked first against existing files
    (refused unless ``overwrite``). On failure or Ctrl-C nothing is left."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise HandcastError(f"output folder {out_dir} exists and is a file")
    if names and not overwrite and out_dir.is_dir():
        clash = [n for n in names if (out_dir / n).exists()]
        if clash:
            raise HandcastError(f"{out_dir / clash[0]} already exists (remove it or pass --overwrite)")
    if not out_dir.is_dir():
        with atomic_dir(out_dir) as tmp:
            yield tmp
        return
    clean_stale_temps(out_dir, "outputs")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=_tmp_name(out_dir / "outputs"), suffix=".tmp", dir=out_dir))
    except OSError as e:
        raise os_error(e, out_dir, "write into") from None
    try:
        yield tmp
        for p in sorted(tmp.iterdir()):
            dest = out_dir / p.name
            if dest.is_dir() and not p.is_dir():
                raise HandcastError(f"cannot write {dest}: it is a folder")
            if p.is_file():
                os.chmod(p, 0o666 & ~_umask())
            os.replace(p, dest)
        os.rmdir(tmp)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError) and e.errno in _WRITE_ERRNOS:
            raise os_error(e, out_dir, "write into") from None
        raise


def save_npz(path: str | os.PathLike, compressed: bool = False, **arrays: np.ndarray) -> None:
    """Write arrays to ``path`` exactly (whatever its suffix; numpy would add ``.npz`` to a name without one),
    atomically (no object arrays: loadable with allow_pickle=False)."""
    for name, arr in arrays.items():
        if np.asarray(arr).dtype == object:
            raise TypeError(f"array {name!r} has dtype object; handcast never writes pickled arrays")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a file object: numpy writes to it as is, adding no suffix
            (np.savez_compressed if compressed else np.savez)(f, **arrays)


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
