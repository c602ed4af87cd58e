"""handcast.io: every output file or folder is written atomically, OS errors are one-line errors, a user's
file is never lost, permissions follow the umask, and temporaries never outlive their run."""

import errno
import os
import stat

import numpy as np
import pytest

from handcast import io as hio
from handcast.errors import HandcastError


def _hidden(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_save_npz_writes_exactly_the_path_given_even_without_npz_suffix(tmp_path):
    # numpy's savez adds '.npz' to a file name without it: the data went to a hidden temp, a 0-byte file stayed
    hio.save_npz(tmp_path / "x", a=np.arange(3))
    assert (tmp_path / "x").stat().st_size > 0
    assert hio.load_npz(tmp_path / "x")["a"].tolist() == [0, 1, 2]
    assert _hidden(tmp_path) == []


def test_check_output_file_refuses_folder_wrong_suffix_and_file_parent(tmp_path):
    with pytest.raises(HandcastError, match="must end in .npz"):
        hio.check_output_file(tmp_path / "x", suffix=".npz")
    with pytest.raises(HandcastError, match="is a folder"):
        hio.check_output_file(tmp_path, suffix=".npz")
    (tmp_path / "f").write_text("mine")
    with pytest.raises(HandcastError, match="is a file, not a folder"):
        hio.check_output_file(tmp_path / "f" / "x.npz", suffix=".npz")
    with pytest.raises(HandcastError, match="already exists"):
        hio.check_output_file(tmp_path / "f", overwrite=False)
    assert hio.check_output_file(tmp_path / "new.npz", suffix=".npz") == tmp_path / "new.npz"


def test_atomic_dir_never_replaces_a_users_file_even_with_overwrite(tmp_path):
    user = tmp_path / "photo.jpg"
    user.write_bytes(b"precious")
    with pytest.raises(HandcastError, match="is a file"):
        with hio.atomic_dir(user, overwrite=True) as tmp:
            (tmp / "pose.npz").write_bytes(b"new")
    assert user.read_bytes() == b"precious"
    assert _hidden(tmp_path) == []  # no '.photo.jpg.old', no temporary


def test_atomic_dir_keeps_the_old_folder_when_the_final_move_fails(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real = os.replace
    calls = []

    def flaky(a, b):
        calls.append((a, b))
        if len(calls) == 2:  # set-aside succeeded; moving the new folder in fails
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(hio.os, "replace", flaky)
    with pytest.raises(HandcastError, match="No space left on device") as ei:
        with hio.atomic_dir(out, overwrite=True) as tmp:
            (tmp / "new.txt").write_text("new")
    assert "\n" not in str(ei.value)
    assert (out / "old.txt").read_text() == "old" and not (out / "new.txt").exists()
    assert _hidden(tmp_path) == []


def test_atomic_dir_and_path_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with hio.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("x")
        with hio.atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755  # mkdtemp alone gives 0700
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644


@pytest.mark.parametrize("exc", [KeyboardInterrupt, RuntimeError])
def test_temporaries_are_removed_on_failure_and_ctrl_c(tmp_path, exc):
    with pytest.raises(exc):
        with hio.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "a").write_text("x")
            raise exc()
    with pytest.raises(exc):
        with hio.atomic_path(tmp_path / "f.npz") as tmp:
            tmp.write_text("x")
            raise exc()
    out = tmp_path / "existing"
    out.mkdir()
    with pytest.raises(exc):
        with hio.atomic_outputs(out) as tmp:
            (tmp / "a.png").write_text("x")
            raise exc()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"] and not any(out.iterdir())


def test_os_errors_become_one_line_errors(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(HandcastError, match="a file of that name exists"):
        with hio.atomic_path(tmp_path / "file" / "o.npz"):
            pass
    with pytest.raises(HandcastError, match="it is a folder"):
        with hio.atomic_path(tmp_path):
            pass
    with pytest.raises(HandcastError, match="is a file, not a folder"):
        hio.make_dirs(tmp_path / "file" / "sub")
    with pytest.raises(HandcastError, match="No space left") as ei:  # disk full while writing
        with hio.atomic_path(tmp_path / "o.bin"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert str(ei.value).count("\n") == 0 and not (tmp_path / "o.bin").exists()
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(HandcastError, match="Permission denied"):
                hio.save_npz(ro / "o.npz", a=np.zeros(2))
            with pytest.raises(HandcastError, match="Permission denied"):
                with hio.atomic_dir(ro / "d"):
                    pass
        finally:
            ro.chmod(0o700)


def test_stale_temporaries_of_a_killed_run_are_removed_by_the_next(tmp_path):
    dead = 2 ** 22 + 12345  # above Linux's pid_max: no process has it
    (tmp_path / f".out.{dead}.abc123.tmp").mkdir()
    (tmp_path / f".out.{dead}.abc123.tmp" / "half.npz").write_bytes(b"x")
    (tmp_path / f".f.npz.{dead}.xyz.tmp.npz").write_bytes(b"x")
    live = tmp_path / f".out.{os.getpid()}.live.tmp"  # a live writer's temporary stays
    live.mkdir()
    with hio.atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a").write_text("x")
    hio.save_npz(tmp_path / "f.npz", a=np.zeros(1))
    assert _hidden(tmp_path) == [live.name]


def test_atomic_outputs_moves_a_complete_set_only(tmp_path):
    new = tmp_path / "new"
    with hio.atomic_outputs(new) as tmp:
        for n in ("a.npz", "a.png", "a.mp4"):
            (tmp / n).write_text(n)
    assert sorted(p.name for p in new.iterdir()) == ["a.mp4", "a.npz", "a.png"]
    (new / "keep.txt").write_text("user")
    with pytest.raises(HandcastError, match="already exists"):
        with hio.atomic_outputs(new, names=["a.npz"], overwrite=False):
            pass
    with hio.atomic_outputs(new) as tmp:
        (tmp / "a.npz").write_text("v2")
    assert (new / "a.npz").read_text() == "v2" and (new / "keep.txt").read_text() == "user"
    assert _hidden(new) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(HandcastError, match="is a file"):
        with hio.atomic_outputs(tmp_path / "file"):
            pass


def test_write_report_text_keeps_the_notes_below_the_marker(tmp_path):
    """write_report_text: a new report replaces the generated part; the marker line and everything after it (a reader's
    notes) survive a re-run; a report without the marker is replaced whole; no temporary is left behind."""
    from handcast.io import KEEP_BELOW, write_report_text

    p = tmp_path / "r.md"
    write_report_text(p, "# Table\n| a | 1 |\n")
    assert p.read_text() == "# Table\n| a | 1 |\n"
    p.write_text(p.read_text() + "\n" + KEEP_BELOW + "\n\n## Reading\nrow a is one.\n")
    write_report_text(p, "# Table\n| a | 2 |\n")
    assert p.read_text() == "# Table\n| a | 2 |\n\n" + KEEP_BELOW + "\n\n## Reading\nrow a is one.\n"
    write_report_text(p, "# Table\n| a | 3 |\n")  # kept again, once
    assert p.read_text().count(KEEP_BELOW) == 1 and "| a | 3 |" in p.read_text() and "| a | 2 |" not in p.read_text()
    q = tmp_path / "s.md"
    q.write_text("# Old\nnotes without the marker\n")
    write_report_text(q, "# New\n")
    assert q.read_text() == "# New\n"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.md", "s.md"]
