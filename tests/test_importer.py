"""Import a plain BN CNN as an RS-Net: exact before recalibration, only BN statistics change, accuracy recovers."""
import pytest

torch = pytest.importorskip("torch")

from edgeres.errors import EdgeresError  # noqa: E402
from edgeres.evaluate import evaluate  # noqa: E402
from edgeres.importer import import_model  # noqa: E402
from edgeres.models import ArchSpec, at_resolution, build_plain  # noqa: E402
from edgeres.models.checkpoint import load_checkpoint  # noqa: E402
from edgeres.train import TrainConfig, train  # noqa: E402

RES = (28, 20, 12)
TINY = dict(width_mult=0.25, small_input=True)
DATA = "fashion-mnist-mini"


@pytest.fixture(scope="module")
def plain_weights(tmp_path_factory):
    """A plain (BatchNorm2d) MobileNetV2 x0.25 trained at 28 px only, saved as a user would: state_dict()."""
    work = tmp_path_factory.mktemp("import")
    # 3 epochs on 2048 images at lr 0.1: 52-65% at 28 px, and recalibration lifts 20 px by 17-26 points (seeds 0-4,
    # one thread; 10-29 with two) where 2 epochs on 1024 left 28 px near 40% and the lift at +5 on an EPYC
    checkpoint = train(TrainConfig(out=str(work / "i28"), mode="parallel", res=(28,), arch="mobilenet_v2", epochs=3,
                                   batch_size=64, lr=0.1, train_limit=2048, val_limit=32, crop_scale=(0.5, 1.0),
                                   progress=False, **TINY))
    model, _, _ = load_checkpoint(checkpoint)
    path = work / "plain.pt"
    torch.save({k.replace(".bn.28.", "."): v for k, v in model.state_dict().items()}, path)
    return path


def plain_model(path):
    model = build_plain(ArchSpec("mobilenet_v2", 10, 1, **TINY))
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def test_converted_model_equals_the_original_before_recalibration(plain_weights, tmp_path):
    out = import_model("mobilenet_v2", plain_weights, RES, tmp_path / "naive", recalibrate=False, measure=False,
                       data=DATA, **TINY)
    converted, info, _ = load_checkpoint(out)
    original = plain_model(plain_weights)
    assert info.training["recalibrated"] is False and info.resolutions == RES
    for res in RES:
        x = torch.randn(4, 1, res, res)
        with torch.no_grad(), at_resolution(converted, res):
            assert torch.equal(converted(x), original(x))


def test_recalibration_changes_only_running_stats_and_recovers_accuracy(plain_weights, tmp_path):
    naive = import_model("mobilenet_v2", plain_weights, RES, tmp_path / "naive", recalibrate=False, measure=False,
                         data=DATA, **TINY)
    recal = import_model("mobilenet_v2", plain_weights, RES, tmp_path / "recal", calib_images=256, measure=False,
                         data=DATA, **TINY)
    a, b = load_checkpoint(naive)[0].state_dict(), load_checkpoint(recal)[0].state_dict()
    changed = {k for k in a if not torch.equal(a[k], b[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    assert any(".bn.12." in k for k in changed) and any(".bn.28." in k for k in changed)
    before = evaluate(naive, resolutions="20", limit=500)[20].top1
    after = evaluate(recal, resolutions="20", limit=500)[20].top1
    assert after > before + 5, (before, after)


def test_import_errors_are_one_line(plain_weights, tmp_path, monkeypatch):
    def fails(**kwargs):
        with pytest.raises(EdgeresError) as err:
            import_model(**{"arch": "mobilenet_v2", "weights": plain_weights, "resolutions": RES,
                            "out": tmp_path / "x", "data": DATA, **TINY, **kwargs})
        assert "\n" not in str(err.value) and not (tmp_path / "x").exists()
        return str(err.value)

    assert "does not fit the architecture" in fails(arch="resnet18", width_mult=1.0)
    assert "5 classes" in fails(num_classes=5)
    assert "weights file not found" in fails(weights=str(tmp_path / "nope.pth"))
    assert "IMAGENET1K_V1" in fails(weights="NOT_A_WEIGHTS_NAME")
    import urllib.error

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-hub"))  # no cached download either
    assert "needs internet" in fails(weights="IMAGENET1K_V1", small_input=False, width_mult=1.0)


def test_cli_import_and_python_finetune(plain_weights, tmp_path):
    from click.testing import CliRunner

    from edgeres.cli import cli
    args = ["import", "--arch", "mobilenet_v2", "--data", DATA, "--weights", str(plain_weights), "--width-mult", "0.25",
            "--small-input", "--res", "12,28", "--val-limit", "32", "--calib-images", "64", "--out", str(tmp_path / "c")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "checkpoint:" in result.stdout and "12 px" in result.stdout
    tuned = import_model("mobilenet_v2", plain_weights, (28, 12), tmp_path / "t", data=DATA, calib_images=64, val_limit=32,
                         finetune_epochs=1, finetune_options={"train_limit": 128, "val_limit": 32, "progress": False},
                         **TINY)
    _, info, _ = load_checkpoint(tuned)
    assert info.training["mode"] == "rsnet" and info.training["init"] == str(tmp_path / "t")
    assert info.training["imported"]["recalibrated"] is True
    assert info.ensemble_weights is not None and set(info.metrics) == {"28", "12"}
