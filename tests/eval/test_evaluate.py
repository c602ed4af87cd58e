import json

import numpy as np
import pytest

from handcast.errors import HandcastError
from handcast.eval import (
    GroundTruth,
    Predictions,
    evaluate,
    evaluate_files,
    format_table,
    read_ground_truth,
    read_predictions,
    write_ground_truth,
    write_predictions,
)
from handcast.io import save_npz

N, S, T = 4, 3, 8


def data(seed=0, with_params=True):
    rng = np.random.default_rng(seed)
    gt = (rng.normal(size=(N, T, 2, 21, 3)) * 0.05 + np.array([0, 0, 0.5])).astype(np.float32)
    valid = np.ones((N, T, 2), bool)
    valid[0, 6:, 1] = False
    offs = np.array([0.02, 0.01, 0.03], dtype=np.float32)  # sample 1 is best: 1 cm
    pred = gt[:, None] + offs[None, :, None, None, None, None] * np.array([1, 0, 0], np.float32)
    ids = np.array([f"clip{i}" for i in range(N)])
    extra = {}
    if with_params:
        extra = dict(pose6d=rng.normal(size=(N, S, T, 2, 16, 6)).astype(np.float32),
                     wrist=rng.normal(size=(N, S, T, 2, 3)).astype(np.float32))
    gextra = {}
    if with_params:
        gextra = dict(pose6d=rng.normal(size=(N, T, 2, 16, 6)).astype(np.float32),
                      wrist=rng.normal(size=(N, T, 2, 3)).astype(np.float32),
                      group_ids=np.array(["g0", "g0", "g1", "g2"]))
    return ids, pred.astype(np.float32), extra, gt, valid, gextra


def write_both(tmp_path, **kw):
    ids, pred, extra, gt, valid, gextra = data(**kw)
    write_predictions(tmp_path / "pred.npz", ids, pred, **extra)
    write_ground_truth(tmp_path / "gt.npz", ids, gt, valid, **gextra)
    return tmp_path / "pred.npz", tmp_path / "gt.npz"


def test_round_trip_files(tmp_path):
    p, g = write_both(tmp_path)
    pr, gt = read_predictions(p), read_ground_truth(g)
    assert pr.joints.shape == (N, S, T, 2, 21, 3) and pr.joints.dtype == np.float32
    assert pr.pose6d.shape == (N, S, T, 2, 16, 6) and pr.wrist.shape == (N, S, T, 2, 3)
    assert gt.valid.dtype == bool and gt.group_ids.tolist() == ["g0", "g0", "g1", "g2"]
    assert pr.clip_ids.tolist() == [f"clip{i}" for i in range(N)]
    with np.load(p, allow_pickle=False) as z:  # loadable without pickle
        assert z["clip_ids"].dtype.kind == "U"


def test_files_of_an_older_handcast_name_the_wrist_transl(tmp_path, capsys):
    p, g = write_both(tmp_path)
    new, _ = evaluate_files(p, g)
    assert capsys.readouterr().err == ""
    for path in (p, g):  # rewrite each file as an older handcast did: the wrist position under 'transl'
        with np.load(path, allow_pickle=False) as z:
            arrays = {("transl" if k == "wrist" else k): z[k] for k in z.files}
        assert "transl" in arrays
        save_npz(tmp_path / f"old_{path.name}", **arrays)
    old, _ = evaluate_files(tmp_path / "old_pred.npz", tmp_path / "old_gt.npz")
    assert old == new and old["diversity"]["pred"] is not None and old["multimodality"]["gt"] is not None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    for line, name in zip(err, ("old_pred.npz", "old_gt.npz")):
        assert line.startswith("handcast: warning:") and name in line and "older handcast" in line
    write_predictions(tmp_path / "re.npz", **{k: getattr(read_predictions(tmp_path / "old_pred.npz"), k)
                                              for k in ("clip_ids", "joints", "pose6d", "wrist")})
    with np.load(tmp_path / "re.npz", allow_pickle=False) as z:  # writers use only the new name
        assert "wrist" in z.files and "transl" not in z.files
    both = dict(np.load(tmp_path / "old_pred.npz", allow_pickle=False), wrist=np.zeros((N, S, T, 2, 3), np.float32))
    save_npz(tmp_path / "both.npz", **both)
    with pytest.raises(HandcastError, match="both wrist and transl"):
        read_predictions(tmp_path / "both.npz")


def test_evaluate_known_answers_and_json(tmp_path):
    p, g = write_both(tmp_path)
    result, table = evaluate_files(p, g, json_out=tmp_path / "out" / "res.json")
    assert result["best_of_n"]["M"] == pytest.approx(1.0, abs=1e-4)
    assert result["mean_of_n"]["M"] == pytest.approx(2.0, abs=1e-4)
    for k in ("M-G", "M-F", "MR", "RA"):
        assert result["best_of_n"][k] == pytest.approx(0.0, abs=1e-3)
    assert result["num_clips"] == N and result["num_samples"] == S and result["num_frames"] == T
    assert len(result["horizon_M"]) == T and result["horizon_M"][0] == pytest.approx(1.0, abs=1e-4)
    assert result["diversity"]["pred"] > 0 and result["diversity"]["gt"] > 0
    assert result["multimodality"]["pred"] > 0 and result["multimodality"]["gt"] > 0
    saved = json.loads((tmp_path / "out" / "res.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert "best-of-3" in table and "mean-of-3" in table and "M-G" in table and "cm" in table
    assert "1.00" in table.splitlines()[2]


def test_evaluate_reorders_predictions_by_clip_id():
    ids, pred, extra, gt, valid, gextra = data()
    ref = evaluate(Predictions(ids, pred, **extra), GroundTruth(ids, gt, valid, **gextra))
    perm = np.array([2, 0, 3, 1])
    shuffled = Predictions(ids[perm], pred[perm], **{k: v[perm] for k, v in extra.items()})
    assert evaluate(shuffled, GroundTruth(ids, gt, valid, **gextra)) == ref


def test_without_params_diversity_is_none_and_table_still_works():
    ids, pred, _, gt, valid, _ = data(with_params=False)
    r = evaluate(Predictions(ids, pred), GroundTruth(ids, gt, valid))
    assert r["diversity"] == {"pred": None, "gt": None}
    assert "diversity" not in format_table(r)


def test_nan_metrics_become_none():
    ids, pred, _, gt, valid, _ = data(with_params=False)
    valid[:, :, 1] = False  # never both hands -> MR undefined
    r = evaluate(Predictions(ids, pred), GroundTruth(ids, gt, valid))
    assert r["best_of_n"]["MR"] is None
    json.dumps(r, allow_nan=False)
    assert " -" in format_table(r)


def test_longer_prediction_is_truncated_shorter_needs_invalid_tail():
    ids, pred, _, gt, valid, _ = data(with_params=False)
    longer = np.concatenate([pred, pred[:, :, :3]], axis=2)
    r = evaluate(Predictions(ids, longer), GroundTruth(ids, gt, valid))
    assert r["num_frames"] == T and r["best_of_n"]["M"] == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(HandcastError, match="frames"):
        evaluate(Predictions(ids, pred[:, :, :5]), GroundTruth(ids, gt, valid))
    valid[:, 5:] = False
    r = evaluate(Predictions(ids, pred[:, :, :5]), GroundTruth(ids, gt, valid))
    assert r["num_frames"] == 5


def test_clip_id_mismatch_errors():
    ids, pred, _, gt, valid, _ = data(with_params=False)
    with pytest.raises(HandcastError, match="lack 1 ground-truth clip"):
        evaluate(Predictions(ids[:3], pred[:3]), GroundTruth(ids, gt, valid))
    other = ids.copy()
    other[0] = "stranger"
    with pytest.raises(HandcastError, match="lack 1 ground-truth clip"):
        evaluate(Predictions(other, pred), GroundTruth(ids, gt, valid))
    with pytest.raises(HandcastError, match="not in the ground truth: clip3"):
        evaluate(Predictions(ids, pred), GroundTruth(ids[:3], gt[:3], valid[:3]))


def test_validation_messages(tmp_path):
    ids, pred, extra, gt, valid, gextra = data()
    with pytest.raises(HandcastError, match=r"pred.npz: joints has shape \(4,3,8,2,21\) but expected \(N, S, T, 2, 21, 3\)"):
        write_predictions(tmp_path / "pred.npz", ids, pred[..., 0])
    bad = pred.copy()
    bad[1, 0, 2, 0, 5, 1] = np.nan
    with pytest.raises(HandcastError, match="NaN"):
        write_predictions(tmp_path / "pred.npz", ids, bad)
    with pytest.raises(HandcastError, match="clip_ids are not unique"):
        write_predictions(tmp_path / "pred.npz", np.array(["a", "a", "b", "c"]), pred)
    with pytest.raises(HandcastError, match="clip_ids has 3 entries"):
        write_predictions(tmp_path / "pred.npz", ids[:3], pred)
    with pytest.raises(HandcastError, match="pose6d has shape"):
        write_predictions(tmp_path / "pred.npz", ids, pred, pose6d=extra["pose6d"][..., :5])
    with pytest.raises(HandcastError, match="valid has shape"):
        write_ground_truth(tmp_path / "gt.npz", ids, gt, valid[:, :3])
    with pytest.raises(HandcastError, match="valid has dtype"):
        write_ground_truth(tmp_path / "gt.npz", ids, gt, valid.astype(np.float32))
    with pytest.raises(HandcastError, match="dtype"):
        write_predictions(tmp_path / "pred.npz", ids, pred.astype(np.int32))
    assert not (tmp_path / "pred.npz").exists() and not (tmp_path / "gt.npz").exists()
    # NaN in ground truth is fine where invalid, an error where valid
    g = gt.copy()
    g[0, 7, 1] = np.nan
    write_ground_truth(tmp_path / "gt.npz", ids, g, valid)
    assert np.isnan(read_ground_truth(tmp_path / "gt.npz").joints[0, 7, 1]).all()
    g[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(HandcastError, match="NaN"):
        write_ground_truth(tmp_path / "gt2.npz", ids, g, valid)


def test_read_errors(tmp_path):
    with pytest.raises(HandcastError, match="not found"):
        read_predictions(tmp_path / "nope.npz")
    save_npz(tmp_path / "p.npz", clip_ids=np.array(["a"]))
    with pytest.raises(HandcastError, match="missing array"):
        read_predictions(tmp_path / "p.npz")
    save_npz(tmp_path / "q.npz", clip_ids=np.array(["a"]), joints=np.zeros((1, 1, 2, 2, 21, 3), np.float32),
             extra=np.zeros(2))
    with pytest.raises(HandcastError, match="unexpected array"):
        read_predictions(tmp_path / "q.npz")


def test_per_clip_output():
    ids, pred, _, gt, valid, _ = data(with_params=False)
    r = evaluate(Predictions(ids, pred), GroundTruth(ids, gt, valid), per_clip=True)
    assert r["per_clip"]["best_sample"] == [1] * N
    assert r["per_clip"]["clip_ids"] == ids.tolist()
    assert r["per_clip"]["M"] == pytest.approx([1.0] * N, abs=1e-4)
