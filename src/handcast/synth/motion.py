"""Motion primitives: minimum-jerk submovements for wrist position, rotation and finger pose.

A hand's motion is a :class:`HandTimeline`: a start state plus submovements. Each submovement
starts at ``t0``, lasts ``dur`` seconds and follows the minimum-jerk profile
``s(tau) = 10 tau^3 - 15 tau^4 + 6 tau^5`` (zero velocity and acceleration at both ends).
Position and finger submovements are *additive* (Flash & Hogan superposition), so overlapping
ones blend into one smooth curved movement instead of stopping at via points. Rotations are
chained geodesic (slerp) steps on the same profile, so the wrist turns smoothly towards each target.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

__all__ = ["min_jerk", "min_jerk_vel", "min_rotation_time", "HandTimeline", "tremor"]


# Peak wrist angular speed of a minimum-jerk turn of angle a in time D is 1.875 a / D; turns are
# made at least this long so the peak stays below about 5 rad/s (fast but natural reaching).
def min_rotation_time(angle: float) -> float:
    """Shortest duration (s) the planner allows for a wrist turn of ``angle`` radians."""
    return 0.375 * angle + 0.1


def min_jerk(tau: np.ndarray) -> np.ndarray:
    """Minimum-jerk position profile s(tau), tau clipped to [0, 1]."""
    x = np.clip(tau, 0.0, 1.0)
    return x * x * x * (10.0 - 15.0 * x + 6.0 * x * x)


def min_jerk_vel(tau: np.ndarray) -> np.ndarray:
    """ds/dtau of the minimum-jerk profile (0 outside [0, 1])."""
    x = np.clip(tau, 0.0, 1.0)
    return 30.0 * x * x * (1.0 - x) ** 2


@dataclass
class _Seg:
    t0: float
    dur: float
    value: np.ndarray  # delta (position, fingers) or rotation vector step (rotation, body frame)
    label: str = ""


@dataclass
class HandTimeline:
    """Planned motion of one hand (world frame).

    pos0: (3,) start wrist position, m. rot0: (3, 3) start wrist frame (see handcast.synth.grasps:
    columns = fingers direction, palm normal, thumb side). fingers0: (15, 3) start finger pose
    (flat axis-angle of MANO joints 1..15, radians).
    """

    pos0: np.ndarray
    rot0: np.ndarray
    fingers0: np.ndarray
    pos_segs: list = field(default_factory=list)
    rot_segs: list = field(default_factory=list)
    fing_segs: list = field(default_factory=list)
    events: list = field(default_factory=list)  # (t, label) for meta
    # planned end states (after all submovements so far)
    pos_end: np.ndarray | None = None
    rot_end: np.ndarray | None = None
    fingers_end: np.ndarray | None = None
    t_free: float = 0.0  # time at which the last planned submovement ends

    def __post_init__(self):
        self.pos0 = np.asarray(self.pos0, np.float64)
        self.rot0 = np.asarray(self.rot0, np.float64)
        self.fingers0 = np.asarray(self.fingers0, np.float64)
        self.pos_end = self.pos0.copy()
        self.rot_end = self.rot0.copy()
        self.fingers_end = self.fingers0.copy()

    def _bump(self, t0: float, dur: float):
        self.t_free = max(self.t_free, t0 + dur)

    @staticmethod
    def _start(t0: float) -> float:
        """Submovements never start before t = 0, so frame 0 is exactly the start state."""
        return max(float(t0), 0.0)

    def move_to(self, t0: float, dur: float, pos) -> None:
        """Wrist to ``pos`` (3,) (relative to the planned end position) in ``dur`` s from ``t0``."""
        t0 = self._start(t0)
        d = np.asarray(pos, np.float64) - self.pos_end
        self.pos_segs.append(_Seg(t0, dur, d))
        self.pos_end = self.pos_end + d
        self._bump(t0, dur)

    def move_by(self, t0: float, dur: float, delta) -> None:
        """Add a submovement of displacement ``delta`` (3,)."""
        t0 = self._start(t0)
        d = np.asarray(delta, np.float64)
        self.pos_segs.append(_Seg(t0, dur, d))
        self.pos_end = self.pos_end + d
        self._bump(t0, dur)

    def arc(self, t0: float, dur: float, height: float) -> None:
        """A vertical up-then-down excursion of ``height`` m (net zero) over ``dur`` s."""
        t0 = self._start(t0)
        up = np.array([0.0, 0.0, height])
        self.pos_segs.append(_Seg(t0, dur / 2, up))
        self.pos_segs.append(_Seg(t0 + dur / 2, dur / 2, -up))
        self._bump(t0, dur)

    def rotate_to(self, t0: float, dur: float, rot) -> None:
        """Turn the wrist frame to ``rot`` (3, 3) geodesically in ``dur`` s from ``t0``."""
        t0 = self._start(t0)
        rot = np.asarray(rot, np.float64)
        step = Rotation.from_matrix(self.rot_end.T @ rot).as_rotvec()  # body-frame step
        dur = max(float(dur), min_rotation_time(float(np.linalg.norm(step))))
        self.rot_segs.append(_Seg(t0, dur, step))
        self.rot_end = rot.copy()
        self._bump(t0, dur)

    def fingers_to(self, t0: float, dur: float, fingers) -> None:
        """Blend the finger pose to ``fingers`` (15, 3) in ``dur`` s from ``t0``."""
        t0 = self._start(t0)
        d = np.asarray(fingers, np.float64) - self.fingers_end
        self.fing_segs.append(_Seg(t0, dur, d))
        self.fingers_end = self.fingers_end + d
        self._bump(t0, dur)

    def event(self, t: float, label: str) -> None:
        self.events.append((float(t), label))

    def sample(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Evaluate at times ``t`` (T,) s -> wrist position (T, 3), wrist frame (T, 3, 3), fingers (T, 15, 3)."""
        t = np.asarray(t, np.float64)
        pos = np.broadcast_to(self.pos0, (len(t), 3)).copy()
        for s in self.pos_segs:
            pos += min_jerk((t - s.t0) / s.dur)[:, None] * s.value
        fing = np.broadcast_to(self.fingers0, (len(t), 15, 3)).copy()
        for s in self.fing_segs:
            fing += min_jerk((t - s.t0) / s.dur)[:, None, None] * s.value
        rot = np.broadcast_to(self.rot0, (len(t), 3, 3)).copy()
        for s in self.rot_segs:  # chained body-frame steps, in planning order
            w = min_jerk((t - s.t0) / s.dur)
            if not np.any(w > 0):
                continue
            rot = rot @ Rotation.from_rotvec(w[:, None] * s.value).as_matrix()
        return pos, rot, fing


def tremor(rng: np.random.Generator, t: np.ndarray, amplitude_m: float) -> np.ndarray:
    """Physiological tremor (T, 3), m: three 7-12 Hz sinusoids per axis plus a 0.3-1 Hz drift,
    zero at t = 0 (so the first frame does not depend on it)."""
    out = np.zeros((len(t), 3))
    if amplitude_m <= 0:
        return out
    for _ in range(3):
        f = rng.uniform(7, 12, size=3)
        ph = rng.uniform(0, 2 * np.pi, size=3)
        out += amplitude_m / 3 * (np.sin(2 * np.pi * f * t[:, None] + ph) - np.sin(ph))
    f = rng.uniform(0.3, 1.0, size=3)
    ph = rng.uniform(0, 2 * np.pi, size=3)
    out += 3 * amplitude_m * (np.sin(2 * np.pi * f * t[:, None] + ph) - np.sin(ph))
    return out
