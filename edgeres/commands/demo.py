"""`edgeres demo`: the whole pipeline on the bundled data, on CPU, in a few minutes."""
import click


@click.command("demo")
@click.option("--out", type=click.Path(file_okay=False), default="demo", show_default=True,
              help="Folder for every stage's output (checkpoint/, export/, build/, bench/, cascade/, report/).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Training epochs (default 3).")
@click.option("--toy", is_flag=True, help="Toy size (seconds): checks the pipeline, the numbers mean nothing.")
def command(out, epochs, toy) -> None:
    """Train a small RS-Net on fashion-mnist-mini, export, build FP32 + INT8, bench, cascade, report.

    \b
    The same calls, one by one:
      edgeres train --data fashion-mnist-mini --arch mobilenet_v2 --width-mult 0.5 --small-input \\
                    --res 28,24,20,16,12 --epochs 3 --crop-scale 0.5,1 --out demo/checkpoint
      edgeres export demo/checkpoint --out demo/export
      edgeres build demo/export --target ort-fp32 --target ort-int8 --calib-images 256 --out demo/build
      edgeres bench demo/build --device cpu --out demo/bench
      edgeres cascade demo/build --max-drop 0.5 --out demo/cascade
      edgeres report demo/bench/bench.json --cascade demo/cascade/cascade.json --out demo/report
    """
    from dataclasses import replace

    from edgeres.demo import DemoConfig, run_demo, toy_config

    config = toy_config(out) if toy else DemoConfig(out=out)
    if epochs:
        config = replace(config, epochs=epochs)
    paths = run_demo(config)
    click.echo(f"report: {paths['report'] / 'report.md'}")
    click.echo(f"plots:  {paths['report']}/latency_vs_macs.png, {paths['report']}/accuracy_vs_latency.png")
    click.echo(f"next:   edgeres select {paths['bench'] / 'bench.json'} --budget-ms 0.5", err=True)
