"""Training driver of the pose estimator (handcast.train.pose): stages, resume, outputs, benchmark on a smoke run."""

import json

import pytest

from handcast.errors import HandcastError

SMALL = [
    "model.hand_model=open",
    "model.backbone.embed_dim=32", "model.backbone.depth=1", "model.backbone.num_heads=2",
    "model.condition.pool=[2,2]",
    "model.joint.width=32", "model.joint.layers=1", "model.joint.heads=2", "model.joint.ff_width=64",
    "model.ae.pca_components=16", "model.ae.latent_dim=10", "model.ae.hidden=64",
    "model.mesh.width=32", "model.mesh.layers=1", "model.mesh.heads=2", "model.mesh.ff_width=64",
    "model.regressor.width=32", "model.regressor.layers=1", "model.regressor.heads=2", "model.regressor.ff_width=64",
    "train.ae.steps=30", "train.ae.meshes=200", "train.joint.steps=3", "train.joint.batch_size=4",
    "train.hyps.samples=2", "train.mesh.steps=3", "train.mesh.batch_size=4",
    "train.regressor.steps=3", "train.regressor.batch_size=4",
]


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    from handcast.synth.crops import build_crops

    return build_crops(tmp_path_factory.mktemp("crops") / "smoke", "smoke", seed=5, progress=False)


def test_stages_resume_and_benchmark(crops, tmp_path):
    from handcast.eval.bench_pose import bench_pose, format_report
    from handcast.models.cascade.model import load_cascade
    from handcast.train.pose import train_pose

    run = tmp_path / "run"
    paths = train_pose("tiny", SMALL, crops=str(crops), out=str(run), stages=["ae", "joint"], progress=False)
    assert set(paths) == {"pose"}
    assert load_cascade(paths["pose"], require_complete=False).trained_stages == ("ae", "joint")
    with pytest.raises(HandcastError, match="not empty"):
        train_pose("tiny", SMALL, crops=str(crops), out=str(run), progress=False)
    paths = train_pose("tiny", SMALL, crops=str(crops), out=str(run), resume=True, progress=False)
    assert set(paths) == {"pose", "regressor"}
    assert set(load_cascade(paths["pose"]).trained_stages) == {"ae", "joint", "mesh"}
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == ["ae", "joint", "mesh", "regressor"]
    assert (run / "hyps.npz").is_file() and (run / "config.yaml").is_file()

    r = bench_pose(run, crops=crops, steps_table=(1,), fit_iterations=5, progress=False, out=tmp_path / "bench")
    assert {"regressor", "joint+fit", "cascade-median", "cascade-reproj", "oracle"} <= set(r["table"])
    # the oracle picks, per hand, the hypothesis nearest the ground truth: never worse than hypothesis 0
    assert r["table"]["oracle"]["PA-MPVPE"] <= r["table"]["cascade-single"]["PA-MPVPE"] + 1e-9
    assert "## Steps table" in format_report(r) and (tmp_path / "bench.md").is_file()
    assert json.loads((tmp_path / "bench.json").read_text())["items"] == r["items"]


def test_stage_order_and_crop_set_mismatch_are_errors(crops, tmp_path):
    from handcast.train.pose import train_pose

    with pytest.raises(HandcastError, match="needs the stage"):
        train_pose("tiny", SMALL, crops=str(crops), out=str(tmp_path / "a"), stages=["mesh"], progress=False)
    ov = [o for o in SMALL if not o.startswith("model.hand_model")] + ["model.hand_model=mano"]
    with pytest.raises(HandcastError, match="built with the 'open' hand model"):
        train_pose("tiny", ov, crops=str(crops), out=str(tmp_path / "b"), progress=False)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before writing anything


def test_a_run_killed_mid_stage_resumes_that_stage(crops, tmp_path, monkeypatch):
    import torch

    from handcast.models.cascade.mesh_diffusion import MeshLatentDiffusion
    from handcast.models.cascade.model import load_cascade
    from handcast.train.pose import train_pose

    run, ov = tmp_path / "run", SMALL + ["train.mesh.steps=4", "train.save_every_steps=2"]
    loss, calls, kill_at = MeshLatentDiffusion.loss, [], [3]

    def loss_or_kill(self, *args, **kwargs):  # the process dies in the stage's step 3
        calls.append(1)
        if len(calls) in kill_at:
            raise RuntimeError("killed")
        return loss(self, *args, **kwargs)

    monkeypatch.setattr(MeshLatentDiffusion, "loss", loss_or_kill)
    with pytest.raises(RuntimeError, match="killed"):
        train_pose("tiny", ov, crops=str(crops), out=str(run), progress=False)
    assert load_cascade(run / "pose.safetensors", require_complete=False).trained_stages == ("ae", "joint")
    assert torch.load(run / "last_mesh.ckpt", map_location="cpu", weights_only=False)["global_step"] == 2

    calls.clear()  # count the resumed run's steps, with no more kills
    kill_at.clear()
    paths = train_pose("tiny", ov, crops=str(crops), out=str(run), resume=True, progress=False)
    assert len(calls) == 2  # steps 3 and 4: the stage went on from its saved state
    assert set(load_cascade(paths["pose"]).trained_stages) == {"ae", "joint", "mesh"} and "regressor" in paths
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in log] == ["ae", "joint", "mesh", "regressor"]
    assert "val_pa_mpvpe_mm" in log[2] and "val_pa_mpvpe_mm" in log[3]


def test_a_fixed_seed_gives_the_same_run(crops, tmp_path):
    from safetensors.torch import load_file

    from handcast.train.pose import train_pose

    logs = []
    for name in ("a", "b"):
        train_pose("tiny", SMALL, crops=str(crops), out=str(tmp_path / name), stages=["joint"], progress=False)
        logs.append(json.loads((tmp_path / name / "log.jsonl").read_text()))
    a, b = (load_file(tmp_path / name / "pose.safetensors") for name in ("a", "b"))
    assert all(a[k].equal(b[k]) for k in a)
    assert logs[0]["val_pa_mpjpe_mm"] == logs[1]["val_pa_mpjpe_mm"]


def test_init_fine_tunes_stage_one_only_with_the_camera_augmentation(crops, tmp_path, hm):
    """--init with --stages joint: a complete cascade whose autoencoder and stage 2 are the init's, stage 1
    changed; the camera augmentation, pool hands and keypoints-only items run."""
    import torch
    from safetensors.torch import load_file

    from handcast.models.cascade.model import load_cascade, save_cascade
    from handcast.models.cascade.testing import small_cascade
    from handcast.train.pose import train_pose

    init = save_cascade(tmp_path / "init.safetensors", small_cascade(hm, seed=4))
    ov = SMALL + ["data.camera_aug.p=0.5", "train.joint.p_keypoints_only=0.5", "data.pool_hands.p=0.5",
                  "data.pool_hands.size=40"]
    paths = train_pose("tiny", ov, crops=str(crops), out=str(tmp_path / "ft"), stages=["joint"], init=str(init),
                       progress=False)
    assert set(load_cascade(paths["pose"]).trained_stages) == {"ae", "joint", "mesh"}
    a, b = load_file(str(init)), load_file(str(paths["pose"]))
    assert set(a) == set(b)
    same = [k for k in a if torch.equal(a[k], b[k])]
    assert all(k in same for k in a if k.startswith(("ae.", "mesh.")))
    assert any(k not in same for k in a if k.startswith("joint."))
