"""Training F end to end on a tiny random store; the checkpoint; the bench and the forecast command."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from handcast.data.store import write_clips
from handcast.data.testing import random_clip
from handcast.errors import HandcastError

MICRO = [
    "model.denoiser.width=32", "model.denoiser.layers=1", "model.denoiser.ff_width=64",
    "model.image.embed_dim=32", "model.image.depth=1", "model.image.num_heads=2",
    "model.image.img_size=[64,48]", "data.horizon=12", "train.batch_size=4", "train.val_clips=4",
    "train.val_steps=2", "train.val_every_steps=2", "train.num_workers=0",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("fc") / "store"
    mk = lambda n, T, prov="gt", name="c": [  # noqa: E731
        random_clip(rng, T, True, clip_id=f"{name}{i}", hand_model="open", image_size=(64, 64), provenance=prov)
        for i in range(n)]
    write_clips(p, {"lab_train": mk(6, 12), "lab_val": mk(4, 12), "diverse_train": mk(4, 12, "2d-only", "d"),
                    "lab_test": mk(3, 12)})
    return p


@pytest.fixture(scope="module")
def ckpt(store, tmp_path_factory):
    from handcast.train.forecast import train_forecast

    out = tmp_path_factory.mktemp("run") / "f"
    return train_forecast("tiny", MICRO + ["data.train=[{store: null, split: lab_train}, {store: null, split: diverse_train}]"],
                          store=str(store), out=str(out), max_steps=2, progress=False)


@pytest.mark.slow
def test_train_resume_load_and_checkpoint_checks(store, ckpt, tmp_path):
    from handcast.models.checkpoint import read_checkpoint, save_checkpoint
    from handcast.train.forecast import load_forecast, train_forecast

    assert ckpt.is_file() and (ckpt.parent / "last.ckpt").is_file()
    with pytest.raises(HandcastError, match="not empty"):
        train_forecast("tiny", MICRO, store=str(store), out=str(ckpt.parent), max_steps=2, progress=False)
    ck2 = train_forecast("tiny", MICRO, store=str(store), out=str(ckpt.parent), max_steps=3, resume=True, progress=False)
    m = load_forecast(ck2)
    assert m.backbone.config.embed_dim == 32 and m.dcfg.width == 32
    assert not torch.allclose(m.codec.wrist_mean, torch.tensor([0.103, 0.029, 0.478]))  # fitted statistics
    # a checkpoint whose config does not build this model is refused
    cfg, _, _ = read_checkpoint(ck2, "forecast")
    bad = tmp_path / "bad.safetensors"
    save_checkpoint(bad, m, "forecast", {**cfg, "denoiser": {**cfg["denoiser"], "width": 64}})
    with pytest.raises(HandcastError, match="does not match"):
        load_forecast(bad)
    with pytest.raises(HandcastError, match="expected 'forecast'"):
        save_checkpoint(bad, m, "lift", cfg)
        load_forecast(bad)


@pytest.mark.slow
def test_training_needs_3d_labels_and_known_splits(store, tmp_path):
    from handcast.train.forecast import train_forecast

    with pytest.raises(HandcastError, match="3D labels"):
        train_forecast("tiny", MICRO + ["data.train=[{store: null, split: diverse_train}]"], store=str(store),
                       out=str(tmp_path / "a"), max_steps=1, progress=False)
    with pytest.raises(HandcastError, match="nope"):
        train_forecast("tiny", MICRO + ["data.train=[{store: null, split: nope}]"], store=str(store),
                       out=str(tmp_path / "b"), max_steps=1, progress=False)
    with pytest.raises(HandcastError, match="no image encoder"):
        train_forecast("tiny", MICRO + ["model.image=null", "model.keypoints=true"], store=str(store),
                       out=str(tmp_path / "c"), max_steps=1, init_backbone=str(tmp_path / "x.ckpt"), progress=False)


@pytest.mark.slow
def test_bench_forecasting_rows_and_files(store, ckpt, tmp_path):
    from handcast.eval.bench_forecasting import bench_forecasting

    res = bench_forecasting(store, {"F": str(ckpt)}, splits=("lab_test",), samples=2, steps=2, pose_ckpt="shipped",
                            out=tmp_path / "fc", progress=False)
    rows = res["table"]
    assert set(rows) == {"static pose (GT input frame)", "static pose (pose estimator)", "F"}
    est = rows["static pose (pose estimator)"]["lab_test"]
    # the estimator's static row has no MANO parameters (no diversity) and is worse than the GT input pose
    assert est["diversity"]["pred"] is None
    assert est["horizon_M"][0] > rows["static pose (GT input frame)"]["lab_test"]["horizon_M"][0] + 0.1
    f = rows["F"]["lab_test"]
    assert f["best_of_n"]["M"] <= f["mean_of_n"]["M"] + 1e-9  # best-of-N never worse than the mean sample
    # the static baseline is deterministic: best-of-N equals mean-of-N
    s = rows["static pose (GT input frame)"]["lab_test"]
    assert s["best_of_n"]["M"] == pytest.approx(s["mean_of_n"]["M"])
    assert (tmp_path / "fc.md").is_file() and (tmp_path / "fc_horizon.png").stat().st_size > 1000
    assert json.loads((tmp_path / "fc.json").read_text())["samples"] == 2


@pytest.mark.slow
def test_forecast_command(ckpt, tmp_path):
    from handcast.cli import main

    img = tmp_path / "in.png"
    Image.fromarray((np.random.default_rng(0).uniform(0, 255, (120, 160, 3))).astype(np.uint8)).save(img)
    out = tmp_path / "out"
    assert main(["forecast", str(img), "--ckpt", str(ckpt), "--out", str(out), "--samples", "2", "--frames", "8",
                 "--steps", "2", "--no-detect", "--no-video"]) == 0
    from handcast.io import load_npz

    res = load_npz(out / "forecast.npz")
    assert res["joints"].shape == (2, 8, 2, 21, 3) and np.isfinite(res["joints"]).all()
    assert res["pose"].shape == (2, 8, 2, 16, 3) and tuple(res["image_size"]) == (160, 120)
    assert (out / "forecast.png").is_file()
    # keypoints file: the hands it names are the ones marked present
    kp = tmp_path / "kp.json"
    kp.write_text(json.dumps({"hands": [{"handedness": "left", "keypoints": [[50 + i, 60 + i] for i in range(21)]}]}))
    assert main(["forecast", str(img), "--ckpt", str(ckpt), "--out", str(tmp_path / "o2"), "--samples", "1",
                 "--frames", "4", "--steps", "2", "--keypoints", str(kp), "--no-video"]) == 0
    assert load_npz(tmp_path / "o2" / "forecast.npz")["hand_valid"][0].tolist() == [False, True]
    assert "default" in str(res["camera"])
    # a photo whose EXIF records its lens: K from the 35 mm-equivalent focal length
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 24
    Image.open(img).save(tmp_path / "ex.jpg", exif=exif)
    assert main(["forecast", str(tmp_path / "ex.jpg"), "--ckpt", str(ckpt), "--out", str(tmp_path / "o3"), "--samples",
                 "1", "--frames", "4", "--steps", "2", "--no-detect", "--no-video"]) == 0
    r3 = load_npz(tmp_path / "o3" / "forecast.npz")
    np.testing.assert_allclose(r3["K"][0, 0], 24 * 200 / np.hypot(36, 24), rtol=1e-5)
    assert "EXIF" in str(r3["camera"])


def test_forecast_command_bad_input(tmp_path, capsys):
    from handcast.cli import main

    bad = tmp_path / "notimage.png"
    bad.write_text("hello")
    assert main(["forecast", str(bad), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0]
    assert not (tmp_path / "o" / "forecast.npz").exists()
    img = tmp_path / "ok.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(img)
    assert main(["forecast", str(img), "--fov", "300", "--out", str(tmp_path / "o")]) == 2
    assert "--fov" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_forecasting_anchored_and_context_rows(store, ckpt):
    """--context / --oracle-anchor rows: the imposed frames make frame 0 (oracle) exact and the future-only
    rows score fewer frames."""
    from handcast.eval.bench_forecasting import bench_forecasting

    res = bench_forecasting(store, {"F": str(ckpt)}, splits=("lab_test",), samples=2, steps=2, static=False,
                            contexts=(1, 3), oracle_anchor=True, impute_only=True, max_clips=3, progress=False)
    rows = res["table"]
    assert set(rows) == {"F", "F [frames >= 3]", "F, anchored (L + refinement, frame 0)",
                         "F, anchored (L + refinement, frame 0) [frames >= 3]", "F, context 3 (L + refinement)",
                         "F, context 3 (L + refinement) [frames >= 3]", "F, anchored (ground-truth frame 0)",
                         "F, anchored, imputation only"}
    # the imposed frames change the error there (this fixture's clips come from another hand model, so even
    # the ground-truth frame 0 is not exact in keypoint space)
    free = rows["F"]["lab_test"]["horizon_M"]
    for row in ("F, anchored (ground-truth frame 0)", "F, context 3 (L + refinement)"):
        assert abs(rows[row]["lab_test"]["horizon_M"][0] - free[0]) > 1e-3
    late = rows["F [frames >= 3]"]["lab_test"]["horizon_M"]
    assert all(np.isnan(late[:3])) and np.isfinite(late[3])


def _points(item):
    return item["joints3d"].double().reshape(-1, 3)


def test_camera_augment_is_a_rigid_new_view(store):
    """CameraAugment (F's real-photo cameras): one rigid move of the whole clip (every distance kept, the same
    rotation on every global orientation), a new K and image, exact projections, reproducible per epoch;
    2D-only clips and p = 0 untouched."""
    from handcast.geometry import aa_to_rotmat, project, transform_points
    from handcast.models.forecast import forecast_dataset
    from handcast.train.augment import CameraAugment

    ds = forecast_dataset(store, "lab_train", 12, needs_image=False)
    it = ds[0]
    assert CameraAugment(0.0)(it) is it
    aug = CameraAugment(1.0, seed=3, p_truncate=0.0)
    out = aug(it)
    # rigid: all pairwise distances over the clip are kept (one transform for every frame)
    assert torch.allclose(torch.cdist(_points(out), _points(out)), torch.cdist(_points(it), _points(it)), atol=1e-5)
    rel = aa_to_rotmat(out["pose"][:, :, 0].double()) @ aa_to_rotmat(it["pose"][:, :, 0].double()).transpose(-1, -2)
    assert torch.allclose(rel, rel[:1, :1].expand_as(rel), atol=1e-5)
    w, h = out["image_size"].tolist()
    assert 480 * 0.99 <= w <= 1920 * 1.01 and not torch.allclose(out["K"], it["K"])
    cam = transform_points(out["world_to_cam"][:, None, None].double(), out["joints3d"].double())
    uv = project(cam, out["K"].double())
    seen = out["kp2d_conf"] > 0
    assert seen[0].any() and torch.allclose(out["kp2d"].double()[seen], uv[seen], atol=1e-2)
    # reproducible, new draws in a new epoch
    assert torch.equal(aug(it)["K"], out["K"])
    aug.set_epoch(1)
    assert not torch.equal(aug(it)["K"], out["K"])
    # two sources' clip i draw differently (keyed on the clip id, not the index)
    other = dict(it, clip_id="another")
    aug.set_epoch(0)
    assert not torch.equal(aug(other)["K"], out["K"])
    flat = dict(it, provenance="2d-only")
    assert aug(flat) is flat
    assert torch.equal(CameraAugment(1.0, seed=3, p_truncate=0.0, labelled_only=False)(flat)["K"], out["K"])


def test_camera_augment_drops_hands_cut_off_in_frame_0(store):
    """A hand with fewer than 3 keypoints inside the new frame-0 image is absent from the clip (no 3D label);
    a hand it shows keeps its validity."""
    from handcast.models.forecast import forecast_dataset
    from handcast.train.augment import CameraAugment

    ds = forecast_dataset(store, "lab_train", 12, needs_image=False)
    aug = CameraAugment(1.0, seed=5, p_truncate=1.0)
    dropped = kept = 0
    for epoch in range(12):
        aug.set_epoch(epoch)
        for i in range(len(ds)):
            it = ds[i]
            out = aug(it)
            n0 = (out["kp2d_conf"][0] > 0).sum(-1)
            for h in range(2):
                if not it["hand_valid"][0, h]:  # absent from frame 0 before: as it was
                    assert torch.equal(out["hand_valid"][:, h], it["hand_valid"][:, h])
                    continue
                assert bool(out["hand_valid"][:, h].any()) == bool(n0[h] >= 3)
                if n0[h] >= 3:
                    assert torch.equal(out["hand_valid"][:, h], it["hand_valid"][:, h])
                    kept += 1
                else:
                    dropped += 1
    assert dropped > 0 and kept > 0


@pytest.mark.slow
def test_train_forecast_with_real_photo_cameras(store, tmp_path):
    """data.camera.p: the keypoint model trains on re-viewed clips, its wrist statistics spread over the new
    cameras' depths; an image model is refused (its input image cannot be re-viewed); bad values refused."""
    from handcast.data.dataset import wrist_statistics
    from handcast.data.store import ClipStore
    from handcast.models.forecast import load_forecast
    from handcast.train.forecast import train_forecast

    kp = MICRO + ["model.image=null", "model.keypoints=true"]
    ck = train_forecast("tiny", kp + ["data.camera.p=1.0"], store=str(store), out=str(tmp_path / "cam"),
                        max_steps=2, progress=False)
    m = load_forecast(ck)
    _, std = wrist_statistics(ClipStore(store).split("lab_train"))
    assert m.codec.wrist_std[2] > 2 * std[2]  # depths of 0.15-3 m, not the store's head camera's
    ck = train_forecast("tiny", kp + ["data.camera.p=1.0", "data.camera.wrist_stats=store"], store=str(store),
                        out=str(tmp_path / "cam_store"), max_steps=1, progress=False)
    assert torch.allclose(load_forecast(ck).codec.wrist_std, torch.as_tensor(std, dtype=torch.float32), atol=1e-5)
    with pytest.raises(HandcastError, match="wrist_stats"):
        train_forecast("tiny", kp + ["data.camera.p=1.0", "data.camera.wrist_stats=nope"], store=str(store),
                       out=str(tmp_path / "bad_stats"), max_steps=1, progress=False)
    with pytest.raises(HandcastError, match="keypoint-only"):
        train_forecast("tiny", MICRO + ["data.camera.p=0.5"], store=str(store), out=str(tmp_path / "img"),
                       max_steps=1, progress=False)
    with pytest.raises(HandcastError, match="data.camera.p"):
        train_forecast("tiny", kp + ["data.camera.p=1.5"], store=str(store), out=str(tmp_path / "bad"),
                       max_steps=1, progress=False)
    assert not any((tmp_path / n).exists() for n in ("img", "bad", "bad_stats"))


def test_viewed_ground_truth_without_transform_is_the_exported_one(store):
    from handcast.data.store import ClipStore
    from handcast.eval.bench_forecasting import viewed_ground_truth
    from handcast.eval.export import ground_truth_arrays

    a = ground_truth_arrays(ClipStore(store), "lab_test")
    b = viewed_ground_truth(ClipStore(store), "lab_test", None)
    assert set(a) == set(b)
    for k in ("clip_ids", "group_ids", "valid"):
        assert np.array_equal(a[k], b[k]), k
    v = a["valid"]
    assert v.any() and not v.all()  # some hands and padded frames are invalid
    for k in ("joints", "pose6d", "wrist"):  # equal where valid (padding differs: zeros there, repeated here)
        assert a[k].shape == b[k].shape and np.allclose(a[k][v], b[k][v], atol=1e-5), k


def test_viewed_ground_truth_moves_with_the_clip(store):
    """Through new cameras the ground truth moves rigidly with the clip: the static baseline (distances only)
    scores as through the store's cameras on the hands seen in frame 0 (an absent hand's stand-in, a mean
    over clips, is not a distance)."""
    from handcast.data.store import ClipStore
    from handcast.eval.baselines import static_pose
    from handcast.eval.bench_forecasting import _gt, _summary, viewed_ground_truth
    from handcast.eval.evaluate import Predictions, evaluate
    from handcast.train.augment import CameraAugment

    cam = CameraAugment(1.0, seed=9, p_truncate=0.0, hand_px=[40.0, 80.0])  # every hand fully in view
    scores = []
    for g in (viewed_ground_truth(ClipStore(store), "lab_test", None),
              viewed_ground_truth(ClipStore(store), "lab_test", cam)):
        g["valid"] = g["valid"] & g["valid"][:, :1]
        p = static_pose(g)
        scores.append(_summary(evaluate(Predictions(p["clip_ids"], p["joints"], p["pose6d"], p["wrist"]), _gt(g))))
        assert g["valid"].sum() > 10
    for m in ("M", "M-G", "M-F", "MR"):
        assert scores[1]["best_of_n"][m] == pytest.approx(scores[0]["best_of_n"][m], abs=1e-3), m
    assert not np.allclose(viewed_ground_truth(ClipStore(store), "lab_test", cam)["wrist"],
                           viewed_ground_truth(ClipStore(store), "lab_test", None)["wrist"], atol=0.05)


@pytest.mark.slow
def test_bench_forecasting_through_real_photo_cameras(store, ckpt, tmp_path):
    """--cameras real: F sees other inputs and scores differently; the report says which cameras; the pose
    estimator's row (it reads the stored images) is refused."""
    from handcast.eval.bench_forecasting import bench_forecasting
    from handcast.train.augment import CameraAugment

    kw = dict(splits=("lab_test",), samples=2, steps=2, progress=False)
    plain = bench_forecasting(store, {"F": str(ckpt)}, **kw)["table"]
    cam = CameraAugment(1.0, seed=9)
    seen = bench_forecasting(store, {"F": str(ckpt)}, transform=cam, cameras="real cameras", out=tmp_path / "r",
                             **kw)["table"]
    assert abs(seen["F"]["lab_test"]["best_of_n"]["M"] - plain["F"]["lab_test"]["best_of_n"]["M"]) > 1e-2
    assert "Cameras: real cameras" in (tmp_path / "r.md").read_text()
    with pytest.raises(HandcastError, match="other cameras"):
        bench_forecasting(store, {"F": str(ckpt)}, transform=cam, pose_ckpt="shipped", **kw)
