"""Headless GL renderer: camera conventions, compositing, depth, determinism, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
import trimesh

from handcast.errors import HandcastError
from handcast.gl import renderer as gl
from handcast.gl.renderer import Mesh, Renderer, projection_matrix, vertex_normals
from handcast.render.overlay import project_points


def _sphere(center, radius=0.015, color=(200, 60, 60), sub=3):
    s = trimesh.creation.icosphere(subdivisions=sub, radius=radius)
    return Mesh(np.asarray(s.vertices) + np.asarray(center), s.faces, color)


def _centroid(alpha):
    H, W = alpha.shape
    jj, ii = np.mgrid[0:H, 0:W]
    a = alpha.astype(np.float64)
    # OpenCV convention: pixel (i, j) has its centre at (i, j)
    return np.array([(a * ii).sum() / a.sum(), (a * jj).sum() / a.sum()])


@pytest.fixture(scope="module")
def renderer():
    return Renderer(160, 120)


K0 = np.array([[150.0, 0.0, 83.0], [0.0, 140.0, 57.0], [0.0, 0.0, 1.0]])  # off-centre principal point


@pytest.mark.parametrize("center", [(0.0, 0.0, 0.6), (0.12, -0.08, 0.6), (-0.15, 0.1, 0.7), (0.05, 0.12, 0.45)])
def test_sphere_centroid_at_projected_centre(renderer, center):
    layers = renderer.render_layers([_sphere(center)], K0)
    uv, _ = project_points(np.asarray(center), K0)
    c = _centroid(layers.alpha)
    # a half-pixel convention error would show up as a 0.5 px offset; the perspective bias of a
    # 1.5 cm sphere at >= 45 cm is < 0.1 px
    assert np.abs(c - uv).max() < 0.2, (c, uv)


def test_world_to_cam_moves_the_scene(renderer):
    # a sphere at world (0, 0, 0) seen by a camera 0.6 m behind it, shifted
    w2c = np.eye(4)
    ang = np.radians(10)
    w2c[:3, :3] = [[np.cos(ang), 0, np.sin(ang)], [0, 1, 0], [-np.sin(ang), 0, np.cos(ang)]]
    w2c[:3, 3] = [0.02, -0.03, 0.6]
    layers = renderer.render_layers([_sphere((0, 0, 0))], K0, w2c)
    uv, _ = project_points(np.zeros(3), K0, w2c)
    assert np.abs(_centroid(layers.alpha) - uv).max() < 0.2


def test_quad_covers_exactly_the_expected_pixels():
    K = np.array([[100.0, 0, 20.0], [0, 100.0, 15.0], [0, 0, 1]])
    r = Renderer(40, 30, samples=0)
    z = 1.0
    # pixel centres are at integers: u in [9.75, 19.25], v in [4.75, 14.25] -> columns 10..19, rows 5..14
    u0, u1, v0, v1 = 9.75, 19.25, 4.75, 14.25
    xy = lambda u, v: [(u - 20.0) / 100.0 * z, (v - 15.0) / 100.0 * z, z]  # noqa: E731
    verts = np.array([xy(u0, v0), xy(u1, v0), xy(u1, v1), xy(u0, v1)])
    layers = r.render_layers([Mesh(verts, [[0, 1, 2], [0, 2, 3]], (255, 255, 255))], K)
    expect = np.zeros((30, 40), bool)
    expect[5:15, 10:20] = True
    np.testing.assert_array_equal(layers.mask, expect)


def test_row_zero_is_top_and_column_zero_is_left(renderer):
    # negative y (up in OpenCV) -> upper rows; negative x -> left columns
    layers = renderer.render_layers([_sphere((-0.1, -0.08, 0.6))], K0)
    c = _centroid(layers.alpha)
    assert c[0] < K0[0, 2] and c[1] < K0[1, 2]


def test_behind_camera_not_drawn(renderer):
    bg = (10, 20, 30)
    # a sphere behind the camera that would project inside the image if mirrored
    img = renderer.render([_sphere((0.0, 0.0, -0.6), radius=0.05)], K0, background=bg)
    assert (img == np.array(bg, np.uint8)).all()
    # a big triangle crossing the camera plane: only its part in front may be drawn
    tri = Mesh([[-0.05, -0.05, -1.0], [0.05, -0.05, -1.0], [0.0, 0.05, 1.0]], [[0, 1, 2]], (255, 255, 255))
    layers = renderer.render_layers([tri], K0, depth=True)
    assert np.isfinite(layers.depth[layers.mask]).all()
    assert (layers.depth[layers.mask] >= 0.01 - 1e-6).all()


def test_background_image_preserved_where_empty(renderer):
    rng = np.random.default_rng(3)
    bg = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    layers = renderer.render_layers([_sphere((0.0, 0.0, 0.5), radius=0.04)], K0, background=bg)
    empty = layers.alpha == 0
    assert empty.mean() > 0.5 and (~empty).sum() > 100
    np.testing.assert_array_equal(layers.image[empty], bg[empty])
    assert not np.array_equal(layers.image[~empty], bg[~empty])


def test_background_colour_and_mesh_colour(renderer):
    img = renderer.render([_sphere((0.0, 0.0, 0.5), 0.04, color=(40, 110, 235))], K0, background=(255, 255, 255))
    assert (img[0, 0] == 255).all()
    centre = img[57, 83].astype(int)
    assert centre[2] > centre[0] + 60  # blue mesh stays blue under white light


def test_deterministic(renderer):
    rng = np.random.default_rng(0)
    bg = rng.integers(0, 256, size=(120, 160, 3), dtype=np.uint8)
    ms = [_sphere((0.02, 0.01, 0.5), 0.05), _sphere((-0.05, 0.0, 0.55), 0.04, color=(30, 200, 90))]
    a = renderer.render(ms, K0, background=bg)
    b = Renderer(160, 120).render(ms, K0, background=bg)
    c = renderer.render(ms, K0, background=bg)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_depth_map(renderer):
    center, r = np.array([0.0, 0.0, 0.5]), 0.04
    layers = renderer.render_layers([_sphere(center, r, sub=4)], K0, depth=True)
    d = layers.depth
    assert np.isinf(d[layers.alpha == 0]).all()
    assert abs(d[np.isfinite(d)].min() - (center[2] - r)) < 2e-3


def test_two_sided_lighting_and_occlusion(renderer):
    # a quad whose normal points away from the camera is still lit (not black)
    quad = Mesh(
        [[-0.1, -0.1, 0.5], [0.1, -0.1, 0.5], [0.1, 0.1, 0.5], [-0.1, 0.1, 0.5]],
        [[0, 1, 2], [0, 2, 3]],
        (200, 200, 200),
        normals=np.tile([0.0, 0.0, 1.0], (4, 1)),
    )
    img = renderer.render([quad], K0, light_dir=(0, 0, -1))
    assert img[57, 83].mean() > 150
    # nearer sphere hides the quad, whatever the drawing order
    near = _sphere((0.0, 0.0, 0.4), 0.02, color=(255, 0, 0))
    for order in ([quad, near], [near, quad]):
        px = renderer.render(order, K0)[57, 83].astype(int)
        assert px[0] > px[1] + 80


def test_textured_plane_shows_texture(renderer):
    tex = np.zeros((64, 64, 3), np.uint8)
    tex[:32] = (255, 0, 0)  # top half (first rows, v < 0.5) red
    tex[32:] = (0, 0, 255)
    quad = Mesh(
        [[-0.2, -0.2, 0.5], [0.2, -0.2, 0.5], [0.2, 0.2, 0.5], [-0.2, 0.2, 0.5]],
        [[0, 1, 2], [0, 2, 3]],
        uv=[[0, 0], [1, 0], [1, 1], [0, 1]],
        texture=tex,
    )
    img = renderer.render([quad], K0).astype(int)
    top, bottom = img[20, 83], img[100, 83]
    assert top[0] > top[2] + 80 and bottom[2] > bottom[0] + 80


def test_vertex_normals_unit_and_outward():
    s = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    n = vertex_normals(s.vertices, s.faces)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-5)
    assert (np.sum(n * s.vertices, axis=1) > 0.98).all()


def test_projection_matrix_maps_pixels_to_ndc():
    K = np.array([[300.0, 0, 70.0], [0, 280.0, 50.0], [0, 0, 1]])
    P = projection_matrix(K, 160, 120)
    X = np.array([0.1, -0.05, 0.8, 1.0])
    clip = P @ X
    ndc = clip[:3] / clip[3]
    uv, _ = project_points(X[:3], K)
    np.testing.assert_allclose((ndc[:2] + 1) / 2 * [160, 120] - 0.5, uv, atol=1e-9)  # OpenCV pixel centres


def test_bad_inputs(renderer):
    with pytest.raises(HandcastError):
        Mesh(np.zeros((3, 2)), [[0, 1, 2]])
    with pytest.raises(HandcastError):
        Mesh(np.zeros((3, 3)), [[0, 1, 3]])
    with pytest.raises(HandcastError):
        renderer.render([], K0, background=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(HandcastError):
        renderer.render([], np.eye(4))


def test_no_egl_gives_actionable_error(monkeypatch):
    import moderngl

    def boom(*a, **k):
        raise Exception("libEGL.so: cannot open shared object file")

    monkeypatch.setattr(gl, "_ctx", None)
    monkeypatch.setattr(gl, "_programs", {})
    monkeypatch.setattr(gl, "_renderers", {})
    monkeypatch.setattr(moderngl, "create_context", boom)
    with pytest.raises(HandcastError, match="libegl1 libegl-mesa0 libgl1-mesa-dri"):
        gl.get_context()


def test_consistent_with_geometry_project():
    geometry = pytest.importorskip("handcast.geometry")
    project = getattr(geometry, "project", None)
    if project is None:
        pytest.skip("handcast.geometry.project not available yet")
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(10, 3)) * 0.1 + [0, 0, 0.6]
    try:
        theirs = np.asarray(project(pts, K0))
    except Exception as e:  # signature may differ while it is being written
        pytest.skip(f"handcast.geometry.project signature differs: {e}")
    ours, _ = project_points(pts, K0)
    np.testing.assert_allclose(theirs[..., :2], ours, atol=1e-6)


def test_speed_256_10k_triangles():
    s = trimesh.creation.icosphere(subdivisions=4, radius=0.05)  # 5120 faces
    ms = [Mesh(np.asarray(s.vertices) + [dx, 0, 0.5], s.faces, (200, 150, 120)) for dx in (-0.06, 0.06)]
    K = np.array([[260.0, 0, 128], [0, 260.0, 128], [0, 0, 1]])
    r = Renderer(256, 256)
    bg = np.zeros((256, 256, 3), np.uint8)
    r.render(ms, K, background=bg)
    ts = []
    for _ in range(10):
        t = time.perf_counter()
        r.render(ms, K, background=bg)
        ts.append(time.perf_counter() - t)
    # target is ~15 ms on 2 llvmpipe cores; the bound leaves room for a loaded CI machine
    assert np.median(ts) < 0.1, np.median(ts)


def test_per_vertex_colours(renderer):
    quad_v = np.array([[-0.2, -0.2, 0.5], [0.2, -0.2, 0.5], [0.2, 0.2, 0.5], [-0.2, 0.2, 0.5]])
    cols = np.array([[255, 0, 0], [255, 0, 0], [0, 255, 0], [0, 255, 0]])  # red top, green bottom
    img = renderer.render([Mesh(quad_v, [[0, 1, 2], [0, 2, 3]], cols)], K0, ambient=1.0, diffuse=0.0, specular=0.0)
    top, bottom = img[5, 83].astype(int), img[110, 83].astype(int)
    assert top[0] > 200 and top[1] < 60 and bottom[1] > 200 and bottom[0] < 60
    with pytest.raises(HandcastError):
        Mesh(quad_v, [[0, 1, 2]], np.zeros((3, 3)))


def test_the_old_module_paths_are_aliases_for_one_release():
    import handcast.gl.primitives as new_p
    import handcast.gl.renderer as new_r
    import handcast.render.gl as old_r
    import handcast.render.primitives as old_p

    assert old_r.Renderer is new_r.Renderer and old_r.get_renderer is new_r.get_renderer and old_r.Mesh is new_r.Mesh
    assert all(getattr(old_p, n) is getattr(new_p, n) for n in new_p.__all__)
