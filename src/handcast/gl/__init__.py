"""The low-level headless renderer: OpenGL meshes with OpenCV cameras, procedural textures and primitives.

Submodules
  renderer    Mesh, Renderer (moderngl on EGL; the context is created lazily, once per process)
  primitives  procedural textures, textured planes and simple object meshes

Used by the synthetic benchmark (:mod:`handcast.synth`) and by the pictures of :mod:`handcast.render`.
Importing this package creates no OpenGL context and reads no file.
"""

from handcast.gl.renderer import Mesh, Renderer, get_renderer

__all__ = ["Mesh", "Renderer", "get_renderer"]
