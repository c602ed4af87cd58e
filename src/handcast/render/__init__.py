"""Pictures of results: skeleton and mesh overlays, second views, sheets, videos, the HTML viewer, mesh exports.

Submodules
  overlay     draw_keypoints, overlay_motion, second_view, render_sheet
  video       write_video, render_motion_video
  api         render_clip, render_prediction (used by ``handcast render``)
  viewer      the self-contained HTML viewer (``handcast view``)
  export      per-frame meshes (``handcast export-meshes``)

Meshes are rasterised by the low-level renderer :mod:`handcast.gl` (re-exported here: Mesh, Renderer,
get_renderer). Importing this package creates no OpenGL context and reads no file.
"""

from handcast.gl import Mesh, Renderer, get_renderer

__all__ = ["Mesh", "Renderer", "get_renderer"]
