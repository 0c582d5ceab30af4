import json
import pickle

import pytest
import torch

from edgeres.errors import EdgeresError
from edgeres.manifests.checkpoint import CheckpointInfo
from edgeres.models import at_resolution
from edgeres.models.checkpoint import (
    load_checkpoint,
    load_state_dict_file,
    save_checkpoint,
)

from .conftest import TINY_RES


@pytest.fixture
def saved(tmp_path, tiny_rsnet, tiny_spec):
    info = CheckpointInfo(tiny_spec, TINY_RES, (0.286,), (0.353,), 1.0, "fashion-mnist-mini",
                          ensemble_weights=(0.5, 0.3, 0.2), metrics={"28": {"top1": 50.0, "top5": 90.0}})
    return save_checkpoint(tmp_path / "ckpt", tiny_rsnet, info), tiny_rsnet, info


def test_round_trip_from_directory_alone_gives_identical_outputs(saved):
    directory, model, info = saved
    loaded, loaded_info, sha = load_checkpoint(directory)
    assert loaded_info == info and len(sha) == 64
    for res in TINY_RES + (24,):  # 24 is interpolated
        x = torch.randn(2, 1, res, res)
        with torch.no_grad(), at_resolution(model, res), at_resolution(loaded, res):
            assert torch.equal(loaded(x), model(x))


def test_checkpoint_json_carries_what_rebuilds_the_model(saved):
    meta = json.loads((saved[0] / "checkpoint.json").read_text())
    assert meta["kind"] == "checkpoint" and meta["format_version"] == 1
    assert meta["resolutions"] == [28, 20, 12] and meta["num_classes"] == 10 and meta["in_channels"] == 1
    assert meta["arch"] == {"name": "mobilenet_v2", "num_classes": 10, "in_channels": 1, "width_mult": 0.25,
                            "small_input": True, "quant": None, "kwargs": {}}
    assert meta["weights"]["file"] == "model.safetensors" and len(meta["weights"]["sha256"]) == 64


def test_altered_json_fails_with_one_line(saved):
    path = saved[0] / "checkpoint.json"
    meta = json.loads(path.read_text())
    meta["arch"]["num_classes"] = 12
    path.write_text(json.dumps(meta))
    with pytest.raises(EdgeresError) as err:
        load_checkpoint(saved[0])
    assert "does not fit the architecture" in str(err.value) and "\n" not in str(err.value)


def test_truncated_weights_fail_with_one_line(saved):
    weights = saved[0] / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(EdgeresError, match="modified or truncated"):
        load_checkpoint(saved[0])


def test_json_pointing_outside_the_directory_is_refused(saved):
    path = saved[0] / "checkpoint.json"
    meta = json.loads(path.read_text())
    meta["weights"]["file"] = "../../etc/passwd"
    path.write_text(json.dumps(meta))
    with pytest.raises(EdgeresError, match="escapes"):
        load_checkpoint(saved[0])


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def test_pickle_payload_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"w": _Payload()}, protocol=2))
    with pytest.raises(EdgeresError, match="refused for safety: it holds pickled Python objects") as refused:
        load_state_dict_file(path)
    assert not (tmp_path / "PWNED").exists()
    assert "state_dict" in str(refused.value) and "weights_only" not in str(refused.value)


def test_not_a_checkpoint_directory(tmp_path):
    with pytest.raises(EdgeresError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path)


def test_failed_save_leaves_nothing(tmp_path, tiny_rsnet, tiny_spec, monkeypatch):
    info = CheckpointInfo(tiny_spec, TINY_RES, (0.286,), (0.353,))
    import safetensors.torch
    monkeypatch.setattr(safetensors.torch, "save_file", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ckpt", tiny_rsnet, info)
    assert list(tmp_path.iterdir()) == []
