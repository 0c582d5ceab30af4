"""`edgeres cascade`: tune a low-to-high resolution confidence cascade and compare it with its baselines."""
from pathlib import Path

import click

from edgeres.defaults import CASCADE_BLOCK, CASCADE_COST_TOLERANCE, CASCADE_MARGIN_SE
from edgeres.options import FiniteFloat, data_option


@click.command("cascade")
@click.argument("source", metavar="BUILD_OR_EXPORT_DIR", type=click.Path(exists=True))
@data_option()
@click.option("--max-drop", type=FiniteFloat(min=0), default=0.5, show_default=True,
              help="Allowed top-1 loss in points vs the highest resolution alone, on the tuning images.")
@click.option("--margin-se", type=FiniteFloat(min=0), default=CASCADE_MARGIN_SE, show_default=True,
              help="Keep the tuning drop this many standard errors (paired, per image) inside --max-drop, so it holds "
                   "on new images.")
@click.option("--confidence", type=click.Choice(["max-softmax", "margin"]), default="max-softmax",
              show_default=True, help="Escalate when this is below the stage's threshold (margin = top1 - top2 prob).")
@click.option("--target", default=None, help="Build target whose graphs to run (default: ort-fp32, or the only "
                                             "ONNX Runtime target). Only for a build directory.")
@click.option("--tune-on", type=click.Choice(["val-half", "train"]), default="val-half", show_default=True,
              help="val-half: tune on one stratified half of val, report on the other; train: tune on train images, "
                   "report on val.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random-resolution baseline.")
@click.option("--limit", type=click.IntRange(min=2), default=None,
              help="Use only N val images (a seeded, class-stratified subset).")
@click.option("--cost", type=click.Choice(["latency", "macs"]), default="latency", show_default=True,
              help="What the thresholds minimise: each stage's ms with preprocessing, measured here on the tuning "
                   "images, or its MACs. A stage that should never answer is skipped.")
@click.option("--cost-tolerance", type=FiniteFloat(min=0), default=None,
              help="Candidates within this fraction of the cheapest cost count as equally cheap; the most accurate "
                   f"is taken (default {CASCADE_COST_TOLERANCE} for latency, whose ms move between runs; 0 for MACs).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--fit-threads/--no-fit-threads", default=True, show_default=True,
              help="Run a stage on one thread where that measured faster than --threads on the tuning images.")
@click.option("--block", type=click.IntRange(min=1), default=CASCADE_BLOCK, show_default=True,
              help="Timed comparison: each method runs this many consecutive images per turn (1: alternate every "
                   "image, each call then finds the other methods' graphs in the caches).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where cascade.json goes (default: BUILD_OR_EXPORT_DIR/cascade).")
def command(source, data, max_drop, margin_se, confidence, target, tune_on, seed, limit, cost, cost_tolerance, threads,
            fit_threads, block, out) -> None:
    """Run the lowest resolution first and escalate only unconfident images.

    Tunes one threshold per stage (all but the highest resolution) so that top-1 stays within --max-drop
    points of the highest resolution on the tuning images (--margin-se standard errors inside it) at the least
    --cost, then measures on other images, side by side:
    the highest resolution alone, a random resolution per image (the RS-Nets thesis baseline) and the
    cascade: top-1, mean MACs per image (a cascade image pays every stage it ran) and mean wall time per
    image (batch 1; resize, crop and normalise of every stage an image reaches included, decoding not).

    \b
    Examples:
      edgeres cascade build/rs --data fashion-mnist-mini --max-drop 0.5
      edgeres cascade build/rs --target ort-int8 --confidence margin --out build/rs/cascade-int8
    \b
    Python: edgeres.choose.evaluate_cascade(...), then CascadeRunner.from_cascade_json(".../cascade.json").
    """
    from edgeres.choose.compare import CASCADE_FILE, evaluate_cascade

    path = Path(source)
    out = Path(out) if out else (path if path.is_dir() else path.parent) / "cascade"
    report = evaluate_cascade(source, data=data, max_drop=max_drop, confidence=confidence, target=target,
                              tune_on=tune_on, seed=seed, limit=limit, threads=threads, cost=cost,
                              margin_se=margin_se, fit_threads=fit_threads, block=block,
                              cost_tolerance=cost_tolerance, out=out)
    _print(report)
    click.echo(f"wrote {out / CASCADE_FILE}\nnext: use it from Python with "
               f"edgeres.choose.CascadeRunner.from_cascade_json({str(out / CASCADE_FILE)!r})", err=True)


def _print(report) -> None:
    from rich.table import Table

    from edgeres.report.tables import wide_console

    high = report.row("highest")
    resolutions = "/".join(str(s.resolution) for s in report.source.stages)
    thresholds = ", ".join(f"{t:.3f}" for t in report.tuning.thresholds)
    threads = "/".join("default" if s.threads is None else str(s.threads) for s in report.source.stages)
    table = Table(title=f"cascade {resolutions} px (ORT threads {threads}), {report.confidence} >= {thresholds} "
                        f"exits; tuned on {report.tune_split}, measured on {report.report_split} (ms per image, "
                        f"batch 1, preprocessing of every stage run included, methods in turns of {report.block} "
                        "images)")
    for column in ("method", "top-1 %", "Δ pts", "MMACs/img", "MACs %", "ms mean", "ms p50", "ms p90", "ms p99",
                   "answered at % "):
        table.add_column(column, justify="right")
    for r in report.rows:
        table.add_row(r.method, f"{r.top1:.2f}", f"{r.top1 - high.top1:+.2f}", f"{r.mean_macs / 1e6:.3f}",
                      f"{100 * r.mean_macs / high.mean_macs:.1f}", f"{r.mean_latency_ms:.3f}",
                      f"{r.p50_latency_ms:.3f}", f"{r.p90_latency_ms:.3f}", f"{r.p99_latency_ms:.3f}",
                      "/".join(f"{100 * s:.0f}" for s in r.stage_share))
    wide_console().print(table)
