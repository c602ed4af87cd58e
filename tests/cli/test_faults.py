"""Fault injection: damaged inputs over every subcommand, from ONE table (:data:`ROWS`).

Each row is (id, argv, setup, needle): the command line (``{d}`` the shared folder of damaged inputs,
``{o}`` a fresh output path inside the test's own folder, ``{S}`` the small clip store, ``{ck}`` the shipped
checkpoints folder), an optional setup(tmp_path) that adds files to the test's folder first, and a piece
of the expected error message (None: any). Every row must give: a non-zero exit, exactly one line on
stderr (the error), no traceback, nothing at the output path, and the user's files (the shared inputs and
whatever setup made) byte-identical afterwards.

The CLI runs in-process (``handcast.cli.main``, SystemExit caught, stderr captured at the file-descriptor
level so native libraries' log lines count too).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from handcast.cli import main

CK = Path(str(resources.files("handcast") / "assets" / "checkpoints"))


# ---------------------------------------------------------------- damaged inputs (made once)
def _ckpt_variant(src: Path, dst: Path, config=None, tensor_fn=None) -> None:
    """A copy of the handcast checkpoint ``src`` with its stored config changed by ``config(cfg)`` and/or
    its tensors by ``tensor_fn(tensors)``."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    if config is not None:
        cfg = json.loads(meta["handcast_config"])
        config(cfg)
        meta["handcast_config"] = json.dumps(cfg)
    if tensor_fn is not None:
        tensor_fn(tensors)
    save_file(tensors, str(dst), metadata=meta)


def _set(path: str, value):
    def apply(cfg):
        *head, last = path.split(".")
        d = cfg
        for k in head:
            d = d[k]
        d[last] = value

    return apply


def _nan_first(tensors):
    k = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[k][0] = float("nan")


def _damage_store(src: Path, dst: Path, field: str, value: float) -> None:
    """A copy of the clip store ``src`` whose per-frame field ``field`` of lab_train holds ``value`` at one entry."""
    shutil.copytree(src, dst)
    f = next((dst / "lab_train").glob(f"*/frames/{field}.npy"))
    arr = np.load(f, mmap_mode="r+")
    arr.reshape(len(arr), -1)[3, 0] = value
    arr.flush()
    del arr


@pytest.fixture(scope="module")
def damaged(tmp_path_factory):
    from PIL import Image

    from handcast.data import write_clips
    from handcast.data.testing import random_clip

    d = tmp_path_factory.mktemp("faults")
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(d / "img.png")
    (d / "notimage.png").write_text("hello")
    (d / "K.json").write_text("[[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]]")
    (d / "K_object.json").write_text('{"fx": 50, "fy": 50, "cx": 31.5, "cy": 23.5}')
    (d / "K_nan.json").write_text("[[NaN, 0, 31.5], [0, 50, 23.5], [0, 0, 1]]")
    (d / "K_2x2.json").write_text("[[50, 0], [0, 50]]")
    hand = lambda side, v: {"handedness": side, "keypoints": [[v, v]] * 21}
    (d / "kp_huge.json").write_text(json.dumps({"hands": [hand("right", 1e300)]}))
    (d / "kp_nan.json").write_text(json.dumps({"hands": [hand("right", float("nan"))]}))
    (d / "kp_inf.json").write_text(json.dumps({"hands": [hand("left", float("inf"))]}))
    (d / "kp_ok.json").write_text(json.dumps({"hands": [hand("right", 30.0)]}))
    (d / "kp_elsewhere.json").write_text(json.dumps({"hands": [hand("right", 300.0)]}))  # all beyond the 64 x 48 image
    far = hand("left", 30.0)
    far["keypoints"] = [[30.0, 30.0]] * 20 + [[30.0, 200.0]]  # one keypoint 152 px below the image
    (d / "kp_far.json").write_text(json.dumps({"hands": [far]}))
    ok = {"hand_valid": np.ones((2, 2), bool), "image_size": np.array([64, 48])}
    np.savez(d / "tracks.npz", uv=np.full((2, 2, 21, 2), 30.0, np.float32), **ok)
    np.savez(d / "tracks_huge.npz", uv=np.full((2, 2, 21, 2), 1e30, np.float32), **ok)
    np.savez(d / "tracks_elsewhere.npz", uv=np.full((2, 2, 21, 2), 300.0, np.float32), **ok)
    np.savez(d / "tracks_K_nan.npz", uv=np.full((2, 2, 21, 2), 30.0, np.float32),
             K=np.array([[np.nan, 0, 31.5], [0, 50, 23.5], [0, 0, 1]]), **ok)
    (d / "corrupt.npz").write_bytes(b"not a zip file")
    (d / "user.txt").write_text("the user's own file")

    rng = np.random.default_rng(0)
    mk = lambda n, T: [random_clip(rng, T, True, clip_id=f"c{i}", hand_model="open", image_size=(64, 48))
                       for i in range(n)]
    write_clips(d / "store", {"lab_train": mk(6, 20), "lab_val": mk(2, 20), "lab_test": mk(2, 20)})
    _damage_store(d / "store", d / "store_nan", "joints3d", float("nan"))
    _damage_store(d / "store", d / "store_huge", "kp2d", 1e30)

    lift = CK / "lift_tiny.safetensors"
    _ckpt_variant(lift, d / "lift_neg_width.safetensors", _set("denoiser.width", -128))
    _ckpt_variant(lift, d / "lift_huge_width.safetensors", _set("denoiser.width", 1_000_000))
    _ckpt_variant(lift, d / "lift_list_width.safetensors", _set("denoiser.width", [128, 128]))
    _ckpt_variant(lift, d / "lift_heads3.safetensors", _set("denoiser.heads", 3))
    _ckpt_variant(lift, d / "lift_nan.safetensors", tensor_fn=_nan_first)
    fk = CK / "forecast_keypoints_tiny.safetensors"
    _ckpt_variant(fk, d / "forecast_huge_layers.safetensors", _set("denoiser.layers", 100000))
    _ckpt_variant(fk, d / "forecast_nan.safetensors", tensor_fn=_nan_first)
    _ckpt_variant(CK / "pose_tiny.safetensors", d / "pose_nan.safetensors", tensor_fn=_nan_first)
    return d


def _nonempty_run(name: str):
    def setup(tmp: Path) -> None:
        (tmp / name).mkdir()
        (tmp / name / "notes.txt").write_text("an earlier run")

    return setup


# ---------------------------------------------------------------- the table
ROWS = [
    # --- flags: ranges checked by argparse before any work
    ("samples-1e9", ["forecast", "{d}/img.png", "--keypoints", "{d}/kp_ok.json", "--out", "{o}", "--samples", "1000000000"], None, "--samples"),
    ("samples-0", ["pose", "{d}/img.png", "--keypoints", "{d}/kp_ok.json", "--out", "{o}", "--samples", "0"], None, "--samples"),
    ("steps-2000", ["forecast", "{d}/img.png", "--out", "{o}", "--steps", "2000"], None, "--steps"),
    ("steps-0", ["forecast", "{d}/img.png", "--out", "{o}", "--steps", "0"], None, "--steps"),
    ("steps-neg", ["lift", "{d}/tracks.npz", "--out", "{o}", "--steps", "-3"], None, "--steps"),
    ("lift-samples-0", ["lift", "{d}/tracks.npz", "--out", "{o}", "--samples", "0"], None, "--samples"),
    ("lift-samples-1000", ["lift", "{d}/tracks.npz", "--out", "{o}", "--samples", "1000"], None, "--samples"),
    ("steps-float", ["pose", "{d}/img.png", "--out", "{o}", "--steps", "1.5"], None, "--steps"),
    ("seed-1e23", ["forecast", "{d}/img.png", "--out", "{o}", "--seed", "100000000000000000000000"], None, "--seed"),
    ("seed-sci", ["lift", "{d}/tracks.npz", "--out", "{o}", "--seed", "1e23"], None, "--seed"),
    ("frames-huge", ["forecast", "{d}/img.png", "--out", "{o}", "--frames", "1000000"], None, "--frames"),
    ("window-1e6", ["lift", "{d}/tracks.npz", "--out", "{o}", "--window", "1000000"], None, "--window"),
    ("overlap-neg", ["lift", "{d}/tracks.npz", "--out", "{o}", "--overlap", "-1"], None, "--overlap"),
    ("smooth-nan", ["lift", "{d}/tracks.npz", "--out", "{o}", "--smooth", "nan"], None, "--smooth"),
    ("refine-neg", ["lift", "{d}/tracks.npz", "--out", "{o}", "--refine-iterations", "-1"], None, "--refine-iterations"),
    ("lift-max-frames-0", ["lift", "{d}/tracks.npz", "--out", "{o}", "--max-frames", "0"], None, "--max-frames"),
    ("lift-guidance-0", ["lift", "{d}/tracks.npz", "--out", "{o}", "--guidance", "0"], None, "--guidance"),
    ("fov-nan", ["forecast", "{d}/img.png", "--out", "{o}", "--fov", "nan"], None, "--fov"),
    ("focal-neg", ["pose", "{d}/img.png", "--out", "{o}", "--focal", "-5"], None, "--focal"),
    ("fit-prior-neg", ["pose", "{d}/img.png", "--out", "{o}", "--fit-prior", "-1"], None, "--fit-prior"),
    ("fit-prior-nan", ["pose", "{d}/img.png", "--out", "{o}", "--fit-prior", "nan"], None, "--fit-prior"),
    ("horizon-neg", ["baseline", "static", "--store", "{S}", "--split", "lab_test", "--out", "{o}", "--horizon", "-5"], None, "--horizon"),
    ("max-items-0", ["bench", "pose", "--ckpt", "{ck}/pose_tiny.safetensors", "--max-items", "0", "--out", "{o}"], None, "--max-items"),
    ("tau-inf", ["bench", "pose", "--ckpt", "{ck}/pose_tiny.safetensors", "--tau", "inf", "--out", "{o}"], None, "--tau"),
    ("steps-table-0", ["bench", "pose", "--ckpt", "{ck}/pose_tiny.safetensors", "--steps-table", "1", "0", "--out", "{o}"], None, "--steps-table"),
    ("bench-fc-samples", ["bench", "forecasting", "--store", "{S}", "--ckpt", "F={ck}/forecast_image_tiny.safetensors", "--samples", "-1", "--out", "{o}"], None, "--samples"),
    ("bench-fc-camera-seed", ["bench", "forecasting", "--store", "{S}", "--ckpt", "F={ck}/forecast_keypoints_tiny.safetensors", "--cameras", "real", "--camera-seed", "-1", "--out", "{o}"], None, "--camera-seed"),
    ("bench-fc-cameras-pose", ["bench", "forecasting", "--store", "{S}", "--ckpt", "F={ck}/forecast_keypoints_tiny.safetensors", "--cameras", "real", "--pose-ckpt", "shipped", "--out", "{o}"], None, "other cameras"),
    ("max-steps-0", ["train", "lift", "--store", "{S}", "--out", "{o}", "--max-steps", "0"], None, "--max-steps"),
    ("iterations-neg", ["impute", "--ckpt", "{ck}/lift_tiny.safetensors", "--data", "{S}", "--split", "lab_test", "--out", "{o}", "--iterations", "-1"], None, "--iterations"),
    ("tol-nan", ["impute", "--ckpt", "{ck}/lift_tiny.safetensors", "--data", "{S}", "--split", "lab_test", "--out", "{o}", "--tol", "nan"], None, "--tol"),
    ("batch-size-0", ["impute", "--ckpt", "{ck}/lift_tiny.safetensors", "--data", "{S}", "--split", "lab_test", "--out", "{o}", "--batch-size", "0"], None, "--batch-size"),
    ("impute-samples-0", ["impute", "--ckpt", "{ck}/lift_tiny.safetensors", "--data", "{S}", "--split", "lab_test", "--out", "{o}", "--samples", "0"], None, "--samples"),
    ("workers-neg", ["synth", "--preset", "smoke", "--out", "{o}", "--workers", "-1"], None, "--workers"),
    ("seed-neg", ["synth", "--preset", "smoke", "--out", "{o}", "--seed", "-1"], None, "--seed"),
    ("render-max-frames-0", ["render", "--store", "{S}", "--split", "lab_test", "--out", "{o}", "--max-frames", "0"], None, "--max-frames"),
    ("render-sample-neg", ["render", "--store", "{S}", "--split", "lab_test", "--out", "{o}", "--sample", "-2"], None, "--sample"),
    ("view-clip-neg", ["view", "{d}/tracks.npz", "--out", "{o}", "--clip", "-1"], None, "--clip"),
    ("export-sample-neg", ["export-meshes", "{d}/tracks.npz", "--out", "{o}", "--sample", "-1"], None, "--sample"),
    ("prepare-clip-len-0", ["prepare", "freihand", "--root", "{d}", "--out", "{o}", "--clip-len", "0"], None, "clip_len"),
    ("prepare-fps-inf", ["prepare", "freihand", "--root", "{d}", "--out", "{o}", "--option", "fps=inf"], None, "fps"),
    ("detect-max-frames-0", ["detect", "{d}/img.png", "--out", "{o}", "--max-frames", "0"], None, "--max-frames"),
    # --- devices against what exists, Lightning settings
    ("devices-64", ["train", "lift", "--store", "{S}", "--out", "{o}", "--devices", "64"], None, "--devices 64"),
    ("devices-0", ["train", "lift", "--store", "{S}", "--out", "{o}", "--devices", "0"], None, "--devices"),
    ("num-nodes-0", ["train", "forecast", "--store", "{S}", "--out", "{o}", "--num-nodes", "0"], None, "--num-nodes"),
    ("accelerator-tpu", ["train", "lift", "--store", "{S}", "--out", "{o}", "--accelerator", "tpu"], None, "--accelerator"),
    ("accelerator-gpu-absent", ["train", "forecast", "--store", "{S}", "--out", "{o}", "--accelerator", "gpu"], None, "--accelerator gpu"),
    ("devices-64-pose", ["train", "pose", "--out", "{o}", "--devices", "64"], None, "--devices 64"),
    ("strategy-bogus-forecast", ["train", "forecast", "--store", "{S}", "--out", "{o}", "--strategy", "bogus"], None, "--strategy"),
    ("strategy-bogus", ["train", "lift", "--store", "{S}", "--out", "{o}", "--strategy", "bogus"], None, "--strategy"),
    ("device-potato-impute", ["impute", "--ckpt", "{ck}/lift_tiny.safetensors", "--data", "{S}", "--split", "lab_test", "--out", "{o}", "--device", "potato"], None, "--device"),
    ("device-potato-pose", ["pose", "{d}/img.png", "--out", "{o}", "--device", "potato"], None, "--device"),
    ("device-potato-train-pose", ["train", "pose", "--out", "{o}", "--device", "potato"], None, "--device"),
    ("device-cuda-absent", ["bench", "pose", "--ckpt", "{ck}/pose_tiny.safetensors", "--device", "cuda:7", "--out", "{o}"], None, "cuda:7"),
    # --- camera: --fov with --intrinsics refused the same way by every command; bad intrinsics files
    ("fov-and-K-forecast", ["forecast", "{d}/img.png", "--out", "{o}", "--fov", "50", "--intrinsics", "{d}/K.json"], None, "not both"),
    ("fov-and-K-pose", ["pose", "{d}/img.png", "--out", "{o}", "--fov", "50", "--intrinsics", "{d}/K.json"], None, "not both"),
    ("fov-and-K-lift", ["lift", "{d}/tracks.npz", "--out", "{o}", "--fov", "50", "--intrinsics", "{d}/K.json"], None, "not both"),
    ("K-object", ["forecast", "{d}/img.png", "--keypoints", "{d}/kp_ok.json", "--out", "{o}", "--intrinsics", "{d}/K_object.json"], None, "3x3"),
    ("K-nan", ["pose", "{d}/img.png", "--keypoints", "{d}/kp_ok.json", "--out", "{o}", "--intrinsics", "{d}/K_nan.json"], None, "NaN"),
    ("K-2x2", ["lift", "{d}/tracks.npz", "--out", "{o}", "--intrinsics", "{d}/K_2x2.json"], None, "3x3"),
    ("fov-300", ["forecast", "{d}/img.png", "--out", "{o}", "--fov", "300"], None, "--fov"),
    # --- non-finite and absurd inputs, named
    ("kp-1e300", ["forecast", "{d}/img.png", "--keypoints", "{d}/kp_huge.json", "--out", "{o}", "--no-video"], None, "keypoint 0"),
    ("kp-nan", ["forecast", "{d}/img.png", "--keypoints", "{d}/kp_nan.json", "--out", "{o}", "--no-video"], None, "not finite"),
    ("kp-inf-pose", ["pose", "{d}/img.png", "--keypoints", "{d}/kp_inf.json", "--out", "{o}"], None, "not finite"),
    ("kp-1e300-pose", ["pose", "{d}/img.png", "--keypoints", "{d}/kp_huge.json", "--out", "{o}"], None, "keypoint 0"),
    ("kp-elsewhere-pose", ["pose", "{d}/img.png", "--keypoints", "{d}/kp_elsewhere.json", "--out", "{o}"], None, "no keypoint of the right hand lies in the 64 x 48 image"),
    ("kp-elsewhere", ["forecast", "{d}/img.png", "--keypoints", "{d}/kp_elsewhere.json", "--out", "{o}", "--no-video"], None, "no keypoint of the right hand"),
    ("kp-far-pose", ["pose", "{d}/img.png", "--keypoints", "{d}/kp_far.json", "--out", "{o}"], None, "left hand keypoint 20"),
    ("tracks-elsewhere", ["lift", "{d}/tracks_elsewhere.npz", "--out", "{o}"], None, "no keypoint of the tracks lies in the 64 x 48 image"),
    ("tracks-1e30", ["lift", "{d}/tracks_huge.npz", "--out", "{o}", "--no-video"], None, "uv of frame 0"),
    ("tracks-K-nan", ["lift", "{d}/tracks_K_nan.npz", "--out", "{o}", "--no-video"], None, "NaN"),
    ("store-nan-train-lift", ["train", "lift", "--store", "{d}/store_nan", "--out", "{o}", "train.num_workers=0"], None, "'joints3d'"),
    ("store-huge-train-forecast", ["train", "forecast", "--store", "{d}/store_huge", "--out", "{o}", "train.num_workers=0"], None, "'kp2d'"),
    ("ckpt-nan-lift", ["lift", "{d}/tracks.npz", "--ckpt", "{d}/lift_nan.safetensors", "--out", "{o}", "--no-video"], None, "NaN"),
    ("ckpt-nan-forecast", ["forecast", "{d}/img.png", "--keypoints", "{d}/kp_ok.json", "--ckpt", "{d}/forecast_nan.safetensors", "--out", "{o}", "--no-video"], None, "NaN"),
    ("ckpt-nan-pose", ["pose", "{d}/img.png", "--keypoints", "{d}/kp_ok.json", "--ckpt", "{d}/pose_nan.safetensors", "--out", "{o}"], None, "NaN"),
    ("ckpt-nan-impute", ["impute", "--ckpt", "{d}/lift_nan.safetensors", "--data", "{S}", "--split", "lab_test", "--out", "{o}"], None, "NaN"),
    ("ckpt-nan-bench-forecasting", ["bench", "forecasting", "--store", "{S}", "--splits", "lab_test", "--ckpt", "F={d}/forecast_nan.safetensors", "--out", "{o}"], None, "NaN"),
    ("ckpt-nan-bench-pose", ["bench", "pose", "--ckpt", "{d}/pose_nan.safetensors", "--out", "{o}"], None, "NaN"),
    # --- checkpoints whose stored config is out of range
    ("ckpt-width-neg", ["lift", "{d}/tracks.npz", "--ckpt", "{d}/lift_neg_width.safetensors", "--out", "{o}", "--no-video"], None, "width"),
    ("ckpt-width-1e6", ["lift", "{d}/tracks.npz", "--ckpt", "{d}/lift_huge_width.safetensors", "--out", "{o}", "--no-video"], None, "width"),
    ("ckpt-width-list", ["lift", "{d}/tracks.npz", "--ckpt", "{d}/lift_list_width.safetensors", "--out", "{o}", "--no-video"], None, "width"),
    ("ckpt-heads3", ["lift", "{d}/tracks.npz", "--ckpt", "{d}/lift_heads3.safetensors", "--out", "{o}", "--no-video"], None, "heads"),
    ("ckpt-layers-1e5", ["forecast", "{d}/img.png", "--keypoints", "{d}/kp_ok.json", "--ckpt", "{d}/forecast_huge_layers.safetensors", "--out", "{o}"], None, "layers"),
    ("ckpt-width-bench", ["bench", "lifting", "--store", "{S}", "--splits", "lab_test", "--ckpt", "L={d}/lift_huge_width.safetensors", "--out", "{o}"], None, "width"),
    # --- training configs: types and ranges before work starts
    ("cfg-lr-abc", ["train", "lift", "--store", "{S}", "--out", "{o}", "train.lr=abc"], None, "train.lr"),
    ("cfg-lr-neg", ["train", "lift", "--store", "{S}", "--out", "{o}", "train.lr=-1"], None, "train.lr"),
    ("cfg-batch-0", ["train", "forecast", "--store", "{S}", "--out", "{o}", "train.batch_size=0"], None, "train.batch_size"),
    ("cfg-heads-3", ["train", "lift", "--store", "{S}", "--out", "{o}", "model.denoiser.heads=3"], None, "heads"),
    ("cfg-val-every-0", ["train", "lift", "--store", "{S}", "--out", "{o}", "train.val_every_steps=0"], None, "val_every_steps"),
    ("cfg-width-list", ["train", "forecast", "--store", "{S}", "--out", "{o}", "model.denoiser.width=[1,2]"], None, "width"),
    ("cfg-horizon-neg", ["train", "lift", "--store", "{S}", "--out", "{o}", "data.horizon=-64"], None, "data.horizon"),
    ("cfg-pose-heads", ["train", "pose", "--out", "{o}", "model.joint.heads=3"], None, "heads"),
    ("cfg-pose-steps", ["train", "pose", "--out", "{o}", "train.hyps.steps=[0]"], None, "train.hyps.steps"),
    ("cfg-pose-lr", ["train", "pose", "--out", "{o}", "train.ae.lr=0"], None, "train.ae.lr"),
    ("cfg-unknown-key", ["train", "lift", "--store", "{S}", "--out", "{o}", "train.lrr=1"], None, "lrr"),
    ("cfg-split-overrides", ["train", "lift", "train.lr=1e-4", "--store", "{S}", "--out", "{o}", "train.batch_size=0"], None, "train.batch_size"),
    # --- path options are paths, never YAML
    ("path-hash", ["train", "lift", "--store", "{S}", "--out", "{tmp}/run #1"], _nonempty_run("run #1"), "run #1 is not empty"),
    ("path-interpolation", ["train", "lift", "--store", "${{oc.env:HOME}}", "--out", "{o}"], None, "${oc.env:HOME}"),
    ("path-colon", ["train", "forecast", "--store", "{S}", "--out", "{o}", "--init-backbone", "{tmp}/a: b"], None, "a: b"),
    ("init-backbone-corrupt", ["train", "forecast", "--store", "{S}", "--out", "{o}", "--init-backbone", "{d}/corrupt.npz"], None, "corrupt.npz"),
    ("lift-init-absent", ["train", "lift", "--store", "{S}", "--out", "{o}", "--init", "{d}/absent.safetensors"], None, "absent.safetensors"),
    ("lift-init-wrong-kind", ["train", "lift", "--store", "{S}", "--out", "{o}", "--init", "{ck}/pose_tiny.safetensors"], None, "pose_tiny"),
    ("path-crops", ["train", "pose", "--out", "{tmp}/run #2", "--crops", "{S} #x"], _nonempty_run("run #2"), "run #2 is not empty"),
    # --- refusals that already held (regression guards)
    ("image-missing", ["forecast", "{d}/absent.png", "--out", "{o}"], None, "absent.png"),
    ("image-not-image", ["pose", "{d}/notimage.png", "--out", "{o}"], None, "notimage.png"),
    ("tracks-missing", ["lift", "{d}/absent.npz", "--out", "{o}"], None, "absent.npz"),
    ("tracks-corrupt", ["lift", "{d}/corrupt.npz", "--out", "{o}"], None, "corrupt.npz"),
    ("view-corrupt", ["view", "{d}/corrupt.npz", "--out", "{o}"], None, "corrupt.npz"),
    ("export-corrupt", ["export-meshes", "{d}/corrupt.npz", "--out", "{o}"], None, "corrupt.npz"),
    ("evaluate-missing", ["evaluate", "--pred", "{d}/absent.npz", "--gt", "{d}/absent.npz", "--json", "{o}/r.json"], None, "absent.npz"),
    ("export-gt-no-store", ["export-gt", "--store", "{d}/absent", "--split", "x", "--out", "{o}.npz"], None, "absent"),
    ("export-gt-no-split", ["export-gt", "--store", "{S}", "--split", "nosplit", "--out", "{o}.npz"], None, "nosplit"),
    ("baseline-no-store", ["baseline", "static", "--store", "{d}/absent", "--split", "x", "--out", "{o}.npz"], None, "absent"),
    ("render-no-store", ["render", "--store", "{d}/absent", "--split", "x", "--out", "{o}"], None, "absent"),
    ("detect-missing", ["detect", "{d}/absent.mp4", "--out", "{o}.npz"], None, "absent.mp4"),
    ("store-check-missing", ["store", "check", "{d}/absent"], None, "absent"),
    ("synth-unknown-preset", ["synth", "--preset", "huge", "--out", "{o}"], None, "huge"),
    ("synth-groups-split", ["synth", "--preset", "smoke", "--groups", "lab_trian=3", "--out", "{o}"], None, "lab_trian"),
    ("synth-groups-count", ["synth", "--preset", "smoke", "--groups", "lab_train=many", "--out", "{o}"], None, "integer"),
    ("synth-groups-form", ["synth", "--preset", "smoke", "--groups", "lab_train", "--out", "{o}"], None, "SPLIT=N"),
    ("prepare-unknown", ["prepare", "nodataset", "--root", "{d}", "--out", "{o}"], None, "nodataset"),
    ("mano-import-missing", ["mano", "import", "{d}/R.pkl", "{d}/L.pkl", "--out", "{o}"], None, "R.pkl"),
    ("impute-ckpt-missing", ["impute", "--ckpt", "{d}/absent.safetensors", "--data", "{S}", "--split", "lab_test", "--out", "{o}"], None, "absent"),
    ("bench-lifting-no-store", ["bench", "lifting", "--store", "{d}/absent", "--ckpt", "L={ck}/lift_tiny.safetensors", "--out", "{o}"], None, "absent"),
    ("bench-pose-ckpt-missing", ["bench", "pose", "--ckpt", "{d}/absent.safetensors", "--out", "{o}"], None, "absent"),
    ("ckpt-wrong-kind", ["lift", "{d}/tracks.npz", "--ckpt", "{ck}/pose_tiny.safetensors", "--out", "{o}"], None, "expected 'lift'"),
    ("unknown-flag", ["forecast", "{d}/img.png", "--out", "{o}", "--bogus"], None, "--bogus"),
]

# rows slower than a few seconds (none at present: every row is refused before the work starts)
SLOW: set[str] = set()
# rows that assume a machine without CUDA
NO_CUDA = {"accelerator-gpu-absent"}


def _marks(row_id: str) -> list:
    import torch

    marks = [pytest.mark.slow] if row_id in SLOW else []
    if row_id in NO_CUDA:
        marks.append(pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device"))
    return marks


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("argv,setup,needle", [
    pytest.param(a, s, n, id=i, marks=_marks(i)) for i, a, s, n in ROWS])
def test_damaged_input_is_refused_cleanly(damaged, tmp_path, capfd, monkeypatch, argv, setup, needle):
    monkeypatch.setenv("HANDCAST_HOME", str(tmp_path / "home"))  # no user-installed models or MANO files
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    if setup is not None:
        setup(work)
    out = work / "out"
    args = [a.format(d=damaged, o=out, S=damaged / "store", ck=CK, tmp=work) for a in argv]
    shared_before, work_before = _digest(damaged), _digest(work)
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    err = capfd.readouterr().err
    assert code not in (0, None), err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "error" in lines[0], err
    if needle is not None:
        assert needle in lines[0], err
    assert not out.exists(), f"{out} was written"
    assert _digest(damaged) == shared_before, "the shared inputs changed"
    assert _digest(work) == work_before, "the user's files changed"
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "work")
    assert leftovers == [], f"left behind in the working folder: {leftovers}"


def test_the_table_reaches_every_subcommand():
    """Every subcommand that ``handcast --help`` lists has at least one row."""
    from handcast.cli import build_parser

    def leaves(parser, prefix=()):
        import argparse

        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            yield prefix
            return
        for name, p in subs[0].choices.items():
            yield from leaves(p, (*prefix, name))

    covered = {tuple(a[:2]) for _, a, _, _ in ROWS} | {tuple(a[:1]) for _, a, _, _ in ROWS}
    missing = [" ".join(c) for c in leaves(build_parser()) if c not in covered and c[:1] not in covered
               and c != ("mano", "info")]  # mano info takes no input
    assert missing == [], missing


def test_keypoints_file_without_hands_is_named(damaged, tmp_path, capfd):
    """'no --keypoints' is not said when --keypoints was given but holds no hand."""
    (tmp_path / "kp_none.json").write_text('{"hands": []}')
    code = main(["forecast", str(damaged / "img.png"), "--keypoints", str(tmp_path / "kp_none.json"),
                 "--out", str(tmp_path / "o"), "--no-video", "--samples", "1", "--steps", "1", "--frames", "4"])
    out = capfd.readouterr().out
    assert code == 0
    assert "the --keypoints file has no hand" in out and "no --keypoints" not in out, out


def test_path_options_are_taken_literally():
    """'#', ': ' and ${...} in training path options stay as they are (no YAML, no interpolation)."""
    from handcast.train.config import load_config, to_container

    odd = "runs/run #1: ${oc.env:HOME}"
    for kind, key in (("lift", "train.out"), ("forecast", "train.init_backbone"), ("pose", "data.crops")):
        cfg = to_container(load_config(kind, "tiny", ["train.seed=3"], paths={key: odd}))
        section, name = key.split(".")
        assert cfg[section][name] == odd and cfg["train"]["seed"] == 3
