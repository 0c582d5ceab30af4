"""The target table: names, the LQ-Net family's lazy builders, prerequisites, one-line unknown-name errors."""
import sys

import pytest

from edgeres.build.targets import (
    TARGETS,
    get_target,
    lq_bits,
    resolve_builder,
    with_prerequisites,
)
from edgeres.errors import EdgeresError


def test_table_names_backends_and_precisions():
    assert {n: (t.backend, t.precision) for n, t in TARGETS.items() if n in ("ort-int8", "int8-qdq", "trt-fp16")} == {
        "ort-int8": ("ort", "int8 (U8 act / S8 w)"), "int8-qdq": ("ort", "int8 (S8 act / S8 w)"),
        "trt-fp16": ("trt", "fp16")}


@pytest.mark.parametrize("name, bits", [("lq-w2a2", (2, 2)), ("lq-w2a32", (2, 32)), ("trt-lq-w4a4", (4, 4))])
def test_lq_family_resolves_lazily(name, bits, monkeypatch):
    monkeypatch.delitem(sys.modules, "edgeres.build.lowbit", raising=False)  # other tests may have built LQ
    target = get_target(name)
    assert lq_bits(name) == bits and "edgeres.build.lowbit" not in sys.modules
    assert target.builder == ("edgeres.build.trt:build_engine" if name.startswith("trt-") else
                              "edgeres.build.lowbit:build_lq")
    assert target.needs == (name[4:] if name.startswith("trt-") else None)


@pytest.mark.parametrize("name", ["lq-w9a2", "lq-w2a16", "int4", "ORT-INT8", ""])
def test_unknown_names_list_the_valid_ones_in_one_line(name):
    with pytest.raises(EdgeresError) as err:
        get_target(name)
    assert "\n" not in str(err.value) and "ort-int8" in str(err.value) and "lq-w2a2" in str(err.value)


def test_prerequisites_come_first_once():
    assert [t.name for t in with_prerequisites(["trt-int8", "int8-qdq", "trt-lq-w2a2"])] == [
        "int8-qdq", "trt-int8", "lq-w2a2", "trt-lq-w2a2"]


def test_builders_import_without_tensorrt(block_modules):
    block_modules("tensorrt", "pycuda")
    for target in TARGETS.values():
        assert callable(resolve_builder(target))
