"""The command line: help, and user mistakes as one-line errors with a non-zero exit and no output left."""

import subprocess
import sys

import numpy as np
import pytest

from handcast.cli import main
from handcast.errors import HandcastError


def _run(capsys, *argv):
    code = main(list(argv))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "handcast.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("synth", "export-gt", "evaluate", "baseline", "render", "mano"):
        assert cmd in out


@pytest.mark.parametrize("argv,needle", [
    (["synth", "--preset", "huge", "--out", "{tmp}/s"], "unknown synth preset 'huge'"),
    (["evaluate", "--pred", "{tmp}/missing.npz", "--gt", "{tmp}/missing.npz"], "not found"),
    (["evaluate", "--pred", "{tmp}/corrupt.npz", "--gt", "{tmp}/corrupt.npz"], "not a readable .npz"),
    (["evaluate", "--pred", "{tmp}/nan_pred.npz", "--gt", "{tmp}/gt.npz"], "NaN"),
    (["evaluate", "--pred", "{tmp}/bad_shape.npz", "--gt", "{tmp}/gt.npz"], "expected (N, S, T, 2, 21, 3)"),
    (["export-gt", "--store", "{tmp}/no_store", "--split", "x", "--out", "{tmp}/o.npz"], "no_store"),
    (["mano", "import", "{tmp}/R.pkl", "{tmp}/L.pkl", "--out", "{tmp}/mano"], "R.pkl"),
    (["prepare", "nodataset", "--root", "{tmp}", "--out", "{tmp}/st"], "unknown dataset 'nodataset'"),
    (["prepare", "arctic", "--root", "{tmp}/absent", "--out", "{tmp}/st"], "root not found"),
    (["prepare", "freihand", "--root", "{tmp}", "--out", "{tmp}/st", "--option", "nokey"], "KEY=VALUE"),
    (["view", "{tmp}/corrupt.npz", "--out", "{tmp}/v.html"], "corrupt.npz"),
    (["train", "forecast", "--store", "{tmp}/no_store", "--out", "{tmp}/run"], "no_store"),
    (["bench", "forecasting", "--store", "{tmp}/no_store", "--ckpt", "F"], "NAME=PATH"),
])
def test_user_mistakes_are_one_line_errors(tmp_path, capsys, argv, needle):
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip file")
    ids = np.array(["a", "b"])
    gt_j = np.zeros((2, 4, 2, 21, 3), np.float32)
    np.savez(tmp_path / "gt.npz", clip_ids=ids, joints=gt_j, valid=np.ones((2, 4, 2), bool))
    nan = np.zeros((2, 1, 4, 2, 21, 3), np.float32)
    nan[0, 0, 1, 0, 3] = np.nan
    np.savez(tmp_path / "nan_pred.npz", clip_ids=ids, joints=nan)
    np.savez(tmp_path / "bad_shape.npz", clip_ids=ids, joints=np.zeros((2, 1, 4, 2, 21), np.float32))
    before = set(p.name for p in tmp_path.iterdir())
    code, out, err = _run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and needle in lines[0], err
    assert "Traceback" not in err
    assert set(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_synth_refuses_to_overwrite(tmp_path, capsys):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "keep.txt").write_text("mine")
    code, _, err = _run(capsys, "synth", "--preset", "smoke", "--out", str(tmp_path / "s"), "--quiet")
    assert code == 2 and "exists" in err
    assert (tmp_path / "s" / "keep.txt").read_text() == "mine"


def test_mano_info_names_the_model_in_use(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HANDCAST_HOME", str(tmp_path))
    code, out, _ = _run(capsys, "mano", "info")
    assert code == 0 and "open" in out.lower()


def _camera_inputs(tmp_path):
    """An image, a tracks file and a K.json: the inputs of handcast pose, forecast and lift."""
    from PIL import Image

    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(tmp_path / "img.png")
    np.savez(tmp_path / "tracks.npz", uv=np.zeros((2, 2, 21, 2), np.float32), hand_valid=np.ones((2, 2), bool),
             image_size=np.array([64, 48]))
    (tmp_path / "K.json").write_text("[[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]]")
    return {"pose": str(tmp_path / "img.png"), "forecast": str(tmp_path / "img.png"),
            "lift": str(tmp_path / "tracks.npz")}


@pytest.mark.parametrize("command,module,function", [
    ("pose", "handcast.infer.pose", "run_pose"),
    ("forecast", "handcast.infer.forecast", "run_forecast"),
    ("lift", "handcast.infer.lift", "run_lift"),
])
def test_camera_flags_reach_the_command(tmp_path, monkeypatch, command, module, function):
    import importlib

    inputs = _camera_inputs(tmp_path)
    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs)
        raise HandcastError("recorded")

    monkeypatch.setattr(importlib.import_module(module), function, record)
    for flags, expected in ((["--fov", "50"], {"fov": 50.0, "intrinsics": None}),
                            (["--intrinsics", "K.json"], {"fov": None, "intrinsics": "K.json"})):
        assert main([command, inputs[command], "--out", str(tmp_path / "out"), *flags]) == 2
        assert {k: seen[-1][k] for k in expected} == expected


@pytest.mark.parametrize("command", ["pose", "forecast", "lift"])
def test_fov_and_intrinsics_together_are_refused(tmp_path, capsys, command):
    inputs = _camera_inputs(tmp_path)
    code, out, err = _run(capsys, command, inputs[command], "--out", str(tmp_path / "out"), "--fov", "50",
                          "--intrinsics", str(tmp_path / "K.json"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "give either --fov or --intrinsics, not both" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_pose_focal_is_still_accepted(tmp_path, monkeypatch):
    import handcast.infer.pose as pose

    inputs = _camera_inputs(tmp_path)
    seen = []
    monkeypatch.setattr(pose, "run_pose", lambda *a, **k: seen.append(k) or tmp_path)
    assert main(["pose", inputs["pose"], "--focal", "420"]) == 0
    assert seen[0]["focal"] == 420.0 and seen[0]["fov"] is None and seen[0]["intrinsics"] is None


@pytest.mark.parametrize("argv", [["forecast", "x.png"], ["lift", "x.npz"], ["pose", "x.png"], ["impute", "--ckpt", "c",
                                  "--data", "d", "--split", "s", "--out", "o"], ["bench", "pose", "--ckpt", "c"]])
def test_unknown_sampler_is_refused_with_the_list(capsys, argv):
    from handcast.diffusion import SAMPLERS

    with pytest.raises(SystemExit) as e:
        main([*argv, "--sampler", "bogus"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err and all(repr(s) in err for s in SAMPLERS), err
