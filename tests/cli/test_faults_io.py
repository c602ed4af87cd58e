"""Outputs under faults. Fast: output paths that are folders, files, lack the suffix or lie under a file, and
manifests that point outside their store, are one-line errors that write nothing and touch no user file.
Slow: kill -9 in the middle of a command: nothing finished is lost, nothing half-written looks finished, and the
next run cleans up (or resumes). Each command runs as a real process (``python -m handcast.cli``) and is killed
with SIGKILL as soon as it has started writing."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from handcast.data.store import ClipStore, check_store

SRC = Path(__file__).resolve().parents[2] / "src"
MICRO = ["model.denoiser.width=32", "model.denoiser.layers=1", "model.denoiser.ff_width=64", "data.horizon=16",
         "train.batch_size=4", "train.val_clips=4", "train.val_steps=1", "train.val_every_steps=1"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    return env


def _cli(*argv, check=True, timeout=300):
    r = subprocess.run([sys.executable, "-m", "handcast.cli", *map(str, argv)], env=_env(), capture_output=True,
                       text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr[-2000:]
    return r


def _kill_when(argv, ready, timeout=240.0):
    """Start ``handcast argv``; SIGKILL it as soon as ``ready()`` is true. Returns True if it was killed, False
    if it finished first (its exit status must then be 0)."""
    p = subprocess.Popen([sys.executable, "-m", "handcast.cli", *map(str, argv)], env=_env(),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while p.poll() is None and time.monotonic() - t0 < timeout:
            if ready():
                p.send_signal(signal.SIGKILL)
                p.wait()
                print(f"killed handcast {argv[0]} after {time.monotonic() - t0:.1f} s")
                return True
            time.sleep(0.005)
        if p.poll() is None:
            p.kill()
            pytest.fail(f"handcast {argv[0]} neither started writing nor finished in {timeout} s")
        assert p.returncode == 0, p.stderr.read()[-2000:]
        return False
    finally:
        if p.poll() is None:
            p.kill()
        p.wait()
        p.stderr.close()


def _temps(folder, name):
    return [p for p in Path(folder).glob(f".{name}.*.tmp*")]


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    from handcast.data.store import write_clips
    from handcast.data.testing import random_clip

    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("kill") / "store"
    mk = lambda n, T: [random_clip(rng, T, clip_id=f"c{i}", hand_model="open", image_size=(256, 256))  # noqa: E731
                       for i in range(n)]
    write_clips(p, {"lab_train": mk(8, 20), "lab_val": mk(6, 16)})
    return p


@pytest.mark.slow
def test_kill_synth_leaves_no_store_and_the_next_run_cleans_its_temp(tmp_path):
    out = tmp_path / "bench"
    killed = _kill_when(["synth", "--preset", "smoke", "--out", out, "--workers", "1", "--quiet"],
                        lambda: any(t.is_dir() and any(t.rglob("*.npy")) for t in _temps(tmp_path, "bench")))
    if killed:
        assert not out.exists()  # the store appears only complete
        assert _temps(tmp_path, "bench")  # the killed run's temporary folder ...
    _cli("synth", "--preset", "smoke", "--out", out, "--workers", "1", "--quiet", *([] if killed else ["--overwrite"]))
    assert _temps(tmp_path, "bench") == []  # ... is removed by the next run
    assert check_store(out) == []


@pytest.mark.slow
def test_kill_export_meshes_leaves_no_partial_mesh_folder(tmp_path):
    T = 120
    res = tmp_path / "res.npz"
    rng = np.random.default_rng(0)
    np.savez(res, pose=(rng.normal(size=(T, 2, 16, 3)) * 0.2).astype(np.float32),
             transl=np.tile(np.array([[0.1, 0, 0.5], [-0.1, 0, 0.5]], np.float32), (T, 1, 1)),
             betas=np.zeros((2, 10), np.float32))
    out = tmp_path / "meshes"
    killed = _kill_when(["export-meshes", res, "--out", out],
                        lambda: len(list(tmp_path.rglob("frame_*.obj"))) >= 3)  # wherever they are written
    if killed:
        assert not out.exists()  # never some of the meshes under the final name
    else:
        assert len(list(out.glob("*.obj"))) == T
    _cli("export-meshes", res, "--out", out, "--overwrite")
    assert len(list(out.glob("*.obj"))) == T and _temps(tmp_path, "meshes") == []


@pytest.mark.slow
def test_kill_forecast_never_leaves_npz_and_png_without_the_video(tmp_path):
    img = Path(__file__).resolve().parents[2] / "src" / "handcast" / "assets" / "examples"
    image = next(iter(sorted(img.glob("*.jpg")) + sorted(img.glob("*.png"))), None)
    if image is None:
        pytest.skip("no example image shipped")
    out = tmp_path / "fc"
    argv = ["forecast", image, "--out", out, "--samples", "1", "--steps", "2", "--frames", "32", "--no-detect",
            "--fov", "60"]
    killed = _kill_when(argv, lambda: any(tmp_path.rglob("forecast.npz")))  # the npz is written first
    outputs = {"forecast.npz", "forecast.png", "forecast.mp4"}
    if killed:
        assert not out.exists()
    else:
        assert {p.name for p in out.iterdir()} == outputs
    r = _cli(*argv, "--overwrite", check=False)
    if r.returncode == 0:
        assert {p.name for p in out.iterdir()} == outputs and _temps(tmp_path, "fc") == []


@pytest.mark.slow
def test_kill_impute_keeps_committed_clips_and_resumes(tmp_path, small_store):
    from handcast.models.checkpoint import shipped_checkpoint

    ck = shipped_checkpoint("lift_tiny.safetensors", "handcast train lift")
    out = tmp_path / "imp"
    argv = ["impute", "--ckpt", ck, "--data", small_store, "--split", "lab_val", "--out", out, "--batch-size", "2",
            "--steps", "2", "--iterations", "3", "--quiet"]

    def committed():
        try:
            return "lab_val_imputed" in ClipStore(out).splits
        except Exception:  # noqa: BLE001 - not there yet
            return False

    killed = _kill_when(argv, committed)
    if killed:
        problems = check_store(out)  # what was committed is whole and readable; the killed batch is named
        assert problems and all("leftover of an interrupted write" in p for p in problems), problems
        done = len(ClipStore(out).split("lab_val_imputed"))
        assert 1 <= done <= 6
    _cli(*argv)
    view = ClipStore(out).split("lab_val_imputed")
    assert sorted(view.clip_ids) == [f"c{i}" for i in range(6)]  # every clip once: nothing lost, nothing twice
    assert check_store(out) == []


@pytest.mark.slow
def test_kill_train_lift_keeps_a_loadable_state_and_resumes(tmp_path, small_store):
    from handcast.models.checkpoint import read_training_state

    run = tmp_path / "run"
    argv = ["train", "lift", "--store", small_store, "--out", run, "--max-steps", "40", "--quiet", *MICRO]
    killed = _kill_when(argv, lambda: (run / "last.ckpt").exists())
    if killed:
        assert not (run / "lift.safetensors").exists()  # the final checkpoint only from a finished run
        step = read_training_state(run / "last.ckpt")["global_step"]
        assert 1 <= step <= 40
    _cli(*argv[:2], "--resume", *argv[2:])
    assert read_training_state(run / "last.ckpt")["global_step"] == 40
    assert (run / "lift.safetensors").is_file() and not list(run.glob("*.tmp"))


@pytest.mark.slow
def test_kill_train_forecast_keeps_a_loadable_state_and_resumes(tmp_path, small_store):
    from handcast.models.checkpoint import read_training_state

    run = tmp_path / "run"
    micro = ["model.image=null", "model.keypoints=true", "model.denoiser.width=32", "model.denoiser.layers=1",
             "model.denoiser.ff_width=64", "data.horizon=16", "train.batch_size=4", "train.val_clips=4",
             "train.val_steps=1", "train.val_every_steps=1", "train.num_workers=0"]
    argv = ["train", "forecast", "--store", small_store, "--out", run, "--max-steps", "40", "--quiet", *micro]
    killed = _kill_when(argv, lambda: (run / "last.ckpt").exists())
    if killed:
        assert not (run / "forecast.safetensors").exists()
        assert 1 <= read_training_state(run / "last.ckpt")["global_step"] <= 40
    _cli(*argv[:2], "--resume", *argv[2:])
    assert read_training_state(run / "last.ckpt")["global_step"] == 40
    assert (run / "forecast.safetensors").is_file() and not list(run.glob("*.tmp"))


@pytest.mark.slow
def test_kill_train_pose_keeps_finished_stages_and_resumes(tmp_path):
    """Killed in the joint stage: the autoencoder stage it finished is kept in pose.safetensors; --resume
    skips it and finishes the rest."""
    from handcast.models.cascade.model import load_cascade
    from handcast.synth.crops import build_crops

    crops = build_crops(tmp_path / "crops", "smoke", seed=5, progress=False)
    small = ["model.hand_model=open", "model.backbone.embed_dim=32", "model.backbone.depth=1",
             "model.backbone.num_heads=2", "model.condition.pool=[2,2]", "model.joint.width=32", "model.joint.layers=1",
             "model.joint.heads=2", "model.joint.ff_width=64", "model.ae.pca_components=16", "model.ae.latent_dim=10",
             "model.ae.hidden=64", "train.ae.steps=20", "train.ae.meshes=200", "train.joint.steps=400",
             "train.joint.batch_size=4", "train.save_every_steps=2", "train.threads=1"]
    run = tmp_path / "run"
    argv = ["train", "pose", "--crops", crops, "--out", run, "--stages", "ae", "joint", "--quiet", *small]
    killed = _kill_when(argv, lambda: (run / "last_joint.ckpt").exists())
    if killed:
        assert load_cascade(run / "pose.safetensors", require_complete=False).trained_stages == ("ae",)
    _cli(*argv[:2], "--resume", *argv[2:], "train.joint.steps=6", timeout=600)
    assert set(load_cascade(run / "pose.safetensors", require_complete=False).trained_stages) == {"ae", "joint"}
    assert not list(run.glob("*.tmp"))


# ------------------------------------------------------------------ fast: output paths and crafted manifests
def _run(capsys, *argv):
    from handcast.cli import main

    code = main([str(a) for a in argv])
    cap = capsys.readouterr()
    _run.out = cap.out
    return code, cap.err


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in Path(folder).rglob("*"))


@pytest.mark.parametrize("case", ["no_suffix", "folder", "under_file"])
@pytest.mark.parametrize("cmd", ["export-gt", "baseline"])
def test_npz_outputs_are_exact_or_refused(tmp_path, capsys, small_store, cmd, case):
    (tmp_path / "f").write_text("user")
    (tmp_path / "d").mkdir()
    out = {"no_suffix": tmp_path / "x", "folder": tmp_path / "d", "under_file": tmp_path / "f" / "x.npz"}[case]
    before = _listing(tmp_path)
    argv = ["baseline", "static"] if cmd == "baseline" else [cmd]
    code, err = _run(capsys, *argv, "--store", small_store, "--split", "lab_val", "--out", out)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert _listing(tmp_path) == before and (tmp_path / "f").read_text() == "user"
    code, _ = _run(capsys, *argv, "--store", small_store, "--split", "lab_val", "--out", tmp_path / "ok.npz")
    assert code == 0 and (tmp_path / "ok.npz").stat().st_size > 0


def test_a_file_output_folder_is_never_replaced_even_with_overwrite(tmp_path, capsys):
    image = SRC / "handcast" / "assets" / "examples" / "synthetic_scene.png"
    user = tmp_path / "result"
    user.write_bytes(b"precious")
    for argv in (["pose", image, "--out", user, "--overwrite"], ["forecast", image, "--out", user],
                 ["export-meshes", tmp_path / "missing.npz", "--out", user]):
        code, err = _run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        assert user.read_bytes() == b"precious" and _listing(tmp_path) == ["result"], err


def test_export_gt_refuses_a_manifest_that_points_into_another_store(tmp_path, capsys, small_store):
    import json
    import shutil

    mine = tmp_path / "mine"
    shutil.copytree(small_store, mine)
    m = json.loads((mine / "manifest.json").read_text())
    rel = os.path.relpath(small_store / "lab_val" / "00000", mine / "lab_val")
    m["splits"]["lab_val"]["shards"][0]["name"] = rel
    (mine / "manifest.json").write_text(json.dumps(m))
    for argv in (["export-gt"], ["baseline", "static"]):
        code, err = _run(capsys, *argv, "--store", mine, "--split", "lab_val", "--out", tmp_path / "o.npz")
        assert code == 2 and "refused path" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.npz").exists()
    code, err = _run(capsys, "store", "check", mine)
    assert code == 2 and "refused path" in _run.out and "1 problem(s)" in err


def test_existing_outputs_are_never_replaced_without_overwrite(tmp_path, capsys, small_store):
    gt = tmp_path / "gt.npz"
    gt.write_bytes(b"user's file")
    argv = ["export-gt", "--store", small_store, "--split", "lab_val", "--out", gt]
    code, err = _run(capsys, *argv)
    assert code == 2 and "--overwrite" in err and gt.read_bytes() == b"user's file"
    assert _run(capsys, *argv, "--overwrite")[0] == 0 and gt.read_bytes() != b"user's file"
    folder = tmp_path / "fc"
    folder.mkdir()
    (folder / "forecast.png").write_bytes(b"mine")
    image = SRC / "handcast" / "assets" / "examples" / "synthetic_scene.png"
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "frame_00000.obj").write_text("mine")
    for argv in (["forecast", image, "--out", folder], ["lift", tmp_path / "none.npz", "--out", folder],
                 ["export-meshes", tmp_path / "none.npz", "--out", meshes],
                 ["view", tmp_path / "none.npz", "--out", gt]):
        if argv[0] == "lift":
            (folder / "lift.npz").write_bytes(b"mine")
        code, err = _run(capsys, *argv)
        assert code == 2 and "already exists" in err and err.count("\n") == 1, (argv, err)
    assert (folder / "forecast.png").read_bytes() == b"mine" and (meshes / "frame_00000.obj").read_text() == "mine"


def test_pose_overwrite_replaces_only_its_own_earlier_output_folder(tmp_path, capsys):
    image = SRC / "handcast" / "assets" / "examples" / "synthetic_scene.png"
    home = tmp_path / "Desktop"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    code, err = _run(capsys, "pose", image, "--out", home, "--overwrite")
    assert code == 2 and "holds other files (thesis.tex)" in err and err.count("\n") == 1, err
    assert (home / "thesis.tex").read_text() == "years of work" and _listing(tmp_path) == ["Desktop", "Desktop/thesis.tex"]
