"""Procedural textures and simple object meshes for synthetic scenes.

Everything is deterministic given a ``numpy.random.Generator``. Meshes are returned as
:class:`handcast.gl.renderer.Mesh` in an object frame (metres) centred at the origin unless said
otherwise; place them with ``Mesh.transformed(T)`` (T (4, 4): object frame -> world frame).
Object "up" is +z in the object frame (trimesh's convention); remember that in an OpenCV camera
frame "up" is roughly -y, so rotate accordingly.
"""

from __future__ import annotations

import numpy as np

from handcast.errors import HandcastError
from handcast.gl.renderer import Mesh

__all__ = [
    "TEXTURE_KINDS",
    "OBJECT_KINDS",
    "procedural_texture",
    "textured_plane",
    "box",
    "cylinder",
    "sphere",
    "capsule",
    "mug",
    "random_object",
    "random_color",
]

TEXTURE_KINDS: tuple[str, ...] = ("wood", "noise", "checker", "cloth", "marble", "plain")
OBJECT_KINDS: tuple[str, ...] = ("box", "cylinder", "sphere", "capsule", "mug")


# --------------------------------------------------------------------------------------------
# Colours and noise


def random_color(rng: np.random.Generator, saturation=(0.2, 0.8), value=(0.35, 0.95)) -> np.ndarray:
    """A random RGB colour (3,) float in 0-255 drawn in HSV with the given ranges."""
    h = rng.uniform(0, 1)
    s = rng.uniform(*saturation)
    v = rng.uniform(*value)
    return _hsv_to_rgb(np.array([h, s, v])) * 255.0


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(int) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1)


def _upsample(grid: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bicubic upsampling of a small float grid to (h, w) (PIL, fast)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(grid, dtype=np.float32))
    return np.asarray(im.resize((w, h), Image.BICUBIC), dtype=np.float32)


def _fbm(rng: np.random.Generator, h: int, w: int, base: int = 4, octaves: int = 5, gain: float = 0.5,
         aspect: float = 1.0) -> np.ndarray:
    """Fractal value noise, (h, w) float32 roughly in [0, 1]. ``aspect`` > 1 stretches along x."""
    out = np.zeros((h, w), dtype=np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = base * 2**o
        gy = max(2, cells)
        gx = max(2, int(round(cells * w / h / aspect)))
        out += amp * _upsample(rng.random((gy + 1, gx + 1)), h, w)
        total += amp
        amp *= gain
    out /= total
    lo, hi = np.percentile(out, [1, 99])
    return np.clip((out - lo) / max(hi - lo, 1e-6), 0, 1)


def _mix(c0, c1, t: np.ndarray) -> np.ndarray:
    c0 = np.asarray(c0, np.float32)
    c1 = np.asarray(c1, np.float32)
    return c0 + (c1 - c0) * t[..., None]


# --------------------------------------------------------------------------------------------
# Textures


def procedural_texture(kind: str, rng: np.random.Generator, size: int | tuple[int, int] = 256) -> np.ndarray:
    """A procedural RGB texture, (h, w, 3) uint8, for tables, walls and backgrounds.

    kind: one of TEXTURE_KINDS ("wood", "noise", "checker", "cloth", "marble", "plain") or "random".
    rng: numpy Generator; the same state gives the same image.
    size: side in pixels, or (w, h).
    """
    if isinstance(size, (int, np.integer)):
        w = h = int(size)
    else:
        w, h = (int(s) for s in size)
    if w <= 0 or h <= 0:
        raise HandcastError(f"texture size must be positive, got {size}")
    if kind == "random":
        kind = TEXTURE_KINDS[int(rng.integers(len(TEXTURE_KINDS)))]
    if kind not in TEXTURE_KINDS:
        raise HandcastError(f"unknown texture kind {kind!r}; choose from {', '.join(TEXTURE_KINDS)} or 'random'")
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy /= max(h, w)
    xx /= max(h, w)

    if kind == "plain":
        c = random_color(rng)
        img = np.broadcast_to(c, (h, w, 3)) + (_fbm(rng, h, w, base=8, octaves=3)[..., None] - 0.5) * 12
    elif kind == "noise":
        c0, c1 = random_color(rng), random_color(rng)
        img = _mix(c0, c1, _fbm(rng, h, w, base=int(rng.integers(2, 6))))
    elif kind == "checker":
        c0 = random_color(rng, value=(0.15, 0.5))
        c1 = random_color(rng, value=(0.6, 0.95))
        n = rng.uniform(4, 12)
        ang = rng.uniform(0, np.pi / 2)
        x = xx * np.cos(ang) + yy * np.sin(ang)
        y = -xx * np.sin(ang) + yy * np.cos(ang)
        t = ((np.floor(x * n) + np.floor(y * n)) % 2).astype(np.float32)
        img = _mix(c0, c1, t) + (_fbm(rng, h, w, base=8, octaves=3)[..., None] - 0.5) * 20
    elif kind == "wood":
        hue = rng.uniform(0.05, 0.11)
        dark = _hsv_to_rgb(np.array([hue, rng.uniform(0.5, 0.8), rng.uniform(0.25, 0.45)])) * 255
        light = _hsv_to_rgb(np.array([hue, rng.uniform(0.35, 0.6), rng.uniform(0.6, 0.9)])) * 255
        warp = _fbm(rng, h, w, base=3, octaves=4)
        grain = _fbm(rng, h, w, base=24, octaves=2, aspect=16.0)
        ang = rng.uniform(-0.2, 0.2) + (np.pi / 2 if rng.random() < 0.5 else 0.0)
        cx, cy = rng.uniform(-2, 2), rng.uniform(-3, -1)
        # growth rings seen at a shallow angle: distance to a far centre, stretched along the grain
        x = xx * np.cos(ang) + yy * np.sin(ang)
        y = -xx * np.sin(ang) + yy * np.cos(ang)
        r = np.sqrt((x - cx) ** 2 * 0.02 + (y - cy) ** 2) + 0.08 * warp
        rings = (r * rng.uniform(6, 16)) % 1.0
        t = np.clip(0.65 * rings**1.5 + 0.35 * grain, 0, 1)
        img = _mix(dark, light, t)
    elif kind == "marble":
        c0 = random_color(rng, saturation=(0.0, 0.2), value=(0.75, 0.95))
        c1 = random_color(rng, saturation=(0.0, 0.4), value=(0.2, 0.5))
        turb = _fbm(rng, h, w, base=3, octaves=6)
        f = rng.uniform(3, 8)
        ang = rng.uniform(0, np.pi)
        x = xx * np.cos(ang) + yy * np.sin(ang)
        veins = np.abs(np.sin((x * f + turb * rng.uniform(3, 6)) * np.pi)) ** 0.3
        img = _mix(c1, c0, veins)
    else:  # cloth: a plain weave of coloured threads
        c = random_color(rng, saturation=(0.2, 0.7), value=(0.3, 0.85))
        period = rng.uniform(3.0, 7.0)  # pixels per thread
        px = np.arange(w, dtype=np.float32)[None, :] / period
        py = np.arange(h, dtype=np.float32)[:, None] / period
        warp_on_top = ((np.floor(px) + np.floor(py)) % 2).astype(np.float32)
        thread_x = 0.5 + 0.5 * np.cos(2 * np.pi * (py - np.floor(py) - 0.5))  # profile across a thread
        thread_y = 0.5 + 0.5 * np.cos(2 * np.pi * (px - np.floor(px) - 0.5))
        shade = warp_on_top * thread_x + (1 - warp_on_top) * thread_y
        shade = 0.65 + 0.35 * shade
        mottle = _fbm(rng, h, w, base=6, octaves=3)
        img = np.asarray(c, np.float32) * (shade * (0.85 + 0.3 * mottle))[..., None]
        if rng.random() < 0.5:  # coloured stripes along one or both thread directions (tartan)
            c2 = np.asarray(random_color(rng), np.float32)
            sp = rng.uniform(0.08, 0.25)
            band = ((xx % sp) < sp * 0.35).astype(np.float32)
            if rng.random() < 0.5:
                band = np.maximum(band, ((yy % sp) < sp * 0.35) * 0.7)
            img = img * (1 - 0.6 * band[..., None]) + c2 * (shade * 0.6 * band)[..., None]
    return np.clip(np.asarray(img, np.float32) + 0.5, 0, 255).astype(np.uint8)


def textured_plane(
    center,
    normal,
    size: tuple[float, float],
    texture: np.ndarray,
    up=None,
    texture_scale: float | None = None,
) -> Mesh:
    """A rectangle (two triangles) with a texture, e.g. a table top or a wall.

    center: (3,) metres, world frame. normal: (3,) plane normal (either side; both are lit).
    size: (width, height) in metres, along the plane's in-plane axes (width along ``right``).
    texture: (h, w, 3) uint8 image (see :func:`procedural_texture`).
    up: (3,) an in-plane direction for the texture's rows (projected onto the plane);
        default: any direction orthogonal to the normal.
    texture_scale: metres covered by one copy of the texture (the texture repeats); None = the
        texture is stretched once over the whole plane.
    """
    c = np.asarray(center, np.float64).reshape(3)
    n = np.asarray(normal, np.float64).reshape(3)
    n = n / max(np.linalg.norm(n), 1e-12)
    if up is None:
        a = np.eye(3)[int(np.argmin(np.abs(n)))]
    else:
        a = np.asarray(up, np.float64).reshape(3)
    v_axis = a - n * (a @ n)
    if np.linalg.norm(v_axis) < 1e-9:
        raise HandcastError("textured_plane: 'up' is parallel to the normal")
    v_axis /= np.linalg.norm(v_axis)
    u_axis = np.cross(v_axis, n)
    sw, sh = float(size[0]), float(size[1])
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
    verts = c + corners[:, :1] * sw * u_axis + corners[:, 1:] * sh * v_axis
    uv = corners + 0.5
    if texture_scale is not None:
        uv = uv * np.array([sw, sh]) / float(texture_scale)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    normals = np.repeat(n[None], 4, axis=0)
    return Mesh(verts, faces, (255, 255, 255), uv=uv, texture=np.asarray(texture, np.uint8), normals=normals)


# --------------------------------------------------------------------------------------------
# Objects


def _finish(tm, color, transform, smooth_angle_deg: float | None) -> Mesh:
    import trimesh

    if smooth_angle_deg is not None:
        # split vertices along sharp edges so averaged normals keep creases sharp
        tm = trimesh.graph.smooth_shade(tm, angle=np.radians(smooth_angle_deg), facet_minarea=None)
    m = Mesh(np.asarray(tm.vertices), np.asarray(tm.faces), np.asarray(color, np.float32))
    return m if transform is None else m.transformed(transform)


def box(extents=(0.1, 0.1, 0.1), color=(200, 200, 200), transform=None) -> Mesh:
    """Axis-aligned box centred at the origin; extents (3,) metres (x, y, z). Flat-shaded faces."""
    import trimesh

    tm = trimesh.creation.box(extents=np.asarray(extents, np.float64))
    tm = trimesh.Trimesh(tm.triangles.reshape(-1, 3), np.arange(len(tm.faces) * 3).reshape(-1, 3), process=False)
    return _finish(tm, color, transform, None)


def cylinder(radius: float = 0.04, height: float = 0.1, color=(200, 200, 200), sections: int = 32, transform=None) -> Mesh:
    """Cylinder along z centred at the origin (metres); smooth side, flat caps."""
    import trimesh

    return _finish(trimesh.creation.cylinder(radius=radius, height=height, sections=sections), color, transform, 30)


def sphere(radius: float = 0.04, color=(200, 200, 200), subdivisions: int = 3, transform=None) -> Mesh:
    """Icosphere centred at the origin (metres), smooth."""
    import trimesh

    return _finish(trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius), color, transform, None)


def capsule(radius: float = 0.03, height: float = 0.1, color=(200, 200, 200), transform=None) -> Mesh:
    """Capsule along z centred at the origin; ``height`` is the length of the cylindrical part."""
    import trimesh

    return _finish(trimesh.creation.capsule(height=height, radius=radius, count=[24, 24]), color, transform, None)


def mug(
    radius: float = 0.04,
    height: float = 0.1,
    thickness: float = 0.006,
    color=(200, 200, 200),
    handle: bool = True,
    sections: int = 32,
    transform=None,
) -> Mesh:
    """A mug: open hollow cylinder along z with a bottom and a torus handle on +x.

    The bottom sits at z = -height/2, the opening at z = +height/2 (metres).
    """
    import trimesh

    wall = trimesh.creation.annulus(r_min=radius - thickness, r_max=radius, height=height, sections=sections)
    bottom = trimesh.creation.cylinder(radius=radius - thickness * 0.5, height=thickness, sections=sections)
    bottom.apply_translation([0, 0, -height / 2 + thickness / 2])
    parts = [wall, bottom]
    if handle:
        hr = height * 0.28
        tor = trimesh.creation.torus(major_radius=hr, minor_radius=thickness * 1.1, major_sections=24, minor_sections=10)
        # torus in the xy plane -> rotate into the xz plane, move to the side
        rot = trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0])
        tor.apply_transform(rot)
        tor.apply_translation([radius + hr * 0.55, 0, 0])
        parts.append(tor)
    tm = trimesh.util.concatenate(parts)
    return _finish(tm, color, transform, 40)


def random_object(rng: np.random.Generator, kind: str | None = None, scale: float = 1.0, transform=None) -> Mesh:
    """A random hand-sized object (metres) of ``kind`` (one of OBJECT_KINDS, None = random),
    random dimensions around 4-12 cm times ``scale`` and a random colour."""
    if kind is None:
        kind = OBJECT_KINDS[int(rng.integers(len(OBJECT_KINDS)))]
    if kind not in OBJECT_KINDS:
        raise HandcastError(f"unknown object kind {kind!r}; choose from {', '.join(OBJECT_KINDS)}")
    color = random_color(rng)
    s = float(scale)
    if kind == "box":
        return box(rng.uniform(0.03, 0.14, size=3) * s, color, transform)
    if kind == "cylinder":
        return cylinder(rng.uniform(0.015, 0.05) * s, rng.uniform(0.04, 0.2) * s, color, transform=transform)
    if kind == "sphere":
        return sphere(rng.uniform(0.02, 0.06) * s, color, transform=transform)
    if kind == "capsule":
        return capsule(rng.uniform(0.01, 0.03) * s, rng.uniform(0.04, 0.12) * s, color, transform=transform)
    return mug(rng.uniform(0.03, 0.045) * s, rng.uniform(0.07, 0.11) * s, color=color, transform=transform)
