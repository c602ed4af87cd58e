"""Convert the official MANO pickles to safe ``.npz`` files, without chumpy and without running code.

The official MANO_RIGHT.pkl / MANO_LEFT.pkl are Python-2 pickles holding numpy arrays, scipy
sparse matrices and chumpy ``Ch`` objects. A pickle can name any importable callable, so they are
read with a restricted unpickler: ``find_class`` admits only an explicit allow-list (numpy array
reconstruction, scipy sparse matrices, chumpy ``Ch`` and a few harmless builtins), and chumpy /
scipy classes are replaced by inert stand-ins that only record their state. Anything else (for
example ``os.system``) is refused with a :class:`HandcastError` before it could be called.
The same unpickler with only the plain-data part of that list reads the dataset annotation pickles
(:func:`load_data_pickle`, used by :mod:`handcast.data.prepare`).

The result is written as ``MANO_RIGHT.npz`` / ``MANO_LEFT.npz`` (no object arrays; load with
``allow_pickle=False``) into ``$HANDCAST_HOME/mano`` (``HANDCAST_HOME`` defaults to
``~/.local/share/handcast``), where :class:`handcast.hand.HandModel` finds them.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from handcast.errors import HandcastError
from handcast.io import atomic_outputs, save_npz

MANO_KEYS = ("v_template", "f", "weights", "J_regressor", "shapedirs", "posedirs", "kintree_table",
             "hands_components", "hands_mean")


def handcast_home() -> Path:
    """``$HANDCAST_HOME`` (default ``~/.local/share/handcast``), read at call time."""
    return Path(os.environ.get("HANDCAST_HOME") or "~/.local/share/handcast").expanduser()


def default_mano_dir() -> Path:
    """Where converted MANO files live by default: ``$HANDCAST_HOME/mano``."""
    return handcast_home() / "mano"


# ----------------------------------------------------------------------------------------------
# Inert stand-ins
# ----------------------------------------------------------------------------------------------

class _StandIn:
    """Records the state a pickle BUILDs into it; has no other behaviour."""

    _origin = "?"

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "_state", state)


class _ChStandIn(_StandIn):
    """Stands for chumpy.ch.Ch: its state dict keeps the value under 'x'."""

    _origin = "chumpy.ch.Ch"


class _CscStandIn(_StandIn):
    _origin = "scipy.sparse.csc_matrix"
    _format = "csc"


class _CsrStandIn(_StandIn):
    _origin = "scipy.sparse.csr_matrix"
    _format = "csr"


def _numpy_module(sub: str):
    """numpy's ``_core.<sub>`` (numpy >= 2) or ``core.<sub>`` (numpy 1.x)."""
    import importlib

    for prefix in ("numpy._core", "numpy.core"):
        try:
            return importlib.import_module(f"{prefix}.{sub}")
        except ImportError:  # pragma: no cover - depends on the numpy version
            continue
    raise ImportError(sub)  # pragma: no cover


def _refuse(what: str) -> HandcastError:
    if what.split(".")[0] == "chumpy":
        return HandcastError(f"unsupported chumpy object '{what}' in the MANO file (only chumpy.ch.Ch is understood)")
    return HandcastError(f"refused: pickle wants to load '{what}', which is not on the allow-list for MANO "
                         "model files (a pickle that tries to run code is never executed)")


def _refuse_data(what: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(f"refused to load '{what}' (only numpy arrays and plain data are allowed in "
                                  "dataset pickles)")


def _safe_reconstructor(cls, base, state):
    """copyreg._reconstructor restricted to our stand-ins built on ``object``."""
    if not (isinstance(cls, type) and issubclass(cls, _StandIn)) or base is not object or state is not None:
        raise _refuse("copy_reg._reconstructor with a class that is not allowed")
    return object.__new__(cls)


def _plain_data_allow_list(refuse: Callable[[str], Exception]) -> dict[tuple[str, str], Any]:
    """numpy arrays and scalars, bytes (as protocol-2 pickles write them), set and frozenset."""
    ma, num = _numpy_module("multiarray"), _numpy_module("numeric")

    def safe_encode(obj, encoding="utf-8"):
        """_codecs.encode as used by protocol-2 pickles of bytes: str -> latin-1 bytes only."""
        if not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
            raise refuse("_codecs.encode with unexpected arguments")
        return obj.encode("latin1")

    allowed: dict[tuple[str, str], Any] = {}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = ma._reconstruct
        allowed[(mod, "scalar")] = ma.scalar
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        allowed[(mod, "_frombuffer")] = num._frombuffer
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = safe_encode
    for mod in ("__builtin__", "builtins"):
        allowed[(mod, "set")] = set
        allowed[(mod, "frozenset")] = frozenset
    return allowed


def _mano_allow_list() -> dict[tuple[str, str], Any]:
    """Plain data plus what the official MANO pickles hold: chumpy ``Ch`` and scipy sparse matrices
    (as inert stand-ins) and the ``copyreg`` reconstruction of those stand-ins."""
    allowed = _plain_data_allow_list(_refuse)
    for mod in ("copy_reg", "copyreg"):
        allowed[(mod, "_reconstructor")] = _safe_reconstructor
    for mod in ("__builtin__", "builtins"):
        allowed[(mod, "object")] = object
    for mod in ("chumpy.ch", "chumpy"):
        allowed[(mod, "Ch")] = _ChStandIn
    for mod in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse"):
        allowed[(mod, "csc_matrix")] = _CscStandIn
    for mod in ("scipy.sparse.csr", "scipy.sparse._csr", "scipy.sparse"):
        allowed[(mod, "csr_matrix")] = _CsrStandIn
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` admits only an allow-list ((module, name) -> object); any
    other global is refused before it is looked up (``refuse(what)`` is raised), so nothing runs.

    allowed / refuse: default to the MANO allow-list and its HandcastError.
    """

    def __init__(self, file, allowed: dict[tuple[str, str], Any] | None = None,
                 refuse: Callable[[str], Exception] = _refuse, **kwargs):
        super().__init__(file, **kwargs)
        self._allowed = _mano_allow_list() if allowed is None else allowed
        self._refuse = refuse

    def find_class(self, module: str, name: str):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise self._refuse(f"{module}.{name}") from None

    def persistent_load(self, pid):  # pragma: no cover - neither MANO nor dataset pickles have one
        raise self._refuse("a persistent id")


def load_data_pickle(file: BinaryIO) -> Any:
    """Unpickle plain data from an open binary file: dicts, lists, tuples, numbers, strings, bytes,
    numpy arrays and scalars (Python 2 pickles too; their str read as latin-1).

    Every other global a pickle names (a class, or a function such as ``os.system`` that a malicious
    file would call) is refused before it is looked up, so nothing runs:
    ``pickle.UnpicklingError("refused to load 'os.system' ...")``.
    """
    return RestrictedUnpickler(file, allowed=_plain_data_allow_list(_refuse_data), refuse=_refuse_data,
                               encoding="latin1").load()


# ----------------------------------------------------------------------------------------------
# Conversion to plain arrays
# ----------------------------------------------------------------------------------------------

def _to_array(key: str, value: Any) -> np.ndarray | None:
    """A plain (non-object) numpy array for one MANO entry, or None to drop it."""
    if isinstance(value, _ChStandIn):
        state = getattr(value, "_state", None)
        x = state.get("x") if isinstance(state, dict) else None
        if isinstance(x, _ChStandIn):
            return _to_array(key, x)
        if not isinstance(x, np.ndarray):
            raise HandcastError(f"MANO entry {key!r}: chumpy object without an array value")
        value = x
    elif isinstance(value, (_CscStandIn, _CsrStandIn)):
        import scipy.sparse as sp

        st = getattr(value, "_state", None)
        if not isinstance(st, dict):
            raise HandcastError(f"MANO entry {key!r}: sparse matrix without state")
        shape = st.get("_shape", st.get("shape"))
        try:
            ctor = sp.csc_matrix if value._format == "csc" else sp.csr_matrix
            m = ctor((np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])),
                     shape=tuple(int(s) for s in shape))
        except Exception as e:
            raise HandcastError(f"MANO entry {key!r}: unreadable sparse matrix ({e})") from None
        return m.toarray()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise HandcastError(f"MANO entry {key!r} is an object array; refused")
        return value
    if isinstance(value, (str, bytes)):
        return np.array(value if isinstance(value, str) else value.decode("latin1"))
    if isinstance(value, (bool, int, float, np.generic)):
        return np.asarray(value)
    if isinstance(value, (list, tuple)):
        try:
            arr = np.asarray(value)
        except Exception:
            return None
        return None if arr.dtype == object else arr
    return None


def read_mano_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read one official MANO pickle safely into plain numpy arrays (J_regressor made dense)."""
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"MANO file not found: {path}")
    try:
        with open(path, "rb") as fh:
            data = RestrictedUnpickler(fh, encoding="latin1").load()
    except HandcastError as e:
        raise HandcastError(f"{path}: {e}") from None
    except Exception as e:
        raise HandcastError(f"{path}: not a readable MANO pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):
        raise HandcastError(f"{path}: expected a dict of model arrays, found {type(data).__name__}")
    out: dict[str, np.ndarray] = {}
    for key, value in data.items():
        arr = _to_array(str(key), value)
        if arr is not None:
            out[str(key)] = arr
    missing = [k for k in MANO_KEYS if k not in out]
    if missing:
        raise HandcastError(f"{path}: not a MANO model, missing {', '.join(missing)}")
    return out


def _clean(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = dict(arrays)
    for k in ("v_template", "weights", "J_regressor", "shapedirs", "posedirs", "hands_components", "hands_mean"):
        out[k] = np.asarray(out[k], dtype=np.float32 if k == "J_regressor" else np.float64)
    out["f"] = np.asarray(out["f"]).astype(np.int64)
    out["kintree_table"] = np.asarray(out["kintree_table"]).astype(np.int64)
    return out


def validate_mano_arrays(arrays: dict[str, np.ndarray], src: str | os.PathLike) -> None:
    """Check that MANO-format arrays fit together (one-line HandcastError naming ``src`` otherwise): with V
    vertices and J joints, ``v_template`` (V, 3), ``f`` (F, 3) of indices in [0, V), ``weights`` (V, J),
    ``J_regressor`` (J, V), ``shapedirs`` (V, 3, S), ``posedirs`` (V, 3, 9 (J - 1)), ``kintree_table``
    (2, J) with parents in range, ``hands_components`` (C, 3 (J - 1)), ``hands_mean`` (3 (J - 1),); every
    float array finite."""
    def a(k):
        return np.asarray(arrays[k])

    def bad(msg):
        return HandcastError(f"{src}: not a usable MANO model: {msg}")

    for k in MANO_KEYS:
        if k not in arrays:
            raise bad(f"missing {k}")
        x = a(k)
        if x.dtype.kind not in "biuf":
            raise bad(f"{k} has dtype {x.dtype}, expected numbers")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise bad(f"{k} holds {int((~np.isfinite(x)).sum())} non-finite value(s)")
    v = a("v_template")
    if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
        raise bad(f"v_template must be (V, 3), got {v.shape}")
    V = v.shape[0]
    kt = a("kintree_table")
    if kt.ndim != 2 or kt.shape[0] != 2 or kt.shape[1] < 2:
        raise bad(f"kintree_table must be (2, J), got {kt.shape}")
    J = kt.shape[1]
    f = a("f")
    if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] == 0 or f.dtype.kind not in "iu":
        raise bad(f"f must be integer (F, 3), got {f.dtype} {f.shape}")
    if f.min() < 0 or f.max() >= V:
        raise bad(f"faces index vertices {int(f.min())} .. {int(f.max())}, the model has {V}")
    parents = kt[0, 1:].astype(np.int64)
    if (parents < 0).any() or (parents >= J).any():
        raise bad(f"kintree_table parents must lie in [0, {J}), got {int(parents.min())} .. {int(parents.max())}")
    want = {"weights": (V, J), "J_regressor": (J, V), "posedirs": (V, 3, 9 * (J - 1)),
            "hands_mean": (3 * (J - 1),)}
    for k, shape in want.items():
        if a(k).shape != shape:
            raise bad(f"{k} must be {shape} for {V} vertices and {J} joints, got {a(k).shape}")
    sd = a("shapedirs")
    if sd.ndim != 3 or sd.shape[:2] != (V, 3) or sd.shape[2] < 1:
        raise bad(f"shapedirs must be ({V}, 3, S), got {sd.shape}")
    hc = a("hands_components")
    if hc.ndim != 2 or hc.shape[1] != 3 * (J - 1):
        raise bad(f"hands_components must be (C, {3 * (J - 1)}), got {hc.shape}")


def import_mano(right_pkl: str | os.PathLike, left_pkl: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                fix_left_shapedirs: bool = False) -> Path:
    """Convert the official MANO_RIGHT.pkl / MANO_LEFT.pkl into MANO_RIGHT.npz / MANO_LEFT.npz.

    out_dir: destination folder (default ``$HANDCAST_HOME/mano``); returns it. With
    ``fix_left_shapedirs`` the left model's ``shapedirs[:, 0, :]`` (x column) is negated — the
    known sign issue of MANO_LEFT as used by smplx, which some datasets (HOT3D) were fitted with —
    and the left file records ``left_shapedirs_fixed = True``.
    """
    right = _clean(read_mano_pickle(right_pkl))
    left = _clean(read_mano_pickle(left_pkl))
    validate_mano_arrays(right, right_pkl)
    validate_mano_arrays(left, left_pkl)
    for name, arrays, sign in (("right", right, 1.0), ("left", left, -1.0)):
        root_x = float((arrays["J_regressor"][0] @ arrays["v_template"])[0])
        if np.sign(root_x) == -sign and abs(root_x) > 1e-3:
            raise HandcastError(f"the {name} MANO file looks like the other hand (wrist at x = {root_x:+.3f} m); "
                                "are the right and left files swapped?")
    if fix_left_shapedirs:
        left["shapedirs"] = left["shapedirs"].copy()
        left["shapedirs"][:, 0, :] *= -1.0
    left["left_shapedirs_fixed"] = np.array(bool(fix_left_shapedirs))
    out = Path(out_dir).expanduser() if out_dir is not None else default_mano_dir()
    with atomic_outputs(out) as tmp:  # the two files are replaced together (never a new right with an old left)
        save_npz(tmp / "MANO_RIGHT.npz", **right)
        save_npz(tmp / "MANO_LEFT.npz", **left)
    return out


def mano_import_main(right: str | os.PathLike, left: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                     fix_left: bool = False) -> Path:
    """Entry point for ``handcast mano import``: converts and returns the output folder; prints nothing."""
    return import_mano(right, left, out_dir=out_dir, fix_left_shapedirs=fix_left)
