"""Scenes: a table with objects, lighting, a backdrop, a person's hand shape and skin tone.

Everything here lives in the design *world* frame (see :mod:`handcast.synth.domains`): x right,
y forward, z up, metres, table top at z = 0, table near edge at y = 0. The frame-0 camera is chosen
later (:mod:`handcast.synth.camera`) and every stored quantity is converted to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from handcast.synth.domains import DomainSpec

__all__ = ["ObjectKind", "OBJECT_CATALOG", "SceneObject", "Scene", "sample_scene", "GRASP_TYPES"]

# Grasp taxonomy used by the benchmark (a coarse version of the usual grasp taxonomies).
GRASP_TYPES: tuple[str, ...] = ("power", "pinch", "tripod", "lateral", "spherical", "hook", "flat")


@dataclass(frozen=True)
class ObjectKind:
    """A kind of object: its shape, size ranges (metres), the grasps it affords, its lab colour.

    shape: "cylinder" | "bottle" | "mug" | "sphere" | "box" | "capsule" | "card" | "basket" |
           "button" | "cone" | "ring".
    dims: name -> (lo, hi) ranges; the names each shape uses are listed in :func:`_object_geometry`.
    grasps: grasp types (GRASP_TYPES) that make sense for it.
    bimanual: a large object carried with both hands (its grasp is "flat" with both palms).
    """

    shape: str
    dims: dict
    grasps: tuple[str, ...]
    lab_color: tuple[int, int, int]
    bimanual: bool = False


OBJECT_CATALOG: dict[str, ObjectKind] = {
    "can": ObjectKind("cylinder", {"r": (0.028, 0.034), "h": (0.10, 0.13)}, ("power",), (200, 40, 40)),
    "bottle": ObjectKind("bottle", {"r": (0.03, 0.038), "h": (0.18, 0.24)}, ("power",), (60, 150, 60)),
    "mug": ObjectKind("mug", {"r": (0.035, 0.045), "h": (0.08, 0.105)}, ("power",), (230, 230, 230)),
    "ball": ObjectKind("sphere", {"r": (0.035, 0.05)}, ("spherical",), (240, 200, 30)),
    "marble": ObjectKind("sphere", {"r": (0.01, 0.016)}, ("pinch", "tripod"), (60, 80, 220)),
    "cube": ObjectKind("box", {"a": (0.04, 0.06)}, ("tripod", "spherical"), (40, 120, 220)),
    "pen": ObjectKind("capsule", {"r": (0.005, 0.008), "l": (0.11, 0.15)}, ("pinch", "tripod"), (30, 30, 30)),
    "card": ObjectKind("card", {"w": (0.075, 0.09), "h": (0.05, 0.06)}, ("lateral",), (250, 250, 250)),
    "basket": ObjectKind("basket", {"r": (0.06, 0.08), "h": (0.07, 0.1)}, ("hook",), (150, 100, 50)),
    "button": ObjectKind("button", {"r": (0.035, 0.05), "h": (0.015, 0.025)}, ("flat",), (90, 90, 100)),
    "big_box": ObjectKind(
        "box", {"w": (0.24, 0.32), "d": (0.14, 0.2), "h": (0.1, 0.16)}, ("flat",), (190, 150, 100), bimanual=True
    ),
    "book": ObjectKind("box", {"w": (0.2, 0.26), "d": (0.14, 0.19), "h": (0.025, 0.04)}, ("flat",), (120, 30, 60),
                       bimanual=True),
    "cone": ObjectKind("cone", {"r": (0.035, 0.045), "h": (0.1, 0.14)}, ("power",), (250, 120, 20)),
    "ring": ObjectKind("ring", {"r": (0.03, 0.045), "t": (0.007, 0.011)}, ("pinch", "tripod"), (200, 200, 60)),
}


@dataclass
class SceneObject:
    """One object on the table.

    kind: key of OBJECT_CATALOG. dims: its sampled dimensions (metres).
    position: (3,) world position of the object's base centre (on the table, z = 0), metres.
    yaw: rotation about world z, radians. color: (3,) RGB 0-255.
    radius: footprint radius (m, for placement). height: top height above the table (m).
    """

    kind: str
    dims: dict
    position: np.ndarray
    yaw: float
    color: np.ndarray
    radius: float
    height: float

    @property
    def spec(self) -> ObjectKind:
        return OBJECT_CATALOG[self.kind]

    def to_json(self) -> dict:
        return {
            "kind": self.kind,
            "dims": {k: round(float(v), 4) for k, v in self.dims.items()},
            "position": [round(float(x), 4) for x in self.position],
            "yaw": round(float(self.yaw), 4),
        }


@dataclass
class HandRest:
    """Initial (frame-0) state of one hand in the world frame.

    position: (3,) wrist position, m. palm: (3,) unit palm normal (direction the palm faces).
    fingers_dir: (3,) unit direction from the wrist to the middle finger. relax: finger curl in
    [0, 1]. out_of_view: the hand starts outside the image (in the lap).
    """

    position: np.ndarray
    palm: np.ndarray
    fingers_dir: np.ndarray
    relax: float
    out_of_view: bool = False


@dataclass
class Scene:
    domain: str
    objects: list[SceneObject]
    betas: np.ndarray  # (2, 10) shape coefficients (same person: both hands share them)
    skin_tone: int
    skin_rgb: np.ndarray  # (3,) 0-255
    table_texture: str
    table_size: tuple[float, float]  # (width along x, depth along y), m
    background: str
    light_dir_world: np.ndarray  # (3,) unit, from the surface towards the light
    ambient: float
    diffuse: float
    tint: np.ndarray  # (3,) multiplicative light colour
    hands: list[HandRest]  # (right, left)
    texture_seed: int
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "objects": [o.to_json() for o in self.objects],
            "table_texture": self.table_texture,
            "background": self.background,
            "skin_tone": int(self.skin_tone),
        }


def _uniform(rng: np.random.Generator, r) -> float:
    return float(rng.uniform(r[0], r[1]))


def _object_geometry(kind: str, dims: dict) -> tuple[float, float]:
    """(footprint radius, top height) in metres of an object of ``kind`` with ``dims``."""
    shape = OBJECT_CATALOG[kind].shape
    if shape in ("cylinder", "bottle", "button", "cone"):
        return dims["r"], dims["h"]
    if shape == "mug":
        return dims["r"] * 1.45, dims["h"]
    if shape == "basket":
        return dims["r"], dims["h"] + dims["r"] * 0.9  # arched handle above the rim
    if shape == "sphere":
        return dims["r"], 2 * dims["r"]
    if shape == "box":
        if "a" in dims:
            return dims["a"] * 0.71, dims["a"]
        return 0.5 * float(np.hypot(dims["w"], dims["d"])), dims["h"]
    if shape == "capsule":
        return 0.5 * dims["l"] + dims["r"], 2 * dims["r"]
    if shape == "card":
        return 0.5 * dims["w"] + 0.01, dims["h"] + 0.012
    if shape == "ring":
        return dims["r"] + dims["t"], 2 * dims["t"]
    raise ValueError(shape)


# Placement region for objects on the table (world x, y), metres.
OBJECT_REGION_X = (-0.3, 0.3)
OBJECT_REGION_Y = (0.2, 0.46)


def _place_objects(rng: np.random.Generator, kinds: list[str], dims: list[dict]) -> list[np.ndarray] | None:
    """Rejection-sample non-overlapping base positions; None if it fails (caller drops an object)."""
    placed: list[tuple[np.ndarray, float]] = []
    out = []
    for kind, d in zip(kinds, dims):
        radius, _ = _object_geometry(kind, d)
        big = OBJECT_CATALOG[kind].bimanual
        for _ in range(60):
            if big:  # large objects sit centrally so both hands can reach them
                p = np.array([rng.uniform(-0.08, 0.08), rng.uniform(0.28, 0.4), 0.0])
            else:
                p = np.array([rng.uniform(*OBJECT_REGION_X), rng.uniform(*OBJECT_REGION_Y), 0.0])
            if all(np.linalg.norm(p[:2] - q[:2]) > radius + r + 0.06 for q, r in placed):
                placed.append((p, radius))
                out.append(p)
                break
        else:
            return None
    return out


def sample_objects(rng: np.random.Generator, dom: DomainSpec) -> list[SceneObject]:
    """3..6 objects (domain range) of the domain's kinds, at most one large (bimanual) object."""
    n = int(rng.integers(dom.n_objects[0], dom.n_objects[1] + 1))
    kinds_all = list(dom.object_kinds)
    small = [k for k in kinds_all if not OBJECT_CATALOG[k].bimanual]
    large = [k for k in kinds_all if OBJECT_CATALOG[k].bimanual]
    kinds: list[str] = []
    if large and rng.random() < 0.3:
        kinds.append(large[int(rng.integers(len(large)))])
    while len(kinds) < n:
        # distinct kinds first, repeats only when the domain has few kinds
        pool = [k for k in small if k not in kinds] or small
        kinds.append(pool[int(rng.integers(len(pool)))])
    dims = []
    for k in kinds:
        spec = OBJECT_CATALOG[k]
        dims.append({name: _uniform(rng, r) for name, r in spec.dims.items()})
    while True:
        pos = _place_objects(rng, kinds, dims)
        if pos is not None:
            break
        # too crowded: drop the last object (never below 3)
        if len(kinds) <= 3:
            dims = [{name: spec_r[0] for name, spec_r in OBJECT_CATALOG[k].dims.items()} for k in kinds]
            pos = _place_objects(rng, kinds, dims)
            if pos is not None:
                break
            kinds, dims = kinds[:3], dims[:3]
            continue
        kinds, dims = kinds[:-1], dims[:-1]
    objects = []
    for k, d, p in zip(kinds, dims, pos):
        spec = OBJECT_CATALOG[k]
        if dom.colorful_objects:
            from handcast.gl.primitives import random_color

            color = np.asarray(random_color(rng, saturation=(0.3, 0.9), value=(0.35, 0.95)))
        else:
            color = np.asarray(spec.lab_color, dtype=np.float64)
            rng.random()  # keep the stream aligned with the colourful branch's consumption pattern
        radius, height = _object_geometry(k, d)
        # large objects face the person (roughly square to the table edge) so both hands can hold them
        yaw = float(rng.uniform(-0.35, 0.35)) if spec.bimanual else float(rng.uniform(-np.pi, np.pi))
        objects.append(SceneObject(k, d, p, yaw, color, radius, height))
    return objects


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def sample_hand_rest(rng: np.random.Generator, side: int, out_of_view: bool) -> HandRest:
    """A relaxed hand near the table's front edge (palm down, fingers forward and a bit inwards)."""
    sgn = 1.0 if side == 0 else -1.0  # right hand on +x
    pos = np.array([sgn * rng.uniform(0.11, 0.22), rng.uniform(-0.05, 0.05), rng.uniform(0.035, 0.1)])
    yaw_in = np.radians(rng.uniform(5, 30))  # fingers point forward, turned towards the midline
    f = np.array([-sgn * np.sin(yaw_in), np.cos(yaw_in), -np.radians(rng.uniform(0, 15))])
    f = _unit(f)
    # palm faces down, rolled a bit outwards (thumb side up) as relaxed hands do
    roll = np.radians(rng.uniform(0, 35))
    down = np.array([0.0, 0.0, -1.0])
    down = _unit(down - f * (down @ f))
    side_dir = np.cross(f, down) * sgn  # towards the thumb for the right hand: s = f x n
    palm = _unit(np.cos(roll) * down + np.sin(roll) * side_dir)
    if out_of_view:
        pos = np.array([sgn * rng.uniform(0.3, 0.45), rng.uniform(-0.45, -0.35), rng.uniform(-0.35, -0.25)])
    return HandRest(pos, palm, f, float(rng.uniform(0.2, 0.8)), out_of_view)


# Skin tones (RGB 0-255), light to dark; indices 6-7 are used only by the wild domain.
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (245, 215, 195),
    (235, 190, 160),
    (215, 165, 130),
    (190, 135, 100),
    (145, 95, 65),
    (100, 65, 45),
    (250, 200, 200),  # pinkish pale
    (70, 45, 35),  # very dark
)


def sample_betas(rng: np.random.Generator, dom: DomainSpec) -> np.ndarray:
    """(2, 10) shape coefficients, identical for both hands (one person)."""
    b = rng.uniform(dom.betas_range[0], dom.betas_range[1], size=10)
    if dom.betas_outside is not None:
        mag = rng.uniform(dom.betas_outside[0], dom.betas_outside[1], size=2)
        sign = np.where(rng.random(2) < 0.5, -1.0, 1.0)
        b[:2] = mag * sign
    return np.stack([b, b]).astype(np.float32)


def sample_scene(rng: np.random.Generator, dom: DomainSpec) -> Scene:
    """Sample a complete scene of domain ``dom`` (everything frame 0 depends on, except the camera)."""
    objects = sample_objects(rng, dom)
    betas = sample_betas(rng, dom)
    tone = int(dom.skin_tones[int(rng.integers(len(dom.skin_tones)))])
    skin = np.asarray(SKIN_TONES[tone], dtype=np.float64) * rng.uniform(0.93, 1.05, size=3)
    table_tex = dom.table_textures[int(rng.integers(len(dom.table_textures)))]
    background = dom.backgrounds[int(rng.integers(len(dom.backgrounds)))]
    # light from above, possibly from one side / the front
    az = rng.uniform(0, 2 * np.pi)
    el = np.radians(rng.uniform(45, 85))
    light = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])
    ambient = _uniform(rng, dom.light_ambient)
    diffuse = _uniform(rng, dom.light_diffuse)
    tint = np.clip(1.0 + rng.uniform(-dom.light_tint, dom.light_tint, size=3), 0.5, 1.5)
    out = int(rng.integers(2)) if rng.random() < dom.p_out_of_view * 0.5 else -1  # start out of view
    hands = [sample_hand_rest(rng, h, out_of_view=(out == h)) for h in (0, 1)]
    table_size = (float(rng.uniform(1.1, 1.5)), float(rng.uniform(0.75, 1.0)))
    return Scene(
        domain=dom.name,
        objects=objects,
        betas=betas,
        skin_tone=tone,
        skin_rgb=np.clip(skin, 0, 255),
        table_texture=table_tex,
        table_size=table_size,
        background=background,
        light_dir_world=light,
        ambient=ambient,
        diffuse=diffuse,
        tint=tint,
        hands=hands,
        texture_seed=int(rng.integers(2**31)),
    )
