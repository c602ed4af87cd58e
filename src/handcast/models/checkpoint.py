"""Checkpoints: safetensors weights plus the resolved config, in one file, never a pickle.

A handcast checkpoint is a ``.safetensors`` file whose tensors are the model's ``state_dict`` and whose
string metadata holds:

* ``handcast_format``: the checkpoint format version (``"1"``);
* ``handcast_kind``: what model it is (e.g. ``"lift"``, ``"forecast"``);
* ``handcast_config``: the resolved config as JSON;
* ``handcast_version``: the handcast version that wrote it.

Loading checks all of them: a checkpoint of another kind, another format version, a config the current
code does not accept, or weights whose names or shapes differ from the model built from the config is
refused with a one-line error.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import struct
import sys
from pathlib import Path
from typing import Any

import torch

from handcast import __version__
from handcast.errors import HandcastError
from handcast.hand.mano_import import handcast_home
from handcast.io import atomic_path

FORMAT_VERSION = "1"


def shipped_checkpoint(filename: str, train_hint: str) -> Path:
    """Path of a tiny checkpoint shipped inside the package (``handcast/assets/checkpoints/<filename>``);
    a one-line error naming ``train_hint`` (how to make one) if this installation lacks it."""
    from importlib import resources

    p = Path(str(resources.files("handcast") / "assets" / "checkpoints" / filename))
    if not p.is_file():
        raise HandcastError(f"the shipped checkpoint {filename} is missing from this installation ({p}); "
                            f"pass --ckpt with a checkpoint from {train_hint}")
    return p


def resolve_checkpoint(ckpt: str | os.PathLike | None, filename: str, shipped: str, train_hint: str) -> Path:
    """A checkpoint path: ``ckpt`` itself, ``<ckpt>/<filename>`` for a run folder, or (``ckpt`` None)
    ``$HANDCAST_HOME/models/<filename>`` if it exists, else the shipped checkpoint ``shipped``."""
    if ckpt is None:
        p = handcast_home() / "models" / filename
        return p if p.is_file() else shipped_checkpoint(shipped, train_hint)
    p = Path(ckpt)
    if p.is_dir():
        p = p / filename
    if not p.is_file():
        raise HandcastError(f"checkpoint not found: {p}")
    return p


def save_checkpoint(path: str | Path, model: torch.nn.Module, kind: str, config: dict[str, Any],
                    extra_metadata: dict[str, str] | None = None) -> Path:
    """Write ``model``'s weights and ``config`` (a plain, JSON-serialisable dict) atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        "handcast_format": FORMAT_VERSION,
        "handcast_kind": kind,
        "handcast_config": json.dumps(config, sort_keys=True),
        "handcast_version": __version__,
    }
    meta.update(extra_metadata or {})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def sniff_checkpoint(path: str | Path) -> str:
    """What a checkpoint file is by its first bytes, whatever its name: 'safetensors', 'zip' (a torch
    file of torch >= 1.6, e.g. Lightning's ``last.ckpt``), 'legacy' (an old torch pickle) or 'unknown'."""
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise HandcastError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] in (2, 3, 4, 5):
        return "legacy"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    return "unknown"


@contextlib.contextmanager
def safe_torch_load_env():
    """Within the block, torch.load cannot be forced to unpickle arbitrary objects from the environment:
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` (which turns ``weights_only`` off wherever a caller left it unset,
    e.g. inside a library) is removed, and restored afterwards."""
    saved = os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = saved


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def read_training_state(path: str | Path, expected: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The training state (Lightning's ``last.ckpt``: weights, optimiser, loop state) at ``path``, read with
    ``torch.load(weights_only=True)`` only (tensors and plain data; a pickle that names anything else is
    refused, never run, whatever the environment says). With ``expected`` (a module's ``state_dict``), the
    stored weights must have exactly its names and shapes. A damaged, truncated, planted or mismatched
    file gives a one-line HandcastError."""
    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"training state not found: {path}")
    fmt = sniff_checkpoint(path)
    hint = "remove it (or the run folder) to start afresh"
    if fmt != "zip":
        raise HandcastError(f"{path}: not a training state written by handcast train "
                            f"({'a safetensors file' if fmt == 'safetensors' else 'not a torch zip file'}); {hint}")
    try:
        with safe_torch_load_env():
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise HandcastError(f"{path}: refused: holds objects other than tensors and plain data "
                            f"({_first_line(e)}); {hint}") from None
    except Exception as e:  # noqa: BLE001 - torch raises RuntimeError/EOFError/zipfile errors for broken files
        raise HandcastError(f"{path}: unreadable training state, truncated or damaged "
                            f"({type(e).__name__}: {_first_line(e)}); {hint}") from None
    state = obj.get("state_dict") if isinstance(obj, dict) else None
    if (not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values())
            or not isinstance(obj.get("global_step"), int)):
        raise HandcastError(f"{path}: not a training state written by handcast train "
                            f"(no state_dict of tensors / global_step); {hint}")
    if expected is not None:
        *_, problems = compare_state(expected, state)
        if problems:
            raise HandcastError(f"{path}: training state does not match the model this config builds: {problems}; "
                                f"resume with the run's config or {hint}")
        bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
        if bad:
            raise HandcastError(f"{path}: training state holds non-finite weights ({name_list(bad)}); {hint}")
    return obj


def read_checkpoint(path: str | Path, kind: str) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """Read (config, state_dict, metadata) of a checkpoint of ``kind``, checking its header."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise HandcastError(f"checkpoint not found: {path}" if not path.exists() else f"checkpoint is not a file: {path}")
    fmt = sniff_checkpoint(path)
    if fmt in ("zip", "legacy"):
        raise HandcastError(f"{path}: is a torch (pickle) file, not a safetensors checkpoint, whatever its name; "
                            "handcast loads checkpoints written by handcast train (safetensors) only")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a bad header / truncated file
        raise HandcastError(f"{path}: not a readable safetensors checkpoint ({e})") from None
    if meta.get("handcast_format") is None:
        raise HandcastError(f"{path}: not a handcast checkpoint (no handcast metadata)")
    if meta["handcast_format"] != FORMAT_VERSION:
        raise HandcastError(
            f"{path}: checkpoint format {meta['handcast_format']} is not supported by this handcast "
            f"(format {FORMAT_VERSION})"
        )
    if meta.get("handcast_kind") != kind:
        raise HandcastError(f"{path}: is a '{meta.get('handcast_kind')}' checkpoint, expected '{kind}'")
    try:
        config = json.loads(meta["handcast_config"])
    except (KeyError, json.JSONDecodeError):
        raise HandcastError(f"{path}: checkpoint config is missing or corrupt") from None
    return config, tensors, meta


def name_list(names, n: int = 4) -> str:
    """The first ``n`` of ``names`` joined by commas, with how many more there are."""
    names = list(names)
    more = f", ... (+{len(names) - n})" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def compare_state(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str], str]:
    """How ``state`` (tensors read from a file) differs from ``expected`` (a model's state dict).

    Returns (missing: names of ``expected`` absent from ``state``, unexpected: names of ``state`` the
    model lacks, mismatched: shared names whose shapes differ, a one-line account of the three: ''
    when ``state`` fits exactly); names in their dict's order."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({name_list(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({name_list(unexpected)})")
    if mismatched:
        shown = [f"shape of {k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in mismatched]
        parts.append(f"{len(mismatched)} shape mismatches ({name_list(shown, 3)})")
    return missing, unexpected, mismatched, "; ".join(parts)


def load_weights_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``state`` into ``model``, refusing any missing, unexpected or mis-shaped tensor."""
    *_, problems = compare_state(model.state_dict(), state)
    if problems:
        raise HandcastError(f"{source}: checkpoint does not match the model its config builds: {problems}")
    model.load_state_dict(state, strict=True)


def upgrade_state_names(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> dict[str, torch.Tensor]:
    """``state`` with the tensor names of an older handcast renamed to today's: each submodule of ``model``
    may list ``RENAMED_STATE = {old: new}`` (names relative to it). Says so once on stderr when it renames."""
    renames = {}
    for prefix, module in model.named_modules():
        for old, new in getattr(module, "RENAMED_STATE", {}).items():
            key = f"{prefix}.{old}" if prefix else old
            if key in state:
                renames[key] = f"{prefix}.{new}" if prefix else new
    if not renames:
        return state
    print(f"handcast: note: {source} was written by an older handcast: reading "
          + ", ".join(f"'{a}' as '{b}'" for a, b in renames.items()), file=sys.stderr)
    return {renames.get(k, k): v for k, v in state.items()}


def load_model(path: str | Path, kind: str, build, device: str | torch.device = "cpu"):
    """(model, metadata) of a checkpoint of ``kind``: ``build(config)`` makes the model, whose weights must
    match the stored ones exactly; in eval mode on ``device``. A config this code cannot build is refused
    with a one-line HandcastError."""
    cfg, state, meta = read_checkpoint(path, kind)
    if not isinstance(cfg, dict):
        raise HandcastError(f"{path}: checkpoint config is not a mapping")
    check_model_config(cfg, f"{path}: checkpoint config")
    check_finite_state(state, path)
    try:
        model = build(cfg)
    except HandcastError as e:
        raise HandcastError(f"{path}: checkpoint config: {e}") from None
    except (TypeError, KeyError, ValueError, AttributeError, AssertionError, OverflowError) as e:
        raise HandcastError(f"{path}: checkpoint config does not match this handcast ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    load_weights_strict(model, upgrade_state_names(model, state, path), path)
    return model.to(device).eval(), meta


#: architecture keys of every model config section (at any depth) and their allowed integer ranges
INT_KEYS: dict[str, tuple[int, int]] = {
    "width": (1, 16384), "ff_width": (1, 65536), "embed_dim": (1, 16384), "hidden": (1, 65536),
    "layers": (1, 256), "depth": (1, 256), "heads": (1, 256), "num_heads": (1, 256), "motion_dim": (1, 4096),
    "latent_dim": (1, 4096), "pca_components": (1, 4096), "token_dim": (1, 4096), "patch_size": (1, 1024),
    "patch_padding": (0, 1024), "num_train_timesteps": (1, 100000), "kpe_freqs": (0, 64),
}
#: probability-like and ratio keys of model configs and their allowed (closed) float ranges
FLOAT_KEYS: dict[str, tuple[float, float]] = {
    "dropout": (0.0, 1.0), "p_token_dropout": (0.0, 1.0), "p_cond_dropout": (0.0, 1.0),
    "drop_path_rate": (0.0, 1.0), "mlp_ratio": (1e-3, 64.0), "joint_scale": (1e-9, 1e3),
}
#: the most parameters a config may describe (an estimate over its transformer stacks)
MAX_PARAMETERS = 4e9


def check_model_config(cfg: Any, source: str = "model config") -> None:
    """Refuse (one-line HandcastError naming ``source`` and the key) a model config section whose
    architecture numbers are of the wrong type or out of range (:data:`INT_KEYS`, :data:`FLOAT_KEYS`), whose
    width does not divide into its heads, or which describes more than :data:`MAX_PARAMETERS` parameters.
    Keys are found at any depth; other keys are left to the model's own config classes."""
    total = [0.0]

    def walk(d: Any, path: str) -> None:
        if isinstance(d, list):
            for i, v in enumerate(d):
                walk(v, f"{path}[{i}]")
            return
        if not isinstance(d, dict):
            return
        for k, v in d.items():
            name = f"{path}.{k}" if path else str(k)
            if k in INT_KEYS:
                lo, hi = INT_KEYS[k]
                if isinstance(v, bool) or not isinstance(v, int):
                    raise HandcastError(f"{source}: {name} must be an integer in [{lo}, {hi}], got {v!r:.60}")
                if not lo <= v <= hi:
                    raise HandcastError(f"{source}: {name} must be in [{lo}, {hi}], got {v}")
            elif k in FLOAT_KEYS:
                lo, hi = FLOAT_KEYS[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
                    raise HandcastError(f"{source}: {name} must be a number in [{lo:g}, {hi:g}], got {v!r:.60}")
            elif k == "img_size" and v is not None:
                if (not isinstance(v, (list, tuple)) or len(v) != 2
                        or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 8192 for s in v)):
                    raise HandcastError(f"{source}: {name} must be [H, W] pixels within [1, 8192], got {v!r:.60}")
            else:
                walk(v, name)
        for w, h in (("width", "heads"), ("embed_dim", "num_heads")):
            if w in d and h in d and d[w] % d[h]:
                raise HandcastError(f"{source}: {path + '.' if path else ''}{w} {d[w]} is not divisible by "
                                    f"{h} {d[h]}")
        width = d.get("width", d.get("embed_dim"))
        layers = d.get("layers", d.get("depth"))
        if width and layers:
            ff = d.get("ff_width", d.get("hidden", width * float(d.get("mlp_ratio", 4.0))))
            total[0] += float(layers) * (4.0 * width * width + 2.0 * width * ff)

    walk(cfg, "")
    if total[0] > MAX_PARAMETERS:
        raise HandcastError(f"{source}: the config describes about {total[0]:.3g} parameters (at most "
                            f"{MAX_PARAMETERS:.0e}): a width or layer count is out of range")


def check_finite_state(state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Refuse (one-line HandcastError naming the tensors) a state dict with NaN or infinite weights."""
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise HandcastError(f"{source}: {len(bad)} tensor(s) hold NaN or infinite weights ({name_list(bad)})")
