"""Action planning: what each hand does over the clip, turned into :class:`HandTimeline` s.

Actions (each built from minimum-jerk submovements, see :mod:`handcast.synth.motion`):

* ``pick_place``: reach (curved path, wrist turning to the grasp orientation, fingers pre-shaping),
  approach, grasp (fingers close to the grasp type's shape), lift, move, place elsewhere, release,
  retreat to a rest pose;
* ``pick_hold``: reach, grasp, lift and bring the object up to look at it (turning the wrist),
  put it back, release, retreat;
* ``press``: reach above a flat object, press it with a flat hand (once or twice), retreat;
* ``bimanual_carry``: both hands reach a large object from its two sides, grasp it with flat
  palms, lift, carry it, put it down, release and retreat together;
* ``idle``: small slow shifts of a resting hand; ``leave``: the hand goes out of view (the lap);
  ``enter``: a hand that starts out of view comes in.

Hands: 0 = right, 1 = left. World frame: see :mod:`handcast.synth.domains`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation

from handcast.synth.grasps import RELAXED, cross3, grasp_params
from handcast.synth.motion import HandTimeline, min_rotation_time
from handcast.synth.scene import (
    OBJECT_CATALOG,
    OBJECT_REGION_X,
    OBJECT_REGION_Y,
    Scene,
    SceneObject,
    sample_hand_rest,
)

__all__ = ["Intent", "PlanContext", "frame_from", "plan_motion", "ACTIONS", "possible_intents"]

ACTIONS: tuple[str, ...] = ("pick_place", "pick_hold", "press", "bimanual_carry", "idle", "leave", "enter")
Z = np.array([0.0, 0.0, 1.0])


def _unit(v) -> np.ndarray:
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def _chir(side: int) -> float:
    return 1.0 if side == 0 else -1.0


def frame_from(side: int, n=None, s=None, f=None) -> np.ndarray:
    """Wrist frame (3, 3) with columns (f, n, s) from the palm normal and either the thumb side
    ``s`` or the fingers direction ``f`` (the second vector is made orthogonal to ``n``)."""
    c = _chir(side)
    n = _unit(n)
    if s is not None:
        s = _unit(np.asarray(s, float) - n * (n @ s))
        f = c * cross3(n, s)
    else:
        f = _unit(np.asarray(f, float) - n * (n @ f))
        s = c * cross3(f, n)
    return np.stack([f, n, s], axis=1)


def _rot_z(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def shoulder(side: int) -> np.ndarray:
    return np.array([_chir(side) * 0.18, -0.28, 0.28])


@dataclass
class Intent:
    """The first action of a clip's primary hand: ``action`` on object ``obj`` with ``grasp``."""

    side: int  # 0 right, 1 left (for bimanual: the leading hand)
    action: str
    obj: int
    grasp: str

    def to_json(self) -> dict:
        return {"hand": ("right", "left")[self.side], "action": self.action, "object": int(self.obj),
                "grasp": self.grasp}


@dataclass
class PlanContext:
    """Everything the planner needs; ``objects`` positions are updated as objects get moved."""

    scene: Scene
    kit: object  # handcast.synth.handkit.HandKit
    rng: np.random.Generator
    duration: float
    objects: list  # list[SceneObject] (copies; positions change)
    out_of_view: list  # (2,) world positions out of the frame-0 view (lap)
    busy_until: dict = field(default_factory=dict)  # object index -> time it is free again
    targets: dict = field(default_factory=dict)  # hand -> (object index, time the hand is done with it)
    labels: list = field(default_factory=list)  # [(hand, t_start, action, object, grasp)]


# ---------------------------------------------------------------------------------------------
# Grasp targets


def _grasp_setup(ctx: PlanContext, side: int, obj: SceneObject, grasp: str, jitter: bool = True):
    """World wrist frame F (3, 3), grasp point G (3,), closure, kind of grasp centre."""
    rng = ctx.rng
    c = _chir(side)
    shape = OBJECT_CATALOG[obj.kind].shape
    base = np.asarray(obj.position, float)
    a = base - shoulder(side)
    a[2] = 0.0
    a = _unit(a)
    d = obj.dims
    j = (lambda lo, hi: rng.uniform(lo, hi)) if jitter else (lambda lo, hi: 0.5 * (lo + hi))
    if grasp == "power":
        n = _rot_z(np.radians(c * j(-5, 20))) @ a
        s = _rot_z(0) @ (Z + j(-0.25, 0.25) * cross3(n, Z))
        F = frame_from(side, n=n, s=s)
        frac = {"cone": 0.35, "mug": 0.5}.get(shape, 0.45)
        zg = float(np.clip(frac * d["h"], 0.04, 0.1))
        r = d["r"] * (1 - zg / d["h"]) if shape == "cone" else d["r"]
        G = base + zg * Z
        closure = float(np.clip(1.3 - 11.0 * r, 0.35, 1.0))
        return F, G, closure, ("palm", r + 0.014)
    if grasp == "spherical":
        n = _unit(-Z - j(0.0, 0.3) * a)
        F = frame_from(side, n=n, f=_rot_z(np.radians(j(-15, 15))) @ a)
        r = d["r"] if "r" in d else 0.55 * d["a"]
        G = base + (d["r"] if "r" in d else 0.5 * d["a"]) * Z
        closure = float(np.clip(1.45 - 14.0 * r, 0.3, 1.0))
        return F, G, closure, ("palm", r + 0.016)
    if grasp in ("pinch", "tripod"):
        n = _unit(-Z - j(0.2, 0.6) * a)
        yaw = j(-20, 20)
        if shape == "capsule":  # pen: fingers across the pen's axis
            u = _rot_z(obj.yaw) @ np.array([1.0, 0, 0])
            fa = _unit(cross3(Z, u))
            fa = fa if fa @ a > 0 else -fa
            F = frame_from(side, n=_unit(-Z - j(0.2, 0.6) * fa), f=fa)
            G = base + d["r"] * Z
            size = 2 * d["r"]
        else:
            F = frame_from(side, n=n, f=_rot_z(np.radians(yaw)) @ a)
            if shape == "ring":
                G = base - a * d["r"] + d["t"] * Z
                size = 2 * d["t"]
            elif shape == "box":
                G = base + 0.6 * d["a"] * Z
                size = d["a"]
            else:
                G = base + d["r"] * Z
                size = 2 * d["r"]
        closure = float(np.clip(1.05 - size / 0.07, 0.35, 1.0))
        return F, G, closure, (grasp, 0.0)
    if grasp == "lateral":
        n = _rot_z(c * np.pi / 2) @ a
        F = frame_from(side, n=n, s=Z + j(-0.3, 0.1) * a)
        G = base - a * (0.5 * d["h"] - 0.012) + 0.0135 * Z
        return F, G, 0.9, ("lateral", 0.0)
    if grasp == "hook":
        u = _rot_z(obj.yaw) @ np.array([1.0, 0, 0])
        n = _unit(cross3(Z, u))
        n = n if n @ a < 0 else -n
        F = frame_from(side, n=n, f=_unit(-Z + j(0.1, 0.35) * a))
        G = base + (d["h"] + 0.95 * d["r"]) * Z
        return F, G, 0.85, ("hook", 0.0)
    if grasp == "flat":
        if OBJECT_CATALOG[obj.kind].bimanual:
            ux = _rot_z(obj.yaw) @ np.array([1.0, 0, 0])
            ux = ux if ux[0] >= 0 else -ux
            uy = cross3(Z, ux)
            sgn = 1.0 if side == 0 else -1.0
            n = -sgn * ux
            F = frame_from(side, n=n, f=_unit(uy + j(0.0, 0.3) * Z))
            zg = max(d["h"] - 0.022, 0.5 * d["h"])  # palm near the top edge, thumbs over the top
            G = base + sgn * 0.5 * d["w"] * ux + zg * Z - j(0.0, 0.04) * uy
            return F, G, 0.35, ("palm", 0.012)
        F = frame_from(side, n=-Z + j(0.0, 0.15) * a, f=_rot_z(np.radians(j(-15, 15))) @ a)
        top = d["h"] + 0.006 if OBJECT_CATALOG[obj.kind].shape == "button" else d["h"]
        G = base + top * Z
        return F, G, 0.3, ("palm", 0.012)
    raise ValueError(grasp)


def _grasp_center(kit, side: int, kp: np.ndarray, kind: str) -> np.ndarray:
    """Grasp centre (3,) in canonical model coordinates from canonical keypoints (21, 3)."""
    if kind == "palm":
        return (kp[0] + 2 * kp[[5, 9, 13, 17]].mean(0)) / 3.0
    if kind == "pinch":
        return 0.5 * (kp[4] + kp[8])
    if kind == "tripod":
        return (kp[4] + kp[8] + kp[12]) / 3.0
    if kind == "lateral":
        return 0.5 * (kp[4] + kp[6])
    if kind == "hook":
        return kp[[6, 7, 10, 11, 14, 15]].mean(0)
    raise ValueError(kind)


@dataclass
class GraspPlan:
    F: np.ndarray  # (3, 3) world wrist frame
    wrist: np.ndarray  # (3,) world wrist position at contact
    pre_fingers: np.ndarray  # (15, 3)
    fingers: np.ndarray  # (15, 3)
    approach: np.ndarray  # (3,) unit direction of the final approach (towards the object)
    grasp: str
    closure: float


def plan_grasp(ctx: PlanContext, side: int, obj: SceneObject, grasp: str) -> GraspPlan:
    kit = ctx.kit
    F, G, closure, (ckind, offset) = _grasp_setup(ctx, side, obj, grasp)
    pre_deg, g_deg = grasp_params(grasp, closure)
    pre = kit.fingers(side, pre_deg)
    fing = kit.fingers(side, g_deg)
    kp = kit.canonical_keypoints(side, fing)
    R = kit.global_rot(side, F)
    if ckind == "palm":
        c_can = _grasp_center(kit, side, kp, "palm")
        c_world_rel = R @ (c_can - kit.J0[side]) + offset * F[:, 1]
    else:
        c_world_rel = R @ (_grasp_center(kit, side, kp, ckind) - kit.J0[side])
    wrist = G - c_world_rel
    wrist[2] = max(wrist[2], 0.03)
    approach = F[:, 1] if ckind == "palm" else _unit(G - wrist)
    return GraspPlan(F, wrist, pre, fing, approach, grasp, closure)


# ---------------------------------------------------------------------------------------------
# Rest poses and free spots


def rest_frame(side: int, rest) -> np.ndarray:
    return frame_from(side, n=rest.palm, f=rest.fingers_dir)


def _new_rest(ctx: PlanContext, side: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A fresh relaxed pose near the table edge: (wrist (3,), frame (3, 3), fingers (15, 3))."""
    r = sample_hand_rest(ctx.rng, side, out_of_view=False)
    relax = RELAXED * (0.4 + r.relax)
    return r.position, rest_frame(side, r), ctx.kit.fingers(side, relax)


def _free_spot(ctx: PlanContext, side: int, obj_i: int) -> np.ndarray:
    """A free table position (3,) for object ``obj_i``, preferably on the hand's side."""
    rng = ctx.rng
    me = ctx.objects[obj_i]
    sgn = _chir(side)
    best, best_d = None, -1.0
    for _ in range(30):
        x = rng.uniform(*OBJECT_REGION_X) * 0.8 + sgn * 0.05
        y = rng.uniform(OBJECT_REGION_Y[0] - 0.04, OBJECT_REGION_Y[1])
        p = np.array([x, y, 0.0])
        if np.linalg.norm(p[:2] - me.position[:2]) < 0.08:
            continue
        dmin = min(
            (np.linalg.norm(p[:2] - o.position[:2]) - o.radius - me.radius
             for k, o in enumerate(ctx.objects) if k != obj_i),
            default=1.0,
        )
        if dmin > 0.04:
            return p
        if dmin > best_d:
            best, best_d = p, dmin
    return best if best is not None else me.position.copy()


# ---------------------------------------------------------------------------------------------
# Actions


def _reach(ctx: PlanContext, tl: HandTimeline, side: int, t0: float, gp: GraspPlan) -> float:
    """Reach, pre-shape and approach; returns the time the fingers have closed on the object."""
    rng = ctx.rng
    pre_wrist = gp.wrist - 0.07 * gp.approach + rng.uniform(0.02, 0.05) * Z
    dist = float(np.linalg.norm(pre_wrist - tl.pos_end))
    D = (0.5 + 0.9 * dist) * rng.uniform(0.85, 1.2)
    turn = float(Rotation.from_matrix(tl.rot_end.T @ gp.F).magnitude())
    D = max(D, min_rotation_time(turn) / 0.85)  # the wrist has turned before the hand arrives
    tl.move_to(t0, D, pre_wrist)
    if np.linalg.norm((pre_wrist - tl.pos0)[:2]) > 0.08:
        tl.arc(t0 + 0.05 * D, 0.8 * D, rng.uniform(0.02, 0.06))
    tl.rotate_to(t0 + 0.05 * D, 0.85 * D, gp.F)
    tl.fingers_to(t0 + 0.2 * D, 0.65 * D, gp.pre_fingers)
    t1 = t0 + 0.8 * D
    Da = rng.uniform(0.3, 0.45)
    tl.move_to(t1, Da, gp.wrist)
    t2 = t1 + 0.7 * Da
    Dc = rng.uniform(0.22, 0.35)
    tl.fingers_to(t2, Dc, gp.fingers)
    tl.event(t0, "reach")
    tl.event(t2, "grasp")
    return t2 + Dc


def _release_retreat(ctx: PlanContext, tl: HandTimeline, side: int, t: float, gp: GraspPlan) -> float:
    rng = ctx.rng
    Dr = rng.uniform(0.2, 0.3)
    tl.fingers_to(t, Dr, gp.pre_fingers)
    tl.event(t, "release")
    t += 0.6 * Dr
    tl.move_by(t, 0.3, -0.05 * gp.approach + 0.03 * Z)
    pos, F, fing = _new_rest(ctx, side)
    t2 = t + 0.15
    dist = float(np.linalg.norm(pos - tl.pos_end))
    D = (0.55 + 0.8 * dist) * rng.uniform(0.9, 1.2)
    tl.move_to(t2, D, pos)
    tl.rotate_to(t2, 0.9 * D, F)
    tl.fingers_to(t2 + 0.1 * D, 0.7 * D, fing)
    tl.event(t2, "retreat")
    return t2 + D


def act_pick(ctx: PlanContext, tl: HandTimeline, side: int, t0: float, oi: int, grasp: str, mode: str) -> float:
    """pick_place (mode "place") or pick_hold (mode "hold"). Returns the end time."""
    rng = ctx.rng
    obj = ctx.objects[oi]
    gp = plan_grasp(ctx, side, obj, grasp)
    t = _reach(ctx, tl, side, t0, gp)
    lift = rng.uniform(0.06, 0.14)
    Dl = rng.uniform(0.4, 0.55)
    t += 0.05
    tl.move_by(t, Dl, lift * Z)
    tl.event(t, "lift")
    if mode == "hold":
        # bring it up and towards the body, turn it to look at it, put it back
        target = np.array([0.5 * tl.pos_end[0], rng.uniform(0.05, 0.15), rng.uniform(0.18, 0.28)])
        Dm = rng.uniform(0.6, 0.9)
        tm = t + 0.5 * Dl
        tl.move_to(tm, Dm, target)
        tl.event(tm, "inspect")
        F = tl.rot_end
        turn = np.radians(rng.uniform(25, 50)) * (1 if rng.random() < 0.5 else -1)
        Rt = Rotation.from_rotvec(turn * F[:, 0]).as_matrix()
        tl.rotate_to(tm + 0.3 * Dm, 0.7, Rt @ F)
        tl.rotate_to(tm + 0.3 * Dm + 0.9, 0.7, F)
        back = gp.wrist + lift * Z
        tl.move_to(tm + 0.3 * Dm + 1.6, Dm, back)
        t = tm + 0.3 * Dm + 1.6 + Dm
        new_pos = obj.position.copy()
    else:
        new_pos = _free_spot(ctx, side, oi)
        delta = new_pos - obj.position
        delta[2] = 0.0
        Dm = (0.5 + 0.8 * float(np.linalg.norm(delta))) * rng.uniform(0.9, 1.15)
        tm = t + 0.6 * Dl
        tl.move_by(tm, Dm, delta)
        yaw = np.radians(rng.uniform(-20, 20))
        tl.rotate_to(tm, Dm, _rot_z(yaw) @ tl.rot_end)
        tl.event(tm, "move")
        t = tm + Dm - 0.1
    Dp = rng.uniform(0.35, 0.5)
    tl.move_by(t, Dp, -lift * Z)
    tl.event(t, "place")
    t += Dp
    obj.position = new_pos
    ctx.busy_until[oi] = t
    return _release_retreat(ctx, tl, side, t, gp)


def act_press(ctx: PlanContext, tl: HandTimeline, side: int, t0: float, oi: int) -> float:
    rng = ctx.rng
    gp = plan_grasp(ctx, side, ctx.objects[oi], "flat")
    t = _reach(ctx, tl, side, t0, gp)
    for _ in range(int(rng.integers(1, 3))):
        depth = rng.uniform(0.006, 0.012)
        tl.move_by(t, 0.18, -depth * Z)
        tl.event(t, "press")
        tl.move_by(t + 0.25, 0.2, depth * Z)
        t += 0.5
    ctx.busy_until[oi] = t
    return _release_retreat(ctx, tl, side, t, gp)


def act_bimanual(ctx: PlanContext, tls: list, t0: float, oi: int) -> float:
    rng = ctx.rng
    obj = ctx.objects[oi]
    gps = [plan_grasp(ctx, s, obj, "flat") for s in (0, 1)]
    t_grasp = max(_reach(ctx, tls[s], s, t0 + (0.0 if s == 0 else rng.uniform(-0.1, 0.1)), gps[s]) for s in (0, 1))
    t = t_grasp + 0.1
    lift = rng.uniform(0.06, 0.15)
    Dl = rng.uniform(0.45, 0.6)
    delta = np.array([rng.uniform(-0.12, 0.12), rng.uniform(-0.08, 0.08), 0.0])
    Dm = rng.uniform(0.7, 1.0)
    Dp = rng.uniform(0.4, 0.55)
    for s in (0, 1):  # identical submovements: the object moves rigidly
        tls[s].move_by(t, Dl, lift * Z)
        tls[s].move_by(t + 0.6 * Dl, Dm, delta)
        tls[s].move_by(t + 0.6 * Dl + Dm - 0.1, Dp, -lift * Z)
        tls[s].event(t, "lift")
    t = t + 0.6 * Dl + Dm - 0.1 + Dp
    obj.position = obj.position + delta
    ctx.busy_until[oi] = t
    return max(_release_retreat(ctx, tls[s], s, t + (0.0 if s == 0 else rng.uniform(0, 0.15)), gps[s]) for s in (0, 1))


def act_idle(ctx: PlanContext, tl: HandTimeline, side: int, t0: float, t1: float) -> float:
    """Small slow shifts (1-3 cm) of a resting hand until ``t1``."""
    rng = ctx.rng
    t = t0 + rng.uniform(0.2, 1.0)
    while t < t1:
        D = rng.uniform(0.6, 1.2)
        step = rng.normal(0, 0.012, 3) * np.array([1, 1, 0.5])
        if tl.pos_end[2] + step[2] < 0.03:
            step[2] = abs(step[2])
        tl.move_by(t, D, step)
        if rng.random() < 0.3:
            tl.fingers_to(t, D, ctx.kit.fingers(side, RELAXED * rng.uniform(0.4, 1.3)))
        t += D + rng.uniform(0.2, 1.0)
    return max(t1, t0)


def act_leave(ctx: PlanContext, tl: HandTimeline, side: int, t0: float) -> float:
    rng = ctx.rng
    target = ctx.out_of_view[side]
    D = min(0.6 + 1.0 * float(np.linalg.norm(target - tl.pos_end)), 1.8) * rng.uniform(0.9, 1.1)
    tl.move_to(t0, D, target)
    tl.rotate_to(t0, D, frame_from(side, n=-_chir(side) * np.array([1.0, 0, 0]), f=np.array([0, 0.5, -1.0])))
    tl.fingers_to(t0, D, ctx.kit.fingers(side, RELAXED))
    tl.event(t0, "leave")
    return t0 + D + 10.0  # stays out of view


def act_enter(ctx: PlanContext, tl: HandTimeline, side: int, t0: float) -> float:
    pos, F, fing = _new_rest(ctx, side)
    D = min(0.6 + 1.0 * float(np.linalg.norm(pos - tl.pos_end)), 1.8) * ctx.rng.uniform(0.9, 1.1)
    tl.move_to(t0, D, pos)
    tl.rotate_to(t0, D, F)
    tl.fingers_to(t0, D, fing)
    tl.event(t0, "enter")
    return t0 + D


# ---------------------------------------------------------------------------------------------
# Choosing actions


def _single_action(grasp: str) -> str:
    return "press" if grasp == "flat" else "pick_place"


def possible_intents(ctx_objects: list) -> list[Intent]:
    """Every (object, hand, grasp) combination a clip may start with; one list entry per object and
    grasp, with the hand nearer to the object (both hands for large objects)."""
    out = []
    for i, o in enumerate(ctx_objects):
        spec = OBJECT_CATALOG[o.kind]
        side = 0 if o.position[0] >= 0 else 1
        for g in spec.grasps:
            if spec.bimanual:
                out.append(Intent(side, "bimanual_carry", i, g))
            else:
                out.append(Intent(side, _single_action(g), i, g))
    return out


def _choose_object(ctx: PlanContext, side: int, t: float, exclude: set) -> int | None:
    rng = ctx.rng
    cands, w = [], []
    for i, o in enumerate(ctx.objects):
        if i in exclude or ctx.busy_until.get(i, -1.0) > t or OBJECT_CATALOG[o.kind].bimanual:
            continue
        cross = (o.position[0] * _chir(side)) < -0.08
        wt = 0.1 if cross else 1.0
        other = ctx.targets.get(1 - side)
        if other is not None and other[1] > t:  # keep away from where the other hand works
            if np.linalg.norm(o.position[:2] - ctx.objects[other[0]].position[:2]) < 0.18:
                wt *= 0.05
        cands.append(i)
        w.append(wt)
    if not cands:
        return None
    w = np.asarray(w) / np.sum(w)
    return int(cands[int(rng.choice(len(cands), p=w))])


def _do_single(ctx: PlanContext, tl: HandTimeline, side: int, t0: float, oi: int, grasp: str | None = None,
               action: str | None = None) -> float:
    rng = ctx.rng
    spec = OBJECT_CATALOG[ctx.objects[oi].kind]
    if grasp is None:
        grasp = spec.grasps[int(rng.integers(len(spec.grasps)))]
    if action is None:
        action = _single_action(grasp)
        if action == "pick_place" and rng.random() < 0.3:
            action = "pick_hold"
    ctx.busy_until[oi] = 1e9
    ctx.labels.append((side, round(t0, 3), action, oi, grasp))
    if action == "press":
        t_end = act_press(ctx, tl, side, t0, oi)
    else:
        t_end = act_pick(ctx, tl, side, t0, oi, grasp, "hold" if action == "pick_hold" else "place")
    ctx.targets[side] = (oi, t_end)
    return t_end


def plan_motion(ctx: PlanContext, tls: list, intent: Intent, p_idle: float, p_leave: float, p_bimanual: float) -> None:
    """Fill the two timelines ``tls`` (right, left) for ``ctx.duration`` seconds, starting with ``intent``."""
    rng = ctx.rng
    dur = ctx.duration
    hands = ctx.scene.hands
    t_free = [0.0, 0.0]
    mode = ["active", "active"]
    needed = (0, 1) if intent.action == "bimanual_carry" else (intent.side,)
    for s in (0, 1):
        if hands[s].out_of_view:
            if rng.random() < 0.3 and s not in needed:
                mode[s] = "away"  # stays out of view
                ctx.labels.append((s, 0.0, "idle", -1, ""))
                t_free[s] = 1e9
            else:
                t = rng.uniform(0.0, 0.6)
                ctx.labels.append((s, round(t, 3), "enter", -1, ""))
                t_free[s] = act_enter(ctx, tls[s], s, t)
    p = intent.side
    q = 1 - p
    t0 = rng.uniform(0.05, 0.35)
    if intent.action == "bimanual_carry":
        t0 = max(t0, t_free[0] if mode[0] == "active" else 0.0, t_free[1] if mode[1] == "active" else 0.0)
        ctx.busy_until[intent.obj] = 1e9
        ctx.labels.append((2, round(t0, 3), "bimanual_carry", intent.obj, intent.grasp))
        t_end = act_bimanual(ctx, tls, t0, intent.obj)
        t_free = [t_end, t_end]
        mode = ["active", "active"]
    else:
        t0 = max(t0, t_free[p])
        t_free[p] = _do_single(ctx, tls[p], p, t0, intent.obj, intent.grasp, intent.action)
        if mode[q] == "active":
            u = rng.random()
            if u < p_idle:
                mode[q] = "idle"
            elif u < p_idle + p_leave:
                mode[q] = "leave"
    # the other hand: idles, leaves, or starts its own task a little later
    if mode[q] == "idle":
        t = min(t_free[q], dur)  # after entering, if it had to
        ctx.labels.append((q, round(t, 3), "idle", -1, ""))
        act_idle(ctx, tls[q], q, t, dur)
        t_free[q] = 1e9
    elif mode[q] == "leave":
        t = max(rng.uniform(0.2, max(0.3, 0.5 * dur)), t_free[q])
        ctx.labels.append((q, round(t, 3), "leave", -1, ""))
        t_free[q] = act_leave(ctx, tls[q], q, t)
    elif mode[q] == "active" and intent.action != "bimanual_carry":
        t_free[q] = max(t_free[q], rng.uniform(0.2, max(0.3, min(1.5, 0.5 * dur))))
    # keep both hands busy until the end of the clip
    guard = 0
    while guard < 40:
        guard += 1
        s = int(np.argmin(t_free))
        t = t_free[s]
        if t >= dur - 0.2:
            break
        if rng.random() < 0.2:
            ctx.labels.append((s, round(t, 3), "idle", -1, ""))
            t_free[s] = act_idle(ctx, tls[s], s, t, t + rng.uniform(0.5, 1.5))
            continue
        big = [i for i, o in enumerate(ctx.objects) if OBJECT_CATALOG[o.kind].bimanual
               and ctx.busy_until.get(i, -1) <= t]
        other = 1 - s
        if big and rng.random() < p_bimanual * 0.5 and t_free[other] <= t + 1.0 and mode[other] == "active":
            tb = max(t, t_free[other])
            ctx.busy_until[big[0]] = 1e9
            ctx.labels.append((2, round(tb, 3), "bimanual_carry", big[0], "flat"))
            te = act_bimanual(ctx, tls, tb, big[0])
            t_free = [te, te]
            continue
        oi = _choose_object(ctx, s, t, set())
        if oi is None:
            ctx.labels.append((s, round(t, 3), "idle", -1, ""))
            t_free[s] = act_idle(ctx, tls[s], s, t, t + 1.0)
            continue
        t_free[s] = _do_single(ctx, tls[s], s, t + rng.uniform(0.0, 0.3), oi)
