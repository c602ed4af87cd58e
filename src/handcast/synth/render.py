"""Rendering the first frame: table, objects, backdrop, both hands (skinned meshes) and forearms.

Uses :mod:`handcast.gl.renderer` (headless EGL). Meshes are built in the design world frame and
rendered with the frame-0 camera ``C_0`` (world -> camera); the hands, which the hand model gives
in the frame-0 camera, are moved to the world with ``C_0^-1``.
"""

from __future__ import annotations

import numpy as np

from handcast.gl import primitives as P
from handcast.gl.primitives import procedural_texture, random_color
from handcast.gl.renderer import Mesh, get_renderer
from handcast.synth.scene import OBJECT_CATALOG, Scene, SceneObject

__all__ = ["BACKGROUNDS", "background_texture", "object_mesh", "scene_meshes", "render_first_frame"]

BACKGROUNDS: tuple[str, ...] = ("plain", "gradient", "wall", "stripes", "clutter", "dots")


def _color(rng: np.random.Generator, s=(0.1, 0.6), v=(0.3, 0.9)) -> np.ndarray:
    return np.asarray(random_color(rng, saturation=s, value=v), np.float32)


def background_texture(kind: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """(size, size, 3) uint8 texture for the backdrop wall. ``kind`` in BACKGROUNDS."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "plain":
        c = _color(rng, (0.0, 0.25), (0.25, 0.7))
        img = np.broadcast_to(c, (size, size, 3)).copy()
    elif kind == "gradient":
        c0, c1 = _color(rng), _color(rng)
        img = c0 + (c1 - c0) * yy[..., None]
    elif kind == "wall":
        return procedural_texture(("noise", "cloth", "marble")[int(rng.integers(3))], rng, size)
    elif kind == "stripes":
        c0, c1 = _color(rng), _color(rng)
        n = rng.uniform(3, 10)
        img = np.where(((xx * n) % 1.0 < 0.5)[..., None], c0, c1)
    elif kind == "clutter":  # shelves with boxes and posters: many coloured rectangles
        img = np.broadcast_to(_color(rng, (0.0, 0.3), (0.2, 0.6)), (size, size, 3)).copy()
        for _ in range(int(rng.integers(12, 30))):
            x0, y0 = rng.integers(0, size, 2)
            w, h = rng.integers(size // 16, size // 3, 2)
            img[y0:y0 + h, x0:x0 + w] = _color(rng, (0.3, 1.0), (0.2, 1.0))
    elif kind == "dots":
        c0, c1 = _color(rng, (0.0, 0.4), (0.5, 1.0)), _color(rng, (0.5, 1.0), (0.2, 0.8))
        n = rng.uniform(5, 12)
        d = np.hypot((xx * n) % 1.0 - 0.5, (yy * n) % 1.0 - 0.5)
        img = np.where((d < rng.uniform(0.15, 0.35))[..., None], c1, c0)
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.clip(img, 0, 255).astype(np.uint8)


def _rot_z(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _T(R: np.ndarray, t) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = t
    return T


def lathe(profile, color, sections: int = 24, transform=None):
    """Surface of revolution about z (object frame, metres) from a polyline ``profile`` of (r, z)
    points. Each profile segment is its own band with its own normals, so the corners between
    segments stay sharp while the surface is smooth around the axis. Returns a Mesh."""
    prof = np.asarray(profile, np.float64)
    ang = np.linspace(0.0, 2 * np.pi, sections, endpoint=False)
    cs = np.stack([np.cos(ang), np.sin(ang)], axis=1)  # (S, 2)
    verts, norms, faces = [], [], []
    base = 0
    j = np.arange(sections)
    jn = (j + 1) % sections
    for (r0, z0), (r1, z1) in zip(prof[:-1], prof[1:]):
        dr, dz = r1 - r0, z1 - z0
        L = np.hypot(dr, dz)
        if L < 1e-9:
            continue
        nr, nz = dz / L, -dr / L
        for r, z in ((r0, z0), (r1, z1)):
            verts.append(np.column_stack([r * cs, np.full(sections, z)]))
            norms.append(np.column_stack([nr * cs, np.full(sections, nz)]))
        a, b = base + j, base + sections + j
        an, bn = base + jn, base + sections + jn
        faces.append(np.stack([a, an, bn], 1))
        faces.append(np.stack([a, bn, b], 1))
        base += 2 * sections
    m = Mesh(np.concatenate(verts), np.concatenate(faces), np.asarray(color, np.float32), normals=np.concatenate(norms))
    return m if transform is None else m.transformed(transform)


def _torus_arc(major: float, minor: float, color, half: bool = False):
    """A torus in the object's xz plane (around the y axis); ``half`` keeps the upper arc (z >= 0)."""
    import trimesh


    tor = trimesh.creation.torus(major_radius=major, minor_radius=minor, major_sections=24, minor_sections=8)
    v = np.asarray(tor.vertices)
    v = np.column_stack([v[:, 0], v[:, 2], v[:, 1]])  # xy plane -> xz plane
    f = np.asarray(tor.faces)
    if half:
        f = f[(v[f][..., 2] >= -minor - 1e-9).all(axis=(1,))]
    return Mesh(v, f, np.asarray(color, np.float32))


def object_mesh(obj: SceneObject) -> list:
    """Meshes (world frame) of one object, resting on the table at ``obj.position``."""
    shape = OBJECT_CATALOG[obj.kind].shape
    d = obj.dims
    col = np.asarray(obj.color, np.float32)
    T = _T(_rot_z(obj.yaw), np.asarray(obj.position, np.float64))
    parts = []
    if shape == "cylinder":
        r, h = d["r"], d["h"]
        parts.append(lathe([(0, 0), (r, 0), (r, h), (0, h)], col))
    elif shape == "bottle":
        r, h = d["r"], d["h"]
        parts.append(lathe([(0, 0), (r, 0), (r, 0.7 * h), (0.4 * r, 0.88 * h), (0.4 * r, 1.05 * h), (0, 1.05 * h)], col))
        parts.append(lathe([(0, 1.05 * h), (0.45 * r, 1.05 * h), (0.45 * r, 1.12 * h), (0, 1.12 * h)], (240, 240, 240)))
    elif shape in ("mug", "basket"):
        r, h = d["r"], d["h"]
        t = 0.006 if shape == "mug" else 0.004
        parts.append(lathe([(0, 0), (r, 0), (r, h), (r - t, h), (r - t, t), (0, t)], col, sections=28))
        if shape == "mug":
            hr = 0.28 * h
            m = _torus_arc(hr, 0.0065, col)
            parts.append(m.transformed(_T(np.eye(3), (r + 0.55 * hr, 0.0, 0.5 * h))))
        else:
            m = _torus_arc(0.95 * r, 0.005, col * 0.8, half=True)
            parts.append(m.transformed(_T(np.eye(3), (0.0, 0.0, h))))
    elif shape == "sphere":
        parts.append(P.sphere(d["r"], col, subdivisions=2, transform=_T(np.eye(3), (0, 0, d["r"]))))
    elif shape == "box":
        ext = (d["a"], d["a"], d["a"]) if "a" in d else (d["w"], d["d"], d["h"])
        parts.append(P.box(ext, col, transform=_T(np.eye(3), (0, 0, ext[2] / 2))))
    elif shape == "capsule":  # a pen lying on the table along its local x
        r, half = d["r"], 0.5 * d["l"] - d["r"]
        a = np.linspace(0, np.pi / 2, 4)
        prof = [(0.0, -half - r)] + [(r * np.sin(x), -half - r * np.cos(x)) for x in a[1:]]
        prof += [(r * np.cos(x), half + r * np.sin(x)) for x in a] + [(0.0, half + r)]
        Ry = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # local z -> x
        parts.append(lathe(prof, col, sections=12, transform=_T(Ry, (0, 0, r))))
    elif shape == "card":  # a card lying on a small stand
        parts.append(P.box((d["w"] * 0.6, d["h"] * 0.6, 0.012), (90, 90, 90), transform=_T(np.eye(3), (0, 0, 0.006))))
        parts.append(P.box((d["w"], d["h"], 0.003), col, transform=_T(np.eye(3), (0, 0, 0.0135))))
    elif shape == "button":
        r, h = d["r"], d["h"]
        parts.append(lathe([(0, 0), (r, 0), (r, h), (0, h)], col))
        parts.append(lathe([(0.55 * r, h), (0.55 * r, h + 0.006), (0, h + 0.006)], (220, 40, 40)))
    elif shape == "cone":
        parts.append(lathe([(0, 0), (d["r"], 0), (0, d["h"])], col))
    elif shape == "ring":
        import trimesh

        from handcast.gl.renderer import Mesh

        tm = trimesh.creation.torus(major_radius=d["r"], minor_radius=d["t"], major_sections=32, minor_sections=10)
        parts.append(Mesh(np.asarray(tm.vertices) + [0, 0, d["t"]], np.asarray(tm.faces), col))
    else:
        raise ValueError(shape)
    return [m.transformed(T) for m in parts]


def scene_meshes(scene: Scene, rng: np.random.Generator, tex_px: int = 128) -> list:
    """Static meshes of the scene (table, its front edge, floor, backdrop, objects), world frame."""
    width, depth = scene.table_size
    if scene.table_texture == "lab":  # a muted, nearly uniform lab table (grey, white, beige)
        c = _color(rng, (0.0, 0.2), (0.45, 0.9))
        grain = P.procedural_texture("noise", rng, 64).astype(np.float32).mean(-1, keepdims=True) / 255.0
        table_tex = np.clip(c * (0.95 + 0.1 * grain), 0, 255).astype(np.uint8)
    else:
        table_tex = P.procedural_texture(scene.table_texture, rng, tex_px)
    out = [
        P.textured_plane((0.0, depth / 2, 0.0), (0, 0, 1), (width, depth), table_tex, up=(0, 1, 0),
                         texture_scale=float(rng.uniform(0.3, 0.7))),
    ]
    edge = np.asarray(table_tex.reshape(-1, 3).mean(0), np.float32) * 0.6
    out.append(P.box((width, 0.03, 0.035), edge, transform=_T(np.eye(3), (0.0, 0.015, -0.0176))))
    floor_tex = P.procedural_texture(("noise", "wood", "cloth", "plain")[int(rng.integers(4))], rng, 64)
    out.append(P.textured_plane((0.0, 0.5, -0.75), (0, 0, 1), (4.0, 4.0), floor_tex, up=(0, 1, 0), texture_scale=0.8))
    wall_tex = background_texture(scene.background, rng, tex_px)
    out.append(P.textured_plane((0.0, depth + 0.35, 0.4), (0, -1, 0), (4.0, 2.6), wall_tex, up=(0, 0, -1),
                                texture_scale=float(rng.uniform(1.0, 2.5))))
    for o in scene.objects:
        out.extend(object_mesh(o))
    return out


def _capsule_between(p0, p1, r0, r1, color):
    """A tapered tube from p0 to p1 (world, m), closed by spheres; returns a Mesh."""
    p0, p1 = np.asarray(p0, float), np.asarray(p1, float)
    axis = p1 - p0
    L = np.linalg.norm(axis)
    z = axis / L
    a = np.array([1.0, 0, 0]) if abs(z[0]) < 0.9 else np.array([0, 1.0, 0])
    x = np.cross(z, a)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    n_s, n_r = 20, 8
    ang = np.linspace(0, 2 * np.pi, n_s, endpoint=False)
    ts = np.linspace(0, 1, n_r)
    ring = np.cos(ang)[:, None] * x + np.sin(ang)[:, None] * y  # (n_s, 3)
    radii = r0 + (r1 - r0) * ts
    verts = (p0 + ts[:, None, None] * axis + radii[:, None, None] * ring[None]).reshape(-1, 3)
    verts = np.concatenate([verts, p1[None]])
    i, j = np.meshgrid(np.arange(n_r - 1), np.arange(n_s), indexing="ij")
    a0, a1 = i * n_s + j, i * n_s + (j + 1) % n_s
    b0, b1 = a0 + n_s, a1 + n_s
    side = np.concatenate([np.stack([a0, a1, b1], -1).reshape(-1, 3), np.stack([a0, b1, b0], -1).reshape(-1, 3)])
    jj = np.arange(n_s)
    cap = np.stack([(n_r - 1) * n_s + jj, (n_r - 1) * n_s + (jj + 1) % n_s, np.full(n_s, n_r * n_s)], -1)
    faces = np.concatenate([side, cap])
    return Mesh(verts, np.asarray(faces), np.asarray(color, np.float32))


def render_first_frame(
    scene: Scene,
    C0: np.ndarray,
    K: np.ndarray,
    image_size: tuple[int, int],
    hand_vertices_cam: np.ndarray,
    hand_faces: list,
    wrist_world: np.ndarray,
    fingers_dir_world: np.ndarray,
    present: np.ndarray,
    rng: np.random.Generator,
    tex_px: int = 128,
) -> np.ndarray:
    """Render frame 0 -> (H, W, 3) uint8 RGB.

    C0: (4, 4) world -> frame-0 camera. K: (3, 3) px. image_size: (width, height).
    hand_vertices_cam: (2, V, 3) hand meshes in the frame-0 camera (m), (right, left).
    hand_faces: [faces_right (F, 3), faces_left (F, 3)].
    wrist_world: (2, 3) wrist positions (world), fingers_dir_world: (2, 3) unit wrist->fingers
    directions, used to draw the forearms. present: (2,) bool, draw that hand at all.
    """
    w, h = image_size
    meshes = scene_meshes(scene, rng, tex_px)
    C0inv = np.linalg.inv(C0)
    skin = scene.skin_rgb.astype(np.float32)
    sleeve = _color(rng, (0.1, 0.8), (0.15, 0.8))
    bare = rng.random() < 0.5
    for side in (0, 1):
        if not present[side]:
            continue
        v = hand_vertices_cam[side] @ C0inv[:3, :3].T + C0inv[:3, 3]
        shade = 1.0 + 0.04 * rng.standard_normal((len(v), 1)).astype(np.float32)
        meshes.append(Mesh(v, hand_faces[side], np.clip(skin[None] * shade, 0, 255)))
        # forearm: from just behind the wrist towards the elbow (back, down and outwards)
        f = fingers_dir_world[side]
        sgn = 1.0 if side == 0 else -1.0
        back = -f + np.array([sgn * 0.25, -0.35, -0.25])
        back /= np.linalg.norm(back)
        p0 = wrist_world[side] - 0.012 * f
        p1 = p0 + 0.3 * back
        meshes.append(_capsule_between(p0, p1, 0.024, 0.032, skin if bare else sleeve))
    light_cam = C0[:3, :3] @ scene.light_dir_world
    img = get_renderer(w, h).render(
        meshes, K, C0, background=(40, 40, 40), light_dir=light_cam,
        ambient=scene.ambient, diffuse=scene.diffuse, specular=0.08,
    )
    img = np.clip(img.astype(np.float32) * scene.tint, 0, 255)
    return (img + 0.5).astype(np.uint8)
