"""Imputation job (handcast.fit.impute.impute_split): round trip, resumability, 2d-only safety."""

import numpy as np
import pytest
import torch

from handcast.data import ClipStore, ClipStoreWriter, SplitView
from handcast.errors import HandcastError
from handcast.fit import RefineConfig
from handcast.fit.impute import impute_split
from handcast.fit.optimize import FitConfig, fit_tracks_initialiser
from handcast.fit.testing import synthetic_clips

SIZE = (96, 72)
CFG = RefineConfig(iterations=150)


pytestmark = pytest.mark.usefixtures("one_thread")  # fixtures one_thread and hm: tests/conftest.py


@pytest.fixture(scope="module")
def clips(hm):
    gt = synthetic_clips(hm, [6, 9], seed=1, provenance="gt", image_size=SIZE, with_image=True, prefix="lab")
    wild = synthetic_clips(hm, [5, 8, 7, 6, 5], seed=2, provenance="2d-only", image_size=SIZE, with_image=True,
                           prefix="wild", p_invalid=0.1)
    wild[3].valid[:] = False  # no valid hand at all -> skipped
    wild[3].kp2d_conf[:] = 0.0
    return {"lab": gt, "wild": wild}


def _write_store(path, clips, poison=False):
    with ClipStoreWriter(path) as w:
        for split, cs in clips.items():
            for c in cs:
                if poison and c.provenance == "2d-only":
                    c = _poisoned(c)
                w.add(split, c)
    return ClipStore(path)


def _poisoned(c):
    import dataclasses

    return dataclasses.replace(c, pose=np.full_like(c.pose, 1e6), transl=np.full_like(c.transl, -1e6),
                               joints3d=np.full_like(c.joints3d, 1e6))


def _truth(clips):
    return {c.clip_id: c for cs in clips.values() for c in cs}


def oracle(truth, seed=0, calls=None, fail_on=None):
    """Ground truth (from the generator, not the store) + noise; optional failure on call k."""
    rng = np.random.default_rng(seed)

    def init(batch):
        if calls is not None:
            calls.append(list(batch["clip_ids"]))
            if fail_on is not None and len(calls) == fail_on:
                raise RuntimeError("simulated crash")
        B, T = batch["kp2d"].shape[:2]
        pose = np.zeros((B, T, 2, 16, 3), np.float32)
        transl = np.zeros((B, T, 2, 3), np.float32)
        for b, cid in enumerate(batch["clip_ids"]):
            c = truth[cid]
            n = c.num_frames
            pose[b, :n] = c.pose + rng.normal(0, 0.05, c.pose.shape)
            transl[b, :n] = c.transl + rng.normal(0, 0.01, c.transl.shape)
            pose[b, n:] = pose[b, n - 1]
            transl[b, n:] = transl[b, n - 1]
        return torch.from_numpy(pose), transl  # torch or numpy are both accepted

    return init


def test_round_trip(tmp_path, hm, clips):
    src = _write_store(tmp_path / "src", clips)
    truth = _truth(clips)
    out = tmp_path / "out"
    s = impute_split(src.path, "wild", out, "wild_imputed", oracle(truth), hm, batch_size=3, refine_config=CFG,
                     progress=False)
    assert s["total"] == 5 and s["written"] == 4 and s["already_done"] == 0
    assert [x["clip_id"] for x in s["skipped"]] == ["wild-003"] and "no valid hand" in s["skipped"][0]["reason"]
    assert s["mean_reproj_error_px"] < 1.0
    view = ClipStore(out).split("wild_imputed")
    assert view.clip_ids == ["wild-000", "wild-001", "wild-002", "wild-004"]
    srcv = src.split("wild")
    for i, cid in enumerate(view.clip_ids):
        c, ref = view.load(i), srcv.get(cid)
        t = truth[cid]
        assert c.provenance == "imputed" and c.hand_model == hm.kind and c.num_frames == t.num_frames
        for name in ("kp2d", "kp2d_conf", "K", "world_to_cam", "valid", "betas"):
            assert np.array_equal(getattr(c, name), getattr(ref, name)), name
        assert view.image_bytes(i) == srcv.image_bytes(srcv.index_of(cid))  # copied, not re-encoded
        assert c.meta["source"] == "synthetic_clips"
        imp = c.meta["imputation"]
        assert imp["source_split"] == "wild" and imp["source_clip_id"] == cid and imp["source_provenance"] == "2d-only"
        assert imp["reproj_error_px"] < 1.5 and imp["used_3d_labels"] is False
        # joints3d are the hand model's keypoints of the imputed pose, and close to the truth
        kp = hm.keypoints(torch.from_numpy(c.pose), torch.from_numpy(c.betas).expand(c.num_frames, 2, 10),
                          torch.from_numpy(c.transl))
        assert np.abs(kp.numpy() - c.joints3d).max() < 1e-5
        err = np.linalg.norm(c.joints3d - t.joints3d, axis=-1)[c.valid]
        assert err.mean() < 0.03


def test_resumes_after_interruption(tmp_path, hm, clips):
    src = _write_store(tmp_path / "src", clips)
    truth = _truth(clips)
    out = tmp_path / "out"
    calls: list = []
    with pytest.raises(RuntimeError, match="simulated crash"):
        impute_split(src.path, "wild", out, "imp", oracle(truth, calls=calls, fail_on=2), hm, batch_size=2,
                     refine_config=CFG, progress=False)
    assert calls == [["wild-000", "wild-001"], ["wild-002"]]  # (wild-003 has no valid hand: skipped)
    first = ClipStore(out).split("imp")
    assert first.clip_ids == ["wild-000", "wild-001"]
    kept = {cid: first.get(cid) for cid in first.clip_ids}
    calls2: list = []
    s = impute_split(src.path, "wild", out, "imp", oracle(truth, calls=calls2), hm, batch_size=2, refine_config=CFG,
                     progress=False)
    assert calls2 == [["wild-002"], ["wild-004"]]  # finished clips are not redone
    assert s["already_done"] == 2 and s["written"] == 2
    view = ClipStore(out).split("imp")
    assert sorted(view.clip_ids) == ["wild-000", "wild-001", "wild-002", "wild-004"]
    for cid, c in kept.items():  # not lost, not changed
        assert np.array_equal(view.get(cid).pose, c.pose)
    s3 = impute_split(src.path, "wild", out, "imp", oracle(truth), hm, batch_size=2, refine_config=CFG, progress=False)
    assert s3["written"] == 0 and s3["already_done"] == 4


def test_2d_only_3d_is_never_read(tmp_path, hm, clips, monkeypatch):
    clean = _write_store(tmp_path / "clean", clips)
    poisoned = _write_store(tmp_path / "poisoned", clips, poison=True)
    reads: list = []
    orig = SplitView.read

    def spy(self, i, fields=None, start=0, stop=None):
        reads.append((self.strings(i)["provenance"], tuple(fields) if fields is not None else None))
        return orig(self, i, fields, start, stop)

    monkeypatch.setattr(SplitView, "read", spy)
    init = fit_tracks_initialiser(hm, FitConfig(stage1_iterations=20, stage2_iterations=20, n_orientations=32))
    res = {}
    for name, store in (("clean", clean), ("poisoned", poisoned)):
        impute_split(store.path, "wild", tmp_path / f"out_{name}", "imp", init, hm, batch_size=4,
                     refine_config=RefineConfig(iterations=30), use_3d_labels=True, progress=False)
        res[name] = ClipStore(tmp_path / f"out_{name}").split("imp")
    for prov, fields in reads:
        assert fields is not None
        if prov == "2d-only":
            assert not set(fields) & {"pose", "transl", "joints3d"}, fields
    a, b = res["clean"], res["poisoned"]
    assert a.clip_ids == b.clip_ids and len(a.clip_ids) == 4
    for i in range(len(a.clip_ids)):
        ca, cb = a.load(i), b.load(i)
        for name in ("pose", "transl", "joints3d"):
            assert np.array_equal(getattr(ca, name), getattr(cb, name)), name
        assert np.abs(cb.joints3d).max() < 10.0
        assert cb.meta["imputation"]["used_3d_labels"] is False


def test_3d_labels_of_gt_clips_on_request(tmp_path, hm, clips):
    src = _write_store(tmp_path / "src", clips)
    truth = _truth(clips)
    for use in (False, True):
        out = tmp_path / f"out{int(use)}"
        impute_split(src.path, "lab", out, "lab_imp", oracle(truth, seed=3), hm, refine_config=CFG,
                     use_3d_labels=use, progress=False)
        view = ClipStore(out).split("lab_imp")
        for i in range(len(view)):
            c = view.load(i)
            assert c.meta["imputation"]["used_3d_labels"] is use
            assert c.meta["imputation"]["source_provenance"] == "gt"


def test_bad_inputs(tmp_path, hm, clips):
    src = _write_store(tmp_path / "src", clips)
    truth = _truth(clips)
    # NaN keypoints with a positive confidence (a store written by other means) are masked
    kp = src.path / "wild" / "00000" / "frames" / "kp2d.npy"
    arr = np.load(kp, mmap_mode="r+")
    arr[0, 0, 0] = np.nan  # clip wild-000, frame 0, right hand, wrist
    arr.flush()
    del arr
    s = impute_split(src.path, "wild", tmp_path / "out", "imp", oracle(truth), hm, refine_config=CFG, progress=False)
    assert s["written"] == 4
    c = ClipStore(tmp_path / "out").split("imp").get("wild-000")
    assert c.kp2d_conf[0, 0, 0] == 0.0 and np.isfinite(c.joints3d).all()
    # degenerate intrinsics: HandcastError before any work
    Kf = src.path / "lab" / "00000" / "clips" / "K.npy"
    K = np.load(Kf, mmap_mode="r+")
    K[1, 0, 0] = 0.0
    K.flush()
    del K
    calls: list = []
    with pytest.raises(HandcastError, match="intrinsics"):
        impute_split(src.path, "lab", tmp_path / "out2", "imp", oracle(truth, calls=calls), hm, progress=False)
    assert calls == []
    with pytest.raises(HandcastError, match="unknown split"):
        impute_split(src.path, "nope", tmp_path / "out3", "imp", oracle(truth), hm, progress=False)
    with pytest.raises(HandcastError, match="must differ"):
        impute_split(src.path, "wild", src.path, "wild", oracle(truth), hm, progress=False)

    def bad(batch):
        B, T = batch["kp2d"].shape[:2]
        return torch.zeros(B, T, 2, 15, 3), torch.zeros(B, T, 2, 3)

    with pytest.raises(HandcastError, match="initialiser returned pose"):
        impute_split(src.path, "wild", tmp_path / "out4", "imp", bad, hm, progress=False)
    # a failed first run leaves no empty output store behind
    assert not any((tmp_path / f"out{k}").exists() for k in (2, 3, 4))
    # an --out that is a file or a folder that is no store is refused, naming no flag impute lacks
    (tmp_path / "notastore").mkdir()
    (tmp_path / "notastore" / "mine.txt").write_text("user")
    (tmp_path / "afile").write_text("user")
    for out in ("notastore", "afile"):
        with pytest.raises(HandcastError, match="give a clip store to add to, or a new folder") as ei:
            impute_split(src.path, "wild", tmp_path / out, "imp", oracle(truth), hm, progress=False)
        assert "--overwrite" not in str(ei.value)
    assert (tmp_path / "notastore" / "mine.txt").read_text() == "user" and (tmp_path / "afile").read_text() == "user"


def test_into_the_source_store(tmp_path, hm, clips):
    src = _write_store(tmp_path / "src", clips)
    s = impute_split(src.path, "wild", src.path, "wild_imp", oracle(_truth(clips)), hm, refine_config=CFG,
                     progress=False)
    store = ClipStore(src.path)
    assert set(store.splits) == {"lab", "wild", "wild_imp"} and s["written"] == 4
    assert len(store.split("wild")) == 5


def test_lift_initialiser_averages_its_samples():
    """num_samples samples that straddle a known motion (every joint turned by +-a about x, wrists moved by +-d)
    average back to it; one sample keeps the turn."""
    import roma

    from handcast.fit.impute import lift_initialiser
    from handcast.geometry import aa_to_rotmat, rotmat_to_6d
    from handcast.hand import HandModel

    hands = HandModel("open")
    gen = torch.Generator().manual_seed(0)
    B, T = 2, 5
    R = roma.random_rotmat((B, T, 2, 16), generator=gen).double()
    wrist = torch.randn(B, T, 2, 3, generator=gen, dtype=torch.float64)

    class Fake:
        def sample(self, batch, num, sampler, steps, generator=None):
            out_R, out_w = [], []
            for k in range(num):
                turn = aa_to_rotmat(torch.tensor([0.4 * (-1) ** k, 0.0, 0.0], dtype=torch.float64))
                out_R.append(rotmat_to_6d(R @ turn).float())
                out_w.append((wrist + 0.03 * (-1) ** k).float())
            return torch.stack(out_R, 1), torch.stack(out_w, 1)

    batch = {"K": torch.eye(3).expand(B, 3, 3), "betas": torch.zeros(B, 2, 10)}
    j0 = hands.rest_joints(batch["betas"])[..., 0, :]
    for num, deg, shift in ((1, np.degrees(0.4), 0.03), (2, 0.0, 0.0), (6, 0.0, 0.0)):
        pose, transl = lift_initialiser(Fake(), hands, num_samples=num)(batch)
        ang = np.degrees(roma.rotmat_geodesic_distance(aa_to_rotmat(pose.double()), R).numpy())
        assert np.abs(ang - deg).max() < 1e-3, num
        assert torch.allclose(transl + j0[:, None], (wrist + shift).float(), atol=1e-5), num
