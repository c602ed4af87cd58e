"""One config system for every trainable model: YAML presets read with omegaconf.

``load_config(kind, "tiny")`` reads the packaged preset ``handcast/configs/<kind>_tiny.yaml``; a path to
a YAML file works too. Dot-list overrides (``train.lr=1e-4``) are applied last. Every config is checked
against the packaged ``tiny`` preset of its kind: an unknown or misspelt key is an error, not ignored.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

from handcast.errors import HandcastError


def preset_names(kind: str) -> list[str]:
    files = resources.files("handcast.configs").iterdir()
    return sorted(f.name[len(kind) + 1 : -5] for f in files if f.name.startswith(f"{kind}_") and f.name.endswith(".yaml"))


def _read(kind: str, name_or_path: str):
    from omegaconf import OmegaConf

    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise HandcastError(f"config file not found: {p}")
        try:
            return OmegaConf.load(p)
        except Exception as e:
            raise HandcastError(f"{p}: not a readable YAML config ({e})") from None
    res = resources.files("handcast.configs") / f"{kind}_{name_or_path}.yaml"
    if not res.is_file():
        raise HandcastError(f"unknown {kind} config '{name_or_path}' (presets: {', '.join(preset_names(kind))}; "
                            "or give a path to a .yaml file)")
    return OmegaConf.create(res.read_text())


#: value rules of the config keys, by dotted-key pattern (fnmatch; the first match wins): (kind, low, high)
#: with kind "int", "float" (a finite number), "float>" (low excluded) or "ints" (a list of ints)
RULES: list[tuple[str, str, float, float]] = [
    ("train.seed", "int", 0, 2**32 - 1),
    ("*batch_size", "int", 1, 65536),
    ("*.lr", "float>", 0.0, 10.0),
    ("*weight_decay", "float", 0.0, 10.0),
    ("train.hyps.steps", "ints", 1, 1000),
    ("train.hyps.samples", "int", 1, 1000),
    ("*val_every_steps", "int", 1, 10**9),
    ("*save_every_steps", "int", 1, 10**9),
    ("*val_steps", "int", 1, 1000),
    ("*max_steps", "int", 1, 10**9),
    ("train.*.steps", "int", 1, 10**9),
    ("*val_clips", "int", 1, 10**9),
    ("*num_workers", "int", 0, 256),
    ("*threads", "int", 0, 1024),
    ("*meshes", "int", 1, 10**9),
    ("*grad_clip", "float", 0.0, 1e9),
    ("train.lr_floor", "float", 0.0, 1.0),
    ("data.*.hfov_deg", "float>", 0.0, 179.0),
    ("*_deg", "float", 0.0, 180.0),
    ("data.*.hand_px", "float>", 0.0, 1e5),
    ("data.*.image_width", "float>", 0.0, 1e5),
    ("data.camera.p", "float", 0.0, 1.0),
    ("data.camera_aug.p", "float", 0.0, 1.0),
    ("data.pool_hands.p", "float", 0.0, 1.0),
    ("data.pool_hands.size", "int", 1, 10**7),
    ("data.augment.convention_noise", "float", 0.0, 1.0),
    ("data.horizon", "int", 1, 1024),
    ("train.prefix_max", "int", 1, 1024),
    ("*.p_*", "float", 0.0, 1.0),
    ("*drop*", "float", 0.0, 1.0),
    ("*jitter*", "float", 0.0, 1e4),
    ("train.*", "float", 0.0, 1e9),  # loss weights
]


#: the values a string-valued key takes, by dotted key
CHOICES: dict[str, tuple[str, ...]] = {
    "train.lr_schedule": ("constant", "cosine"),
    "data.wrist_stats": ("store", "augmented"),  # L's codec statistics
    "data.camera.wrist_stats": ("augmented", "store"),  # F's
}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_config(cfg: dict, schema: dict, kind: str) -> None:
    """Refuse (one-line HandcastError naming the key and what it takes) a resolved config ``cfg`` (plain
    dict) with a value of another type than the packaged tiny preset's (``schema``: a number given as a
    string, a list where a number belongs, ...), a non-finite number, a value outside :data:`RULES`, or a
    model section :func:`handcast.models.checkpoint.check_model_config` refuses."""
    import fnmatch

    from handcast.models.checkpoint import check_model_config

    def walk(d, ref, path):
        for k, v in d.items():
            key = f"{path}.{k}" if path else str(k)
            r = ref.get(k) if isinstance(ref, dict) else None
            if isinstance(v, dict):
                walk(v, r if isinstance(r, dict) else {}, key)
                continue
            if _number(r) and not _number(v):
                raise HandcastError(f"invalid {kind} config: {key} must be a number, got {v!r:.60}")
            if isinstance(r, int) and not isinstance(r, bool) and isinstance(v, float) and not v.is_integer():
                raise HandcastError(f"invalid {kind} config: {key} must be an integer, got {v!r}")
            if isinstance(r, bool) and not isinstance(v, bool):
                raise HandcastError(f"invalid {kind} config: {key} must be true or false, got {v!r:.60}")
            if isinstance(r, str) and r and v is not None and not isinstance(v, str):
                raise HandcastError(f"invalid {kind} config: {key} must be a string, got {v!r:.60}")
            if _number(v) and not math.isfinite(v):
                raise HandcastError(f"invalid {kind} config: {key} must be a finite number, got {v}")
            if key in CHOICES and v not in CHOICES[key]:
                raise HandcastError(f"invalid {kind} config: {key} must be one of {', '.join(CHOICES[key])}, "
                                    f"got {v!r:.60}")
            if key.startswith("model.") or isinstance(v, bool) or v is None:
                continue
            for pattern, typ, lo, hi in RULES:
                if not fnmatch.fnmatchcase(key, pattern):
                    continue
                vals = v if typ in ("ints", "float", "float>") and isinstance(v, list) else [v]
                if typ == "ints" and not isinstance(v, list):
                    raise HandcastError(f"invalid {kind} config: {key} must be a list of integers in [{lo}, {hi}]")
                for x in vals:
                    if not _number(x) or (typ in ("int", "ints") and not float(x).is_integer()):
                        if typ == "float" and not _number(x):
                            break  # e.g. a string-valued train.* key: checked by its own code
                        raise HandcastError(f"invalid {kind} config: {key} must be "
                                            f"{'an integer' if typ in ('int', 'ints') else 'a number'} in "
                                            f"{'(' if typ == 'float>' else '['}{lo:g}, {hi:g}], got {x!r:.60}")
                    low_ok = x > lo if typ == "float>" else x >= lo
                    if not (low_ok and x <= hi):
                        span = f"{'(' if typ == 'float>' else '['}{lo:g}, {hi:g}]"
                        raise HandcastError(f"invalid {kind} config: {key} must be in {span}, got {x}")
                break

    walk(cfg, schema, "")
    if isinstance(cfg.get("model"), dict):
        check_model_config(cfg["model"], f"invalid {kind} config: model")


def load_config(kind: str, name_or_path: str = "tiny", overrides: Sequence[str] = (),
                paths: Mapping[str, str | os.PathLike | None] | None = None):
    """The resolved, checked config (an omegaconf DictConfig) of ``kind`` from a preset name or YAML path.

    overrides: dot-list ``KEY=VALUE`` strings (values parsed as YAML). paths: {dotted key: path} set last,
    as plain strings, never parsed (a ``#``, ``: `` or ``${...}`` in a path stays as it is); None values
    are skipped. Every value is then checked (:func:`check_config`): one-line HandcastError."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    schema = _read(kind, "tiny")
    OmegaConf.set_struct(schema, True)
    try:
        cfg = OmegaConf.merge(schema, _read(kind, name_or_path), OmegaConf.from_dotlist(list(overrides)))
        if cfg.get("kind") != kind:
            raise HandcastError(f"config is for '{cfg.get('kind')}', expected '{kind}'")
        OmegaConf.resolve(cfg)
        for key, value in (paths or {}).items():
            if value is not None:
                OmegaConf.update(cfg, key, str(value), force_add=False)
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        raise HandcastError(f"invalid {kind} config: {msg}") from None
    check_config(to_container(cfg), to_container(schema), kind)
    return cfg


def to_container(cfg) -> dict:
    """A config from :func:`load_config` (already resolved) as plain dicts and lists; path values set
    through ``paths`` keep any ``${...}`` as it is."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False)
