"""Domains and presets: the lab / diverse / wild differences are real, presets are well formed."""

from __future__ import annotations

import numpy as np
import pytest

from handcast.errors import HandcastError
from handcast.synth import DOMAINS, PRESETS, SPLITS, get_domain, get_preset
from handcast.synth.camera import sample_rig
from handcast.synth.scene import OBJECT_CATALOG, sample_scene

N = 60


@pytest.fixture(scope="module")
def samples():
    out = {}
    for name, dom in DOMAINS.items():
        rng = np.random.default_rng(0)
        scenes = [sample_scene(rng, dom) for _ in range(N)]
        rigs = [sample_rig(rng, dom, (256, 256)) for _ in range(N)]
        out[name] = (scenes, rigs)
    return out


def test_declared_ranges_differ():
    lab, div, wild = DOMAINS["lab"], DOMAINS["diverse"], DOMAINS["wild"]
    assert (lab.provenance, div.provenance, wild.provenance) == ("gt", "2d-only", "gt")
    assert lab.kp2d_noise is None and div.kp2d_noise is not None and wild.kp2d_noise is not None
    # fields of view: lab inside diverse, wild outside both (unseen)
    assert div.fov_deg[0] <= lab.fov_deg[0] and lab.fov_deg[1] <= div.fov_deg[1]
    assert wild.fov_deg[0] > div.fov_deg[1]
    # camera height / tilt ranges widen from lab to diverse
    for attr in ("cam_height", "cam_tilt_deg", "cam_yaw_deg"):
        lo, hi = getattr(lab, attr)
        dlo, dhi = getattr(div, attr)
        assert dlo < lo and hi < dhi, attr
    # object sets: lab subset of diverse subset of wild, wild adds unseen kinds
    assert set(lab.object_kinds) < set(div.object_kinds) < set(wild.object_kinds)
    assert all(k in OBJECT_CATALOG for k in wild.object_kinds)
    # backgrounds and table textures
    assert set(wild.backgrounds).isdisjoint(div.backgrounds) and set(wild.backgrounds).isdisjoint(lab.backgrounds)
    assert set(lab.table_textures).isdisjoint(div.table_textures)
    # hand shapes: wild outside the training range
    assert wild.betas_outside is not None and wild.betas_outside[0] > max(abs(x) for x in div.betas_range)
    assert max(abs(x) for x in lab.betas_range) < max(abs(x) for x in div.betas_range)


def test_sampled_parameters_fall_in_their_ranges(samples):
    for name, (scenes, rigs) in samples.items():
        dom = DOMAINS[name]
        fov = np.array([r.fov_deg for r in rigs])
        assert fov.min() >= dom.fov_deg[0] and fov.max() <= dom.fov_deg[1]
        # the focal length matches the field of view
        f = np.array([r.K[0, 0] for r in rigs])
        np.testing.assert_allclose(f, 128 / np.tan(np.radians(fov) / 2))
        heights = np.array([r.eye[2] for r in rigs])
        assert heights.min() >= dom.cam_height[0] and heights.max() <= dom.cam_height[1]
        tilt = np.degrees(np.arctan2(np.array([r.eye[2] for r in rigs]),
                                     np.array([np.linalg.norm((r.target - r.eye)[:2]) for r in rigs])))
        assert tilt.min() >= dom.cam_tilt_deg[0] - 1e-6 and tilt.max() <= dom.cam_tilt_deg[1] + 1e-6
        kinds = {o.kind for s in scenes for o in s.objects}
        assert kinds <= set(dom.object_kinds)
        n_obj = [len(s.objects) for s in scenes]
        assert min(n_obj) >= 3 and max(n_obj) <= dom.n_objects[1]
        assert {s.table_texture for s in scenes} <= set(dom.table_textures)
        assert {s.background for s in scenes} <= set(dom.backgrounds)
        betas = np.stack([s.betas for s in scenes])
        if dom.betas_outside is None:
            assert np.abs(betas).max() <= max(abs(x) for x in dom.betas_range)
        else:
            assert np.abs(betas[:, :, :2]).min() >= dom.betas_outside[0]
    # the domains really produce different things
    lab_kinds = {o.kind for s in samples["lab"][0] for o in s.objects}
    wild_kinds = {o.kind for s in samples["wild"][0] for o in s.objects}
    assert wild_kinds - set(DOMAINS["diverse"].object_kinds)  # unseen kinds do appear
    assert len(lab_kinds) < len(wild_kinds)


def test_objects_do_not_overlap(samples):
    for scenes, _ in samples.values():
        for s in scenes:
            for i, a in enumerate(s.objects):
                for b in s.objects[i + 1:]:
                    assert np.linalg.norm(a.position[:2] - b.position[:2]) > a.radius + b.radius


def test_get_domain_errors():
    assert get_domain("lab") is DOMAINS["lab"]
    with pytest.raises(HandcastError, match="lab, diverse, wild"):
        get_domain("studio")


def test_presets():
    assert set(PRESETS) >= {"smoke", "tiny", "paper"}
    for p in PRESETS.values():
        assert tuple(p.splits) == SPLITS
        assert {s.domain for s in p.splits.values()} == {"lab", "diverse", "wild"}
        for name, s in p.splits.items():
            assert s.domain == name.split("_")[0]
            assert (s.futures >= 3) == name.endswith("_test")
        assert p.image_size[0] >= 224 and p.image_size[1] >= 224
    tiny = PRESETS["tiny"]
    assert tiny.n_frames == 64 and 900 <= tiny.n_clips <= 1200
    assert PRESETS["paper"].n_frames == 256 and PRESETS["paper"].n_clips >= 20000
    assert PRESETS["smoke"].n_frames == 32 and PRESETS["smoke"].n_clips <= 30
    with pytest.raises(HandcastError, match="smoke, tiny, paper"):
        get_preset("huge")
