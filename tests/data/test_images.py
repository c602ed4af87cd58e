"""Image loading and the 256 x 192 network input: modes, bad files, crop geometry, normalisation."""

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from handcast.data.images import (
    IMAGE_MEAN, IMAGE_STD, crop_points, crop_to_input, expand_box, input_to_image, load_image, uncrop_points,
)
from handcast.errors import HandcastError

_BLACK = (-np.asarray(IMAGE_MEAN) / np.asarray(IMAGE_STD)).astype(np.float32)


def _rgb(h=48, w=64, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_header_only(path, w, h):
    """A PNG whose header claims w x h pixels but holds no pixel data (size checks must not decode)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------------ load_image


def test_rgb_png_round_trips_exactly(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    b = load_image(tmp_path / "a.png")
    assert b.dtype == np.uint8 and b.shape == (48, 64, 3)
    np.testing.assert_array_equal(a, b)


def test_greyscale_palette_and_16bit_become_rgb(tmp_path):
    g = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    out = load_image(tmp_path / "g.png")
    assert out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, axis=2))

    g16 = (g.astype(np.uint16) * 257)  # 8-bit value v stored as 16-bit v * 257
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    np.testing.assert_array_equal(load_image(tmp_path / "g16.png")[..., 1], g)

    pal = Image.fromarray(_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    np.testing.assert_array_equal(load_image(tmp_path / "p.png"), np.asarray(pal.convert("RGB")))


def test_rgba_is_composited_on_white(tmp_path):
    a = np.zeros((40, 40, 4), np.uint8)
    a[..., 0] = 200  # red everywhere
    a[:20, :, 3] = 255  # top half opaque, bottom half fully transparent
    a[20:, :20, 3] = 128  # bottom-left half transparent
    Image.fromarray(a, "RGBA").save(tmp_path / "a.png")
    out = load_image(tmp_path / "a.png")
    assert out.shape == (40, 40, 3)
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[39, 39], [255, 255, 255])
    assert abs(int(out[39, 0, 0]) - round(200 * 128 / 255 + 255 * 127 / 255)) <= 1
    assert abs(int(out[39, 0, 1]) - round(255 * 127 / 255)) <= 1
    # the array path of crop_to_input composites the same way
    t, _ = crop_to_input(a)
    assert t.shape == (3, 256, 192)


def test_exif_orientation_is_applied(tmp_path):
    a = np.zeros((40, 64, 3), np.uint8)  # stored 64 wide, 40 high
    a[:10, :10] = (255, 0, 0)  # red in the stored top-left corner
    img = Image.fromarray(a)
    exif = img.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    img.save(tmp_path / "r.png", exif=exif)
    out = load_image(tmp_path / "r.png")
    assert out.shape == (64, 40, 3)
    # clockwise: the stored top-left goes to the displayed top-right
    np.testing.assert_array_equal(out[0, 39], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 0], [0, 0, 0])


def _photo_with_focal(path, f35, size=(400, 300), orientation=None):
    img = Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8))
    exif = Image.Exif()
    if f35 is not None:
        exif.get_ifd(0x8769)[0xA405] = f35  # FocalLengthIn35mmFilm
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, exif=exif)
    return path


def test_exif_focal_known_answer_and_invariants(tmp_path):
    """A 35 mm-equivalent focal length gives f = f35 x image diagonal / 43.27 mm: 26 mm on a 400 x 300 photo is
    300.5 px (67 degrees across the 400 px); turned by its EXIF orientation or halved in size, the same camera."""
    from handcast.data.images import exif_focal_px

    f, f35 = exif_focal_px(_photo_with_focal(tmp_path / "a.jpg", 26))
    assert f35 == 26.0 and f == pytest.approx(26 * 500 / np.hypot(36, 24))
    assert exif_focal_px(_photo_with_focal(tmp_path / "b.jpg", 26, orientation=6))[0] == pytest.approx(f)
    assert exif_focal_px(_photo_with_focal(tmp_path / "c.jpg", 26, size=(200, 150)))[0] == pytest.approx(f / 2)
    # absent, zero, or a field of view no camera has: no EXIF camera
    assert exif_focal_px(_photo_with_focal(tmp_path / "d.jpg", None)) is None
    assert exif_focal_px(_photo_with_focal(tmp_path / "e.jpg", 0)) is None
    assert exif_focal_px(_photo_with_focal(tmp_path / "f.jpg", 1)) is None  # 170+ degrees
    Image.fromarray(_rgb()).save(tmp_path / "g.png")
    assert exif_focal_px(tmp_path / "g.png") is None


def test_photo_camera_prefers_the_options_then_exif_then_the_default(tmp_path):
    from handcast.data.images import photo_camera

    p = _photo_with_focal(tmp_path / "a.jpg", 26)
    f, what = photo_camera(p)
    assert f == pytest.approx(26 * 500 / np.hypot(36, 24)) and "EXIF" in what and "26 mm" in what
    assert photo_camera(p, fov=50.0) == (None, "50 degrees across the longer side (--fov)")
    assert photo_camera(p, focal=700.0)[0] == 700.0
    assert photo_camera(p, K=np.eye(3))[0] is None
    assert photo_camera(None) == (None, "default: 60 degrees across the longer side")
    assert photo_camera(_photo_with_focal(tmp_path / "b.jpg", None))[0] is None


def test_a_heic_photo_gets_a_message_that_says_what_to_do(tmp_path):
    p = tmp_path / "IMG_0001.HEIC"
    p.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    with pytest.raises(HandcastError, match="HEIC/HEIF photo.*convert it to JPEG or PNG"):
        load_image(p)
    q = tmp_path / "not.heic"
    q.write_bytes(b"just text, not a photo at all")
    with pytest.raises(HandcastError, match="unrecognised format"):
        load_image(q)


def test_bad_files_raise_one_line_errors(tmp_path):
    cases = {}
    (tmp_path / "t.png").write_text("this is not an image\n")
    cases["t.png"] = "not an image"
    Image.fromarray(_rgb(200, 200)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    cases["cut.png"] = "cannot decode"
    Image.fromarray(_rgb(20, 100)).save(tmp_path / "small.png")
    cases["small.png"] = "too small"
    _png_header_only(tmp_path / "wide.png", 9000, 40)
    cases["wide.png"] = "too large"
    _png_header_only(tmp_path / "mp.png", 8000, 7000)  # 56 MP, sides within 8192
    cases["mp.png"] = "too large"
    _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # Pillow's own decompression-bomb limit
    cases["bomb.png"] = "too large"
    cases["missing.png"] = "not found"
    (tmp_path / "dir.png").mkdir()
    cases["dir.png"] = "not a file"
    for name, words in cases.items():
        with pytest.raises(HandcastError, match=words) as e:
            load_image(tmp_path / name)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------- crop geometry


def test_expand_box_reaches_input_aspect_about_the_centre():
    b = expand_box((10, 20, 70, 40))  # wide: height grows to width / 0.75
    assert np.allclose(b, [10, 30 - 40, 70, 30 + 40])
    b = expand_box((0, 0, 30, 120))  # tall: width grows to height * 0.75
    assert np.allclose(b, [15 - 45, 0, 15 + 45, 120])
    b = expand_box((0, 0, 30, 40), scale=2.0)
    assert np.allclose(b, [-15, -20, 45, 60])


def test_identity_crop_is_exact_and_normalised():
    a = _rgb(256, 192, seed=3)
    t, A = crop_to_input(a)
    assert t.dtype == torch.float32 and t.shape == (3, 256, 192)
    np.testing.assert_allclose(A, [[1, 0, 0], [0, 1, 0]], atol=1e-12)
    expect = (a[0, 0] / 255.0 - np.asarray(IMAGE_MEAN)) / np.asarray(IMAGE_STD)
    np.testing.assert_allclose(t[:, 0, 0].numpy(), expect, atol=1e-5)
    np.testing.assert_array_equal(input_to_image(t), a)


def test_box_corners_map_to_input_corners():
    a = _rgb(300, 400)
    box = (9.5, 19.5, 9.5 + 96, 19.5 + 128)  # already 3:4, half the input's resolution
    _, A = crop_to_input(a, box)
    np.testing.assert_allclose(A, [[0.5, 0, 9.75], [0, 0.5, 19.75]], atol=1e-12)
    # the input image spans [-0.5, 191.5] x [-0.5, 255.5]
    np.testing.assert_allclose(uncrop_points([[-0.5, -0.5], [191.5, 255.5]], A), [[9.5, 19.5], [105.5, 147.5]])
    np.testing.assert_allclose(crop_points([[9.5, 19.5], [105.5, 147.5]], A), [[-0.5, -0.5], [191.5, 255.5]])


def test_points_round_trip_through_any_affine():
    rng = np.random.default_rng(1)
    A = np.hstack([rng.normal(size=(2, 2)) + 2 * np.eye(2), rng.normal(size=(2, 1)) * 50])
    p = rng.uniform(-100, 500, size=(5, 21, 2))
    np.testing.assert_allclose(uncrop_points(crop_points(p, A), A), p, atol=1e-9)
    np.testing.assert_allclose(crop_points(uncrop_points(p, A), A), p, atol=1e-9)


def _blob_image(h, w, centre, sigma):
    yy, xx = np.mgrid[:h, :w]
    g = np.exp(-((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / (2 * sigma**2))
    return np.repeat(np.clip(np.rint(g * 255), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _centroid(t):
    u = input_to_image(t)[..., 0].astype(np.float64)
    yy, xx = np.mgrid[: u.shape[0], : u.shape[1]]
    return np.array([(u * xx).sum() / u.sum(), (u * yy).sum() / u.sum()])


@pytest.mark.parametrize("box", [None, (90, 30, 190, 140), (117, 66, 157, 96)])
def test_a_feature_maps_back_to_where_it_was(box):
    """Known answer for the half-pixel convention: a blob's centroid in the input, mapped back through
    the affine, lands on its true centre whether the crop shrinks (s = 2.6) or enlarges (s = 0.2..0.6)."""
    centre = (137.3, 81.6)
    img = _blob_image(300, 500, centre, sigma=6.0)
    t, A = crop_to_input(img, box)
    back = uncrop_points(_centroid(t), A)
    assert np.linalg.norm(back - centre) < 0.05 + 0.05 * A[0, 0], (back, A[0, 0])


def test_letterbox_keeps_aspect_and_centres_the_image():
    img = np.full((50, 100, 3), 200, np.uint8)  # wide: padded above and below
    t, A = crop_to_input(img)
    content = ~np.all(np.isclose(t.numpy(), _BLACK[:, None, None], atol=1e-4), axis=0)
    rows, cols = np.nonzero(content)
    assert cols.min() == 0 and cols.max() == 191
    top, bottom = rows.min(), 255 - rows.max()
    assert abs(top - bottom) <= 1
    # 100 px -> 192 px, so 50 px -> 96 px: undistorted
    assert rows.max() - rows.min() + 1 == 96
    # a square stays square, wherever the box
    img = np.zeros((120, 300, 3), np.uint8)
    img[40:80, 200:240] = 255
    for box in (None, (150, 20, 290, 110)):
        t, A = crop_to_input(img, box)
        m = input_to_image(t)[..., 0] > 127
        r, c = np.nonzero(m)
        assert abs((r.max() - r.min()) - (c.max() - c.min())) <= 1


def test_box_partly_outside_is_black_there():
    img = np.full((300, 100, 3), 255, np.uint8)
    t, A = crop_to_input(img, (50, 20, 170, 180))  # right part of the box lies beyond the image
    u = input_to_image(t)
    right_of_image = crop_points([99.5, 50], A)[0]
    assert np.all(u[:, int(np.ceil(right_of_image)) + 1:] == 0)
    assert np.all(u[10:-10, : int(right_of_image) - 2] == 255)


def test_greyscale_array_gives_three_channels():
    g = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    t, _ = crop_to_input(g)
    u = input_to_image(t)
    assert t.shape == (3, 256, 192)
    assert np.array_equal(u[..., 0], u[..., 1]) and np.array_equal(u[..., 1], u[..., 2])


def test_crop_errors():
    img = _rgb()
    for bad, words in [
        (dict(box=(500, 500, 600, 600)), "does not overlap"),
        (dict(box=(10, 10, 5, 20)), "x1 > x0"),
        (dict(box=(0, 0, 1)), "4 finite numbers"),
        (dict(box=(0, 0, 10, np.nan)), "4 finite numbers"),
        (dict(scale=0.0), "scale"),
    ]:
        with pytest.raises(HandcastError, match=words):
            crop_to_input(img, **bad)
    with pytest.raises(HandcastError, match="uint8"):
        crop_to_input(img.astype(np.float32))
    with pytest.raises(HandcastError, match="shape"):
        crop_to_input(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(HandcastError, match="points"):
        uncrop_points(np.zeros((3, 3)), np.eye(2, 3))
