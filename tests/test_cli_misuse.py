"""What a demanding new user tries, through the CLI: bad inputs, tampered files, interruptions.

The promise, checked for every case: an error the user can fix is ONE stderr line (Click's own usage block
counts as one) and no traceback; exit 2 for a bad command line, 1 for everything else; nothing partial is
left and every file that existed before is byte-identical (the whole workspace is hashed before and after).
Interruptions are real signals sent to a real `python -m edgeres` while it writes files.

Everything is tiny and made once for the module: a MobileNetV2 x0.25 checkpoint at 16/12 px, its export,
an ort-fp32 + ort-int8 build, a bench report and a cascade.
"""
import hashlib
import json
import logging
import os
import pickle
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

torch = pytest.importorskip("torch")
from click.testing import CliRunner

from edgeres import _optional
from edgeres.cli import cli
from edgeres.errors import EdgeresError, Interrupted

from .conftest import randomize_bn

REPO = Path(__file__).resolve().parents[1]
RES = (16, 12)
TYPED_READERS = "typed manifest readers (lead)"


# ---------------------------------------------------------------- the workspace, made once

@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("misuse")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _make_pipeline(root)
        _make_data(root)
        _make_user_files(root)
        _make_tampered(root)
    finally:
        torch.set_num_threads(threads)
    return root


def _make_pipeline(root: Path) -> None:
    from edgeres.bench import bench
    from edgeres.build import build
    from edgeres.choose.compare import evaluate_cascade
    from edgeres.data import open_images
    from edgeres.export import export
    from edgeres.manifests.checkpoint import CheckpointInfo
    from edgeres.models import ArchSpec, build_rsnet
    from edgeres.models.checkpoint import save_checkpoint
    spec = ArchSpec("mobilenet_v2", 10, in_channels=1, width_mult=0.25, small_input=True)
    torch.manual_seed(0)
    model = build_rsnet(spec, RES)
    randomize_bn(model)
    classes = open_images("fashion-mnist-mini", "val").info.classes
    info = CheckpointInfo(spec, RES, (0.2860,), (0.3530,), 1.0, "fashion-mnist-mini", classes,
                          ensemble_weights=(0.5, 0.5))
    save_checkpoint(root / "ck", model.eval(), info)
    export(root / "ck", root / "exp", verify_images=2)
    build(root / "exp", root / "bld", ["ort-fp32", "ort-int8"], calib_images=8, eval_images=20)
    bench(root / "bld", min_time_s=0.01, min_runs=3, warmup=1, out=root / "bld" / "bench")
    evaluate_cascade(root / "bld", max_drop=5, target="ort-fp32", limit=10, out=root / "bld" / "cascade")
    shutil.copytree(root / "exp", root / "stale")  # a build inside its export dir, then a re-export
    build(root / "stale", root / "stale", ["ort-fp32"], evaluate=False)
    _edit_json(root / "stale" / "export.json", lambda d: d["checkpoint"].update(sha256="f" * 64))


def _make_data(root: Path) -> None:
    from PIL import Image
    for split in ("train", "val"):  # 10 RGB classes: the class count fits, the channels do not
        for c in range(10):
            (root / "rgb" / split / f"c{c}").mkdir(parents=True)
            Image.new("RGB", (8, 8), (20 * c, 9, 9)).save(root / "rgb" / split / f"c{c}" / "a.png")
    for name in ("broken", "bomb"):  # 2 RGB classes, 4 images each, one bad training image
        for split in ("train", "val"):
            for cls in ("a", "b"):
                (root / name / split / cls).mkdir(parents=True)
                for i in range(4):
                    Image.new("RGB", (8, 8), (30 * i, 60, 90)).save(root / name / split / cls / f"{i}.png")
    (root / "broken" / "train" / "b" / "9.png").write_bytes(b"\x89PNG not really")
    (root / "bomb" / "train" / "b" / "9.png").write_bytes(_bomb_png(30_000, 30_000))
    (root / "noval" / "train" / "a").mkdir(parents=True)  # train/ alone, no val/
    Image.new("RGB", (8, 8)).save(root / "noval" / "train" / "a" / "0.png")


def _bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height pixels (0.9 Gpx), a few bytes on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').write_text('x')",))


def _make_user_files(root: Path) -> None:
    (root / "notes").mkdir()
    (root / "notes" / "notes.txt").write_text("my notes")
    (root / "notes" / "photo.jpg").write_bytes(os.urandom(256))
    (root / "user.json").write_text('{"mine": 1}\n')
    (root / "user.md").write_text("# my page\n")
    (root / "evil.pth").write_bytes(pickle.dumps({"w": _Payload()}, protocol=2))
    (root / "garbage.safetensors").write_bytes(b"\x00" * 64)
    torch.save({"foo": torch.zeros(1)}, root / "wrong.pt")
    configs = {"unknown_key": "[train]\nepochz = 3\n", "unknown_table": "[trian]\nepochs = 3\n",
               "broken": "[train\n", "wrong_type": '[train]\nepochs = "many"\n', "empty_res": '[eval]\nres = ""\n'}
    for name, text in configs.items():
        (root / f"{name}.toml").write_text(text)
    bench_json = json.loads((root / "bld" / "bench" / "bench.json").read_text())
    nothing = json.loads(json.dumps(bench_json))
    for row in nothing["rows"]:
        row["target"] = "trt-fp16"
    (root / "base_nothing.json").write_text(json.dumps(nothing))
    (root / "base_malformed.json").write_text(json.dumps({"kind": "bench", "format_version": 1}))
    (root / "base_broken.json").write_text("{not json")


def _make_tampered(root: Path) -> None:
    for name, edit in (("ck_crop0", lambda d: d.update(eval_crop_ratio=0)),
                       ("ck_classes", lambda d: d.update(classes=5)),
                       ("ck_alpha", lambda d: d.update(ensemble_weights=["high", "low"]))):
        shutil.copytree(root / "ck", root / name)
        _edit_json(root / name / "checkpoint.json", edit)
    shutil.copytree(root / "ck", root / "ck_cut")
    weights = root / "ck_cut" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    shutil.copytree(root / "exp", root / "exp_crop0")
    _edit_json(root / "exp_crop0" / "export.json", lambda d: d.update(eval_crop_ratio=0))
    shutil.copytree(root / "bld", root / "bld_range")
    cache = min((root / "bld_range" / "calib").glob("*.minmax.json"))
    _edit_json(cache, lambda d: d["ranges"].update({next(iter(d["ranges"])): [1.0]}))
    (root / "half.resume").mkdir()
    torch.save({"epoch": 1}, root / "half.resume" / "resume.pt")


def _edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------- the promise, as assertions

def snapshot(*roots: Path) -> dict[str, str]:
    """path -> sha256 (or 'dir') of everything under `roots`, hidden entries included."""
    tree = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            tree[str(path)] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return tree


def error_lines(stderr: str) -> list[str]:
    """The error lines of stderr; Click's usage block (Usage/Try/Error) counts as one error line."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    if lines and lines[0].startswith("Usage:"):
        rest = lines[1:]
        rest = rest[1:] if rest and rest[0].startswith("Try ") else rest
        return ["(usage) " + " ".join(rest)] if len(rest) == 1 and rest[0].startswith("Error:") else lines
    return lines


def check_promise(code: int, stderr: str, expected_code: int, words: str, before: dict, after: dict) -> None:
    assert "Traceback" not in stderr, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1, f"expected one error line, got {len(lines)}:\n{stderr}"
    assert words in lines[0], lines[0]
    assert code == expected_code, (code, lines[0])
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    assert not changed, f"changed: {changed}"
    assert before.keys() == after.keys(), f"gone: {sorted(before.keys() - after.keys())}, " \
                                          f"new: {sorted(after.keys() - before.keys())}"


def invoke(argv: list[str], capfd) -> tuple[int, str]:
    """Run the CLI in-process as a user's shell would see it: log records, Python warnings and C-level
    stderr (ONNX Runtime, worker processes) all count; an exception escaping is a traceback."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    root.handlers = []  # let cli's logging.basicConfig install its stderr handler as in a real run
    capfd.readouterr()
    try:
        with warnings.catch_warnings():
            warnings.resetwarnings()  # Python's own defaults, not pytest's
            for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
                warnings.simplefilter("ignore", category)
            warnings.showwarning = warnings._showwarning_orig
            result = CliRunner().invoke(cli, argv)
    finally:
        root.handlers, root.level = handlers, level
    stderr = result.stderr + capfd.readouterr().err
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback
        stderr += "".join(traceback.format_exception(result.exception))
    return result.exit_code, stderr


# ---------------------------------------------------------------- the table

@dataclass(frozen=True)
class Case:
    id: str
    argv: str  # {ws} = the shared workspace, {case} = this case's own directory
    code: int
    words: str  # must appear in the one error line
    setup: Callable[[Path, Path], None] | None = None  # (ws, case) -> files this case needs
    xfail: str | None = None
    marks: tuple = field(default=())


def copy(name: str, to: str | None = None):
    return lambda ws, case: shutil.copytree(ws / name, case / (to or name))


TOY_TRAIN = "--data fashion-mnist-mini --width-mult 0.25 --small-input --res 16,12 --epochs 1 --train-limit 64 " \
            "--val-limit 16 --batch-size 16 --no-progress"
IMPORT = "import --arch mobilenet_v2 --width-mult 0.25 --small-input --data fashion-mnist-mini --res 16,12 " \
         "--calib-images 8 --val-limit 8"
FAST_BENCH = "--min-time 0.01 --min-runs 2 --warmup 0 --target ort-fp32 --res 12"
USAGE = "(usage)"

CASES = [
    # train: --out, devices, option values, data, resume
    Case("train-out-user-dir", f"train {TOY_TRAIN} --out {{ws}}/notes", 1, "holds no checkpoint.json"),
    Case("train-out-cwd", f"train {TOY_TRAIN} --out .", 1, "is the current directory"),
    Case("train-out-file", f"train {TOY_TRAIN} --out {{ws}}/user.json", 2, USAGE),
    Case("train-device-tpu", f"train {TOY_TRAIN} --device tpu --out {{case}}/rs", 2, "not a training device"),
    Case("train-device-cuda", f"train {TOY_TRAIN} --device cuda --out {{case}}/rs", 1, "no CUDA GPU is visible",
         marks=(pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),)),
    Case("train-res-empty", f"train {TOY_TRAIN} --res '' --out {{case}}/rs", 2, "is empty"),
    Case("train-res-tiny", f"train {TOY_TRAIN} --res 4 --out {{case}}/rs", 2, "outside the supported range"),
    Case("train-res-word", f"train {TOY_TRAIN} --res 16,abc --out {{case}}/rs", 2, "is not an integer"),
    Case("train-epochs-0", f"train {TOY_TRAIN} --epochs 0 --out {{case}}/rs", 2, USAGE),
    Case("train-lr-negative", f"train {TOY_TRAIN} --lr -1 --out {{case}}/rs", 2, USAGE),
    Case("train-lr-nan", f"train {TOY_TRAIN} --lr nan --out {{case}}/rs", 2, "not a finite number"),
    Case("train-lr-inf", f"train {TOY_TRAIN} --lr inf --out {{case}}/rs", 2, "not a finite number"),
    Case("train-crop-reversed", f"train {TOY_TRAIN} --crop-scale 0.9,0.1 --out {{case}}/rs", 2, "crop scale"),
    Case("train-crop-word", f"train {TOY_TRAIN} --crop-scale big --out {{case}}/rs", 2, USAGE),
    Case("train-warmup-long", f"train {TOY_TRAIN} --warmup-epochs 5 --out {{case}}/rs", 2, "warm-up"),
    Case("train-smoothing-1", f"train {TOY_TRAIN} --label-smoothing 1 --out {{case}}/rs", 2, USAGE),
    Case("train-batch-1", f"train {TOY_TRAIN} --batch-size 1 --out {{case}}/rs", 2, USAGE),
    Case("train-data-missing", f"train {TOY_TRAIN} --data {{ws}}/nowhere --out {{case}}/rs", 1,
         "neither a built-in dataset"),
    Case("train-data-empty", f"train {TOY_TRAIN} --data '' --out {{case}}/rs", 2, "is empty"),
    Case("train-data-no-val", f"train {TOY_TRAIN} --data {{ws}}/noval --out {{case}}/rs", 1, "no class folders"),
    Case("train-corrupt-image-worker", f"train {TOY_TRAIN} --data {{ws}}/broken --workers 1 --batch-size 4 "
         "--out {case}/rs", 1, "cannot read image"),
    Case("train-decompression-bomb", f"train {TOY_TRAIN} --data {{ws}}/bomb --batch-size 4 --out {{case}}/rs", 1,
         "too large to decode safely"),
    Case("train-holdout-all", f"train {TOY_TRAIN} --holdout 100000 --out {{case}}/rs", 1, "leaves no training"),
    Case("train-init-missing", f"train {TOY_TRAIN} --init {{ws}}/nowhere --out {{case}}/rs", 2, USAGE),
    Case("train-resume-none", f"train {TOY_TRAIN} --resume --out {{case}}/rs", 1, "no resume file"),
    Case("train-resume-no-fields", f"train {TOY_TRAIN} --resume --out {{ws}}/half", 1, "resume"),
    Case("config-unknown-key", f"--config {{ws}}/unknown_key.toml train {TOY_TRAIN} --out {{case}}/rs", 2,
         "unknown key(s) epochz in [train]; valid keys:"),
    Case("config-unknown-table", "--config {ws}/unknown_table.toml train --out {case}/rs", 2, "unknown table"),
    Case("config-not-toml", "--config {ws}/broken.toml train --out {case}/rs", 2, "not valid TOML"),
    Case("config-wrong-type", "--config {ws}/wrong_type.toml train --out {case}/rs", 2, USAGE),
    Case("config-empty-res", "--config {ws}/empty_res.toml eval {ws}/ck --limit 4", 2, "is empty"),
    Case("config-missing", "--config {ws}/nowhere.toml train --out {case}/rs", 2, "not found"),
    # import
    Case("import-out-user-dir", f"{IMPORT} --weights {{ws}}/wrong.pt --out {{ws}}/notes", 1, "holds no checkpoint.json"),
    Case("import-pickle", f"{IMPORT} --weights {{ws}}/evil.pth --out {{case}}/imp", 1, "refused for safety"),
    Case("import-garbage", f"{IMPORT} --weights {{ws}}/garbage.safetensors --out {{case}}/imp", 1,
         "cannot load weights"),
    Case("import-wrong-keys", f"{IMPORT} --weights {{ws}}/wrong.pt --out {{case}}/imp", 1,
         "does not fit the architecture"),
    Case("import-missing", f"{IMPORT} --weights {{ws}}/nowhere.pt --out {{case}}/imp", 1, "not found"),
    Case("import-res-empty", "import --arch mobilenet_v2 --weights {ws}/wrong.pt --res '' --out {case}/imp", 2,
         "is empty"),
    Case("import-calib-0", f"{IMPORT} --weights {{ws}}/wrong.pt --calib-images 0 --out {{case}}/imp", 2, USAGE),
    # eval
    Case("eval-rgb-checkpoint", "eval {ws}/ck --data {ws}/rgb", 1, "3-channel images"),
    Case("eval-rgb-onnx", "eval {ws}/exp --data {ws}/rgb", 1, "3-channel images"),
    Case("eval-json-over-checkpoint", "eval {ws}/ck --limit 4 --json {ws}/ck/checkpoint.json", 1,
         "name of the checkpoint stage's manifest"),
    Case("eval-json-over-build", "eval {ws}/bld --limit 4 --json {ws}/bld/build.json", 1,
         "name of the build stage's manifest"),
    Case("eval-json-new-manifest-name", "eval {ws}/ck --limit 4 --json {case}/export.json", 1,
         "name of the export stage's manifest"),
    Case("eval-json-over-user-file", "eval {ws}/ck --limit 4 --json {ws}/user.json", 1,
         "not an earlier edgeres eval result"),
    Case("eval-json-dir", "eval {ws}/ck --limit 4 --json {ws}/notes", 2, USAGE),
    Case("eval-res-outside", "eval {ws}/ck --res 40 --limit 4", 1, "outside the trained range"),
    Case("eval-res-empty", "eval {ws}/ck --res '' --limit 4", 2, "is empty"),
    Case("eval-limit-0", "eval {ws}/ck --limit 0", 2, USAGE),
    Case("eval-split-test", "eval {ws}/ck --split test", 2, USAGE),
    Case("eval-not-a-checkpoint", "eval {ws}/notes", 1, "not a checkpoint directory"),
    Case("eval-cut-weights", "eval {ws}/ck_cut --limit 4", 1, "modified or truncated"),
    Case("eval-lone-onnx", "eval {case}/x.onnx", 1, "not listed in a build.json/export.json",
         setup=lambda ws, case: shutil.copy(next((ws / "exp").glob("*.onnx")), case / "x.onnx")),
    Case("eval-stale-build", "eval {ws}/stale --limit 4", 1, "is stale"),
    Case("eval-tampered-crop-ratio", "eval {ws}/ck_crop0 --limit 4", 1, "eval_crop_ratio"),
    Case("eval-tampered-classes", "eval {ws}/ck_classes --limit 4", 1, "classes"),
    Case("eval-tampered-ensemble", "eval {ws}/ck_alpha --limit 4", 1, "ensemble_weights"),
    Case("eval-tampered-export-crop", "eval {ws}/exp_crop0 --limit 4", 1, "eval_crop_ratio"),
    # export
    Case("export-out-user-dir", "export {ws}/ck --out {ws}/notes --verify-images 2", 1, "holds no export.json"),
    Case("export-out-checkpoint", "export {ws}/ck --out {ws}/ck --verify-images 2", 1, "holds no export.json"),
    Case("export-out-file", "export {ws}/ck --out {ws}/user.json", 2, USAGE),
    Case("export-res-empty", "export {ws}/ck --res '' --out {case}/e", 2, "is empty"),
    Case("export-res-outside", "export {ws}/ck --res 40 --out {case}/e", 1, "outside the trained range"),
    Case("export-opset", "export {ws}/ck --opset 9 --out {case}/e", 2, "--opset 9"),
    Case("export-verify-0", "export {ws}/ck --verify-images 0 --out {case}/e", 2, USAGE),
    Case("export-rgb", "export {ws}/ck --data {ws}/rgb --out {case}/e", 1, "3-channel images"),
    Case("export-missing", "export {ws}/nowhere --out {case}/e", 1, "not a checkpoint directory"),
    # build
    Case("build-target-unknown", "build {ws}/exp --target nope --out {case}/b", 2, "unknown build target"),
    Case("build-second-target-unknown", "build {ws}/exp --target ort-fp32 --target nope --out {case}/bld", 2,
         "unknown build target", setup=copy("bld")),
    Case("build-trt-without-tensorrt", "build {ws}/exp --target trt-fp16 --out {case}/b", 1, "TensorRT",
         marks=(pytest.mark.skipif(_optional.available("tensorrt"), reason="TensorRT is installed here"),)),
    Case("build-out-user-dir", "build {ws}/exp --target ort-fp32 --out {ws}/notes", 1, "holds no build.json"),
    Case("build-calib-rgb", "build {ws}/exp --target ort-int8 --calib-data {ws}/rgb --out {case}/bld", 1,
         "3-channel images", setup=copy("bld")),
    Case("build-recalibrate-fails", "build {ws}/exp --target ort-int8 --recalibrate --calib-data {ws}/rgb "
         "--out {case}/bld", 1, "3-channel images", setup=copy("bld")),
    Case("build-eval-rgb", "build {ws}/exp --target ort-fp32 --data {ws}/rgb --out {case}/b", 1, "3-channel images"),
    Case("build-res-empty", "build {ws}/exp --target ort-fp32 --res '' --out {case}/b", 2, "is empty"),
    Case("build-res-absent", "build {ws}/exp --target ort-fp32 --res 20 --out {case}/b", 1, "has no graph at"),
    Case("build-calib-method", "build {ws}/exp --target ort-int8 --calib-method best --out {case}/b", 2, USAGE),
    Case("build-eval-images-0", "build {ws}/exp --target ort-fp32 --eval-images 0 --out {case}/b", 2, USAGE),
    Case("build-eval-images-word", "build {ws}/exp --target ort-fp32 --eval-images some --out {case}/b", 2, USAGE),
    Case("build-graph-changed", "build {case}/exp --target ort-fp32 --out {case}/b", 1, "changed since export",
         setup=lambda ws, case: (copy("exp")(ws, case),
                                 next((case / "exp").glob("*.onnx")).write_bytes(b"changed"))),
    Case("build-tampered-calib-range", "build {ws}/exp --target ort-int8 --calib-images 8 --no-eval "
         "--out {case}/bld_range", 1, "calibration cache", setup=copy("bld_range")),
    # bench
    Case("bench-baseline-malformed", f"bench {{ws}}/bld {FAST_BENCH} --baseline {{ws}}/base_malformed.json "
         "--out {case}/b", 1, "field 'rows' is missing"),
    Case("bench-baseline-not-json", f"bench {{ws}}/bld {FAST_BENCH} --baseline {{ws}}/base_broken.json "
         "--out {case}/b", 1, "is not valid JSON"),
    Case("bench-baseline-compares-nothing", f"bench {{ws}}/bld {FAST_BENCH} --baseline {{ws}}/base_nothing.json "
         "--out {case}/b", 1, "would compare nothing"),
    Case("bench-out-user-dir", f"bench {{ws}}/bld {FAST_BENCH} --out {{ws}}/notes", 1, "holds no bench.json"),
    Case("bench-out-build-dir", f"bench {{ws}}/bld {FAST_BENCH} --out {{ws}}/bld", 1, "holds no bench.json"),
    Case("bench-batch-0", f"bench {{ws}}/bld {FAST_BENCH} --batch 0 --out {{case}}/b", 2, USAGE),
    Case("bench-batch-word", f"bench {{ws}}/bld {FAST_BENCH} --batch x --out {{case}}/b", 2, USAGE),
    Case("bench-res-empty", "bench {ws}/bld --res '' --out {case}/b", 2, "is empty"),
    Case("bench-target-absent", "bench {ws}/bld --target int8-qdq --out {case}/b", 1, "no target int8-qdq"),
    Case("bench-device-cuda", "bench {ws}/bld --device cuda --out {case}/b", 1, "--device cuda needs",
         marks=(pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),)),
    Case("bench-device-cuda-torch", "bench {ws}/bld --device cuda --backend torch --out {case}/b", 1,
         "--backend torch needs PyTorch with a CUDA device",
         marks=(pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU"),)),
    Case("bench-min-time-nan", "bench {ws}/bld --min-time nan --out {case}/b", 2, "not a finite number"),
    Case("bench-max-regression-nan", f"bench {{ws}}/bld {FAST_BENCH} --baseline {{ws}}/bld/bench/bench.json "
         "--max-regression nan --out {case}/b", 2, "not a finite number"),
    Case("bench-stale-build", "bench {ws}/stale --out {case}/b", 1, "is stale"),
    # cascade
    Case("cascade-max-drop-nan", "cascade {ws}/bld --max-drop nan --out {case}/c", 2, "not a finite number"),
    Case("cascade-max-drop-inf", "cascade {ws}/bld --max-drop inf --out {case}/c", 2, "not a finite number"),
    Case("cascade-max-drop-negative", "cascade {ws}/bld --max-drop -1 --out {case}/c", 2, USAGE),
    Case("cascade-margin-negative", "cascade {ws}/bld --margin-se -1 --out {case}/c", 2, USAGE),
    Case("cascade-cost-tolerance-negative", "cascade {ws}/bld --cost-tolerance -0.1 --out {case}/c", 2, USAGE),
    Case("cascade-cost-tolerance-nan", "cascade {ws}/bld --cost-tolerance nan --out {case}/c", 2, "not a finite number"),
    Case("cascade-block-zero", "cascade {ws}/bld --block 0 --out {case}/c", 2, USAGE),
    Case("cascade-margin-nan", "cascade {ws}/bld --margin-se nan --out {case}/c", 2, "not a finite number"),
    Case("cascade-out-user-dir", "cascade {ws}/bld --target ort-fp32 --out {ws}/notes", 1, "holds no cascade.json"),
    Case("cascade-target-absent", "cascade {ws}/bld --target int8-qdq --out {case}/c", 1, "has no target"),
    Case("cascade-rgb", "cascade {ws}/exp --data {ws}/rgb --limit 4 --out {case}/c", 1, "3-channel images"),
    Case("cascade-limit-1", "cascade {ws}/bld --limit 1 --out {case}/c", 2, USAGE),
    Case("cascade-stale-build", "cascade {ws}/stale --out {case}/c", 1, "is stale"),
    # select
    Case("select-markdown-over-build", "select {ws}/bld/bench/bench.json --markdown {ws}/bld/build.json", 1,
         "name of the build stage's manifest"),
    Case("select-json-over-export", "select {ws}/bld/bench/bench.json --json {ws}/exp/export.json", 1,
         "name of the export stage's manifest"),
    Case("select-json-over-user-file", "select {ws}/bld/bench/bench.json --json {ws}/user.json", 1,
         "not an earlier edgeres select result"),
    Case("select-markdown-over-user-file", "select {ws}/bld/bench/bench.json --markdown {ws}/user.md", 1,
         "not an earlier edgeres select result"),
    Case("select-budget-0", "select {ws}/bld/bench/bench.json --budget-ms 0", 2, USAGE),
    Case("select-budget-nan", "select {ws}/bld/bench/bench.json --budget-ms nan", 2, "not a finite number"),
    Case("select-nothing-fits", "select {ws}/bld/bench/bench.json --budget-ms 0.000001", 1, "nothing fits"),
    Case("select-not-bench", "select {ws}/exp/export.json", 1, "is not a bench manifest"),
    Case("select-build-user-dir", "select {ws}/bld/bench/bench.json --build {ws}/notes", 1,
         "has neither build.json nor export.json"),
    # report
    Case("report-out-user-dir", "report {ws}/bld/bench/bench.json --out {ws}/notes", 1, "holds no report.md"),
    Case("report-not-bench", "report {ws}/exp/export.json --out {case}/r", 1, "is not a bench manifest"),
    Case("report-cascade-not-cascade", "report {ws}/bld/bench/bench.json --cascade {ws}/bld/build.json "
         "--out {case}/r", 1, "is not a cascade.json"),
    Case("report-out-file", "report {ws}/bld/bench/bench.json --out {ws}/user.json", 2, USAGE),
    # demo and the group
    Case("demo-out-user-dir", "demo --toy --out {ws}/notes", 1, "holds no checkpoint/checkpoint.json"),
    Case("demo-epochs-0", "demo --toy --epochs 0 --out {case}/d", 2, USAGE),
    Case("no-such-command", "trian --out {case}/rs", 2, USAGE),
]


def _params() -> list:
    params = []
    for case in CASES:
        marks = list(case.marks)
        if case.xfail:
            marks.append(pytest.mark.xfail(strict=True, reason=case.xfail))
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_misuse(case: Case, ws: Path, tmp_path: Path, capfd, monkeypatch):
    import shlex
    own, here = tmp_path / "ws", tmp_path / "case"  # a hard-linked copy: one case cannot spoil the next
    shutil.copytree(ws, own, copy_function=os.link)
    here.mkdir()
    if case.setup:
        case.setup(own, here)
    monkeypatch.chdir(here)
    before = snapshot(own, here)
    code, stderr = invoke(shlex.split(case.argv.format(ws=own, case=here)), capfd)
    check_promise(code, stderr, case.code, case.words, before, snapshot(own, here))
    assert not (here / "PWNED").exists()


def test_the_table_is_large_and_covers_every_command():
    from edgeres.cli import COMMANDS
    assert len(CASES) >= 60
    commands = {c.argv.split()[2] if c.argv.startswith("--config") else c.argv.split()[0] for c in CASES}
    assert set(COMMANDS) <= commands


# ---------------------------------------------------------------- interruptions: real signals, real processes

def _spawn(argv: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "edgeres", *argv], cwd=cwd, env=env, text=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _signal_when(proc: subprocess.Popen, ready: Callable[[], bool], sig: int, timeout: float = 180) -> tuple[int, str]:
    """Send `sig` as soon as `ready()` (files are being written), then collect exit status and stderr."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the command ended (rc {proc.returncode}) before it was interrupted:\n{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the command never reached the point to interrupt")
        time.sleep(0.01)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr


def _staged(parent: Path, name: str, inside: str = "") -> Callable[[], bool]:
    """True once a staging directory of `name` (".<name>.<pid>-*.tmp") holds files matching `inside`."""
    def ready() -> bool:
        return any(not inside or next(tmp.glob(inside), None) is not None for tmp in parent.glob(f".{name}.*.tmp"))
    return ready


def _leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.glob(f".{name}.*"))


def _interrupt_export(ws, case):
    shutil.copytree(ws / "exp", case / "exp")
    argv = ["export", str(ws / "ck"), "--out", str(case / "exp"), "--verify-images", "200"]
    return argv, _staged(case, "exp", "*.onnx"), case / "exp"


def _interrupt_build(ws, case):
    shutil.copytree(ws / "bld", case / "bld")
    argv = ["build", str(ws / "exp"), "--out", str(case / "bld"), "--target", "ort-fp32", "--target", "ort-int8",
            "--recalibrate", "--calib-images", "400", "--eval-images", "400"]
    old = {p.name: p.stat().st_ino for p in (case / "bld" / "ort-fp32").iterdir()}

    def rebuilt_fp32() -> bool:  # the copy starts as hard links of the old build: wait for a new file in it
        try:
            return any(p.name in old and p.stat().st_ino != old[p.name]
                       for tmp in case.glob(".bld.*.tmp") for p in tmp.glob("ort-fp32/*.onnx"))
        except FileNotFoundError:  # replaced or removed while we looked
            return False
    return argv, rebuilt_fp32, case / "bld"


def _interrupt_train(ws, case):
    # -q: the per-epoch progress lines (INFO) would otherwise precede the one error line
    argv = ["-q", "train", *TOY_TRAIN.split(), "--epochs", "50", "--out", str(case / "rs")]
    return argv, lambda: (case / "rs.resume" / "resume.pt").is_file(), case / "rs"


def _interrupt_bench(ws, case):
    argv = ["bench", str(ws / "bld"), "--min-time", "60", "--target", "ort-fp32", "--res", "12", "--out",
            str(case / "b")]
    staged = _staged(case, "b")

    def measuring() -> bool:  # the staging dir exists from the start; give the timed runs a moment
        if not staged():
            return False
        time.sleep(0.3)
        return True
    return argv, measuring, case / "b"


INTERRUPTS = {"export": _interrupt_export, "build": _interrupt_build, "train": _interrupt_train,
              "bench": _interrupt_bench}


@pytest.mark.parametrize("stage, sig", [("export", signal.SIGINT), ("export", signal.SIGTERM),
                                        ("build", signal.SIGINT), ("build", signal.SIGTERM),
                                        ("train", signal.SIGINT), ("bench", signal.SIGTERM)])
def test_interrupted_run_leaves_everything_as_it_was(stage, sig, ws, tmp_path):
    argv, ready, out = INTERRUPTS[stage](ws, tmp_path)
    before = snapshot(ws, tmp_path)
    code, stderr = _signal_when(_spawn(argv, tmp_path), ready, sig)
    after = snapshot(ws, tmp_path)
    if stage == "train":  # the resume state of the finished epochs is kept on purpose (--resume continues)
        after = {k: v for k, v in after.items() if "/rs.resume" not in k}
    check_promise(code, stderr, 128 + sig, f"interrupted by {signal.Signals(sig).name}", before, after)
    assert _leftovers(tmp_path, out.name) == []


def _interrupt(sig):
    return Interrupted(sig) if sig == signal.SIGTERM else KeyboardInterrupt()


def _import_failed_from(interrupt, chained_by: str):
    """What a signal that lands while `import onnxruntime` initialises its C module looks like (seen in CI):
    ImportError raised from the interrupt (`from`), or while handling it (context only)."""
    if chained_by == "cause":
        raise ImportError("initialization failed") from interrupt
    try:
        raise interrupt
    except KeyboardInterrupt:
        raise ImportError("initialization failed")  # noqa: B904 - the implicit context is the case under test


def _loader_wrapping(interrupt):
    """A handler that turns any failure to load a user's file into a one-line error (models.checkpoint)."""
    try:
        _import_failed_from(interrupt, "cause")
    except Exception:  # noqa: BLE001
        raise EdgeresError("cannot load weights from w.safetensors (initialization failed)") from None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("shape", ["cause", "context", "wrapped"])
def test_a_signal_during_an_extension_import_is_an_interrupt_not_a_traceback(sig, shape, tmp_path, capfd,
                                                                            monkeypatch):
    def importing_ort(*_args, **_kwargs):
        _loader_wrapping(_interrupt(sig)) if shape == "wrapped" else _import_failed_from(_interrupt(sig), shape)
    monkeypatch.setattr("edgeres.export.export", importing_ort)
    code, stderr = invoke(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")], capfd)
    check_promise(code, stderr, 128 + sig, f"interrupted by {signal.Signals(sig).name}", {}, {})


def test_an_import_error_without_an_interrupt_keeps_its_traceback(tmp_path, capfd, monkeypatch):
    def broken(*_args, **_kwargs):
        raise ImportError("initialization failed")
    monkeypatch.setattr("edgeres.export.export", broken)
    code, stderr = invoke(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")], capfd)
    assert code == 1 and "Traceback" in stderr and "ImportError: initialization failed" in stderr


def test_a_cleanup_that_fails_during_an_interrupt_keeps_its_traceback(tmp_path, capfd, monkeypatch):
    # "outputs are as they were" would be untrue: the failure is a bug of its own, not the interrupt
    def failing_rollback(*_args, **_kwargs):
        try:
            raise Interrupted(signal.SIGTERM)
        finally:
            raise OSError("rollback of the staging directory failed")  # noqa: B012
    monkeypatch.setattr("edgeres.export.export", failing_rollback)
    code, stderr = invoke(["export", str(tmp_path / "ckpt"), "--out", str(tmp_path / "out")], capfd)
    assert code == 1 and "Traceback" in stderr and "OSError: rollback" in stderr
    assert "interrupted by" not in stderr


@pytest.mark.parametrize("stage", ["export", "build"])
def test_killed_run_keeps_the_old_output_and_the_next_run_clears_its_temporaries(stage, ws, tmp_path, capfd):
    argv, ready, out = INTERRUPTS[stage](ws, tmp_path)
    before = snapshot(ws, tmp_path)
    code, _ = _signal_when(_spawn(argv, tmp_path), ready, signal.SIGKILL)
    assert code == -signal.SIGKILL
    left = _leftovers(tmp_path, out.name)
    assert left and all(name.endswith(".tmp") for name in left)  # the staging copy of the dead process
    assert {k: v for k, v in snapshot(ws, tmp_path).items() if f"/.{out.name}." not in k} == before
    rerun = argv[:argv.index("--out") + 2] + (["--target", "ort-fp32"] if stage == "build" else ["--verify-images", "2"])
    code, stderr = invoke(rerun, capfd)
    assert code == 0, stderr
    assert _leftovers(tmp_path, out.name) == []


# ---------------------------------------------------------------- artifacts that travel

def test_moved_build_and_cascade_work_from_their_new_place(ws, tmp_path, capfd):
    from edgeres.choose.cascade import CascadeRunner
    shutil.copytree(ws / "bld", tmp_path / "host" / "bld")
    moved = shutil.move(tmp_path / "host" / "bld", tmp_path / "device" / "bld")
    shutil.rmtree(tmp_path / "host")
    for manifest in ("build.json", "bench/bench.json", "cascade/cascade.json"):
        text = (moved / manifest).read_text()
        assert str(ws) not in text and str(tmp_path) not in text, manifest  # nothing absolute
    build = json.loads((moved / "build.json").read_text())
    caches = [row["calibration"]["cache"] for row in build["artifacts"] if row["calibration"]]
    assert caches and all((moved / c).is_file() for c in caches)
    code, stderr = invoke(["eval", str(moved), "--limit", "8"], capfd)
    assert code == 0, stderr
    code, stderr = invoke(["bench", str(moved), "--min-time", "0.01", "--min-runs", "2", "--warmup", "0",
                           "--out", str(tmp_path / "b")], capfd)
    assert code == 0, stderr
    runner = CascadeRunner.from_cascade_json(moved / "cascade" / "cascade.json")
    assert all(Path(s.path).is_relative_to(moved.resolve()) for s in runner.stages)
    from edgeres.data import open_images
    assert runner(open_images("fashion-mnist-mini", "val").image(0)).resolution in RES


@pytest.mark.parametrize("probe", ["require", "available", "arch"])
def test_an_interrupted_optional_import_stays_an_interrupt(probe, monkeypatch):
    # not "pip install torch" or "cannot import": the module is there, the user stopped the run while it loaded
    from edgeres.models.rsnet import resolve_factory

    def interrupted_import(_name):
        raise ImportError("initialization failed") from Interrupted(signal.SIGTERM)
    monkeypatch.setattr(_optional.importlib, "import_module", interrupted_import)  # the one importlib module
    with pytest.raises(Interrupted):
        {"require": lambda: _optional.require("torch", "training"), "available": lambda: _optional.available("torch"),
         "arch": lambda: resolve_factory("my_models:build")}[probe]()

