"""Clip store (handcast.data.store): round trips, append, atomicity, errors, vectorised access."""

import dataclasses
import json
import pickle

import numpy as np
import pytest

from handcast.data.clip import FRAME_FIELDS
from handcast.data.store import (
    ClipStore,
    ClipStoreWriter,
    check_store,
    compact_store,
    decode_image,
    encode_image,
    write_clips,
)
from handcast.data.testing import random_clip
from handcast.errors import HandcastError


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def assert_same_clip(a, b, image="exact"):
    for name in FRAME_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape, name
        np.testing.assert_array_equal(x, y, err_msg=name)
    for name in ("betas", "K"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("clip_id", "provenance", "domain", "hand_model", "group_id", "image_size", "fps", "meta"):
        assert getattr(a, name) == getattr(b, name), name
    if a.image is None:
        assert b.image is None
    elif image == "exact":
        np.testing.assert_array_equal(a.image, b.image)
    else:  # JPEG
        err = np.abs(a.image.astype(int) - b.image.astype(int))
        assert b.image.shape == a.image.shape and err.mean() < 2.0 and err.max() < 40


def _clips(rng, lengths, prefix, **kw):
    return [random_clip(rng, T, with_image=(k % 2 == 0), clip_id=f"{prefix}{k:03d}", **kw)
            for k, T in enumerate(lengths)]


def test_round_trip_png(rng, tmp_path):
    train = _clips(rng, [16, 1, 64, 255, 33], "tr", domain="lab")
    test = _clips(rng, [20, 256], "te", provenance="imputed", hand_model="open", domain="diverse")
    test[1] = dataclasses.replace(test[1], group_id="shared-first-frame", meta={"action": "pour", "k": [1, 2]})
    store = write_clips(tmp_path / "s", {"lab_train": train, "diverse_test": test}, image_format="png")
    assert store.splits == ("lab_train", "diverse_test")
    assert store.hand_model == "mixed"
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["format"] == "handcast-clips" and m["version"] == 1
    assert m["splits"]["lab_train"]["num_clips"] == 5
    assert m["splits"]["lab_train"]["num_frames"] == 16 + 1 + 64 + 255 + 33
    assert m["splits"]["diverse_test"]["provenance"] == {"imputed": 2}
    for name, clips in (("lab_train", train), ("diverse_test", test)):
        view = store.split(name)
        assert len(view) == len(clips)
        assert view.clip_ids == [c.clip_id for c in clips]
        np.testing.assert_array_equal(view.lengths, [c.num_frames for c in clips])
        for i, c in enumerate(clips):
            assert view.num_frames(i) == c.num_frames
            assert_same_clip(c, view[i])
            assert_same_clip(c, view.get(c.clip_id))
        assert [c.clip_id for c in view.iter_clips()] == view.clip_ids
    assert_same_clip(test[1], store.split("diverse_test")[-1])


def test_jpeg_images_within_tolerance_and_raw_bytes_pass_through(rng, tmp_path):
    clips = _clips(rng, [16, 17, 18], "c")
    raw = encode_image(clips[1].image if clips[1].image is not None else clips[0].image, "png")
    with ClipStoreWriter(tmp_path / "s", image_format="jpeg", jpeg_quality=95) as w:
        w.add("train", clips[0])
        w.add("train", dataclasses.replace(clips[1], image=None), image_bytes=raw)
        w.add("train", dataclasses.replace(clips[2], image=None))
        with pytest.raises(HandcastError, match="image_bytes is 64x48"):
            w.add("train", dataclasses.replace(clips[2], clip_id="x", image_size=(80, 48),
                                               K=clips[2].K, image=None), image_bytes=raw)
    view = ClipStore(tmp_path / "s").split("train")
    assert view.image_bytes(0)[:3] == b"\xff\xd8\xff"  # JPEG
    assert_same_clip(clips[0], view[0], image="jpeg")
    assert view.image_bytes(1) == raw  # stored as given
    np.testing.assert_array_equal(view.image(1), decode_image(raw))
    assert view.image(2) is None and view[2].image is None
    np.testing.assert_array_equal(view.has_image(), [True, True, False])
    assert view.load(0, image=False).image is None


def test_nan_in_unlabelled_entries_stored_as_zero(rng, tmp_path):
    c = random_clip(rng, 10, p_valid=1.0, clip_id="n")
    c.valid[3, 0] = False
    c.kp2d_conf[3, 0] = 0
    c.joints3d[3, 0] = np.nan
    c.kp2d[3, 0] = np.nan
    store = write_clips(tmp_path / "s", {"train": [c]})
    back = store.split("train")[0]
    assert np.isfinite(back.joints3d).all() and np.isfinite(back.kp2d).all()
    assert (back.joints3d[3, 0] == 0).all()
    np.testing.assert_array_equal(back.joints3d[4:], c.joints3d[4:])


def test_npy_files_are_plain_and_memory_mapped(rng, tmp_path):
    clips = _clips(rng, [16, 20], "c")
    store = write_clips(tmp_path / "s", {"train": clips})
    shard = tmp_path / "s" / "train" / "00000"
    for name, (dtype, shape) in FRAME_FIELDS.items():
        arr = np.load(shard / "frames" / f"{name}.npy", allow_pickle=False)
        assert arr.dtype == dtype and arr.shape == (36, *shape)
    offsets = np.load(shard / "clips" / "offsets.npy", allow_pickle=False)
    np.testing.assert_array_equal(offsets, [0, 16, 36])
    ids = np.load(shard / "clips" / "clip_id.npy", allow_pickle=False)
    assert ids.dtype.kind == "U" and list(ids) == ["c000", "c001"]
    assert (shard / "meta.jsonl").read_text(encoding="utf-8").count("\n") == 2
    view = store.split("train")
    mm = view.frames("joints3d")
    assert not mm.flags.writeable
    np.testing.assert_array_equal(mm, np.concatenate([c.joints3d for c in clips]))


def test_vectorised_statistics(rng, tmp_path):
    clips = _clips(rng, [16, 40, 25, 70], "c")
    view = write_clips(tmp_path / "s", {"train": clips}).split("train")
    transl, valid = view.frames("transl"), view.frames("valid")
    expected = np.concatenate([c.transl[c.valid] for c in clips])
    np.testing.assert_allclose(transl[valid].mean(0), expected.mean(0), rtol=1e-6)
    off = view.frame_offsets
    np.testing.assert_array_equal(off, np.cumsum([0] + [c.num_frames for c in clips]))
    np.testing.assert_array_equal(view.frames("pose")[off[2]:off[3]], clips[2].pose)
    np.testing.assert_array_equal(view.clip_field("betas"), np.stack([c.betas for c in clips]))
    assert list(view.clip_field("domain")) == ["synthetic"] * 4
    with pytest.raises(HandcastError, match="unknown per-frame field 'nope'"):
        view.frames("nope")
    with pytest.raises(HandcastError, match="unknown clip field 'nope'"):
        view.read(0, fields=["nope"])
    part = view.read(1, fields=["kp2d", "K"], start=5, stop=9)
    assert set(part) == {"kp2d", "K"}
    np.testing.assert_array_equal(part["kp2d"], clips[1].kp2d[5:9])


def test_append_new_clips_and_splits(rng, tmp_path):
    path = tmp_path / "s"
    first = _clips(rng, [16, 30], "a")
    write_clips(path, {"train": first}, image_format="png")
    created = json.loads((path / "manifest.json").read_text())["created"]
    more = _clips(rng, [20, 17, 50], "b")
    val = _clips(rng, [40], "v")
    with ClipStoreWriter(path, append=True, image_format="png") as w:
        assert w.contains("train", "a000") and not w.contains("train", "b000")
        for c in more:
            w.add("train", c)
        w.add("val", val[0])
        with pytest.raises(HandcastError, match="duplicate clip_id 'a001' in split 'train'"):
            w.add("train", dataclasses.replace(more[0], clip_id="a001"))
    store = ClipStore(path)
    m = store.manifest
    assert m["created"] == created
    assert [s["name"] for s in m["splits"]["train"]["shards"]] == ["00000", "00001"]
    assert m["splits"]["train"]["num_clips"] == 5 and set(store.splits) == {"train", "val"}
    view = store.split("train")
    allc = first + more
    assert view.clip_ids == [c.clip_id for c in allc]
    for i, c in enumerate(allc):
        assert_same_clip(c, view[i])
    assert view.index_of("b002") == 4
    np.testing.assert_array_equal(view.frames("kp2d"), np.concatenate([c.kp2d for c in allc]))
    chunks = list(view.frame_chunks("kp2d"))
    assert [len(x) for x in chunks] == [46, 87]
    np.testing.assert_array_equal(view.frame_offsets, np.cumsum([0] + [c.num_frames for c in allc]))
    assert_same_clip(val[0], store.split("val")[0])
    assert not any(p.name.startswith(".") for p in path.iterdir())
    # compacting gives one shard per split, same content
    comp = compact_store(path, tmp_path / "c")
    assert len(comp.manifest["splits"]["train"]["shards"]) == 1
    for i, c in enumerate(allc):
        assert_same_clip(c, comp.split("train")[i])


def test_append_to_missing_store_creates_it(rng, tmp_path):
    clips = _clips(rng, [16], "a")
    with ClipStoreWriter(tmp_path / "s", append=True) as w:
        w.add("train", clips[0])
    assert len(ClipStore(tmp_path / "s").split("train")) == 1


def test_append_commit_then_failure_keeps_committed(rng, tmp_path):
    path = tmp_path / "s"
    write_clips(path, {"train": _clips(rng, [16], "a")})
    batch1, batch2 = _clips(rng, [16, 18], "b"), _clips(rng, [19], "c")
    with pytest.raises(RuntimeError, match="boom"):
        with ClipStoreWriter(path, append=True) as w:
            for c in batch1:
                w.add("train", c)
            w.commit()
            w.add("train", batch2[0])
            w.add("other", batch2[0])
            raise RuntimeError("boom")
    store = ClipStore(path)
    assert store.split("train").clip_ids == ["a000", "b000", "b001"]
    assert store.splits == ("train",)
    assert not any(p.name.startswith(".") for p in path.iterdir())
    assert sorted(p.name for p in (path / "train").iterdir()) == ["00000", "00001"]


def test_failed_append_leaves_store_unchanged(rng, tmp_path):
    path = tmp_path / "s"
    write_clips(path, {"train": _clips(rng, [16], "a")})
    before = (path / "manifest.json").read_bytes()
    with pytest.raises(HandcastError, match="unknown provenance"):
        with ClipStoreWriter(path, append=True) as w:
            w.add("train", _clips(rng, [16], "b")[0])
            w.add("train", dataclasses.replace(_clips(rng, [16], "c")[0], provenance="maybe"))
    assert (path / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "train"]


def test_atomic_new_store(rng, tmp_path):
    path = tmp_path / "s"
    clips = _clips(rng, [16, 20, 30], "a")
    with pytest.raises(RuntimeError, match="interrupted"):
        with ClipStoreWriter(path) as w:
            w.add("train", clips[0])
            w.add("train", clips[1])
            raise RuntimeError("interrupted")
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []  # no temporary left either
    # validation error in the middle: same
    with pytest.raises(HandcastError):
        with ClipStoreWriter(path) as w:
            w.add("train", clips[0])
            w.add("train", dataclasses.replace(clips[1], pose=np.zeros((3, 2, 16, 3))))
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_overwrite_rules(rng, tmp_path):
    path = tmp_path / "s"
    write_clips(path, {"train": _clips(rng, [16], "a")})
    with pytest.raises(HandcastError, match="already exists"):
        with ClipStoreWriter(path) as w:
            pass
    # a failed overwrite keeps the old store
    with pytest.raises(RuntimeError):
        with ClipStoreWriter(path, overwrite=True) as w:
            w.add("new", _clips(rng, [16], "b")[0])
            raise RuntimeError
    assert ClipStore(path).splits == ("train",)
    with ClipStoreWriter(path, overwrite=True) as w:
        w.add("new", _clips(rng, [16], "b")[0])
    assert ClipStore(path).splits == ("new",)
    with pytest.raises(HandcastError, match="overwrite or append"):
        ClipStoreWriter(path, overwrite=True, append=True)


def test_duplicate_ids_and_split_names(rng, tmp_path):
    c = _clips(rng, [16], "a")[0]
    with pytest.raises(HandcastError, match="duplicate clip_id 'a000' in split 'train'"):
        with ClipStoreWriter(tmp_path / "s") as w:
            w.add("train", c)
            w.add("test", c)  # same id in another split is fine
            w.add("train", c)
    for bad in ("Train", "a/b", "", "x y", "..", "é"):
        with pytest.raises(HandcastError, match="invalid split name"):
            with ClipStoreWriter(tmp_path / "t") as w:
                w.add(bad, c)
    with pytest.raises(HandcastError, match="outside its 'with' block"):
        ClipStoreWriter(tmp_path / "u").add("train", c)


def test_empty_store(tmp_path):
    with ClipStoreWriter(tmp_path / "s"):
        pass
    store = ClipStore(tmp_path / "s")
    assert store.splits == () and store.hand_model is None
    with pytest.raises(HandcastError, match=r"unknown split 'train' \(store has: no splits\)"):
        store.split("train")


def test_open_errors(rng, tmp_path):
    store = write_clips(tmp_path / "s", {"lab_train": _clips(rng, [16], "a"), "wild_test": _clips(rng, [16], "b")})
    with pytest.raises(HandcastError) as e:
        store.split("x")
    assert str(e.value) == "unknown split 'x' (store has: lab_train, wild_test)"
    with pytest.raises(HandcastError, match="clip store not found"):
        ClipStore(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(HandcastError, match="no manifest.json"):
        ClipStore(tmp_path / "empty")
    mpath = tmp_path / "s" / "manifest.json"
    m = json.loads(mpath.read_text())
    mpath.write_text(json.dumps({**m, "version": 2}))
    with pytest.raises(HandcastError, match="version 2 is not supported"):
        ClipStore(tmp_path / "s")
    mpath.write_text(json.dumps({**m, "format": "something-else"}))
    with pytest.raises(HandcastError, match="format 'something-else'"):
        ClipStore(tmp_path / "s")
    mpath.write_text("{not json")
    with pytest.raises(HandcastError, match="unreadable manifest"):
        ClipStore(tmp_path / "s")
    # a manifest that disagrees with the files is caught when reading
    m["splits"]["lab_train"]["shards"][0]["num_frames"] = 99
    mpath.write_text(json.dumps(m))
    with pytest.raises(HandcastError, match="manifest says 99"):
        ClipStore(tmp_path / "s").split("lab_train")[0]


def test_index_errors_and_pickle(rng, tmp_path):
    clips = _clips(rng, [16, 18, 20], "a")
    view = write_clips(tmp_path / "s", {"train": clips}).split("train")
    assert view[-1].clip_id == "a002"
    with pytest.raises(IndexError):
        view[3]
    with pytest.raises(HandcastError, match="unknown clip_id 'zz' in split 'train'"):
        view.index_of("zz")
    assert "a001" in view and "zz" not in view
    view[0]  # open the maps, then pickle: maps are not pickled but reopened
    clone = pickle.loads(pickle.dumps(view))
    assert_same_clip(clips[2], clone[2], image="jpeg")
    assert len(pickle.dumps(view)) < 4000


@pytest.mark.slow
def test_loading_1000_clips_is_fast(tmp_path):
    import time

    rng = np.random.default_rng(0)
    with ClipStoreWriter(tmp_path / "s") as w:
        for k in range(1000):
            w.add("train", random_clip(rng, 64, clip_id=f"c{k}"))
    t = time.perf_counter()
    view = ClipStore(tmp_path / "s").split("train")
    clips = [view.load(i, image=False) for i in range(len(view))]
    elapsed = time.perf_counter() - t
    assert len(clips) == 1000 and clips[-1].num_frames == 64
    assert elapsed < 2.0, f"loading 1000 clips took {elapsed:.2f} s (expected ~0.1 s)"


# ------------------------------------------------------------------ damaged stores: one-line errors, store check
def _small_store(tmp_path, rng, name="s"):
    clips = [random_clip(rng, 6 + i, with_image=True, clip_id=f"c{i}") for i in range(3)]
    write_clips(tmp_path / name, {"train": clips})
    return tmp_path / name


def _touch_all(path):
    view = ClipStore(path).split("train")
    for i in range(len(view)):
        view.load(i)
    return view


def _set_manifest(path, fn):
    m = json.loads((path / "manifest.json").read_text())
    fn(m)
    (path / "manifest.json").write_text(json.dumps(m))


def _shard(path):
    return path / "train" / "00000"


def _poke(path, index, value):
    a = np.load(path, mmap_mode="r+")
    a[index] = value
    a.flush()


DAMAGES = {
    "empty npy": (lambda p: (_shard(p) / "frames" / "pose.npy").write_bytes(b""), "pose.npy"),
    "0-d npy": (lambda p: np.save(_shard(p) / "frames" / "transl.npy", np.float32(1)), "0-d"),
    "wrong shape npy": (lambda p: np.save(_shard(p) / "clips" / "K.npy", np.zeros((3, 4, 4))), "K.npy: expected"),
    "truncated npy": (lambda p: (_shard(p) / "frames" / "joints3d.npy").write_bytes(
        (_shard(p) / "frames" / "joints3d.npy").read_bytes()[:300]), "joints3d.npy"),
    "huge offsets": (lambda p: np.save(_shard(p) / "clips" / "offsets.npy",
                                       np.array([0, 5, 2 ** 42, 2 ** 43], np.int64)), "offsets end at"),
    "images.bin truncated": (lambda p: (_shard(p) / "images.bin").write_bytes(b"\xff\xd8"), "images.bin"),
    "images.bin garbage": (lambda p: (_shard(p) / "images.bin").write_bytes(
        b"x" * (_shard(p) / "images.bin").stat().st_size), "not a readable JPEG/PNG"),
    "bad meta.jsonl": (lambda p: (_shard(p) / "meta.jsonl").write_text("{}\n{oops\n{}\n"), "line 2 is not JSON"),
    "num_frames many": (lambda p: _set_manifest(p, lambda m: m["splits"]["train"]["shards"][0].__setitem__(
        "num_frames", "many")), "num_frames must be a count"),
    "traversal shard": (lambda p: _set_manifest(p, lambda m: m["splits"]["train"]["shards"][0].__setitem__(
        "name", "../../other/train/00000")), "refused path"),
    "absolute shard": (lambda p: _set_manifest(p, lambda m: m["splits"]["train"]["shards"][0].__setitem__(
        "name", "/etc")), "refused path"),
    "non-rigid camera": (lambda p: _poke(_shard(p) / "frames" / "world_to_cam.npy", (2, 0, 1), 0.5),
                         "not a rigid transform"),
    "nan pose": (lambda p: _poke(_shard(p) / "frames" / "pose.npy", (1, 0, 3, 0), np.nan), "non-finite"),
    "zero focal length": (lambda p: _poke(_shard(p) / "clips" / "K.npy", (0, 0, 0), 0.0), "focal length <= 0"),
    "traversal split": (lambda p: _set_manifest(p, lambda m: m["splits"].__setitem__(
        "train", m["splits"].pop("train")) or m["splits"].__setitem__("..", m["splits"]["train"])), None),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_store_is_a_one_line_error_and_store_check_reports_it(tmp_path, rng, damage):
    path = _small_store(tmp_path, rng)
    assert check_store(path) == []
    fn, needle = DAMAGES[damage]
    fn(path)
    problems = check_store(path)
    assert problems and all("\n" not in p for p in problems), problems
    if needle is None:  # damage in a split that is not read here
        assert any("refused path '..'" in p for p in problems), problems
        return
    assert any(needle in p for p in problems), problems
    if damage in ("non-rigid camera", "nan pose", "zero focal length"):  # values: refused by their users
        return
    with pytest.raises(HandcastError, match=needle.replace("(", r"\(")) as ei:
        _touch_all(path)
    assert "\n" not in str(ei.value)


def test_a_manifest_cannot_send_reads_into_another_store(tmp_path, rng):
    other = _small_store(tmp_path / "other", rng, name="victim")
    mine = _small_store(tmp_path, rng, name="mine")
    rel = "../../" + str((other / "train").relative_to(tmp_path))
    _set_manifest(mine, lambda m: m["splits"]["train"]["shards"][0].__setitem__("name", rel + "/00000"))
    with pytest.raises(HandcastError, match="refused path"):
        ClipStore(mine).split("train")
    (mine / "train" / "lnk").symlink_to(other / "train" / "00000")  # a link out of the store: refused too
    _set_manifest(mine, lambda m: m["splits"]["train"]["shards"][0].__setitem__("name", "lnk"))
    with pytest.raises(HandcastError, match="leads outside the store"):
        ClipStore(mine).split("train")


def test_stale_staging_folders_of_a_killed_append_are_removed_by_the_next(tmp_path, rng):
    path = _small_store(tmp_path, rng)
    dead = path / f".staging-{2 ** 22 + 7}-0123456789ab"
    legacy = path / ".staging-abcdefabcdef"
    for d in (dead, legacy):
        (d / "train" / "00001").mkdir(parents=True)
    assert sum("leftover" in p for p in check_store(path)) == 2
    with ClipStoreWriter(path, append=True) as w:
        w.add("train", random_clip(rng, 5, clip_id="new"))
    assert not dead.exists() and not legacy.exists()
    assert check_store(path) == [] and len(ClipStore(path).split("train")) == 4


def test_store_check_cli(tmp_path, rng, capsys):
    from handcast.cli import main

    path = _small_store(tmp_path, rng)
    assert main(["store", "check", str(path)]) == 0
    DAMAGES["bad meta.jsonl"][0](path)
    DAMAGES["empty npy"][0](path)
    assert main(["store", "check", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "line 2 is not JSON" in out and "pose.npy" in out
    assert err.count("\n") == 1 and "2 problem(s)" in err


def test_overwrite_replaces_only_a_clip_store(tmp_path, rng):
    user = tmp_path / "Documents"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(HandcastError, match="not a clip store .* --overwrite replaces only a clip store"):
        write_clips(user, {"train": [random_clip(rng, 5, clip_id="a")]}, overwrite=True)
    assert (user / "notes.txt").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["Documents"]
    store = _small_store(tmp_path, rng)
    write_clips(store, {"train": [random_clip(rng, 5, clip_id="a")]}, overwrite=True)
    assert len(ClipStore(store).split("train")) == 1
