"""Rendering: headless OpenGL meshes, skeleton overlays, second views, sheets and videos.

Submodules
  gl          Mesh, Renderer (moderngl on EGL; the context is created lazily, once per process)
  primitives  procedural textures, textured planes and simple object meshes
  overlay     draw_keypoints, overlay_motion, second_view, render_sheet
  video       write_video, render_motion_video
  api         render_clip, render_prediction (used by ``handcast render``)

Importing this package creates no OpenGL context and reads no file.
"""

from handcast.render.gl import Mesh, Renderer, get_renderer

__all__ = ["Mesh", "Renderer", "get_renderer"]
