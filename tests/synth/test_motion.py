"""Motion primitives, anatomical finger axes, wrist frames and grasp placement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from handcast.synth.grasps import GRASP_TEMPLATES, OPEN, RELAXED, grasp_params, hand_frame
from handcast.synth.handkit import HandKit, get_hand_model
from handcast.synth.motion import HandTimeline, min_jerk, min_jerk_vel, tremor
from handcast.synth.plan import PlanContext, frame_from, plan_grasp
from handcast.synth.scene import GRASP_TYPES, OBJECT_CATALOG, SceneObject, _object_geometry


@pytest.fixture(scope="module")
def kit():
    return HandKit(get_hand_model("open"), np.zeros((2, 10), np.float32))


def test_min_jerk_profile():
    tau = np.linspace(-0.5, 1.5, 401)
    s = min_jerk(tau)
    assert s[tau <= 0].max() == 0 and s[tau >= 1].min() == 1
    assert np.all(np.diff(s) >= 0)
    np.testing.assert_allclose(min_jerk(np.array([0.5])), [0.5])
    np.testing.assert_allclose(min_jerk_vel(np.array([0.0, 1.0])), [0.0, 0.0])
    np.testing.assert_allclose(min_jerk_vel(np.array([0.5])), [1.875])  # peak speed 1.875 D/T
    # derivative matches finite differences
    t = np.linspace(0.1, 0.9, 9)
    np.testing.assert_allclose((min_jerk(t + 1e-6) - min_jerk(t - 1e-6)) / 2e-6, min_jerk_vel(t), rtol=1e-5)


def test_timeline_starts_and_ends_where_planned():
    R0 = np.eye(3)
    tl = HandTimeline(np.zeros(3), R0, np.zeros((15, 3)))
    target_R = Rotation.from_rotvec([0.3, -0.2, 0.5]).as_matrix()
    tl.move_to(0.2, 0.8, [0.1, 0.2, 0.0])
    tl.move_by(0.6, 0.5, [0.0, 0.0, 0.05])  # overlapping submovement
    tl.arc(0.2, 0.8, 0.04)
    tl.rotate_to(0.1, 0.7, target_R)
    tl.fingers_to(0.3, 0.4, np.full((15, 3), 0.1))
    tl.move_by(-0.5, 0.3, [1.0, 0, 0])  # a start before 0 is moved to 0: frame 0 stays the start state
    t = np.array([0.0, 0.5, 5.0])
    pos, rot, fing = tl.sample(t)
    np.testing.assert_array_equal(pos[0], np.zeros(3))
    np.testing.assert_array_equal(rot[0], R0)
    np.testing.assert_allclose(pos[-1], [1.1, 0.2, 0.05], atol=1e-12)
    np.testing.assert_allclose(rot[-1], target_R, atol=1e-12)
    np.testing.assert_allclose(fing[-1], 0.1, atol=1e-12)
    np.testing.assert_allclose(rot[1] @ rot[1].T, np.eye(3), atol=1e-12)
    assert tl.t_free == pytest.approx(1.1)


def test_tremor_small_and_zero_at_start():
    t = np.arange(64) / 30.0
    x = tremor(np.random.default_rng(0), t, 0.0005)
    np.testing.assert_array_equal(x[0], 0.0)
    assert 0 < np.abs(x).max() < 0.005
    np.testing.assert_array_equal(tremor(np.random.default_rng(0), t, 0.0), 0.0)


def test_hand_frame_and_global_rotation(kit):
    for side in (0, 1):
        F_model = kit.axes[side].frame
        np.testing.assert_allclose(F_model.T @ F_model, np.eye(3), atol=1e-9)
        assert np.linalg.det(F_model) == pytest.approx(1.0 if side == 0 else -1.0)
        # palm down, fingers forward (world z up): the thumb is on the body's midline side
        F = frame_from(side, n=[0, 0, -1.0], f=[0, 1.0, 0])
        assert F[0, 2] == pytest.approx(-1.0 if side == 0 else 1.0)
        R = kit.global_rot(side, F)
        kp = (kit.rest[side] - kit.J0[side]) @ R.T
        np.testing.assert_allclose(hand_frame(kp, side), F, atol=1e-9)


def test_finger_axes_curl_towards_the_palm(kit):
    for side in (0, 1):
        n = kit.axes[side].frame[:, 1]
        flat = kit.canonical_keypoints(side, np.zeros((15, 3)))
        fist = kit.canonical_keypoints(side, kit.fingers(side, GRASP_TEMPLATES["power"][1]))
        for tip in (8, 12, 16, 20):
            assert (fist[tip] - flat[tip]) @ n > 0.03  # fingertips move to the palm side
        # the thumb tip moves towards the fingers / palm when the thumb opposes
        opp = kit.canonical_keypoints(side, kit.fingers(side, GRASP_TEMPLATES["pinch"][1]))
        assert np.linalg.norm(opp[4] - opp[8]) < np.linalg.norm(flat[4] - flat[8]) - 0.03
        # abduction spreads the index towards the thumb side
        s = kit.axes[side].frame[:, 2]
        spread = kit.canonical_keypoints(side, kit.fingers(side, OPEN))
        assert (spread[8] - flat[8]) @ s > 0.0


def test_left_hand_mirrors_right(kit):
    for params in (RELAXED, OPEN, *GRASP_TEMPLATES["tripod"]):
        r = kit.fingers(0, params)
        l = kit.fingers(1, params)
        np.testing.assert_allclose(l, r * np.array([1.0, -1.0, -1.0]), atol=1e-6)


def test_grasp_templates_within_limits(kit):
    lim = kit.limits
    for g in GRASP_TYPES:
        for c in (0.0, 0.5, 1.0):
            pre, full = grasp_params(g, c)
            for side in (0, 1):
                for p in (pre, full):
                    f = kit.fingers(side, p)
                    assert (f >= lim[side, ..., 0] - 1e-9).all() and (f <= lim[side, ..., 1] + 1e-9).all()


@pytest.mark.parametrize("kind,grasp", [("can", "power"), ("ball", "spherical"), ("marble", "pinch"),
                                        ("cube", "tripod"), ("button", "flat"), ("basket", "hook")])
def test_grasp_puts_the_hand_on_the_object(kit, kind, grasp):
    spec = OBJECT_CATALOG[kind]
    dims = {k: 0.5 * (a + b) for k, (a, b) in spec.dims.items()}
    r, h = _object_geometry(kind, dims)
    obj = SceneObject(kind, dims, np.array([0.15, 0.3, 0.0]), 0.4, np.zeros(3), r, h)
    ctx = PlanContext(scene=None, kit=kit, rng=np.random.default_rng(0), duration=2.0, objects=[obj],
                      out_of_view=[None, None])
    for side in (0, 1):
        gp = plan_grasp(ctx, side, obj, grasp)
        R = kit.global_rot(side, gp.F)
        kp = (kit.canonical_keypoints(side, gp.fingers) - kit.J0[side]) @ R.T + gp.wrist
        center = obj.position + np.array([0, 0, 0.5 * h])
        # some part of the hand is within a few cm of the object's surface
        d = np.linalg.norm(kp - center, axis=1).min()
        assert d < max(r, 0.5 * h) + 0.04, (side, d)
        assert gp.wrist[2] >= 0.03  # never below the table
        assert 0.0 <= gp.closure <= 1.0
