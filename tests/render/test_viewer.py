"""The interactive 3D viewer page: result checking, data encoding, self-containedness, and a
screenshot in headless Chromium (skipped when chromium / chromedriver / selenium are absent)."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from handcast.conventions import HAND_COLORS
from handcast.errors import HandcastError
from handcast.render.viewer import (
    JOINT_STEP,
    VERTEX_STEP,
    bundle_info,
    decode_positions,
    encode_positions,
    read_result,
    write_viewer,
)

K = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]], np.float32)


def _page_data(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="handcast-data">(.*?)</script>', text, re.S)
    assert m, "no embedded data"
    return json.loads(m.group(1))


def _skeleton_result(S=2, T=12, seed=0):
    """Joints-only forecast: right hand on the right (+x), left hand on the left, 0.5 m away."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.03, (2, 21, 3))
    base[0] += [0.09, 0.02, 0.5]
    base[1] += [-0.09, 0.02, 0.5]
    t = np.linspace(0, 1, T)[:, None, None, None]
    joints = np.stack([base[None] + [0.0, -0.04 * s, 0.0] * t for s in range(S)]).astype(np.float32)
    valid = np.ones((S, T, 2), bool)
    return joints, valid


def test_bundle_is_vendored_and_versioned():
    info = bundle_info()
    assert info["three"] == "0.187.0"
    assert set(info) >= {"three", "fflate", "esbuild"}


def test_encode_positions_round_trip_and_gap_fill():
    rng = np.random.default_rng(1)
    x = np.cumsum(rng.normal(0, 0.004, (3, 20, 50, 3)), axis=1) + [0.1, -0.2, 0.6]
    x[1, 5:9, 3] = np.nan  # a gap is filled from the frame before (and ignored by the page)
    x[2, 0, :] = np.nan
    spec = encode_positions(x, min_step=1e-4)
    y = decode_positions(spec)
    fin = np.isfinite(x)
    assert np.abs(y[fin] - x[fin]).max() <= spec["step"] / 2 + 1e-9
    assert np.allclose(y[1, 5:9, 3], y[1, 4, 3])
    # a scene larger than +-3.2 m gets a coarser step but stays exact to step / 2
    big = x.copy()
    big[..., 0] += np.linspace(-5.0, 5.0, 3)[:, None, None]
    spec = encode_positions(big, min_step=1e-4)
    assert spec["step"] > 1e-4
    assert np.abs(decode_positions(spec)[fin] - big[fin]).max() <= spec["step"] / 2 + 1e-9


def test_page_data_matches_input_in_display_frame(tmp_path):
    joints, valid = _skeleton_result(S=3, T=10)
    valid[1, 4, 1] = False
    joints[2, 7, 0, 5] = np.nan  # a NaN joint invalidates that hand in that frame
    npz = tmp_path / "res.npz"
    w2c = np.tile(np.eye(4, dtype=np.float32), (10, 1, 1))
    w2c[:, 0, 3] = np.linspace(0, 0.1, 10)
    np.savez(npz, joints=joints, hand_valid=valid, K=K, image_size=np.array([640, 480]), world_to_cam=w2c, fps=np.float32(15))
    out = write_viewer(npz, tmp_path / "page.html", title="a <b> title")
    d = _page_data(out)
    assert d["format"] == "handcast-viewer" and d["num_samples"] == 3 and d["num_frames"] == 10
    assert d["fps"] == 15 and d["colors"] == [list(c) for c in HAND_COLORS]
    v = np.frombuffer(zlib.decompress(base64.b64decode(d["valid"]["b64"])), np.uint8).reshape(3, 10, 2)
    want_valid = valid.copy()
    want_valid[2, 7, 0] = False
    assert (v.astype(bool) == want_valid).all()
    j = decode_positions(d["joints"]).reshape(3, 10, 2, 21, 3)
    shown = joints * np.array([1, -1, -1])  # OpenCV -> y-up display frame
    m = want_valid
    assert np.abs(j[m] - shown[m]).max() <= JOINT_STEP / 2 + 1e-6
    assert d["camera"]["K"] == K.tolist() and d["camera"]["image_size"] == [640, 480]
    poses = np.frombuffer(zlib.decompress(base64.b64decode(d["camera_poses"]["b64"])), "<f4")
    P = poses.reshape(10, 4, 4).transpose(0, 2, 1)  # column-major in the page
    # camera t's centre in the display frame: flip(inv(w2c)) @ origin = (-tx, 0, 0)
    assert np.allclose(P[:, :3, 3], np.stack([-w2c[:, 0, 3], 0 * w2c[:, 0, 3], 0 * w2c[:, 0, 3]], 1), atol=1e-6)
    text = out.read_text(encoding="utf-8")
    assert "<title>a &lt;b&gt; title</title>" in text


def test_page_is_self_contained(tmp_path):
    joints, valid = _skeleton_result(S=1, T=4)
    img = np.full((48, 64, 3), 128, np.uint8)
    npz = tmp_path / "r.npz"
    np.savez(npz, joints=joints[0], hand_valid=valid[0], K=K / 10 * [[1], [1], [10]], image=img)
    out = write_viewer(npz, tmp_path / "p.html")
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", text)
    assert not re.search(r"<link[^>]+href=", text)
    assert "three.js" in text and "MIT" in text  # the bundled library and its licence travel with the page
    d = _page_data(out)
    assert d["image"].startswith("data:image/png;base64,")
    from PIL import Image

    im = np.asarray(Image.open(io.BytesIO(base64.b64decode(d["image"].split(",", 1)[1]))))
    assert im.shape == (48, 64, 3) and (im == 128).all()
    assert d["camera"]["image_size"] == [64, 48]  # from the image when image_size is absent
    assert d["num_samples"] == 1


def test_meshes_from_mano_parameters(tmp_path, hm):
    T = 3
    pose = np.zeros((T, 2, 16, 3), np.float32)
    pose[:, :, 4:7, 2] = 0.4
    transl = np.array([[[0.1, 0.0, 0.5], [-0.1, 0.0, 0.5]]] * T, np.float32)
    betas = np.zeros((2, 10), np.float32)
    npz = tmp_path / "mano.npz"
    np.savez(npz, pose=pose, transl=transl, betas=betas, hand_model=np.array("open"))
    r = read_result(npz)
    import torch

    with torch.no_grad():
        ref = hm.forward(torch.from_numpy(pose), torch.from_numpy(np.broadcast_to(betas, (T, 2, 10)).copy()),
                         torch.from_numpy(transl))
    assert r.vertices.shape == (1, T, 2, hm.num_vertices, 3)
    assert np.allclose(r.vertices[0], ref.vertices.numpy(), atol=1e-6)
    assert np.allclose(r.joints[0], ref.keypoints.numpy(), atol=1e-6)  # joints computed when absent
    assert (r.faces[1] == hm.faces("left")).all()
    d = _page_data(write_viewer(npz, tmp_path / "m.html"))
    v = decode_positions(d["vertices"]).reshape(1, T, 2, hm.num_vertices, 3)
    assert np.abs(v[0] - ref.vertices.numpy() * [1, -1, -1]).max() <= VERTEX_STEP / 2 + 1e-6


def test_prediction_file_picks_a_clip(tmp_path):
    joints, _ = _skeleton_result(S=2, T=5)
    pred = np.stack([joints, joints + 0.3])  # (N=2, S, T, 2, 21, 3)
    npz = tmp_path / "pred.npz"
    np.savez(npz, clip_ids=np.array(["a", "b"]), joints=pred, transl=pred[..., 0, :])
    r = read_result(npz, clip=1)
    assert r.joints.shape == (2, 5, 2, 21, 3) and np.allclose(r.joints, pred[1])
    assert r.vertices is None  # a prediction's transl (wrist position) is not taken for MANO's
    with pytest.raises(HandcastError, match="clip 2 out of range"):
        read_result(npz, clip=2)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"pose": np.zeros((3, 2, 16, 3))}, "missing array joints"),
        ({"joints": np.zeros((4, 2, 20, 3))}, "joints must be"),
        ({"joints": np.zeros((0, 2, 21, 3))}, "empty"),
        ({"joints": np.zeros((4, 2, 21, 3)), "hand_valid": np.ones((5, 2), bool)}, "hand_valid must have shape"),
        ({"joints": np.zeros((4, 2, 21, 3)), "vertices": np.zeros((4, 2, 10, 3))}, "without faces"),
        ({"joints": np.zeros((4, 2, 21, 3)), "vertices": np.zeros((4, 2, 10, 3)), "faces": np.array([[0, 1, 10]])},
         "outside"),
        ({"joints": np.zeros((4, 2, 21, 3)), "K": np.eye(3) * -1}, "K must be"),
        ({"joints": np.zeros((4, 2, 21, 3)), "image": np.zeros((4, 4, 3), np.float32)}, "image must be uint8"),
        ({"joints": np.zeros((4, 2, 21, 3)), "world_to_cam": np.zeros((4, 4, 4))}, "not a rigid"),
        ({"joints": np.zeros((4, 2, 21, 3)), "fps": np.float32(-1)}, "fps must be"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, arrays, message):
    npz = tmp_path / "bad.npz"
    np.savez(npz, **arrays)
    out = tmp_path / "page.html"
    with pytest.raises(HandcastError, match=message) as e:
        write_viewer(npz, out)
    assert "\n" not in str(e.value)
    assert not out.exists() and list(tmp_path.iterdir()) == [npz]


def test_not_an_npz(tmp_path):
    p = tmp_path / "x.npz"
    p.write_text("hello")
    with pytest.raises(HandcastError, match="not a readable .npz"):
        write_viewer(p, tmp_path / "o.html")
    with pytest.raises(HandcastError, match="not found"):
        write_viewer(tmp_path / "missing.npz", tmp_path / "o.html")
    assert not (tmp_path / "o.html").exists()


# ----------------------------------------------------------------------------------------------
# Headless Chromium


def _chromium():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("headless Chromium not available (Debian: apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=800,600",
              "--force-device-scale-factor=1", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
              "--disable-gpu-sandbox"):
        opts.add_argument(a)
    return webdriver.Chrome(options=opts, service=Service(driver))


def _canvas_pixels(drv) -> np.ndarray:
    """The WebGL canvas only (not the HTML panel over it), (H, W, 3) uint8."""
    from PIL import Image

    url = drv.execute_script("return document.querySelector('#hc-canvas canvas').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")).astype(int)


def _hand_masks(px: np.ndarray):
    r, g, b = px[..., 0], px[..., 1], px[..., 2]
    blue = (b > 120) & (b - r > 60) & (b - g > 30)  # right hand (40, 110, 235) under shading
    pink = (r > 120) & (r - g > 60) & (b - g > 20)  # left hand (235, 80, 170)
    return blue, pink


@pytest.fixture(scope="module")
def mesh_page(tmp_path_factory, hm):
    """A 2-sample forecast with meshes, an image and a camera: sample 1 moves the left hand away."""
    d = tmp_path_factory.mktemp("viewer")
    S, T = 2, 8
    pose = np.zeros((S, T, 2, 16, 3), np.float32)
    pose[..., 0, :] = [np.pi, 0.0, 0.0]
    transl = np.zeros((S, T, 2, 3), np.float32)
    transl[..., 0, :] = [0.09, 0.0, 0.45]
    transl[..., 1, :] = [-0.09, 0.0, 0.45]
    transl[1, :, 1, 0] -= np.linspace(0.0, 0.25, T)  # sample 1: the left hand leaves to the left
    valid = np.ones((S, T, 2), bool)
    valid[:, 5, 1] = False  # no left hand in frame 5
    yy, xx = np.mgrid[:240, :320]
    img = np.repeat(((xx // 20 + yy // 20) % 2 * 60 + 100).astype(np.uint8)[..., None], 3, -1)
    Kimg = np.array([[300.0, 0, 160.0], [0, 300.0, 120.0], [0, 0, 1]], np.float32)
    npz = d / "forecast.npz"
    np.savez(npz, pose=pose, transl=transl, betas=np.zeros((2, 10), np.float32), hand_valid=valid, K=Kimg,
             image=img, fps=np.float32(10), hand_model=np.array("open"))
    return write_viewer(npz, d / "forecast.html")


def test_page_renders_hands_in_headless_chromium(mesh_page):
    drv = _chromium()
    try:
        drv.set_page_load_timeout(20)
        drv.get(mesh_page.resolve().as_uri())
        t0 = time.time()
        state = None
        while time.time() - t0 < 15:
            state = drv.execute_script("return window.handcastViewer ? {ready: window.handcastViewer.ready, "
                                       "error: window.handcastViewer.error || null} : null")
            if state:
                break
            time.sleep(0.1)
        assert state and state["ready"], f"viewer did not start: {state}"
        drv.execute_script("window.handcastViewer.setFrame(0); window.handcastViewer.setSample(0);")
        px0 = _canvas_pixels(drv)
        blue, pink = _hand_masks(px0)
        n = px0.shape[0] * px0.shape[1]
        assert blue.sum() > 0.002 * n and pink.sum() > 0.002 * n, (blue.sum(), pink.sum())

        # looking through the input camera, the right hand is on the right of the picture
        drv.execute_script("window.handcastViewer.cameraView()")
        drv.execute_script("window.handcastViewer.setFrame(0)")
        pxc = _canvas_pixels(drv)
        blue_c, pink_c = _hand_masks(pxc)
        cols = np.arange(pxc.shape[1])[None, :]
        assert blue_c.sum() > 0 and pink_c.sum() > 0
        assert (cols * blue_c).sum() / blue_c.sum() > pxc.shape[1] / 2 > (cols * pink_c).sum() / pink_c.sum()

        # scrubbing to a frame without the left hand removes the pink pixels
        drv.execute_script("window.handcastViewer.setFrame(5)")
        px5 = _canvas_pixels(drv)
        b5, p5 = _hand_masks(px5)
        assert p5.sum() < 0.05 * pink_c.sum() and b5.sum() > 0.5 * blue_c.sum()

        # switching the sample changes the picture (the left hand has moved at the last frame)
        drv.execute_script("window.handcastViewer.setFrame(7); window.handcastViewer.setSample(0)")
        a = _canvas_pixels(drv)
        drv.execute_script("window.handcastViewer.setSample(1)")
        b = _canvas_pixels(drv)
        pa, pb = _hand_masks(a)[1], _hand_masks(b)[1]
        assert (a != b).any(axis=-1).mean() > 0.002
        xa = (cols * pa).sum() / max(pa.sum(), 1)
        xb = (cols * pb).sum() / max(pb.sum(), 1)
        assert pb.sum() == 0 or xb < xa - 5  # sample 1's left hand is further left (or out of view)
        st = drv.execute_script("return window.handcastViewer.state()")
        assert st["frame"] == 7 and st["sample"] == 1
        logs = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
        assert not logs, logs
    finally:
        drv.quit()
