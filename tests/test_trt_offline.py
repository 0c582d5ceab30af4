"""TensorRT logic without a GPU, against stand-ins that refuse what the real ones refuse: tests.fake_tensorrt
(8.5 / 10.3 / 11.1) and tests.fake_pycuda. Tests named test_<n>_... guard issue 11's bug n; each failed on the
code before its fix."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeres.build import build
from edgeres.build.trt import (
    create_network,
    engine_name,
    precision_mix,
    trtexec_command,
)
from edgeres.errors import EdgeresError
from edgeres.runtimes import trt as runtime_trt
from tests import fake_pycuda, fake_tensorrt
from tests.test_build_support import tiny_export

VERSIONS = ("8.5.2", "10.3.0", "11.1.0")
REPO = Path(__file__).resolve().parents[1]


def on_device(monkeypatch, tmp_path: Path, version: str, gpu: bool = True, name: str = "NVIDIA Fake GPU"):
    """A fake TensorRT `version` (and, with gpu, a fake pycuda) for a fake GPU called `name`; the machine's own
    /proc device files are hidden. Make the export first: torch probes tensorrt on import."""
    device = fake_pycuda.Device(name)
    if gpu:
        fake_pycuda.install(monkeypatch, device)
    else:
        for module in ("pycuda", "pycuda.driver", "pycuda.autoinit"):
            monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setattr(runtime_trt, "DEVICE_TREE_MODEL", tmp_path / "no-device-tree")
    monkeypatch.setattr(runtime_trt, "NVIDIA_GPUS", tmp_path / "no-nvidia-driver")
    return fake_tensorrt.install(monkeypatch, version, device)


def engine_row(manifest: dict, target: str = "trt-int8") -> dict:
    return next(r for r in manifest["artifacts"] if r["target"] == target)


def build_int8_engine(export: Path, **kwargs) -> dict:
    return engine_row(build(export, export, ["trt-int8"], calib_images=16, resolutions="16", evaluate=False,
                            **kwargs))


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
                                            ("11.1.0", [])])
def test_trtexec_line_per_tensorrt_generation(version, flags):
    cmd = trtexec_command(Path("m.onnx"), Path("e dir/m.engine"), Path("t.cache"), "int8 (S8 act / S8 w)", version)
    words = cmd.split()
    assert words[:2] == ["trtexec", "--onnx=m.onnx"] and "'--saveEngine=e dir/m.engine'" in cmd
    assert [w for w in words if w in ("--fp16", "--int8", "--stronglyTyped")] == flags
    assert "--timingCacheFile=t.cache" in words and "--memPoolSize=workspace:1024" in words
    assert not [w for w in words if "Shapes=" in w]  # a static graph needs no profile


def test_the_stand_in_has_each_releases_enums_and_compares_versions_as_numbers():
    old, new, newest = (fake_tensorrt.make(v) for v in VERSIONS)
    assert list(old.NetworkDefinitionCreationFlag.__members__) == ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"]
    assert new.NetworkDefinitionCreationFlag.STRONGLY_TYPED == 1
    assert newest.NetworkDefinitionCreationFlag.STRONGLY_TYPED == 0
    assert "FP16" in old.BuilderFlag.__members__ and "FP16" not in newest.BuilderFlag.__members__


@pytest.mark.parametrize("version", VERSIONS)
def test_the_stand_in_refuses_a_dynamic_network_without_a_profile(tmp_path_factory, version):
    import onnx
    export = tiny_export(tmp_path_factory, f"dyn-{version}")
    dynamic_batch(export)
    trt = fake_tensorrt.make(version)
    builder = trt.Builder(trt.Logger())
    network = create_network(trt, builder, precision_mix(version, "fp32", {}))
    assert trt.OnnxParser(network, None).parse_from_file(str(export / "tiny-16.onnx"))
    assert builder.build_serialized_network(network, builder.create_builder_config()) is None
    assert "no optimization profile" in trt.log[-1][1]
    assert onnx.load(str(export / "tiny-16.onnx")).graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def int32_dequantized(path: Path) -> list[str]:
    """DequantizeLinear nodes whose input is an INT32 initializer (quantized biases)."""
    import onnx
    model = onnx.load(str(path))
    int32 = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT32}
    return [n.name for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in int32]


def test_1_int8_qdq_keeps_biases_float_so_every_tensorrt_parses_it(tmp_path_factory):
    export = tiny_export(tmp_path_factory, "bias")
    manifest = build(export, export, ["int8-qdq", "ort-int8"], calib_images=16, resolutions="16", evaluate=False)
    files = {r["target"]: export / r["file"] for r in manifest["artifacts"]}
    assert int32_dequantized(files["int8-qdq"]) == []
    assert len(int32_dequantized(files["ort-int8"])) == 4  # ONNX Runtime's CPU kernels keep INT32 biases
    for version in VERSIONS:
        trt = fake_tensorrt.make(version)
        parser = trt.OnnxParser(create_network(trt, trt.Builder(None), precision_mix(version, "int8", {})), None)
        errors = [] if parser.parse_from_file(str(files["int8-qdq"])) else [str(parser.get_error(0))]
        assert errors == []


@pytest.mark.parametrize("version, network_flags, builder_flags", [
    ("8.5.2", 1, ["FP16", "INT8"]),  # 1 << EXPLICIT_BATCH(0)
    ("10.3.0", 2, []),  # 1 << STRONGLY_TYPED(1)
    ("11.1.0", 0, [])])  # always strongly typed, its flag deprecated
def test_1_engine_builds_from_int8_qdq_on_each_generation(tmp_path_factory, tmp_path, monkeypatch, version,
                                                         network_flags, builder_flags):
    export = tiny_export(tmp_path_factory, f"trt-{version}")
    trt = on_device(monkeypatch, tmp_path, version, gpu=False)
    row = build_int8_engine(export)
    assert [e[1] for e in trt.log if e[0] == "network_flags"] == [network_flags]
    assert [e[1] for e in trt.log if e[0] == "flag"] == builder_flags
    parsed = [Path(p) for kind, p in trt.log if kind == "parsed"]  # the build is staged beside `export`
    assert [(p.parent.name, p.name, p.parent.parent.parent) for p in parsed] == [("int8-qdq", "tiny-16.onnx",
                                                                                   export.parent)]
    engine = export / row["file"]
    assert engine.read_bytes().startswith(fake_tensorrt.PLAN_MAGIC)
    assert engine.name.endswith(f"-r16-int8-s8-act-s8-w-trt{version}-gpu.engine")  # no name source: "gpu"
    assert engine.with_suffix(".trtexec.sh").read_text().splitlines()[-1] == row["trtexec"]
    cache = json.loads((export / "engines" / f"timing-trt{version}-gpu.cache").read_bytes()[10:])
    assert cache == {"device": "NVIDIA Fake GPU", "version": version, "entries": 1}
    assert row["accuracy"] is None and "pycuda is not importable" in row["accuracy_note"]
    assert row["backend"] == "trt" and row["calibration"]["method"] == "minmax" and row["profile"] is None


def test_2_static_batch_engine_benched_at_another_batch_is_skipped(tmp_path_factory, tmp_path, monkeypatch):
    from edgeres.bench import bench
    export = tiny_export(tmp_path_factory, "static-bench")
    on_device(monkeypatch, tmp_path, "10.3.0")
    build_int8_engine(export)
    report = bench(export, device="cuda", batch_sizes=(1, 8), backends=("trt",), min_runs=3, min_time_s=0, warmup=1)
    assert [(r["target"], r["batch"]) for r in report["rows"]] == [("trt-int8", 1)]
    assert [s["key"] for s in report["skipped"]] == ["trt-int8@16/b8/trt"]
    assert "static batch of 1" in report["skipped"][0]["reason"]
    row = report["rows"][0]  # the stand-in's kernel takes 0.05 + 0.01 x batch ms of device time
    assert row["stats"]["p50"] == pytest.approx(0.06) and row["img_per_s"] == pytest.approx(1000 / 0.06, rel=1e-4)


def dynamic_batch(export: Path) -> Path:
    """Turn the tiny export's graphs into dynamic-batch ones (as `edgeres export --dynamic-batch` writes)."""
    import onnx

    from edgeres._io import sha256_file
    from edgeres.manifests._base import read_manifest, write_manifest
    manifest = read_manifest(export, "export")
    for graph in manifest["graphs"]:
        model = onnx.load(str(export / graph["file"]))
        for value in (model.graph.input[0], model.graph.output[0]):
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
        del model.graph.value_info[:]
        onnx.save(model, str(export / graph["file"]))
        graph["sha256"] = sha256_file(export / graph["file"])
        graph["input"]["shape"][0] = graph["output"]["shape"][0] = "batch"
    body = {k: v for k, v in manifest.items() if not k.startswith("_") and k not in ("kind", "format_version",
                                                                                    "edgeres_version")}
    write_manifest(export / "export.json", "export", body)
    return export


def test_3_dynamic_batch_export_builds_with_a_profile_over_bench_and_accuracy_batches(tmp_path_factory, tmp_path,
                                                                                      monkeypatch):
    from edgeres.runtimes.base import SkipCell
    export = dynamic_batch(tiny_export(tmp_path_factory, "dynamic"))
    on_device(monkeypatch, tmp_path, "10.3.0")
    manifest = build(export, export, ["fp16", "trt-fp16"], resolutions="16", eval_images=128,
                     options={"profile_batches": [1, 8]})
    row = engine_row(manifest, "trt-fp16")
    assert row["profile"] == {"input": "input", "min": [1, 1, 16, 16], "opt": [8, 1, 16, 16], "max": [64, 1, 16, 16]}
    words = row["trtexec"].split()
    assert words[-3:] == ["--minShapes=input:1x1x16x16", "--optShapes=input:8x1x16x16", "--maxShapes=input:64x1x16x16"]
    assert row["accuracy"]["count"] == 128  # measured on the engine at the accuracy batch (64), within the profile
    assert row["accuracy"]["top1"] == engine_row(manifest, "fp16")["accuracy"]["top1"]
    runner = runtime_trt.TrtRunner(export / row["file"])
    assert runner.example_input(8).shape == (8, 1, 16, 16) and runner.run(None) == pytest.approx(0.13)
    with pytest.raises(SkipCell, match=r"outside the engine's optimization profile \(batch 1..64\)"):
        runner.example_input(65)
    runner.close()


def built_runner(tmp_path_factory, tmp_path, monkeypatch, name: str, version: str = "10.3.0"):
    export = tiny_export(tmp_path_factory, name)
    trt = on_device(monkeypatch, tmp_path, version)
    return trt, runtime_trt.TrtRunner(export / build_int8_engine(export)["file"])


@pytest.mark.parametrize("method", ["set_input_shape", "set_tensor_address", "execute_async_v3"])
def test_5_tensorrt_calls_that_return_false_fail_in_one_line(tmp_path_factory, tmp_path, monkeypatch, method):
    trt, runner = built_runner(tmp_path_factory, tmp_path, monkeypatch, f"false-{method}")
    trt.fail.add(method)
    with pytest.raises(EdgeresError, match=f"TensorRT {method} failed") as err:
        runner.run(runner.example_input(1))  # before: a launch that never ran was timed as 0.0 ms
    assert "\n" not in str(err.value)
    with pytest.raises(EdgeresError, match=f"TensorRT {method} failed"):
        runner._free()
        runner.infer(np.zeros((1, 1, 16, 16), np.float32))


def test_5_a_refused_timing_cache_fails_the_build_in_one_line(tmp_path_factory, tmp_path, monkeypatch):
    export = tiny_export(tmp_path_factory, "timing-refused")
    trt = on_device(monkeypatch, tmp_path, "10.3.0", gpu=False)
    trt.fail.add("set_timing_cache")
    with pytest.raises(EdgeresError, match="set_timing_cache failed") as err:
        build_int8_engine(export)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("old", [b"FAKECACHE " + json.dumps({"device": "NVIDIA Other GPU", "version": "10.3.0",
                                                              "entries": 7}).encode(), b"not a timing cache"])
def test_6_timing_cache_tensorrt_refuses_is_replaced_by_a_fresh_one(tmp_path_factory, tmp_path, monkeypatch, caplog,
                                                                    old):
    export = tiny_export(tmp_path_factory, "timing-other")
    on_device(monkeypatch, tmp_path, "10.3.0")
    cache = export / "engines" / "timing-trt10.3.0-nvidia-fake-gpu.cache"
    cache.parent.mkdir(parents=True)
    cache.write_bytes(old)  # e.g. copied from another machine with the same board name, or damaged
    build_int8_engine(export)
    assert json.loads(cache.read_bytes()[10:]) == {"device": "NVIDIA Fake GPU", "version": "10.3.0", "entries": 1}
    assert "refused the timing cache" in caplog.text


@pytest.mark.parametrize("where, content, expected", [
    ("driver", "Model: \t\t NVIDIA GeForce RTX 3090\nIRQ:  129\n", "NVIDIA GeForce RTX 3090"),
    ("tree", "NVIDIA Jetson AGX Orin Developer Kit\0", "NVIDIA Jetson AGX Orin Developer Kit")])
def test_6_timing_cache_is_keyed_by_the_real_device_name_without_pycuda(tmp_path_factory, tmp_path, monkeypatch,
                                                                        where, content, expected):
    export = tiny_export(tmp_path_factory, f"device-{where}")
    on_device(monkeypatch, tmp_path, "10.3.0", gpu=False, name=expected)
    if where == "driver":
        info = tmp_path / "gpus" / "0000:01:00.0" / "information"
        info.parent.mkdir(parents=True)
        info.write_text(content)
        monkeypatch.setattr(runtime_trt, "NVIDIA_GPUS", tmp_path / "gpus")
    else:
        (tmp_path / "model").write_bytes(content.encode())
        monkeypatch.setattr(runtime_trt, "DEVICE_TREE_MODEL", tmp_path / "model")
    row = build_int8_engine(export)
    slug = re.sub(r"[^a-z0-9.]+", "-", expected.lower())
    assert row["device"] == expected and (export / "engines" / f"timing-trt10.3.0-{slug}.cache").is_file()


def test_7_calibration_cache_version_numbers():
    from edgeres.build.calib import trt_version_number
    assert [trt_version_number(v) for v in ("8.5.2", "8.5.2.2", "8.6.1", "9.2.0", "10.3.0", "10.16.1")] == [
        "8502", "8502", "8601", "9200", "100300", "101601"]  # NvInferVersion.h: x1000 up to 9.x, x10000 from 10
    with pytest.raises(EdgeresError, match="reads no calibration cache"):
        trt_version_number("11.1.0")


@pytest.mark.parametrize("version, header", [("10.3.0", "TRT-100300-EntropyCalibration2"),
                                             ("8.6.1", "TRT-8601-EntropyCalibration2"),
                                             ("11.1.0", "TRT-8502-EntropyCalibration2")])  # 11 reads none: default
def test_7_calibration_cache_is_for_the_target_tensorrt_in_the_exported_graphs_names(tmp_path_factory, monkeypatch,
                                                                                    version, header):
    import onnx

    from edgeres.build.calib import parse_trt_cache
    export = tiny_export(tmp_path_factory, f"calib-{version}")
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt.make(version))
    manifest = build(export, export, ["int8-qdq"], calib_images=16, resolutions="16", evaluate=False)
    calibration = manifest["artifacts"][0]["calibration"]
    found, scales = parse_trt_cache((export / calibration["trt_cache"]).read_text())  # relative to build.json
    graph = onnx.load(str(export / "tiny-16.onnx")).graph
    names = {i.name for i in graph.input} | {o for node in graph.node for o in node.output}
    assert found == header == calibration["trt_cache_header"]
    assert "input" in scales and set(scales) <= names


def test_7_names_only_the_pre_processed_graph_has_are_dropped(tmp_path_factory):
    from edgeres.build.calib import in_graph
    export = tiny_export(tmp_path_factory, "calib-names")
    ranges = {"input": (-1.0, 2.0), "/2/Relu_output_0": (0.0, 3.0), "ort_fused_only": (0.0, 1.0)}
    assert in_graph(ranges, export / "tiny-16.onnx") == {"input": (-1.0, 2.0), "/2/Relu_output_0": (0.0, 3.0)}


WEAK = "fp16 or fp32, chosen per layer by TensorRT (FP16 flag)"
STRONG = "fp32 (the graph's types: strongly typed)"


@pytest.mark.parametrize("version, options, strongly, flags, other, variant", [
    ("8.5.2", {}, False, ["FP16", "INT8"], WEAK, None),
    ("10.3.0", {}, True, [], STRONG,
     "options={'trt_int8_mix': 'fp16'}: weakly typed with the FP16+INT8 flags, as on 8.x"),
    ("10.3.0", {"trt_int8_mix": "fp16"}, False, ["FP16", "INT8"], WEAK, None),
    ("11.1.0", {}, True, [], STRONG, "none: TensorRT 11 has no FP16 flag and edgeres makes no FP16-typed Q/DQ graph")])
def test_8_executed_precision_mix_is_recorded(tmp_path_factory, tmp_path, monkeypatch, version, options, strongly,
                                              flags, other, variant):
    export = tiny_export(tmp_path_factory, f"mix-{version}-{len(options)}")
    trt = on_device(monkeypatch, tmp_path, version, gpu=False)
    row = build_int8_engine(export, options=options)
    assert row["precision_mix"] == {"strongly_typed": strongly, "builder_flags": flags, "quantized_layers": "int8",
                                    "other_layers": other, "fp16_variant": variant}
    plan = json.loads((export / row["file"]).read_bytes().split(b"\n")[1])
    assert plan["strongly_typed"] == strongly and plan["flags"] == flags  # what the (fake) builder was given
    assert [w for w in row["trtexec"].split() if w in ("--fp16", "--int8", "--stronglyTyped")] == (
        ["--stronglyTyped"] if strongly and version.startswith("10") else [f"--{f.lower()}" for f in flags])
    assert len([e for e in trt.log if e[0] == "network_flags"]) == 1


def test_8_the_fp16_mix_does_not_exist_on_tensorrt_11(tmp_path_factory, tmp_path, monkeypatch):
    export = tiny_export(tmp_path_factory, "mix-11")
    on_device(monkeypatch, tmp_path, "11.1.0", gpu=False)
    with pytest.raises(EdgeresError, match="TensorRT 11.1.0 has no FP16/INT8 builder flags") as err:
        build_int8_engine(export, options={"trt_int8_mix": "fp16"})
    assert "\n" not in str(err.value)


def test_engine_accuracy_is_measured_through_the_edgeres_runner(tmp_path_factory, tmp_path, monkeypatch):
    export = tiny_export(tmp_path_factory, "engine-accuracy")
    on_device(monkeypatch, tmp_path, "8.5.2")
    manifest = build(export, export, ["int8-qdq", "trt-int8"], calib_images=16, resolutions="16", eval_images=200)
    engine, graph = engine_row(manifest), engine_row(manifest, "int8-qdq")
    assert engine["accuracy"]["measured_with"] == "tensorrt" and engine["accuracy"]["count"] == 200
    # the stand-in computes the int8-qdq graph itself, so the engine's top-1 is that graph's exactly
    assert [engine["accuracy"][k] for k in ("top1", "top5")] == [graph["accuracy"][k] for k in ("top1", "top5")]


def test_only_the_runtime_deserialises_engines_or_touches_pycuda():
    pattern = re.compile(r"deserialize_cuda_engine|import pycuda|pycuda\.(driver|autoinit)|polygraphy\.backend\.trt")
    users = sorted(str(p.relative_to(REPO)) for p in (REPO / "edgeres").rglob("*.py") if pattern.search(p.read_text()))
    assert users == ["edgeres/runtimes/trt.py"]


@pytest.mark.parametrize("argv, hidden, expected", [
    ([], "tensorrt", "device_check: needs TensorRT, pycuda and a CUDA device, but tensorrt is not importable"),
    (["--torch-cuda"], "torch", "device_check --torch-cuda: needs torch with CUDA, but torch is not importable")])
def test_device_check_off_device_exits_with_one_line(argv, hidden, expected):
    code = ("import runpy, sys; sys.modules[%r] = None; sys.argv = ['device_check.py'] + %r\n"
            "runpy.run_path(%r, run_name='__main__')") % (hidden, argv, str(REPO / "benchmarks" / "device_check.py"))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert run.returncode == 1 and run.stdout == "" and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith(expected)


def test_cascade_runs_on_engines_and_answers_as_the_graphs_they_were_built_from(tmp_path_factory, tmp_path,
                                                                                 monkeypatch):
    from edgeres.choose import evaluate_cascade
    from edgeres.choose.cascade import CascadeRunner
    from edgeres.data import open_images
    export = tiny_export(tmp_path_factory, "engine-cascade")
    trt = on_device(monkeypatch, tmp_path, "10.3.0")
    build(export, export, ["ort-fp32", "trt-fp16"], evaluate=False)
    images = open_images("fashion-mnist-mini", "val")
    engines = CascadeRunner.from_manifest(export, [0.6], target="trt-fp16")
    graphs = CascadeRunner.from_manifest(export, [0.6], target="ort-fp32")
    got, expected = ([runner(images.image(i)) for i in range(60)] for runner in (engines, graphs))
    assert all(isinstance(stage._runner, runtime_trt.TrtRunner) for stage in engines.stages)
    # the stand-in computes each engine with the FP32 graph it was built from: the same answers, stage by stage
    assert [(r.prediction, r.stage) for r in got] == [(r.prediction, r.stage) for r in expected]
    assert {r.stage for r in got} == {0, 1}, "the threshold should send some images on and answer others early"
    def gpu_ms():  # each launch advances its stream's clock
        return sum(stream.clock_ms for stream in trt.device.streams.values())
    before = gpu_ms()
    report = evaluate_cascade(export, target="trt-fp16", limit=200, fit_threads=False, out=tmp_path / "cascade")
    assert gpu_ms() > before  # the tuning and the timed comparison ran the engines, not the graphs
    saved = json.loads((tmp_path / "cascade" / "cascade.json").read_text())
    assert saved["source"]["target"] == "trt-fp16" and [s["resolution"] for s in saved["stages"]] == [16, 28]
    assert all(np.isfinite(r.p99_latency_ms) and r.p99_latency_ms >= r.p50_latency_ms > 0 for r in report.rows)
