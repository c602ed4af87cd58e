"""Moved: the low-level renderer is :mod:`handcast.gl.renderer` (this alias stays for one release)."""

from handcast.gl.renderer import *  # noqa: F401,F403
