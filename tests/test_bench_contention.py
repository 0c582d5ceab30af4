"""bench says how busy the CPUs were just before measuring, sampled from /proc/stat, and warns when other work
leaves fewer free CPUs than the threads asked for."""
import logging
import os

import pytest

from edgeres.bench import bench, machine


def stat_text(cpus: list[tuple[int, int, int, int]]) -> str:
    """/proc/stat with per-CPU (user, system, idle, iowait) jiffies; fields: user nice system idle iowait irq
    softirq steal guest guest_nice. The aggregate line is deliberately wrong: only per-CPU lines count."""
    lines = ["cpu  1 1 1 1 1 0 0 0 0 0"]
    lines += [f"cpu{i} {u} 0 {s} {idle} {io} 0 0 0 0 0" for i, (u, s, idle, io) in enumerate(cpus)]
    return "\n".join(lines + ["intr 0", "ctxt 0"]) + "\n"


def fake_stat(monkeypatch, tmp_path, first, second) -> str:
    """A /proc/stat that reads `first`, then `second` once the sampler has slept."""
    path = tmp_path / "stat"
    path.write_text(stat_text(first))
    monkeypatch.setattr(machine.time, "sleep", lambda s: path.write_text(stat_text(second)))
    return str(path)


BEFORE = [(1000, 500, 9000, 100)] * 4
# per CPU over the interval: cpu0 100% busy, cpu1 50% (busy 50 of 100, iowait counts as idle), cpu2 and cpu3 idle
AFTER = [(1080, 520, 9000, 100), (1040, 510, 9040, 110), (1000, 500, 9100, 100), (1000, 500, 9100, 100)]


@pytest.mark.parametrize("cpus, busy", [({0, 1, 2, 3}, 1.5), ({0, 1}, 1.5), ({2, 3}, 0.0), ({1}, 0.5)])
def test_busy_cpus_sum_each_usable_cpus_non_idle_share_of_the_interval(monkeypatch, tmp_path, cpus, busy):
    path = fake_stat(monkeypatch, tmp_path, BEFORE, AFTER)
    assert machine.cpus_busy(stat_path=path, cpus=cpus) == busy


def test_busy_cpus_default_to_this_processs_affinity(monkeypatch, tmp_path):
    path = fake_stat(monkeypatch, tmp_path, BEFORE, AFTER)
    monkeypatch.setattr(machine, "usable_cpu_ids", lambda: {1, 2})
    assert machine.cpus_busy(stat_path=path) == 0.5


def test_busy_is_unknown_without_proc_stat_or_without_elapsed_time(monkeypatch, tmp_path):
    assert machine.cpus_busy(seconds=0, stat_path=str(tmp_path / "absent")) is None
    path = fake_stat(monkeypatch, tmp_path, BEFORE, BEFORE)
    assert machine.cpus_busy(stat_path=path, cpus={0, 1}) is None


@pytest.mark.parametrize("busy, threads, warns", [(0.2, 2, False), (0.8, 2, True), (0.8, 1, False),
                                                  (1.6, 1, True), (None, 2, False), (0.8, None, True)])
def test_warns_only_when_the_free_cpus_are_fewer_than_the_threads(monkeypatch, caplog, busy, threads, warns):
    monkeypatch.setattr(machine, "usable_cpus", lambda: 2)
    with caplog.at_level(logging.WARNING, logger="edgeres.bench"):
        machine.warn_if_contended(busy, threads)
    assert bool(caplog.records) == warns
    if warns:
        assert caplog.records[0].getMessage().count("\n") == 0 and "--threads 1" in caplog.records[0].getMessage()


def test_the_report_records_the_sample(tiny):
    report = bench(tiny[0], resolutions=[32], min_time_s=0.05, min_runs=3, warmup=1, paired=False)
    busy = report["machine"]["cpus_busy_at_start"]
    if os.path.exists("/proc/stat"):
        assert 0 <= busy <= len(os.sched_getaffinity(0)) + 0.01
    else:
        assert busy is None
