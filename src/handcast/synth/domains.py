"""The three synthetic domains (``lab``, ``diverse``, ``wild``) and their parameter ranges.

They mirror the paper's experiment: a model is trained on a lab domain with 3D labels plus a
diverse domain that only has (noisy) 2D keypoints, and tested zero-shot on a wild domain. The
differences are real: object sets, camera height / tilt / field of view, hand shapes (betas),
textures, lighting and the 2D keypoint source all change between domains.

World frame used while designing a scene (never stored; clips are in the frame-0 camera):
x to the person's right, y forward (away from the person), z up, metres. The table top is the plane
z = 0 and its near edge is the line y = 0; the person sits at y < 0.

Ranges are ``(lo, hi)`` tuples sampled uniformly unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from handcast.errors import HandcastError

__all__ = ["DetectorNoise", "DomainSpec", "DOMAINS", "get_domain"]


@dataclass(frozen=True)
class DetectorNoise:
    """Detector-like corruption of 2D keypoints (see :mod:`handcast.synth.noise`).

    jitter_px: base Gaussian jitter (pixels, for a 256-pixel image; scaled with the image size).
    depth_gain: extra jitter per metre of depth beyond 0.35 m (relative: 1.0 doubles it at 1.35 m).
    occlusion_gain: extra relative jitter for keypoints judged occluded (behind the palm or the other hand).
    drift_px: std of a slowly varying per-hand offset (pixels), correlated over ~0.3 s.
    p_drop_kp: probability that one keypoint is dropped (conf 0, coordinates set to 0).
    p_miss_frame: probability per hand and frame of a missed detection (whole hand conf 0).
    p_finger_swap: probability per hand and frame that two neighbouring fingers are swapped.
    p_hand_swap: probability per frame that the right and left detections are swapped.
    """

    jitter_px: float = 1.5
    depth_gain: float = 1.0
    occlusion_gain: float = 2.0
    drift_px: float = 1.0
    p_drop_kp: float = 0.02
    p_miss_frame: float = 0.03
    p_finger_swap: float = 0.01
    p_hand_swap: float = 0.005


@dataclass(frozen=True)
class DomainSpec:
    """All sampling ranges of one domain. Angles in degrees, lengths in metres."""

    name: str
    provenance: str  # "gt" (3D labels usable for training) or "2d-only" (3D kept for evaluation)
    description: str
    object_kinds: tuple[str, ...]  # keys of handcast.synth.scene.OBJECT_CATALOG
    n_objects: tuple[int, int]  # inclusive
    colorful_objects: bool  # False: each kind has its fixed lab colour
    fov_deg: tuple[float, float]  # horizontal field of view
    principal_jitter: float  # principal point offset, fraction of the image size
    cam_height: tuple[float, float]  # head (camera) height above the table top
    cam_back: tuple[float, float]  # head distance behind the table's near edge
    cam_side: tuple[float, float]  # lateral head offset
    cam_tilt_deg: tuple[float, float]  # downward pitch of the optical axis below horizontal
    cam_yaw_deg: tuple[float, float]
    cam_roll_deg: tuple[float, float]
    head_follow: tuple[float, float]  # how much the gaze follows the acting hands (0 = not at all)
    head_sway: tuple[float, float]  # amplitude of the slow head translation (m)
    betas_range: tuple[float, float]  # uniform range of each shape coefficient
    betas_outside: tuple[float, float] | None  # if set: |beta_0|, |beta_1| drawn here (random sign)
    table_textures: tuple[str, ...]  # handcast.gl.primitives texture kinds, or "lab" (muted plain)
    backgrounds: tuple[str, ...]  # see handcast.synth.render
    light_ambient: tuple[float, float]
    light_diffuse: tuple[float, float]
    light_tint: float  # max deviation of the light colour from white (0-1)
    skin_tones: tuple[int, ...]  # indices into handcast.synth.render.SKIN_TONES
    tremor_mm: tuple[float, float]  # amplitude of the physiological tremor
    p_idle: float  # probability that the second hand idles for the whole clip
    p_out_of_view: float  # probability that the second hand leaves the view
    p_bimanual: float  # probability that the clip's task is a bimanual carry (if a large object exists)
    kp2d_noise: DetectorNoise | None  # None: kp2d are the exact projections
    texture_px: int = 128  # side of procedural textures
    extra: dict = field(default_factory=dict)


_LAB_OBJECTS = ("can", "ball", "cube", "pen", "big_box", "button")
_DIVERSE_OBJECTS = (
    "can", "bottle", "mug", "ball", "marble", "cube", "pen", "card", "basket", "button", "big_box", "book",
)
_WILD_OBJECTS = _DIVERSE_OBJECTS + ("cone", "ring")

DOMAINS: dict[str, DomainSpec] = {
    "lab": DomainSpec(
        name="lab",
        provenance="gt",
        description="capture-studio look: 6 object kinds in fixed colours, plain table and backdrop, "
        "one camera rig (narrow height/tilt/fov ranges), average hand shapes, exact 2D keypoints",
        object_kinds=_LAB_OBJECTS,
        n_objects=(3, 4),
        colorful_objects=False,
        fov_deg=(58.0, 66.0),
        principal_jitter=0.0,
        cam_height=(0.46, 0.52),
        cam_back=(0.12, 0.18),
        cam_side=(-0.02, 0.02),
        cam_tilt_deg=(52.0, 60.0),
        cam_yaw_deg=(-4.0, 4.0),
        cam_roll_deg=(-2.0, 2.0),
        head_follow=(0.15, 0.3),
        head_sway=(0.005, 0.015),
        betas_range=(-1.0, 1.0),
        betas_outside=None,
        table_textures=("lab",),
        backgrounds=("plain",),
        light_ambient=(0.38, 0.45),
        light_diffuse=(0.6, 0.7),
        light_tint=0.03,
        skin_tones=(0, 1, 2, 3, 4, 5),
        tremor_mm=(0.0, 0.3),
        p_idle=0.2,
        p_out_of_view=0.05,
        p_bimanual=0.2,
        kp2d_noise=None,
    ),
    "diverse": DomainSpec(
        name="diverse",
        provenance="2d-only",
        description="varied homes: 12 object kinds in random colours, textured tables and backgrounds, "
        "wide camera ranges, wider hand shapes; 2D keypoints from a simulated detector",
        object_kinds=_DIVERSE_OBJECTS,
        n_objects=(3, 6),
        colorful_objects=True,
        fov_deg=(50.0, 85.0),
        principal_jitter=0.03,
        cam_height=(0.36, 0.64),
        cam_back=(0.05, 0.25),
        cam_side=(-0.08, 0.08),
        cam_tilt_deg=(38.0, 72.0),
        cam_yaw_deg=(-12.0, 12.0),
        cam_roll_deg=(-6.0, 6.0),
        head_follow=(0.2, 0.5),
        head_sway=(0.01, 0.03),
        betas_range=(-2.0, 2.0),
        betas_outside=None,
        table_textures=("wood", "noise", "checker", "cloth", "marble", "plain"),
        backgrounds=("plain", "gradient", "wall", "stripes"),
        light_ambient=(0.25, 0.5),
        light_diffuse=(0.45, 0.85),
        light_tint=0.15,
        skin_tones=(0, 1, 2, 3, 4, 5),
        tremor_mm=(0.0, 0.5),
        p_idle=0.15,
        p_out_of_view=0.12,
        p_bimanual=0.2,
        kp2d_noise=DetectorNoise(),
    ),
    "wild": DomainSpec(
        name="wild",
        provenance="gt",
        description="evaluation only: unseen backgrounds (clutter, dots), extreme lighting, wide-angle "
        "fields of view, hand shapes outside the training betas range, two unseen object kinds; "
        "2D keypoints from the simulated detector",
        object_kinds=_WILD_OBJECTS,
        n_objects=(3, 6),
        colorful_objects=True,
        fov_deg=(88.0, 105.0),
        principal_jitter=0.05,
        cam_height=(0.32, 0.68),
        cam_back=(0.02, 0.28),
        cam_side=(-0.1, 0.1),
        cam_tilt_deg=(34.0, 76.0),
        cam_yaw_deg=(-15.0, 15.0),
        cam_roll_deg=(-10.0, 10.0),
        head_follow=(0.2, 0.6),
        head_sway=(0.01, 0.04),
        betas_range=(-2.0, 2.0),
        betas_outside=(2.3, 3.2),
        table_textures=("wood", "noise", "checker", "cloth", "marble"),
        backgrounds=("clutter", "dots"),
        light_ambient=(0.15, 0.55),
        light_diffuse=(0.3, 1.0),
        light_tint=0.3,
        skin_tones=(0, 1, 2, 3, 4, 5, 6, 7),
        tremor_mm=(0.1, 0.6),
        p_idle=0.15,
        p_out_of_view=0.12,
        p_bimanual=0.2,
        kp2d_noise=DetectorNoise(jitter_px=2.0, p_miss_frame=0.04),
    ),
}


def get_domain(domain: str | DomainSpec) -> DomainSpec:
    """The :class:`DomainSpec` named ``domain`` (or ``domain`` itself); HandcastError if unknown."""
    if isinstance(domain, DomainSpec):
        return domain
    try:
        return DOMAINS[domain]
    except (KeyError, TypeError):
        raise HandcastError(f"unknown synthetic domain {domain!r}; choose from {', '.join(DOMAINS)}") from None
