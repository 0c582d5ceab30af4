"""Toy training runs on a few hundred fashion-mnist-mini images with MobileNetV2 x0.25 (small input)."""
import json
import math

import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from edgeres.cli import cli  # noqa: E402
from edgeres.errors import EdgeresError  # noqa: E402
from edgeres.train import TrainConfig, train  # noqa: E402
from edgeres.train import loop as train_loop  # noqa: E402

TOY = dict(arch="mobilenet_v2", width_mult=0.25, small_input=True, res=(16, 28), epochs=1, batch_size=64,
           train_limit=256, val_limit=64, crop_scale=(0.5, 1.0), progress=False)


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "rs"
    return train(TrainConfig(out=str(out), holdout=64, **TOY))


def test_toy_run_writes_a_checkpoint_that_eval_reads(toy_checkpoint):
    meta = json.loads((toy_checkpoint / "checkpoint.json").read_text())
    assert meta["resolutions"] == [28, 16]
    assert set(meta["metrics"]) == {"28", "16"} and all(0 <= m["top1"] <= m["top5"] <= 100
                                                         for m in meta["metrics"].values())
    weights = meta["ensemble_weights"]
    assert len(weights) == 2 and math.isclose(sum(weights), 1.0, abs_tol=1e-3)
    assert meta["training"]["mode"] == "rsnet" and meta["training"]["lr"] == 0.03
    assert meta["training"]["holdout"] == 64 and meta["training"]["train_images"] == 256
    log = [json.loads(line) for line in (toy_checkpoint / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and set(log[0]["loss"]) == {"ce", "ens", "dis", "total"}
    assert set(log[0]["top1_holdout"]) == {"28", "16"} and log[0]["img_per_s"] > 0
    assert not train_loop.state_dir(toy_checkpoint).exists()
    result = CliRunner().invoke(cli, ["eval", str(toy_checkpoint), "--limit", "32"])
    assert result.exit_code == 0, result.output
    assert "28" in result.stdout and "16" in result.stdout


def test_lr_schedule_warms_up_then_follows_a_cosine():
    factors = [train_loop.lr_factor(s, 2, 6) for s in range(6)]
    assert factors[:2] == [0.5, 1.0]
    # after warm-up: 0.5 (1 + cos(pi k / 4)) for k = 0..3 -> 1, 0.854, 0.5, 0.146
    assert factors[2:] == pytest.approx([1.0, 0.8535534, 0.5, 0.1464466])
    assert train_loop.lr_factor(99, 2, 6) == 0.0


def test_resume_reaches_exactly_the_uninterrupted_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file
    config = dict(TOY, epochs=2, train_limit=128, val_limit=32)
    straight = train(TrainConfig(out=str(tmp_path / "straight"), **config))

    original = train_loop._Trainer._save_resume

    def interrupt_after_first_epoch(self):
        original(self)
        raise KeyboardInterrupt  # as if the user pressed Ctrl-C after epoch 1

    monkeypatch.setattr(train_loop._Trainer, "_save_resume", interrupt_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "resumed"), **config))
    monkeypatch.setattr(train_loop._Trainer, "_save_resume", original)
    assert not (tmp_path / "resumed").exists() and (tmp_path / "resumed.resume" / "resume.pt").is_file()
    resumed = train(TrainConfig(out=str(tmp_path / "resumed"), resume=True, **config))
    a, b = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta_a, meta_b = (json.loads((p / "checkpoint.json").read_text()) for p in (straight, resumed))
    assert meta_a["ensemble_weights"] == meta_b["ensemble_weights"] and meta_a["metrics"] == meta_b["metrics"]
    assert len((resumed / "train_log.jsonl").read_text().splitlines()) == 2


def _one_line_error(tmp_path, **overrides):
    out = tmp_path / "out"
    with pytest.raises(EdgeresError) as err:
        train(TrainConfig(out=str(out), **{**TOY, **overrides}))
    assert "\n" not in str(err.value)
    assert not out.exists() and not train_loop.state_dir(out).exists()
    return str(err.value)


def test_bad_inputs_fail_in_one_line_before_training(tmp_path, toy_checkpoint):
    plain = dict(width_mult=1.0, small_input=False)  # the other torchvision models have neither
    assert "list_models()" in _one_line_error(tmp_path, arch="resnet9000", **plain)
    assert "has no BatchNorm2d" in _one_line_error(tmp_path, arch="squeezenet1_1", **plain)
    empty = tmp_path / "empty"
    for split in ("train", "val"):
        (empty / split / "cat").mkdir(parents=True)
    assert "no images" in _one_line_error(tmp_path, data=str(empty))
    assert "neither a built-in dataset" in _one_line_error(tmp_path, data=str(tmp_path / "missing"))
    assert "lq:w2a2" in _one_line_error(tmp_path, quant="int3")
    assert "different" not in _one_line_error(tmp_path, mode="nope")
    assert "--resume" in _one_line_error(tmp_path, resume=True)


def test_init_with_a_class_count_mismatch_fails(tmp_path, toy_checkpoint):
    import numpy as np
    from PIL import Image
    data = tmp_path / "three"
    for split in ("train", "val"):
        for cls in ("a", "b", "c"):
            (data / split / cls).mkdir(parents=True)
            Image.fromarray(np.zeros((28, 28, 3), np.uint8)).save(data / split / cls / "0.png")
    message = _one_line_error(tmp_path, data=str(data), init=str(toy_checkpoint))
    assert "10 classes" in message and "3" in message


def test_config_file_sets_train_options_and_individual_mode(tmp_path):
    config = tmp_path / "train.toml"
    config.write_text('[train]\nmode = "individual"\narch = "mobilenet_v2"\nwidth_mult = 0.25\nsmall_input = true\n'
                      'res = [28, 16]\nepochs = 1\nbatch_size = 64\ntrain_limit = 128\nval_limit = 32\n'
                      'crop_scale = "0.5,1"\nlr = 0.02\nprogress = false\n')
    out = tmp_path / "inets"
    result = CliRunner().invoke(cli, ["--config", str(config), "train", "--out", str(out)])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"28", "16"}
    meta = json.loads((out / "individual-16" / "checkpoint.json").read_text())
    assert meta["resolutions"] == [16] and meta["training"]["lr"] == 0.02 and meta["arch"]["width_mult"] == 0.25
    assert meta["ensemble_weights"] is None and "16 px" in result.stdout


def test_quantized_run_starts_from_a_full_precision_checkpoint(tmp_path, toy_checkpoint):
    pytest.importorskip("edgeres.models.lq")
    from safetensors.torch import load_file
    config = dict(TOY, train_limit=64, val_limit=16, epochs=1, lr=1e-9, warmup_epochs=0.0, holdout=0)
    out = train(TrainConfig(out=str(tmp_path / "lq"), quant="lq:w2a2", init=str(toy_checkpoint), **config))
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["arch"]["quant"] == "w2a2"
    fp, q = load_file(toy_checkpoint / "model.safetensors"), load_file(out / "model.safetensors")
    assert any("quantizer" in k for k in q) and not any("quantizer" in k for k in fp)
    conv = next(k for k in fp if k.endswith("features.0.0.weight"))
    assert torch.allclose(fp[conv], q[conv], atol=1e-6)  # copied, then barely moved at lr 1e-9
