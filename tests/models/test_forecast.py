"""Forecasting model F: conditioning, heads, label masking, sampling; the keypoints file."""

import json

import numpy as np
import pytest
import torch

from handcast.errors import HandcastError
from handcast.models.forecast import (
    ForecastConfig,
    ForecastModel,
    keypoint_feature_dim,
    keypoint_features,
    letterbox,
)

DEN = {"width": 32, "layers": 1, "heads": 2, "ff_width": 64, "dropout": 0.0}
DIF = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "sample"}
VIT = {"img_size": [64, 48], "patch_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2, "mlp_ratio": 2.0,
       "drop_path_rate": 0.0, "patch_padding": 2}


def cfg(**kw):
    base = dict(denoiser=DEN, diffusion=DIF, image=VIT, keypoints=False)
    base.update(kw)
    return ForecastConfig(**base)


def batch(b=2, t=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, t, 2, 21, 2, generator=g) * 200 + 28
    conf = torch.ones(b, t, 2, 21)
    pose = 0.3 * torch.randn(b, t, 2, 16, 3, generator=g)
    joints = torch.randn(b, t, 2, 21, 3, generator=g) * 0.05 + torch.tensor([0.0, 0.0, 0.5])
    return {
        "image": torch.rand(b, 3, 256, 256, generator=g), "kp2d": kp, "kp2d_conf": conf,
        "K": torch.tensor([[200.0, 0, 127.5], [0, 200, 127.5], [0, 0, 1]]).expand(b, 3, 3),
        "image_size": torch.tensor([[256, 256]] * b), "world_to_cam": torch.eye(4).expand(b, t, 4, 4),
        "frame_mask": torch.ones(b, t, dtype=torch.bool), "hand_valid": torch.ones(b, t, 2, dtype=torch.bool),
        "pose": pose, "joints3d": joints, "betas": torch.zeros(b, 2, 10), "provenance": ["gt"] * b,
    }


def test_config_errors():
    with pytest.raises(HandcastError, match="image tokens, keypoint tokens"):
        cfg(image=None, keypoints=False)
    with pytest.raises(HandcastError, match="head"):
        cfg(head="gan")
    with pytest.raises(HandcastError, match="needs the diffusion head"):
        cfg(head="regression", aux2d="diffusion")


def test_letterbox_keeps_aspect_and_pads_black():
    from handcast.data.images import IMAGE_MEAN, IMAGE_STD

    img = torch.ones(1, 3, 100, 100)  # white square into 256 x 192: a 192 x 192 square, bars above/below
    x = letterbox(img, (256, 192))
    assert x.shape == (1, 3, 256, 192)
    white = (1 - torch.tensor(IMAGE_MEAN)) / torch.tensor(IMAGE_STD)
    black = -torch.tensor(IMAGE_MEAN) / torch.tensor(IMAGE_STD)
    assert torch.allclose(x[0, :, 128, 96], white, atol=1e-4)
    assert torch.allclose(x[0, :, 10, 96], black, atol=1e-4) and torch.allclose(x[0, :, 245, 96], black, atol=1e-4)
    rows_white = (x[0, 0, :, 96] - white[0]).abs() < 1e-3
    assert rows_white.sum() == 192


def test_keypoint_features_absent_hand_and_nan_safe():
    kp = torch.full((1, 2, 21, 2), float("nan"))
    kp[0, 0] = torch.rand(21, 2) * 100
    conf = torch.zeros(1, 2, 21)
    conf[0, 0] = 1.0
    K = torch.tensor([[[100.0, 0, 50], [0, 100, 50], [0, 0, 1]]])
    f = keypoint_features(kp, conf, K, torch.tensor([[100, 100]]), 4)
    assert f.shape == (1, 2, keypoint_feature_dim(4)) and torch.isfinite(f).all()
    # the absent left hand carries only its handedness one-hot (0, 1) and presence 0
    assert f[0, 1, :-3].abs().sum() == 0 and f[0, 1, -3:].tolist() == [0.0, 1.0, 0.0]
    assert f[0, 0, -3:].tolist() == [1.0, 0.0, 1.0]
    # normalised pixels: u = 0 -> -1, u = 100 -> +1
    kp[0, 0, 0] = torch.tensor([0.0, 100.0])
    f = keypoint_features(kp, conf, K, torch.tensor([[100, 100]]), 4)
    assert f[0, 0, :2].tolist() == [-1.0, 1.0]


@pytest.mark.parametrize("kw", [dict(), dict(image=None, keypoints=True), dict(keypoints=True),
                                dict(aux2d="diffusion"), dict(aux2d="regression")])
def test_sample_shapes_and_seed(kw, one_thread):
    torch.manual_seed(0)
    m = ForecastModel(cfg(**kw)).eval()
    b = batch()
    r1, w1 = m.sample(b, 3, "ddim", 2, generator=torch.Generator().manual_seed(1))
    r2, w2 = m.sample(b, 3, "ddim", 2, generator=torch.Generator().manual_seed(1))
    assert r1.shape == (2, 3, 8, 2, 16, 6) and w1.shape == (2, 3, 8, 2, 3)
    assert torch.equal(r1, r2) and torch.equal(w1, w2)
    assert not torch.allclose(r1[:, 0], r1[:, 1])  # samples differ


def test_regressor_gives_one_output_repeated(one_thread):
    m = ForecastModel(cfg(head="regression")).eval()
    r, w = m.sample(batch(), 4)
    assert r.shape[1] == 4 and torch.equal(r[:, 0], r[:, 3]) and torch.equal(w[:, 0], w[:, 2])


def _losses(cfgkw, b, seed=0, train=None):
    from handcast.train.forecast import _lightning_module

    torch.manual_seed(0)
    c = {"model": cfg(**cfgkw).to_dict(),
         "train": {"aux_joints": 100.0, "reproj": 1.0, "w2d": 1.0, "val_sampler": "ddim", "val_steps": 2, **(train or {})},
         "data": {"augment": {"pixel_noise": 0.0, "color_jitter": 0.0, "kp_jitter_px": 0.0, "kp_drop": 0.0}}}
    module = _lightning_module()(c)
    module.model.denoiser.eval()  # no dropout
    module.model.config = ForecastConfig(**{**c["model"], "p_token_dropout": 0.0})
    torch.manual_seed(seed)
    return module.losses(b)


@pytest.mark.parametrize("kw", [dict(), dict(head="regression"), dict(aux2d="diffusion")])
def test_hidden_3d_of_2d_only_clips_never_enters_the_loss(kw, one_thread):
    b = batch()
    b["provenance"] = ["gt", "2d-only"]
    out = _losses(kw, b)
    b2 = dict(b)
    b2["pose"] = b["pose"].clone()
    b2["joints3d"] = b["joints3d"].clone()
    b2["pose"][1] += 1.0
    b2["joints3d"][1] += 0.3
    out2 = _losses(kw, b2)
    assert torch.allclose(out["motion"], out2["motion"]) and torch.allclose(out["joints"], out2["joints"])
    # ... while a labelled clip's 3D does
    b3 = dict(b)
    b3["pose"] = b["pose"].clone()
    b3["pose"][0] += 1.0
    assert not torch.allclose(_losses(kw, b3)["motion"], out["motion"])


def test_hand_absent_from_input_frame_is_not_supervised(one_thread):
    b = batch()
    b["hand_valid"] = b["hand_valid"].clone()
    b["hand_valid"][:, 0, 1] = False  # left hand not in the input image
    out = _losses({}, b)
    b2 = dict(b)
    b2["pose"] = b["pose"].clone()
    b2["pose"][:, 1:, 1] += 1.0  # its future changes
    assert torch.allclose(_losses({}, b2)["motion"], out["motion"])


def test_reprojection_error_is_zero_for_consistent_tracks():
    from handcast.geometry import project
    from handcast.train.forecast import reprojection_error

    b = batch()
    b["kp2d"] = project(b["joints3d"], b["K"][:, None, None, None])
    assert reprojection_error(b["joints3d"], b).item() < 1e-10
    assert reprojection_error(b["joints3d"] + 0.01, b).item() > 1e-4


def test_keypoints_file_round_trip_and_errors(tmp_path):
    from handcast.data.keypoints import keypoints_json, read_keypoints

    uv = np.random.default_rng(0).uniform(0, 100, (2, 21, 2)).astype(np.float32)
    conf = np.ones((2, 21), np.float32)
    conf[1] = 0  # no left hand
    conf[0, 5] = 0  # one missing keypoint
    p = tmp_path / "kp.json"
    p.write_text(json.dumps(keypoints_json(uv, conf)))
    uv2, conf2 = read_keypoints(p)
    assert np.array_equal(conf2, conf)
    assert np.allclose(uv2[conf > 0], uv[conf > 0]) and np.isnan(uv2[conf == 0]).all()
    for bad, msg in [("{", "not a JSON"), ('{"hands": [{"handedness": "up", "keypoints": []}]}', "handedness"),
                     ('{"hands": [{"handedness": "right", "keypoints": [[1, 2]]}]}', "needs 21"),
                     ('[{"handedness": "left", "keypoints": ' + json.dumps([[1, 2]] * 21) + '},'
                      '{"handedness": "left", "keypoints": ' + json.dumps([[1, 2]] * 21) + '}]', "two hands")]:
        p.write_text(bad)
        with pytest.raises(HandcastError, match=msg):
            read_keypoints(p)
    with pytest.raises(HandcastError, match="not found"):
        read_keypoints(tmp_path / "none.json")


@pytest.mark.parametrize("kw", [dict(image=None, keypoints=True), dict(aux2d="diffusion"), dict(head="regression")])
def test_known_prefix_is_every_samples_start(kw, one_thread):
    """Imposed prefix frames come back exactly (as rotations and wrists) for the known hands; the free hand
    and the later frames still depend on the seed."""
    from handcast.geometry import aa_to_rotmat, sixd_to_rotmat

    torch.manual_seed(0)
    m = ForecastModel(cfg(**kw)).eval()
    b = batch()
    g = torch.Generator().manual_seed(2)
    pose = 0.4 * torch.randn(2, 3, 2, 16, 3, generator=g)
    wrist = torch.randn(2, 3, 2, 3, generator=g) * 0.05 + torch.tensor([0.0, 0.0, 0.5])
    known = torch.ones(2, 3, 2, dtype=torch.bool)
    known[1, :, 1] = False  # the second input's left hand is free
    tok, mask = m.known_tokens(pose, wrist, known, 8)
    assert tok.shape == mask.shape == (2, 8, m.dcfg.motion_dim) and not mask[:, 3:].any()
    r1, w1 = m.sample(b, 2, "ddim", 3, generator=torch.Generator().manual_seed(0), known=tok, known_mask=mask)
    r2, w2 = m.sample(b, 2, "ddim", 3, generator=torch.Generator().manual_seed(1), known=tok, known_mask=mask)
    for r, w in ((r1, w1), (r2, w2)):
        for s in range(2):
            kh = known[..., None, None].expand(2, 3, 2, 16, 1)[..., 0]
            torch.testing.assert_close(sixd_to_rotmat(r[:, s, :3])[kh], aa_to_rotmat(pose)[kh], atol=1e-5, rtol=0)
            torch.testing.assert_close(w[:, s, :3][known], wrist[known], atol=1e-5, rtol=0)
    if kw.get("head") != "regression":
        assert not torch.allclose(w1[1, :, :, 1], w2[1, :, :, 1])  # the free hand follows the seed
        assert not torch.allclose(w1[:, :, 3:], w2[:, :, 3:])
    with pytest.raises(HandcastError, match="horizon"):
        m.known_tokens(pose, wrist, known, 2)


def test_harmonise_moves_the_motion_rigidly_onto_the_last_known_frame():
    from handcast.geometry import aa_to_6d

    m = ForecastModel(cfg(image=None, keypoints=True))
    g = torch.Generator().manual_seed(0)
    t = 10
    pose = 0.3 * torch.randn(1, t, 2, 16, 3, generator=g)
    wrist = torch.cumsum(0.01 * torch.randn(1, t, 2, 3, generator=g), 1) + torch.tensor([0.1, 0.0, 0.5])
    x0 = m.codec.encode(aa_to_6d(pose), wrist)
    kpose = 0.3 * torch.randn(1, 2, 2, 16, 3, generator=g)
    kwrist = torch.tensor([-0.2, 0.1, 0.7]).expand(1, 2, 2, 3).clone()
    known = torch.tensor([[[True, False], [True, False]]])  # right hand known in frames 0, 1; left free
    tok, mask = m.known_tokens(kpose, kwrist, known, t)
    out = m.harmonise(x0, tok, mask, fade=4)
    rot, wr = m.codec.decode(out)
    torch.testing.assert_close(wr[0, 1, 0], kwrist[0, 1, 0], atol=1e-5, rtol=0)  # starts at the known frame 1
    # the right wrist path keeps its step lengths (a rotation and a translation)
    d0 = (wrist[0, 2:, 0] - wrist[0, 1:-1, 0]).norm(dim=-1)
    d1 = (wr[0, 2:, 0] - wr[0, 1:-1, 0]).norm(dim=-1)
    torch.testing.assert_close(d1, d0, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[..., :96 * 2][:, :, 96:], x0[..., :96 * 2][:, :, 96:])  # left rotations as they were
    torch.testing.assert_close(wr[0, :, 1], wrist[0, :, 1], atol=1e-6, rtol=0)
    # the finger correction has faded out 4 frames after the last known one
    from handcast.geometry import sixd_to_rotmat

    torch.testing.assert_close(sixd_to_rotmat(rot[0, 6:, 0, 1:]), sixd_to_rotmat(x0[0, 6:, :96].reshape(4, 16, 6)[:, 1:]),
                               atol=1e-5, rtol=0)


def test_random_prefix_lengths_and_supervision():
    from handcast.train.forecast import random_prefix

    sup = torch.ones(400, 20, 198, dtype=torch.bool)
    sup[:, 0, :6] = False  # an unsupervised entry is never known
    g = torch.Generator().manual_seed(0)
    k = random_prefix(sup, 0.8, 16, g)
    n = k.any(-1).sum(-1)  # known frames per item
    assert not k[:, 0, :6].any() and not k[:, 16:].any()
    assert (k.any(-1) == (torch.arange(20)[None] < n[:, None])).all()  # a prefix: frames 0..n-1
    frac = lambda c: float(c.float().mean())  # noqa: E731
    assert abs(frac(n == 0) - 0.2) < 0.07 and abs(frac(n == 1) - 0.4) < 0.07 and frac(n > 1) > 0.3
    assert not random_prefix(sup, 0.0, 16, g).any()


def test_prefix_condition_changes_the_samples_and_can_be_used_without_imposing(one_thread):
    """A prefix model reads the known prefix as its condition: with the prefix only as the condition the
    known frames are not copied, and the samples differ from those without it; imposed, they are copied."""
    torch.manual_seed(0)
    m = ForecastModel(cfg(image=None, keypoints=True, prefix=True)).eval()
    torch.nn.init.normal_(m.prefix_mlp.net[-1].weight, std=0.5)
    b = batch()
    g = torch.Generator().manual_seed(2)
    pose = 0.4 * torch.randn(2, 1, 2, 16, 3, generator=g)
    wrist = torch.randn(2, 1, 2, 3, generator=g) * 0.05 + torch.tensor([0.0, 0.0, 0.5])
    tok, mask = m.known_tokens(pose, wrist, torch.ones(2, 1, 2, dtype=torch.bool), 8)
    run = lambda **kw: m.sample(b, 2, "ddim", 3, generator=torch.Generator().manual_seed(0), **kw)  # noqa: E731
    _, w_free = run()
    _, w_cond = run(known=tok, known_mask=mask, impose=False)
    _, w_imp = run(known=tok, known_mask=mask, condition=False)
    _, w_both = run(known=tok, known_mask=mask)
    assert not torch.allclose(w_free, w_cond)  # the condition is read
    assert not torch.allclose(w_cond[:, :, 0], wrist[:, None, 0], atol=1e-3)  # and not copied
    for w in (w_imp, w_both):
        torch.testing.assert_close(w[:, :, 0], wrist[:, None, 0].expand(2, 2, 2, 3), atol=1e-5, rtol=0)
    assert not torch.allclose(w_imp, w_both)
    with pytest.raises(HandcastError, match="diffusion head"):
        cfg(image=None, keypoints=True, prefix=True, head="regression")


def test_prefix_model_trains_with_random_prefixes(one_thread):
    """Training feeds the prefix condition: with p_prefix = 1 the prefix MLP gets a gradient, with 0 none."""
    from handcast.train.forecast import _lightning_module

    def grad(p):
        torch.manual_seed(0)
        c = {"model": cfg(image=None, keypoints=True, prefix=True).to_dict(),
             "train": {"aux_joints": 100.0, "reproj": 1.0, "w2d": 1.0, "val_sampler": "ddim", "val_steps": 2,
                       "p_prefix": p, "prefix_max": 4},
             "data": {"augment": {"pixel_noise": 0.0, "color_jitter": 0.0, "kp_jitter_px": 0.0, "kp_drop": 0.0}}}
        module = _lightning_module()(c)
        out = module.losses(batch())
        assert torch.isfinite(out["loss"]) and out["loss"] > 0
        out["loss"].backward()
        return float(module.model.prefix_mlp.net[0].weight.grad.abs().sum())

    assert grad(1.0) > 0
    assert grad(0.0) == 0


def test_keypoints_against_the_image_they_are_for():
    """A hand cut by the border is kept with a note; a hand wholly outside the image, or a keypoint further out
    than the image's size, is a one-line error; missing keypoints and absent hands are not looked at."""
    from handcast.data.keypoints import beyond_image, check_in_image

    assert np.allclose(beyond_image(np.array([[-0.5, -0.5], [63.5, 47.5], [66.5, 51.5], [-10.5, 20.0]]), (64, 48)),
                       [0.0, 0.0, 5.0, 10.0])
    uv = np.full((2, 21, 2), np.nan, np.float32)
    conf = np.zeros((2, 21), np.float32)
    uv[0], conf[0] = np.linspace([10.0, 10.0], [90.0, 40.0], 21), 1.0  # right hand: x beyond 63.5 from keypoint 14 on
    notes = check_in_image(uv, conf, (64, 48), "kp.json")
    out = int((uv[0, :, 0] > 63.5).sum())
    assert out > 0 and notes == [f"kp.json: {out} of the right hand's 21 keypoints lie outside the 64 x 48 image "
                                 "(kept: a hand cut by the border)"]
    conf[0, uv[0, :, 0] > 63.5] = 0  # those missing instead: nothing to say
    assert check_in_image(uv, conf, (64, 48)) == []
    with pytest.raises(HandcastError, match="no keypoint of the right hand lies in the 32 x 24 image"):
        check_in_image(uv + 40, np.ones_like(conf) * (conf > 0), (32, 24))
    uv[0, 3] = (30.0, 48.0 + 64.5)  # 65 px below: further than the image's longer side
    conf[0, 3] = 1
    with pytest.raises(HandcastError, match="right hand keypoint 3 .* 65 px outside"):
        check_in_image(uv, conf, (64, 48))
