"""Every manifest kind: a round trip through its writer and typed reader, and tampered copies that each give
one EdgeresError line naming the problem (not a traceback in whichever stage meets the field first)."""
import copy
import json

import pytest

from edgeres import __version__
from edgeres.errors import EdgeresError
from edgeres.manifests._base import FORMAT_VERSIONS, write_manifest
from edgeres.manifests.bench import read_bench
from edgeres.manifests.build import read_build
from edgeres.manifests.checkpoint import read_checkpoint_info
from edgeres.manifests.choose import read_cascade, read_select
from edgeres.manifests.export import read_export

NORM = {"normalization": {"mean": [0.5], "std": [0.25]}, "eval_crop_ratio": 0.875}
GRAPH = {"resolution": 28, "file": "g28.onnx", "sha256": "a" * 64, "bytes": 10, "macs": 1000, "params": 10,
         "input": {"name": "input", "shape": [1, 1, 28, 28]}, "output": {"name": "logits", "shape": [1, 10]}}
ARTIFACT = {"target": "ort-int8", "resolution": 28, "file": "ort-int8/g28.onnx", "sha256": "b" * 64, "bytes": 5,
            "backend": "ort", "precision": "int8", "macs": 1000, "params": 10,
            "accuracy": {"top1": 81.5, "top5": 99.0, "count": 500, "measured_with": "onnxruntime-cpu"}}
ROW = {"target": "ort-int8", "resolution": 28, "batch": 1, "backend": "ort", "stats": {"p50": 0.2, "p90": 0.3}}
DEPLOYMENT = {"target": "ort-int8", "resolution": 28, "latency_ms": 0.2, "top1": 81.5}

BODIES = {
    "checkpoint": {"arch": {"name": "mobilenet_v2", "num_classes": 10, "in_channels": 1}, "resolutions": [28, 12],
                   **NORM, "data": "fashion-mnist-mini", "classes": [str(i) for i in range(10)],
                   "ensemble_weights": [0.6, 0.4], "metrics": {"28": {"top1": 80.0}}, "training": {}},
    "export": {"checkpoint": {"path": "ck", "sha256": "c" * 64}, "data": "fashion-mnist-mini", "classes": ["a", "b"],
               **NORM, "opset": 17, "graphs": [GRAPH], "switchable": None},
    "build": {"export": {"path": "e", "sha256": "d" * 64}, "checkpoint": {"path": None}, "data": "fashion-mnist-mini",
              "classes": ["a", "b"], **NORM, "artifacts": [ARTIFACT]},
    "bench": {"device": "cpu", "rows": [ROW]},
    "cascade": {"source": {"path": "../build.json", "target": "ort-fp32"}, "stages": [{"resolution": 12},
                {"resolution": 28}], "confidence": "max-softmax", "max_drop": 0.5, "thresholds": [0.8],
                "report_split": "val-report", "rows": [{"method": "cascade", "top1": 80.0, "mean_latency_ms": 0.1,
                                                        "mean_macs": 500.0}]},
    "select": {"statistic": "p50", "budgets": {"ms": 0.5}, "chosen": DEPLOYMENT, "front": [DEPLOYMENT],
               "candidates": [DEPLOYMENT], "without_accuracy": []},
}
READERS = {"checkpoint": read_checkpoint_info, "export": read_export, "build": read_build, "bench": read_bench,
           "cascade": read_cascade, "select": read_select}


def write(tmp_path, kind: str, body: dict):
    directory = tmp_path / kind
    write_manifest(directory / f"{kind}.json", kind, body)
    return directory


def set_path(body: dict, path: tuple, value) -> dict:
    """A deep copy of `body` with body[path] = value (value ... deletes the key)."""
    out = copy.deepcopy(body)
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is ...:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


def test_round_trips(tmp_path):
    info = read_checkpoint_info(write(tmp_path, "checkpoint", BODIES["checkpoint"]))
    assert (info.resolutions, info.std, info.eval_crop_ratio, info.ensemble_weights) == ((28, 12), (0.25,), 0.875,
                                                                                          (0.6, 0.4))
    export = read_export(write(tmp_path, "export", BODIES["export"]))
    assert export.graphs[0].file == (tmp_path / "export" / "g28.onnx").resolve()
    assert (export.graphs[0].input.shape, export.preprocessing.mean, export.opset) == ((1, 1, 28, 28), (0.5,), 17)
    build = read_build(write(tmp_path, "build", BODIES["build"]))
    assert (build.artifacts[0].target, build.artifacts[0].accuracy["top1"], build.classes) == ("ort-int8", 81.5,
                                                                                               ("a", "b"))
    assert read_bench(write(tmp_path, "bench", BODIES["bench"]))["rows"][0]["stats"]["p50"] == 0.2
    cascade = read_cascade(write(tmp_path, "cascade", BODIES["cascade"]))
    assert cascade.source == (tmp_path / "build.json").resolve() and cascade.thresholds == (0.8,) and cascade.resolutions == (12, 28)
    assert read_select(write(tmp_path, "select", BODIES["select"]))["chosen"]["target"] == "ort-int8"


COMMON = [  # (label, kind-independent tamper of the whole file)
    ("wrong kind", lambda kind, raw: {**raw, "kind": "bench" if kind != "bench" else "build"}, "is not a"),
    ("future version", lambda kind, raw: {**raw, "format_version": FORMAT_VERSIONS[kind] + 1}, "format_version"),
    ("not an object", lambda kind, raw: [raw], "is not a"),
]
FIELDS = {  # kind -> [(field path, bad value or ... to delete, expected message part)]
    "checkpoint": [(("eval_crop_ratio",), 0, "outside"), (("classes",), "shirt", "type str"),
                   (("classes",), [1, 2], "list of strings"),
                   (("ensemble_weights",), ["a", 1], "not a finite number"), (("normalization",), ..., "missing"),
                   (("normalization", "std"), [0.0], "outside"), (("resolutions",), "28", "type str")],
    "export": [(("graphs",), ..., "missing"), (("graphs", 0, "resolution"), "28", "type str"),
               (("eval_crop_ratio",), 1.5, "outside"), (("graphs", 0, "file"), "../../etc/passwd", "escapes"),
               (("normalization", "mean"), [float("nan")], "not a finite number"),
               (("graphs", 0, "input", "shape"), "1x28", "not a list of sizes")],
    "build": [(("artifacts", 0, "backend"), "cuda", "not one of"), (("artifacts", 0, "accuracy", "top1"), 101.0,
              "outside"), (("export",), ..., "missing"), (("artifacts", 0, "macs"), -1, "below"),
              (("classes",), {"a": 1}, "type dict"), (("artifacts",), [3], "must be an object")],
    "bench": [(("rows",), ..., "missing"), (("rows", 0, "stats", "p50"), "fast", "type str"),
              (("rows", 0, "batch"), 0, "below"), (("rows", 0, "stats", "p50"), float("inf"), "not a finite"),
              (("rows", 0, "target"), None, "type NoneType")],
    "cascade": [(("thresholds",), [0.8, 0.9], "need 1 thresholds"), (("thresholds", 0), 1.5, "outside"),
                (("source",), ..., "missing"), (("max_drop",), -1, "outside"), (("rows", 0, "top1"), "high",
                                                                              "type str")],
    "select": [(("budgets", "ms"), 0, "outside"), (("front",), ..., "missing"), (("chosen", "resolution"), 0,
               "below"), (("candidates", 0, "top1"), 120, "outside"), (("statistic",), 5, "type int")],
}
CASES = [(kind, f"{label}", tamper, None, part) for kind in BODIES for label, tamper, part in COMMON] + [
    (kind, "/".join(map(str, path)), None, (path, value), part) for kind, fields in FIELDS.items()
    for path, value, part in fields]


@pytest.mark.parametrize("kind, label, tamper, field, part", CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_tampered_manifest_is_one_line(tmp_path, kind, label, tamper, field, part):
    raw = {"kind": kind, "format_version": FORMAT_VERSIONS[kind], "edgeres_version": __version__, **BODIES[kind]}
    raw = tamper(kind, raw) if tamper else set_path(raw, *field)
    (tmp_path / f"{kind}.json").write_text(json.dumps(raw))  # NaN/Infinity too: a tamperer need not be strict
    with pytest.raises(EdgeresError) as err:
        READERS[kind](tmp_path)
    assert part in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_every_kind_has_at_least_five_tampered_cases():
    assert all(sum(c[0] == kind for c in CASES) >= 5 for kind in BODIES)
