"""The prepare() driver and the shared converter machinery: argument errors (one line, nothing written),
atomic output, clip cutting and re-basing, camera turns, the restricted unpickler and the summary."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from fixtures_prepare import fit_to_frame, keypoints, make_motion, project
from handcast.data import ClipStore
from handcast.data.prepare import PREPARERS, available_datasets, canonical_name, prepare
from handcast.data.prepare.cameras import rotate_intrinsics_cw, rotate_uv_cw, rotation_cw
from handcast.data.prepare.clips import Sequence, emit_sequence
from handcast.data.prepare.common import Item, Preparer, PrepareSummary
from handcast.data.prepare.hands import HandModels
from handcast.data.prepare.readers import read_npy_object, read_pickle
from handcast.errors import HandcastError


def test_registry_and_names():
    assert set(available_datasets()) == {"arctic", "h2o", "h2o3d", "hot3d", "dexycb", "assemblyhands", "holoassist",
                                         "egoexo4d", "freihand", "ho3d"}
    assert canonical_name("H2O-3D") == "h2o3d" and canonical_name("HO3D_v2") == "ho3d"
    assert canonical_name("Ego-Exo4D") == "egoexo4d" and canonical_name("HOT3D") == "hot3d"
    assert all(PREPARERS[n].name == n for n in PREPARERS)
    with pytest.raises(HandcastError, match="unknown dataset 'nope'; choose one of arctic"):
        canonical_name("nope")


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)


def test_argument_errors(tmp_path):
    root = tmp_path / "raw"
    root.mkdir()
    cases = [
        (dict(dataset="mystery"), "unknown dataset"),
        (dict(root=tmp_path / "missing"), "dataset root not found"),
        (dict(root=tmp_path / "file.txt"), "not a folder"),
        (dict(clip_len=0), "clip_len must be a positive integer"),
        (dict(colour="red"), "unknown option.*colour"),
        (dict(split="minival"), "has no split 'minival'"),
        (dict(fps=-3), "fps must be a positive number"),
        (dict(hand_model="smpl"), "hand_model must be"),
        (dict(), "does not look like H2O"),
        (dict(out=root / "inside"), "must not be inside the dataset root"),
    ]
    (tmp_path / "file.txt").write_text("x")
    for kw, msg in cases:
        args = dict(dataset="h2o", root=root, out=tmp_path / "store", progress=False)
        args.update(kw)
        with pytest.raises(HandcastError, match=msg) as e:
            prepare(args.pop("dataset"), args.pop("root"), args.pop("out"), **args)
        _one_line(e)
    assert not (tmp_path / "store").exists()
    (tmp_path / "store").mkdir()
    with pytest.raises(HandcastError, match="already exists"):
        prepare("h2o", root, tmp_path / "store", progress=False)


def test_malformed_split_file_and_empty_root(tmp_path):
    root = tmp_path / "arctic"
    (root / "raw_seqs").mkdir(parents=True)
    (root / "meta").mkdir()
    (root / "meta" / "misc.json").write_text("{}")
    with pytest.raises(HandcastError, match="no ARCTIC data found") as e:
        prepare("arctic", root, tmp_path / "store", hand_model="open", progress=False)
    _one_line(e)
    (root / "splits_json").mkdir()
    (root / "splits_json" / "protocol_p2.json").write_text('{"val": [')
    with pytest.raises(HandcastError, match="malformed JSON in .*protocol_p2.json") as e:
        prepare("arctic", root, tmp_path / "store", hand_model="open", progress=False)
    _one_line(e)
    assert not (tmp_path / "store").exists()


class _Toy(Preparer):
    """A minimal converter: item k gives one static-camera clip; item 'boom' raises a bug."""

    name = "toy"
    title = "Toy"
    splits = ("train",)

    def items(self, split):
        return [Item(split, n, n) for n in ("a", "b", "boom")]

    def convert(self, item):
        if item.payload == "boom":
            raise RuntimeError("a bug, not bad data")
        T = 3
        J = np.zeros((T, 2, 21, 3))
        J[..., 2] = 0.5
        J[..., 0] = np.linspace(-0.05, 0.05, 21)
        return self.emit(Sequence(base_id=item.name, frame_ids=np.arange(T),
                                  cam_from_world=np.tile(np.eye(4), (T, 1, 1)),
                                  K=np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]), image_size=(100, 100),
                                  fps=30.0, valid=np.ones((T, 2), bool), joints=J))


def test_store_is_atomic_and_overwrite(tmp_path, monkeypatch):
    monkeypatch.setitem(PREPARERS, "toy", _Toy)
    root = tmp_path / "raw"
    root.mkdir()
    with pytest.raises(RuntimeError):  # a bug keeps its traceback, and leaves nothing behind
        prepare("toy", root, tmp_path / "store", progress=False)
    assert not (tmp_path / "store").exists() and not list(tmp_path.glob(".store*"))
    monkeypatch.setattr(_Toy, "items", lambda self, split: [Item(split, n, n) for n in ("a", "b")])
    s = prepare("toy", root, tmp_path / "store", progress=True)
    assert s.clips == {"train": ["a", "b"]} and s.frames == {"train": 6}
    monkeypatch.setattr(_Toy, "items", lambda self, split: [Item(split, "c", "c")])
    prepare("toy", root, tmp_path / "store", overwrite=True, progress=False)
    assert ClipStore(tmp_path / "store").split("train").clip_ids == ["c"]


def test_emit_cuts_and_rebases_clips(hm):
    rng = np.random.default_rng(0)
    T = 7
    m = make_motion(rng, T, hm, size=(320, 240))
    hands = HandModels("open", None, required=False, left_fixed=False, dataset="test")
    summary = PrepareSummary("toy", "r", "o")
    seq = Sequence(base_id="s", frame_ids=np.arange(100, 100 + T), cam_from_world=m.cam_from_world, K=m.K,
                   image_size=m.size, fps=30.0, valid=np.ones((T, 2), bool), joints=m.joints, pose=m.pose,
                   transl=m.transl, betas=m.betas, step=1)
    out = emit_sequence(seq, dataset="toy", options={"clip_len": 3, "min_frames": 2, "images": False}, hands=hands,
                        skip=summary.skip)
    assert [c.clip_id for c, _ in out] == ["s@100", "s@103"]
    assert summary.skipped == [("s@106", "only 1 frame(s), fewer than min_frames=2")]
    uv_all = project(m.K, m.cam_from_world, m.joints)
    for (clip, _), a in zip(out, (0, 3)):
        clip.validate()
        M0 = m.cam_from_world[a]
        assert np.allclose(clip.joints3d, m.joints[a:a + 3] @ M0[:3, :3].T + M0[:3, 3], atol=1e-5)
        assert np.allclose(clip.kp2d, uv_all[a:a + 3], atol=1e-3)
        # the MANO fit moved to this clip's frame-0 camera reproduces its joints (J0 about which R_g acts)
        kp = keypoints(hm, clip.pose.astype(np.float64), clip.betas.astype(np.float64), clip.transl.astype(np.float64))
        assert np.abs(kp - clip.joints3d).max() < 1e-4
        p_ref, t_ref = fit_to_frame(m.pose[a:a + 3], m.transl[a:a + 3], m.betas, M0, hm)
        assert np.allclose(clip.transl, t_ref, atol=1e-5)


def test_camera_turns_are_consistent():
    rng = np.random.default_rng(0)
    K = np.array([[500.0, 0, 310.2], [0, 480.0, 250.7], [0, 0, 1]])
    size = (640, 480)
    X = rng.uniform([-0.2, -0.2, 0.5], [0.2, 0.2, 1.0], (50, 3))
    uv = (X @ K.T)[:, :2] / X[:, 2:]
    for k in range(4):
        K2, size2 = rotate_intrinsics_cw(K, size, k)
        Y = X @ rotation_cw(k).T
        uv2 = (Y @ K2.T)[:, :2] / Y[:, 2:]
        assert np.allclose(uv2, rotate_uv_cw(uv, size, k), atol=1e-9)
        assert size2 == (size if k % 2 == 0 else size[::-1])
    # one clockwise turn of a W x H image: the top-left pixel goes to the top-right corner
    assert np.allclose(rotate_uv_cw(np.array([0.0, 0.0]), size, 1), [479.0, 0.0])


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


def test_restricted_unpickler(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = {"a": np.arange(3.0), "b": [np.float32(2.0), None, "text"], "c": {"d": np.eye(2, dtype=np.float32)}}
    for proto in (2, 4, 5):
        with open(tmp_path / "ok.pkl", "wb") as fh:
            pickle.dump(data, fh, protocol=proto)
        got = read_pickle(tmp_path / "ok.pkl")
        assert np.array_equal(got["a"], data["a"]) and got["b"][2] == "text" and got["c"]["d"].dtype == np.float32
    np.save(tmp_path / "obj.npy", data, allow_pickle=True)
    assert np.array_equal(read_npy_object(tmp_path / "obj.npy")["c"]["d"], np.eye(2))
    np.save(tmp_path / "plain.npy", np.arange(4))
    assert np.array_equal(read_npy_object(tmp_path / "plain.npy"), np.arange(4))
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump({"x": _Evil()}, fh)
    with pytest.raises(HandcastError, match="refused to load 'posix.system'|refused to load 'os.system'"):
        read_pickle(tmp_path / "evil.pkl")
    np.save(tmp_path / "evil.npy", np.array(_Evil(), dtype=object), allow_pickle=True)
    with pytest.raises(HandcastError, match="refused"):
        read_npy_object(tmp_path / "evil.npy")
    assert not (tmp_path / "PWNED").exists()


def test_data_pickle_refuses_forbidden_classes():
    """load_data_pickle (the MANO importer's restricted unpickler with only its plain-data allow-list)
    refuses every global outside that list before looking it up: an ordinary class, the MANO-only
    stand-ins, code-running builtins, a module that does not even exist."""
    import collections
    import io

    from handcast.hand.mano_import import load_data_pickle

    with pytest.raises(pickle.UnpicklingError, match="refused to load 'collections.OrderedDict'"):
        load_data_pickle(io.BytesIO(pickle.dumps(collections.OrderedDict(a=1), protocol=2)))
    for module, name in (("copy_reg", "_reconstructor"), ("chumpy.ch", "Ch"), ("__builtin__", "object"),
                         ("builtins", "eval"), ("subprocess", "Popen"), ("no_such_module", "Thing")):
        crafted = b"c" + module.encode() + b"\n" + name.encode() + b"\n(tR."  # protocol 0: module.name()
        with pytest.raises(pickle.UnpicklingError, match=f"refused to load '{module}.{name}'"):
            load_data_pickle(io.BytesIO(crafted))
    data = {"a": np.arange(3.0), "s": {1, 2}, "b": b"\x00\xff"}
    for proto in (2, 5):
        got = load_data_pickle(io.BytesIO(pickle.dumps(data, protocol=proto)))
        assert np.array_equal(got["a"], data["a"]) and got["s"] == {1, 2} and got["b"] == data["b"]


def test_summary_format():
    s = PrepareSummary("h2o", "/raw", "/out")
    s.clips = {"train": ["a", "b"], "val": ["c"]}
    s.frames = {"train": 10, "val": 4}
    for i in range(12):
        s.skip(f"item{i}", "broken\nfile")
    s.note("MANO poses not converted")
    text = s.format()
    assert text.splitlines()[0] == "prepared h2o from /raw -> /out: train 2 clips / 10 frames; val 1 clips / 4 frames"
    assert "note: MANO poses not converted" in text and "skipped 12 item(s):" in text
    assert "  item0: broken file" in text and "... and 2 more" in text
    assert s.num_clips == 3 and s.to_dict()["skipped"][0] == ("item0", "broken file")


def test_string_options_are_converted(tmp_path, monkeypatch):
    from handcast.data.prepare import _coerce

    assert _coerce("upright", "false", True) is False and _coerce("images", "1", True) is True
    assert _coerce("clip_len", "16", None) == 16 and _coerce("trim", "5", 10) == 5
    assert _coerce("fps", "29.97", None) == 29.97 and _coerce("val_fraction", "0.1", 0.2) == 0.1
    assert _coerce("cams", "cam3, cam4", ("cam4",)) == ("cam3", "cam4")
    assert _coerce("hand_model", "None", None) == "none" and _coerce("stream", "none", None) is None
    with pytest.raises(HandcastError, match="option upright: cannot read 'maybe'"):
        _coerce("upright", "maybe", True)
    monkeypatch.setitem(PREPARERS, "toy", _Toy)
    monkeypatch.setattr(_Toy, "items", lambda self, split: [Item(split, n, n) for n in ("a",)])
    root = tmp_path / "raw"
    root.mkdir()
    s = prepare("toy", root, tmp_path / "store", progress=False, clip_len="2", images="no")
    assert s.clips == {"train": ["a@0", "a@2"]}
