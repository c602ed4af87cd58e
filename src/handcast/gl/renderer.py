"""Headless OpenGL rasteriser (moderngl on EGL) with OpenCV cameras.

Camera and pixel conventions (docs/conventions.md: OpenCV pixel centres at integer coordinates)
  * Points are transformed by ``world_to_cam`` (4, 4) into an OpenCV camera: x right, y down,
    z forward, metres.
  * They are projected with the intrinsics ``K`` (3, 3): ``u = fx*x/z + s*y/z + cx``,
    ``v = fy*y/z + cy``, in pixels.
  * Pixel ``image[j, i]`` (row j, column i; row 0 at the top) covers ``u in [i - 0.5, i + 0.5)``,
    ``v in [j - 0.5, j + 0.5)``: its centre is at ``(i, j)``. With ``cx = (W - 1) / 2`` the principal
    point is the exact centre of the image.
  * Points behind the near plane (``z < near``) are clipped, never drawn mirrored.

Nothing touches OpenGL at import time. One EGL context is created lazily per process (and
re-created in a forked child), and shared by every :class:`Renderer`. On first use the
environment variable ``LP_NUM_THREADS`` defaults to 0 (llvmpipe renders in the calling thread):
llvmpipe's worker threads do not survive ``fork()``, and this keeps fork-based worker pools
working after the parent rendered.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np

from handcast.errors import HandcastError

__all__ = ["Mesh", "RenderLayers", "Renderer", "get_context", "get_renderer", "projection_matrix", "vertex_normals"]

_EGL_HINT = (
    "no headless OpenGL (EGL) context could be created{why}; install the Debian packages "
    "libegl1 libegl-mesa0 libgl1-mesa-dri (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri)"
)

# --------------------------------------------------------------------------------------------
# Context


_lock = threading.Lock()
_ctx = None
_ctx_pid = None
_programs: dict = {}
_renderers: dict = {}


def get_context():
    """The process-wide moderngl context (EGL, headless), created on first use.

    Raises HandcastError (with the packages to install) when EGL is not available.
    """
    global _ctx, _ctx_pid
    with _lock:
        if _ctx is not None and _ctx_pid == os.getpid():
            return _ctx
        if _ctx is not None:  # inherited through fork: the GL state is not usable here
            _ctx = None
            _programs.clear()
            _renderers.clear()
        try:
            import moderngl
        except ImportError as e:  # pragma: no cover - moderngl is a hard dependency
            raise HandcastError(f"moderngl is not installed ({e}); pip install moderngl") from None
        # Mesa llvmpipe's rasteriser threads do not survive fork(): a forked child of a process
        # that rendered would hang. Rendering in the calling thread keeps worker pools (fork)
        # safe and costs little at our image sizes. Set LP_NUM_THREADS yourself to override.
        os.environ.setdefault("LP_NUM_THREADS", "0")
        try:
            ctx = moderngl.create_context(standalone=True, backend="egl", require=330)
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise HandcastError(_EGL_HINT.format(why=f" ({msg})")) from None
        _ctx, _ctx_pid = ctx, os.getpid()
        return ctx


_VERT = """
#version 330
uniform mat4 w2c;
uniform mat3 normal_mat;
uniform mat4 proj;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_color;
in vec2 in_uv;
out vec3 v_pos;
out vec3 v_normal;
out vec3 v_color;
out vec2 v_uv;
void main() {
    vec4 pc = w2c * vec4(in_pos, 1.0);
    v_pos = pc.xyz;
    v_normal = normal_mat * in_normal;
    v_color = in_color;
    v_uv = in_uv;
    gl_Position = proj * pc;
}
"""

_FRAG = """
#version 330
uniform vec3 light_dir;
uniform float ambient;
uniform float diffuse;
uniform float specular;
uniform float shininess;
uniform vec3 light_color;
uniform bool use_texture;
uniform sampler2D tex;
in vec3 v_pos;
in vec3 v_normal;
in vec3 v_color;
in vec2 v_uv;
out vec4 f_color;
void main() {
    vec3 view = normalize(-v_pos);
    float ln = length(v_normal);
    vec3 n = ln > 1e-12 ? v_normal / ln : view;
    if (dot(n, view) < 0.0) n = -n;            // two-sided lighting
    vec3 base = use_texture ? texture(tex, v_uv).rgb : v_color;
    float d = max(dot(n, light_dir), 0.0);
    vec3 h = normalize(light_dir + view);
    float s = d > 0.0 ? pow(max(dot(n, h), 0.0), shininess) : 0.0;
    vec3 c = (base * (ambient + diffuse * d) + vec3(specular * s)) * light_color;
    f_color = vec4(clamp(c, 0.0, 1.0), 1.0);
}
"""

_FRAG_DEPTH = """
#version 330
in vec3 v_pos;
in vec3 v_normal;
in vec3 v_color;
in vec2 v_uv;
out float f_depth;
void main() { f_depth = v_pos.z; }
"""


def _program(ctx, name: str):
    prog = _programs.get(name)
    if prog is None:
        frag = _FRAG if name == "shade" else _FRAG_DEPTH
        prog = ctx.program(vertex_shader=_VERT, fragment_shader=frag)
        _programs[name] = prog
    return prog


# --------------------------------------------------------------------------------------------
# Meshes


@dataclass
class Mesh:
    """A triangle mesh to render.

    vertices: (V, 3) float32, metres, world frame (the frame ``world_to_cam`` maps from).
    faces:    (F, 3) int, vertex indices (winding does not matter: both sides are lit).
    color:    RGB 0-255, either one colour (3,) or per-vertex (V, 3).
    uv:       optional (V, 2) texture coordinates in [0, 1]; u along the texture's columns,
              v along its rows (v = 0 is the texture's first row). Used with ``texture``.
    texture:  optional (h, w, 3) uint8 RGB image; when given with ``uv`` it replaces ``color``.
    normals:  optional (V, 3) per-vertex normals (world frame); computed (area-weighted) if None.
    """

    vertices: np.ndarray
    faces: np.ndarray
    color: tuple | np.ndarray = (200, 200, 200)
    uv: np.ndarray | None = None
    texture: np.ndarray | None = None
    normals: np.ndarray | None = None

    def __post_init__(self):
        self.vertices = np.ascontiguousarray(self.vertices, dtype=np.float32)
        self.faces = np.ascontiguousarray(self.faces, dtype=np.int64)
        if self.vertices.ndim != 2 or self.vertices.shape[1] != 3:
            raise HandcastError(f"Mesh.vertices must be (V, 3), got {self.vertices.shape}")
        if self.faces.ndim != 2 or self.faces.shape[1] != 3:
            raise HandcastError(f"Mesh.faces must be (F, 3), got {self.faces.shape}")
        if self.faces.size and (self.faces.min() < 0 or self.faces.max() >= len(self.vertices)):
            raise HandcastError("Mesh.faces index outside the vertex array")
        c = np.asarray(self.color, dtype=np.float32)
        if c.shape not in ((3,), (len(self.vertices), 3)):
            raise HandcastError(f"Mesh.color must be (3,) or (V, 3) RGB 0-255, got shape {c.shape}")
        if (self.uv is None) != (self.texture is None):
            raise HandcastError("Mesh.uv and Mesh.texture must be given together")
        if self.uv is not None:
            self.uv = np.asarray(self.uv, dtype=np.float32)
            if self.uv.shape != (len(self.vertices), 2):
                raise HandcastError(f"Mesh.uv must be (V, 2), got {self.uv.shape}")
            tex = np.asarray(self.texture)
            if tex.ndim != 3 or tex.shape[2] != 3 or tex.dtype != np.uint8:
                raise HandcastError("Mesh.texture must be an (h, w, 3) uint8 image")
            self.texture = np.ascontiguousarray(tex)
        if self.normals is not None:
            self.normals = np.asarray(self.normals, dtype=np.float32)
            if self.normals.shape != self.vertices.shape:
                raise HandcastError("Mesh.normals must have the shape of Mesh.vertices")

    def transformed(self, transform: np.ndarray) -> "Mesh":
        """A copy moved by a rigid/affine ``transform`` (4, 4) (applied as ``T @ [v; 1]``)."""
        T = np.asarray(transform, dtype=np.float64)
        v = self.vertices.astype(np.float64) @ T[:3, :3].T + T[:3, 3]
        n = None
        if self.normals is not None:
            n = self.normals @ np.linalg.inv(T[:3, :3])  # inverse transpose, applied to rows
        return Mesh(v, self.faces, self.color, self.uv, self.texture, n)

    @classmethod
    def from_trimesh(cls, mesh, color=(200, 200, 200)) -> "Mesh":
        """Wrap a ``trimesh.Trimesh`` (vertices in metres, world frame)."""
        return cls(np.asarray(mesh.vertices), np.asarray(mesh.faces), color)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted per-vertex normals, (V, 3) float32, unit length (zero for unused vertices)."""
    v = np.asarray(vertices, dtype=np.float32)
    f = np.asarray(faces)
    n_v = len(v)
    if len(f) == 0:
        return np.zeros_like(v)
    p0, p1, p2 = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    fn = np.cross(p1 - p0, p2 - p0)  # length = 2 * area: area weighting for free
    idx = f.reshape(-1)
    out = np.empty((n_v, 3), dtype=np.float32)
    for k in range(3):
        w = np.repeat(fn[:, k], 3)
        out[:, k] = np.bincount(idx, weights=w, minlength=n_v)
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    np.divide(out, norm, out=out, where=norm > 1e-20)
    return out


def projection_matrix(K: np.ndarray, width: int, height: int, near: float = 0.01, far: float = 100.0) -> np.ndarray:
    """OpenGL clip matrix (4, 4) for an OpenCV camera with intrinsics ``K`` and an image of
    ``width`` x ``height`` pixels.

    Pixels follow OpenCV: the centre of pixel ``image[j, i]`` is at (u, v) = (i, j). So NDC x = 2(u + 0.5)/W - 1
    and NDC y = 2(v + 0.5)/H - 1 (window coordinates are (u + 0.5, v + 0.5), GL's first framebuffer row is
    image row 0); camera depth z in [near, far] maps to NDC z in [-1, 1];
    clip w = z, so points with z <= 0 are clipped.
    """
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise HandcastError(f"K must be (3, 3), got {K.shape}")
    fx, s, cx = K[0]
    fy, cy = K[1, 1], K[1, 2]
    P = np.zeros((4, 4))
    P[0] = [2 * fx / width, 2 * s / width, 2 * (cx + 0.5) / width - 1, 0]
    P[1] = [0, 2 * fy / height, 2 * (cy + 0.5) / height - 1, 0]
    P[2] = [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)]
    P[3] = [0, 0, 1, 0]
    return P


@dataclass
class RenderLayers:
    """Outputs of :meth:`Renderer.render_layers`.

    image: (H, W, 3) uint8 RGB, meshes composited over the background.
    alpha: (H, W) float32 in [0, 1], anti-aliased mesh coverage.
    depth: (H, W) float32 camera-frame z in metres of the nearest surface (no AA), inf where empty;
           None unless requested.
    """

    image: np.ndarray
    alpha: np.ndarray
    depth: np.ndarray | None = None

    @property
    def mask(self) -> np.ndarray:
        """(H, W) bool, pixels at least half covered by a mesh."""
        return self.alpha >= 0.5


def _rgb01(color) -> np.ndarray:
    return np.asarray(color, dtype=np.float32).reshape(3) / 255.0


# --------------------------------------------------------------------------------------------
# Renderer

_STRIDE = 11  # pos 3, normal 3, color 3, uv 2


@dataclass
class _Scene:
    data: np.ndarray
    index: np.ndarray
    draws: list = field(default_factory=list)  # (first_index, count, texture or None)


class Renderer:
    """Offscreen renderer of ``width`` x ``height`` images with ``samples``-x MSAA.

    Framebuffers, programs and GPU buffers are created on first use and reused, so rendering
    many images of the same size with one Renderer is cheap. Not thread-safe; one per thread.
    """

    def __init__(self, width: int, height: int, samples: int = 4):
        if int(width) <= 0 or int(height) <= 0:
            raise HandcastError(f"image size must be positive, got {width}x{height}")
        self.width, self.height = int(width), int(height)
        self.samples = int(samples)
        self._ctx = None
        self._pid = None
        self._vbo = self._ibo = None
        self._vao = {}
        self._cap_v = self._cap_i = 0

    # ---- GL resources
    def _setup(self):
        ctx = get_context()
        if self._ctx is ctx and self._pid == os.getpid():
            return ctx
        self._ctx, self._pid = ctx, os.getpid()
        self._vbo = self._ibo = None
        self._vao = {}
        self._cap_v = self._cap_i = 0
        size = (self.width, self.height)
        samples = min(max(self.samples, 0), ctx.info.get("GL_MAX_SAMPLES", 4)) if self.samples > 1 else 0
        self._fbo_ms = ctx.framebuffer(
            color_attachments=[ctx.renderbuffer(size, 4, samples=samples)],
            depth_attachment=ctx.depth_renderbuffer(size, samples=samples),
        )
        self._fbo = (
            ctx.framebuffer(color_attachments=[ctx.renderbuffer(size, 4)]) if samples else self._fbo_ms
        )
        self._fbo_depth = None
        return ctx

    def _upload(self, ctx, scene: _Scene):
        nv, ni = scene.data.nbytes, scene.index.nbytes
        if self._vbo is None or nv > self._cap_v or ni > self._cap_i:
            for b in (self._vbo, self._ibo):
                if b is not None:
                    b.release()
            for vao in self._vao.values():
                vao.release()
            self._cap_v, self._cap_i = max(nv, 1 << 16) * 2, max(ni, 1 << 16) * 2
            self._vbo = ctx.buffer(reserve=self._cap_v, dynamic=True)
            self._ibo = ctx.buffer(reserve=self._cap_i, dynamic=True)
            self._vao = {}
        self._vbo.write(scene.data)
        self._ibo.write(scene.index)

    def _get_vao(self, ctx, name):
        vao = self._vao.get(name)
        if vao is None:
            prog = _program(ctx, name)
            vao = ctx.vertex_array(
                prog,
                [(self._vbo, "3f 3f 3f 2f", "in_pos", "in_normal", "in_color", "in_uv")],
                index_buffer=self._ibo,
                index_element_size=4,
                skip_errors=True,
            )
            self._vao[name] = vao
        return vao

    # ---- scene packing
    @staticmethod
    def _pack(meshes) -> _Scene:
        nv = sum(len(m.vertices) for m in meshes)
        ni = sum(m.faces.size for m in meshes)
        data = np.zeros((nv, _STRIDE), dtype=np.float32)
        index = np.empty(ni, dtype=np.uint32)
        draws = []
        ov = oi = 0
        for m in meshes:
            n, k = len(m.vertices), m.faces.size
            if n == 0 or k == 0:
                continue
            d = data[ov : ov + n]
            d[:, 0:3] = m.vertices
            d[:, 3:6] = m.normals if m.normals is not None else vertex_normals(m.vertices, m.faces)
            d[:, 6:9] = np.asarray(m.color, dtype=np.float32) / 255.0
            if m.uv is not None:
                d[:, 9:11] = m.uv
            index[oi : oi + k] = m.faces.reshape(-1) + ov
            draws.append((oi, k, m.texture))
            ov += n
            oi += k
        return _Scene(data, index[:oi], draws)

    # ---- public
    def render(self, meshes: list[Mesh], K: np.ndarray, world_to_cam: np.ndarray | None = None, background=None,
               **shading) -> np.ndarray:
        """Render ``meshes`` and return an (H, W, 3) uint8 RGB image (row 0 at the top): the ``image`` of
        :meth:`render_layers`, which documents the arguments; ``shading`` are its keyword arguments
        light_dir, ambient, diffuse, specular, shininess, near, far and light_color."""
        return self.render_layers(meshes, K, world_to_cam, background, **shading).image

    def render_layers(
        self,
        meshes: list[Mesh],
        K: np.ndarray,
        world_to_cam: np.ndarray | None = None,
        background=None,
        light_dir=None,
        ambient: float = 0.35,
        diffuse: float = 0.65,
        specular: float = 0.12,
        shininess: float = 32.0,
        near: float = 0.01,
        far: float = 100.0,
        depth: bool = False,
        light_color=(1.0, 1.0, 1.0),
    ) -> RenderLayers:
        """Render ``meshes``: the (H, W, 3) uint8 RGB image (row 0 at the top), the coverage ``alpha`` and
        (with ``depth=True``) the camera-z depth map. See :class:`RenderLayers`.

        K: (3, 3) OpenCV intrinsics in pixels for this image size.
        world_to_cam: (4, 4) rigid transform from the meshes' frame to the OpenCV camera; None =
            identity (meshes already in camera coordinates).
        background: None (black), an RGB colour (3,) 0-255, or an (H, W, 3) uint8 image that is
            kept exactly wherever no mesh covers a pixel.
        light_dir: (3,) direction from the surface towards the light, camera frame (OpenCV axes);
            default: from above, slightly left, behind the camera.
        ambient, diffuse, specular, shininess: Lambert + Blinn-Phong terms (colours in [0, 1]).
        near, far: clipping distances along the camera z axis, metres.
        light_color: (3,) RGB multipliers in [0, 1] of all lighting (a tinted light).
        """
        W, H = self.width, self.height
        if isinstance(meshes, Mesh):
            meshes = [meshes]
        for m in meshes:
            if not isinstance(m, Mesh):
                raise HandcastError(f"render() takes a list of handcast.render.Mesh, got {type(m).__name__}")
        bg_img = None
        bg_col = np.zeros(3, dtype=np.float32)
        if background is not None:
            b = np.asarray(background)
            if b.ndim == 3:
                if b.shape != (H, W, 3) or b.dtype != np.uint8:
                    raise HandcastError(
                        f"background image must be ({H}, {W}, 3) uint8, got {b.shape} {b.dtype}"
                    )
                bg_img = b
            elif b.shape == (3,):
                bg_col = _rgb01(b)
            else:
                raise HandcastError(f"background must be None, an RGB colour or an (H, W, 3) image, got {b.shape}")
        w2c = np.eye(4) if world_to_cam is None else np.asarray(world_to_cam, dtype=np.float64)
        if w2c.shape != (4, 4):
            raise HandcastError(f"world_to_cam must be (4, 4), got {w2c.shape}")
        proj = projection_matrix(K, W, H, near, far)
        ld = np.array([-0.3, -0.6, -1.0] if light_dir is None else light_dir, dtype=np.float64).reshape(3)
        ld = ld / max(np.linalg.norm(ld), 1e-12)
        normal_mat = np.linalg.inv(w2c[:3, :3]).T

        ctx = self._setup()
        scene = self._pack(meshes)
        if scene.draws:
            self._upload(ctx, scene)

        prog = _program(ctx, "shade")
        prog["w2c"].write(w2c.T.astype("f4").tobytes())
        prog["proj"].write(proj.T.astype("f4").tobytes())
        prog["normal_mat"].write(normal_mat.T.astype("f4").tobytes())
        prog["light_dir"].value = tuple(ld)
        prog["ambient"].value = float(ambient)
        prog["diffuse"].value = float(diffuse)
        prog["specular"].value = float(specular)
        prog["shininess"].value = float(shininess)
        lc = np.asarray(light_color, np.float64).reshape(3)
        prog["light_color"].value = tuple(float(x) for x in lc)

        ctx.enable_only(ctx.DEPTH_TEST)
        self._fbo_ms.use()
        self._fbo_ms.clear(*bg_col, 0.0, depth=1.0)
        if scene.draws:
            vao = self._get_vao(ctx, "shade")
            for first, count, tex in scene.draws:
                if tex is not None:
                    t = ctx.texture((tex.shape[1], tex.shape[0]), 3, tex.tobytes(), alignment=1)
                    t.build_mipmaps()
                    t.filter = (ctx.LINEAR_MIPMAP_LINEAR, ctx.LINEAR)
                    t.repeat_x = t.repeat_y = True
                    t.use(0)
                    prog["tex"].value = 0
                    prog["use_texture"].value = True
                    vao.render(ctx.TRIANGLES, vertices=count, first=first)
                    t.release()
                    prog["use_texture"].value = False
                else:
                    prog["use_texture"].value = False
                    vao.render(ctx.TRIANGLES, vertices=count, first=first)
        if self._fbo is not self._fbo_ms:
            ctx.copy_framebuffer(self._fbo, self._fbo_ms)
        raw = np.frombuffer(self._fbo.read(components=4, alignment=1), dtype=np.uint8).reshape(H, W, 4)
        a8 = raw[..., 3]
        if bg_img is not None:
            # premultiplied colour (cleared to 0) + (1 - alpha) * background, in integers
            inv = (255 - a8.astype(np.uint16))[..., None]
            img = raw[..., :3].astype(np.uint16) + (inv * bg_img + 127) // 255
            image = np.minimum(img, 255).astype(np.uint8)
        else:
            image = np.ascontiguousarray(raw[..., :3])
        alpha = a8.astype(np.float32) / 255.0

        depth_map = None
        if depth:
            depth_map = self._render_depth(ctx, scene, w2c, proj, normal_mat)
        return RenderLayers(image, alpha, depth_map)

    def _render_depth(self, ctx, scene, w2c, proj, normal_mat):
        W, H = self.width, self.height
        if self._fbo_depth is None:
            self._fbo_depth = ctx.framebuffer(
                color_attachments=[ctx.renderbuffer((W, H), 1, dtype="f4")],
                depth_attachment=ctx.depth_renderbuffer((W, H)),
            )
        prog = _program(ctx, "depth")
        prog["w2c"].write(w2c.T.astype("f4").tobytes())
        prog["proj"].write(proj.T.astype("f4").tobytes())
        if "normal_mat" in prog:
            prog["normal_mat"].write(normal_mat.T.astype("f4").tobytes())
        ctx.enable_only(ctx.DEPTH_TEST)
        self._fbo_depth.use()
        self._fbo_depth.clear(np.inf, 0.0, 0.0, 0.0, depth=1.0)
        if scene.draws:
            vao = self._get_vao(ctx, "depth")
            for first, count, _ in scene.draws:
                vao.render(ctx.TRIANGLES, vertices=count, first=first)
        d = np.frombuffer(self._fbo_depth.read(components=1, dtype="f4", alignment=1), dtype=np.float32)
        return d.reshape(H, W).copy()


def get_renderer(width: int, height: int, samples: int = 4) -> Renderer:
    """A cached :class:`Renderer` for this image size (one per size and process)."""
    key = (int(width), int(height), int(samples), os.getpid())
    r = _renderers.get(key)
    if r is None:
        r = Renderer(width, height, samples)
        _renderers[key] = r
    return r
