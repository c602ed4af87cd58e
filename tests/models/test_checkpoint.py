"""Checkpoint I/O: round trip, and refusal of mismatching or foreign files."""

import json
import os

import pytest
import torch
from safetensors.torch import save_file

from handcast.errors import HandcastError
from handcast.models.checkpoint import load_weights_strict, read_checkpoint, save_checkpoint


def _model(width=8):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, width), torch.nn.Linear(width, 2))


def test_round_trip(tmp_path):
    m = _model()
    cfg = {"width": 8, "nested": {"a": [1, 2]}}
    p = save_checkpoint(tmp_path / "m.safetensors", m, "lift", cfg)
    config, state, meta = read_checkpoint(p, "lift")
    assert config == cfg
    m2 = _model()
    for prm in m2.parameters():
        torch.nn.init.zeros_(prm)
    load_weights_strict(m2, state, p)
    for a, b in zip(m.parameters(), m2.parameters()):
        assert torch.equal(a, b)
    assert list(tmp_path.iterdir()) == [p]  # no temporary left behind


def test_refuses_mismatch(tmp_path):
    p = save_checkpoint(tmp_path / "m.safetensors", _model(8), "lift", {"width": 8})
    _, state, _ = read_checkpoint(p, "lift")
    with pytest.raises(HandcastError, match="shape of"):
        load_weights_strict(_model(16), state, p)
    with pytest.raises(HandcastError, match="'lift' checkpoint, expected 'forecast'"):
        read_checkpoint(p, "forecast")
    del state["1.bias"]
    with pytest.raises(HandcastError, match="missing"):
        load_weights_strict(_model(8), state, p)


def test_refuses_foreign_and_corrupt_files(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    with pytest.raises(HandcastError, match="not a handcast checkpoint"):
        read_checkpoint(foreign, "lift")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01garbage")
    with pytest.raises(HandcastError, match="not a readable"):
        read_checkpoint(bad, "lift")
    future = tmp_path / "future.safetensors"
    save_file({"w": torch.zeros(2)}, str(future),
              metadata={"handcast_format": "99", "handcast_kind": "lift", "handcast_config": json.dumps({})})
    with pytest.raises(HandcastError, match="format 99"):
        read_checkpoint(future, "lift")
    with pytest.raises(HandcastError, match="not found"):
        read_checkpoint(tmp_path / "nope.safetensors", "lift")


def test_older_tensor_names_load_and_are_reported(tmp_path, capsys):
    """A checkpoint written before the motion codec's buffers were named 'wrist_*' (they were 'transl_*')
    loads with the same weights, and the renaming is said once on stderr."""
    from handcast.models.checkpoint import load_model
    from handcast.models.motion import MotionCodec

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.codec, self.head = MotionCodec(), torch.nn.Linear(3, 2)

    m = Net()
    m.codec.set_statistics(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.4, 0.5, 0.6]))
    new = save_checkpoint(tmp_path / "new.safetensors", m, "lift", {})
    _, state, meta = read_checkpoint(new, "lift")
    old = tmp_path / "old.safetensors"
    save_file({k.replace("codec.wrist_", "codec.transl_"): v for k, v in state.items()}, str(old), metadata=meta)
    assert "codec.transl_mean" in read_checkpoint(old, "lift")[1]

    a, _ = load_model(new, "lift", lambda cfg: Net())
    assert capsys.readouterr().err == ""
    b, _ = load_model(old, "lift", lambda cfg: Net())
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "older handcast" in err and "'codec.transl_mean' as 'codec.wrist_mean'" in err
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    torch.testing.assert_close(b.codec.wrist_std, torch.tensor([0.4, 0.5, 0.6]))


def test_the_old_module_path_is_an_alias_for_one_release():
    import handcast.models.checkpoint as new
    import handcast.train.checkpoint as old

    for name in ("load_model", "read_checkpoint", "save_checkpoint", "shipped_checkpoint", "load_weights_strict"):
        assert getattr(old, name) is getattr(new, name)


def test_model_configs_out_of_range_are_refused():
    from handcast.models.checkpoint import check_model_config

    good = {"denoiser": {"motion_dim": 198, "width": 128, "layers": 4, "heads": 4, "ff_width": 256, "dropout": 0.1},
            "image": {"img_size": [128, 96], "embed_dim": 128, "depth": 4, "num_heads": 4, "mlp_ratio": 2.0}}
    check_model_config(good, "cfg")
    for path, value, needle in ((("denoiser", "width"), -128, "denoiser.width must be in"),
                                (("denoiser", "width"), 1_000_000, "denoiser.width must be in"),
                                (("denoiser", "layers"), [4], "denoiser.layers must be an integer"),
                                (("denoiser", "heads"), 3, "width 128 is not divisible by heads 3"),
                                (("denoiser", "dropout"), float("nan"), "dropout must be a number"),
                                (("image", "img_size"), [128, "x"], "img_size"),
                                (("denoiser", "layers"), 256, "parameters")):
        import copy

        cfg = copy.deepcopy(good)
        cfg[path[0]][path[1]] = value
        if needle == "parameters":
            cfg["denoiser"].update(width=16384, ff_width=65536)
        with pytest.raises(HandcastError, match=needle):
            check_model_config(cfg, "cfg")


def test_nan_weights_are_refused_by_name(tmp_path):
    from handcast.models.checkpoint import check_finite_state
    from handcast.models.vit import ViT, ViTConfig, load_backbone

    state = {"a": torch.zeros(3), "b": torch.tensor([1.0, float("inf")]), "n": torch.arange(3)}
    with pytest.raises(HandcastError, match=r"1 tensor\(s\) hold NaN or infinite weights \(b\)"):
        check_finite_state(state, "src")
    check_finite_state({"a": torch.zeros(3), "n": torch.arange(3)}, "src")
    from safetensors.torch import save_file

    vit = ViT(ViTConfig(img_size=(32, 32), embed_dim=16, depth=1, num_heads=2, drop_path_rate=0.0))
    bad = {f"backbone.{k}": v.clone() for k, v in vit.state_dict().items()}
    next(v for v in bad.values() if v.is_floating_point()).view(-1)[0] = float("nan")
    save_file(bad, str(tmp_path / "hamer.safetensors"))
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    with pytest.raises(HandcastError, match="NaN"):
        load_backbone(vit, tmp_path / "hamer.safetensors")
    assert all(torch.equal(before[k], v) for k, v in vit.state_dict().items())  # left untouched


# ------------------------------------------------------------------ training state (--resume) and sniffing
class _Payload:
    """Unpickling this runs code: it touches a marker file (what a planted last.ckpt would do)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _training_state(m):
    return {"epoch": 0, "global_step": 4, "pytorch-lightning_version": "2.6", "state_dict": m.state_dict(),
            "loops": {}, "callbacks": {}, "optimizer_states": [], "lr_schedulers": []}


def test_torch_zip_named_safetensors_is_recognised_by_content(tmp_path):
    from handcast.models.checkpoint import sniff_checkpoint

    p = tmp_path / "fake.safetensors"
    torch.save(_model().state_dict(), p)
    assert sniff_checkpoint(p) == "zip"
    with pytest.raises(HandcastError, match="is a torch .pickle. file, not a safetensors checkpoint"):
        read_checkpoint(p, "lift")
    good = save_checkpoint(tmp_path / "m.bin", _model(), "lift", {})
    assert sniff_checkpoint(good) == "safetensors"


def test_read_training_state_round_trip_and_mismatch(tmp_path):
    from handcast.models.checkpoint import read_training_state

    m = _model()
    p = tmp_path / "last.ckpt"
    torch.save(_training_state(m), p)
    assert read_training_state(p, m.state_dict())["global_step"] == 4
    with pytest.raises(HandcastError, match="does not match the model this config builds: .*shape of"):
        read_training_state(p, _model(16).state_dict())
    bad = _model()
    with torch.no_grad():
        bad[0].weight[0, 0] = float("nan")
    torch.save(_training_state(bad), p)
    with pytest.raises(HandcastError, match="non-finite weights .0.weight"):
        read_training_state(p, m.state_dict())


@pytest.mark.parametrize("damage", ["truncated", "garbage", "safetensors", "no_state", "planted"])
def test_a_damaged_or_planted_training_state_is_one_line_and_never_runs_code(tmp_path, monkeypatch, damage):
    from handcast.models.checkpoint import read_training_state

    # torch honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD wherever weights_only is left unset: it must not matter
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    m = _model()
    p = tmp_path / "last.ckpt"
    marker = tmp_path / "PWNED"
    if damage == "truncated":
        torch.save(_training_state(m), p)
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    elif damage == "garbage":
        p.write_bytes(b"not a checkpoint at all")
    elif damage == "safetensors":
        save_checkpoint(p, m, "lift", {})
    elif damage == "no_state":
        torch.save({"hello": 1}, p)
    else:
        torch.save({**_training_state(m), "loops": _Payload(marker)}, p)
    with pytest.raises(HandcastError) as ei:
        read_training_state(p, m.state_dict())
    msg = str(ei.value)
    assert "\n" not in msg and str(p) in msg and "start afresh" in msg
    assert not marker.exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1"  # restored afterwards
