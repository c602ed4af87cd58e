"""Lifting conditioning features and the camera-trajectory augmentation."""

import numpy as np
import torch

from handcast.data.testing import random_clip
from handcast.geometry import project, sixd_to_rotmat, transform_points
from handcast.models.lifting import LiftConfig, LiftingConditioning, LiftingModel, lifting_features
from handcast.train.augment import LiftAugment, LiftAugmentConfig


def _batch(b=2, t=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    kp = torch.rand(b, t, 2, 21, 2, generator=g) * 200
    conf = torch.ones(b, t, 2, 21)
    K = torch.tensor([[180.0, 0, 100], [0, 180, 100], [0, 0, 1]]).expand(b, 3, 3)
    w2c = torch.eye(4).expand(b, t, 4, 4).clone()
    w2c[:, :, :3, 3] = torch.randn(b, t, 3, generator=g) * 0.05
    return dict(kp2d=kp, kp2d_conf=conf, K=K, world_to_cam=w2c, image_size=torch.tensor([[200, 200]] * b),
                frame_mask=torch.ones(b, t, dtype=torch.bool))


def _features(b, c):
    return lifting_features(b["kp2d"], b["kp2d_conf"], b["K"], b["world_to_cam"], b["image_size"], c)


def test_feature_dims_match_the_reference():
    c = LiftingConditioning()
    assert c.feature_dims() == {"keypoints": 126, "camera": 9, "plucker": 252, "kpe": 672}
    assert LiftingConditioning(local=True).feature_dims()["local"] == 92
    f = _features(_batch(), c)
    assert {k: v.shape[-1] for k, v in f.items()} == c.feature_dims()


def test_missing_keypoints_are_zero_and_nan_safe():
    b = _batch()
    b["kp2d"][0, 1, 0, 3] = float("nan")
    b["kp2d_conf"][0, 1, 0, 3] = 0.0
    f = _features(b, LiftingConditioning())
    for v in f.values():
        assert torch.isfinite(v).all()
    pl = f["plucker"].reshape(2, 5, 2, 21, 6)
    assert (pl[0, 1, 0, 3] == 0).all() and (pl[0, 1, 0, 4] != 0).any()


def test_modes_and_ablation_subsets_run():
    for mode in ("prepend", "fuse", "add"):
        for subset in ({}, {"camera": False, "plucker": False}, {"keypoints": False, "camera": False,
                                                                   "plucker": False, "kpe": False}):
            cond = dict(LiftingConditioning(mode=mode).to_dict(), **subset)
            m = LiftingModel(LiftConfig(denoiser=dict(width=16, layers=1, heads=2, ff_width=32), conditioning=cond,
                                        diffusion={})).eval()
            rot, wrist = m.sample(_batch(), num_samples=2, steps=2)
            assert rot.shape == (2, 2, 5, 2, 16, 6) and torch.isfinite(wrist).all()


def test_augmentation_reprojects_exactly_without_noise():
    rng = np.random.default_rng(3)
    clip = random_clip(rng, 10, p_valid=1.0, image_size=(400, 300))
    item = {k: torch.from_numpy(np.asarray(getattr(clip, k), np.float32)) for k in
            ("pose", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam")}
    item.update(image_size=torch.tensor([400, 300]), hand_valid=torch.from_numpy(clip.valid), index=0)
    aug = LiftAugment(LiftAugmentConfig(jitter=0.0, drop_keypoint=0.0, drop_frame=0.0, image_margin=10.0))
    out = aug(item)
    assert torch.allclose(out["world_to_cam"][0], torch.eye(4), atol=1e-6)
    cam = transform_points(out["world_to_cam"][:, None, None].double(), out["joints3d"].double())
    uv = project(cam, out["K"].double())
    ok = out["kp2d_conf"] > 0
    assert ok.float().mean() > 0.9
    assert torch.allclose(uv[ok].float(), out["kp2d"][ok], atol=1e-2)
    assert not torch.allclose(out["joints3d"], item["joints3d"])  # the scene really moved
    # bones keep their lengths (a rigid move)
    bone = lambda j: (j[..., 8, :] - j[..., 5, :]).norm(dim=-1)  # noqa: E731
    assert torch.allclose(bone(out["joints3d"]), bone(item["joints3d"]), atol=1e-5)
    # the same item and epoch give the same draw; another epoch another
    assert torch.equal(aug(item)["kp2d"], out["kp2d"])
    aug.set_epoch(1)
    assert not torch.equal(aug(item)["kp2d"], out["kp2d"])


def _random_item(seed, index=0):
    clip = random_clip(np.random.default_rng(seed), 10, p_valid=1.0, image_size=(400, 300))
    item = {k: torch.from_numpy(np.asarray(getattr(clip, k), np.float32)) for k in
            ("pose", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam")}
    item.update(image_size=torch.tensor([400, 300]), hand_valid=torch.from_numpy(clip.valid), index=index)
    return item


def test_new_cameras_cover_the_ranges_of_real_photos_and_reproject_exactly():
    """p_new_camera=1: every item gets a new camera (principal point at the image centre, field of view in
    range), its keypoints are the exact projections of its 3D joints, the scene moves rigidly, and the hand
    sizes, positions and still cameras spread over the configured ranges."""
    cfg = LiftAugmentConfig(jitter=0.0, drop_keypoint=0.0, drop_frame=0.0, image_margin=10.0, p_new_camera=1.0,
                            hfov_deg=(20.0, 100.0), hand_px=(40.0, 600.0), p_static=0.5)
    aug = LiftAugment(cfg)
    fovs, sizes, static, centres = [], [], [], []
    for i in range(40):
        item = _random_item(i, index=i)
        out = aug(item)
        w, h = out["image_size"].tolist()
        K = out["K"].double()
        assert 480 * 0.99 <= w <= 1920 * 1.01 and torch.allclose(K[:2, 2], torch.tensor([w / 2, h / 2]).double())
        fovs.append(float(2 * np.degrees(np.arctan(w / 2 / float(K[0, 0])))))
        cam = transform_points(out["world_to_cam"][:, None, None].double(), out["joints3d"].double())
        ok = out["kp2d_conf"] > 0
        assert torch.allclose(project(cam, K)[ok].float(), out["kp2d"][ok], atol=1e-2)
        bone = lambda j: (j[..., 8, :] - j[..., 5, :]).norm(dim=-1)  # noqa: E731
        assert torch.allclose(bone(out["joints3d"]), bone(item["joints3d"]), atol=1e-5)
        assert (cam[..., 2] > 0.05).all()
        uv0 = out["kp2d"][0]
        sizes.append(float((uv0.amax(-2) - uv0.amin(-2)).norm(dim=-1).max()))
        centres.append((uv0.reshape(-1, 2).mean(0) / torch.tensor([w, h])).tolist())
        static.append(bool(torch.allclose(out["world_to_cam"], torch.eye(4).expand_as(out["world_to_cam"]))))
    assert 20 <= min(fovs) and max(fovs) <= 100 and max(fovs) - min(fovs) > 40
    # the largest hand's 2D box is at most its 3D box seen face-on; foreshortening makes it smaller
    assert max(sizes) <= 1.2 * 1080 and min(sizes) < 80 and max(sizes) > 250
    centres = np.array(centres)
    assert centres.min() < 0.3 and centres.max() > 0.7  # anywhere in the frame, not only the middle
    assert 0.2 < np.mean(static) < 0.8
    # p_new_camera=0 (the default) leaves the image size and draws as before
    assert torch.equal(LiftAugment(LiftAugmentConfig())(_random_item(0))["image_size"], torch.tensor([400, 300]))


def test_local_block_known_answer_and_invariance():
    K = torch.tensor([[[100.0, 0, 50], [0, 200, 40], [0, 0, 1]]])
    uv = torch.zeros(1, 1, 2, 21, 2)
    present = torch.zeros(1, 1, 2, 21)
    # right hand: two keypoints at normalised (0, 0) and (3, 4) -> centre (1.5, 2), diagonal 5
    uv[0, 0, 0, 0] = torch.tensor([50.0, 40.0])
    uv[0, 0, 0, 5] = torch.tensor([350.0, 840.0])
    present[0, 0, 0, [0, 5]] = 1.0
    # left hand: one keypoint only -> its whole block is zero
    uv[0, 0, 1, 3] = torch.tensor([10.0, 10.0])
    present[0, 0, 1, 3] = 1.0
    from handcast.models.lifting import local_shape

    out = local_shape(uv, present, K)
    assert out.shape == (1, 1, 2 * 21 * 2 + 2 * 4)
    rel = out[0, 0, :84].reshape(2, 21, 2)
    extra = out[0, 0, 84:].reshape(2, 4)
    assert torch.allclose(rel[0, 0], torch.tensor([-0.3, -0.4])) and torch.allclose(rel[0, 5], torch.tensor([0.3, 0.4]))
    assert (rel[0, [i for i in range(21) if i not in (0, 5)]] == 0).all()
    assert torch.allclose(extra[0], torch.tensor([1.5, 2.0, float(np.log(5.0)), 1.0]))
    assert (rel[1] == 0).all() and (extra[1] == 0).all()


def test_local_block_ignores_size_and_place_of_the_hand():
    b = _batch(b=1, t=3)
    c = LiftingConditioning(keypoints=False, camera=False, plucker=False, kpe=False, local=True)
    f0 = _features(b, c)["local"]
    moved = dict(b, kp2d=b["kp2d"] * 2.5 + torch.tensor([30.0, -70.0]))  # same shape, larger and elsewhere
    f1 = _features(moved, c)["local"]
    assert torch.allclose(f0[..., :84], f1[..., :84], atol=1e-5)  # the shape block does not change
    assert not torch.allclose(f0[..., 84:], f1[..., 84:])  # centre and size do
    b["kp2d"][0, 1, 0, 3] = float("nan")
    b["kp2d_conf"][0, 1, 0, 3] = 0.0
    f2 = _features(b, c)["local"]
    assert torch.isfinite(f2).all() and (f2[0, 1, :84].reshape(2, 21, 2)[0, 3] == 0).all()


def _synthetic_item(seed: int, T: int = 16) -> dict:
    """An item of a real synthetic lab clip: its joints are the hand model's forward kinematics of its pose."""
    from handcast.synth import generate_clip

    c = generate_clip(seed, "lab", n_frames=T, render=False)
    item = {k: torch.from_numpy(np.asarray(getattr(c, k), np.float32)) for k in
            ("pose", "joints3d", "kp2d", "kp2d_conf", "K", "world_to_cam", "betas")}
    item.update(image_size=torch.tensor(c.image_size), hand_valid=torch.from_numpy(c.valid), index=seed, num_frames=T)
    return item


def test_free_hand_articulation_keeps_wrists_bones_and_limits_and_reprojects_exactly():
    """p_articulation=1 with the camera left alone: every hand's fingers change, the wrists and the global
    orientations stay, the joints are the forward kinematics of the new pose (bone lengths kept), the pose is
    within the joint limits, and the 2D keypoints are its exact projections."""
    from handcast.hand import HandModel
    from handcast.synth.handkit import HandKit

    hands = HandModel("open")
    still = dict(rot_deg=0.0, trans_std=0.0, traj_rot_deg=0.0, focal_scale=(1.0, 1.0), jitter=0.0, drop_keypoint=0.0,
                 drop_frame=0.0, image_margin=10.0)
    aug = LiftAugment(LiftAugmentConfig(p_articulation=1.0, **still), hands=hands)
    for seed in (0, 1):
        item = _synthetic_item(seed)
        out = aug(item)
        v = item["hand_valid"]
        j0, j1 = item["joints3d"].double(), out["joints3d"].double()
        assert torch.allclose(j1[..., 0, :], j0[..., 0, :], atol=1e-6)
        assert torch.allclose(out["pose"][:, :, 0], item["pose"][:, :, 0], atol=1e-6)
        assert (j1 - j0)[v].norm(dim=-1).amax() > 0.02  # the fingers really moved (> 2 cm somewhere)
        kit = HandKit(hands, item["betas"].numpy())
        fk = torch.from_numpy(kit.keypoints(out["pose"].numpy(), np.zeros((16, 2, 3))))
        assert torch.allclose((fk - fk[..., :1, :])[v], (j1 - j1[..., :1, :])[v], atol=1e-5)
        bone = lambda j: (j[..., 7, :] - j[..., 6, :]).norm(dim=-1)  # noqa: E731
        assert torch.allclose(bone(j1)[v], bone(j0)[v], atol=1e-5)
        lim = hands.joint_limits.double()  # (2, 15, 3, 2)
        fingers = out["pose"].double()[:, :, 1:]
        assert ((fingers >= lim[..., 0] - 1e-5) & (fingers <= lim[..., 1] + 1e-5)).all()
        cam = transform_points(out["world_to_cam"][:, None, None].double(), j1)
        ok = out["kp2d_conf"] > 0
        assert torch.allclose(project(cam, out["K"].double())[ok].float(), out["kp2d"][ok], atol=1e-2)
    # p_articulation=0 (the default) leaves the fingers as they are
    item = _synthetic_item(0)
    out = LiftAugment(LiftAugmentConfig(**still))(item)
    assert torch.allclose(out["joints3d"], item["joints3d"], atol=1e-6)


def test_random_gestures_reach_the_spread_hand_with_the_thumb_out():
    """The free-hand gestures include what the grasp templates never make: the thumb out to the side in the
    palm's plane (thumb tip far from the index side of the palm) with the fingers extended and spread, as
    in a hand raised to a webcam; and fists. Angles measured on the hand model's own skeleton."""
    from handcast.hand import HandModel
    from handcast.synth.grasps import GRASP_TEMPLATES, random_gesture
    from handcast.synth.handkit import HandKit

    kit = HandKit(HandModel("open"), np.zeros((2, 10)))

    def measures(params):
        kp = kit.canonical_keypoints(0, kit.fingers(0, params))
        f, n, s = kit.axes[0].frame.T
        thumb = kp[4] - kp[1]
        # thumb out: its direction in the palm plane points to the thumb side, away from the fingers
        out_angle = np.degrees(np.arctan2(thumb @ s, thumb @ f))
        spread = np.degrees(np.arccos(np.clip(_unit(kp[8] - kp[5]) @ _unit(kp[20] - kp[17]), -1, 1)))
        tip_reach = np.linalg.norm(kp[12] - kp[0]) / np.linalg.norm(kp[9] - kp[0])
        return out_angle, spread, tip_reach

    rng = np.random.default_rng(0)
    m = np.array([measures(random_gesture(rng)) for _ in range(300)])
    # the flat rest hand: thumb 33 deg, spread 19 deg, middle tip 2.18 x the wrist-MCP length
    spread_open = (m[:, 0] > 55) & (m[:, 1] > 45) & (m[:, 2] > 2.1)
    fist = m[:, 2] < 1.6
    assert spread_open.mean() > 0.04 and fist.mean() > 0.1
    templates = np.array([measures(p) for pre, full in GRASP_TEMPLATES.values() for p in (pre, full)])
    assert templates[:, 0].max() < 50  # no grasp template puts the thumb out to the side


def _unit(v):
    return v / np.linalg.norm(v)


def test_convention_noise_moves_the_2d_input_in_the_hand_frame_and_keeps_the_3d_labels():
    """convention_noise: the 2D keypoints move by per-clip offsets of the configured size (palm lengths; the
    wrist, thumb CMC and MCPs twice as much as the others), the 3D labels do not move, and the offsets are
    the same in every frame of a clip (up to the hand's motion)."""
    still = dict(rot_deg=0.0, trans_std=0.0, traj_rot_deg=0.0, focal_scale=(1.0, 1.0), jitter=0.0, drop_keypoint=0.0,
                 drop_frame=0.0, image_margin=10.0)
    plain = LiftAugment(LiftAugmentConfig(**still))
    noisy = LiftAugment(LiftAugmentConfig(convention_noise=0.1, **still))
    base, tips, steady = [], [], []
    for i in range(30):
        item = _synthetic_item(i % 6, T=8)
        item["index"] = i
        a, b = plain(item), noisy(item)
        assert torch.allclose(a["joints3d"], b["joints3d"]) and not torch.allclose(a["kp2d"], b["kp2d"])
        v = a["hand_valid"][0]
        uv = a["kp2d"][0][v]  # (n, 21, 2) exact projections at frame 0
        palm = (uv[:, 9] - uv[:, 0]).norm(dim=-1)
        d = (b["kp2d"][0][v] - uv).norm(dim=-1) / palm[:, None]  # (n, 21) palm lengths
        base.append(d[:, [0, 1, 5, 9, 13, 17]].reshape(-1))
        tips.append(d[:, [4, 8, 12, 16, 20]].reshape(-1))
        both = v & a["hand_valid"][-1]
        o0, o1 = (b["kp2d"][0] - a["kp2d"][0])[both], (b["kp2d"][-1] - a["kp2d"][-1])[both]  # 2D offset vectors
        steady.append(float((o1 - o0).norm(dim=-1).mean() / o0.norm(dim=-1).mean()))
    rms = lambda x: float(torch.cat(x).pow(2).mean().sqrt())  # noqa: E731
    assert 0.05 < rms(base) < 0.16  # sqrt(2) * 0.1 at most, less where the hand is foreshortened
    # half the std at the tips: medians 0.37 apart here (0.75 when every keypoint gets the same std)
    assert float(torch.cat(tips).median()) < 0.55 * float(torch.cat(base).median())
    # one offset per clip, not per frame: the offset vectors of the first and last frames nearly agree (about
    # 1.4 times their size apart if drawn anew each frame)
    assert np.median(steady) < 0.5


def test_mirrored_clip_is_the_hand_models_mirror_image_and_projects_to_the_mirrored_2d():
    """mirror_clip: the mirrored joints are the forward kinematics of the mirrored pose with the hands (and their
    shapes) swapped, the stored 2D keypoints become the mirrored scene's projections, and twice is the identity."""
    from handcast.hand import HandModel
    from handcast.synth.handkit import HandKit
    from handcast.train.augment import mirror_clip

    hands = HandModel("open")
    item = _synthetic_item(3)
    item["hand_valid"][:4, 1] = False  # the left hand unseen at first
    m = mirror_clip(item)
    v = m["hand_valid"]
    assert torch.equal(v, item["hand_valid"][:, [1, 0]]) and not torch.equal(v, item["hand_valid"])
    kit = HandKit(hands, m["betas"].numpy())
    fk = torch.from_numpy(kit.keypoints(m["pose"].numpy(), np.zeros((16, 2, 3)))).double()
    j = m["joints3d"].double()
    assert torch.allclose((fk - fk[..., :1, :])[v], (j - j[..., :1, :])[v], atol=1e-5)
    assert torch.allclose(j[:, 1, :, 0], -item["joints3d"][:, 0, :, 0].double())  # the right hand, now the left
    cam = transform_points(m["world_to_cam"][:, None, None].double(), j)
    ok = m["kp2d_conf"] > 0
    assert ok.any()
    stored = item["kp2d_conf"][:, [1, 0]] > 0
    assert torch.equal(ok, stored)
    orig = transform_points(item["world_to_cam"][:, None, None].double(), item["joints3d"].double())
    exact = torch.allclose(project(orig, item["K"].double())[item["kp2d_conf"] > 0].float(),
                           item["kp2d"][item["kp2d_conf"] > 0], atol=1e-2)
    assert exact  # the stored keypoints are exact projections: so are the mirrored ones
    assert torch.allclose(project(cam, m["K"].double())[ok].float(), m["kp2d"][ok], atol=1e-2)
    back = mirror_clip(m)
    for k in ("joints3d", "pose", "betas", "world_to_cam", "kp2d", "kp2d_conf", "hand_valid"):
        assert torch.allclose(back[k].double(), item[k].double(), atol=1e-5), k


def test_p_mirror_swaps_hands_in_training_items_and_zero_leaves_the_draws_alone():
    still = dict(rot_deg=0.0, trans_std=0.0, traj_rot_deg=0.0, focal_scale=(1.0, 1.0), jitter=0.0, drop_keypoint=0.0,
                 drop_frame=0.0, image_margin=10.0)
    item = _synthetic_item(3)
    plain = LiftAugment(LiftAugmentConfig(**still))(item)
    mirrored = LiftAugment(LiftAugmentConfig(p_mirror=1.0, **still))(item)
    assert torch.allclose(mirrored["joints3d"][:, [1, 0]] * torch.tensor([-1.0, 1.0, 1.0]), plain["joints3d"], atol=1e-5)
    assert torch.equal(mirrored["hand_valid"], item["hand_valid"][:, [1, 0]])
    ok = mirrored["kp2d_conf"] > 0
    cx = float(item["K"][0, 2])
    swapped = plain["kp2d"][:, [1, 0]]
    assert torch.allclose(mirrored["kp2d"][ok][:, 0], 2 * cx - swapped[ok][:, 0], atol=1e-2)
    # p_mirror = 0 draws nothing: an augmentation that existed before gives the items it gave then
    default = LiftAugment(LiftAugmentConfig())(item)
    again = LiftAugment(LiftAugmentConfig(p_mirror=0.0))(item)
    assert torch.equal(default["kp2d"], again["kp2d"])
    half = [LiftAugment(LiftAugmentConfig(p_mirror=0.5, **still), seed=s)(item) for s in range(40)]
    n = sum(bool(torch.allclose(h["joints3d"], mirrored["joints3d"], atol=1e-5)) for h in half)
    assert 8 <= n <= 32 and all(torch.allclose(h["joints3d"], plain["joints3d"], atol=1e-5) for h in half
                                if not torch.allclose(h["joints3d"], mirrored["joints3d"], atol=1e-5))


def _one_handed(b=3, t=6, seed=1, stray=0):
    """A batch of clips with the right hand in every frame and the left one in ``stray`` frames (a stray detection)."""
    x = _batch(b, t, seed)
    x["kp2d"][:, :, 1] = float("nan")
    x["kp2d_conf"][:, :, 1] = 0.0
    x["kp2d"][:, :stray, 1] = x["kp2d"][:, :stray, 0] + 30.0
    x["kp2d_conf"][:, :stray, 1] = 1.0
    x["image_size"] = torch.tensor([[240, 200]] * b)
    return x


def test_mirror_batch_is_what_the_camera_sees_of_the_mirrored_scene():
    from handcast.models.lifting import mirror_batch

    g = torch.Generator().manual_seed(4)
    X = torch.randn(2, 6, 2, 21, 3, generator=g, dtype=torch.float64) * 0.05 + torch.tensor([0.02, -0.03, 0.6],
                                                                                             dtype=torch.float64)
    x = _batch(2, 6, 2)
    x = {k: v.double() if v.is_floating_point() else v for k, v in x.items()}
    x["image_size"] = torch.tensor([[240, 200]] * 2)
    proj = lambda K, A, P: project(transform_points(A[:, :, None, None], P), K[:, None, None, None])  # noqa: E731
    x["kp2d"] = proj(x["K"], x["world_to_cam"], X)
    m = mirror_batch(x, torch.tensor([True, False]))
    mirrored = (X * torch.tensor([-1.0, 1.0, 1.0], dtype=X.dtype))[:, :, [1, 0]]
    assert torch.allclose(m["kp2d"][0], proj(m["K"], m["world_to_cam"], mirrored)[0], atol=1e-6)
    assert torch.allclose(m["kp2d"][0, ..., 0], 239.0 - x["kp2d"][0, :, [1, 0], :, 0])
    for k in ("kp2d", "kp2d_conf", "K", "world_to_cam"):  # the clip not chosen is untouched
        assert torch.equal(m[k][1], x[k][1]), k
    back = mirror_batch(m, torch.tensor([True, False]))
    for k in ("kp2d", "K", "world_to_cam"):
        assert torch.allclose(back[k], x[k], atol=1e-9), k


def test_mostly_left_clips_are_lifted_as_the_mirror_of_their_mirror_image():
    """L lifts a clip of (mostly) the left hand alone as if it were the same clip in a mirror, a right hand, then
    mirrors the result back: lifting a right-hand clip and its mirror image give mirror-image motions, exactly.
    Two-handed clips are lifted as they are."""
    from handcast.models.lifting import MIRROR_BELOW, mirror_batch, mirror_motion, mostly_left

    torch.manual_seed(0)
    m = LiftingModel(LiftConfig(denoiser=dict(width=16, layers=1, heads=2, ff_width=32),
                                conditioning=LiftingConditioning().to_dict(), diffusion={})).eval()
    x = _one_handed(stray=1)
    assert not mostly_left(x).any()
    flip = torch.ones(3, dtype=torch.bool)
    xm = mirror_batch(x, flip)
    assert mostly_left(xm).all()
    g = lambda: torch.Generator().manual_seed(7)  # noqa: E731
    with torch.no_grad():
        rot, wrist = m.sample(x, num_samples=2, steps=2, generator=g())
        rot_m, wrist_m = m.sample(xm, num_samples=2, steps=2, generator=g())
        expect_rot, expect_wrist = mirror_motion(rot, wrist, flip)
        assert torch.allclose(rot_m, expect_rot, atol=1e-5) and torch.allclose(wrist_m, expect_wrist, atol=1e-6)
        # without the rule the mirrored clip is lifted as it is, and differs
        rot_plain, _ = m.sample(xm, num_samples=2, steps=2, generator=g(), mirror_left=False)
        assert not torch.allclose(rot_plain, rot_m, atol=1e-3)
        # two hands in every frame: nothing changes
        both = _batch(3, 6, 1)
        r1, w1 = m.sample(both, num_samples=1, steps=2, generator=g())
        r2, w2 = m.sample(both, num_samples=1, steps=2, generator=g(), mirror_left=False)
        assert torch.equal(r1, r2) and torch.equal(w1, w2)
    # the rule's threshold: right seen in fewer than MIRROR_BELOW x the left hand's frames
    y = mirror_batch(_one_handed(t=10, stray=4), flip)  # left in 10 frames, right in 4
    assert mostly_left(y).all() == (4 < MIRROR_BELOW * 10)
    y["frame_mask"][:, 6:] = False  # padding frames do not count: left in 6, right in 4
    assert mostly_left(y).all() == (4 < MIRROR_BELOW * 6)
    # the mirrored motion is the hand model's mirror image: every keypoint's x negated, the hands swapped
    from handcast.hand import HandModel

    hm = HandModel("open")
    j0 = hm.rest_joints()[:, 0]  # (2, 3) each hand's J0, mean shape

    def keypoints(r6, w):
        return hm.keypoints(sixd_to_rotmat(r6), None, w - j0, rep="rotmat")

    k, km = keypoints(rot, wrist), keypoints(*mirror_motion(rot, wrist, flip))
    assert torch.allclose(km, (k * torch.tensor([-1.0, 1.0, 1.0]))[..., [1, 0], :, :], atol=1e-5)
    # mirroring a motion twice gives it back
    r2, w2 = mirror_motion(*mirror_motion(rot, wrist, flip), flip)
    assert torch.allclose(sixd_to_rotmat(r2), sixd_to_rotmat(rot), atol=1e-5) and torch.allclose(w2, wrist)


def test_sample_consistency_scores_how_well_each_sample_explains_the_2d():
    """sample_consistency: 0 for the motion whose projection is the input, about 0 for the same motion with the wrist
    moved (scale and shift per frame absorb placement), large for the hand turned over; a hand seen nowhere scores 0.
    best_samples_weights keeps the lowest scores; average_samples with them returns the kept samples' mean rotation
    and the mean wrist of all samples."""
    from handcast.geometry import aa_to_rotmat, rotmat_to_6d
    from handcast.hand import HandModel
    from handcast.models.lifting import average_samples, best_samples_weights, sample_consistency

    hands = HandModel("open")
    item = _synthetic_item(5, T=8)
    R = aa_to_rotmat(item["pose"].double())  # (T, 2, 16, 3, 3)
    wrist = item["joints3d"][:, :, 0].double()  # (T, 2, 3) frame-0 camera
    j0 = hands.rest_joints().double()[:, 0]

    def projected(Rs, w):
        kp = hands.keypoints(Rs, transl=w - j0, rep="rotmat")
        return project(transform_points(item["world_to_cam"].double()[:, None, None], kp), item["K"].double())

    kp2d = projected(R, wrist)
    turned = R.clone()
    turned[:, :, 0] = R[:, :, 0] @ aa_to_rotmat(torch.tensor([0.0, 0.0, np.pi / 2], dtype=torch.float64))
    deeper = wrist + torch.tensor([0.02, -0.01, 0.05], dtype=torch.float64)
    rot6d = rotmat_to_6d(torch.stack([R, turned, R]))[None]  # (1, 3, T, 2, 16, 6)
    wr = torch.stack([wrist, wrist, deeper])[None]
    conf = torch.ones(1, 8, 2, 21)
    conf[:, :, 1] = 0.0  # the left hand is not seen
    batch = dict(kp2d=kp2d[None].float(), kp2d_conf=conf, K=item["K"][None], world_to_cam=item["world_to_cam"][None],
                 frame_mask=torch.ones(1, 8, dtype=torch.bool))
    s = sample_consistency(rot6d, wr, batch, hands)  # (1, 3, 2)
    assert s.shape == (1, 3, 2)
    assert float(s[0, 0, 0]) < 1e-3 and float(s[0, 2, 0]) < 0.03 < 0.2 < float(s[0, 1, 0])
    assert torch.equal(s[..., 1], torch.zeros(1, 3))
    w = best_samples_weights(s, 2)
    assert torch.allclose(w[0, :, 0], torch.tensor([0.5, 0.0, 0.5]))
    assert torch.allclose(best_samples_weights(s, 1)[0, :, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(w.sum(1), torch.ones(1, 2))
    Rm, wm = average_samples(rot6d, wr, best_samples_weights(s, 1))
    assert torch.allclose(Rm[0, :, 0], R[:, 0], atol=1e-6)
    assert torch.allclose(wm[0, :, 0], (2 * wrist[:, 0] + deeper[:, 0]) / 3)
    assert not torch.allclose(average_samples(rot6d, wr)[0][0, :, 0], R[:, 0], atol=1e-2)  # all three: turned


def _bent(R: torch.Tensor, joints, angle: float) -> torch.Tensor:
    """R (..., 16, 3, 3) with the given joints' local rotations turned by ``angle`` rad about their x axis."""
    from handcast.geometry import aa_to_rotmat

    out = R.clone()
    turn = aa_to_rotmat(torch.tensor([angle, 0.0, 0.0], dtype=R.dtype))
    out[..., list(joints), :, :] = R[..., list(joints), :, :] @ turn
    return out


def test_select_weights_takes_each_finger_from_the_sample_that_gets_it_right():
    """Joint-level selection (keep 1): of three samples, the first has the true global orientation and index finger
    but a bent middle finger, the second the true middle finger but a bent index finger, the third the hand turned
    over. The selection gives the root and the index finger to sample 0, the middle finger to sample 1, never
    sample 2, and their weighted mean is the true pose; the clip-level selection (one sample per hand) cannot
    reach it. Weights sum to 1 over the samples for every frame, hand and joint."""
    from handcast.geometry import aa_to_rotmat, rotmat_to_6d
    from handcast.hand import HandModel
    from handcast.models.lifting import average_samples, best_samples_weights, keep_weights, sample_consistency

    hands = HandModel("open")
    item = _synthetic_item(5, T=8)
    R = aa_to_rotmat(item["pose"].double())  # (T, 2, 16, 3, 3)
    wrist = item["joints3d"][:, :, 0].double()
    j0 = hands.rest_joints().double()[:, 0]
    kp = hands.keypoints(R, transl=wrist - j0, rep="rotmat")
    kp2d = project(transform_points(item["world_to_cam"].double()[:, None, None], kp), item["K"].double())
    a = _bent(R, (5, 6), 1.0)  # middle finger (MANO joints 4-6) bent at its two outer joints
    b = _bent(R, (2, 3), 1.0)  # index finger (1-3)
    c = R.clone()
    c[:, :, 0] = R[:, :, 0] @ aa_to_rotmat(torch.tensor([np.pi / 2, 0.0, 0.0], dtype=torch.float64))
    rot6d = rotmat_to_6d(torch.stack([a, b, c]))[None].float()  # (1, 3, T, 2, 16, 6)
    wr = torch.stack([wrist] * 3)[None].float()
    batch = dict(kp2d=kp2d[None].float(), kp2d_conf=torch.ones(1, 8, 2, 21), K=item["K"][None],
                 world_to_cam=item["world_to_cam"][None], frame_mask=torch.ones(1, 8, dtype=torch.bool))
    W = keep_weights(rot6d, wr, batch, hands, 1)
    assert W.shape == (1, 3, 8, 2, 16)
    assert torch.allclose(W.sum(1), torch.ones(1, 8, 2, 16), atol=1e-5)
    assert torch.allclose(W[0, 0][..., [0, 1, 2, 3]], torch.ones(8, 2, 4), atol=1e-5)
    assert torch.allclose(W[0, 1][..., [4, 5, 6]], torch.ones(8, 2, 3), atol=1e-5)
    assert float(W[0, 2].abs().max()) < 1e-6
    Rm, _ = average_samples(rot6d, wr, W)
    assert torch.allclose(Rm[0].double(), R, atol=1e-4)
    Rc, _ = average_samples(rot6d, wr, best_samples_weights(sample_consistency(rot6d, wr, batch, hands), 1))
    assert (Rc[0].double() - R).abs().amax() > 0.3
    assert keep_weights(rot6d, wr, batch, hands, 3) is None and keep_weights(rot6d, wr, batch, hands, None) is None


def test_select_weights_follow_the_sample_that_is_right_in_each_part_of_the_clip():
    """Per frame: in a 40-frame clip sample 0 is the truth in the first half and has a bent middle finger in the
    second, sample 1 the reverse. Away from the switch (beyond a few SCORE_SIGMA) the middle finger's weight is
    on the right sample; around it the weights change smoothly (no step larger than half)."""
    from handcast.geometry import aa_to_rotmat, rotmat_to_6d
    from handcast.hand import HandModel
    from handcast.models.lifting import keep_weights

    hands = HandModel("open")
    T = 40
    item = _synthetic_item(3, T=T)
    R = aa_to_rotmat(item["pose"].double())
    wrist = item["joints3d"][:, :, 0].double()
    j0 = hands.rest_joints().double()[:, 0]
    kp = hands.keypoints(R, transl=wrist - j0, rep="rotmat")
    kp2d = project(transform_points(item["world_to_cam"].double()[:, None, None], kp), item["K"].double())
    bent = _bent(R, (4, 5, 6), 1.2)
    first = torch.arange(T)[:, None, None, None, None] < T // 2
    s0, s1 = torch.where(first, R, bent), torch.where(first, bent, R)
    rot6d = rotmat_to_6d(torch.stack([s0, s1]))[None].float()
    wr = torch.stack([wrist] * 2)[None].float()
    batch = dict(kp2d=kp2d[None].float(), kp2d_conf=torch.ones(1, T, 2, 21), K=item["K"][None],
                 world_to_cam=item["world_to_cam"][None], frame_mask=torch.ones(1, T, dtype=torch.bool))
    w = keep_weights(rot6d, wr, batch, hands, 1)[0, 0, :, :, 4]  # (T, 2) sample 0's weight on the middle finger
    assert float(w[:12].min()) > 0.99 and float(w[-12:].max()) < 0.01
    assert float((w[1:] - w[:-1]).abs().max()) < 0.5


def test_smooth_in_time_keeps_constants_and_fills_unseen_frames():
    """smooth_in_time: a constant stays constant; with a mask, the frames that count decide, and a stretch with no
    counted frame near it takes the mean of those that count."""
    from handcast.models.lifting import smooth_in_time

    x = torch.full((1, 2, 30, 2), 0.7)
    assert torch.allclose(smooth_in_time(x, 3.0), x)
    y = torch.zeros(1, 1, 30, 1)
    y[:, :, :10] = 1.0
    seen = torch.zeros(1, 1, 30, 1)
    seen[:, :, :10] = 1.0  # only the first ten frames count, all with the value 1
    assert torch.allclose(smooth_in_time(y, 2.0, seen), torch.ones_like(y))


def test_select_weights_ranks_the_orientation_again_with_the_chosen_fingers():
    """Keep 1: sample 0 has the true global orientation but every finger bent, samples 1 and 2 the true fingers
    under an orientation turned by 0.2 and 0.5 rad. Whole samples rank sample 1 first; the fingers then come from
    a sample with true fingers, and ranking the orientation again, with those fingers, gives it to sample 0: the
    weighted mean is the true pose."""
    from handcast.geometry import aa_to_rotmat, rotmat_to_6d
    from handcast.hand import HandModel
    from handcast.models.lifting import average_samples, keep_weights, sample_consistency

    hands = HandModel("open")
    item = _synthetic_item(7, T=8)
    R = aa_to_rotmat(item["pose"].double())
    wrist = item["joints3d"][:, :, 0].double()
    j0 = hands.rest_joints().double()[:, 0]
    kp = hands.keypoints(R, transl=wrist - j0, rep="rotmat")
    kp2d = project(transform_points(item["world_to_cam"].double()[:, None, None], kp), item["K"].double())
    bent = _bent(R, range(1, 16), 1.2)

    def turned(a):
        out = R.clone()
        out[:, :, 0] = R[:, :, 0] @ aa_to_rotmat(torch.tensor([0.0, a, 0.0], dtype=torch.float64))
        return out

    rot6d = rotmat_to_6d(torch.stack([bent, turned(0.2), turned(0.5)]))[None].float()
    wr = torch.stack([wrist] * 3)[None].float()
    batch = dict(kp2d=kp2d[None].float(), kp2d_conf=torch.ones(1, 8, 2, 21), K=item["K"][None],
                 world_to_cam=item["world_to_cam"][None], frame_mask=torch.ones(1, 8, dtype=torch.bool))
    s = sample_consistency(rot6d, wr, batch, hands)[0]  # (3, 2)
    assert bool((s[1] < s[0]).all())  # whole samples alone would take sample 1's orientation
    W = keep_weights(rot6d, wr, batch, hands, 1)
    assert torch.allclose(W[0, 0, ..., 0], torch.ones(8, 2), atol=1e-5)
    Rm, _ = average_samples(rot6d, wr, W)
    assert torch.allclose(Rm[0].double(), R, atol=1e-4)


def test_keep_weights_in_chunks_equal_one_pass(monkeypatch):
    """keep_weights ranks long batches a few clips at a time (SELECT_CHUNK): the weights are those of one pass."""
    import handcast.models.lifting as ml
    from handcast.geometry import aa_to_rotmat, rotmat_to_6d
    from handcast.hand import HandModel

    hands = HandModel("open")
    g = torch.Generator().manual_seed(0)
    B, S, T = 3, 4, 6
    rot6d = rotmat_to_6d(aa_to_rotmat(0.3 * torch.randn(B, S, T, 2, 16, 3, generator=g)))
    wrist = torch.tensor([0.0, 0.0, 0.5]) + 0.05 * torch.randn(B, S, T, 2, 3, generator=g)
    batch = dict(kp2d=300 + 100 * torch.rand(B, T, 2, 21, 2, generator=g), kp2d_conf=torch.ones(B, T, 2, 21),
                 K=torch.tensor([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]]).expand(B, 3, 3),
                 world_to_cam=torch.eye(4).expand(B, T, 4, 4), frame_mask=torch.ones(B, T, dtype=torch.bool))
    whole = ml.keep_weights(rot6d, wrist, batch, hands, 2)
    monkeypatch.setattr(ml, "SELECT_CHUNK", S * T)  # one clip at a time
    assert torch.allclose(ml.keep_weights(rot6d, wrist, batch, hands, 2), whole, atol=1e-6)
    assert whole.shape == (B, S, T, 2, 16)
