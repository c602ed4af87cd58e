"""Safe readers of the file formats the dataset converters meet: JSON, YAML, text tables of numbers,
pickles and object ``.npy`` files (through the restricted unpickler, never ``pickle.load``), JPEG/PNG
images. Each raises a one-line :class:`HandcastError` for a missing or malformed file.
"""

from __future__ import annotations

import io as _io
import json
from pathlib import Path
from typing import Any, Callable, Sequence as _Seq

import numpy as np

from handcast.errors import HandcastError

# An image callback (``Sequence.image``): frame index -> (encoded bytes or None, uint8 RGB array or None).
ImageCallback = Callable[[int], tuple[bytes | None, np.ndarray | None]]


def rel(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` where it lies inside it, else ``path`` as given."""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def first_existing(paths: _Seq[Path]) -> Path | None:
    """The first of ``paths`` that is a file, or None."""
    for p in paths:
        if Path(p).is_file():
            return Path(p)
    return None


def existing_file(path: Path) -> Path:
    """``path`` as a Path; HandcastError 'missing file <path>' if it is not a file."""
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"missing file {path}")
    return path


def read_json(path: Path) -> Any:
    """Parse a JSON file; HandcastError (one line) if missing or malformed."""
    path = existing_file(path)
    try:
        with open(path, "rb") as fh:
            return json.loads(fh.read().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise HandcastError(f"malformed JSON in {path} ({' '.join(str(e).split())})") from None


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with the safe loader; HandcastError if missing or malformed."""
    import yaml

    path = existing_file(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise HandcastError(f"malformed YAML in {path} ({' '.join(str(e).split())[:200]})") from None


def read_floats(path: Path, count: int | None = None, sep: str | None = None) -> np.ndarray:
    """All numbers of a whitespace- (or ``sep``-) separated text file as float64 (n,)."""
    path = existing_file(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        vals = np.array([float(x) for x in (text.split(sep) if sep else text.split()) if x.strip()], dtype=np.float64)
    except ValueError as e:
        raise HandcastError(f"malformed numbers in {path} ({e})") from None
    if count is not None and vals.size != count:
        raise HandcastError(f"{path}: expected {count} numbers, found {vals.size}")
    return vals


def as_array(x: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``x`` as float64 of exactly ``shape`` (after a reshape of the same size); HandcastError otherwise."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise HandcastError(f"{what}: not a numeric array") from None
    if arr.size != int(np.prod(shape)):
        raise HandcastError(f"{what}: expected shape {shape}, got {arr.shape}")
    return arr.reshape(shape)


# ---------------------------------------------------------------------------- pickles
def read_pickle(path: Path) -> Any:
    """Load a dataset pickle (Python 2 or 3) with the restricted unpickler of
    :func:`handcast.hand.mano_import.load_data_pickle` (plain data and numpy arrays only; anything
    else is refused before it could run); HandcastError on failure."""
    from handcast.hand.mano_import import load_data_pickle

    path = existing_file(path)
    try:
        with open(path, "rb") as fh:
            return load_data_pickle(fh)
    except Exception as e:  # UnpicklingError, EOFError, ValueError ...
        raise HandcastError(f"unreadable pickle {path} ({type(e).__name__}: {' '.join(str(e).split())})") from None


def read_npy_object(path: Path) -> Any:
    """Read a ``.npy`` written by ``np.save`` of a Python object (e.g. a dict), without ``allow_pickle``:
    the header is parsed by numpy and the pickled payload goes through the restricted unpickler
    (:func:`read_pickle`). Plain numeric ``.npy`` files are returned as arrays."""
    from handcast.hand.mano_import import load_data_pickle

    path = existing_file(path)
    fmt = np.lib.format
    try:
        with open(path, "rb") as fh:
            version = fmt.read_magic(fh)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(fh)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(fh)
            if dtype != np.dtype(object):
                fh.seek(0)
                return np.load(fh, allow_pickle=False)
            obj = load_data_pickle(fh)
    except Exception as e:
        raise HandcastError(f"unreadable .npy file {path} ({type(e).__name__}: {' '.join(str(e).split())})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        return obj.item()
    return obj


# ---------------------------------------------------------------------------- images
def image_size_of(data: bytes) -> tuple[int, int] | None:
    """(width, height) of JPEG/PNG bytes, or None if unreadable or another format."""
    from PIL import Image

    try:
        with Image.open(_io.BytesIO(data)) as im:
            if im.format not in ("JPEG", "PNG"):
                return None
            return tuple(im.size)  # type: ignore[return-value]
    except Exception:
        return None


def decode_rgb(data: bytes) -> np.ndarray | None:
    """JPEG/PNG (any mode) bytes -> uint8 (H, W, 3) RGB, or None if unreadable."""
    from PIL import Image

    try:
        with Image.open(_io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"))
    except Exception:
        return None


def image_files(path_of: Callable[[int], Path | None]) -> ImageCallback:
    """An image callback reading frame ``i`` from the file ``path_of(i)`` (its encoded bytes, not
    decoded); (None, None) where that is None or not a file."""
    def load(i: int) -> tuple[bytes | None, np.ndarray | None]:
        p = path_of(i)
        return (p.read_bytes(), None) if p is not None and p.is_file() else (None, None)

    return load
