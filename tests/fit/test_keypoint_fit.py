"""The keypoint fit of the single-image pose estimator: it lands on exact keypoints from a badly turned start,
keeps the articulation the network gave where 2D is silent, and mirrors left hands correctly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from handcast.fit.keypoint_fit import KeypointFitConfig, fit_keypoints, inplane_angle, refine_pose
from handcast.geometry import aa_to_rotmat
from handcast.hand import HandModel
from handcast.models.cascade.estimate import PoseResult
from handcast.models.cascade.handutil import finger_pose_pool, right_hand


@pytest.fixture(scope="module")
def hands():
    return HandModel("open")


def _scene(hands, n=3, seed=0):
    """n right hands: (joints root-relative, root, rotmats, keypoints px, K)."""
    fingers = torch.as_tensor(finger_pose_pool(hands, n, seed=seed), dtype=torch.float32)
    glob = torch.tensor([[2.2, 0.3, 0.1], [1.5, -0.6, 0.4], [2.8, 0.2, -0.5]])[:n]
    R = torch.cat([aa_to_rotmat(glob).unsqueeze(1), aa_to_rotmat(fingers)], 1)
    _, j = right_hand(hands, R)
    root = torch.tensor([[0.05, -0.02, 0.45], [-0.1, 0.05, 0.8], [0.0, 0.0, 0.3]])[:n]
    K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]).expand(n, 3, 3)
    P = j + root[:, None]
    uv = (K[:, None] @ P.unsqueeze(-1)).squeeze(-1)
    return j, root, R, uv[..., :2] / uv[..., 2:], K


def _roll(deg):
    a = np.radians(deg)
    return torch.tensor([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], dtype=torch.float32)


def test_inplane_angle_known_answer(hands):
    j, _, _, _, _ = _scene(hands)
    rays = (j[..., :2] @ _roll(40.0)[:2, :2].T)
    ang = inplane_angle(j.double(), rays.double(), torch.ones(3, 21, dtype=torch.float64))
    assert torch.allclose(torch.rad2deg(ang).float(), torch.full((3,), 40.0), atol=1e-3)


def test_fit_recovers_a_hand_turned_the_wrong_way(hands):
    torch.manual_seed(0)
    j, root, R, kp, K = _scene(hands)
    start = j @ _roll(120.0).T  # the network's answer, turned 120 degrees in the image plane
    out = fit_keypoints(hands, start, kp, torch.ones(3, 21), K, KeypointFitConfig(iterations=250, w_prior=4.0))
    assert float(out["reproj_px"].max()) < 1.0  # lands on the keypoints
    P = out["joints"] + out["root"][:, None]
    uv = (K[:, None] @ P.unsqueeze(-1)).squeeze(-1)
    assert float(((uv[..., :2] / uv[..., 2:]) - kp).norm(dim=-1).median()) < 1.0
    # the root is where the hand is (the size prior fixes the scale), and the depth is positive
    assert float((out["root"] - root).norm(dim=-1).max()) < 0.08
    # the fit's orientation correction undoes most of the start's turn
    assert float((out["correction"] @ start.transpose(1, 2)).transpose(1, 2).sub(j).norm(dim=-1).mean()) < 0.02


def test_without_the_fit_the_root_collapses(hands):
    """The regression the fit repairs: the least-squares root of a turned estimate falls to the depth floor."""
    from handcast.models.cascade.aggregate import fit_root

    j, _, _, kp, K = _scene(hands)
    t = fit_root(j @ _roll(120.0).T, kp, torch.ones(3, 21), K)
    assert float(t[:, 2].min()) <= 0.05 + 1e-6


def test_refine_pose_mirrors_left_hands(hands):
    """A left hand (the mirror of a right one) is fitted like the right one, mirrored back; pose is the left
    model's axis-angle."""
    j, root, R, kp, K = _scene(hands, n=1)
    W, H = 640, 480
    mx = np.array([-1.0, 1.0, 1.0], np.float32)
    jl = j[0].numpy() * mx
    rootl = root[0].numpy() * mx
    Kl = K[0].numpy().copy()
    Kl[0, 2] = (W - 1) - Kl[0, 2]
    P = jl + rootl
    uv = P @ Kl.T
    uv = uv[:, :2] / uv[:, 2:]
    V = hands.num_vertices
    res = PoseResult(handedness=np.array(["left"]), hand=np.array([1], np.int8), joints=jl[None],
                     vertices=np.zeros((1, V, 3), np.float32), faces=[hands.faces(1)],
                     joint_samples=np.repeat(jl[None, None], 2, 1), vertex_samples=np.zeros((1, 2, V, 3), np.float32),
                     root=np.array([[0, 0, 0.05]], np.float32), K=Kl, focal_assumed=False,
                     boxes=np.zeros((1, 4), np.float32), kp2d=uv[None].astype(np.float32),
                     kp2d_conf=np.ones((1, 21), np.float32), image_size=(W, H), aggregation="median", sampler="ddim",
                     steps=1, num_samples=2, hand_model="open")
    out = refine_pose(res, hands)
    assert out.refined and out.root_network is not None
    np.testing.assert_allclose(out.root[0], rootl, atol=0.03)
    Pf = out.joints[0] + out.root[0]
    e = Pf @ Kl.T
    assert np.median(np.linalg.norm(e[:, :2] / e[:, 2:] - uv, axis=-1)) < 1.0
    # the left model with the returned pose reproduces the fitted joints
    pose = torch.as_tensor(out.pose)[None]  # (1, 1, 16, 3) -> HandModel wants (..., 2, 16, 3)
    both = torch.zeros(1, 2, 16, 3)
    both[:, 1] = pose[:, 0]
    kp3 = hands(both, torch.as_tensor(out.betas)[None].expand(1, 2, 10).contiguous()).keypoints[0, 1]
    kp3 = kp3 - kp3[:1]
    np.testing.assert_allclose(kp3.numpy(), out.joints[0], atol=2e-3)


def test_default_prior_still_lands_near_the_keypoints(hands):
    """The shipped prior (fingers held near the network's articulation) trades a little 2D fit for 3D: from the
    same badly turned start, every hand ends within 2 px mean reprojection and 3 cm of its true root."""
    j, root, _, kp, K = _scene(hands)
    out = fit_keypoints(hands, j @ _roll(120.0).T, kp, torch.ones(3, 21), K)
    assert float(out["reproj_px"].max()) < 2.0
    assert float((out["root"] - root).norm(dim=-1).max()) < 0.03


def test_the_prior_weight_trades_keypoint_fidelity_for_the_networks_fingers(hands):
    """``handcast pose --fit-prior W``: from a start whose fingers are another hand's, a weak pull follows the
    keypoints closer than the default, and a strong one keeps the start's fingers closer."""
    from handcast.geometry import rotmat_to_aa, sixd_to_aa
    from handcast.models.cascade.fitting import fit_mesh_to_joints

    _, _, _, kp, K = _scene(hands, n=2)
    jw, _, _, _, _ = _scene(hands, n=2, seed=7)  # the "network" got the fingers of other hands
    start = jw - jw[:, :1]
    outs = {w: fit_keypoints(hands, start, kp, torch.ones(2, 21), K, KeypointFitConfig(w_prior=w, iterations=150))
            for w in (0.0, 100.0, 10000.0)}
    reproj = {w: float(o["reproj_px"].mean()) for w, o in outs.items()}
    assert reproj[0.0] < reproj[100.0] < reproj[10000.0]
    assert reproj[0.0] < 1.0
    start_fingers = sixd_to_aa(fit_mesh_to_joints(hands, start, iterations=100)["rot6d"])[:, 1:]
    dev = {w: float((rotmat_to_aa(o["rotmats"][:, 1:]) - start_fingers).norm(dim=-1).mean()) for w, o in outs.items()}
    assert dev[10000.0] < dev[100.0] < dev[0.0]


def test_the_wrist_weight_keeps_the_fit_on_the_wrist_keypoint(hands):
    """When the network's fingers disagree with the keypoints' (another hand's articulation as the start), the
    near-L1 data term with equal weights gives up the wrist; ``w_wrist`` holds the fitted wrist on its keypoint
    without moving the rest of the hand further from theirs."""
    _, _, _, kp, K = _scene(hands, n=2)
    jw, _, _, _, _ = _scene(hands, n=2, seed=7)
    start = jw - jw[:, :1]
    err = {}
    for w in (1.0, 5.0):
        o = fit_keypoints(hands, start, kp, torch.ones(2, 21), K, KeypointFitConfig(w_wrist=w, iterations=150))
        P = o["joints"] + o["root"][:, None]
        uv = (K[:, None] @ P.unsqueeze(-1)).squeeze(-1)
        err[w] = ((uv[..., :2] / uv[..., 2:]) - kp).norm(dim=-1)  # (2, 21) px
    assert float(err[5.0][:, 0].mean()) < 0.5 * float(err[1.0][:, 0].mean())
    assert float(err[5.0][:, 1:].mean()) < 1.2 * float(err[1.0][:, 1:].mean())


def test_the_fit_stays_within_the_joint_limits_however_hard_the_keypoints_pull(hands):
    """Keypoints of a hand whose fingers bend 2.5 times further than the model allows, with no pull towards the
    start: the fitted finger rotations stay within the joint limits (they are projected onto them)."""
    from handcast.geometry import rotmat_to_aa

    fingers = torch.as_tensor(finger_pose_pool(hands, 2, seed=3), dtype=torch.float32) * 2.5
    lim = hands.joint_limits[0]
    assert bool(((fingers < lim[..., 0] - 0.1) | (fingers > lim[..., 1] + 0.1)).any())  # the keypoints' hand is outside
    R = torch.cat([aa_to_rotmat(torch.tensor([[2.2, 0.3, 0.1], [1.5, -0.6, 0.4]])).unsqueeze(1), aa_to_rotmat(fingers)], 1)
    _, j = right_hand(hands, R)
    K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]]).expand(2, 3, 3)
    P = j + torch.tensor([[0.0, 0.0, 0.4]])
    uv = (K[:, None] @ P.unsqueeze(-1)).squeeze(-1)
    out = fit_keypoints(hands, j - j[:, :1], uv[..., :2] / uv[..., 2:], torch.ones(2, 21), K,
                        KeypointFitConfig(w_prior=0.0, iterations=100))
    aa = rotmat_to_aa(out["rotmats"][:, 1:])
    assert bool((aa >= lim[..., 0] - 1e-3).all()) and bool((aa <= lim[..., 1] + 1e-3).all())


@pytest.mark.parametrize("field", ["w_prior", "w_betas", "w_depth", "prior_scale", "w_wrist"])
def test_fit_config_refuses_negative_or_non_finite_weights(field):
    from handcast.errors import HandcastError

    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(HandcastError, match=field):
            KeypointFitConfig(**{field: bad})
