"""Synthetic clips: determinism, shared first frames, joint limits, projections, validity, smoothness, images."""

from __future__ import annotations

import numpy as np
import pytest

from handcast.errors import HandcastError
from handcast.synth import generate_clip, generate_futures, generate_video_clip
from handcast.synth.handkit import get_hand_model

FIELDS = ("pose", "transl", "betas", "valid", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam")


def _project(clip):
    """Exact projection of joints3d into camera t: (uv (T,2,21,2), z (T,2,21)) from the stored arrays."""
    W = clip.world_to_cam.astype(np.float64)
    X = clip.joints3d.astype(np.float64)
    cam = np.einsum("tij,thkj->thki", W[:, :3, :3], X) + W[:, None, None, :3, 3]
    uvw = cam @ clip.K.astype(np.float64).T
    return uvw[..., :2] / uvw[..., 2:3], cam[..., 2]


@pytest.fixture(scope="module")
def lab_group():
    return generate_futures(11, "lab", 4, n_frames=48)


@pytest.fixture(scope="module")
def diverse_clip():
    return generate_clip(5, "diverse", n_frames=64)


def test_same_seed_identical_and_different_seeds_differ():
    a = generate_clip(3, "diverse", n_frames=24)
    b = generate_clip(3, "diverse", n_frames=24)
    for f in FIELDS:
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f), err_msg=f)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.meta == b.meta
    c = generate_clip(4, "diverse", n_frames=24)
    assert not np.array_equal(a.joints3d, c.joints3d)
    assert not np.array_equal(a.image, c.image)


def test_clip_contents_and_validation(lab_group):
    c = lab_group[0]
    c.validate()
    assert c.num_frames == 48 and c.fps == 30.0
    assert c.image.shape == (256, 256, 3) and c.image_size == (256, 256)
    assert c.provenance == "gt" and c.domain == "lab" and c.hand_model == "open"
    np.testing.assert_allclose(c.world_to_cam[0], np.eye(4), atol=1e-7)
    np.testing.assert_array_equal(c.betas[0], c.betas[1])  # one person
    assert c.meta["synth"]["kp2d_source"] == "projection"


def test_futures_share_frame0_and_diverge(lab_group):
    c0 = lab_group[0]
    assert len({c.clip_id for c in lab_group}) == 4
    assert {c.group_id for c in lab_group} == {c0.group_id}
    for c in lab_group[1:]:
        for f in FIELDS:
            np.testing.assert_array_equal(getattr(c, f)[0], getattr(c0, f)[0], err_msg=f)
        np.testing.assert_array_equal(c.image, c0.image)
        np.testing.assert_array_equal(c.betas, c0.betas)
        np.testing.assert_array_equal(c.K, c0.K)
    # different first targets, and >= 3 futures whose wrists separate by more than 5 cm
    assert len({c.meta["synth"]["intent"]["object"] for c in lab_group[:3]}) == 3
    wr = np.stack([c.joints3d[:, :, 0] for c in lab_group])  # (4, T, 2, 3)
    far = lambda i, j: np.linalg.norm(wr[i] - wr[j], axis=-1).max() > 0.05  # noqa: E731
    assert any(far(i, j) and far(i, k) and far(j, k)
               for i in range(4) for j in range(i + 1, 4) for k in range(j + 1, 4))
    # and they do diverge after frame 0
    assert all(not np.array_equal(c.joints3d[1:], c0.joints3d[1:]) for c in lab_group[1:])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_futures_distinct_for_every_domain(seed):
    dom = ("lab", "diverse", "wild")[seed]
    group = generate_futures(100 + seed, dom, 3, n_frames=40, render=False)
    wr = np.stack([c.joints3d[:, :, 0] for c in group])
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.linalg.norm(wr[i] - wr[j], axis=-1).max() > 0.05


def test_joint_limits_respected(lab_group, diverse_clip):
    lim = get_hand_model("open").joint_limits.numpy()  # (2, 15, 3, 2)
    for c in [*lab_group, diverse_clip, generate_clip(9, "wild", n_frames=40, render=False)]:
        f = c.pose[:, :, 1:].astype(np.float64)
        assert (f >= lim[None, ..., 0] - 1e-5).all() and (f <= lim[None, ..., 1] + 1e-5).all()
        assert np.isfinite(c.pose).all() and np.isfinite(c.joints3d).all()


def test_joints_match_the_hand_model(lab_group):
    import torch

    c = lab_group[1]
    kp = get_hand_model("open").keypoints(torch.from_numpy(c.pose), torch.from_numpy(c.betas), torch.from_numpy(c.transl))
    np.testing.assert_allclose(kp.numpy(), c.joints3d, atol=1e-5)


def test_lab_kp2d_are_exact_projections(lab_group):
    for c in lab_group:
        uv, z = _project(c)
        m = c.kp2d_conf > 0
        assert m.mean() > 0.3
        assert np.abs(c.kp2d[m] - uv[m]).max() < 1e-2
        assert set(np.unique(c.kp2d_conf)) <= {0.0, 1.0}
        w, h = c.image_size
        inside = (z > 0.02) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
        np.testing.assert_array_equal(m, inside)


def test_diverse_kp2d_are_noisy(diverse_clip):
    c = diverse_clip
    assert c.provenance == "2d-only" and c.meta["synth"]["kp2d_source"] == "simulated-detector"
    uv, z = _project(c)
    m = c.kp2d_conf > 0
    err = np.linalg.norm(c.kp2d[m] - uv[m], axis=-1)
    assert 0.5 < np.median(err) < 8.0  # jitter of a few pixels
    assert (c.kp2d_conf[m] < 1).any() and c.kp2d_conf.min() >= 0 and c.kp2d_conf.max() <= 1
    # some visible keypoints dropped (conf 0) over a few clips
    dropped = 0
    for s in range(3):
        d = generate_clip(20 + s, "diverse", n_frames=64, render=False)
        uv, z = _project(d)
        w, h = d.image_size
        inside = (z > 0.02) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
        dropped += int((inside & (d.kp2d_conf == 0)).sum())
    assert dropped > 0


def _valid_from_geometry(c):
    uv, z = _project(c)
    w, h = c.image_size
    vis = (z > 0.02) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
    return vis[..., 0] & (vis.sum(-1) >= 4), vis


def test_valid_flags_follow_visibility(lab_group):
    for c in lab_group:
        expect, _ = _valid_from_geometry(c)
        np.testing.assert_array_equal(c.valid, expect)
    # a clip where a hand leaves the view has invalid frames, and valid ones before
    for seed in range(200):
        c = generate_clip(seed, "lab", n_frames=64, render=False)
        if any(a["action"] == "leave" for a in c.meta["synth"]["actions"]):
            break
    else:
        pytest.fail("no clip with a hand leaving the view in 200 seeds")
    expect, vis = _valid_from_geometry(c)
    np.testing.assert_array_equal(c.valid, expect)
    h = ("right", "left").index(next(a["hand"] for a in c.meta["synth"]["actions"] if a["action"] == "leave"))
    assert c.valid[0, h] and not c.valid[-1, h]
    assert not vis[-1, h, 0]  # its wrist is outside the image at the end


def test_smooth_motion_no_teleports():
    for seed in range(6):
        c = generate_clip(200 + seed, ("lab", "diverse", "wild")[seed % 3], n_frames=64, render=False)
        x = c.joints3d.astype(np.float64)  # (T, 2, 21, 3), frame-0 camera
        wr = x[:, :, 0]
        acc = np.linalg.norm(wr[2:] - 2 * wr[1:-1] + wr[:-2], axis=-1) * 30.0**2
        assert acc.max() < 15.0  # m/s^2
        step = np.linalg.norm(x[1:] - x[:-1], axis=-1)
        assert step.max() < 0.08  # no keypoint jumps 8 cm between frames (2.4 m/s)
        ang = np.linalg.norm(c.pose[1:, :, 0] - c.pose[:-1, :, 0], axis=-1)
        assert np.median(ang) < 0.05


def test_image_shows_hands():
    c = generate_clip(2, "lab", n_frames=16)
    bg = generate_clip(2, "lab", n_frames=16, draw_hands=False)
    img, plate = c.image.astype(float), bg.image.astype(float)
    assert img.std() > 15  # not a flat image
    diff = np.abs(img - plate).mean(-1)
    for h in (0, 1):
        if not c.valid[0, h]:
            continue
        m = c.kp2d_conf[0, h] > 0
        lo = np.floor(c.kp2d[0, h][m].min(0)).astype(int)
        hi = np.ceil(c.kp2d[0, h][m].max(0)).astype(int)
        box = diff[max(lo[1], 0):hi[1], max(lo[0], 0):hi[0]]
        assert box.mean() > 20, f"hand {h} not visible in the rendered first frame"
    assert c.valid[0].any()
    # outside the hands (top rows, away from the forearms) nothing changes
    assert diff[:20].mean() < 1.0


def test_video_frames_show_the_hands_where_they_project():
    """Every rendered frame is seen by that frame's camera: the hand pixels (where the frame with hands differs
    from the same frame without them) cover the projected palm keypoints of frame t, also late in the clip where
    the head has moved; frame 0 is generate_clip's image."""
    T, size = 48, (192, 144)  # seed 2: by frame 32 the head has turned the palm keypoints 8-28 px in the image
    c, video = generate_video_clip(2, "lab", n_frames=T, image_size=size)
    _, plate = generate_video_clip(2, "lab", n_frames=T, image_size=size, draw_hands=False)
    assert video.shape == (T, size[1], size[0], 3) and video.dtype == np.uint8
    np.testing.assert_array_equal(video[0], generate_clip(2, "lab", n_frames=T, image_size=size).image)
    assert np.abs(video[-1].astype(float) - video[0]).mean() > 2  # the pictures change over the clip
    uv, z = _project(c)
    mask = np.abs(video.astype(int) - plate).max(-1) > 8  # (T, H, W) hand or forearm pixels
    palm = [0, 5, 9, 13, 17]  # wrist and knuckles: inside the hand's silhouette unless occluded
    hits = {"early": [], "middle": [], "late": []}
    for t in range(T):
        for h in (0, 1):
            for k in palm:
                u, v = np.round(uv[t, h, k]).astype(int)
                if not (c.valid[t, h] and z[t, h, k] > 0 and 1 <= u < size[0] - 1 and 1 <= v < size[1] - 1):
                    continue
                hits["early" if t < 16 else "late" if t >= 32 else "middle"].append(mask[t, v, u])
    for when, hit in hits.items():
        assert len(hit) >= 10, when
        # measured 1.00 in each third; with the hands left in the frame-0 camera: 1.00, 0.84, 0.56
        assert np.mean(hit) > 0.97, f"{when} frames: {np.mean(hit):.2f} of the palm keypoints on the hands"


def test_argument_errors():
    with pytest.raises(HandcastError, match="unknown synthetic domain"):
        generate_clip(0, "mars", render=False)
    with pytest.raises(HandcastError, match="futures"):
        generate_futures(0, "lab", 0, render=False)
    with pytest.raises(HandcastError, match="seed"):
        generate_clip(-1, "lab", render=False)
    with pytest.raises(HandcastError, match="n_frames"):
        generate_clip(0, "lab", n_frames=1, render=False)
