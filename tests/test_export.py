"""Export: verified ONNX graphs per resolution (BNs folded), export.json, determinism, atomicity, bad input."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from click.testing import CliRunner  # noqa: E402

from edgeres.cli import cli  # noqa: E402
from edgeres.data import eval_batches, open_images  # noqa: E402
from edgeres.export import export  # noqa: E402
from edgeres.manifests.checkpoint import CheckpointInfo
from edgeres.models import ArchSpec, at_resolution, build_rsnet  # noqa: E402
from edgeres.models.checkpoint import save_checkpoint  # noqa: E402
from edgeres.runtimes.ort import ort_session  # noqa: E402

from .conftest import TINY_RES, randomize_bn  # noqa: E402

RES = "28,24,12"  # two trained resolutions and one interpolated (between 28 and 20)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: OpenMP spinning with 2 threads is far slower here
    yield
    torch.set_num_threads(before)


def make_checkpoint(directory, arch: str):
    spec = ArchSpec(arch, 10, in_channels=1, width_mult=0.25 if arch == "mobilenet_v2" else 1.0, small_input=True)
    torch.manual_seed(0)
    model = build_rsnet(spec, TINY_RES)
    randomize_bn(model)  # resolutions must differ, or a wrong BN would go unnoticed
    classes = open_images("fashion-mnist-mini", "val").info.classes
    info = CheckpointInfo(spec, TINY_RES, (0.2860,), (0.3530,), 1.0, "fashion-mnist-mini", classes)
    save_checkpoint(directory, model.eval(), info)
    return directory, model.eval()


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    return make_checkpoint(tmp_path_factory.mktemp("ck") / "mbv2", "mobilenet_v2")


@pytest.fixture(scope="module")
def exported(mobilenet, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "mbv2"
    return out, export(mobilenet[0], out, RES, switchable=True, verify_images=16)


def ort_vs_rsnet(model, path, res: int, n: int = 8) -> float:
    """Independent of export's own check: our RS-Net at res vs ONNX Runtime on real images."""
    x, _ = next(eval_batches(open_images("fashion-mnist-mini", "val"), res, (0.2860,), (0.3530,), 1.0, n, n))
    session = ort_session(path)
    got = np.concatenate([session.run(None, {"input": x[i:i + 1]})[0] for i in range(n)])
    with torch.no_grad(), at_resolution(model, res):
        ref = model(torch.from_numpy(x)).numpy()
    assert (got.argmax(1) == ref.argmax(1)).all()
    return float(np.abs(got - ref).max())


def test_mobilenet_graphs_match_pytorch_and_have_no_batchnorm(mobilenet, exported):
    out, manifest = exported
    assert [g["resolution"] for g in manifest["graphs"]] == [28, 24, 12]
    assert [g["bn"] for g in manifest["graphs"]] == ["exact", "interpolated", "exact"]
    for g in manifest["graphs"]:
        proto = onnx.load(out / g["file"])
        assert "BatchNormalization" not in {n.op_type for n in proto.graph.node}
        assert ort_vs_rsnet(mobilenet[1], out / g["file"], g["resolution"]) < 1e-4
        assert g["max_abs_diff"] <= g["tolerance"] < 1e-3 and g["top1_agreement"] == 1.0
        assert g["input"] == {"name": "input", "shape": [1, 1, g["resolution"], g["resolution"]]}
        assert g["output"] == {"name": "logits", "shape": [1, 10]}


def test_manifest_records_checkpoint_costs_and_metadata(mobilenet, exported):
    from edgeres._io import sha256_file
    out, manifest = exported
    assert json.loads((out / "export.json").read_text())["graphs"] == manifest["graphs"]
    ck = json.loads((mobilenet[0] / "checkpoint.json").read_text())
    assert manifest["checkpoint"]["sha256"] == ck["weights"]["sha256"]
    assert manifest["quant"] is None and manifest["normalization"] == ck["normalization"]
    macs = {g["resolution"]: g["macs"] for g in manifest["graphs"]}
    assert macs[28] > macs[24] > macs[12] > 0
    for g in manifest["graphs"]:
        assert g["sha256"] == sha256_file(out / g["file"]) and g["bytes"] == (out / g["file"]).stat().st_size
        assert g["feature_map"] == (2 if g["resolution"] >= 20 else 1)
        props = {p.key: p.value for p in onnx.load(out / g["file"]).metadata_props}
        assert props["edgeres.resolution"] == str(g["resolution"]) and props["edgeres.bn"] == g["bn"]
        assert props["edgeres.checkpoint_sha256"] == ck["weights"]["sha256"]
        assert json.loads(props["edgeres.mean"]) == [0.286] and props["edgeres.num_classes"] == "10"


def test_resnet_graphs_match_pytorch(tmp_path):
    ck, model = make_checkpoint(tmp_path / "r18", "resnet18")
    manifest = export(ck, tmp_path / "out", "28,12", verify_images=4)
    for g in manifest["graphs"]:
        assert ort_vs_rsnet(model, tmp_path / "out" / g["file"], g["resolution"], n=4) < 1e-3
        assert "BatchNormalization" not in {n.op_type for n in onnx.load(tmp_path / "out" / g["file"]).graph.node}


def test_same_checkpoint_twice_gives_identical_bytes(mobilenet, exported, tmp_path):
    out, manifest = exported
    again = export(mobilenet[0], tmp_path / "again", RES, switchable=True, verify_images=2)
    files = [g["file"] for g in manifest["graphs"]] + [manifest["switchable"]["file"]]
    assert files == [g["file"] for g in again["graphs"]] + [again["switchable"]["file"]]
    for name in files:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes()


def test_nearest_and_dynamic_batch(mobilenet, tmp_path):
    manifest = export(mobilenet[0], tmp_path / "o", "32", allow_nearest=True, dynamic_batch=True, verify_images=4)
    (g,) = manifest["graphs"]
    assert g["bn"] == "nearest" and g["bn_source"]["high"] == 28
    assert g["input"]["shape"] == ["batch", 1, 32, 32]


def test_failed_export_leaves_nothing_and_keeps_a_previous_export(mobilenet, exported, tmp_path, monkeypatch):
    import edgeres.export.folded as stage
    calls = []

    def fail_second(*args):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("injected failure")
        return real(*args)
    real = stage.verify_graph
    monkeypatch.setattr(stage, "verify_graph", fail_second)
    with pytest.raises(RuntimeError, match="injected"):
        export(mobilenet[0], tmp_path / "new", RES, verify_images=2)
    assert list(tmp_path.iterdir()) == []  # no directory, no temp file beside it
    out = exported[0]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls.clear()
    with pytest.raises(RuntimeError, match="injected"):
        export(mobilenet[0], out, RES, verify_images=2)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_reexport_replaces_graphs_but_keeps_other_stages_files(mobilenet, tmp_path):
    out = tmp_path / "o"
    export(mobilenet[0], out, "28,20", verify_images=2)
    (out / "build.json").write_text("{}")
    export(mobilenet[0], out, "12", verify_images=2)
    assert sorted(p.name for p in out.iterdir()) == ["build.json", "export.json", "mobilenet_v2_r12.onnx"]


def one_line_error(args, code=1):
    result = CliRunner().invoke(cli, ["export", *args])
    assert result.exit_code == code, result.output
    assert result.stderr.strip().count("\n") == 0, result.stderr
    return result.stderr


def test_bad_inputs_are_one_line_errors_and_leave_nothing(mobilenet, tmp_path):
    out = tmp_path / "out"
    assert "outside the trained range" in one_line_error([str(mobilenet[0]), "--res", "40", "--out", str(out)])
    assert "not a checkpoint directory" in one_line_error([str(tmp_path / "missing"), "--out", str(out)])
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in mobilenet[0].iterdir():
        corrupt.joinpath(f.name).write_bytes(f.read_bytes()[: 1000 if f.suffix == ".safetensors" else None])
    assert "modified or truncated" in one_line_error([str(corrupt), "--out", str(out)])
    (tmp_path / "file").write_text("x")
    under_a_file = str(tmp_path / "file" / "o")
    assert "cannot create output directory" in one_line_error([str(mobilenet[0]), "--out", under_a_file])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    assert "holds no export.json" in one_line_error([str(mobilenet[0]), "--out", str(tmp_path / "full")])
    assert "--opset 9" in one_line_error([str(mobilenet[0]), "--out", str(out), "--opset", "9"], code=2)
    rgb = make_rgb_folder(tmp_path / "rgb")
    assert "3-channel images" in one_line_error([str(mobilenet[0]), "--out", str(out), "--data", str(rgb)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupt", "file", "full", "rgb"]
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]


def make_rgb_folder(root):
    from PIL import Image
    for c in range(10):
        (root / "val" / f"c{c}").mkdir(parents=True)
        Image.new("RGB", (8, 8), (c, c, c)).save(root / "val" / f"c{c}" / "a.png")
    return root


def test_cli_prints_table_and_next_step(mobilenet, tmp_path):
    result = CliRunner().invoke(cli, ["export", str(mobilenet[0]), "--res", "20", "--out", str(tmp_path / "o"),
                                      "--verify-images", "2"])
    assert result.exit_code == 0, result.output
    assert "mobilenet_v2_r20.onnx" in result.stdout and "edgeres build" in result.stdout


def test_switchable_graph_equals_folded_graphs_at_every_trained_resolution(exported):
    out, manifest = exported
    sw = manifest["switchable"]
    proto = onnx.load(out / sw["file"])
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops and "If" in ops  # one branch per resolution, BNs folded at load
    assert {t.name for t in proto.graph.initializer} >= {"body.features.0.0.weight"}  # weights stored once, here
    assert sw["inputs"] == [{"name": "input", "shape": [1, 1, "height", "width"]}, {"name": "res_index", "shape": [1]}]
    assert sw["resolutions"] == list(TINY_RES)
    switchable = ort_session(out / sw["file"])
    folded = {g["resolution"]: out / g["file"] for g in manifest["graphs"]}
    for index, res in enumerate(TINY_RES):
        x, _ = next(eval_batches(open_images("fashion-mnist-mini", "val"), res, (0.2860,), (0.3530,), 1.0, 4, 4))
        got = switchable.run(None, {"input": x[:1], "res_index": np.array([index])})[0]
        if res in folded:  # 20 was not exported as a folded graph: checked against PyTorch instead
            ref = ort_session(folded[res]).run(None, {"input": x[:1]})[0]
            np.testing.assert_allclose(got, ref, atol=1e-5)
        check = sw["checks"][str(res)]
        assert check["reference"] == ("folded-onnx" if res in folded else "pytorch")
        assert check["max_abs_diff"] <= check["tolerance"] and check["top1_agreement"] == 1.0
    # 28 and 12 folded were exported, 20 was not: the S=3 total is estimated from their mean
    assert sw["folded_bytes_estimated"] and sw["bytes"] < 0.5 * sw["folded_bytes_total"]
    assert set(sw["latency_ms"]) == {"28", "12"}
    assert all(v["switchable_ms"] > 0 and v["ratio"] > 0 for v in sw["latency_ms"].values())


def test_switchable_module_equals_rsnet_in_pytorch(tiny_rsnet):
    from edgeres.export.switchable import SwitchableGraph
    graph = SwitchableGraph(tiny_rsnet)
    for index, res in enumerate(TINY_RES):
        x = torch.randn(2, 1, res, res)
        with torch.no_grad(), at_resolution(tiny_rsnet, res):
            torch.testing.assert_close(graph(x, torch.tensor([index])), tiny_rsnet(x), rtol=1e-5, atol=1e-6)


def test_agreement_rules_excuse_ties_and_step_flips_only_where_stated():
    from edgeres.export.checks import FLOAT_RULE, STEP_RULE, agreement
    ref = np.tile(np.array([[1.0, 0.0, -1.0]]), (50, 1))
    assert agreement(ref, ref + 1e-6).ok(FLOAT_RULE)
    flipped = ref.copy()
    flipped[0] = [0.0, 1.0, -1.0]  # one image changed by a quantizer step: argmax differs too
    result = agreement(ref, flipped)
    assert result.within == 0.98 and result.top1_agreement == 0.98 and result.ties == 0
    assert not result.ok(FLOAT_RULE) and result.ok(STEP_RULE)
    tie = np.array([[1.0, 1.0 - 1e-6, 0.0]])  # PyTorch itself cannot tell classes 0 and 1 apart
    assert agreement(tie, tie[:, [1, 0, 2]]).ok(FLOAT_RULE)


def test_lq_checkpoint_exports_with_levels_kept_per_channel(tmp_path):
    """The LQ-Net contract: freeze_for_export() before folding keeps <= 2^K weight values per output channel."""
    pytest.importorskip("edgeres.models.lq")
    spec = ArchSpec("mobilenet_v2", 10, in_channels=1, width_mult=0.25, small_input=True, quant="w2a2")
    torch.manual_seed(0)
    model = build_rsnet(spec, TINY_RES)
    randomize_bn(model)
    info = CheckpointInfo(spec, TINY_RES, (0.2860,), (0.3530,), 1.0, "fashion-mnist-mini",
                          open_images("fashion-mnist-mini", "val").info.classes)
    manifest = export(save_checkpoint(tmp_path / "lq", model.eval(), info), tmp_path / "o", "20", verify_images=8)
    assert manifest["quant"] == "w2a2" and manifest["verification"]["rule"] == "lq-activations"
    proto = onnx.load(tmp_path / "o" / manifest["graphs"][0]["file"])
    weights = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs = [weights[n.input[1]] for n in proto.graph.node if n.op_type == "Conv"]
    distinct = [max(len(np.unique(w[c])) for c in range(w.shape[0])) for w in convs]
    assert distinct[0] > 4 and all(d <= 4 for d in distinct[1:])  # first conv stays full precision (LQ-Nets)
