"""`edgeres select`: the Pareto front of measured deployments, and the best one under a budget."""

import click

from edgeres.options import FiniteFloat, json_option


@click.command("select")
@click.argument("bench_reports", metavar="BENCH_JSON...", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--build", "builds", multiple=True, type=click.Path(exists=True), metavar="DIR",
              help="Build or export directory whose measured top-1 to use (repeatable; default: the accuracy "
                   "the bench rows carry).")
@click.option("--budget-ms", type=FiniteFloat(min=0, min_open=True), default=None, help="Latency budget per image (batch 1), in ms.")
@click.option("--budget-mflops", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Compute budget per image in millions of FLOPs, 1 MAC = 2 FLOPs (as bench's GFLOP/s).")
@click.option("--budget-mmacs", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Compute budget per image in millions of MACs (what RS-Nets tables call MFLOPs).")
@click.option("--statistic", type=click.Choice(["p50", "p90", "p99", "mean", "median_of_medians"]), default="p50",
              show_default=True, help="Latency statistic the budget and the front use.")
@json_option()
@click.option("--markdown", "markdown_path", type=click.Path(dir_okay=False), default=None,
              help="Also write the front as a Markdown table to this file.")
def command(bench_reports, builds, budget_ms, budget_mflops, budget_mmacs, statistic, json_path, markdown_path) -> None:
    """Print the accuracy-vs-latency Pareto front of BENCH_JSON rows and pick one for a budget.

    Each batch-1 row of a bench report (target x resolution) is a deployment; its top-1 comes from the
    build's ONNX Runtime measurement (or the checkpoint's, for export graphs). With a budget, the most
    accurate deployment within it is chosen (ties: the faster); if nothing fits, the error names the
    fastest (or cheapest) option. Several budgets must all hold.

    \b
    Examples:
      edgeres select build/rs/bench/bench.json --budget-ms 2.5
      edgeres select build/rs/bench/bench.json --build build/rs --budget-mmacs 20 --json build/rs/select.json
    \b
    Python: from edgeres.choose import select; select(["build/rs/bench/bench.json"], budget_ms=2.5).chosen
    """
    from edgeres.choose.select import check_outputs, select

    check_outputs(json_path, markdown_path)  # before any work
    selection = select(bench_reports, builds, budget_ms=budget_ms, budget_mflops=budget_mflops, statistic=statistic,
                       budget_mmacs=budget_mmacs)
    _print(selection)
    selection.write(json_path, markdown_path)
    if json_path or markdown_path:
        click.echo(f"wrote {' and '.join(p for p in (json_path, markdown_path) if p)}", err=True)


def _print(selection) -> None:
    from rich.table import Table

    from edgeres.choose.select import budget_text, mmacs_text
    from edgeres.report.tables import wide_console

    table = Table(title=f"Pareto front: top-1 up, {selection.statistic} latency down (batch 1)")
    several = len({d.report for d in selection.candidates}) > 1  # then say which report each row is from
    columns = ["deployment", "top-1 %", f"{selection.statistic} ms", "p90 ms", "MMACs", "top-1 from", ""]
    for column in columns + (["bench report"] if several else []):
        table.add_column(column, justify="right" if "%" in column or "ms" in column or "MMACs" in column else "left")
    for d in selection.front:
        cells = [d.label, f"{d.top1:.2f}", f"{d.latency_ms:.3f}", f"{d.stats.get('p90', float('nan')):.3f}",
                 mmacs_text(d), d.accuracy_from or "",
                 "chosen" if d == selection.chosen else ""]
        table.add_row(*cells, *([d.report] if several else []))
    console = wide_console()
    console.print(table)
    if selection.without_accuracy:
        console.print(f"left out (no top-1 known): {', '.join(selection.without_accuracy)}")
    if selection.chosen:
        d = selection.chosen
        console.print(f"chosen for {budget_text(selection.budgets)}: "
                      f"{d.label}, top-1 {d.top1:.2f}%, {selection.statistic} {d.latency_ms:.3f} ms "
                      f"(p90 {d.stats.get('p90', float('nan')):.3f}, from {d.report})")
