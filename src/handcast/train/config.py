"""One config system for every trainable model: YAML presets read with omegaconf.

``load_config(kind, "tiny")`` reads the packaged preset ``handcast/configs/<kind>_tiny.yaml``; a path to
a YAML file works too. Dot-list overrides (``train.lr=1e-4``) are applied last. Every config is checked
against the packaged ``tiny`` preset of its kind: an unknown or misspelt key is an error, not ignored.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Sequence

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


def load_config(kind: str, name_or_path: str = "tiny", overrides: Sequence[str] = ()):
    """The resolved config (an omegaconf DictConfig) of ``kind`` from a preset name or YAML path."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    schema = _read(kind, "tiny")
    OmegaConf.set_struct(schema, True)
    try:
        cfg = OmegaConf.merge(schema, _read(kind, name_or_path), OmegaConf.from_dotlist(list(overrides)))
    except OmegaConfBaseException as e:
        msg = str(e).splitlines()[0]
        raise HandcastError(f"invalid {kind} config: {msg}") from None
    if cfg.get("kind") != kind:
        raise HandcastError(f"config is for '{cfg.get('kind')}', expected '{kind}'")
    OmegaConf.resolve(cfg)
    return cfg


def to_container(cfg) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=True)
