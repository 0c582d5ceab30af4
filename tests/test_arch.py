"""The --arch grammar and ArchSpec (torch-free), the timm extra gate and the --help text that documents them."""
import pytest
from click.testing import CliRunner

from edgeres.arch import (
    ArchSpec,
    arch_code_trusted,
    arch_kind,
    parse_arch_kwargs,
    trusting_arch_code,
)
from edgeres.cli import cli
from edgeres.errors import EdgeresError, EdgeresUsageError


def test_one_grammar_names_three_kinds():
    assert [arch_kind(a) for a in ("resnet101", "regnet_y_400mf", "timm:resnet10t", "timm:vit_tiny.augreg",
                                   "my_pkg.nets:build", "nets:Factory.create")] == \
        ["torchvision", "torchvision", "timm", "timm", "factory", "factory"]
    for bad in ("ResNet18", "my pkg:build", "pkg:", ":build", "a:b:c", ""):
        with pytest.raises(EdgeresError, match="is not understood: NAME: any torchvision") as err:
            arch_kind(bad)
        assert "\n" not in str(err.value)


def test_spec_round_trips_kwargs_and_names_files_safely():
    spec = ArchSpec("my_pkg.nets:build", 10, 1, kwargs={"width": 8, "blocks": [2, 2]})
    assert ArchSpec.from_json(spec.to_json()) == spec and spec.kind == "factory"
    assert spec.slug == "my_pkg.nets-build" and ArchSpec("timm:resnet10t", 5).slug == "timm-resnet10t"
    old = {"name": "resnet18", "num_classes": 10, "in_channels": 1, "width_mult": 1.0, "small_input": True,
           "quant": None}  # a checkpoint.json written before kwargs existed
    assert ArchSpec.from_json(old).kwargs == {}


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="mobilenet_v3_small", num_classes=10, width_mult=0.5), "has no --width-mult"),
    (dict(name="timm:resnet10t", num_classes=10, small_input=True), "--small-input adapts the stems of"),
    (dict(name="resnet18", num_classes=10, kwargs={"bad key": 1}), "JSON object of keyword arguments"),
    (dict(name="resnet18", num_classes=10, kwargs={"x": float("nan")}), "not plain JSON"),
])
def test_spec_errors_are_one_line(kwargs, message):
    with pytest.raises(EdgeresError, match=message) as err:
        ArchSpec(**kwargs)
    assert "\n" not in str(err.value)


def test_arch_kwargs_are_a_json_object():
    assert parse_arch_kwargs('{"width_mult": 0.5, "dropout": 0.0}') == {"width_mult": 0.5, "dropout": 0.0}
    assert parse_arch_kwargs(None) == {}
    for text in ("{width: 1}", "[1, 2]", "3"):
        with pytest.raises(EdgeresUsageError, match="--arch-kwargs"):
            parse_arch_kwargs(text)


def test_factory_code_is_trusted_only_when_said_so():
    factory, timm = ArchSpec("nets:build", 10), ArchSpec("timm:resnet10t", 10)
    assert arch_code_trusted(timm) and not arch_code_trusted(factory)
    assert arch_code_trusted(factory, True) and arch_code_trusted(factory, "nets:build")
    assert not arch_code_trusted(factory, "other:build")
    with trusting_arch_code("nets:build"):
        assert arch_code_trusted(factory) and not arch_code_trusted(ArchSpec("nets:other", 10))
    with trusting_arch_code("nets:build", "nets:other"):  # several names: those, and no other
        assert arch_code_trusted(factory) and arch_code_trusted(ArchSpec("nets:other", 10))
        assert not arch_code_trusted(ArchSpec("nets:third", 10))
    with trusting_arch_code():
        assert arch_code_trusted(ArchSpec("nets:other", 10))
    assert not arch_code_trusted(factory)


def test_timm_absent_is_one_line_naming_the_extra(block_modules):
    pytest.importorskip("torch")
    from edgeres.models import build_plain
    block_modules("timm")
    with pytest.raises(EdgeresError, match=r"needs timm, .*pip install 'edgeres\[timm\]'") as err:
        build_plain(ArchSpec("timm:resnet10t", 10))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("command", ["import", "train"])
def test_help_documents_the_grammar(command):
    result = CliRunner().invoke(cli, [command, "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for phrase in ("any torchvision classification model", "timm:NAME", "pip install 'edgeres[timm]'",
                   "module.path:factory", "--arch-kwargs"):
        assert phrase in text, phrase
