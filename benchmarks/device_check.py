"""Check edgeres' TensorRT path on a Jetson (JetPack) or an x86 GPU host with TensorRT, in under 10 minutes, and
write one JSON report to attach to a bug report.

    python benchmarks/device_check.py                  # -> device-check/device_check.json
    python benchmarks/device_check.py --torch-cuda     # GPU host without TensorRT: the torch CUDA part only

Steps, each recorded as ok / failed / skipped with its seconds and details:
  versions   python, edgeres, tensorrt, pycuda, onnxruntime, polygraphy, torch; the device and its power mode
  tests      pytest tests/test_trt.py tests/test_trt_offline.py tests/test_trt_rules.py (the real-device tests run)
  rsnet      a small RS-Net (MobileNetV2 x0.25, 28/16 px, 1 epoch on 256 bundled images; `train --device cuda`
             when torch sees a GPU), exported static (batch 1) and with a dynamic batch
  build      trt-fp16 and trt-int8 engines for both exports (their graphs pass edgeres' TensorRT rules first)
  compare    every engine against ONNX Runtime on the graph it was built from, 64 real images, through
             Polygraphy's Comparator (its TensorRT runner) and through edgeres' own TensorRT runner
  bench      batch 1 and 8, device time from CUDA events (`edgeres bench --device cuda|jetson`); a static-batch
             engine at batch 8 is skipped by design
  trtexec    the trtexec line written beside each engine, run as written but saving into a scratch folder
Off a device it exits 1 with one line saying what is missing. `bench --backend torch --device cuda` does not
exist in edgeres (the eager runner is CPU-only); the torch CUDA path covered is training.
"""
import argparse
import json
import platform
import shlex
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's edgeres, installed or not

BUDGET_S = 540.0  # stop starting new steps after 9 minutes: the whole check stays under 10
RES = (28, 16)
TOLERANCES = {"trt-fp16": (2e-2, 2e-2), "trt-int8": (0.5, 0.1)}  # (atol, rtol) on logits vs ONNX Runtime


def main() -> int:
    args = parse_args()
    missing = what_is_missing(args.torch_cuda)
    if missing:
        sys.stderr.write(f"{missing}\n")
        return 1
    check = Check(Path(args.out), time.monotonic())
    check.step("versions", versions_and_device)
    out = check.out
    if args.torch_cuda:
        check.step("rsnet", lambda: small_rsnet(out))
        return check.finish()
    check.step("tests", run_tests)
    check.step("rsnet", lambda: small_rsnet(out))
    check.step("build", lambda: build_engines(out), needs="rsnet")
    for name, fn in (("compare", compare), ("bench", bench), ("trtexec", run_trtexec)):
        check.step(name, lambda fn=fn: fn(out), needs="build")
    return check.finish()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="device-check", help="scratch folder and report (default: device-check)")
    parser.add_argument("--torch-cuda", action="store_true", help="only the torch CUDA part (no TensorRT needed)")
    return parser.parse_args()


def what_is_missing(torch_only: bool) -> str | None:
    """One line for a machine this check cannot run on, else None."""
    if torch_only:
        try:
            import torch
        except ImportError:
            return "device_check --torch-cuda: needs torch with CUDA, but torch is not importable: pip install torch"
        return None if torch.cuda.is_available() else "device_check --torch-cuda: needs a CUDA GPU that torch can see"
    from edgeres.runtimes.trt import cuda_available
    missing = cuda_available()
    if missing:
        return (f"device_check: needs TensorRT, pycuda and a CUDA device, but {missing}: run it on a Jetson with "
                "JetPack or an x86 GPU host with TensorRT (pip install 'edgeres[trt]'); --torch-cuda checks torch only")
    return None


class Check:
    """Runs steps in order, records each, stops starting new ones past the time budget, writes the report."""

    def __init__(self, out: Path, start: float):
        self.out, self.start, self.steps, self.state = out, start, [], {}
        out.mkdir(parents=True, exist_ok=True)

    def step(self, name: str, fn, needs: str | None = None) -> None:
        began = time.monotonic()
        if needs and not any(r["name"] == needs and r["status"] == "ok" for r in self.steps):
            record = {"status": "skipped", "detail": f"needs the {needs} step, which did not succeed"}
        elif began - self.start > BUDGET_S:
            record = {"status": "skipped", "detail": f"time budget of {BUDGET_S:.0f} s used up"}
        else:
            try:
                detail = fn()
                flags = {k: detail.pop(k, None) for k in ("_failed", "_skipped")} if isinstance(detail, dict) else {}
                status = "failed" if flags.get("_failed") else "skipped" if flags.get("_skipped") else "ok"
                record = {"status": status, "detail": detail}
            except Exception as exc:  # noqa: BLE001 - the report must say what broke and go on
                record = {"status": "failed", "error": f"{type(exc).__name__}: {exc}",
                          "traceback": traceback.format_exc()[-4000:]}
        record = {"name": name, **record, "seconds": round(time.monotonic() - began, 1)}
        self.steps.append(record)
        print(f"{name:<9} {record['status']:<7} {record['seconds']:>6.1f} s  {one_line(record)}", flush=True)

    def finish(self) -> int:
        from edgeres._io import write_json
        counts = {s: sum(r["status"] == s for r in self.steps) for s in ("ok", "failed", "skipped")}
        report = {"kind": "device_check", "seconds": round(time.monotonic() - self.start, 1), "summary": counts,
                  "steps": self.steps}
        path = write_json(self.out / "device_check.json", report)
        print(f"wrote {path}: attach it to a bug report ({counts['ok']} ok, {counts['failed']} failed, "
              f"{counts['skipped']} skipped)")
        return 1 if counts["failed"] else 0


def one_line(record: dict) -> str:
    text = record.get("error") or json.dumps(record.get("detail"), default=str)
    return text if len(text) < 110 else text[:107] + "..."


def versions_and_device() -> dict:
    import importlib
    found = {"python": platform.python_version(), "machine": platform.machine()}
    for module in ("edgeres", "tensorrt", "pycuda", "onnxruntime", "polygraphy", "onnx", "numpy", "torch"):
        try:
            found[module] = getattr(importlib.import_module(module), "__version__", "?")
        except ImportError:
            found[module] = None
    from edgeres.bench.power import missing_jetson_tools, power_state
    from edgeres.runtimes.trt import device_name
    found["device"] = device_name()
    found["jetson"] = missing_jetson_tools() is None
    found["power_state"] = power_state() if found["jetson"] else None
    found["torch_cuda"] = _torch_cuda()
    found["trtexec"] = shutil.which("trtexec") or _jetpack_trtexec()
    return found


def _torch_cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def _jetpack_trtexec() -> str | None:
    path = Path("/usr/src/tensorrt/bin/trtexec")  # where JetPack puts it, off PATH
    return str(path) if path.is_file() else None


def run_tests() -> dict:
    tests = ["tests/test_trt.py", "tests/test_trt_offline.py", "tests/test_trt_rules.py"]
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *tests], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    tail = run.stdout.strip().splitlines()[-12:]
    return {"_failed": run.returncode != 0, "returncode": run.returncode, "tail": tail}


def small_rsnet(out: Path) -> dict:
    """Train a small RS-Net (on CUDA when torch sees it) and export it static and with a dynamic batch."""
    from edgeres.export import export
    from edgeres.train import TrainConfig, train
    device = "cuda" if _torch_cuda() else "cpu"
    began = time.monotonic()
    checkpoint = train(TrainConfig(out=str(out / "checkpoint"), data="fashion-mnist-mini", arch="mobilenet_v2",
                                   res=RES, width_mult=0.25, small_input=True, epochs=1, lr=0.01, train_limit=256,
                                   batch_size=64, val_limit=200, crop_scale=(0.5, 1.0), progress=False,
                                   device=device))
    train_s = time.monotonic() - began
    metrics = json.loads((Path(checkpoint) / "checkpoint.json").read_text()).get("metrics")
    export(checkpoint, out / "static", resolutions=RES)
    export(checkpoint, out / "dynamic", resolutions=RES[-1:], dynamic_batch=True)
    return {"train_device": device, "train_s": round(train_s, 1), "metrics": metrics}


def build_engines(out: Path) -> dict:
    from edgeres.build import build
    rows = {}
    for kind in ("static", "dynamic"):
        manifest = build(out / kind, out / kind, ["trt-fp16", "trt-int8"], calib_images=128, eval_images=500)
        rows[kind] = [{k: r.get(k) for k in ("target", "resolution", "file", "accuracy", "accuracy_note",
                                             "precision_mix", "profile", "tensorrt")}
                      for r in manifest["artifacts"]]
    return rows


def engines(out: Path):
    """(kind, build.json row, the ONNX it was built from) for every engine of the check."""
    for kind in ("static", "dynamic"):
        manifest = json.loads((out / kind / "build.json").read_text())
        for row in manifest["artifacts"]:
            if row["backend"] == "trt":
                yield kind, row, Path(row["source"]), out / kind


def real_batches(build_dir: Path, row: dict, count: int = 64):
    from edgeres.data import eval_batches, open_images
    manifest = json.loads((build_dir / "build.json").read_text())
    norm, images = manifest["normalization"], open_images(manifest["data"], "val")
    batch = row["input"]["shape"][0] if isinstance(row["input"]["shape"][0], int) else 8
    for i, (x, _) in enumerate(eval_batches(images, row["resolution"], norm["mean"], norm["std"],
                                            manifest["eval_crop_ratio"], batch)):
        if i * batch >= count:
            return
        yield x


def compare(out: Path) -> dict:
    """Each engine vs ONNX Runtime: Polygraphy's Comparator (its TensorRT runner), then edgeres' runner."""
    from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner
    from polygraphy.comparator import Comparator, CompareFunc
    from polygraphy.logger import G_LOGGER
    G_LOGGER.module_severity = G_LOGGER.WARNING  # the report carries the verdicts

    from edgeres.runtimes.trt import TrtRunner as EdgeresTrtRunner
    results, failed = {}, False
    for kind, row, source, build_dir in engines(out):
        name = row["input"]["name"]
        feeds = [{name: x} for x in real_batches(build_dir, row)]
        atol, rtol = TOLERANCES[row["target"]] if row["target"] in TOLERANCES else TOLERANCES["trt-int8"]
        runners = [OnnxrtRunner(SessionFromOnnx(str(source))),
                   TrtRunner(EngineFromBytes((build_dir / row["file"]).read_bytes()))]
        run = Comparator.run(runners, data_loader=feeds)
        same = bool(Comparator.compare_accuracy(run, compare_func=CompareFunc.simple(atol=atol, rtol=rtol)))
        ours = EdgeresTrtRunner(build_dir / row["file"])
        reference = [next(iter(it.values())) for it in run[0][1]]
        mine = [ours.infer(feed[name]) for feed in feeds]
        ours.close()
        diff = max(float(abs(a - b).max()) for a, b in zip(reference, mine))
        agree = float(np.mean(np.concatenate([a.argmax(1) == b.argmax(1) for a, b in zip(reference, mine)])))
        ok = same and diff <= atol + rtol * max(float(abs(a).max()) for a in reference)
        failed |= not ok
        results[f"{kind}/{row['target']}@{row['resolution']}"] = {
            "polygraphy_match": same, "edgeres_runner_max_abs_diff": round(diff, 6), "top1_agreement": agree,
            "atol": atol, "rtol": rtol, "images": sum(len(f[name]) for f in feeds)}
    return {"_failed": failed, **results}


def bench(out: Path) -> dict:
    from edgeres.bench import bench as run_bench
    from edgeres.bench.power import missing_jetson_tools
    device = "jetson" if missing_jetson_tools() is None else "cuda"
    found = {}
    for kind in ("static", "dynamic"):
        report = run_bench(out / kind, device=device, batch_sizes=(1, 8), backends=("trt",), min_runs=20,
                           min_time_s=0.5, warmup=10, out=out / kind / "bench")
        found[kind] = {"rows": [{k: r.get(k) for k in ("target", "resolution", "batch", "img_per_s", "power")}
                                | {"p50_ms": r["stats"]["p50"], "p99_ms": r["stats"]["p99"]} for r in report["rows"]],
                       "skipped": report["skipped"]}
    return {"device": device, **found}


def run_trtexec(out: Path) -> dict:
    """Each written trtexec line as written, except that it saves into out/trtexec (the engines stay edgeres')."""
    binary = shutil.which("trtexec") or _jetpack_trtexec()
    if binary is None:
        return {"_skipped": True, "why": "trtexec is not on PATH (JetPack: /usr/src/tensorrt/bin/trtexec)"}
    scratch, results, failed = out / "trtexec", {}, False
    scratch.mkdir(exist_ok=True)
    for script in sorted(out.glob("*/engines/*.trtexec.sh")):
        words = shlex.split(script.read_text().splitlines()[-1])
        words = [binary] + [_redirect(w, scratch) for w in words[1:]]
        began = time.monotonic()
        run = subprocess.run(words, capture_output=True, text=True, timeout=240)
        passed = run.returncode == 0 and "&&&& PASSED" in run.stdout
        failed |= not passed
        results[script.name] = {"passed": passed, "returncode": run.returncode,
                                "seconds": round(time.monotonic() - began, 1),
                                "tail": (run.stdout + run.stderr).strip().splitlines()[-3:]}
    return {"_failed": failed, **results}


def _redirect(word: str, scratch: Path) -> str:
    for flag in ("--saveEngine=", "--exportLayerInfo="):
        if word.startswith(flag):
            return flag + str(scratch / Path(word[len(flag):]).name)
    return word


if __name__ == "__main__":
    sys.exit(main())
