"""`edgeres bench`: latency per resolution x target x batch, optional CI regression gate."""
import click

from edgeres.bench.gate import GATE_STATISTICS
from edgeres.options import FiniteFloat, out_option, positive_ints, res_option, trust_arch_option



@click.command("bench")
@click.argument("directory", type=click.Path(exists=True, file_okay=False))
@click.option("--device", type=click.Choice(["cpu", "cuda", "jetson"]), default="cpu", show_default=True,
              help="cpu: ONNX Runtime CPU. cuda: TensorRT engines (or ORT's CUDA provider). jetson: cuda + power.")
@click.option("--target", "targets", multiple=True, help="Only these targets (repeatable; default: all runnable).")
@res_option(help_text="Only these resolutions, e.g. 224,128 (default: all in the manifest).")
@click.option("--batch", default="1", show_default=True, metavar="B1,B2", help="Batch sizes (static graphs run only their own).")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["ort", "torch", "trt"]),
              help="Runners (repeatable). Default: ort on cpu, trt on cuda/jetson. torch = PyTorch eager RS-Net.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="Intra-op threads (default: backend's own).")
@click.option("--min-runs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--min-time", type=FiniteFloat(min=0), default=1.0, show_default=True, help="Seconds of timed runs per cell.")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Repeat the whole interleaved sweep in N fresh worker processes (robust medians).")
@out_option(required=False, help_text="Where bench.json/bench.csv go (default: DIRECTORY/bench).")
@click.option("--baseline", "baselines", type=click.Path(exists=True), multiple=True,
              help="Gate against this bench.json (repeat for several recordings of the baseline: pooled).")
@click.option("--max-regression", type=FiniteFloat(min=0), default=10.0, show_default=True, help="Percent.")
@click.option("--statistic", type=click.Choice(GATE_STATISTICS), default="p50", show_default=True,
              help="paired: median ratio to the reference CNN timed beside every run. consensus: a row regresses "
                   "only when its normalised p50 and its paired ratio both do (benchmarks/CI_GATE.md).")
@click.option("--no-paired", is_flag=True, help="Do not time the paired reference CNN (half the time; no paired gate).")
@click.option("--normalize", is_flag=True, help="Divide latencies by the reference GEMM timed in the same run.")
@click.option("--fail-on-missing", is_flag=True, help="Baseline rows absent from this run fail the gate.")
@trust_arch_option()
def command(directory, device, targets, res, batch, backends, threads, min_runs, min_time, warmup, processes, out,
            baselines, max_regression, statistic, no_paired, normalize, fail_on_missing) -> None:
    """Measure DIRECTORY (a build dir with build.json, or an export dir with export.json).

    Per (target, resolution, batch): warm-up, then interleaved timed runs until --min-runs and --min-time;
    reports p50/p90/p99/mean/std ms, img/s, MACs, achieved GFLOP/s, latency ratio beside MACs ratio, memory,
    and (jetson) power and energy per image. With --baseline it exits 1 when a row regresses.

    \b
    Examples:
      edgeres bench build/rsnet                                  # ORT CPU, all targets
      edgeres bench build/rsnet --backend ort --backend torch    # ... plus the PyTorch eager RS-Net
      edgeres bench build/rsnet --device jetson --target trt-fp16
      edgeres bench ci/tiny --baseline benchmarks/baselines/cpu-tiny.json --statistic consensus
    """
    from pathlib import Path

    from edgeres.bench import bench, gate
    from edgeres.errors import EdgeresError
    from edgeres.manifests.bench import read_bench
    from edgeres.report import print_bench_table
    from edgeres.resolutions import parse_resolutions

    out = Path(out) if out else Path(directory) / "bench"
    recorded = [read_bench(b) for b in baselines]  # a malformed baseline fails now, not after the benchmark
    first = recorded[0] if recorded else None
    report = bench(directory, device=device, targets=targets or None,
                   resolutions=parse_resolutions(res) if res else None, batch_sizes=positive_ints(batch, "--batch"),
                   threads=threads, min_runs=min_runs, min_time_s=min_time, warmup=warmup, backends=backends or None,
                   out=out, processes=processes, baseline=first, paired=not no_paired,
                   reference_from=first)  # the baseline's reference CNNs: comparable ratios
    print_bench_table(report)
    click.echo(f"wrote {out / 'bench.json'} and {out / 'bench.csv'}; next: edgeres report {out / 'bench.json'} "
               f"--out {out.parent / 'report'}")
    if recorded:
        result = gate(recorded, report, statistic=statistic, max_regression=max_regression, normalize=normalize,
                      fail_on_missing=fail_on_missing)
        _print_gate(result)
        if not result.passed:
            raise EdgeresError(result.summary())


def _print_gate(result) -> None:
    from rich.table import Table

    from edgeres.report.tables import wide_console
    unit = "x ref" if result.normalized or result.statistic in ("paired", "consensus") else "ms"
    table = Table(title=f"gate: {result.statistic} ({unit}), max regression {result.max_regression_pct:g}%")
    for column in ("row", "verdict", "baseline", "current", "change"):
        table.add_column(column, justify="left" if column in ("row", "verdict") else "right")
    for r in result.rows:
        fmt = (lambda v: "-" if v is None else f"{v:.4g}")
        change = "-" if r.change_pct is None else f"{r.change_pct:+.1f}%"
        if r.parts:  # consensus: the two changes it agreed on
            change += f" (normalised {r.parts[0]:+.1f}%, paired {r.parts[1]:+.1f}%)"
        table.add_row(r.label(), r.verdict, fmt(r.baseline), fmt(r.current), change)
    wide_console().print(table)
    for note in result.notes:
        click.echo(f"note: {note}")
    click.echo(result.summary())
