"""Training the lifting model end to end on a tiny random store: steps, checkpoint, resume, sampling."""

import re

import numpy as np
import pytest
import torch

from handcast.data.store import write_clips
from handcast.data.testing import random_clip
from handcast.errors import HandcastError
from handcast.train.config import load_config
from handcast.train.lift import load_lift, train_lift

MICRO = [
    "model.denoiser.width=32", "model.denoiser.layers=1", "model.denoiser.ff_width=64",
    "data.horizon=16", "train.batch_size=4", "train.val_clips=4", "train.val_steps=2",
    "train.val_every_steps=2",
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(0)
    p = tmp_path_factory.mktemp("lift") / "store"
    mk = lambda n, T: [random_clip(rng, T, clip_id=f"c{i}", hand_model="open", image_size=(256, 256)) for i in range(n)]  # noqa: E731
    write_clips(p, {"lab_train": mk(8, 20), "lab_val": mk(4, 12)})
    return p


@pytest.mark.slow
def test_train_resume_and_load(store, tmp_path):
    out = tmp_path / "run"
    ck = train_lift("tiny", MICRO, store=str(store), out=str(out), max_steps=2, progress=False)
    assert ck.is_file() and (out / "last.ckpt").is_file()
    with pytest.raises(HandcastError, match="not empty"):
        train_lift("tiny", MICRO, store=str(store), out=str(out), max_steps=2, progress=False)
    ck2 = train_lift("tiny", MICRO, store=str(store), out=str(out), max_steps=4, resume=True, progress=False)
    model = load_lift(ck2)
    assert model.denoiser.config.width == 32
    # resuming with another learning rate and the reprojection loss: the run goes on with the new lr
    train_lift("tiny", MICRO + ["train.lr=0.000123", "train.aux_reproj=1.0"], store=str(store), out=str(out),
               max_steps=6, resume=True, progress=False)
    state = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)  # our own file, just written
    assert state["global_step"] == 6
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.000123)
    # the wrist statistics of the training split travel in the checkpoint
    assert not torch.allclose(model.codec.wrist_mean, torch.tensor([0.103, 0.029, 0.478]))
    batch = {
        "kp2d": torch.rand(2, 16, 2, 21, 2) * 256, "kp2d_conf": torch.ones(2, 16, 2, 21),
        "K": torch.tensor([[200.0, 0, 128], [0, 200, 128], [0, 0, 1]]).expand(2, 3, 3),
        "world_to_cam": torch.eye(4).expand(2, 16, 4, 4), "image_size": torch.tensor([[256, 256]] * 2),
        "frame_mask": torch.ones(2, 16, dtype=torch.bool),
    }
    rot6d, wrist = model.sample(batch, num_samples=3, sampler="ddim", steps=2)
    assert rot6d.shape == (2, 3, 16, 2, 16, 6) and wrist.shape == (2, 3, 16, 2, 3)
    assert torch.isfinite(rot6d).all()

    # imputation with this checkpoint: every clip comes back, as 'imputed', with finite 3D
    from handcast.data import ClipStore
    from handcast.train.lift import impute

    summary = impute(ck2, store, "lab_val", tmp_path / "imp", steps=2, iterations=5, progress=False, samples=3)
    view = ClipStore(tmp_path / "imp").split("lab_val_imputed")
    assert len(view) == 4, summary
    clip = view.load(0)
    assert clip.provenance == "imputed" and np.isfinite(clip.joints3d).all()
    assert clip.meta["imputation"]["initialiser"] == f"lift:{ck2.name}:ddim-2x3"  # 3 samples of L averaged

    # the lifting benchmark runs end to end and writes its tables
    from handcast.eval.bench_lifting import bench_lifting

    res = bench_lifting(store, {"full": str(ck2)}, splits=("lab_val",), samplers=[("ddim", 2)],
                        out=tmp_path / "bench", optimisation=False, refine_iterations=3, progress=False, lift_samples=2)
    assert res["lift_samples"] == 2 and "the average of 2 samples per clip" in (tmp_path / "bench.md").read_text()
    assert set(res["table"]) == {"full", "full + alignment", "full + refinement"}
    # the reference with the true wrists has no root error (the fixture's clips are random, so M is not small)
    ref = res["references"]["true articulation and wrist, mean shape"]["lab_val"]
    assert ref["MR"] < 1e-3 < ref["M"]
    assert all(np.isfinite(v) for v in res["table"]["full"]["lab_val"].values())
    assert "| full |" in (tmp_path / "bench.md").read_text()


def test_config_rejects_unknown_keys_and_presets():
    cfg = load_config("lift", "tiny", ["train.lr=0.1"])
    assert cfg.train.lr == 0.1 and cfg.model.denoiser.layers == 4
    assert load_config("lift", "paper").model.denoiser.width == 1024
    with pytest.raises(HandcastError, match="invalid lift config"):
        load_config("lift", "tiny", ["train.lrr=0.1"])
    with pytest.raises(HandcastError, match="unknown lift config 'huge'"):
        load_config("lift", "huge")


def test_epochs_reach_persistent_workers(store):
    from handcast.data import ClipDataset, collate
    from handcast.train.augment import LiftAugment
    from handcast.train.lift import EpochDataset, EpochSampler

    fields = ("pose", "betas", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam", "image_size")
    ds = EpochDataset(ClipDataset(store, "lab_train", horizon=8, fields=fields, random_crop=True,
                                  rest_wrist=np.zeros((2, 3), np.float32)), LiftAugment())
    sampler = EpochSampler(len(ds), seed=0)
    dl = torch.utils.data.DataLoader(ds, batch_size=8, sampler=sampler, collate_fn=collate, num_workers=1,
                                     persistent_workers=True)
    first = next(iter(dl))
    sampler.set_epoch(1)
    second = next(iter(dl))
    sampler.set_epoch(0)
    again = next(iter(dl))
    assert sorted(first["index"].tolist()) == sorted(second["index"].tolist()) == list(range(8))
    order = lambda b: torch.argsort(b["index"])  # noqa: E731
    assert not torch.allclose(first["kp2d"][order(first)], second["kp2d"][order(second)])
    assert torch.equal(first["kp2d"], again["kp2d"])


@pytest.mark.slow
def test_ddp_with_two_cpu_processes_writes_the_same_checkpoint_format(store, tmp_path):
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # Lightning's DDP launcher re-runs this same command line for rank 1
    r = subprocess.run([sys.executable, "-m", "handcast.cli", "train", "lift", "--store", str(store), "--out", str(out), "--max-steps", "2",
                        "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", *MICRO],
                       capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    # not --quiet: Lightning's own lines show that two processes joined (--quiet hides them)
    assert "gloo" in (r.stderr + r.stdout).lower() or "distributed" in (r.stderr + r.stdout).lower()
    assert r.stdout.count("wrote checkpoint") == 1  # the result line once, from rank zero
    model = load_lift(out / "lift.safetensors")
    assert model.denoiser.config.width == 32


def test_reprojection_to_truth_known_answers():
    from handcast.train.lift import reprojection_to_truth

    B, T = 2, 3
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(B, T, 2, 21, 3, generator=gen) * 0.2 + torch.tensor([-0.1, -0.1, 0.4])
    batch = {"joints3d": gt, "world_to_cam": torch.eye(4).expand(B, T, 4, 4),
             "K": torch.tensor([[200.0, 0, 128], [0, 200, 96], [0, 0, 1]]).expand(B, 3, 3),
             "image_size": torch.tensor([[256, 192]] * B), "hand_valid": torch.ones(B, T, 2, dtype=torch.bool),
             "frame_mask": torch.ones(B, T, dtype=torch.bool)}
    assert float(reprojection_to_truth(gt, batch)) == pytest.approx(0.0, abs=1e-10)
    # sliding every keypoint along its viewing ray (a scale about the camera centre) changes nothing
    assert float(reprojection_to_truth(gt * 1.3, batch)) == pytest.approx(0.0, abs=1e-10)
    # a lateral shift dx at depth z moves each keypoint by f dx / z pixels: error (2 f dx / (z W))^2
    flat = gt.clone()
    flat[..., 2] = 0.5
    shifted = flat + torch.tensor([0.01, 0.0, 0.0])
    want = (2 * 200 * 0.01 / (0.5 * 256)) ** 2
    assert float(reprojection_to_truth(shifted, {**batch, "joints3d": flat})) == pytest.approx(want, rel=1e-5)
    # invalid hands and padded frames do not count
    bad = shifted.clone()
    bad[:, :, 1] += 1.0
    bad[:, 2] += 5.0
    hv = batch["hand_valid"].clone()
    hv[:, :, 1] = False
    fm = batch["frame_mask"].clone()
    fm[:, 2] = False
    got = reprojection_to_truth(bad, {**batch, "joints3d": flat, "hand_valid": hv, "frame_mask": fm})
    assert float(got) == pytest.approx(want, rel=1e-5)
    # a keypoint on the camera plane (it projects to ~1e9 px) counts as the cap, and gives no gradient
    from handcast.train.lift import IMAGE_ERROR_CAP

    one = shifted.clone()
    one[0, 0, 0, 5, 2] = 0.0
    one.requires_grad_(True)
    got = reprojection_to_truth(one, {**batch, "joints3d": flat})
    n = B * T * 2 * 21
    assert float(got) == pytest.approx(((n - 1) * want + IMAGE_ERROR_CAP) / n, rel=1e-5)
    got.backward()
    assert torch.isfinite(one.grad).all() and float(one.grad[0, 0, 0, 5].abs().sum()) == 0.0
    assert float(one.grad[0, 0, 0, 4].abs().sum()) > 0.0


@pytest.mark.slow
def test_a_run_killed_midway_resumes_from_its_last_save(store, tmp_path, monkeypatch):
    import handcast.train.lift as lift_mod

    original = lift_mod._lightning_module

    def dying():
        class Dies(original()):
            def training_step(self, batch, i):
                if self.global_step == 3:
                    raise RuntimeError("killed at step 3")
                return super().training_step(batch, i)

        return Dies

    out = tmp_path / "run"
    monkeypatch.setattr(lift_mod, "_lightning_module", dying)
    with pytest.raises(RuntimeError, match="killed"):
        train_lift("tiny", MICRO, store=str(store), out=str(out), max_steps=6, progress=False)
    saved = torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)  # our own file
    assert saved["global_step"] == 2  # saved every val_every_steps = 2 steps
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(lift_mod, "_lightning_module", original)
    ck = train_lift("tiny", MICRO, store=str(store), out=str(out), max_steps=6, resume=True, progress=False)
    assert torch.load(out / "last.ckpt", map_location="cpu", weights_only=False)["global_step"] == 6
    assert load_lift(ck).denoiser.config.width == 32


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("damage", ["planted", "truncated", "mismatched"])
def test_resume_reads_last_ckpt_safely_and_refuses_a_bad_one_in_one_line(store, tmp_path, monkeypatch, damage):
    """--resume never hands last.ckpt to an unprotected torch.load: a planted pickle does not run even with
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, and a damaged or foreign state is a one-line error."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "PWNED"
    last = out / "last.ckpt"
    sd = {"model.w": torch.zeros(3)}
    if damage == "planted":
        torch.save({"global_step": 2, "state_dict": sd, "loops": _Payload(marker)}, last)
        torch.load(last, weights_only=False)  # the file really runs code when unpickled unprotected
        assert marker.exists()
        marker.unlink()
    elif damage == "truncated":
        torch.save({"global_step": 2, "state_dict": sd}, last)
        last.write_bytes(last.read_bytes()[:200])
    else:
        torch.save({"global_step": 2, "state_dict": sd}, last)
    with pytest.raises(HandcastError, match="last.ckpt") as ei:
        train_lift("tiny", MICRO, store=str(store), out=str(out), max_steps=4, resume=True, progress=False)
    assert "\n" not in str(ei.value)
    assert not marker.exists()
    assert not (out / "lift.safetensors").exists()


def test_a_run_folder_that_is_a_file_is_refused_in_one_line(store, tmp_path):
    (tmp_path / "f").write_text("user")
    for out in (tmp_path / "f", tmp_path / "f" / "run"):
        for resume in (False, True):
            with pytest.raises(HandcastError, match="is an existing file|is a file, not a folder"):
                train_lift("tiny", MICRO, store=str(store), out=str(out), max_steps=2, resume=resume, progress=False)
    assert (tmp_path / "f").read_text() == "user"


@pytest.mark.parametrize("override, needle", [
    ("data.augment.p_new_camera=1.5", "p_new_camera must be in [0, 1]"),
    ("data.augment.hfov_deg=[0,100]", "hfov_deg must be in (0, 179]"),
    ("data.augment.hfov_deg=[20,abc]", "hfov_deg must be a number in (0, 179]"),
    ("data.augment.view_deg=270", "view_deg must be in [0, 180]"),
    ("data.augment.hand_px=[40,-1]", "hand_px must be in (0, 100000]"),
])
def test_camera_augmentation_keys_are_range_checked(override, needle):
    from handcast.errors import HandcastError
    from handcast.train.config import load_config

    with pytest.raises(HandcastError, match=re.escape(needle)):
        load_config("lift", "tiny", [override])
    assert load_config("lift", "tiny", ["data.augment.p_new_camera=1.0"]).data.augment.p_new_camera == 1.0


def test_a_bad_view_sampling_is_refused_before_the_run_folder_exists(store, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(HandcastError, match="view_sampling must be axis_angle or uniform"):
        train_lift("tiny", MICRO + ["data.augment.view_sampling=sideways"], store=str(store), out=str(out),
                   max_steps=1, progress=False)
    assert not out.exists()


def test_uniform_view_sampling_turns_the_scene_uniformly():
    """Haar-uniform turns: mean angle pi/2 + 2/pi (the axis-angle draw's is pi/2), and half of the views are
    turned by more than 132.3 deg from the store's own camera."""
    from handcast.train.augment import _random_rotation, _uniform_rotation

    rng = np.random.default_rng(0)
    u = np.linalg.norm([_uniform_rotation(rng) for _ in range(20000)], axis=-1)
    a = np.linalg.norm([_random_rotation(rng, 180.0) for _ in range(20000)], axis=-1)
    assert abs(u.mean() - (np.pi / 2 + 2 / np.pi)) < 0.02 and abs(a.mean() - np.pi / 2) < 0.03
    assert abs((u > 2.3099).mean() - 0.5) < 0.03


def test_quiet_training_prints_only_its_result(store, tmp_path, capfd):
    """--quiet: Lightning's lines ("GPU available", tips, warnings) do not reach the terminal."""
    from handcast.cli import main

    code = main(["train", "lift", "--store", str(store), "--out", str(tmp_path / "q"), "--max-steps", "2", "--quiet",
                 *MICRO, "train.num_workers=0"])
    cap = capfd.readouterr()
    assert code in (0, None)
    assert cap.err.strip() == "", cap.err
    assert cap.out.strip().splitlines() == [f"wrote checkpoint {tmp_path / 'q' / 'lift.safetensors'}"]


def _micro_model_cfg(**cond):
    c = dict(keypoints=True, camera=True, plucker=True, kpe=True, kpe_freqs=2, mode="add", local=False)
    c.update(cond)
    return dict(denoiser=dict(motion_dim=198, width=16, layers=1, heads=2, ff_width=32, dropout=0.0), conditioning=c,
                diffusion=dict(num_train_timesteps=50), p_token_dropout=0.1, p_cond_dropout=0.1)


def test_init_grows_a_model_by_new_condition_modalities_and_refuses_other_changes(tmp_path):
    from handcast.models.checkpoint import save_checkpoint
    from handcast.models.lifting import build_lift
    from handcast.train.lift import _init_model

    torch.manual_seed(0)
    old_cfg = _micro_model_cfg()
    old = build_lift(old_cfg).eval()
    path = save_checkpoint(tmp_path / "old.safetensors", old, "lift", old_cfg)
    assert _init_model(str(path), old_cfg) is not None  # same config: plain start
    grown = _init_model(str(path), _micro_model_cfg(local=True)).eval()
    assert grown.cond.local and "local" in grown.conditioner.mlps
    b, t = 2, 6
    g = torch.Generator().manual_seed(1)
    batch = dict(kp2d=torch.rand(b, t, 2, 21, 2, generator=g) * 200, kp2d_conf=torch.ones(b, t, 2, 21),
                 K=torch.tensor([[180.0, 0, 100], [0, 180, 100], [0, 0, 1]]).expand(b, 3, 3),
                 world_to_cam=torch.eye(4).expand(b, t, 4, 4).clone(), image_size=torch.tensor([[200, 200]] * b),
                 frame_mask=torch.ones(b, t, dtype=torch.bool))
    x = torch.randn(b, t, 198, generator=g)
    steps = torch.tensor([10, 40])
    with torch.no_grad():
        ref = old.denoise(x, steps, *old.condition(batch), batch["frame_mask"])
        out = grown.denoise(x, steps, *grown.condition(batch), batch["frame_mask"])
    assert torch.allclose(ref, out, atol=1e-6)  # the grown model starts where the checkpoint was
    other = _micro_model_cfg(local=True)
    other["denoiser"] = dict(other["denoiser"], width=32)
    with pytest.raises(HandcastError, match="differs from this run's in conditioning, denoiser"):
        _init_model(str(path), other)
    path2 = save_checkpoint(tmp_path / "with_local.safetensors", grown, "lift", _micro_model_cfg(local=True))
    with pytest.raises(HandcastError, match="differs from this run's in conditioning"):
        _init_model(str(path2), _micro_model_cfg())  # switching a modality off is not growth


def test_init_reads_a_checkpoint_written_before_a_conditioning_key_existed(tmp_path):
    from handcast.models.checkpoint import save_checkpoint
    from handcast.models.lifting import build_lift
    from handcast.train.lift import _init_model

    cfg = _micro_model_cfg()
    old_cfg = dict(cfg, conditioning={k: v for k, v in cfg["conditioning"].items() if k != "local"})
    path = save_checkpoint(tmp_path / "old.safetensors", build_lift(old_cfg), "lift", old_cfg)
    assert not _init_model(str(path), cfg).cond.local


@pytest.mark.slow
def test_wrist_statistics_follow_the_augmented_cameras_when_asked(store, tmp_path):
    """data.wrist_stats=augmented: the codec's wrist statistics spread over the real-footage cameras' depths
    (also when starting from --init, whose own statistics are replaced); store: the stored clips'; a bad value is
    refused before the run folder exists."""
    from handcast.data.dataset import wrist_statistics
    from handcast.data.store import ClipStore

    _, std = wrist_statistics(ClipStore(store).split("lab_train"))
    base = train_lift("tiny", MICRO + ["data.augment.p_new_camera=1.0"], store=str(store), out=str(tmp_path / "s"),
                      max_steps=1, progress=False)
    assert torch.allclose(load_lift(base).codec.wrist_std, torch.as_tensor(std, dtype=torch.float32), atol=1e-5)
    for init in (None, str(base)):
        ck = train_lift("tiny", MICRO + ["data.augment.p_new_camera=1.0", "data.wrist_stats=augmented"],
                        store=str(store), out=str(tmp_path / f"a{init is None}"), max_steps=1, progress=False, init=init)
        assert load_lift(ck).codec.wrist_std[2] > 2 * std[2]  # depths of 0.15-3 m, not the stored cameras'
    out = tmp_path / "bad"
    with pytest.raises(HandcastError, match="wrist_stats"):
        train_lift("tiny", MICRO + ["data.wrist_stats=nope"], store=str(store), out=str(out), max_steps=1, progress=False)
    assert not out.exists()


def test_cosine_lr_factor_known_answers():
    from handcast.train.runner import cosine_lr_factor

    f = cosine_lr_factor(100, warmup_frac=0.1, floor=0.2)
    assert [f(0), f(4), f(9)] == pytest.approx([0.1, 0.5, 1.0])  # linear warm-up over 10 steps
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.6)  # half-way down the cosine: (1 + 0.2) / 2
    assert f(100) == pytest.approx(0.2) and f(500) == pytest.approx(0.2)  # the floor at and past the end
    later = [f(s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(later, later[1:]))


def test_a_cosine_schedule_decays_the_lr_over_the_run_and_resumes_at_its_step(store, tmp_path):
    """train.lr_schedule=cosine: the optimiser's lr at the last step is lr x the factor of that step, also after
    a resume with a new lr (the schedule's base follows the config); constant keeps lr; a bad name is refused
    before the run folder exists."""
    from handcast.train.runner import cosine_lr_factor

    def lr_of(run):
        state = torch.load(run / "last.ckpt", map_location="cpu", weights_only=False)  # our own file
        return state["global_step"], state["optimizer_states"][0]["param_groups"][0]["lr"]

    out = tmp_path / "run"
    cos = MICRO + ["train.lr=0.001", "train.lr_schedule=cosine", "train.lr_floor=0.25"]
    train_lift("tiny", cos, store=str(store), out=str(out), max_steps=8, progress=False)
    f = cosine_lr_factor(8, floor=0.25)
    step, lr = lr_of(out)
    assert step == 8 and lr == pytest.approx(0.001 * f(8)) and lr == pytest.approx(0.00025)
    train_lift("tiny", [*cos, "train.lr=0.002", "train.max_steps=12"], store=str(store), out=str(out), max_steps=10,
               resume=True, progress=False)
    f = cosine_lr_factor(10, floor=0.25)
    step, lr = lr_of(out)
    assert step == 10 and lr == pytest.approx(0.002 * f(10))
    const = tmp_path / "const"
    train_lift("tiny", MICRO + ["train.lr=0.001"], store=str(store), out=str(const), max_steps=4, progress=False)
    assert lr_of(const) == (4, pytest.approx(0.001))
    bad = tmp_path / "bad"
    with pytest.raises(HandcastError, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        train_lift("tiny", MICRO + ["train.lr_schedule=linear"], store=str(store), out=str(bad), max_steps=1,
                   progress=False)
    assert not bad.exists()
    with pytest.raises(HandcastError, match=re.escape("lr_floor must be in [0, 1]")):
        load_config("forecast", "tiny", ["train.lr_floor=2"])
