"""--arch beyond the four built-ins: torchvision NAME, timm:NAME, module.path:factory -> import, export, ORT = torch.

Each model is tiny (1-channel 12-28 px fashion-mnist-mini, 10 classes) with random weights and distinct BN
statistics, saved as a user would (state_dict()), imported with BN recalibration, exported and run in ONNX
Runtime on random inputs at every resolution.
"""
import json
import os
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from edgeres.arch import ArchSpec, trusting_arch_code  # noqa: E402
from edgeres.cli import cli  # noqa: E402
from edgeres.errors import EdgeresError  # noqa: E402
from edgeres.export import export  # noqa: E402
from edgeres.importer import import_model  # noqa: E402
from edgeres.models import at_resolution, build_plain  # noqa: E402
from edgeres.models.checkpoint import load_checkpoint  # noqa: E402
from edgeres.runtimes.ort import ort_session  # noqa: E402
from tests.conftest import randomize_bn  # noqa: E402

RES = (28, 20, 12)
DATA = "fashion-mnist-mini"
FACTORY_MODULE = "edgeres_test_user_nets"  # written into tmp_path by the `factory` fixture
FACTORY_SOURCE = '''
"""A user's own BN CNN; importing this module leaves a marker file, so tests can see that it ran."""
import os
from torch import nn

open(os.environ["EDGERES_TEST_IMPORT_MARKER"], "a").write("imported\\n")


def build(width=8, num_classes=10, in_channels=1):
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                         nn.Conv2d(width, 2 * width, 3, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes))


def no_bn(num_classes=10):
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))


def sync_bn(num_classes=10):
    return nn.Sequential(nn.Conv2d(1, 4, 3, bias=False), nn.SyncBatchNorm(4), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))
'''


@pytest.fixture
def factory(tmp_path, monkeypatch):
    """A temporary module on sys.path; returns the marker file its import writes."""
    (tmp_path / f"{FACTORY_MODULE}.py").write_text(FACTORY_SOURCE)
    marker = tmp_path / "imported.txt"
    monkeypatch.setenv("EDGERES_TEST_IMPORT_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, FACTORY_MODULE, raising=False)
    yield marker
    sys.modules.pop(FACTORY_MODULE, None)


def saved_plain(spec: ArchSpec, path) -> None:
    torch.manual_seed(0)
    model = build_plain(spec)
    randomize_bn(model)
    torch.save(model.state_dict(), path)


CASES = [("mobilenet_v3_small", {"width_mult": 0.25}),  # torchvision, not one of the four, new 1-channel stem
         ("timm:mobilenetv3_small_050", {}),  # timm BatchNormAct2d layers (split into BN + act)
         (f"{FACTORY_MODULE}:build", {"width": 6})]


@pytest.mark.parametrize("arch, kwargs", CASES, ids=["torchvision", "timm", "factory"])
def test_import_export_and_ort_equals_torch_at_every_resolution(arch, kwargs, tmp_path, factory):
    if arch.startswith("timm:"):
        pytest.importorskip("timm")
    saved_plain(ArchSpec(arch, 10, 1, kwargs=kwargs), tmp_path / "plain.pt")
    out = import_model(arch, tmp_path / "plain.pt", RES, tmp_path / "ckpt", data=DATA, calib_images=32,
                       measure=False, arch_kwargs=kwargs)
    recorded = json.loads((out / "checkpoint.json").read_text())["arch"]
    assert (recorded["name"], recorded["kwargs"], recorded["num_classes"], recorded["in_channels"]) == \
        (arch, kwargs, 10, 1)
    with trusting_arch_code():  # the factory case needs the user's say-so (tested below); others ignore it
        manifest = export(out, tmp_path / "export", verify_images=8)
        model, _, _ = load_checkpoint(out)
    assert [g["resolution"] for g in manifest["graphs"]] == list(RES)
    x_by_res = {r: np.random.default_rng(r).standard_normal((1, 1, r, r)).astype(np.float32) for r in RES}
    for graph in manifest["graphs"]:
        res, x = graph["resolution"], x_by_res[graph["resolution"]]
        assert ":" not in graph["file"] and graph["top1_agreement"] == 1.0
        session = ort_session(tmp_path / "export" / graph["file"])
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        with torch.no_grad(), at_resolution(model, res):
            want = model(torch.from_numpy(x)).numpy()
        assert np.abs(got - want).max() <= 1e-4 + 1e-4 * np.abs(want).max(), (arch, res)


def test_a_checkpoint_naming_a_factory_is_not_imported_without_the_users_say_so(tmp_path, factory):
    saved_plain(ArchSpec(f"{FACTORY_MODULE}:build", 10, 1), tmp_path / "plain.pt")
    out = import_model(f"{FACTORY_MODULE}:build", tmp_path / "plain.pt", (20, 12), tmp_path / "ckpt",
                       recalibrate=False, mean=(0.5,), std=(0.25,))
    sys.modules.pop(FACTORY_MODULE)
    factory.unlink()  # the import wrote the marker: start afresh, as a new process would
    with pytest.raises(EdgeresError, match="--trust-arch") as err:
        load_checkpoint(out)
    runner = CliRunner()
    for command in (["eval", str(out), "--data", DATA, "--limit", "4"],
                    ["export", str(out), "--data", DATA, "--out", str(tmp_path / "e")]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 1 and "--trust-arch" in result.stderr, result.output
    assert "\n" not in str(err.value) and not factory.exists() and FACTORY_MODULE not in sys.modules
    assert not (tmp_path / "e").exists()
    result = runner.invoke(cli, ["eval", str(out), "--data", DATA, "--limit", "4", "--trust-arch"])
    assert result.exit_code == 0, result.output
    assert factory.read_text() == "imported\n"
    load_checkpoint(out, trust_arch=f"{FACTORY_MODULE}:build")  # re-stating the same --arch is the say-so too
    sys.modules.pop(FACTORY_MODULE)
    with pytest.raises(EdgeresError, match="--trust-arch"):
        load_checkpoint(out)  # the CLI's trust ended with its command


def test_without_data_classes_channels_come_from_the_weights_and_mean_std_are_required(tmp_path):
    saved_plain(ArchSpec("mobilenet_v3_small", 7, 1, kwargs={"width_mult": 0.25}), tmp_path / "plain.pt")
    state = torch.load(tmp_path / "plain.pt", weights_only=True)  # saved from torch.nn.DataParallel, as many are
    torch.save({f"module.{k}": v for k, v in state.items()}, tmp_path / "plain.pt")
    common = dict(arch="mobilenet_v3_small", weights=tmp_path / "plain.pt", resolutions=RES,
                  out=tmp_path / "ckpt", arch_kwargs={"width_mult": 0.25})
    for kwargs, message in (({}, "needs images: pass --data"), ({"recalibrate": False}, "--mean and --std"),
                            ({"recalibrate": False, "mean": (0.1, 0.2), "std": (1, 1)}, "need 1 values")):
        with pytest.raises(EdgeresError, match=message) as err:
            import_model(**common, **kwargs)
        assert "\n" not in str(err.value) and not (tmp_path / "ckpt").exists()
    out = import_model(**common, recalibrate=False, mean=(0.3,), std=(0.4,))
    model, info, _ = load_checkpoint(out)
    assert (info.arch.num_classes, info.arch.in_channels, info.mean, info.std) == (7, 1, (0.3,), (0.4,))
    assert info.data == "" and info.classes == () and info.metrics == {}
    assert model(torch.zeros(2, 1, 20, 20)).shape == (2, 7)


@pytest.mark.parametrize("builder, message", [("no_bn", "has no BatchNorm2d"),
                                              ("sync_bn", "SyncBatchNorm, which the resolution switch cannot reach")])
def test_models_the_switch_cannot_serve_are_refused_in_one_line(builder, message, tmp_path, factory):
    arch = f"{FACTORY_MODULE}:{builder}"
    torch.save(build_plain(ArchSpec(arch, 10, 1)).state_dict(), tmp_path / "w.pt")
    with pytest.raises(EdgeresError, match=message) as err:
        import_model(arch, tmp_path / "w.pt", RES, tmp_path / "ckpt", recalibrate=False, mean=(0.5,), std=(0.5,))
    assert "\n" not in str(err.value) and not (tmp_path / "ckpt").exists()


def test_train_takes_the_same_arch_grammar(tmp_path, factory):
    """`edgeres train --arch module:factory --arch-kwargs`: the spec is recorded; --init re-states --arch."""
    arch, kwargs = f"{FACTORY_MODULE}:build", '{"width": 4}'
    args = ["train", "--data", DATA, "--arch", arch, "--arch-kwargs", kwargs, "--res", "16,12", "--epochs", "1",
            "--batch-size", "32", "--train-limit", "64", "--val-limit", "16", "--no-progress"]
    first = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(cli, [*args, "--init", str(tmp_path / "a"), "--out", str(tmp_path / "b")])
    assert again.exit_code == 0, again.output
    recorded = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
    assert recorded["arch"]["kwargs"] == {"width": 4} and recorded["training"]["arch_kwargs"] == {"width": 4}
    wrong = CliRunner().invoke(cli, [*args[:5], "--arch-kwargs", "{width: 4}", *args[7:], "--out", str(tmp_path / "c")])
    assert wrong.exit_code == 2 and "--arch-kwargs" in wrong.stderr and "not JSON" in wrong.stderr


def test_benching_a_factory_checkpoint_with_torch_needs_the_users_say_so(tmp_path, factory, monkeypatch):
    """The torch rows run in worker processes: the say-so given to bench reaches them, and nothing less does."""
    saved_plain(ArchSpec(f"{FACTORY_MODULE}:build", 10, 1), tmp_path / "plain.pt")
    out = import_model(f"{FACTORY_MODULE}:build", tmp_path / "plain.pt", (20, 12), tmp_path / "ckpt",
                       recalibrate=False, mean=(0.5,), std=(0.25,))
    runner = CliRunner()
    done = runner.invoke(cli, ["export", str(out), "--data", DATA, "--out", str(tmp_path / "e"), "--trust-arch"])
    assert done.exit_code == 0, done.output
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    sys.modules.pop(FACTORY_MODULE)
    factory.unlink()
    bench = ["bench", str(tmp_path / "e"), "--backend", "torch", "--min-time", "0.02", "--min-runs", "2",
             "--warmup", "1", "--no-paired", "--out", str(tmp_path / "b")]
    refused = runner.invoke(cli, bench)
    assert refused.exit_code == 1 and "--trust-arch" in refused.stderr and refused.stderr.count("\n") == 1
    assert not factory.exists() and not (tmp_path / "b").exists()
    done = runner.invoke(cli, [*bench, "--trust-arch"])
    assert done.exit_code == 0, done.output
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())["rows"]
    assert sorted((r["target"], r["resolution"]) for r in rows) == [("torch-eager", 12), ("torch-eager", 20)]
