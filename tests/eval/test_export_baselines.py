"""export-gt and the static-pose baseline, end to end through the clip store and evaluate."""

import dataclasses

import numpy as np
import pytest

from handcast.cli import main
from handcast.data.store import write_clips
from handcast.data.testing import random_clip
from handcast.eval.baselines import static_pose
from handcast.eval.evaluate import evaluate, read_ground_truth, read_predictions
from handcast.eval.export import export_ground_truth, ground_truth_arrays


def _still(clip, offset_cm=0.0):
    """The clip with its hands frozen at frame 0, then shifted by offset_cm along x from frame 1 on."""
    j = np.repeat(clip.joints3d[:1], clip.num_frames, axis=0).copy()
    j[1:, ..., 0] += offset_cm / 100.0
    valid = np.ones_like(clip.valid)
    return dataclasses.replace(clip, joints3d=j, valid=valid)


@pytest.fixture()
def store(tmp_path):
    rng = np.random.default_rng(0)
    clips = [_still(random_clip(rng, 12, clip_id="still")), _still(random_clip(rng, 20, clip_id="moved"), 2.0)]
    write_clips(tmp_path / "s", {"test": clips})
    return tmp_path / "s"


def test_export_pads_to_longest_and_marks_padding_invalid(store, tmp_path):
    n = export_ground_truth(store, "test", tmp_path / "gt.npz")
    gt = read_ground_truth(tmp_path / "gt.npz")
    assert n == 2 and gt.joints.shape == (2, 20, 2, 21, 3)
    assert gt.valid[0, :12].all() and not gt.valid[0, 12:].any()
    np.testing.assert_allclose(gt.wrist, gt.joints[:, :, :, 0])
    assert list(gt.clip_ids) == ["still", "moved"]


def test_static_baseline_known_errors(store):
    gt = ground_truth_arrays(store, "test")
    pred = static_pose(gt)
    res = evaluate(read_predictions_like(pred), read_gt_like(gt), per_clip=True)
    # clip 'still' is exactly static (M = 0); 'moved' shifts 2 cm from frame 1 on: M = 2 * 19/20 cm.
    m = np.asarray(res["per_clip"]["M"])
    assert m[0] == pytest.approx(0.0, abs=1e-5)
    assert m[1] == pytest.approx(2.0 * 19 / 20, abs=1e-4)
    assert res["best_of_n"]["M"] == pytest.approx((m[0] + m[1]) / 2, abs=1e-5)


def test_absent_hand_uses_mean_placement_not_the_future():
    rng = np.random.default_rng(1)
    gt = ground_truth_arrays_from([random_clip(rng, 8, p_valid=1.0) for _ in range(3)])
    gt["valid"][2, 0, 1] = False  # left hand of clip 2 absent from the input frame
    pred = static_pose(gt)
    np.testing.assert_allclose(pred["joints"][2, 0, 0, 1], gt["joints"][:2, 0, 1].mean(0), atol=1e-6)
    np.testing.assert_allclose(pred["joints"][0, 0, 5], gt["joints"][0, 0], atol=0)


def test_cli_round_trip(store, tmp_path, capsys):
    assert main(["export-gt", "--store", str(store), "--split", "test", "--out", str(tmp_path / "gt.npz")]) == 0
    assert main(["baseline", "static", "--store", str(store), "--split", "test",
                 "--out", str(tmp_path / "p.npz")]) == 0
    assert main(["evaluate", "--pred", str(tmp_path / "p.npz"), "--gt", str(tmp_path / "gt.npz"),
                 "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "M-G" in out and (tmp_path / "r.json").is_file()
    assert read_predictions(tmp_path / "p.npz").joints.shape == (2, 1, 20, 2, 21, 3)
    # user mistakes: one line on stderr, exit 2, nothing written
    assert main(["export-gt", "--store", str(store), "--split", "nope", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown split 'nope'" in err[0]
    assert not (tmp_path / "x.npz").exists()


def read_predictions_like(pred):
    from handcast.eval.evaluate import Predictions

    return Predictions(pred["clip_ids"], pred["joints"], pred["pose6d"], pred["wrist"])


def read_gt_like(gt):
    from handcast.eval.evaluate import GroundTruth

    return GroundTruth(gt["clip_ids"], gt["joints"], gt["valid"], gt["pose6d"], gt["wrist"], gt["group_ids"])


def ground_truth_arrays_from(clips):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        write_clips(Path(d) / "s", {"x": clips})
        return ground_truth_arrays(Path(d) / "s", "x")
