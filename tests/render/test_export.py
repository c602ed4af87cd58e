"""Per-frame mesh export (OBJ, GLB, PLY) through trimesh: round trips, colours, frames, errors."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from handcast.conventions import HAND_COLORS
from handcast.errors import HandcastError
from handcast.render.export import export_meshes


@pytest.fixture(scope="module")
def result(tmp_path_factory, hm):
    """Two samples, four frames of MANO parameters; the left hand is missing in frame 2 and both
    hands in frame 3 of sample 1."""
    import torch

    d = tmp_path_factory.mktemp("export")
    S, T = 2, 4
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.2, (S, T, 2, 16, 3)).astype(np.float32)
    transl = np.zeros((S, T, 2, 3), np.float32)
    transl[..., 0, :] = [0.1, 0.0, 0.5]
    transl[..., 1, :] = [-0.1, 0.0, 0.5]
    transl[1] += 0.05
    betas = rng.normal(0, 0.5, (2, 10)).astype(np.float32)
    valid = np.ones((S, T, 2), bool)
    valid[:, 2, 1] = False
    valid[1, 3] = False
    npz = d / "res.npz"
    np.savez(npz, pose=pose, transl=transl, betas=betas, hand_valid=valid, hand_model=np.array("open"))
    with torch.no_grad():
        ref = hm.forward(torch.from_numpy(pose), torch.from_numpy(np.broadcast_to(betas, (S, T, 2, 10)).copy()),
                         torch.from_numpy(transl)).vertices.numpy().astype(np.float64)
    return npz, ref, valid


@pytest.mark.parametrize("fmt", ["obj", "ply"])
def test_obj_ply_round_trip(tmp_path, result, hm, fmt):
    npz, ref, valid = result
    paths = export_meshes(npz, tmp_path / "out", fmt=fmt, sample=1)
    assert [p.name for p in paths] == [f"frame_{t:05d}.{fmt}" for t in (0, 1, 2)]  # frame 3: no hand
    V = hm.num_vertices
    for t, p in zip((0, 1, 2), paths):
        m = trimesh.load(p, process=False)
        want = np.concatenate([ref[1, t, h] for h in (0, 1) if valid[1, t, h]])  # right first, OpenCV frame
        assert m.vertices.shape == want.shape
        assert np.abs(m.vertices - want).max() < 1e-5
        nf = len(hm.faces("right"))
        assert len(m.faces) == nf * int(valid[1, t].sum())
        assert (m.faces[:nf] == hm.faces("right")).all()
        cols = np.asarray(m.visual.vertex_colors)[:, :3]
        assert (cols[:V] == HAND_COLORS[0]).all()
        if valid[1, t, 1]:
            assert (cols[V:] == HAND_COLORS[1]).all()
            assert (m.faces[nf:] - V == hm.faces("left")).all()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]  # no temporaries


def test_glb_is_y_up_with_named_hands(tmp_path, result):
    npz, ref, valid = result
    paths = export_meshes(npz, tmp_path, fmt="glb", frames=[2, -4])
    assert [p.name for p in paths] == ["frame_00002.glb", "frame_00000.glb"]
    scene = trimesh.load(paths[1], process=False)
    assert isinstance(scene, trimesh.Scene)
    assert set(scene.geometry) == {"right_hand", "left_hand"}
    for h, name in enumerate(("right_hand", "left_hand")):
        T_node, geom = scene.graph[name]
        g = scene.geometry[geom]
        v = trimesh.transform_points(g.vertices, T_node)
        assert np.abs(v - ref[0, 0, h] * [1, -1, -1]).max() < 1e-5  # glTF's y-up frame
        assert (np.asarray(g.visual.vertex_colors)[:, :3] == HAND_COLORS[h]).all()
    assert set(trimesh.load(paths[0], process=False).geometry) == {"right_hand"}  # left invalid in frame 2
    # y_up=False keeps the OpenCV frame
    p = export_meshes(npz, tmp_path / "cv", fmt="glb", frames=[0], y_up=False)[0]
    s = trimesh.load(p, process=False)
    T_node, geom = s.graph["right_hand"]
    assert np.abs(trimesh.transform_points(s.geometry[geom].vertices, T_node) - ref[0, 0, 0]).max() < 1e-5


def test_explicit_vertices_and_faces(tmp_path):
    tri = trimesh.creation.icosphere(subdivisions=1, radius=0.02)
    V = len(tri.vertices)
    verts = np.stack([tri.vertices + [0.1, 0, 0.5], tri.vertices + [-0.1, 0, 0.5]])[None].repeat(3, 0)
    arrays = {"joints": np.zeros((3, 2, 21, 3)), "vertices": verts, "faces": np.asarray(tri.faces)}
    paths = export_meshes(arrays, tmp_path, fmt="ply", frames=range(3))
    assert len(paths) == 3
    m = trimesh.load(paths[2], process=False)
    assert m.vertices.shape == (2 * V, 3) and np.allclose(m.vertices, verts[2].reshape(-1, 3), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "stl"}, "unknown mesh format"),
        ({"frames": [9]}, "frame 9 out of range"),
        ({"sample": 5}, "sample 5 out of range"),
        ({"prefix": "a/b"}, "prefix"),
    ],
)
def test_bad_arguments(tmp_path, result, kwargs, message):
    npz, _, _ = result
    with pytest.raises(HandcastError, match=message):
        export_meshes(npz, tmp_path / "o", **kwargs)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_joints_only_result_has_no_meshes(tmp_path):
    npz = tmp_path / "j.npz"
    np.savez(npz, joints=np.zeros((2, 2, 21, 3)))
    with pytest.raises(HandcastError, match="no meshes"):
        export_meshes(npz, tmp_path / "o")


def test_no_valid_hand_is_an_error_not_an_empty_export(tmp_path, result):
    npz, _, _ = result
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["hand_valid"] = np.zeros_like(arrays["hand_valid"])
    with pytest.raises(HandcastError, match="no mesh to write"):
        export_meshes(arrays, tmp_path / "o")
    assert not (tmp_path / "o").exists()
