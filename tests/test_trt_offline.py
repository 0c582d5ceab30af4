"""TensorRT target logic that needs no GPU: the missing-TensorRT error, names, trtexec lines, and the build
flow against a recording stand-in for the tensorrt module (8.x flags vs 10.x strongly typed)."""
import enum
import subprocess
import sys
import types
from pathlib import Path

import pytest

from edgeres.build import build
from edgeres.build.trt import engine_name, trtexec_command
from tests.test_build_support import tiny_export


def test_trt_target_without_tensorrt_fails_with_one_actionable_line(tmp_path):
    code = ("import sys; sys.modules['tensorrt'] = None\n"
            "from edgeres.cli import main; sys.argv = ['edgeres', 'build', %r, '--target', 'trt-int8']; main()"
            ) % str(tmp_path)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and run.stderr.strip().count("\n") == 0, run.stderr
    assert "trt-int8" in run.stderr and "needs tensorrt" in run.stderr and "JetPack" in run.stderr


def test_engine_name_carries_model_resolution_precision_version_device():
    name = engine_name("ab" * 32, 224, "int8 (S8 act / S8 w)", "10.3.0", "NVIDIA Jetson Orin Nano Developer Kit")
    assert name == "abababababab-r224-int8-s8-act-s8-w-trt10.3.0-nvidia-jetson-orin-nano-developer-kit.engine"


@pytest.mark.parametrize("version, flags", [("8.5.2", ["--fp16", "--int8"]), ("10.3.0", ["--stronglyTyped"]),
                                            ("11.3.0", [])])
def test_trtexec_line_per_tensorrt_generation(version, flags):
    cmd = trtexec_command(Path("m.onnx"), Path("e dir/m.engine"), Path("t.cache"), "int8 (S8 act / S8 w)", version)
    words = cmd.split()
    assert words[:2] == ["trtexec", "--onnx=m.onnx"] and "'--saveEngine=e dir/m.engine'" in cmd
    assert [w for w in words if w in ("--fp16", "--int8", "--stronglyTyped")] == flags
    assert "--timingCacheFile=t.cache" in words and "--memPoolSize=workspace:1024" in words


def fake_tensorrt(version: str, log: list) -> types.ModuleType:
    """Just enough of the tensorrt API for edgeres.build.trt, recording what the builder was asked."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.NetworkDefinitionCreationFlag = enum.IntEnum(
        "F", ["EXPLICIT_BATCH", "STRONGLY_TYPED"] if version >= "10" else ["EXPLICIT_BATCH"], start=0)
    trt.BuilderFlag = enum.IntEnum("B", ["FP16", "INT8"])
    trt.MemoryPoolType = enum.IntEnum("M", ["WORKSPACE"])

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    class Cache:
        def __init__(self, data):
            self.data = data

        def serialize(self):
            return b"timing:" + self.data

    class Config:
        def set_memory_pool_limit(self, pool, size):
            log.append(("workspace", size))

        def set_flag(self, flag):
            log.append(("flag", flag.name))

        def create_timing_cache(self, data):
            return Cache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            log.append(("network_flags", flags))
            return object()

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            return b"PLAN"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            log.append(("parsed", Path(path).parent.name))
            return True

    trt.Logger, trt.Builder, trt.OnnxParser = Logger, Builder, OnnxParser
    return trt


@pytest.mark.parametrize("version, expected", [
    ("8.5.2", [("network_flags", 1), ("flag", "FP16"), ("flag", "INT8")]),
    ("10.3.0", [("network_flags", 2)])])  # 1 << EXPLICIT_BATCH(0) on 8.x; 1 << STRONGLY_TYPED(1), no flags on 10
def test_engine_build_flow_with_a_stand_in_tensorrt(tmp_path_factory, monkeypatch, version, expected):
    export = tiny_export(tmp_path_factory, f"trt-{version}")  # before the stand-in: torch probes tensorrt
    log = []
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, log))
    monkeypatch.setitem(sys.modules, "polygraphy", None)  # no on-device accuracy off the device
    manifest = build(export, export, ["trt-int8"], calib_images=16, resolutions="16", evaluate=False)
    engine_row = next(r for r in manifest["artifacts"] if r["target"] == "trt-int8")
    assert [e for e in log if e[0] in ("network_flags", "flag")] == expected and ("parsed", "int8-qdq") in log
    engine = export / engine_row["file"]
    assert engine.read_bytes() == b"PLAN" and f"-r16-int8-s8-act-s8-w-trt{version}-" in engine.name
    assert engine.with_suffix(".trtexec.sh").read_text().splitlines()[-1] == engine_row["trtexec"]
    assert list((export / "engines").glob(f"timing-trt{version}-*.cache"))[0].read_bytes() == b"timing:"
    assert engine_row["accuracy"] is None and "polygraphy" in engine_row["accuracy_note"]
    assert engine_row["backend"] == "trt" and engine_row["calibration"]["method"] == "minmax"
