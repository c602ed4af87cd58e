"""PyTorch dataset over a clip-store split (handcast.data.dataset): padding, masks, crops, collate."""

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from handcast.data.clip import FRAME_FIELDS
from handcast.data.dataset import DEFAULT_FIELDS, ClipDataset, collate
from handcast.data.store import write_clips
from handcast.data.testing import project, random_clip
from handcast.errors import HandcastError

PER_FRAME = [f for f in DEFAULT_FIELDS if f in FRAME_FIELDS]


@pytest.fixture
def store_and_clips(tmp_path):
    rng = np.random.default_rng(3)
    clips = [random_clip(rng, T, with_image=True, clip_id=f"c{k}") for k, T in enumerate([20, 32, 50, 16, 90])]
    c0 = clips[0]
    c0.valid[:] = True
    c0.valid[5, 0] = False
    c0.valid[19, 1] = False  # the last real frame: padding copies it, the mask must still say false
    c0.kp2d_conf[~c0.valid] = 0
    store = write_clips(tmp_path / "s", {"train": clips}, image_format="png")
    return store, clips


def test_padding_repeats_last_frame_and_masks(store_and_clips):
    store, clips = store_and_clips
    ds = ClipDataset(store, "train", horizon=32)
    item = ds[0]
    c = clips[0]
    assert item["clip_id"] == "c0" and item["index"] == 0 and item["num_frames"] == 20
    for name in PER_FRAME:
        x = item[name]
        assert x.dtype == torch.float32 and x.shape[0] == 32, name
        np.testing.assert_array_equal(x[:20].numpy(), getattr(c, name).astype(np.float32), err_msg=name)
        for t in range(20, 32):
            np.testing.assert_array_equal(x[t].numpy(), getattr(c, name)[19], err_msg=name)
    assert item["pose"].shape == (32, 2, 16, 3) and item["transl"].shape == (32, 2, 3)
    assert item["joints3d"].shape == (32, 2, 21, 3) and item["kp2d"].shape == (32, 2, 21, 2)
    assert item["kp2d_conf"].shape == (32, 2, 21) and item["world_to_cam"].shape == (32, 4, 4)
    assert item["betas"].shape == (2, 10) and item["K"].shape == (3, 3)
    mask = item["frame_mask"]
    assert mask.dtype == torch.bool and mask[:20].all() and not mask[20:].any()
    hv = item["hand_valid"]
    assert hv.dtype == torch.bool and hv.shape == (32, 2)
    np.testing.assert_array_equal(hv[:20].numpy(), c.valid)
    assert not hv[20:].any()
    assert not hv[5, 0] and hv[5, 1] and not hv[19, 1]
    # exact fit: no padding; long clip without random crop: first H frames
    it = ds[1]
    assert it["frame_mask"].all() and it["num_frames"] == 32
    it = ds[4]
    assert it["crop_start"] == 0 and it["frame_mask"].all()
    np.testing.assert_array_equal(it["kp2d"].numpy(), clips[4].kp2d[:32])


def test_zero_padding(store_and_clips):
    store, clips = store_and_clips
    item = ClipDataset(store, "train", horizon=24, pad="zero")[0]
    assert (item["joints3d"][20:] == 0).all() and (item["kp2d_conf"][20:] == 0).all()
    np.testing.assert_array_equal(item["world_to_cam"][20:].numpy(), np.repeat(clips[0].world_to_cam[19:], 4, 0))
    with pytest.raises(HandcastError, match="unknown pad"):
        ClipDataset(store, "train", horizon=24, pad="mirror")


def test_random_crop_is_reproducible_and_rebased(store_and_clips):
    store, clips = store_and_clips
    J0 = np.array([[0.09, 0.005, 0.006], [-0.09, 0.005, 0.006]])
    ds = ClipDataset(store, "train", horizon=32, random_crop=True, seed=5, rest_wrist=J0)
    starts = {ds[4]["crop_start"] for _ in range(3)}
    assert len(starts) == 1  # same (seed, epoch, index) -> same window
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        it = ds[4]
        s = it["crop_start"]
        seen.add(s)
        assert 0 <= s <= 90 - 32
        ref = clips[4].rebase(s, J0)
        np.testing.assert_allclose(it["world_to_cam"][0].numpy(), np.eye(4), atol=1e-6)
        np.testing.assert_allclose(it["joints3d"].numpy(), ref.joints3d[:32], atol=1e-6)
        np.testing.assert_allclose(it["transl"].numpy(), ref.transl[:32], atol=1e-6)
        np.testing.assert_allclose(it["pose"].numpy(), ref.pose[:32], atol=1e-5)
        # the window's 3D still projects onto the stored 2D track
        uv = project(it["K"].numpy(), it["world_to_cam"].numpy(), it["joints3d"].numpy())
        np.testing.assert_allclose(uv, clips[4].kp2d[s:s + 32], atol=2e-3)
    assert len(seen) > 3
    # a callable rest_wrist gets the clip's betas
    got = []
    ds2 = ClipDataset(store, "train", horizon=32, random_crop=True, seed=5,
                      rest_wrist=lambda betas: (got.append(betas.shape), J0)[1])
    ds2.set_epoch(next(e for e in range(12) if (ds.set_epoch(e) or ds[4]["crop_start"] > 0)))
    ds2[4]
    assert got == [(2, 10)]
    # without rest_wrist, pose/transl cannot be re-expressed
    with pytest.raises(HandcastError, match="needs rest_wrist"):
        ClipDataset(store, "train", horizon=32, random_crop=True)
    ClipDataset(store, "train", horizon=32, random_crop=True, fields=("kp2d", "joints3d", "world_to_cam"))
    ds3 = ClipDataset(store, "train", horizon=32, random_crop=True, rebase_crops=False, seed=1)
    it = ds3[4]
    s = it["crop_start"]
    np.testing.assert_array_equal(it["world_to_cam"].numpy(), clips[4].world_to_cam[s:s + 32])


def test_fields_subset_images_and_filters(store_and_clips):
    store, clips = store_and_clips
    ds = ClipDataset(store.split("train"), horizon=40, fields=("kp2d", "K"), load_image=True, min_frames=20)
    assert len(ds) == 4 and list(ds.indices) == [0, 1, 2, 4]
    it = ds[3]
    assert it["index"] == 4
    assert set(it) == {"kp2d", "K", "frame_mask", "hand_valid", "image", "index", "num_frames", "crop_start",
                       "clip_id", "group_id", "provenance", "domain"}
    img = it["image"]
    assert img.shape == (3, 48, 64) and img.dtype == torch.float32 and 0 <= img.min() and img.max() <= 1
    np.testing.assert_allclose(img.permute(1, 2, 0).numpy() * 255, clips[4].image, atol=1e-3)
    ds = ClipDataset(store, "train", horizon=8, indices=[3, 1], transform=lambda d: {**d, "extra": 1})
    assert [ds[k]["clip_id"] for k in range(2)] == ["c3", "c1"] and ds[0]["extra"] == 1
    with pytest.raises(HandcastError, match="unknown dataset field"):
        ClipDataset(store, "train", horizon=8, fields=("kp3d",))
    with pytest.raises(HandcastError, match="unknown split 'nope'"):
        ClipDataset(store, "nope", horizon=8)
    with pytest.raises(IndexError):
        ds[2]


def test_missing_images_rejected(tmp_path):
    rng = np.random.default_rng(0)
    store = write_clips(tmp_path / "s", {"train": [random_clip(rng, 16, clip_id="a")]})
    with pytest.raises(HandcastError, match="have no stored image"):
        ClipDataset(store, "train", horizon=16, load_image=True)


def test_collate_and_dataloader(store_and_clips):
    store, clips = store_and_clips
    ds = ClipDataset(store, "train", horizon=32)
    batch = collate([ds[0], ds[1], ds[3]])
    assert batch["pose"].shape == (3, 32, 2, 16, 3)
    assert batch["frame_mask"].shape == (3, 32) and batch["frame_mask"].dtype == torch.bool
    assert batch["index"].tolist() == [0, 1, 3] and batch["index"].dtype == torch.int64
    assert batch["clip_id"] == ["c0", "c1", "c3"]
    assert batch["frame_mask"].sum(1).tolist() == [20, 32, 16]
    # tensors of different shapes stay a list
    b2 = collate([{"image": torch.zeros(3, 4, 4)}, {"image": torch.zeros(3, 5, 4)}])
    assert isinstance(b2["image"], list)
    loader = torch.utils.data.DataLoader(pickle.loads(pickle.dumps(ds)), batch_size=2, collate_fn=collate)
    batches = list(loader)
    assert [b["pose"].shape[0] for b in batches] == [2, 2, 1]
    torch.testing.assert_close(batches[0]["kp2d"][1], ds[1]["kp2d"])


def test_hand_valid_respects_valid_in_2d_only_clip(tmp_path):
    rng = np.random.default_rng(9)
    c = random_clip(rng, 18, clip_id="x", provenance="2d-only")
    c = dataclasses.replace(c, joints3d=np.full_like(c.joints3d, np.nan))
    ds = ClipDataset(write_clips(tmp_path / "s", {"wild_test": [c]}), "wild_test", horizon=20)
    it = ds[0]
    assert it["provenance"] == "2d-only"
    assert torch.isfinite(it["joints3d"]).all()  # never NaN out of the store
    np.testing.assert_array_equal(it["hand_valid"][:18].numpy(), c.valid)
