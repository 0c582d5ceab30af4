"""`edgeres report`: tables and plots from one or more bench reports."""
import click


@click.command("report")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Directory for report.md, CSV and plots.")
@click.option("--cascade", "cascades", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="cascade.json from `edgeres cascade`: adds the run-time choice to the accuracy plot and report.")
def command(inputs, out, cascades) -> None:
    """Turn bench reports (bench.json files or their directories) into a report folder.

    Writes report.md (Markdown table), results.csv, latency_vs_macs.png/.svg (one line per target, points
    labelled by resolution) and, when accuracy is known (build.json or checkpoint metrics),
    accuracy_vs_latency.png/.svg with the Pareto front across resolutions x precisions.

    \b
    Examples:
      edgeres report build/rsnet/bench/bench.json --out report/
      edgeres report cpu/bench.json jetson/bench.json --out report/   # devices side by side
      edgeres report build/rsnet/bench/bench.json --cascade build/rsnet/cascade/cascade.json --out report/
    """
    from edgeres.report import report

    paths = report(inputs, out, cascades=cascades)
    for name, path in paths.items():
        click.echo(f"{name}: {path}")
    click.echo(f"open {paths['markdown']}; to pick a deployment under a budget: edgeres select {' '.join(inputs)}")
