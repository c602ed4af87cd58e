"""The shipped open hand model: mesh topology, weights, regressor, anthropometry, pose space."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from handcast.conventions import MANO_PARENTS
from handcast.hand import open_model as om
from handcast.hand.open_model_build import boundary_loops, save_open_hand_model


@pytest.fixture(scope="module")
def right():
    return om.load_open_model("right")


@pytest.fixture(scope="module")
def left():
    return om.load_open_model("left")


def _measure(arr, v=None):
    v = arr["v_template"] if v is None else v
    J = arr["J_regressor"] @ v
    mask = om.breadth_vertex_mask(arr["v_template"], arr["weights"], arr["J_regressor"] @ arr["v_template"])
    return om.measure_hand(v, J, arr["tip_vertex_ids"], mask)


def test_mesh_is_a_single_surface_open_only_at_the_wrist(right):
    v, f = right["v_template"], right["f"].astype(np.int64)
    assert len(v) >= 700 and f.max() == len(v) - 1
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_winding_consistent
    assert len(mesh.split(only_watertight=False)) == 1
    loops = boundary_loops(f)
    assert len(loops) == 1
    loop = loops[0]
    # every boundary vertex lies in the wrist cut plane (hand axial coordinate a = WRIST_CUT_MM)
    a = om.model_to_hand(v[loop])[:, 0]
    np.testing.assert_allclose(a, om.WRIST_CUT_MM, atol=1e-3)
    # and that plane is proximal of everything else
    assert om.model_to_hand(v)[:, 0].min() >= om.WRIST_CUT_MM - 1e-3
    # outward winding: close the wrist with a fan and check the enclosed volume is positive
    c = len(v)
    cap = np.stack([loop[1:], loop[:-1], np.full(len(loop) - 1, c)], axis=1)
    cap = np.concatenate([cap, [[loop[0], loop[-1], c]]])
    closed = trimesh.Trimesh(np.vstack([v, v[loop].mean(axis=0)]), np.vstack([f, cap]), process=False)
    if not closed.is_winding_consistent:  # the fan had the opposite orientation
        cap = cap[:, [1, 0, 2]]
        closed = trimesh.Trimesh(np.vstack([v, v[loop].mean(axis=0)]), np.vstack([f, cap]), process=False)
    assert closed.is_watertight and closed.is_winding_consistent
    assert closed.volume > 2e-4  # m^3: a hand is ~ 0.3-0.5 litre


def test_weights_and_regressor(right):
    W, R, v = right["weights"], right["J_regressor"], right["v_template"]
    assert W.shape == (len(v), 16) and R.shape == (16, len(v))
    assert W.min() >= 0 and np.abs(W.sum(axis=1) - 1).max() < 1e-5
    assert R.min() >= 0 and np.abs(R.sum(axis=1) - 1).max() < 1e-5
    assert ((R > 0).sum(axis=1) <= 200).all()  # a few nearby vertices, not the whole mesh
    np.testing.assert_allclose(R @ v, right["J"], atol=1e-3 * 1e-0)  # < 1 mm
    assert np.abs(R @ v - right["J"]).max() < 1e-4  # in fact ~ float32 precision
    # every joint actually moves some skin; vertices at the finger tips follow the distal joint
    assert (W.max(axis=0) > 0.75).all()
    for name, tip in zip(om.TIP_ORDER, right["tip_vertex_ids"]):
        assert W[tip].argmax() == om.FINGER_JOINT0[name] + 2


def test_kinematic_tree_and_frame(right):
    kt = right["kintree_table"]
    assert kt.shape == (2, 16) and kt[0, 0] == 4294967295
    assert tuple(kt[0, 1:]) == MANO_PARENTS[1:] and tuple(kt[1]) == tuple(range(16))
    J = right["J"]
    np.testing.assert_allclose(J[0], om.WRIST, atol=1e-6)  # MANO_RIGHT's rest wrist
    # fingers point along -x, index on the thumb (+z) side, pinky on the other, thumb palmar (-y)
    for j0 in (1, 4, 7, 10):
        assert (np.diff(J[j0:j0 + 3, 0]) < -0.015).all()
    assert J[1, 2] > J[4, 2] > J[10, 2] > J[7, 2]
    assert J[13:, 2].min() > J[1, 2] - 0.01 and (J[13:, 1] < J[0, 1]).all()
    assert right["model_name"] == "open"


def test_tip_vertices_are_fingertips(right):
    v, tips = right["v_template"], right["tip_vertex_ids"]
    assert len(set(tips.tolist())) == 5
    # the middle fingertip is the most distal point of the hand
    assert np.argmin(v[:, 0]) == tips[2] or v[tips[2], 0] - v[:, 0].min() < 2e-3
    J = right["J"]
    for name, tip in zip(om.TIP_ORDER, tips):
        dip = J[om.FINGER_JOINT0[name] + 2]
        assert 0.012 < np.linalg.norm(v[tip] - dip) < 0.035


def test_rest_dimensions_match_documented_anthropometry(right):
    m = _measure(right)
    assert abs(m["length"] - om.HAND_LENGTH_MM) < 0.05
    assert abs(m["breadth"] - om.HAND_BREADTH_MM) < 1.0
    # the documented sex-averaged adult ranges (docs/hand_model.md): 180-190 mm, 80-85 mm
    assert 180 <= m["length"] <= 190 and 80 <= m["breadth"] <= 85


def test_shape_directions_change_dimensions_by_documented_sd(right):
    base = _measure(right)
    sd = right["shapedirs"]
    assert sd.shape == (len(right["v_template"]), 3, 10)
    names = [str(n) for n in right["shape_factor_names"]]
    assert names == [n for n, _ in om.SHAPE_FACTORS]
    for k, name in enumerate(names):
        for sign in (1.0, -1.0):
            m = _measure(right, right["v_template"] + sign * sd[:, :, k])
            dl, db = om.SHAPE_EFFECTS_MM[name]
            assert abs((m["length"] - base["length"]) - sign * dl) < 0.25, name
            assert abs((m["breadth"] - base["breadth"]) - sign * db) < 0.25, name
    # each direction does something (the ones that do not change length/breadth change others)
    assert (np.abs(sd).max(axis=(0, 1)) > 5e-4).all()
    # the ring/index ratio direction lengthens the index and shortens the ring finger
    k = names.index("index_ring_ratio")
    v1 = right["v_template"] + sd[:, :, k]
    tips = right["tip_vertex_ids"]
    assert v1[tips[1], 0] < right["v_template"][tips[1], 0] - 1e-3
    assert v1[tips[3], 0] > right["v_template"][tips[3], 0] + 1e-3


def test_pose_space(right):
    C, mean, lim = right["hands_components"], right["hands_mean"], right["joint_limits"]
    assert C.shape == (45, 45) and mean.shape == (45,) and lim.shape == (15, 3, 2)
    np.testing.assert_allclose(C @ C.T, np.eye(45), atol=1e-8)
    assert (lim[..., 0] < lim[..., 1]).all()
    m = mean.reshape(15, 3)
    assert ((m >= lim[..., 0]) & (m <= lim[..., 1])).all()
    # flexion is mostly about z for the fingers: widest range on z, which reaches ~90 degrees
    for j in range(12):
        widths = lim[j, :, 1] - lim[j, :, 0]
        assert widths.argmax() == 2 and lim[j, 2, 1] > 1.3
    # MCP abduction is small but present, PIP/DIP abduction smaller
    assert (lim[[0, 3, 6, 9], 1, 1] > 0.2).all() and (lim[[1, 2, 4, 5], 1, 1] < 0.25).all()
    # the mean pose is a relaxed curl (fingers flexed, not a fist)
    assert (m[:12, 2] > 0.2).all() and (m[:12, 2] < 1.2).all()


def test_left_is_mirror_of_right(right, left):
    np.testing.assert_allclose(left["v_template"], right["v_template"] * [-1, 1, 1])
    np.testing.assert_allclose(left["shapedirs"][:, 0], -right["shapedirs"][:, 0])
    np.testing.assert_allclose(left["shapedirs"][:, 1:], right["shapedirs"][:, 1:])
    np.testing.assert_array_equal(left["f"], right["f"][:, ::-1])
    np.testing.assert_allclose(left["hands_mean"].reshape(15, 3), right["hands_mean"].reshape(15, 3) * [1, -1, -1])
    np.testing.assert_allclose(left["joint_limits"][:, 0], right["joint_limits"][:, 0])
    np.testing.assert_allclose(left["joint_limits"][:, 1:, 0], -right["joint_limits"][:, 1:, 1])
    twice = om.mirror_model(left)
    for k in ("v_template", "shapedirs", "posedirs", "hands_mean", "hands_components", "joint_limits"):
        np.testing.assert_allclose(twice[k], right[k])
    np.testing.assert_array_equal(twice["f"], right["f"])


def test_mirror_posedirs_consistent_with_mirrored_rotations():
    # posedirs act on (R - I); mirroring maps R -> M R M, so a mirrored model must give the
    # mirrored offset for the mirrored pose.
    rng = np.random.default_rng(0)
    arr = dict(v_template=rng.normal(size=(4, 3)), f=np.array([[0, 1, 2]]), shapedirs=rng.normal(size=(4, 3, 10)),
               posedirs=rng.normal(size=(4, 3, 135)), hands_mean=np.zeros(45), hands_components=np.eye(45))
    mir = om.mirror_model(arr)
    aa = rng.normal(size=(16, 3)) * 0.5
    R = om.rodrigues(aa)
    Rm = om.rodrigues(aa * [1, -1, -1])
    off = arr["posedirs"].reshape(-1, 135) @ (R[1:] - np.eye(3)).ravel()
    off_m = mir["posedirs"].reshape(-1, 135) @ (Rm[1:] - np.eye(3)).ravel()
    np.testing.assert_allclose(off_m.reshape(4, 3), off.reshape(4, 3) * [-1, 1, 1], atol=1e-12)


def test_asset_is_small_and_pickle_free():
    path = om.asset_path()
    assert path.is_file() and path.stat().st_size < 1_000_000
    with np.load(path, allow_pickle=False) as z:
        assert set(om.REQUIRED_KEYS) <= set(z.files)


@pytest.mark.slow
def test_builder_reproduces_shipped_asset(tmp_path):
    pytest.importorskip("skimage")
    path = save_open_hand_model(tmp_path)
    with np.load(path) as a, np.load(om.asset_path()) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            if np.issubdtype(a[k].dtype, np.floating):
                # float sums may differ in the last bits with the number of BLAS/OpenMP threads
                np.testing.assert_allclose(a[k], b[k], rtol=1e-7, atol=1e-9, err_msg=k)
            else:
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)
