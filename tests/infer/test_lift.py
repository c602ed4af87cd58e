"""``handcast lift`` (handcast.infer.lift): 2D tracks or a video -> L over windows -> refinement -> files.

Synthetic tracks are exact projections of a known 3D motion (a ``lab`` clip of handcast.synth, the
lifting model's training domain); the real-video test runs on the first 60 frames of
../shared/data/real/dex_retargeting/human_hand_video.mp4 and skips without mediapipe or the data folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from handcast.errors import HandcastError
from handcast.io import save_npz

REAL_VIDEO = Path(__file__).resolve().parents[3] / "shared" / "data" / "real" / "dex_retargeting" / "human_hand_video.mp4"
T_SYN = 150  # > 2 windows of 64 frames


@pytest.fixture(scope="module")
def clip():
    from handcast.synth import generate_clip

    return generate_clip(3, "lab", n_frames=T_SYN, render=False)


@pytest.fixture(scope="module")
def hands():
    from handcast.hand import HandModel

    return HandModel("auto")


def _static_uv(clip) -> np.ndarray:
    """The clip's 3D joints (frame-0 camera) projected with a static camera: (T, 2, 21, 2) px."""
    X = clip.joints3d.astype(np.float64)
    uv = (X @ clip.K.astype(np.float64).T)
    return (uv[..., :2] / uv[..., 2:]).astype(np.float32)


def _tracks_moving(clip, path: Path, **changes) -> Path:
    arrays = dict(uv=clip.kp2d, hand_valid=clip.valid, confidence=clip.kp2d_conf, K=clip.K,
                  world_to_cam=clip.world_to_cam, fps=np.float64(30.0), image_size=np.array(clip.image_size))
    arrays.update(changes)
    save_npz(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def _run(src, out, **kw):
    from handcast.infer.lift import run_lift

    kw.setdefault("progress", False)
    kw.setdefault("video", False)
    return run_lift(src, out, **kw)


def _assert_nothing_written(out: Path):
    assert not out.exists() or not any(out.iterdir()), f"left behind: {list(out.iterdir())}"


# ----------------------------------------------------------------------------------------------
# Windows and stitching (no model)


def test_window_starts_cover_and_overlap():
    from handcast.infer.lift import window_starts, window_weights

    assert window_starts(10, 64, 16).tolist() == [0]
    assert window_starts(64, 64, 16).tolist() == [0]
    for T in (65, 113, 150, 621, 1000):
        s = window_starts(T, 64, 16)
        assert s[0] == 0 and s[-1] + 64 == T
        assert np.all(np.diff(s) > 0) and np.all(64 - np.diff(s) >= 16)  # consecutive windows overlap >= 16
        cover = np.zeros(T)
        for a in s:
            cover[a : a + 64] += window_weights(64, 16)
        assert cover.min() > 0
    w = window_weights(64, 16)
    assert w[0] < 0.1 and w[-1] < 0.1 and np.all(w[16:48] == 1.0)
    assert np.allclose(w[48:], w[:16][::-1])  # symmetric ramps: two neighbours sum to a constant


class _OracleLift:
    """A stand-in for L that returns a known motion (frame-0 camera) re-expressed in each window's first
    camera, the way L is trained; ``offset[k]`` (m) is added to the wrists of the k-th window it sees."""

    def __init__(self, rot, wrist, starts, offsets=None):
        self.rot, self.wrist, self.starts = rot, wrist, list(starts)
        self.offsets = offsets if offsets is not None else np.zeros(len(starts))
        self.k = 0

    def sample(self, batch, num, sampler, steps, guidance=1.0, generator=None):
        from handcast.geometry import rotmat_to_6d

        B, W = batch["frame_mask"].shape
        R6 = torch.zeros(B, 1, W, 2, 16, 6)
        wr = torch.zeros(B, 1, W, 2, 3)
        for i in range(B):
            s = self.starts[self.k]
            n = int(batch["frame_mask"][i].sum())
            c = self.w2c[s]  # frame-0 camera -> camera s
            R = self.rot[s : s + n].copy()
            R[:, :, 0] = c[:3, :3] @ R[:, :, 0]
            R6[i, 0, :n] = rotmat_to_6d(torch.from_numpy(R)).float()
            wr[i, 0, :n] = torch.from_numpy(self.wrist[s : s + n] @ c[:3, :3].T + c[:3, 3] + self.offsets[self.k]).float()
            self.k += 1
        return R6, wr


def test_stitching_recovers_a_known_motion_with_a_moving_camera(clip, hands):
    """Each window lifted in its own first camera, mapped back to frame 0 and cross-faded = the motion."""
    from handcast.geometry import aa_to_rotmat
    from handcast.infer.lift import LiftInput, lift_windows, window_starts

    T = clip.joints3d.shape[0]
    inp = LiftInput(uv=clip.kp2d, conf=clip.kp2d_conf, hand_valid=clip.valid, K=clip.K,
                    world_to_cam=clip.world_to_cam, fps=30.0, image_size=tuple(clip.image_size))
    rot = aa_to_rotmat(torch.from_numpy(clip.pose.astype(np.float64))).numpy()
    wrist = clip.joints3d[:, :, 0].astype(np.float64)
    starts = window_starts(T, 64, 16)
    oracle = _OracleLift(rot, wrist, starts)
    oracle.w2c = clip.world_to_cam.astype(np.float64)
    pose, transl, n = lift_windows(oracle, hands, inp, overlap=16, batch_size=2, progress=False)
    assert n == len(starts) == 3
    R = aa_to_rotmat(pose.double()).numpy()
    assert np.abs(R - rot).max() < 1e-4
    j0 = hands.rest_joints(torch.zeros(2, 10))[:, 0].numpy()
    assert np.abs(transl.numpy() + j0 - wrist).max() < 1e-5

    # windows that disagree (wrists 4 cm apart) are blended without a jump at the borders
    oracle = _OracleLift(rot, wrist, starts, offsets=np.array([0.0, 0.04, 0.0]))
    oracle.w2c = clip.world_to_cam.astype(np.float64)
    _, transl_off, _ = lift_windows(oracle, hands, inp, overlap=16, batch_size=8, progress=False)
    dev = transl_off.numpy() - transl.numpy()  # (T, 2, 3): the blended offset
    step = np.abs(np.diff(dev, axis=0)).max()
    assert step < 0.04 / 12  # spread over >= 16 frames: no 4 cm jump
    assert np.abs(dev[starts[1] + 24 : starts[1] + 40]).max() > 0.039  # the middle of window 1 is window 1's


class _SpreadLift(_OracleLift):
    """:class:`_OracleLift` whose samples straddle the known motion: sample s turns every joint by
    (-1)^s ``angle`` rad about its own x axis and moves the wrists by (-1)^s ``shift`` m."""

    def __init__(self, *a, angle=0.3, shift=0.02, **kw):
        super().__init__(*a, **kw)
        self.angle, self.shift, self.nums = angle, shift, []

    def sample(self, batch, num, sampler, steps, guidance=1.0, generator=None):
        from handcast.geometry import aa_to_rotmat, rotmat_to_6d, sixd_to_rotmat

        self.nums.append(num)
        R6, wr = super().sample(batch, 1, sampler, steps, guidance, generator)
        R = sixd_to_rotmat(R6.double())
        outs_R, outs_w = [], []
        for k in range(num):
            turn = aa_to_rotmat(torch.tensor([self.angle * (-1) ** k, 0.0, 0.0], dtype=torch.float64))
            outs_R.append(rotmat_to_6d(R @ turn).float())
            outs_w.append(wr + self.shift * (-1) ** k)
        return torch.cat(outs_R, 1), torch.cat(outs_w, 1)


def test_samples_are_averaged_per_window(clip, hands):
    """num_samples=2 on samples that straddle the motion symmetrically gives the motion back (rotation
    matrices averaged and projected to SO(3), wrists averaged); one sample is off by the turn."""
    import roma

    from handcast.geometry import aa_to_rotmat
    from handcast.infer.lift import LiftInput, lift_windows, window_starts

    T = clip.joints3d.shape[0]
    inp = LiftInput(uv=clip.kp2d, conf=clip.kp2d_conf, hand_valid=clip.valid, K=clip.K,
                    world_to_cam=clip.world_to_cam, fps=30.0, image_size=tuple(clip.image_size))
    rot = aa_to_rotmat(torch.from_numpy(clip.pose.astype(np.float64))).numpy()
    wrist = clip.joints3d[:, :, 0].astype(np.float64)
    j0 = hands.rest_joints(torch.zeros(2, 10))[:, 0].numpy()
    for num, turn_deg, shift in ((1, np.degrees(0.3), 0.02), (2, 0.0, 0.0), (4, 0.0, 0.0)):
        model = _SpreadLift(rot, wrist, window_starts(T, 64, 16))
        model.w2c = clip.world_to_cam.astype(np.float64)
        pose, transl, _ = lift_windows(model, hands, inp, overlap=16, batch_size=2, progress=False, num_samples=num)
        assert set(model.nums) == {num}
        ang = np.degrees(roma.rotmat_geodesic_distance(aa_to_rotmat(pose.double()), torch.from_numpy(rot)).numpy())
        assert np.abs(ang - turn_deg).max() < 1e-3, (num, ang.min(), ang.max())
        off = np.linalg.norm(transl.numpy() + j0 - wrist, axis=-1)  # the shift, turned by the moving camera
        assert np.abs(off - shift * np.sqrt(3)).max() < 2e-4  # (cross-faded windows turn it a little differently)


class _MisreadLift(_OracleLift):
    """:class:`_OracleLift` whose sample 0 is the known motion and sample k > 0 has every joint turned by
    0.25 k rad about its own x axis (a misread hand)."""

    def sample(self, batch, num, sampler, steps, guidance=1.0, generator=None):
        from handcast.geometry import aa_to_rotmat, rotmat_to_6d, sixd_to_rotmat

        R6, wr = super().sample(batch, 1, sampler, steps, guidance, generator)
        R = sixd_to_rotmat(R6.double())
        turns = [aa_to_rotmat(torch.tensor([0.25 * k, 0.0, 0.0], dtype=torch.float64)) for k in range(num)]
        return torch.cat([rotmat_to_6d(R @ t).float() for t in turns], 1), wr.expand(-1, num, -1, -1, -1).clone()


def test_keep_averages_the_samples_that_explain_the_2d(clip, hands):
    """lift_windows(keep=k): of L's samples, only the k that best explain the window's 2D keypoints are averaged:
    with one right sample among misread ones, keep=1 returns it; averaging all of them does not."""
    import roma

    from handcast.geometry import aa_to_rotmat
    from handcast.infer.lift import LiftInput, lift_windows, window_starts

    T = clip.joints3d.shape[0]
    inp = LiftInput(uv=clip.kp2d, conf=clip.kp2d_conf, hand_valid=clip.valid, K=clip.K,
                    world_to_cam=clip.world_to_cam, fps=30.0, image_size=tuple(clip.image_size))
    rot = aa_to_rotmat(torch.from_numpy(clip.pose.astype(np.float64))).numpy()
    wrist = clip.joints3d[:, :, 0].astype(np.float64)
    errs = {}
    for keep in (1, 4):
        model = _MisreadLift(rot, wrist, window_starts(T, 64, 16))
        model.w2c = clip.world_to_cam.astype(np.float64)
        pose, _, _ = lift_windows(model, hands, inp, overlap=16, batch_size=2, progress=False, num_samples=4,
                                  keep=keep)
        ang = roma.rotmat_geodesic_distance(aa_to_rotmat(pose.double()), torch.from_numpy(rot)).numpy()
        errs[keep] = np.degrees(ang[clip.valid]).max()
    assert errs[1] < 1e-3 < 10.0 < errs[4], errs


# ----------------------------------------------------------------------------------------------
# The whole pipeline on synthetic tracks


@pytest.fixture(scope="module")
def moving_result(clip, tmp_path_factory):
    d = tmp_path_factory.mktemp("lift_moving")
    src = _tracks_moving(clip, d / "tracks.npz")
    res = _run(src, d / "out", video=True)
    return res, dict(np.load(d / "out" / "lift.npz")), d


def test_recovers_known_motion_from_tracks(clip, moving_result):
    res, z, d = moving_result
    T = clip.joints3d.shape[0]
    assert [p.name for p in res["outputs"]] == ["lift.npz", "lift.mp4"]
    assert res["windows"] == 3 and res["frames"] == T
    assert z["joints"].shape == (T, 2, 21, 3) and z["pose"].shape == (T, 2, 16, 3) and z["transl"].shape == (T, 2, 3)
    assert z["betas"].shape == (2, 10) and z["hand_valid"].shape == (T, 2) and z["K"].shape == (3, 3)
    assert z["world_to_cam"].shape == (T, 4, 4) and z["uv"].shape == (T, 2, 21, 2)
    v = z["hand_valid"]
    assert v.sum() > 0.9 * clip.valid.sum()
    assert np.isfinite(z["joints"][v]).all() and np.isfinite(z["pose"]).all() and np.isfinite(z["transl"]).all()
    m = res["metrics"]
    assert m["reproj_error_px"] < 2.0, m  # exact projections on a 256-px image
    assert m["reproj_error_px"] < m["lift_only"]["reproj_error_px"]
    gt = clip.joints3d
    e = np.linalg.norm(z["joints"] - gt, axis=-1)[v].mean()
    rr = np.linalg.norm((z["joints"] - z["joints"][..., :1, :]) - (gt - gt[..., :1, :]), axis=-1)[v].mean()
    assert rr < 0.02, rr  # root-relative within 2 cm
    assert e < 0.05, e  # absolute within 5 cm (the mean shape sets the depth)
    # joints are the hand model's keypoints of the stored parameters
    from handcast.hand import HandModel

    hm = HandModel(str(z["hand_model"]))
    with torch.no_grad():
        kp = hm.keypoints(torch.from_numpy(z["pose"]), torch.zeros(T, 2, 10), torch.from_numpy(z["transl"]),
                          rep="aa", convention="flat").numpy()
    assert np.abs(kp[v] - z["joints"][v]).max() < 1e-4


def test_no_jump_at_window_borders(clip, moving_result):
    _, z, _ = moving_result
    v = z["hand_valid"]
    speed = np.linalg.norm(np.diff(z["joints"], axis=0), axis=-1).mean(-1)  # (T-1, 2) m per frame
    ok = v[1:] & v[:-1]
    gt_speed = np.linalg.norm(np.diff(clip.joints3d, axis=0), axis=-1).mean(-1)
    assert speed[ok].max() < 1.5 * gt_speed[ok].max() + 0.005
    acc = np.linalg.norm(z["joints"][2:] - 2 * z["joints"][1:-1] + z["joints"][:-2], axis=-1).mean(-1)
    gt_acc = np.linalg.norm(clip.joints3d[2:] - 2 * clip.joints3d[1:-1] + clip.joints3d[:-2], axis=-1).mean(-1)
    ok3 = v[2:] & v[1:-1] & v[:-2]
    assert acc[ok3].max() < 2.0 * gt_acc[ok3].max() + 0.005


def test_overlay_video_and_viewer_read_the_result(moving_result):
    from handcast.detect import read_video
    from handcast.render.viewer import read_result

    res, z, d = moving_result
    frames, fps, size, _ = read_video(d / "out" / "lift.mp4")
    n = sum(1 for _ in frames)
    assert n == z["joints"].shape[0] and fps == pytest.approx(30.0, abs=0.1)
    r = read_result(d / "out" / "lift.npz")
    assert r.joints.shape[1:] == z["joints"].shape and r.world_to_cam.shape == z["world_to_cam"].shape


def test_one_hand_missing_and_frames_without_hands(clip, tmp_path):
    """Tracks.save layout (no K: --fov), static camera, left hand never seen, no hand in frames 40-59,
    and right hand with only 2 keypoints in frames 70-74."""
    from handcast.detect import Tracks

    T = clip.joints3d.shape[0]
    uv = _static_uv(clip)
    hv = clip.valid.copy()
    hv[:, 1] = False
    hv[40:60] = False
    conf = np.repeat(hv[..., None], 21, axis=-1).astype(np.float32)
    conf[70:75, 0, 2:] = 0.0
    uv = np.where(hv[..., None, None], uv, np.nan).astype(np.float32)
    uv[70:75, 0, 2:] = np.nan
    tr = Tracks(uv=uv, hand_valid=hv, confidence=conf, score=hv.astype(np.float32), fps=30.0,
                image_size=tuple(clip.image_size))
    tr.save(tmp_path / "tracks.npz")
    fov = float(np.degrees(2 * np.arctan(clip.image_size[0] / 2 / clip.K[0, 0])))
    res = _run(tmp_path / "tracks.npz", tmp_path / "out", fov=fov, refine_iterations=300)
    z = np.load(tmp_path / "out" / "lift.npz")
    v = z["hand_valid"]
    assert not v[:, 1].any() and np.isnan(z["joints"][:, 1]).all()
    assert not v[40:60].any() and np.isnan(z["joints"][40:60]).all() and not v[70:75, 0].any()
    assert (v[:, 0] == (clip.valid[:, 0] & ~np.isin(np.arange(T), np.r_[40:60, 70:75]))).all()
    assert np.isfinite(z["joints"][v]).all()
    assert np.isfinite(z["pose"]).all() and np.isfinite(z["transl"]).all()  # invalid hands: finite fillers
    assert res["metrics"]["reproj_error_px"] < 3.0, res["metrics"]
    assert res["hands_observed"]["left"] == 0 and any("no left hand" in m for m in res["messages"])
    assert np.isnan(z["world_to_cam"]).sum() == 0 and np.allclose(z["world_to_cam"], np.eye(4))
    gt = clip.joints3d
    rr = np.linalg.norm((z["joints"] - z["joints"][..., :1, :]) - (gt - gt[..., :1, :]), axis=-1)[v].mean()
    assert rr < 0.025, rr


def test_mirrored_tracks_from_before_the_unmirroring_are_refused(clip, tmp_path):
    """Tracks of a selfie video written before 2026-12-08 kept the mirrored frames' keypoints under the owners'
    labels; lifting them gives hands turned over in depth, so they are refused with what to do. Mirrored tracks
    of today (keypoints of the un-mirrored frames, ``unmirrored``) and ordinary ones lift."""
    from handcast.detect.types import Tracks

    src = _tracks_moving(clip, tmp_path / "t.npz")
    z = dict(np.load(src))
    save_npz(tmp_path / "old.npz", **{**z, "mirrored": np.bool_(True)})
    with pytest.raises(HandcastError, match="written before 2026-12-08.*detect the video again"):
        _run(tmp_path / "old.npz", tmp_path / "o1", max_frames=5, refine_iterations=5)
    assert not (tmp_path / "o1").exists()
    T = len(z["uv"])
    Tracks(uv=z["uv"], hand_valid=z["hand_valid"], confidence=np.ones((T, 2, 21), np.float32),
           score=np.ones((T, 2), np.float32), fps=30.0, image_size=tuple(int(v) for v in z["image_size"]),
           mirrored=True).save(tmp_path / "new.npz")
    assert bool(np.load(tmp_path / "new.npz")["unmirrored"])
    res = _run(tmp_path / "new.npz", tmp_path / "o2", max_frames=5, refine_iterations=5)
    assert res["frames"] == 5


def test_short_sequence_and_max_frames(clip, tmp_path):
    src = _tracks_moving(clip, tmp_path / "tracks.npz")
    res = _run(src, tmp_path / "out", max_frames=5, refine_iterations=50)
    z = np.load(tmp_path / "out" / "lift.npz")
    assert z["joints"].shape == (5, 2, 21, 3) and res["windows"] == 1
    assert np.isfinite(z["joints"][z["hand_valid"]]).all()


def test_guidance_scales_the_condition_and_one_is_plain_sampling(clip, hands):
    """lift_windows(guidance=g): x0 = x0_uncond + g (x0_cond - x0_uncond); g = 1 is the plain sampler. Checked
    against the shipped L with a stand-in whose unconditional prediction is known."""
    import torch

    from handcast.infer.lift import LiftInput, lift_windows, shipped_lift_checkpoint
    from handcast.models.lifting import load_lift

    inp = LiftInput(uv=clip.kp2d[:40], conf=clip.kp2d_conf[:40], hand_valid=clip.valid[:40], K=clip.K,
                    world_to_cam=clip.world_to_cam[:40], fps=30.0, image_size=tuple(clip.image_size))
    model = load_lift(shipped_lift_checkpoint())
    with torch.no_grad():
        plain = lift_windows(model, hands, inp, progress=False)[0]
        same = lift_windows(model, hands, inp, progress=False, guidance=1.0)[0]
        guided = lift_windows(model, hands, inp, progress=False, guidance=3.0)[0]
    assert torch.equal(plain, same)
    assert float((guided - plain).abs().max()) > 1e-3
    # with the unconditional prediction equal to the conditional one, every scale gives the same motion
    real = model.denoise
    model.denoise = lambda x_t, t, *c, conditioned=True: real(x_t, t, *c, conditioned=True)
    try:
        with torch.no_grad():
            flat = lift_windows(model, hands, inp, progress=False, guidance=3.0)[0]
    finally:
        model.denoise = real
    assert torch.allclose(flat, plain, atol=1e-4)


# ----------------------------------------------------------------------------------------------
# Bad input: one line, nothing written


def _bad_cases(clip, d: Path) -> list[tuple[str, Path, dict, str]]:
    cases = []
    good = dict(uv=clip.kp2d, hand_valid=clip.valid, K=clip.K)

    def npz(name, **arrays):
        p = d / f"{name}.npz"
        save_npz(p, **arrays)
        return p

    cases.append(("missing key", npz("nohv", uv=clip.kp2d, K=clip.K), {}, "hand_valid"))
    cases.append(("uv shape", npz("uvshape", uv=clip.kp2d[..., :20, :], hand_valid=clip.valid, K=clip.K), {}, "uv must be"))
    cases.append(("hv shape", npz("hvshape", uv=clip.kp2d, hand_valid=clip.valid[:-1], K=clip.K), {}, "hand_valid must be"))
    K0 = clip.K.copy()
    K0[0, 0] = 0.0
    cases.append(("degenerate K", npz("k0", uv=clip.kp2d, hand_valid=clip.valid, K=K0), {}, "fx"))
    cases.append(("no K", npz("nok", uv=clip.kp2d, hand_valid=clip.valid), {}, "neither K nor image_size"))
    w = clip.world_to_cam.copy()
    w[5, :3, :3] *= 2.0
    cases.append(("not rigid", npz("w2c", world_to_cam=w, **good), {}, "rigid"))
    cases.append(("confidence", npz("conf", confidence=clip.kp2d_conf * 3, **good), {}, "confidence"))
    cases.append(("no hand", npz("nohand", uv=clip.kp2d, hand_valid=np.zeros_like(clip.valid), K=clip.K), {},
                  "no hand"))
    (d / "text.npz").write_text("not a zip")
    cases.append(("not npz", d / "text.npz", {}, "not a readable .npz"))
    cases.append(("missing", d / "absent.mp4", {}, "not found"))
    (d / "empty.mp4").write_bytes(b"")
    cases.append(("empty video", d / "empty.mp4", {}, "empty.mp4"))
    (d / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    cases.append(("undecodable video", d / "noise.mp4", {}, "noise.mp4"))
    ok = npz("ok", **good)
    cases.append(("fov and K", ok, {"fov": 60.0, "intrinsics": d / "k.json"}, "either"))
    cases.append(("fov range", ok, {"fov": 200.0}, "fov"))
    (d / "kbad.json").write_text("[[0, 0, 1], [0, 1, 1], [0, 0, 1]]")
    cases.append(("K json", ok, {"intrinsics": d / "kbad.json"}, "fx"))
    cases.append(("overlap", ok, {"overlap": 64}, "--overlap"))
    cases.append(("sampler", ok, {"sampler": "euler"}, "--sampler"))
    cases.append(("guidance", ok, {"guidance": float("nan")}, "--guidance"))
    cases.append(("keep", ok, {"keep": 0}, "--keep"))
    cases.append(("ckpt", ok, {"ckpt": d / "nock.safetensors"}, "checkpoint not found"))
    return cases


def test_bad_inputs_give_one_line_errors_and_write_nothing(clip, tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name, src, kw, needle in _bad_cases(clip, d):
        out = tmp_path / f"out_{name.replace(' ', '_')}"
        with pytest.raises(HandcastError) as e:
            _run(src, out, refine_iterations=5, **kw)
        msg = str(e.value)
        assert "\n" not in msg and needle in msg, (name, msg)
        assert not out.exists(), name


def test_failure_while_writing_leaves_nothing(clip, tmp_path, monkeypatch):
    import handcast.render.video as rv

    def broken(path, frames, fps=30.0, crf=20):
        next(iter(frames))
        Path(path).write_bytes(b"partial")
        raise HandcastError("disk full (simulated)")

    monkeypatch.setattr(rv, "write_video", broken)
    src = _tracks_moving(clip, tmp_path / "tracks.npz", uv=clip.kp2d[:20], hand_valid=clip.valid[:20],
                         confidence=None, world_to_cam=None)
    out = tmp_path / "out"
    with pytest.raises(HandcastError, match="simulated"):
        _run(src, out, refine_iterations=5, video=True)
    assert not out.exists()
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    with pytest.raises(HandcastError, match="simulated"):
        _run(src, out, refine_iterations=5, video=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# ----------------------------------------------------------------------------------------------
# The real video (first 60 frames)


def test_real_video_first_frames(tmp_path):
    pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install handcast[detect])")
    if not REAL_VIDEO.is_file():
        pytest.skip(f"real test video not found at {REAL_VIDEO} (the shared data folder is absent)")
    res = _run(REAL_VIDEO, tmp_path / "out", max_frames=60, refine_iterations=300, video=True)
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["lift.mp4", "lift.npz", "tracks.npz"]
    z = np.load(tmp_path / "out" / "lift.npz")
    assert z["image"].shape == (720, 1280, 3) and z["image"].dtype == np.uint8
    assert tuple(z["image_size"]) == (1280, 720) and z["joints"].shape == (60, 2, 21, 3)
    v = z["hand_valid"]
    assert v[:, 0].mean() > 0.95  # a right hand throughout
    m = res["metrics"]
    assert m["reproj_error_px"] < 15.0, m  # mediapipe's knuckles and thumb base sit off MANO's joints
    assert m["accel2d_result_px"] < m["accel2d_raw_px"], m  # smoother than the raw detections
    wz = z["wrist"][v[:, 0], 0, 2]
    assert 0.2 < np.median(wz) < 1.5  # a hand at arm's length, in metres
    # the tracks file written beside it lifts again without detection
    res2 = _run(tmp_path / "out" / "tracks.npz", tmp_path / "again", refine_iterations=20)
    assert res2["frames"] == 60 and "tracks file K" in res2["intrinsics"]


@pytest.mark.slow
def test_a_selfie_video_is_lifted_as_its_unmirrored_self(tmp_path):
    """``--mirrored``: the real video flipped left to right and declared a selfie is lifted as the video itself
    (a right hand with the fingers' depth of the original), not as a right hand model forced onto a hand that
    looks like a left one (which 2D allows only turned over in depth: before 2026-12-08 the fingertips came out
    behind the wrist, 4.9 cm mean joint distance from this reading)."""
    pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install handcast[detect])")
    if not REAL_VIDEO.is_file():
        pytest.skip(f"real test video not found at {REAL_VIDEO} (the shared data folder is absent)")
    from handcast.detect import read_video
    from handcast.render.video import write_video

    frames, fps, _, _ = read_video(REAL_VIDEO, max_frames=40)
    frames = np.stack(list(frames))
    write_video(tmp_path / "orig.mp4", frames, fps=fps)  # both through the same encoder
    write_video(tmp_path / "selfie.mp4", np.ascontiguousarray(frames[:, :, ::-1]), fps=fps)
    kw = dict(refine_iterations=100, samples=4, keep=1)
    _run(tmp_path / "orig.mp4", tmp_path / "a", **kw)
    _run(tmp_path / "selfie.mp4", tmp_path / "b", mirrored=True, **kw)
    a, b = np.load(tmp_path / "a" / "lift.npz"), np.load(tmp_path / "b" / "lift.npz")
    assert b["hand_valid"][:, 0].mean() > 0.95 and not b["hand_valid"][:, 1].any()
    tb = np.load(tmp_path / "b" / "tracks.npz")
    assert bool(tb["mirrored"]) and bool(tb["unmirrored"])
    assert np.abs(b["image"].astype(int) - a["image"].astype(int)).mean() < 3
    ok = a["hand_valid"][:, 0] & b["hand_valid"][:, 0]
    ja, jb = a["joints"][ok, 0], b["joints"][ok, 0]
    assert np.linalg.norm(ja - jb, axis=-1).mean() < 0.025
    depth = lambda j: (j[:, [8, 12, 16, 20]].mean(1) - j[:, 0])[:, 2]  # noqa: E731  fingertips vs wrist
    assert (np.sign(depth(ja)) == np.sign(depth(jb))).mean() > 0.9


def test_video_without_hands_says_so_and_writes_nothing(tmp_path):
    pytest.importorskip("mediapipe", reason="mediapipe not installed (pip install handcast[detect])")
    from handcast.render.video import write_video

    frames = [np.full((96, 128, 3), 90 + 10 * i, np.uint8) for i in range(4)]
    write_video(tmp_path / "blank.mp4", frames, 30.0)
    out = tmp_path / "out"
    with pytest.raises(HandcastError, match=r"^no hand detected in .*blank\.mp4$"):
        _run(tmp_path / "blank.mp4", out)
    assert not out.exists()


def test_the_cli_defaults_are_run_lifts():
    """`handcast lift`'s --samples / --refine-iterations defaults are run_lift's (one place to change them)."""
    import inspect

    from handcast.cli import build_parser
    from handcast.infer.lift import DEFAULT_KEEP, DEFAULT_SAMPLES, MAX_SAMPLES, run_lift

    args = build_parser().parse_args(["lift", "x.npz"])
    params = inspect.signature(run_lift).parameters
    assert args.samples == params["samples"].default == DEFAULT_SAMPLES > 1
    assert args.keep == params["keep"].default == DEFAULT_KEEP < DEFAULT_SAMPLES
    assert build_parser().parse_args(["lift", "x.npz", "--keep", str(MAX_SAMPLES)]).keep == MAX_SAMPLES
    assert args.refine_iterations == params["refine_iterations"].default
    assert build_parser().parse_args(["lift", "x.npz", "--samples", str(MAX_SAMPLES)]).samples == MAX_SAMPLES
