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
