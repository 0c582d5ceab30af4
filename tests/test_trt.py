"""TensorRT engines on a real GPU/Jetson: build trt-fp16 and trt-int8 and measure their top-1 on the device."""
import pytest

from edgeres._optional import available

if not available("tensorrt"):
    pytest.skip("TensorRT is not installed (build engines on a GPU host or Jetson)", allow_module_level=True)
try:
    import tensorrt as trt
    trt.Builder(trt.Logger(trt.Logger.ERROR)).create_builder_config()
except Exception as exc:  # noqa: BLE001 - any failure here means no usable GPU
    pytest.skip(f"TensorRT cannot create a builder (no usable GPU?): {exc}", allow_module_level=True)

from edgeres.build import build  # noqa: E402
from tests.test_build_support import tiny_export  # noqa: E402


def test_engines_build_and_match_onnx_accuracy(tmp_path_factory):
    export = tiny_export(tmp_path_factory, "trt-device")
    manifest = build(export, export, ["ort-int8", "fp16", "trt-fp16", "trt-int8"], calib_images=128,
                     eval_images=400)
    by = {(r["target"], r["resolution"]): r for r in manifest["artifacts"]}
    for res in (28, 16):
        for engine, onnx_target in (("trt-fp16", "fp16"), ("trt-int8", "int8-qdq")):
            row = by[(engine, res)]
            assert (export / row["file"]).stat().st_size > 0
            if row["accuracy"] is not None:  # measured on this device through polygraphy
                assert abs(row["accuracy"]["top1"] - by[(onnx_target, res)]["accuracy"]["top1"]) <= 2.0


def test_engine_rows_record_the_precision_mix_of_this_tensorrt(tmp_path_factory):
    export = tiny_export(tmp_path_factory, "trt-device-mix")
    manifest = build(export, export, ["trt-int8"], calib_images=64, resolutions="16", evaluate=False)
    row = next(r for r in manifest["artifacts"] if r["target"] == "trt-int8")
    assert row["tensorrt"] == trt.__version__
    assert row["precision_mix"]["strongly_typed"] == (int(trt.__version__.split(".")[0]) >= 10)


def test_dynamic_batch_engine_matches_onnx_runtime_across_its_profile(tmp_path_factory):
    import numpy as np

    from edgeres.runtimes.ort import OrtRunner
    from edgeres.runtimes.trt import TrtRunner
    from tests.test_trt_offline import dynamic_batch
    export = dynamic_batch(tiny_export(tmp_path_factory, "trt-device-dynamic"))
    manifest = build(export, export, ["trt-fp16"], resolutions="16", evaluate=False)
    rows = {r["target"]: r for r in manifest["artifacts"]}
    assert rows["trt-fp16"]["profile"]["max"][0] == 64
    engine, graph = TrtRunner(export / rows["trt-fp16"]["file"]), OrtRunner(export / rows["fp16"]["file"])
    for batch in (1, 8, 64):
        x = np.random.default_rng(batch).standard_normal((batch, 1, 16, 16)).astype(np.float32)
        assert np.abs(engine.infer(x) - graph.infer(x)).max() < 0.05  # FP16 on both sides, different kernels
    engine.close()
