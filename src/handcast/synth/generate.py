"""Generating clips: one scene and first frame, one or several futures.

Randomness: every draw comes from ``numpy.random.SeedSequence(seed, spawn_key=...)`` streams, so
a clip depends only on ``seed`` (an int or a tuple of ints), the domain and the settings, never on
how many clips were made before it or by which worker:

* ``spawn_key=(0,)``  the scene, the hands' first pose, the camera rig, the order of targets;
* ``spawn_key=(2,)``  rendering (textures, skin shading, sleeves);
* ``spawn_key=(3,)``  frame-0 detector noise (shared by all futures);
* ``spawn_key=(1, k)`` future ``k``: its plan, tremor, head motion and detector noise after frame 0.
"""

from __future__ import annotations

import contextlib
import copy
from typing import Sequence

import numpy as np

from handcast.data import Clip
from handcast.errors import HandcastError
from handcast.synth.camera import head_trajectory, look_at_np, project_np, sample_rig
from handcast.synth.domains import DomainSpec, get_domain
from handcast.synth.grasps import RELAXED
from handcast.synth.handkit import HandKit, get_hand_model, model_kind
from handcast.synth.motion import HandTimeline
from handcast.synth.motion import tremor as tremor_noise
from handcast.synth.noise import detect, visibility
from handcast.synth.plan import (
    Intent,
    PlanContext,
    plan_motion,
    possible_intents,
    rest_frame,
)
from handcast.synth.scene import OBJECT_CATALOG, sample_scene

__all__ = ["generate_clip", "generate_futures", "SYNTH_VERSION", "FPS"]

SYNTH_VERSION = 1
FPS = 30.0
MIN_VISIBLE_KEYPOINTS = 4  # a hand is valid in a frame if its wrist and >= 3 more keypoints are in view


@contextlib.contextmanager
def torch_single_thread():
    """Run torch single-threaded inside the block, then restore the caller's setting.

    The hand model's batches here are small, where threads cost more than they give; and with
    one thread the floating-point results never depend on the machine's thread count.
    """
    import torch

    old = torch.get_num_threads()
    if old != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if old != 1:
            torch.set_num_threads(old)


def _entropy(seed) -> list[int]:
    if isinstance(seed, (int, np.integer)):
        seeds = [int(seed)]
    elif isinstance(seed, Sequence) and not isinstance(seed, str) and all(isinstance(s, (int, np.integer)) for s in seed):
        seeds = [int(s) for s in seed]
    else:
        raise HandcastError(f"seed must be an int or a tuple of ints, got {seed!r}")
    if any(s < 0 for s in seeds):
        raise HandcastError(f"seed values must be non-negative, got {seed!r}")
    return seeds


def unwrap_rotvec(aa: np.ndarray) -> np.ndarray:
    """Make an axis-angle track (T, 3) continuous in time.

    A rotation of angle theta about u is also the rotation of angle theta - 2 pi about u; frame by
    frame we keep whichever of the two is nearer to the previous frame's vector, so a wrist turning
    through 180 degrees does not flip its axis-angle (frame 0 keeps the canonical angle <= pi).
    """
    out = np.array(aa, dtype=np.float64, copy=True)
    for t in range(1, len(out)):
        th = np.linalg.norm(out[t])
        if th < 1e-8:
            continue
        alt = out[t] * (1.0 - 2.0 * np.pi / th)
        if np.linalg.norm(alt - out[t - 1]) < np.linalg.norm(out[t] - out[t - 1]):
            out[t] = alt
    return out


def _rng(entropy: list[int], *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy, spawn_key=key)))


def _out_of_view_spots(rig, C0: np.ndarray) -> list[np.ndarray]:
    """Per hand, a lap position (world) that the frame-0 camera does not see (with a margin)."""
    out = []
    w, h = rig.image_size
    for side in (0, 1):
        sgn = 1.0 if side == 0 else -1.0
        chosen = None
        for k in range(40):
            p = np.array([sgn * (0.3 + 0.02 * k), -0.3 - 0.01 * k, -0.3 - 0.005 * k])
            pc = C0[:3, :3] @ p + C0[:3, 3]
            uv, z = project_np(pc, rig.K)
            margin = 0.6 * w
            if z <= 0.02 or not (-margin <= uv[0] < w + margin and -margin <= uv[1] < h + margin):
                chosen = p
                break
        out.append(chosen if chosen is not None else np.array([sgn * 1.2, -0.9, -0.6]))
    return out


def _choose_intent(scene, order: np.ndarray, k: int, rng: np.random.Generator) -> Intent:
    """Future k's first action: the k-th object of the shared random ``order`` (so different futures
    target different objects), with one of its grasps, by the nearer hand (sometimes the other)."""
    oi = int(order[k % len(order)])
    obj = scene.objects[oi]
    spec = OBJECT_CATALOG[obj.kind]
    grasp = spec.grasps[int(rng.integers(len(spec.grasps)))]
    side = 0 if obj.position[0] >= 0 else 1
    if abs(obj.position[0]) < 0.06 and rng.random() < 0.4:
        side = 1 - side
    if scene.hands[side].out_of_view and not scene.hands[1 - side].out_of_view:
        side = 1 - side  # the hand in view acts first; the other one comes in meanwhile
    cands = [i for i in possible_intents([obj]) if i.grasp == grasp]
    action = cands[0].action
    if action == "pick_place" and rng.random() < 0.3:
        action = "pick_hold"
    if k >= len(order):  # more futures than objects: vary the hand too
        side = (side + k // len(order)) % 2
    return Intent(side, action, oi, grasp)


def _frames_and_size(n_frames, image_size) -> tuple[int, tuple[int, int]]:
    """Checked (T, (width, height))."""
    T = int(n_frames)
    if T < 2:
        raise HandcastError(f"n_frames must be >= 2, got {n_frames}")
    w, h = (int(image_size[0]), int(image_size[1]))
    if w < 16 or h < 16:
        raise HandcastError(f"image_size must be at least 16x16 pixels, got {image_size}")
    return T, (w, h)


def generate_futures(
    seed,
    domain: str | DomainSpec = "lab",
    n: int = 3,
    *,
    n_frames: int = 64,
    image_size: tuple[int, int] = (256, 256),
    render: bool = True,
    hand_model: str = "open",
    clip_id: str | None = None,
    fps: float = FPS,
    draw_hands: bool = True,
    tremor: bool = True,
) -> list:
    """``n`` clips that share the same first frame (scene, hands, camera, image) and differ after it.

    Args:
        seed: int or tuple of non-negative ints; the same seed and settings give identical clips.
        domain: "lab", "diverse", "wild" (see :data:`handcast.synth.domains.DOMAINS`).
        n: number of futures (>= 1). Futures target different objects first (there are >= 3).
        n_frames: T, frames per clip (30 fps). image_size: (width, height) of the first frame.
        render: render the first frame (needs EGL); False leaves ``image`` None (faster).
        hand_model: "open" (default, always available) or "mano"/"auto" (needs the MANO files).
        clip_id: id of the group; clips are ``{clip_id}-f{k}`` (or ``clip_id`` itself when n == 1).
        fps: frames per second of the motion (30).
        draw_hands: False renders the first frame without hands and forearms (a background plate,
            e.g. to check what the hands cover); everything else is unchanged.
        tremor: add the domain's physiological tremor (sub-millimetre, 7-12 Hz) to the wrists.
    Returns:
        list of n :class:`handcast.data.Clip`, all with ``group_id == clip_id``.
    """
    dom = get_domain(domain)
    n = int(n)
    if n < 1:
        raise HandcastError(f"number of futures must be >= 1, got {n}")
    T, (w, h) = _frames_and_size(n_frames, image_size)
    ent = _entropy(seed)
    if clip_id is None:
        clip_id = f"synth-{dom.name}-" + "-".join(str(s) for s in ent)

    with torch_single_thread():
        return _generate(ent, dom, n, T, (w, h), render, hand_model, clip_id, float(fps), draw_hands, tremor)


def _generate(ent, dom, n, T, image_size, render, hand_model, clip_id, fps, draw_hands, tremor,
              video: np.ndarray | None = None) -> list:
    """The clips of :func:`generate_futures`; with ``video`` (T, height, width, 3) uint8 (and ``render``), every
    frame of the first future is rendered into it."""
    from scipy.spatial.transform import Rotation

    w, h = image_size
    rng_s = _rng(ent, 0)
    scene = sample_scene(rng_s, dom)
    must_see = [hr.position for hr in scene.hands if not hr.out_of_view]
    must_see += [o.position + np.array([0.0, 0.0, 0.5 * o.height]) for o in scene.objects]
    rig = sample_rig(rng_s, dom, (w, h), must_see=np.asarray(must_see))
    order = rng_s.permutation(len(scene.objects))
    C0 = look_at_np(rig.eye, rig.target, rig.roll)
    lap = _out_of_view_spots(rig, C0)
    for side in (0, 1):  # a hand that starts out of view waits at a spot this camera does not see
        if scene.hands[side].out_of_view:
            scene.hands[side].position = lap[side].copy()

    model = get_hand_model(hand_model)
    kit = HandKit(model, scene.betas)
    R0, t0 = C0[:3, :3], C0[:3, 3]
    start = []
    for side in (0, 1):
        hr = scene.hands[side]
        start.append((hr.position, rest_frame(side, hr), kit.fingers(side, RELAXED * (0.4 + hr.relax))))

    times = np.arange(T) / fps
    duration = T / fps
    clips = []
    for k in range(n):
        rng_f = _rng(ent, 1, k)
        intent = _choose_intent(scene, order, k, rng_f)
        ctx = PlanContext(scene=scene, kit=kit, rng=rng_f, duration=duration,
                          objects=copy.deepcopy(scene.objects), out_of_view=lap)
        tls = [HandTimeline(*start[s]) for s in (0, 1)]
        plan_motion(ctx, tls, intent, dom.p_idle, dom.p_out_of_view, dom.p_bimanual)

        pos = np.zeros((T, 2, 3))
        frames = np.zeros((T, 2, 3, 3))
        fingers = np.zeros((T, 2, 15, 3))
        for s in (0, 1):
            p, F, fg = tls[s].sample(times)
            amp = rng_f.uniform(*dom.tremor_mm) / 1000.0 * float(tremor)
            pos[:, s] = p + tremor_noise(rng_f, times, amp)
            frames[:, s] = F
            fingers[:, s] = kit.clamp(s, fg)

        # the head follows the hands that are over the table
        wts = (pos[:, :, 2] > -0.08).astype(float) + 1e-6
        focus = (pos * wts[..., None]).sum(1) / wts.sum(1)[:, None]
        C = head_trajectory(rig, focus, rng_f, fps)
        W = C @ np.linalg.inv(C0)
        W[0] = np.eye(4)

        # MANO parameters in the frame-0 camera
        pose = np.zeros((T, 2, 16, 3))
        transl = np.zeros((T, 2, 3))
        for s in (0, 1):
            Rg = R0 @ frames[:, s] @ kit.axes[s].frame.T
            pose[:, s, 0] = unwrap_rotvec(Rotation.from_matrix(Rg).as_rotvec())
            pose[:, s, 1:] = fingers[:, s]
            transl[:, s] = pos[:, s] @ R0.T + t0 - kit.J0[s]
        pose = pose.astype(np.float32)
        transl = transl.astype(np.float32)
        joints = kit.keypoints(pose, transl).astype(np.float32)  # (T, 2, 21, 3)

        # 2D keypoints in camera t
        Wf = W.astype(np.float32).astype(np.float64)
        jc = np.einsum("tij,thkj->thki", Wf[:, :3, :3], joints.astype(np.float64)) + Wf[:, None, None, :3, 3]
        uv, z = project_np(jc, rig.K.astype(np.float32).astype(np.float64))
        vis = visibility(uv, z, (w, h))
        valid = vis[..., 0] & (vis.sum(-1) >= MIN_VISIBLE_KEYPOINTS)
        if dom.kp2d_noise is None:
            kp2d = np.where(vis[..., None], uv, 0.0)
            conf = vis.astype(np.float64)
        else:
            kp2d, conf = detect(uv, z, (w, h), dom.kp2d_noise, rng_f, rng0=_rng(ent, 3))

        image = None
        if render:
            if k == 0:
                present = np.array([draw_hands, draw_hands])  # a hand out of view is simply not seen
                from handcast.synth.render import render_first_frame

                # frame t: camera C_t = W_t C_0 (world -> camera t), the hands moved into camera t; the same
                # random stream per frame, so textures and shading stay put
                for t in range(1 if video is None else T):
                    verts = kit.mesh(pose[t], transl[t]) @ Wf[t, :3, :3].T + Wf[t, :3, 3]
                    img_t = render_first_frame(
                        scene, Wf[t] @ C0, rig.K, (w, h), verts, kit.faces(), pos[t], frames[t][:, :, 0], present,
                        _rng(ent, 2), tex_px=dom.texture_px,
                    )
                    if t == 0:
                        image = image0 = img_t
                    if video is not None:
                        video[t] = img_t
            else:
                image = image0

        cid = clip_id if n == 1 else f"{clip_id}-f{k}"
        meta = {
            "synth": {
                "version": SYNTH_VERSION,
                "seed": ent,
                "future": k,
                "n_futures": n,
                "intent": intent.to_json(),
                "actions": [
                    {"hand": ("right", "left", "both")[a[0]], "t": a[1], "action": a[2], "object": int(a[3]),
                     "grasp": a[4]}
                    for a in ctx.labels
                ],
                "scene": scene.to_json(),
                "camera": rig.to_json(),
                "kp2d_source": "projection" if dom.kp2d_noise is None else "simulated-detector",
                "labels_3d": "train" if dom.provenance == "gt" and dom.name == "lab" else "evaluation-only",
            }
        }
        clips.append(Clip(
            clip_id=cid,
            pose=pose,
            transl=transl,
            betas=scene.betas,
            valid=valid,
            joints3d=joints,
            kp2d=kp2d.astype(np.float32),
            kp2d_conf=conf.astype(np.float32),
            K=rig.K.astype(np.float32),
            world_to_cam=W.astype(np.float32),
            image_size=(w, h),
            image=image,
            provenance=dom.provenance,
            domain=dom.name,
            fps=fps,
            hand_model=model_kind(model),
            group_id=clip_id,
            meta=meta,
        ))
    return clips


def generate_video_clip(seed, domain: str | DomainSpec = "lab", *, n_frames: int = 64,
                        image_size: tuple[int, int] = (640, 480), hand_model: str = "open", fps: float = FPS,
                        tremor: bool = True, draw_hands: bool = True):
    """:func:`generate_clip` with every frame rendered: ``(clip, video)``, video (T, height, width, 3) uint8 RGB,
    frame t seen by camera t (``clip.world_to_cam[t]``), so ``clip.kp2d`` (of a domain without simulated detector
    noise) are the exact 2D keypoints of the hands in each frame. For measuring video paths (detection, lifting)
    against 3D truth. The objects are drawn where they start: a moved object stays put in the pictures. Needs EGL;
    about 0.07 s per 640 x 480 frame on a CPU. ``draw_hands=False`` renders the same frames without the hands and
    forearms (as :func:`generate_futures`)."""
    dom = get_domain(domain)
    T, (w, h) = _frames_and_size(n_frames, image_size)
    ent = _entropy(seed)
    clip_id = f"synth-{dom.name}-" + "-".join(str(s) for s in ent)
    video = np.zeros((T, h, w, 3), np.uint8)
    with torch_single_thread():
        clip = _generate(ent, dom, 1, T, (w, h), True, hand_model, clip_id, float(fps), bool(draw_hands), tremor,
                         video)[0]
    return clip, video


def generate_clip(seed, domain: str | DomainSpec = "lab", **options):
    """One synthetic clip (the first future of :func:`generate_futures` with the same seed).

    ``options`` are the keyword arguments of :func:`generate_futures` (n_frames, image_size, render,
    hand_model, clip_id, fps, draw_hands, tremor), which documents them. Returns a
    :class:`handcast.data.Clip` with T = ``n_frames`` frames in the frame-0 camera, its first frame
    rendered (``render=True``).
    """
    return generate_futures(seed, domain, 1, **options)[0]
