"""Atomic writes: the whole file or the old one, never a half-written one."""

from __future__ import annotations

import pytest

from lba_cli.atomic import atomic_path, write_text_atomic


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "table.csv"
    write_text_atomic(target, "old\n")
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".csv" and tmp.name.startswith(".")
        tmp.write_text("new\n")
        assert target.read_text() == "old\n"  # readers see the old file until the rename
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.csv"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "status.json"
    write_text_atomic(target, "{}")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"half": ')
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_a_place_that_cannot_take_the_file_is_one_error_naming_it(tmp_path):
    from lba_cli.atomic import check_writable
    from lba_cli.errors import OutputError

    (tmp_path / "runs").write_text("a file where a folder should be")
    target = tmp_path / "runs" / "sub" / "x.png"
    for attempt in (lambda: write_text_atomic(target, "x"), lambda: check_writable(target)):
        with pytest.raises(OutputError, match=f"cannot write {target}: {tmp_path / 'runs'} is a file, not a folder"):
            attempt()
    with pytest.raises(OutputError, match="it is a folder"):
        check_writable(tmp_path)
