"""cli.common: the shared typed validators of the command-line flags."""

import argparse

import pytest

from handcast.cli import common, main
from handcast.errors import HandcastError


def test_int_range():
    parse = common.int_range(1, 10)
    assert parse("1") == 1 and parse(" 10 ") == 10
    for bad, why in (("0", r"\[1, 10\], got 0"), ("11", "got 11"), ("1e3", "integer"), ("2.5", "integer"), ("x", "integer")):
        with pytest.raises(argparse.ArgumentTypeError, match=why):
            parse(bad)
    assert common.int_range(0)("123456789012") == 123456789012


def test_float_range():
    parse = common.float_range(0, 1, lo_open=True)
    assert parse("1") == 1.0 and parse("1e-9") == 1e-9
    for bad in ("0", "-1", "1.5", "nan", "inf", "-inf", "abc"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(bad)
    assert common.float_range()("-3.5") == -3.5


def test_device_names():
    for ok in ("cpu", "cuda", "cuda:1", "mps"):
        assert common.device_name(ok) == ok
    for bad in ("potato", "cuda:", "cuda:x", "CPU", "cuda:1;rm"):
        with pytest.raises(argparse.ArgumentTypeError):
            common.device_name(bad)
    with pytest.raises(HandcastError, match="CUDA device"):
        common.check_device("cuda:4096")


def test_memory_is_refused_with_the_numbers(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(common, "available_memory", lambda: 2 * 2**30)
    common.check_memory(2**30, "x")  # fits
    with pytest.raises(HandcastError, match=r"needs about 4.0 GiB of memory, 2.0 GiB is available"):
        common.check_memory(4 * 2**30, "x")
    # forecast: samples x frames decide; refused before the image is even read
    assert main(["forecast", str(tmp_path / "absent.png"), "--samples", "1000", "--frames", "1024"]) == 2
    err = capsys.readouterr().err
    assert "--samples 1000 x --frames 1024 needs about" in err and len(err.strip().splitlines()) == 1
    assert main(["lift", str(tmp_path / "absent.npz"), "--window", "1024"]) == 2
    assert "--window 1024 needs about" in capsys.readouterr().err


def test_help_states_the_ranges(capsys):
    with pytest.raises(SystemExit):
        main(["forecast", "--help"])
    out = capsys.readouterr().out
    flat = " ".join(out.split())
    assert "futures to sample (default 5) [range [1, 1000]]" in flat and "[range [1, 1024]]" in flat, flat


def test_pose_image_use_flags():
    """``--keypoints-only`` / ``--use-image`` on handcast pose (neither: None = the library default), and
    ``--keypoints-only`` on bench pose; the two pose flags exclude each other."""
    import pytest

    from handcast.cli import build_parser

    p = build_parser()
    assert p.parse_args(["pose", "x.jpg"]).keypoints_only is None
    assert p.parse_args(["pose", "x.jpg", "--keypoints-only"]).keypoints_only is True
    assert p.parse_args(["pose", "x.jpg", "--use-image"]).keypoints_only is False
    assert p.parse_args(["bench", "pose", "--ckpt", "c", "--keypoints-only"]).keypoints_only is True
    assert p.parse_args(["bench", "pose", "--ckpt", "c"]).keypoints_only is False
    with pytest.raises(SystemExit):
        p.parse_args(["pose", "x.jpg", "--keypoints-only", "--use-image"])
