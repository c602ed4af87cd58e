"""Building benchmark stores: the smoke preset, all six splits, grouping, byte-identical rebuilds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from handcast.data import ClipStore
from handcast.errors import HandcastError
from handcast.synth import PRESETS, SPLITS, build_benchmark


def _digests(root: Path) -> dict[str, str]:
    """sha256 of every file of a store except the manifest (which holds timestamps)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"
    }


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "smoke"
    assert build_benchmark("smoke", out, seed=0, workers=1, progress=False) == out
    return out


def test_smoke_store_has_all_splits(smoke):
    store = ClipStore(smoke)
    assert set(store.splits) == set(SPLITS)
    preset = PRESETS["smoke"]
    for name, spec in preset.splits.items():
        view = store.split(name)
        assert len(view) == spec.n_clips
        clip = view[0]
        clip.validate()
        assert clip.num_frames == preset.n_frames
        assert clip.domain == spec.domain
        assert clip.image is not None and clip.image.shape == (256, 256, 3)
        assert clip.provenance == ("2d-only" if spec.domain == "diverse" else "gt")
        groups = {}
        for i in range(len(view)):
            groups.setdefault(view.load(i, image=False).group_id, []).append(i)
        assert len(groups) == spec.groups
        assert all(len(v) == spec.futures for v in groups.values())
        if spec.futures > 1:  # futures of a group share the first frame and its image
            first = [view.load(i) for i in next(iter(groups.values()))]
            for c in first[1:]:
                np.testing.assert_array_equal(c.joints3d[0], first[0].joints3d[0])
                np.testing.assert_array_equal(c.image, first[0].image)
                assert not np.array_equal(c.joints3d, first[0].joints3d)


def test_same_seed_byte_identical_other_seed_differs(smoke, tmp_path):
    again = build_benchmark("smoke", tmp_path / "again", seed=0, workers=1, progress=False)
    assert _digests(again) == _digests(smoke)
    other = build_benchmark("smoke", tmp_path / "other", seed=1, workers=1, progress=False)
    a, b = _digests(other), _digests(smoke)
    assert a.keys() == b.keys() and a != b


@pytest.mark.slow
def test_worker_count_does_not_change_the_store(smoke, tmp_path):
    two = build_benchmark("smoke", tmp_path / "two", seed=0, workers=2, progress=False)
    assert _digests(two) == _digests(smoke)


def test_errors(smoke, tmp_path):
    with pytest.raises(HandcastError, match="smoke, tiny, paper"):
        build_benchmark("nope", tmp_path / "x", progress=False)
    with pytest.raises(HandcastError, match="already exists"):
        build_benchmark("smoke", smoke, progress=False)
    with pytest.raises(HandcastError, match="seed"):
        build_benchmark("smoke", tmp_path / "y", seed=-3, progress=False)
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_more_groups_in_one_split_keep_every_other_clip(smoke, tmp_path):
    """with_groups / ``synth --groups``: the changed split grows, its first groups and every other split are the
    preset's own clips (a bigger training set around the same test clips); bad splits and counts are refused."""
    from handcast.synth import with_groups

    big = with_groups("smoke", {"lab_train": 6})
    assert big.splits["lab_train"].groups == 6 and big.splits["lab_test"] == PRESETS["smoke"].splits["lab_test"]
    out = build_benchmark(big, tmp_path / "big", seed=0, workers=1, progress=False)
    a, b = ClipStore(out), ClipStore(smoke)
    assert len(a.split("lab_train")) == 6 and len(b.split("lab_train")) == PRESETS["smoke"].splits["lab_train"].groups
    for split in SPLITS:
        n = len(b.split(split))
        for i in range(n):
            x, y = a.split(split).load(i, image=False), b.split(split).load(i, image=False)
            assert x.clip_id == y.clip_id
            np.testing.assert_array_equal(x.joints3d, y.joints3d)
    assert with_groups("smoke", {}) is PRESETS["smoke"]
    for bad, needle in (({"lab_trian": 3}, "unknown split"), ({"lab_train": 0}, "groups must be"),
                        ({"lab_train": 2.5}, "groups must be")):
        with pytest.raises(HandcastError, match=needle):
            with_groups("smoke", bad)
