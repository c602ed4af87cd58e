"""The command line: help, and user mistakes as one-line errors with a non-zero exit and no output left."""

import subprocess
import sys

import numpy as np
import pytest

from handcast.cli import main


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
