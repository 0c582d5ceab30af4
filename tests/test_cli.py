import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgeres.cli import COMMANDS, cli


@pytest.mark.parametrize("command", [[]] + [[name] for name in COMMANDS])
def test_help_for_every_command(command):
    result = CliRunner().invoke(cli, command + ["--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


def test_user_error_is_one_line_exit_1(tmp_path):
    result = CliRunner().invoke(cli, ["eval", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.strip().count("\n") == 0 and "not a checkpoint directory" in result.stderr


def test_bad_usage_exits_2():
    assert CliRunner().invoke(cli, ["eval"]).exit_code == 2
    assert CliRunner().invoke(cli, ["nosuchcommand"]).exit_code == 2


DEVICE_SIDE = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # import raises ImportError, as if not installed
from click.testing import CliRunner
from edgeres.cli import COMMANDS, cli
import edgeres.data, edgeres.manifests, edgeres.evaluate, edgeres.manifests.checkpoint
for name in [[]] + [[c] for c in COMMANDS]:
    result = CliRunner().invoke(cli, name + ["--help"])
    assert result.exit_code == 0, (name, result.output)
for module in {modules!r}:
    __import__(module)
assert "torch" not in [m for m in sys.modules if sys.modules[m] is not None and m.split(".")[0] == "torch"]
print("ok")
"""


def device_side_modules() -> list[str]:
    """Modules the Jetson side imports; later stages add theirs (bench, report, build)."""
    import importlib.util
    names = ["edgeres.cli", "edgeres.data", "edgeres.manifests._base", "edgeres._io", "edgeres.evaluate",
             "edgeres.bench", "edgeres.report", "edgeres.build", "edgeres.choose.select", "edgeres.choose.cascade",
             "edgeres.build.lowbit", "edgeres.build.trt", "edgeres.runtimes.trt"]
    return [n for n in names if importlib.util.find_spec(n) is not None]


@pytest.mark.parametrize("blocked", [("tensorrt", "pycuda"), ("torch", "torchvision", "tensorrt", "pycuda")])
def test_commands_and_device_side_import_without_optional_extras(blocked):
    code = DEVICE_SIDE.format(blocked=blocked, modules=device_side_modules())
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_torch_command_without_torch_says_how_to_install(tmp_path):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgeres.cli import main; sys.argv = ['edgeres', 'eval', %r]; main()") % str(tmp_path)
    (tmp_path / "checkpoint.json").write_text("{}")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "pip install 'edgeres[train]'" in run.stderr and run.stderr.strip().count("\n") == 0
