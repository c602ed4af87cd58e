"""Whole-image inference and the ``handcast pose`` function (handcast.models.cascade.estimate, handcast.infer.pose)."""

import json

import numpy as np
import pytest

from handcast.conventions import DEFAULT_FOV_DEG
from handcast.errors import HandcastError
from handcast.geometry import focal_from_fov
from handcast.models.cascade.testing import small_cascade

W, H = 320, 240
K = np.array([[300.0, 0.0, (W - 1) / 2], [0.0, 300.0, (H - 1) / 2], [0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def model(hm):
    return small_cascade(hm, seed=1)


@pytest.fixture(scope="module")
def ckpt(model, tmp_path_factory):
    from handcast.models.cascade.model import save_cascade

    return save_cascade(tmp_path_factory.mktemp("pose") / "pose.safetensors", model)


def _scene(seed=0):
    """A textured image and the keypoints of one hand near the image's left side."""
    rng = np.random.default_rng(seed)
    img = (rng.random((H, W, 3)) * 255).astype(np.uint8)
    P = rng.normal(0, 0.03, (21, 3)) + np.array([-0.08, 0.02, 0.5])
    uvw = P @ K.T
    return img, uvw[:, :2] / uvw[:, 2:]


def test_left_hand_estimate_is_the_mirror_of_the_right_hand_estimate(model):
    """A left hand in an image is processed as the mirrored right hand of the mirrored image: the two
    estimates must be exact mirror images (same seed)."""
    from handcast.models.cascade.estimate import estimate_pose

    img, uv = _scene(0)
    kp_r = np.full((2, 21, 2), np.nan)
    kp_r[0] = uv
    conf_r = np.zeros((2, 21))
    conf_r[0] = 1
    mirrored = img[:, ::-1].copy()
    kp_l = np.full((2, 21, 2), np.nan)
    kp_l[1] = np.stack([W - 1 - uv[:, 0], uv[:, 1]], -1)
    conf_l = conf_r[::-1].copy()
    a = estimate_pose(img, model, (kp_r, conf_r), K=K, num_samples=3, seed=5)
    b = estimate_pose(mirrored, model, (kp_l, conf_l), K=K, num_samples=3, seed=5)
    assert list(a.handedness) == ["right"] and list(b.handedness) == ["left"]
    flip = np.array([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(b.joints, a.joints * flip, atol=2e-4)
    np.testing.assert_allclose(b.vertices, a.vertices * flip, atol=2e-4)
    np.testing.assert_allclose(b.root, a.root * flip, atol=2e-4)
    assert b.faces[0].tolist() == model.hands.faces(1).tolist()


def test_estimate_pose_outputs_and_root(model):
    from handcast.models.cascade.estimate import estimate_pose

    img, uv = _scene(1)
    kp = np.stack([uv, uv + np.array([120.0, 0.0])])
    res = estimate_pose(img, model, (kp, None), K=K, num_samples=4, steps=2, aggregation="reproj")
    V = model.hands.num_vertices
    assert res.num_hands == 2 and list(res.handedness) == ["right", "left"]
    assert res.joints.shape == (2, 21, 3) and res.vertices.shape == (2, V, 3)
    assert res.joint_samples.shape == (2, 4, 21, 3) and res.vertex_samples.shape == (2, 4, V, 3)
    np.testing.assert_allclose(res.joints[:, 0], 0.0, atol=1e-6)
    assert np.isfinite(res.root).all() and np.all(res.root[:, 2] >= 0.05)
    assert not res.focal_assumed
    np.testing.assert_allclose(res.K, K)


def test_bad_inputs(model):
    from handcast.models.cascade.estimate import estimate_pose

    img, uv = _scene(2)
    kp = np.full((2, 21, 2), np.nan)
    with pytest.raises(HandcastError, match="no hand with at least"):
        estimate_pose(img, model, (kp, None), K=K)
    with pytest.raises(HandcastError, match=r"\(2, 21, 2\)"):
        estimate_pose(img, model, (uv, None), K=K)
    with pytest.raises(HandcastError, match="uint8"):
        estimate_pose(img.astype(np.float32), model, (np.stack([uv, uv]), None), K=K)
    with pytest.raises(HandcastError, match="unknown aggregation"):
        estimate_pose(img, model, (np.stack([uv, uv]), None), K=K, aggregation="best")


def _write_inputs(tmp_path, hands=("right",)):
    from PIL import Image

    img, uv = _scene(3)
    Image.fromarray(img).save(tmp_path / "img.png")
    kp = {"hands": [{"handedness": h, "keypoints": (uv + 100 * i).tolist()} for i, h in enumerate(hands)]}
    (tmp_path / "kp.json").write_text(json.dumps(kp))
    return tmp_path / "img.png", tmp_path / "kp.json"


def test_run_pose_writes_every_output(ckpt, tmp_path):
    from handcast.io import load_npz
    from handcast.infer.pose import run_pose

    img, kp = _write_inputs(tmp_path, ("left",))
    out = run_pose(img, tmp_path / "out", keypoints=kp, ckpt=ckpt.parent, num_samples=3)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["keypoints.json", "mesh.ply", "overlay.png", "pose.npz", "spread.png"]
    d = load_npz(out / "pose.npz", required=("joints", "vertices", "handedness", "joint_samples", "root", "K"))
    assert d["joints"].shape == (1, 21, 3) and d["joint_samples"].shape == (1, 3, 21, 3)
    assert d["handedness"].tolist() == ["left"] and bool(d["focal_assumed"])
    np.testing.assert_allclose(d["K"][0, 0], focal_from_fov(DEFAULT_FOV_DEG, W), rtol=1e-6)
    import trimesh

    mesh = trimesh.load(out / "mesh.ply", process=False)
    np.testing.assert_allclose(np.asarray(mesh.vertices), d["vertices"][0] + d["root"][0], atol=1e-5)
    used = json.loads((out / "keypoints.json").read_text())
    assert [h["handedness"] for h in used["hands"]] == ["left"]


def test_run_pose_camera_options(ckpt, tmp_path):
    """--focal (the older option), --fov and --intrinsics each set K; only a K.json counts as a given camera."""
    from handcast.cli import main
    from handcast.io import load_npz

    img, kp = _write_inputs(tmp_path)
    (tmp_path / "K.json").write_text(json.dumps(K.tolist()))
    common = [str(img), "--keypoints", str(kp), "--ckpt", str(ckpt), "--samples", "2"]
    for name, flags, fx, assumed in (("focal", ["--focal", "420"], 420.0, True),
                                     ("fov", ["--fov", "90"], (W / 2), True),
                                     ("k", ["--intrinsics", str(tmp_path / "K.json")], K[0, 0], False)):
        assert main(["pose", *common, "--out", str(tmp_path / name), *flags]) == 0
        d = load_npz(tmp_path / name / "pose.npz")
        np.testing.assert_allclose(d["K"][0, 0], fx, rtol=1e-6)
        np.testing.assert_allclose(d["K"][:2, 2], [(W - 1) / 2, (H - 1) / 2])
        assert bool(d["focal_assumed"]) == assumed


def test_run_pose_bad_inputs_leave_nothing_behind(ckpt, tmp_path):
    from handcast.infer.pose import run_pose

    img, kp = _write_inputs(tmp_path)
    out = tmp_path / "out"
    with pytest.raises(HandcastError, match="image not found"):
        run_pose(tmp_path / "missing.png", out, keypoints=kp, ckpt=ckpt)
    (tmp_path / "empty.json").write_text(json.dumps({"hands": []}))
    with pytest.raises(HandcastError, match="no hand"):
        run_pose(img, out, keypoints=tmp_path / "empty.json", ckpt=ckpt)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(HandcastError, match="not a JSON keypoints file"):
        run_pose(img, out, keypoints=tmp_path / "bad.json", ckpt=ckpt)
    with pytest.raises(HandcastError, match="checkpoint not found"):
        run_pose(img, out, keypoints=kp, ckpt=tmp_path / "nope.safetensors")
    with pytest.raises(HandcastError, match="mesh format"):
        run_pose(img, out, keypoints=kp, ckpt=ckpt, mesh_format="stl")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]
    out.mkdir()
    with pytest.raises(HandcastError, match="already exists"):
        run_pose(img, out, keypoints=kp, ckpt=ckpt)


def test_without_keypoints_the_detector_is_used_and_its_failure_is_explained(model, monkeypatch):
    import handcast.detect as detect
    from handcast.detect import HandDetections
    from handcast.infer.pose import detect_keypoints
    from handcast.models.cascade.estimate import estimate_pose

    img, uv = _scene(4)

    def missing(image, *a, **k):
        raise HandcastError("hand detection needs mediapipe, which is not installed")

    monkeypatch.setattr(detect, "detect_image", missing)
    with pytest.raises(HandcastError, match="--keypoints"):
        detect_keypoints(img)

    def found(image, *a, **k):  # a detector that sees one left hand
        d = HandDetections.empty((W, H))
        d.uv[1], d.present[1], d.score[1], d.confidence[1] = uv, True, 0.9, 0.9
        return d

    monkeypatch.setattr(detect, "detect_image", found)
    res = estimate_pose(img, model, detect_keypoints(img), K=K, num_samples=2)
    assert list(res.handedness) == ["left"]
    np.testing.assert_allclose(res.kp2d_conf, 0.9, rtol=1e-6)


def test_detect_once_asks_the_detector_for_a_single_pass(monkeypatch):
    """pose and forecast average the detector over a photo's variants unless told --detect-once."""
    import handcast.detect as detect
    from handcast.detect import HandDetections
    from handcast.infer.forecast import input_keypoints
    from handcast.infer.pose import detect_keypoints

    asked = []

    def fake(image, **kw):
        asked.append(kw.get("variants", "default"))
        return HandDetections.empty((image.shape[1], image.shape[0]))

    monkeypatch.setattr(detect, "detect_image", fake)
    img = np.zeros((20, 30, 3), np.uint8)
    detect_keypoints(img)
    detect_keypoints(img, once=True)
    input_keypoints(img, None, True)
    input_keypoints(img, None, True, detect_once=True)
    assert asked == ["default", None, "default", None]


def test_run_pose_keypoints_only_ignores_the_image(ckpt, tmp_path):
    """handcast pose --keypoints-only: the same result whatever the image shows; --use-image differs."""
    from handcast.data.keypoints import keypoints_json
    from handcast.infer.pose import run_pose

    img, uv = _scene(3)
    kp = np.full((2, 21, 2), np.nan)
    kp[0] = uv
    conf = np.zeros((2, 21))
    conf[0] = 1
    kf = tmp_path / "kp.json"
    kf.write_text(json.dumps(keypoints_json(kp, conf)))
    other = (np.random.default_rng(9).random(img.shape) * 255).astype(np.uint8)
    runs = {}
    for name, im, only in (("a", img, True), ("b", other, True), ("c", img, False)):
        out = run_pose(im, tmp_path / name, keypoints=kf, ckpt=ckpt, keypoints_only=only, refine=False)
        runs[name] = np.load(out / "pose.npz")["joints"]
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert np.abs(runs["a"] - runs["c"]).max() > 1e-5


def _hand_keypoints(hm, path):
    """A --keypoints file with the projection (test K) of the open hand model's right hand in a grasp-like pose."""
    import torch

    from handcast.geometry import aa_to_rotmat
    from handcast.models.cascade.handutil import finger_pose_pool, right_hand

    fingers = torch.as_tensor(finger_pose_pool(hm, 1, seed=2), dtype=torch.float32)
    R = torch.cat([aa_to_rotmat(torch.tensor([[2.2, 0.3, 0.1]])).unsqueeze(1), aa_to_rotmat(fingers)], 1)
    _, j = right_hand(hm, R)
    P = j[0].double().numpy() + np.array([-0.03, 0.0, 0.45])
    uvw = P @ K.T
    path.write_text(json.dumps({"hands": [{"handedness": "right", "keypoints": (uvw[:, :2] / uvw[:, 2:]).tolist()}]}))
    return path


def test_run_pose_fit_prior_is_passed_to_the_fit_and_recorded(ckpt, hm, tmp_path):
    """``--fit-prior``: pose.npz records the weight, and it reaches the fit: the network's estimate is the same,
    the fitted hand is not (what the weight trades is tested on the fit itself, tests/fit/test_keypoint_fit.py)."""
    from handcast.cli import main
    from handcast.io import load_npz

    img, _ = _write_inputs(tmp_path)
    kp = _hand_keypoints(hm, tmp_path / "hand_kp.json")
    common = [str(img), "--keypoints", str(kp), "--ckpt", str(ckpt), "--samples", "2"]
    assert main(["pose", *common, "--out", str(tmp_path / "default")]) == 0
    assert main(["pose", *common, "--out", str(tmp_path / "free"), "--fit-prior", "0"]) == 0
    assert main(["pose", *common, "--out", str(tmp_path / "raw"), "--no-refine"]) == 0
    d, f = load_npz(tmp_path / "default" / "pose.npz"), load_npz(tmp_path / "free" / "pose.npz")
    assert float(d["fit_prior"]) == 100.0 and float(f["fit_prior"]) == 0.0
    assert "fit_prior" not in load_npz(tmp_path / "raw" / "pose.npz")
    np.testing.assert_allclose(f["joints_network"], d["joints_network"], atol=1e-6)
    assert float(np.abs(f["joints"] - d["joints"]).max()) > 1e-3  # m
    assert float(d["reproj_px"].max()) < 2.0 and float(f["reproj_px"].max()) < 2.0  # both land on the hand


def test_run_pose_takes_the_camera_from_the_photos_exif(ckpt, tmp_path):
    """Without --fov / --intrinsics / --focal, a photo's EXIF 35 mm-equivalent focal length sets K (and pose.npz
    says so); --fov overrides it."""
    from PIL import Image

    from handcast.infer.pose import run_pose
    from handcast.io import load_npz

    img, kp = _write_inputs(tmp_path)
    im = Image.open(img)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 28  # FocalLengthIn35mmFilm
    im.save(tmp_path / "exif.jpg", exif=exif, quality=95)
    d = load_npz(run_pose(tmp_path / "exif.jpg", tmp_path / "a", keypoints=kp, ckpt=ckpt, num_samples=2,
                          refine=False) / "pose.npz")
    np.testing.assert_allclose(d["K"][0, 0], 28 * np.hypot(W, H) / np.hypot(36, 24), rtol=1e-6)
    assert "EXIF" in str(d["camera"]) and bool(d["focal_assumed"])
    d = load_npz(run_pose(tmp_path / "exif.jpg", tmp_path / "b", keypoints=kp, ckpt=ckpt, num_samples=2,
                          refine=False, fov=90.0) / "pose.npz")
    np.testing.assert_allclose(d["K"][0, 0], W / 2, rtol=1e-6)
    assert "--fov" in str(d["camera"])


def test_run_pose_mirrored_is_the_estimate_of_the_unmirrored_photo(ckpt, tmp_path):
    """``--mirrored``: a flipped photo with its flipped keypoints (handedness still the owner's) and a flipped K
    gives the estimate of the photo itself, and the keypoints written are those of the un-mirrored photo."""
    from PIL import Image

    from handcast.infer.pose import run_pose
    from handcast.io import load_npz

    img, kp = _write_inputs(tmp_path)
    K2 = K.copy()
    K2[0, 2] += 7.0  # an off-centre principal point: it must flip too
    (tmp_path / "K.json").write_text(json.dumps(K2.tolist()))
    Kf = K2.copy()
    Kf[0, 2] = (W - 1) - K2[0, 2]
    (tmp_path / "Kf.json").write_text(json.dumps(Kf.tolist()))
    Image.open(img).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "selfie.png")
    hands = json.loads(kp.read_text())
    for h in hands["hands"]:
        h["keypoints"] = [[W - 1 - u, v] for u, v in h["keypoints"]]
    (tmp_path / "selfie.json").write_text(json.dumps(hands))
    common = dict(ckpt=ckpt, num_samples=2, seed=4)
    a = load_npz(run_pose(img, tmp_path / "a", keypoints=kp, intrinsics=tmp_path / "K.json", **common) / "pose.npz")
    out = run_pose(tmp_path / "selfie.png", tmp_path / "b", keypoints=tmp_path / "selfie.json",
                   intrinsics=tmp_path / "Kf.json", mirrored=True, **common)
    b = load_npz(out / "pose.npz")
    assert b["handedness"].tolist() == ["right"] and bool(b["mirrored"]) and not bool(a["mirrored"])
    np.testing.assert_allclose(b["K"], a["K"], atol=1e-5)
    # the cascade sees the same input (exactly, up to float rounding of the flip)...
    np.testing.assert_allclose(b["joints_network"], a["joints_network"], atol=1e-5)
    np.testing.assert_allclose(b["root_network"], a["root_network"], atol=1e-5)
    # ...and the keypoint fit ends as close as its own sensitivity allows (1e-5 px moves the small test network's
    # fitted depth by ~1 cm; without --mirrored the two differ by the whole hand)
    np.testing.assert_allclose(b["reproj_px"], a["reproj_px"], atol=0.1)
    assert float(np.abs(b["root"] - a["root"]).max()) < 0.03
    used = json.loads((out / "keypoints.json").read_text())["hands"][0]["keypoints"]
    np.testing.assert_allclose(used, json.loads(kp.read_text())["hands"][0]["keypoints"], atol=1e-4)
