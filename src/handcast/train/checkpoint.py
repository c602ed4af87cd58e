"""Moved: checkpoint I/O is :mod:`handcast.models.checkpoint` (this alias stays for one release)."""

from handcast.models.checkpoint import (  # noqa: F401
    FORMAT_VERSION,
    load_model,
    load_weights_strict,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    shipped_checkpoint,
)
