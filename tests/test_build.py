"""edgeres.build end to end on a tiny trained CNN exported at 28 and 16 px (see test_build_support)."""
import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgeres._io import sha256_file
from edgeres.build import build
from edgeres.cli import cli
from edgeres.errors import EdgeresError
from tests.test_build_support import MEAN, RESOLUTIONS, STD, tiny_export

EVAL_IMAGES = 400
PAIRED_IMAGES = 2000  # all of val: the paired INT8/FP16-vs-FP32 comparison's sample
MAX_LOSS = 1.0  # top-1 points a faithful 8-bit graph may lose vs FP32 (seen: 0-1.3 on VNNI)
MAX_FLIPS = 0.06  # share of FP32's predictions it may change (seen: 1-2 % on VNNI; a wrong scale flips > 50 %)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    export = tiny_export(tmp_path_factory)
    manifest = build(export, export, ["ort-fp32", "ort-int8", "int8-qdq", "fp16"], calib_images=128,
                     eval_images=EVAL_IMAGES)
    return export, manifest


def rows(manifest, target):
    return {r["resolution"]: r for r in manifest["artifacts"] if r["target"] == target}


def producers(model):
    return {out: node for node in model.graph.node for out in node.output}


@pytest.mark.parametrize("target", ["ort-int8", "int8-qdq"])
def test_every_conv_reads_dequantized_input_and_weight(built, target):
    out, manifest = built
    for row in rows(manifest, target).values():
        model = onnx.load(out / row["file"])
        made_by = producers(model)
        convs = [n for n in model.graph.node if n.op_type == "Conv"]
        assert len(convs) == 3
        for conv in convs:
            assert [made_by[name].op_type for name in conv.input[:2]] == ["DequantizeLinear"] * 2
            assert any(n.op_type == "QuantizeLinear" and n.output[0] == made_by[conv.input[0]].input[0]
                       for n in model.graph.node)  # the activation went through a Q -> DQ pair


@pytest.mark.parametrize("target, act_type", [("ort-int8", onnx.TensorProto.UINT8),
                                              ("int8-qdq", onnx.TensorProto.INT8)])
def test_activation_and_weight_types(built, target, act_type):
    out, manifest = built
    model = onnx.load(out / rows(manifest, target)[28]["file"])
    inits = {t.name: t for t in model.graph.initializer}
    made_by = producers(model)
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        act_dq, weight_dq = made_by[conv.input[0]], made_by[conv.input[1]]
        assert inits[act_dq.input[2]].data_type == act_type
        weight = inits[weight_dq.input[0]]
        assert weight.data_type == onnx.TensorProto.INT8
        assert not onnx.numpy_helper.to_array(inits[weight_dq.input[2]]).any()  # symmetric: zero point 0
        assert onnx.numpy_helper.to_array(inits[weight_dq.input[1]]).shape == (weight.dims[0],)  # per channel


def predictions(path, res: int, limit: int, exact_int8: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 predictions, labels) of one graph on the first `limit` val images, single-threaded; exact_int8:
    ORT's exact INT8 kernels, as build and eval measure (the fast ones saturate on CPUs without VNNI)."""
    from edgeres.data import eval_batches, open_images
    from edgeres.runtimes.ort import OrtRunner
    score = OrtRunner(path, threads=1, exact_int8=exact_int8).infer
    pairs = [(score(x).argmax(1), y) for x, y in
             eval_batches(open_images("fashion-mnist-mini", "val"), res, MEAN, STD, 1.0, 1, limit=limit)]
    return np.concatenate([p for p, _ in pairs]), np.concatenate([y for _, y in pairs])


def test_reduced_precision_keeps_fp32_predictions(built):
    """A paired comparison on the same images, so it holds on every CPU's INT8 kernels.

    ONNX Runtime's INT8 kernels differ by ISA (VNNI vs AVX2, where u8*s8 pairs can saturate), so an unpaired
    "top-1 within 2 points on 400 images" failed on AVX2 for a weak model. Here: FP32 and each variant are
    scored on the same PAIRED_IMAGES images; b = images only FP32 gets right, c = only the variant. The claim
    tested is "the variant loses at most MAX_LOSS points" with a 4-sigma allowance for the sample,
    sigma = sqrt(b + c) / N (the paired, McNemar-style standard error of the difference in top-1); and
    "the variant flips at most MAX_FLIPS of FP32's predictions", which a wrong scale or zero point breaks
    (it flips most of them), with 4 binomial sigmas at that rate.
    """
    out, manifest = built
    fp32 = rows(manifest, "ort-fp32")
    for target in ("ort-int8", "int8-qdq", "fp16"):
        for res, row in rows(manifest, target).items():
            assert row["accuracy"]["count"] == EVAL_IMAGES
            low, high = row["accuracy"]["top1_ci95"]  # Wilson 95% on 400 images: at most +-4.9 points wide
            assert low < row["accuracy"]["top1"] < high and high - low <= 9.8
            ref, labels = predictions(out / fp32[res]["file"], res, PAIRED_IMAGES)
            got, _ = predictions(out / row["file"], res, PAIRED_IMAGES)
            n = len(labels)
            only_ref = int(np.sum((ref == labels) & (got != labels)))
            only_got = int(np.sum((got == labels) & (ref != labels)))
            loss = 100.0 * (only_ref - only_got) / n
            assert loss <= MAX_LOSS + 4 * 100.0 * np.sqrt(only_ref + only_got) / n, (target, res, loss)
            flips = float(np.mean(got != ref))
            assert flips <= MAX_FLIPS + 4 * np.sqrt(MAX_FLIPS * (1 - MAX_FLIPS) / n), (target, res, flips)


def test_ort_int8_has_7_bit_weights_and_runs_exactly_on_the_fast_kernels(built):
    """ort-int8's weights stay within -64..64, so ORT's fast U8 x S8 kernels (int16 pair sums) cannot saturate
    on any x86 CPU: the fast session gives the exact session's logits. int8-qdq (for TensorRT) keeps 8 bits."""
    from edgeres.data import eval_batches, open_images
    from edgeres.runtimes.ort import OrtRunner
    out, manifest = built
    for target, bound in (("ort-int8", 64), ("int8-qdq", 127)):
        for row in rows(manifest, target).values():
            assert largest_conv_weight(out / row["file"]) == bound, (target, row["resolution"])
            assert ("7-bit" in row["weights"]) == (target == "ort-int8")
            assert row["weight_bits"] == (7 if target == "ort-int8" else 8)
    for res, row in rows(manifest, "ort-int8").items():
        fast, exact = (OrtRunner(out / row["file"], threads=1, exact_int8=e).infer for e in (False, True))
        for x, _ in eval_batches(open_images("fashion-mnist-mini", "val"), res, MEAN, STD, 1.0, 1, limit=64):
            np.testing.assert_allclose(fast(x), exact(x), rtol=0, atol=1e-5)


def test_int8_full_range_option_keeps_8_bit_weights(tmp_path_factory):
    export = tiny_export(tmp_path_factory, "full-range")
    manifest = build(export, export, ["ort-int8"], resolutions=[16], calib_images=32, evaluate=False,
                     options={"int8_full_range": True})
    row = rows(manifest, "ort-int8")[16]
    assert largest_conv_weight(export / row["file"]) == 127 and "7-bit" not in row["weights"]
    assert row["weight_bits"] == 8


def largest_conv_weight(path) -> int:
    """The largest |code| of a graph's INT8 conv weights (4-D initializers)."""
    model = onnx.load(path)
    return max(int(np.abs(onnx.numpy_helper.to_array(i)).max()) for i in model.graph.initializer
               if i.data_type == onnx.TensorProto.INT8 and len(i.dims) == 4)


def test_fp16_graph_has_half_weights_and_float_io(built):
    out, manifest = built
    model = onnx.load(out / rows(manifest, "fp16")[16]["file"])
    types = {t.data_type for t in model.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in types
    assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
               for v in list(model.graph.input) + list(model.graph.output))


def test_build_json_records_files_and_settings(built):
    out, manifest = built
    on_disk = json.loads((out / "build.json").read_text())
    assert on_disk["kind"] == "build" and on_disk["export"]["sha256"] == sha256_file(out / "export.json")
    assert len(on_disk["artifacts"]) == 4 * len(RESOLUTIONS)
    for row in on_disk["artifacts"]:
        assert sha256_file(out / row["file"]) == row["sha256"] and (out / row["file"]).stat().st_size == row["bytes"]
        assert row["macs"] == 1000 * row["resolution"] ** 2 and row["accuracy"]["measured_with"] == "onnxruntime-cpu"
        has_calib = row["target"] in ("ort-int8", "int8-qdq")
        assert (row["calibration"] is not None) == has_calib
        if has_calib:
            assert row["calibration"]["method"] == "minmax" and row["calibration"]["images"] == 128
    assert rows(on_disk, "ort-int8")[28]["precision"] == "int8 (U8 act / S8 w)"


def test_both_int8_graphs_share_one_calibration(built):
    _, manifest = built
    for res in RESOLUTIONS:
        assert rows(manifest, "ort-int8")[res]["calibration"] == rows(manifest, "int8-qdq")[res]["calibration"]


def test_rebuilding_one_target_keeps_the_other_rows(built, tmp_path):
    out, _ = built
    import shutil
    shutil.copytree(out, tmp_path / "b")
    manifest = build(tmp_path / "b", tmp_path / "b", ["fp16"], resolutions="16", evaluate=False)
    assert len(manifest["artifacts"]) == 4 * len(RESOLUTIONS)
    assert rows(manifest, "fp16")[16]["accuracy"] is None and rows(manifest, "fp16")[28]["accuracy"] is not None


def test_unknown_target_lists_the_valid_ones(tmp_path):
    with pytest.raises(EdgeresError) as err:
        build(tmp_path, tmp_path / "o", ["int4-magic"])
    message = str(err.value)
    assert "\n" not in message and "ort-int8" in message and "trt-fp16" in message and "lq-w2a2" in message


def test_missing_resolution_and_changed_graph_are_one_line_errors(tmp_path_factory):
    export = tiny_export(tmp_path_factory, "bad-export")
    with pytest.raises(EdgeresError, match="no graph at \\[64\\] px"):
        build(export, export, ["fp16"], resolutions="64", evaluate=False)
    (export / "tiny-16.onnx").write_bytes(b"changed")
    with pytest.raises(EdgeresError, match="changed since export"):
        build(export, export, ["fp16"], evaluate=False)


def test_cli_build_then_eval_the_build_dir(built, tmp_path):
    out, _ = built
    runner = CliRunner()
    result = runner.invoke(cli, ["build", str(out), "--target", "ort-int8", "--calib-images", "128",
                                 "--eval-images", "50", "--out", str(tmp_path / "o"),
                                 "--calib-dir", str(out / "calib")])
    assert result.exit_code == 0, result.output
    assert "ort-int8" in result.output and "edgeres bench" in result.output
    result = runner.invoke(cli, ["eval", str(tmp_path / "o"), "--limit", "50"])
    assert result.exit_code == 0 and "ort-int8@28" in result.output and "ort-int8@16" in result.output


def test_build_help_lists_targets():
    result = CliRunner().invoke(cli, ["build", "--help"])
    assert result.exit_code == 0 and all(n in result.output for n in ("ort-int8", "int8-qdq", "trt-int8", "lq-w"))


def test_build_and_onnx_eval_run_with_torch_blocked(built, tmp_path):
    out, _ = built
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeres.build import build\n"
            f"m = build({str(out)!r}, {str(tmp_path)!r}, ['ort-int8', 'fp16'], calib_images=128, eval_images=20,"
            f" calib_dir={str(out / 'calib')!r})\n"
            "from edgeres.evaluate import evaluate_onnx\n"
            f"r = evaluate_onnx({str(tmp_path)!r}, limit=20)\n"
            "assert not [k for k, v in sys.modules.items() if k.startswith('torch') and v is not None]\n"
            "print(len(m['artifacts']), len(r))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["4", "4"]


def test_build_reads_what_edgeres_export_writes(tiny_rsnet, tiny_spec, tmp_path):
    """Integration with the real export stage (random-weight RS-Net: structure only, no accuracy claim)."""
    from edgeres.data import open_images
    from edgeres.export import export
    from edgeres.manifests.checkpoint import CheckpointInfo
    from edgeres.models.checkpoint import save_checkpoint
    classes = open_images("fashion-mnist-mini", "val").info.classes
    info = CheckpointInfo(tiny_spec, (28, 20, 12), (0.286,), (0.353,), 1.0, "fashion-mnist-mini", classes)
    save_checkpoint(tmp_path / "ckpt", tiny_rsnet, info)
    export(tmp_path / "ckpt", tmp_path / "exp", "28,12", verify_images=4)
    manifest = build(tmp_path / "exp", tmp_path / "exp", ["ort-int8", "fp16"], calib_images=16, eval_images=16)
    assert sorted((r["target"], r["resolution"]) for r in manifest["artifacts"]) == [
        ("fp16", 12), ("fp16", 28), ("ort-int8", 12), ("ort-int8", 28)]
    assert all(r["macs"] > 0 and r["accuracy"]["count"] == 16 for r in manifest["artifacts"])
