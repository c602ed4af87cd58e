"""Overlays: hand colours, time fading, projection into the first image, second view, sheet."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest
from PIL import Image

from handcast.conventions import HAND_COLORS
from handcast.errors import HandcastError
from handcast.render.overlay import (
    draw_keypoints,
    overlay_motion,
    project_points,
    render_sheet,
    resize_with_K,
    second_view,
    time_colors,
    view_camera,
)

K = np.array([[200.0, 0, 80.0], [0, 200.0, 60.0], [0, 0, 1.0]])
GREY = 128


def _hand2d(center, scale=12.0):
    """A (21, 2) star-shaped 2D hand around ``center`` (pixels)."""
    kp = np.zeros((21, 2))
    kp[0] = center
    for f in range(5):
        ang = np.radians(-150 + 30 * f)
        d = np.array([np.cos(ang), np.sin(ang)])
        for k in range(4):
            kp[1 + 4 * f + k] = np.asarray(center) + d * scale * (k + 1) / 4
    return kp


def _hand3d(center, size=0.04):
    rng = np.random.default_rng(1)
    j = np.asarray(center) + rng.normal(0, size / 2, (21, 3))
    j[0] = center
    return j


def _sat_hue(rgb):
    h, s, v = colorsys.rgb_to_hsv(*(np.asarray(rgb, float) / 255.0))
    return s, h


def _changed(a, b):
    return np.abs(a.astype(int) - b.astype(int)).sum(-1) > 30


def test_time_colors_fade_monotone():
    c = time_colors(12, fade=0.7)
    assert c.shape == (12, 2, 3) and c.dtype == np.uint8
    np.testing.assert_array_equal(c[0], np.asarray(HAND_COLORS, np.uint8))
    for hand in range(2):
        sats = [_sat_hue(c[t, hand])[0] for t in range(12)]
        assert all(a > b for a, b in zip(sats, sats[1:]))
        hues = [_sat_hue(c[t, hand])[1] for t in range(12)]
        assert np.ptp(hues) < 0.03  # fading keeps the hue


def test_right_blue_left_pink():
    img = np.full((120, 160, 3), GREY, np.uint8)
    kp = np.stack([_hand2d((45, 60)), _hand2d((115, 60))])  # right hand on the left of the image
    out = draw_keypoints(img, kp)
    ch = _changed(out, img)
    right, left = ch.copy(), ch.copy()
    right[:, 80:] = False
    left[:, :80] = False
    assert right.sum() > 50 and left.sum() > 50
    r = out[right].astype(float).mean(0)
    lft = out[left].astype(float).mean(0)
    assert r[2] > r[0] + 40  # bluish
    assert lft[0] > lft[1] + 40 and lft[2] > lft[1]  # pink: red and blue over green


def test_draw_keypoints_at_the_right_pixels():
    img = np.zeros((60, 80, 3), np.uint8)
    kp = np.full((2, 21, 2), np.nan)
    kp[0] = [30.5, 20.5]  # every keypoint at the centre of pixel (30, 20): corner-origin coordinates
    out = draw_keypoints(img, kp, radius=1.5, width=1, outline=False)
    ch = _changed(out, img)
    jj, ii = np.nonzero(ch)
    assert ch.sum() > 0
    assert abs(ii.mean() - 30) < 0.5 and abs(jj.mean() - 20) < 0.5


def test_invalid_hand_not_drawn():
    img = np.full((120, 160, 3), GREY, np.uint8)
    kp = np.stack([_hand2d((45, 60)), _hand2d((115, 60))])
    out = draw_keypoints(img, kp, valid=np.array([True, False]))
    ch = _changed(out, img)
    assert ch[:, :80].sum() > 50 and ch[:, 85:].sum() == 0
    kp[0, 3] = np.nan  # a NaN keypoint is skipped, not an error
    draw_keypoints(img, kp)


def test_sequence_fades_in_the_image():
    T = 5
    img = np.full((80, 400, 3), 255, np.uint8)
    kp = np.stack([np.stack([_hand2d((40 + 80 * t, 40)), np.full((21, 2), np.nan)]) for t in range(T)])
    out = draw_keypoints(img, kp)
    sats = []
    for t in range(T):
        x0 = 40 + 80 * t
        patch = out[20:60, x0 - 20 : x0 + 20].reshape(-1, 3)
        ink = patch[_changed(patch[None], np.full((1, len(patch), 3), 255, np.uint8))[0]]
        sats.append(np.mean([_sat_hue(p)[0] for p in ink]))
    assert all(a > b for a, b in zip(sats, sats[1:])), sats


def test_overlay_projects_into_first_image():
    img = np.full((120, 160, 3), GREY, np.uint8)
    T = 4
    j = np.full((T, 2, 21, 3), np.nan)
    pt = np.array([0.05, -0.02, 0.5])
    j[:, 0] = pt  # the right hand collapsed to one point
    out = overlay_motion(img, j, K, radius=2, width=1)
    uv, _ = project_points(pt, K)
    ch = _changed(out, img)
    jj, ii = np.nonzero(ch)
    c = np.array([ii.mean() + 0.5, jj.mean() + 0.5])
    assert np.abs(c - uv).max() < 0.6
    # world_to_cam: moving the camera 2 cm right moves the drawing 200*0.02/0.5 = 8 px left
    w2c = np.eye(4)
    w2c[0, 3] = -0.02
    out2 = overlay_motion(img, j, K, world_to_cam=w2c, radius=2, width=1)
    jj2, ii2 = np.nonzero(_changed(out2, img))
    assert abs((ii.mean() - ii2.mean()) - 8.0) < 0.6


def test_overlay_behind_camera_not_drawn():
    img = np.full((120, 160, 3), GREY, np.uint8)
    j = np.stack([_hand3d((0.0, 0.0, -0.5)), _hand3d((0.0, 0.0, -0.5))])[None]
    np.testing.assert_array_equal(overlay_motion(img, j, K), img)


def test_overlay_with_meshes_blends_first_frame():
    import trimesh

    img = np.full((120, 160, 3), GREY, np.uint8)
    s = trimesh.creation.icosphere(2, 0.03)
    v = np.stack([np.asarray(s.vertices) + [0.06, 0, 0.5], np.asarray(s.vertices) + [-0.06, 0, 0.5]])
    j = np.stack([_hand3d((0.06, 0, 0.5), 0.01), _hand3d((-0.06, 0, 0.5), 0.01)])[None].repeat(3, 0)
    valid = np.ones((3, 2), bool)
    out = overlay_motion(img, j, K, valid, vertices=v, faces=s.faces, mesh_alpha=0.6)
    uv_r, _ = project_points(np.array([0.06, 0.025, 0.5]), K)  # below the right hand's joints
    px = out[int(uv_r[1]), int(uv_r[0])].astype(int)
    assert px[2] > px[0] + 20  # bluish tint over grey
    uv_l, _ = project_points(np.array([-0.06, 0.025, 0.5]), K)
    px = out[int(uv_l[1]), int(uv_l[0])].astype(int)
    assert px[0] > px[1] + 20


def test_second_view_colours_and_size():
    T = 6
    j = np.stack(
        [np.stack([_hand3d((0.08, 0.0, 0.5 + 0.01 * t)), _hand3d((-0.08, 0.0, 0.5))]) for t in range(T)]
    )
    out = second_view(j, size=(200, 150))
    assert out.shape == (150, 200, 3) and out.dtype == np.uint8
    px = out.reshape(-1, 3).astype(int)
    blue = (px[:, 2] > px[:, 0] + 60) & (px[:, 2] > px[:, 1] + 40)
    pink = (px[:, 0] > px[:, 1] + 60) & (px[:, 2] > px[:, 1] + 20)
    assert blue.sum() > 30 and pink.sum() > 30
    # background is light and mostly untouched
    assert np.median(px, axis=0).min() > 200


def test_view_camera_frames_points():
    rng = np.random.default_rng(0)
    pts = rng.normal(0, 0.1, (50, 3)) + [0, 0, 0.6]
    for az, el in [(0, 20), (70, 25), (180, 60), (-90, 10)]:
        cam = view_camera(pts, (128, 96), az, el)
        uv, z = project_points(pts, cam.K, cam.world_to_cam)
        assert (z > 0).all()
        assert (uv[:, 0] > 0).all() and (uv[:, 0] < 128).all() and (uv[:, 1] > 0).all() and (uv[:, 1] < 96).all()
    # elevation 60: the camera is above (smaller y in the frame-0 camera, since y points down)
    cam = view_camera(pts, (128, 96), 0, 60)
    eye = -cam.world_to_cam[:3, :3].T @ cam.world_to_cam[:3, 3]
    assert eye[1] < pts[:, 1].min()


def test_resize_with_K_keeps_projection():
    img = np.zeros((120, 160, 3), np.uint8)
    small, K2 = resize_with_K(img, K, 60)
    assert small.shape == (60, 80, 3)
    p = np.array([0.03, 0.01, 0.4])
    np.testing.assert_allclose(project_points(p, K2)[0], project_points(p, K)[0] / 2)


def test_render_sheet_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    j = np.stack([np.stack([_hand3d((0.05, 0.0, 0.5)), _hand3d((-0.05, 0.0, 0.5))])] * 4)
    out = tmp_path / "sub" / "sheet.png"
    sheet = render_sheet(img, K, j, title="test", out_png=out, height=128)
    back = np.asarray(Image.open(out).convert("RGB"))
    np.testing.assert_array_equal(back, sheet)
    assert sheet.shape[0] > 128 and sheet.shape[1] > 128 + 170
    assert [p.name for p in out.parent.iterdir()] == ["sheet.png"]  # no temporary left behind


def test_bad_shapes():
    img = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(HandcastError):
        draw_keypoints(img, np.zeros((2, 20, 2)))
    with pytest.raises(HandcastError):
        draw_keypoints(img.astype(np.float32), np.zeros((2, 21, 2)))
    with pytest.raises(HandcastError):
        overlay_motion(img, np.zeros((3, 2, 21, 3)), K, valid=np.ones((4, 2), bool))


def _noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_drawings_on_a_large_photo_match_a_full_canvas():
    """Skeletons and paths are drawn on a layer covering only their window of the image; the result is the full
    canvas's, pixel for pixel, and nothing outside the window changes (a margin too small would cut the outline)."""
    from handcast.render import overlay as ov

    img = _noise(1500, 2000)
    kp = np.stack([_hand2d((700.3, 900.6), 60.0), _hand2d((1995.0, 20.0), 60.0)])  # the left one leaves the image
    ops = ov._skeleton_ops(kp[None], np.ones((1, 2, 21), bool), time_colors(1), True)
    width, radius = 7.0, 9.0
    ref = ov._composite(img, ov._draw_layer(1500, 2000, 2, lambda d, ss: ov._run_ops(d, ss, ops, width, radius)))
    out = draw_keypoints(img, kp, width=width, radius=radius, outline=True)
    np.testing.assert_array_equal(out, ref)
    assert (out != img).any(-1).sum() > 1000

    paths = np.stack([kp[:, :6], kp[:, 6:12]]).transpose(0, 2, 1, 3).copy()  # (N, T, 2 hands, 2) pixels
    paths[1, 2, 0] = np.nan  # a gap splits a polyline
    got = ov._draw_paths(img, paths, width=11.0)
    full = ov._composite(img, ov._draw_layer(1500, 2000, 2, lambda d, ss: _full_paths(d, ss, paths, 11.0, 110)))
    np.testing.assert_array_equal(got, full)


def _full_paths(draw, ss, paths_uv, width, alpha):
    """The paths as the overlay drew them on a canvas of the whole image (the reference above)."""
    from handcast.render.overlay import _to_canvas

    lw = max(1, int(round(width * ss)))
    for n in range(paths_uv.shape[0]):
        for hand in range(2):
            col = tuple(HAND_COLORS[hand]) + (alpha,)
            seg = []
            for p in list(paths_uv[n, :, hand]) + [np.full(2, np.nan)]:
                if np.isfinite(p).all():
                    seg.append(tuple(_to_canvas(p, ss).tolist()))
                    continue
                if len(seg) > 1:
                    draw.line(seg, fill=col, width=lw, joint="curve")
                seg = []


def test_mesh_overlay_renders_only_its_window():
    """A mesh in a large photo is rendered in its window with K shifted; it matches the full-frame render."""
    import trimesh

    from handcast.gl.renderer import Mesh, get_renderer
    from handcast.render import overlay as ov

    H, W = 1200, 1600
    Kb = np.array([[1400.0, 0, 800.0], [0, 1400.0, 600.0], [0, 0, 1.0]])
    img = _noise(H, W, 1)
    s = trimesh.creation.icosphere(3, 0.03)
    meshes = [Mesh(np.asarray(s.vertices) + [0.15, -0.05, 0.6], np.asarray(s.faces), (40, 90, 220))]
    out = ov._render_meshes_over(img, meshes, Kb, None, 0.6)
    layers = get_renderer(W, H).render_layers(meshes, Kb, None, background=None)
    a = (layers.alpha * 0.6)[..., None]
    shade = layers.image.astype(np.float32) / np.maximum(layers.alpha[..., None], 1e-6)
    ref = np.clip(img.astype(np.float32) * (1 - a) + shade * a + 0.5, 0, 255).astype(np.uint8)
    diff = np.abs(out.astype(int) - ref.astype(int)).max(-1)
    covered = layers.alpha > 0
    assert covered.sum() > 5000
    assert (diff > 2).sum() <= 10  # the same raster, up to a few edge samples
    assert (out[~covered] != img[~covered]).any(-1).sum() <= 10  # outside the mesh the photo is kept
    assert ov._renderer_side(140, W) == 256 and ov._renderer_side(300, W) == 512 and ov._renderer_side(1500, W) == W


def test_hands_window_frames_small_hands_only():
    from handcast.render.overlay import ZOOM_MAX_AREA, crop_with_K, hands_window

    W, H = 4000, 3000
    Kb = np.array([[3000.0, 0, 2000.0], [0, 3000.0, 1500.0], [0, 0, 1.0]])
    j = np.stack([_hand3d((0.10, 0.05, 0.8), 0.03), _hand3d((0.16, 0.02, 0.8), 0.03)])[None]  # both hands, small
    win = hands_window((W, H), Kb, j)
    assert win is not None
    x0, y0, x1, y1 = win
    assert 0 <= x0 < x1 <= W and 0 <= y0 < y1 <= H
    assert (x1 - x0) * (y1 - y0) < ZOOM_MAX_AREA * W * H and 0.74 <= (x1 - x0) / (y1 - y0) <= 1.34
    uv, _ = project_points(j, Kb)
    box = uv.reshape(-1, 2)
    span = box.max(0) - box.min(0)
    assert (box.min(0) - [x0, y0] >= span.max() * 0.49).all() and ([x1, y1] - box.max(0) >= span.max() * 0.49).all()
    img = _noise(H, W)
    crop, Kc = crop_with_K(img, Kb, win)
    np.testing.assert_array_equal(crop, img[y0:y1, x0:x1])
    np.testing.assert_allclose(project_points(j, Kc)[0], uv - [x0, y0], atol=1e-9)
    # hands that fill the image, or behind the camera: the whole image
    assert hands_window((W, H), Kb, np.stack([_hand3d((0.0, 0.0, 0.12), 0.05)] * 2)[None]) is None
    assert hands_window((W, H), Kb, np.stack([_hand3d((0.0, 0.0, -0.5), 0.03)] * 2)[None]) is None
    # a window near the corner stays inside the image, at least min_height tall
    x0, y0, x1, y1 = hands_window((W, H), Kb, np.stack([_hand3d((0.52, 0.38, 0.8), 0.005)] * 2)[None], min_height=400)
    assert x1 <= W and y1 <= H and y1 - y0 >= 400


def test_sheet_zooms_on_small_hands():
    """In a whole photo with a small hand the sheet's image panel shows the hand's window: the hand is drawn larger."""
    W, H = 3000, 2000
    Kb = np.array([[2500.0, 0, 1500.0], [0, 2500.0, 1000.0], [0, 0, 1.0]])
    img = np.full((H, W, 3), GREY, np.uint8)
    j = np.stack([_hand3d((0.2, 0.1, 1.0), 0.02), _hand3d((0.25, 0.1, 1.0), 0.02)])[None].repeat(4, 0)
    j[:, 1] = np.nan  # one hand only
    sizes = {}
    for zoom in (False, True):
        sheet = render_sheet(img, Kb, j, zoom=zoom, height=300)
        panel = sheet[-300:, : int(round(300 * W / H))] if not zoom else sheet[-300:, :300]
        drawn = np.argwhere(_changed(panel, np.full_like(panel, GREY)))
        sizes[zoom] = np.ptp(drawn, 0).max()
    assert sizes[True] > 3 * sizes[False]


def test_default_width_follows_a_small_hand_in_a_large_photo():
    """A 170 px hand in a 4000 x 3000 photo is drawn with lines of about 1/50 of its size, not 1/160 of the photo's
    side (18.75 px, which would bury its fingers); on a photo the hand fills, the width is the photo's as before."""
    img = np.full((3000, 4000, 3), GREY, np.uint8)
    kp = np.stack([_hand2d((2000.0, 1500.0), 60.0), np.full((21, 2), np.nan)])
    size = np.linalg.norm(np.ptp(kp[0], 0))
    wide = _changed(draw_keypoints(img, kp, width=3000 / 160), img).sum()
    thin = _changed(draw_keypoints(img, kp, width=size / 50), img).sum()
    default = _changed(draw_keypoints(img, kp), img).sum()
    assert default == thin and thin < 0.6 * wide
    small = np.full((240, 320, 3), GREY, np.uint8)
    kp_small = np.stack([_hand2d((160.0, 120.0), 60.0), np.full((21, 2), np.nan)])
    np.testing.assert_array_equal(draw_keypoints(small, kp_small), draw_keypoints(small, kp_small, width=1.5))
