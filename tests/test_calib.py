"""Calibration: per-resolution ranges, cache keys (stale caches refused), TensorRT cache format."""
import json
import struct

import numpy as np
import pytest

from edgeres.build import build
from edgeres.build.calib import parse_trt_cache, selection_indices, trt_cache_text
from edgeres.data import open_images
from edgeres.errors import EdgeresError
from tests.test_build_support import tiny_export


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    export = tiny_export(tmp_path_factory, "calib-export")
    build(export, export, ["ort-int8"], calib_images=64, evaluate=False)
    return export


def cached(export, res, method="minmax"):
    return json.loads((export / "calib" / f"tiny-{res}.{method}.json").read_text())


def test_each_resolution_has_its_own_ranges(calibrated):
    r28, r16 = cached(calibrated, 28)["ranges"], cached(calibrated, 16)["ranges"]
    assert r28.keys() == r16.keys()
    differ = [name for name in r28 if not np.allclose(r28[name], r16[name])]
    assert len(differ) >= len(r28) - 1  # the raw input may share its range; every activation differs
    assert cached(calibrated, 28)["key"]["resolution"] == 28


@pytest.mark.parametrize("change, words", [({"calib_images": 32}, "images 64 != 32"),
                                           ({"calib_data": "fashion-mnist-mini-other"}, "neither a built-in")])
def test_mismatched_cache_is_refused_in_one_line(calibrated, change, words):
    with pytest.raises(EdgeresError) as err:
        build(calibrated, calibrated, ["ort-int8"], **{"calib_images": 64, **change}, evaluate=False)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_stale_cache_from_another_graph_is_refused_then_replaced(calibrated):
    path = calibrated / "calib" / "tiny-16.minmax.json"
    stale = cached(calibrated, 16)
    stale["key"]["graph_sha256"] = "0" * 64  # as if the graph had been re-exported since
    path.write_text(json.dumps(stale))
    with pytest.raises(EdgeresError, match="does not match this build \\(graph_sha256 '0000") as err:
        build(calibrated, calibrated, ["int8-qdq"], calib_images=64, resolutions="16", evaluate=False)
    assert f"calibration cache {path} does not match" in str(err.value)  # the user's file, not a staging copy
    build(calibrated, calibrated, ["int8-qdq"], calib_images=64, resolutions="16", evaluate=False, recalibrate=True)
    assert cached(calibrated, 16)["key"]["graph_sha256"] != "0" * 64


def test_damaged_cache_is_refused(calibrated, tmp_path):
    import shutil
    shutil.copytree(calibrated, tmp_path / "e")
    (tmp_path / "e" / "calib" / "tiny-28.minmax.json").write_text('{"key": 1}')
    with pytest.raises(EdgeresError, match="is damaged"):
        build(tmp_path / "e", tmp_path / "e", ["ort-int8"], calib_images=64, resolutions="28", evaluate=False)


def test_entropy_and_percentile_give_narrower_ranges_than_minmax(calibrated, tmp_path):
    import shutil
    shutil.copytree(calibrated, tmp_path / "e")
    widths = {}
    for method in ("minmax", "entropy", "percentile"):
        build(tmp_path / "e", tmp_path / "e", ["ort-int8"], calib_images=64, calib_method=method,
              resolutions="16", evaluate=False)
        ranges = cached(tmp_path / "e", 16, method)["ranges"]
        widths[method] = sum(hi - lo for lo, hi in ranges.values())
    assert widths["entropy"] < widths["minmax"] and widths["percentile"] <= widths["minmax"]


def test_trt_cache_file_parses_back_to_the_scales(calibrated):
    header, scales = parse_trt_cache((calibrated / "calib" / "tiny-28.minmax.trt-calib.cache").read_text())
    from edgeres.build.calib import trt_cache_version, trt_version_number
    # 8.5.2 (JetPack 5.1) where no TensorRT is installed; the installed one's number on a device
    expected = "8502" if trt_cache_version() == "8.5.2" else trt_version_number(trt_cache_version())
    assert header == f"TRT-{expected}-EntropyCalibration2"
    for name, (lo, hi) in cached(calibrated, 28)["ranges"].items():
        assert scales[name] == np.float32(max(abs(lo), abs(hi)) / 127.0)


def test_trt_cache_format_hand_checked():
    text = trt_cache_text({"data": (0.0, 1.0), "(Unnamed Layer* 4) [Conv]_output": (-254.0, 3.0)}, "8601")
    assert text.splitlines() == ["TRT-8601-EntropyCalibration2", "(Unnamed Layer* 4) [Conv]_output: 40000000",
                                 "data: 3c010204"]  # 2.0 and 1/127 as big-endian float32 bits
    assert parse_trt_cache(text)[1] == {"data": struct.unpack(">f", bytes.fromhex("3c010204"))[0],
                                        "(Unnamed Layer* 4) [Conv]_output": 2.0}
    assert parse_trt_cache("TRT-8601-X\nshort: 3f800\n")[1]["short"] == pytest.approx(4.5917e-40, rel=1e-3)
    with pytest.raises(EdgeresError, match="not a TensorRT calibration cache"):
        parse_trt_cache("hello\nx: 1\n")


def test_calibration_images_are_a_fixed_spread_over_classes():
    images = open_images("fashion-mnist-mini", "train")
    idx = selection_indices(len(images), 64)
    assert np.array_equal(idx, selection_indices(len(images), 64)) and len(set(idx)) == 64
    assert len(set(images.labels[idx])) == 10
    with pytest.raises(EdgeresError, match="at least 1"):
        selection_indices(10, 0)


def test_stale_cache_in_an_outside_calib_dir_is_named_where_the_user_keeps_it(calibrated, tmp_path):
    """--calib-dir outside the output is staged inside the build's copy; the error names the user's file."""
    import shutil
    shutil.copytree(calibrated / "calib", tmp_path / "caches")
    path = tmp_path / "caches" / "tiny-16.minmax.json"
    stale = json.loads(path.read_text())
    stale["key"]["graph_sha256"] = "0" * 64
    path.write_text(json.dumps(stale))
    with pytest.raises(EdgeresError) as err:
        build(calibrated, tmp_path / "out", ["ort-int8"], calib_images=64, calib_dir=tmp_path / "caches",
              resolutions="16", evaluate=False)
    assert f"calibration cache {path} does not match" in str(err.value)
    assert not (tmp_path / "out").exists()  # nothing half-written where the build was going
