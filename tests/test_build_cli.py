"""`edgeres build`'s TensorRT flags reach build()'s options, and malformed ones are usage errors."""
import pytest
from click.testing import CliRunner

from edgeres.cli import cli


@pytest.fixture
def captured(monkeypatch, tmp_path):
    seen = {}

    def fake_build(export_dir, out, targets, **kwargs):
        seen.update(kwargs, targets=targets)
        return {"artifacts": []}
    monkeypatch.setattr("edgeres.build.build", fake_build)
    (tmp_path / "exp").mkdir()
    return seen, str(tmp_path / "exp")


def test_trt_flags_become_build_options(captured):
    seen, export = captured
    args = ["build", export, "--target", "trt-int8", "--trt-version", "10.3", "--profile-batches", "1,4,16",
            "--trt-int8-mix", "fp16", "--workspace-mib", "512", "--eval-images", "all"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert seen["options"] == {"trt_version": "10.3", "profile_batches": [1, 4, 16], "trt_int8_mix": "fp16",
                               "workspace_mib": 512}
    assert seen["eval_images"] is None and seen["targets"] == ["trt-int8"]


def test_without_trt_flags_the_options_are_empty_and_defaults_stated(captured):
    seen, export = captured
    assert CliRunner().invoke(cli, ["build", export, "--target", "ort-int8"]).exit_code == 0
    assert seen["options"] == {} and seen["eval_images"] == 500 and seen["calib_images"] == 128


@pytest.mark.parametrize("flag, value", [("--trt-version", "ten"), ("--trt-version", "10"),
                                         ("--profile-batches", "0,8"), ("--profile-batches", "1,x"),
                                         ("--trt-int8-mix", "int4"), ("--workspace-mib", "0")])
def test_malformed_trt_flags_exit_2_in_one_line(captured, flag, value):
    seen, export = captured
    done = CliRunner().invoke(cli, ["build", export, "--target", "trt-int8", flag, value])
    assert done.exit_code == 2 and "Traceback" not in done.output and not seen
