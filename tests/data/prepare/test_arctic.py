"""ARCTIC (ego view) converter on a small fixture with ARCTIC's raw layout; the open hand model stands in
for MANO. Round trip: MANO fits (mean-relative, world) -> joints in the frame-0 camera, projected with
the stored ego camera, land on the projections of the fixture's world joints."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from fixtures_prepare import check_clip, make_motion, no_mano_dir
from handcast.data import ClipStore
from handcast.data.prepare import prepare
from handcast.errors import AssetMissingError, HandcastError
from handcast.hand import open_model

SIZE = (2800, 2000)


def write_arctic(root, hm, rng, seqs=("s01/box_grab_01", "s01/box_use_01"), T=26):
    data = root / "arctic_data" / "data"
    (data / "meta").mkdir(parents=True)
    (data / "splits_json").mkdir()
    truth = {}
    means = [open_model.load_open_model(s)["hands_mean"].reshape(15, 3) for s in ("right", "left")]
    for name in seqs:
        sid, seq = name.split("/")
        m = make_motion(rng, T, hm, size=SIZE)
        d = data / "raw_seqs" / sid
        d.mkdir(parents=True, exist_ok=True)
        mano = {}
        for h, side in enumerate(("right", "left")):
            mano[side] = {
                "rot": m.pose[:, h, 0].astype(np.float32),
                "pose": (m.pose[:, h, 1:] - means[h]).reshape(T, 45).astype(np.float32),  # mean-relative
                "trans": m.transl[:, h].astype(np.float32),
                "shape": m.betas[h].astype(np.float32) if h == 0 else np.tile(m.betas[h], (T, 1)).astype(np.float32),
                "fitting_err": np.zeros(T, np.float32),
            }
        np.save(d / f"{seq}.mano.npy", mano, allow_pickle=True)
        ego = {"R_k_cam_np": m.cam_from_world[:, :3, :3].astype(np.float32),
               "T_k_cam_np": m.cam_from_world[:, :3, 3:].astype(np.float32),
               "intrinsics": m.K.astype(np.float32), "dist8": np.zeros(8, np.float32)}
        np.save(d / f"{seq}.egocam.dist.npy", ego, allow_pickle=True)
        np.save(d / f"{seq}.object.npy", np.zeros((T, 7), np.float32))
        truth[name] = m
    (data / "meta" / "misc.json").write_text(json.dumps(
        {"s01": {"world2cam": np.tile(np.eye(4), (8, 1, 1)).tolist(),
                 "intris_mat": np.tile(np.eye(3), (8, 1, 1)).tolist(),
                 "image_size": [list(SIZE)] + [[2800, 2000]] * 8, "ioi_offset": 1, "gender": "female"}}))
    (data / "splits_json" / "protocol_p2.json").write_text(json.dumps({"train": [], "val": [seqs[-1]], "test": []}))
    return data, truth


def test_arctic_round_trip(tmp_path, hm):
    rng = np.random.default_rng(0)
    data, truth = write_arctic(tmp_path / "raw", hm, rng)
    out = tmp_path / "store"
    s = prepare("ARCTIC", tmp_path / "raw", out, hand_model="open", progress=False)
    assert s.clips == {"train": ["s01/box_grab_01"], "val": ["s01/box_use_01"]}
    assert s.frames == {"train": 6, "val": 6}  # 26 frames minus 10 trimmed at each end
    store = ClipStore(out)
    for split, name in (("train", "s01/box_grab_01"), ("val", "s01/box_use_01")):
        clip = store.split(split).get(name)
        m = truth[name]
        assert clip.domain == "arctic" and clip.provenance == "gt" and clip.fps == 30.0
        assert clip.hand_model == "open" and clip.valid.all()
        assert clip.image_size == SIZE and np.allclose(clip.K, m.K, atol=1e-3)
        check_clip(clip, hm, joints_world=m.joints, cam_from_world=m.cam_from_world, frames=np.arange(10, 16),
                   tol_m=1e-4, tol_px=0.1)
        # flat convention: the stored finger rotations are the fixture's flat ones (mean added back)
        assert np.allclose(clip.pose[:, :, 1:], m.pose[10:16, :, 1:], atol=1e-5)
        assert np.allclose(clip.betas, m.betas, atol=1e-6)
        assert clip.meta["subject"] == "s01" and clip.meta["ioi_offset"] == 1
        assert clip.meta["source_frames"] == [10, 15, 1]


def test_arctic_needs_mano(tmp_path, hm, monkeypatch):
    rng = np.random.default_rng(1)
    write_arctic(tmp_path / "raw", hm, rng, seqs=("s01/box_grab_01",))
    monkeypatch.setenv("HANDCAST_HOME", str(tmp_path / "home"))
    with pytest.raises(AssetMissingError, match="handcast mano import"):
        prepare("arctic", tmp_path / "raw", tmp_path / "store", progress=False)
    with pytest.raises(AssetMissingError, match="MANO_RIGHT.npz"):
        prepare("arctic", tmp_path / "raw", tmp_path / "store", progress=False, mano_dir=no_mano_dir(tmp_path))
    with pytest.raises(HandcastError, match="needs a hand model"):
        prepare("arctic", tmp_path / "raw", tmp_path / "store", progress=False, hand_model="none")
    assert not (tmp_path / "store").exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch SHOULD_NOT_EXIST",))


def test_arctic_broken_sequences_are_skipped(tmp_path, hm):
    rng = np.random.default_rng(2)
    seqs = ("s01/box_grab_01", "s01/box_use_01", "s01/ketchup_use_01", "s01/mixer_use_01")
    data, _ = write_arctic(tmp_path / "raw", hm, rng, seqs=seqs)
    raw = data / "raw_seqs" / "s01"
    (raw / "box_use_01.mano.npy").write_bytes(b"not a numpy file")
    # a pickle that would run a command if unpickled naively
    np.save(raw / "ketchup_use_01.mano.npy", np.array(_Evil(), dtype=object), allow_pickle=True)
    (raw / "mixer_use_01.egocam.dist.npy").unlink()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        s = prepare("arctic", tmp_path / "raw", tmp_path / "store", hand_model="open", progress=False)
    finally:
        os.chdir(cwd)
    assert not (tmp_path / "SHOULD_NOT_EXIST").exists()
    assert s.clips["train"] == ["s01/box_grab_01"]
    reasons = dict(s.skipped)
    assert set(reasons) == {"s01/box_use_01", "s01/ketchup_use_01", "s01/mixer_use_01"}
    assert "refused" in reasons["s01/ketchup_use_01"]
    assert "missing file" in reasons["s01/mixer_use_01"]
    text = s.format()
    assert "skipped 3 item(s)" in text and "train 1 clips" in text
