"""Official-MANO import without chumpy: a fake MANO pickle round trip, and malicious pickles refused."""

from __future__ import annotations

import os
import pickle
import sys
import types

import numpy as np
import pytest
import torch

from handcast.errors import HandcastError
from handcast.hand import HandModel, import_mano, mano_import_main
from handcast.hand import open_model as om
from handcast.hand.mano_import import default_mano_dir, read_mano_pickle


def _fake_modules(monkeypatch):
    """Stand-in classes that pickle as chumpy.ch.Ch and the old scipy.sparse.csc.csc_matrix."""
    chumpy = types.ModuleType("chumpy")
    ch = types.ModuleType("chumpy.ch")
    csc = types.ModuleType("scipy.sparse.csc")

    class Ch:  # the real chumpy Ch pickles its __dict__ minus _parents/_cache
        pass

    class csc_matrix:  # noqa: N801 - as in scipy (python 2 era): plain __dict__ state
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    csc_matrix.__module__, csc_matrix.__qualname__ = "scipy.sparse.csc", "csc_matrix"
    ch.Ch, csc.csc_matrix, chumpy.ch = Ch, csc_matrix, ch
    monkeypatch.setitem(sys.modules, "chumpy", chumpy)
    monkeypatch.setitem(sys.modules, "chumpy.ch", ch)
    monkeypatch.setitem(sys.modules, "scipy.sparse.csc", csc)
    return Ch, csc_matrix


def _make_ch(Ch, x):
    obj = Ch.__new__(Ch)
    obj.__dict__.update({"x": np.asarray(x, dtype=np.float64), "_dirty_vars": {"x"}, "_itr": None,
                         "_depends_on_deps": {}, "_make_dense": False, "_make_sparse": False})
    return obj


def _make_csc(cls, dense):
    import scipy.sparse as sp

    m = sp.csc_matrix(dense)
    obj = cls.__new__(cls)
    obj.__dict__.update({"_shape": m.shape, "maxprint": 50, "indices": m.indices.astype(np.int32),
                         "indptr": m.indptr.astype(np.int32), "data": m.data})
    return obj


def _fake_mano_dict(arr, Ch, csc, posedirs_scale=0.0, seed=0):
    rng = np.random.default_rng(seed)
    posedirs = rng.normal(size=arr["posedirs"].shape) * posedirs_scale
    return {
        "hands_components": arr["hands_components"],
        "f": arr["f"].astype(np.uint32),
        "J_regressor": _make_csc(csc, arr["J_regressor"]),
        "kintree_table": arr["kintree_table"],
        "J": arr["J"],
        "bs_style": "lbs",
        "hands_coeffs": rng.normal(size=(10, 45)),
        "weights": arr["weights"],
        "posedirs": posedirs,
        "hands_mean": arr["hands_mean"],
        "v_template": arr["v_template"],
        "shapedirs": _make_ch(Ch, arr["shapedirs"]),
        "bs_type": "lrotmin",
    }


def _write_fake_mano(tmp_path, monkeypatch, protocol=2, posedirs_scale=0.0):
    Ch, csc = _fake_modules(monkeypatch)
    paths = []
    for side in ("right", "left"):
        d = _fake_mano_dict(om.load_open_model(side), Ch, csc, posedirs_scale, seed=len(paths))
        p = tmp_path / f"MANO_{side.upper()}.pkl"
        p.write_bytes(pickle.dumps(d, protocol=protocol))
        paths.append(p)
    return paths


@pytest.mark.parametrize("protocol", [0, 2])
def test_fake_mano_round_trip(tmp_path, monkeypatch, protocol):
    right_pkl, left_pkl = _write_fake_mano(tmp_path, monkeypatch, protocol)
    raw = right_pkl.read_bytes()
    assert b"chumpy.ch" in raw and b"csc_matrix" in raw  # really exercises the stand-ins
    monkeypatch.delitem(sys.modules, "chumpy.ch")  # reading must not need chumpy
    out = tmp_path / "mano"
    assert mano_import_main(right_pkl, left_pkl, out, False) == out
    right = om.load_open_model("right")
    with np.load(out / "MANO_RIGHT.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["shapedirs"], right["shapedirs"])
        np.testing.assert_allclose(z["J_regressor"], right["J_regressor"], atol=1e-7)  # stored float32
        np.testing.assert_array_equal(z["f"], right["f"])
        assert str(z["bs_type"]) == "lrotmin"
    with np.load(out / "MANO_LEFT.npz", allow_pickle=False) as z:
        assert not bool(z["left_shapedirs_fixed"])
        np.testing.assert_allclose(z["shapedirs"], om.load_open_model("left")["shapedirs"])


def test_imported_files_drive_hand_model(tmp_path, monkeypatch):
    # MANO-format files with nonzero pose blend shapes: the "mano" HandModel runs through smplx,
    # and its keypoints-only path (which applies the tip pose blend) still matches forward().
    right_pkl, left_pkl = _write_fake_mano(tmp_path, monkeypatch, posedirs_scale=1e-3)
    out = import_mano(right_pkl, left_pkl, tmp_path / "mano")
    mano = HandModel("mano", mano_dir=out, dtype=torch.float64)
    assert mano.kind == "mano" and mano.tip_vertex_ids == (744, 320, 443, 554, 671)
    assert mano.joint_limits.shape == (2, 15, 3, 2)
    g = torch.Generator().manual_seed(0)
    pose = torch.randn(4, 2, 16, 3, generator=g, dtype=torch.float64) * 0.5
    betas = torch.randn(4, 2, 10, generator=g, dtype=torch.float64)
    transl = torch.randn(4, 2, 3, generator=g, dtype=torch.float64) * 0.1
    full = mano(pose, betas, transl)
    torch.testing.assert_close(mano.keypoints(pose, betas, transl), full.keypoints, atol=1e-6, rtol=0)
    # with zero pose blend shapes the imported model is the open model itself
    open_ = HandModel("open", dtype=torch.float64)
    zero = torch.zeros(1, 2, 16, 3, dtype=torch.float64)
    torch.testing.assert_close(mano(zero, betas[:1]).vertices, open_(zero, betas[:1]).vertices, atol=1e-6, rtol=0)
    # "auto" picks MANO when installed in $HANDCAST_HOME/mano
    monkeypatch.setenv("HANDCAST_HOME", str(tmp_path))
    assert default_mano_dir() == tmp_path / "mano"
    assert HandModel("auto").kind == "mano"
    from handcast.hand import describe_installed_models

    assert "installed in" in describe_installed_models() and "fixed: no" in describe_installed_models()


def test_fix_left_shapedirs(tmp_path, monkeypatch):
    right_pkl, left_pkl = _write_fake_mano(tmp_path, monkeypatch)
    monkeypatch.setenv("HANDCAST_HOME", str(tmp_path / "home"))
    out = import_mano(right_pkl, left_pkl, fix_left_shapedirs=True)
    assert out == tmp_path / "home" / "mano"
    left = om.load_open_model("left")
    with np.load(out / "MANO_LEFT.npz", allow_pickle=False) as z:
        assert bool(z["left_shapedirs_fixed"])
        np.testing.assert_allclose(z["shapedirs"][:, 0], -left["shapedirs"][:, 0])
        np.testing.assert_allclose(z["shapedirs"][:, 1:], left["shapedirs"][:, 1:])
    with np.load(out / "MANO_RIGHT.npz", allow_pickle=False) as z:
        np.testing.assert_allclose(z["shapedirs"], om.load_open_model("right")["shapedirs"])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "MANO_RIGHT.pkl"
    bad.write_bytes(pickle.dumps({"v_template": _Evil(marker)}, protocol=2))
    with pytest.raises(HandcastError, match=r"refused: pickle wants to load '(posix|os|nt)\.system'"):
        read_mano_pickle(bad)
    assert not marker.exists()
    # hand-written protocol-0 pickle naming os.system directly
    crafted = tmp_path / "crafted.pkl"
    crafted.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    with pytest.raises(HandcastError, match=r"refused: pickle wants to load 'os\.system'"):
        import_mano(crafted, crafted, tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()
    # builtins beyond the allow-list are refused too (eval, getattr, __import__)
    for name in (b"eval", b"getattr", b"__import__"):
        p = tmp_path / "b.pkl"
        p.write_bytes(b"c__builtin__\n" + name + b"\n(S'1'\ntR.")
        with pytest.raises(HandcastError, match="refused"):
            read_mano_pickle(p)


def test_other_bad_inputs(tmp_path, monkeypatch):
    with pytest.raises(HandcastError, match="not found"):
        read_mano_pickle(tmp_path / "missing.pkl")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle at all")
    with pytest.raises(HandcastError):
        read_mano_pickle(junk)
    lst = tmp_path / "list.pkl"
    lst.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(HandcastError, match="dict"):
        read_mano_pickle(lst)
    # an unsupported chumpy class is reported as such
    _fake_modules(monkeypatch)
    sel = types.ModuleType("chumpy.reordering")

    class Select:
        pass

    Select.__module__, Select.__qualname__ = "chumpy.reordering", "Select"
    sel.Select = Select
    monkeypatch.setitem(sys.modules, "chumpy.reordering", sel)
    p = tmp_path / "sel.pkl"
    p.write_bytes(pickle.dumps({"shapedirs": Select()}, protocol=2))
    with pytest.raises(HandcastError, match="chumpy.reordering.Select"):
        read_mano_pickle(p)
    # right and left swapped is caught
    right_pkl, left_pkl = _write_fake_mano(tmp_path, monkeypatch)
    with pytest.raises(HandcastError, match="swapped"):
        import_mano(left_pkl, right_pkl, tmp_path / "swapped")
    # a dict that is not a MANO model
    p = tmp_path / "other.pkl"
    p.write_bytes(pickle.dumps({"a": np.zeros(3)}, protocol=2))
    with pytest.raises(HandcastError, match="missing"):
        read_mano_pickle(p)


@pytest.mark.parametrize("damage,needle", [
    ("nan_vertices", "v_template holds 1 non-finite"),
    ("face_out_of_range", "faces index vertices"),
    ("posedirs_shape", "posedirs must be"),
    ("shapedirs_shape", "shapedirs must be"),
    ("weights_shape", "weights must be"),
])
def test_import_refuses_a_model_whose_arrays_do_not_fit(tmp_path, monkeypatch, damage, needle):
    Ch, csc = _fake_modules(monkeypatch)
    arr = om.load_open_model("right")
    d = _fake_mano_dict(arr, Ch, csc)
    if damage == "nan_vertices":
        d["v_template"] = arr["v_template"].copy()
        d["v_template"][5, 1] = np.nan
    elif damage == "face_out_of_range":
        d["f"] = arr["f"].astype(np.uint32).copy()
        d["f"][0, 0] = 5000
    elif damage == "posedirs_shape":
        d["posedirs"] = np.zeros((778, 3, 10))
    elif damage == "shapedirs_shape":
        d["shapedirs"] = _make_ch(Ch, np.zeros((700, 3, 10)))
    else:
        d["weights"] = arr["weights"][:, :5]
    bad = tmp_path / "MANO_RIGHT.pkl"
    bad.write_bytes(pickle.dumps(d, protocol=2))
    (tmp_path / "ok").mkdir()
    _, left = _write_fake_mano(tmp_path / "ok", monkeypatch)
    with pytest.raises(HandcastError, match=needle) as ei:
        import_mano(bad, left, tmp_path / "mano")
    assert "\n" not in str(ei.value) and str(bad) in str(ei.value)
    assert not (tmp_path / "mano").exists()


def test_mano_info_says_when_the_installed_files_are_damaged(tmp_path, monkeypatch):
    from handcast.hand import describe_installed_models

    right_pkl, left_pkl = _write_fake_mano(tmp_path, monkeypatch)
    out = import_mano(right_pkl, left_pkl, tmp_path / "mano")
    assert "HandModel(kind='auto') uses: mano" in describe_installed_models(out)
    (out / "MANO_RIGHT.npz").write_bytes(b"garbage")
    text = describe_installed_models(out)
    assert "damaged" in text and "not a readable .npz" in text and "fails until" in text
    with pytest.raises(HandcastError, match="MANO_RIGHT.npz"):
        HandModel("mano", mano_dir=out)
