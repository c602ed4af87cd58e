"""train.runner: a training run that goes non-finite stops with a one-line error and writes no checkpoint;
damaged training labels are refused before the run starts."""

import numpy as np
import pytest
import torch

from handcast.errors import HandcastError
from handcast.train.runner import check_training_labels, fit


def _module(poison_at: int):
    import lightning as L

    class Toy(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.model = torch.nn.Linear(3, 1)

        def training_step(self, batch, _):
            loss = (self.model(batch[0]) - batch[1]).pow(2).mean()
            if self.global_step >= poison_at:
                loss = loss * float("nan")
            return loss

        def validation_step(self, batch, _):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Toy()


def _loader():
    g = torch.Generator().manual_seed(0)
    ds = torch.utils.data.TensorDataset(torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g))
    return torch.utils.data.DataLoader(ds, batch_size=4)


T = {"max_steps": 6, "grad_clip": 1.0, "val_every_steps": 100, "save_every_steps": 1}


def test_a_nan_loss_stops_training_before_any_save(tmp_path):
    with pytest.raises(HandcastError, match=r"loss became nan at step 2") as e:
        fit(_module(poison_at=2), _loader(), _loader(), tmp_path, T, kind="toy", model_cfg={}, progress=False)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "toy.safetensors").exists()
    # the state saved before the loss went bad is kept; nothing from the bad step on
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values())


def test_a_finite_run_writes_its_checkpoint(tmp_path):
    path = fit(_module(poison_at=10**9), _loader(), _loader(), tmp_path, T, kind="toy", model_cfg={}, progress=False)
    assert path.is_file()


def test_damaged_labels_are_named(tmp_path):
    from handcast.data import ClipStore, write_clips
    from handcast.data.testing import random_clip

    rng = np.random.default_rng(0)
    write_clips(tmp_path / "s", {"a": [random_clip(rng, 10, clip_id=f"c{i}", hand_model="open") for i in range(3)]})
    check_training_labels(ClipStore(tmp_path / "s").split("a"))  # intact: accepted
    for field, value, clip in (("joints3d", np.nan, 1), ("world_to_cam", np.inf, 2), ("kp2d", 1e30, 0)):
        f = next((tmp_path / "s" / "a").glob(f"*/frames/{field}.npy"))
        arr = np.load(f, mmap_mode="r+")
        keep = arr.copy()
        arr.reshape(len(arr), -1)[clip * 10 + 4, 0] = value
        arr.flush()
        with pytest.raises(HandcastError, match=f"labels '{field}' of clip {clip} hold NaN"):
            check_training_labels(ClipStore(tmp_path / "s").split("a"))
        arr[:] = keep
        arr.flush()
        del arr
