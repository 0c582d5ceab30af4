import pytest

from edgeres._io import atomic_path, contained, write_json
from edgeres.errors import EdgeresError
from edgeres.manifests._base import read_manifest, write_manifest
from edgeres.resolutions import parse_resolutions


def test_resolutions_sorted_high_to_low_and_deduplicated():
    assert parse_resolutions("96,224, 128,224") == (224, 128, 96)
    assert parse_resolutions([12, 28]) == (28, 12)
    assert parse_resolutions(64) == (64,)


@pytest.mark.parametrize("bad", ["", "abc", "12.5", "0", "-8", "4", "4096"])
def test_bad_resolutions_are_one_line_errors(bad):
    with pytest.raises(EdgeresError):
        parse_resolutions(bad)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.bin") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EdgeresError, match="cannot create output directory"):
        write_json(blocker / "sub" / "a.json", {})


def test_contained_refuses_escapes(tmp_path):
    assert contained(tmp_path, "a/b.onnx") == tmp_path.resolve() / "a" / "b.onnx"
    for name in ("../x", "/etc/passwd", "a/../../x"):
        with pytest.raises(EdgeresError, match="escapes"):
            contained(tmp_path, name)


def test_manifest_kind_and_version_are_checked(tmp_path):
    write_manifest(tmp_path / "export.json", "export", {"graphs": []})
    assert read_manifest(tmp_path, "export")["graphs"] == []
    with pytest.raises(EdgeresError, match="not a build manifest"):
        read_manifest(tmp_path / "export.json", "build")
    write_json(tmp_path / "export.json", {"kind": "export", "format_version": 99})
    with pytest.raises(EdgeresError, match="format_version 99"):
        read_manifest(tmp_path, "export")


def _dead_pid() -> int:
    """A pid no process has: a child that has exited and been reaped."""
    import subprocess
    import sys
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_processes_are_removed_and_live_ones_kept(tmp_path):
    import os

    from edgeres._io import write_text
    dead = tmp_path / f".out.{_dead_pid()}-abc123.tmp"
    dead.mkdir()
    (dead / "half.onnx").write_bytes(b"half")
    live = tmp_path / f".out.{os.getppid()}-def456.tmp"  # our parent is alive: maybe a run in progress
    live.mkdir()
    other = tmp_path / f".other.{_dead_pid()}-abc.tmp"  # another output's: not ours to judge here
    other.write_text("x")
    write_text(tmp_path / "out", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out", live.name, other.name])


def test_a_swap_cut_between_its_two_renames_is_undone(tmp_path):
    from edgeres._io import clean_stale
    parked = tmp_path / f".build.{_dead_pid()}-xyz.old"  # the old directory, parked; the new never arrived
    parked.mkdir()
    (parked / "build.json").write_text("{}")
    clean_stale(tmp_path / "build")
    assert [p.name for p in tmp_path.iterdir()] == ["build"] and (tmp_path / "build" / "build.json").is_file()


def test_output_directories_are_refused_unless_new_empty_or_our_own(tmp_path, monkeypatch):
    from edgeres._io import check_out_dir, staged_dir
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(EdgeresError, match="holds no export.json"):
        check_out_dir(tmp_path / "mine", ("export.json",), "export")
    monkeypatch.chdir(tmp_path / "mine")
    with pytest.raises(EdgeresError, match="is the current directory"):
        check_out_dir(".", ("export.json",), "export")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine" / "export.json").write_text("{}")
    with staged_dir(tmp_path / "mine", ("export.json",), "export", keep=lambda n: n != "export.json") as tmp:
        (tmp / "export.json").write_text('{"new": 1}')
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["export.json", "notes.txt"]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_result_files_never_replace_a_manifest_or_a_users_file(tmp_path):
    from edgeres._io import check_result_file, text_marker
    with pytest.raises(EdgeresError, match="name of the build stage's manifest"):
        check_result_file(tmp_path / "build.json", "eval", "--json")
    (tmp_path / "mine.json").write_text('{"kind": "build"}')
    with pytest.raises(EdgeresError, match="not an earlier edgeres eval result"):
        check_result_file(tmp_path / "mine.json", "eval", "--json")
    (tmp_path / "old.json").write_text('{"kind": "eval"}')
    (tmp_path / "old.md").write_text(text_marker("select") + "\n| table |\n")
    assert check_result_file(tmp_path / "old.json", "eval", "--json").name == "old.json"
    assert check_result_file(tmp_path / "old.md", "select", "--markdown").name == "old.md"
    assert check_result_file(tmp_path / "select.json", "select", "--json").name == "select.json"
