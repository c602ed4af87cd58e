"""The ViTPose/HaMeR-compatible ViT: forward semantics, parameter names/shapes, safe checkpoint loading."""

import math
import re
import zipfile

import pytest
import torch
import torch.nn.functional as F

from handcast.errors import HandcastError
from handcast.models.vit import ViT, ViTConfig, load_backbone, state_shapes

SMALL = ViTConfig(embed_dim=32, depth=2, num_heads=4, drop_path_rate=0.0)


def _model(cfg=SMALL, seed=0):
    torch.manual_seed(seed)
    m = ViT(cfg).eval()
    with torch.no_grad():  # non-trivial norms and biases so that a wrong layout would show
        for name, p in m.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return m


def _reference_forward(m, x):
    """Written from the ViTPose description, independently of handcast.models.vit."""
    sd, cfg = m.state_dict(), m.config
    c, heads = cfg.embed_dim, cfg.num_heads
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=16, padding=2)
    b = x.shape[0]
    t = t.permute(0, 2, 3, 1).reshape(b, -1, c)  # row-major grid
    pe = sd["pos_embed"][0]
    t = t + pe[1:] + pe[0]  # the unused class slot is added to every patch
    d = c // heads
    for i in range(cfg.depth):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (c,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        qkv = h @ sd[p + "attn.qkv.weight"].T + sd[p + "attn.qkv.bias"]
        q, k, v = (qkv[..., j * c:(j + 1) * c].reshape(b, -1, heads, d).transpose(1, 2) for j in range(3))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
        o = (att @ v).transpose(1, 2).reshape(b, -1, c)
        t = t + o @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        h = F.layer_norm(t, (c,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        h = F.gelu(h @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        t = t + h @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
    return F.layer_norm(t, (c,), sd["last_norm.weight"], sd["last_norm.bias"], eps=1e-6)


def test_forward_matches_an_independent_reference(one_thread):
    m = _model()
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        y = m(x)
        ref = _reference_forward(m, x)
    assert y.shape == (2, 192, 32) and m.grid == (16, 12)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


def test_tokens_are_in_row_major_grid_order(one_thread):
    m = _model(ViTConfig(embed_dim=16, depth=0, num_heads=4, drop_path_rate=0.0))  # no mixing between tokens
    x = torch.randn(1, 3, 256, 192)
    x2 = x.clone()
    # the patch at grid row 1, column 0 sees pixel rows 14..29 and columns -2..13 (2 px of padding)
    x2[0, :, 20, 5] += 3.0
    with torch.no_grad():
        changed = (m(x) - m(x2)).abs().amax(-1)[0] > 1e-6
    assert changed.nonzero().flatten().tolist() == [12]
    # the last patch sees rows 238..253 and columns 174..189: ViTPose's padding leaves the last 2 rows and
    # columns of the image unseen
    for (r, c), tokens in (((253, 189), [191]), ((255, 191), []), ((100, 191), [])):
        x3 = x.clone()
        x3[0, :, r, c] += 3.0
        with torch.no_grad():
            changed = (m(x) - m(x3)).abs().amax(-1)[0] > 1e-6
        assert changed.nonzero().flatten().tolist() == tokens


def test_huge_has_hamer_names_and_shapes():
    shapes = state_shapes(ViTConfig.huge())  # meta device: no memory
    expected = {
        "patch_embed.proj.weight": (1280, 3, 16, 16), "patch_embed.proj.bias": (1280,),
        "pos_embed": (1, 16 * 12 + 1, 1280),
        "blocks.0.norm1.weight": (1280,), "blocks.0.attn.qkv.weight": (3 * 1280, 1280),
        "blocks.0.attn.qkv.bias": (3 * 1280,), "blocks.17.attn.proj.weight": (1280, 1280),
        "blocks.31.norm2.bias": (1280,), "blocks.31.mlp.fc1.weight": (4 * 1280, 1280),
        "blocks.31.mlp.fc1.bias": (4 * 1280,), "blocks.31.mlp.fc2.weight": (1280, 4 * 1280),
        "last_norm.weight": (1280,), "last_norm.bias": (1280,),
    }
    for k, s in expected.items():
        assert shapes[k] == s, k
    per_block = {f"{m}.{w}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
                 for w in ("weight", "bias")}
    names = set(shapes)
    assert names == {"pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "last_norm.weight",
                     "last_norm.bias"} | {f"blocks.{i}.{n}" for i in range(32) for n in per_block}
    n_params = sum(math.prod(s) for s in shapes.values())
    assert 630e6 < n_params < 632e6  # ViT-H/16 as in HaMeR
    cfg = ViTConfig.huge()
    assert (cfg.embed_dim, cfg.depth, cfg.num_heads, cfg.mlp_ratio, cfg.patch_padding) == (1280, 32, 16, 4.0, 2)
    assert ViTConfig.from_dict(cfg.to_dict()) == cfg


def test_config_rejects_inconsistent_sizes():
    with pytest.raises(HandcastError, match="divisible"):
        ViTConfig(embed_dim=30, num_heads=4)
    with pytest.raises(HandcastError, match="grid"):
        ViTConfig(patch_padding=9)
    with pytest.raises(HandcastError, match="shape"):
        ViT(ViTConfig.tiny())(torch.zeros(1, 3, 256, 256))


def test_gradient_checkpointing_gives_the_same_gradients(one_thread):
    m = _model().train()
    x = torch.randn(1, 3, 256, 192)
    m(x).square().mean().backward()
    g = [p.grad.clone() for p in m.parameters()]
    m.zero_grad()
    m.grad_checkpointing = True
    m(x).square().mean().backward()
    for a, p in zip(g, m.parameters()):
        torch.testing.assert_close(a, p.grad)


def test_drop_path_only_in_training(one_thread):
    m = _model(ViTConfig(embed_dim=16, depth=2, num_heads=4, drop_path_rate=0.5))
    x = torch.randn(8, 3, 256, 192)
    with torch.no_grad():
        assert torch.equal(m(x), m(x))
        m.train()
        torch.manual_seed(0)
        a = m(x)
        torch.manual_seed(1)
        assert not torch.allclose(a, m(x))


# ----------------------------------------------------------------------------------------- checkpoints


def _lightning_ckpt(model, extra=None):
    sd = {f"backbone.{k}": v.clone() for k, v in model.state_dict().items()}
    sd["mano_head.decpose.weight"] = torch.randn(96, 8)
    ckpt = {"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "2.0.0", "state_dict": sd,
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3)}}}]}
    ckpt.update(extra or {})
    return ckpt


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_load_lightning_ckpt_and_safetensors(tmp_path, one_thread):
    from safetensors.torch import save_file

    src = _model(seed=1)
    x = torch.randn(1, 3, 256, 192)
    torch.save(_lightning_ckpt(src), tmp_path / "hamer.ckpt")
    dst = _model(seed=2)
    assert not _same(src, dst)
    rep = load_backbone(dst, tmp_path / "hamer.ckpt")
    assert _same(src, dst)
    assert rep.format == "torch" and rep.prefix == "backbone." and len(rep.loaded) == len(src.state_dict())
    assert rep.ignored_globals == ()
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))

    flat = {f"backbone.{k}": v.contiguous() for k, v in src.state_dict().items()}
    flat["mano_head.x"] = torch.zeros(2)
    save_file(flat, str(tmp_path / "w.bin"))  # recognised by content, not by suffix
    dst = _model(seed=3)
    assert load_backbone(dst, tmp_path / "w.bin").format == "safetensors" and _same(src, dst)

    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(tmp_path / "bare.safetensors"))
    dst = _model(seed=4)
    assert load_backbone(dst, tmp_path / "bare.safetensors").prefix == "" and _same(src, dst)


class FakeCfgNode(dict):
    """Stands for HaMeR's yacs CfgNode in hyper_parameters (a dict subclass with attributes)."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.__dict__["frozen"] = True


def _side_effect(path):
    with open(path, "w") as f:
        f.write("code from the checkpoint ran\n")
    return 0


class Payload:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_side_effect, (self.path,))


def test_checkpoint_with_foreign_objects_loads_without_running_them(tmp_path, one_thread):
    src = _model(seed=1)
    marker = tmp_path / "pwned"
    ckpt = _lightning_ckpt(src, {"hyper_parameters": {"cfg": FakeCfgNode(MODEL={"IMAGE_SIZE": 256})},
                                 "callbacks": {"x": Payload(str(marker))}})
    torch.save(ckpt, tmp_path / "hamer.ckpt")
    # the payload is real: an unrestricted load would run it
    torch.load(tmp_path / "hamer.ckpt", weights_only=False)
    assert marker.exists()
    marker.unlink()

    dst = _model(seed=2)
    rep = load_backbone(dst, tmp_path / "hamer.ckpt")
    assert not marker.exists()
    assert _same(src, dst)
    assert any(g.endswith("FakeCfgNode") for g in rep.ignored_globals)
    assert any(g.endswith("_side_effect") for g in rep.ignored_globals)


def test_strict_mismatch_lists_names_and_shapes(tmp_path):
    torch.save(_lightning_ckpt(_model()), tmp_path / "small.ckpt")
    with torch.device("meta"):
        huge = ViT(ViTConfig.huge())
    with pytest.raises(HandcastError) as e:
        load_backbone(huge, tmp_path / "small.ckpt")
    msg = str(e.value)
    assert "\n" not in msg
    assert "missing (blocks.2." in msg and "pos_embed: file (1, 193, 32) vs model (1, 193, 1280)" in msg
    assert "width 32 with 2 blocks" in msg


def test_non_strict_loads_what_fits(tmp_path, one_thread):
    deeper = _model(ViTConfig(embed_dim=32, depth=3, num_heads=4, drop_path_rate=0.0), seed=5)
    torch.save(_lightning_ckpt(deeper), tmp_path / "deep.ckpt")
    dst = _model(seed=6)
    with pytest.raises(HandcastError, match="unexpected"):
        load_backbone(dst, tmp_path / "deep.ckpt")
    rep = load_backbone(dst, tmp_path / "deep.ckpt", strict=False)
    assert rep.missing == () and rep.mismatched == ()
    assert rep.unexpected and all(k.startswith("blocks.2.") for k in rep.unexpected)
    torch.testing.assert_close(dst.blocks[1].mlp.fc2.weight, deeper.blocks[1].mlp.fc2.weight)
    wider = _model(ViTConfig(embed_dim=64, depth=2, num_heads=4, drop_path_rate=0.0))
    torch.save(_lightning_ckpt(wider), tmp_path / "wide.ckpt")
    with pytest.raises(HandcastError, match="no backbone entry"):
        load_backbone(dst, tmp_path / "wide.ckpt", strict=False)


def test_bad_checkpoint_files(tmp_path):
    m = _model()
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    with zipfile.ZipFile(tmp_path / "other.ckpt", "w") as z:
        z.writestr("hello.txt", "a zip, but not from torch")
    torch.save(torch.zeros(3), tmp_path / "tensor.ckpt")
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3)}}, tmp_path / "nobackbone.ckpt")
    (tmp_path / "cut.ckpt").write_bytes(b"PK\x03\x04" + b"\0" * 64)
    cases = [
        ("missing.ckpt", "not found"), ("notes.ckpt", "not a checkpoint"), ("other.ckpt", "cannot read"),
        ("tensor.ckpt", "no state dict"), ("nobackbone.ckpt", r"no 'backbone\.\*' entries .*encoder"),
        ("cut.ckpt", "cannot read"),
    ]
    for name, words in cases:
        with pytest.raises(HandcastError, match=words) as e:
            load_backbone(m, tmp_path / name)
        assert "\n" not in str(e.value), name
    assert re.search("not a file", _err(lambda: load_backbone(m, tmp_path)))


def _err(fn):
    try:
        fn()
    except HandcastError as e:
        return str(e)
    raise AssertionError("no HandcastError")
