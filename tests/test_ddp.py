"""A real 2-process DDP run on CPU (gloo) through torchrun, on a toy model and a few hundred images."""
import json
import os
import signal
import subprocess
import sys

import pytest

pytest.importorskip("torch")


def test_torchrun_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "edgeres", "train", "--arch", "mobilenet_v2", "--width-mult", "0.25", "--small-input",
               "--res", "28,16", "--epochs", "1", "--batch-size", "64", "--train-limit", "256", "--val-limit", "64",
               "--crop-scale", "0.5,1", "--device", "cpu", "--no-progress", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = _run_group(command, env, tmp_path, timeout=150)
    assert run.returncode == 0, run.stderr[-3000:]
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["training"]["world_size"] == 2 and meta["training"]["batch_size"] == 64
    assert set(meta["metrics"]) == {"28", "16"}
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    # 256 images, 2 ranks x 32 per step, ragged batches dropped: every image counted once, across both ranks
    assert len(log) == 1 and log[0]["img_per_s"] > 0
    assert run.stdout.count("checkpoint:") == 1  # only rank 0 reports


def _run_group(command, env, cwd, timeout):
    """subprocess.run in its own process group, so a hung run takes its torchrun workers down with it."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                            start_new_session=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(command, proc.returncode, stdout, stderr)
