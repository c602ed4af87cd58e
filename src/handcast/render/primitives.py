"""Moved: procedural textures and primitives are :mod:`handcast.gl.primitives` (this alias stays for one release)."""

from handcast.gl.primitives import *  # noqa: F401,F403
