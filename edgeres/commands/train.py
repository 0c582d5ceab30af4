"""`edgeres train`: RS-Net (parallel + MRED), parallel-only, or individual per-resolution models."""
import os

import click

from edgeres.options import (
    FiniteFloat,
    arch_kwargs_option,
    arch_option,
    data_option,
    out_option,
    res_option,
)


def _floats(value: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=name) from None


@click.command("train")
@data_option()
@arch_option(default="mobilenet_v2")
@arch_kwargs_option()
@res_option(help_text="Training resolutions, any order (stored high -> low) [default: 224,192,160,128,96].")
@out_option(help_text="Checkpoint directory to write (individual mode: a directory of individual-<res> checkpoints).")
@click.option("--mode", type=click.Choice(["rsnet", "parallel", "individual"]), default="rsnet", show_default=True,
              help="rsnet = parallel training + MRED; parallel = summed CE only; individual = one model per resolution.")
@click.option("--kd", type=click.Choice(["full", "vanilla"]), default="full", show_default=True,
              help="MRED distillation: full (ensemble + higher->lower resolutions) or vanilla (ensemble only).")
@click.option("--width-mult", type=float, default=1.0, show_default=True, help="MobileNetV2 width multiplier.")
@click.option("--small-input/--no-small-input", default=False, show_default=True,
              help="3x3 stride-1 stem, no max-pool: for 12-64 px images.")
@click.option("--quant", default=None, metavar="lq:wKaJ", help="LQ-Nets quantization shared by all resolutions, e.g. lq:w2a2.")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=2), default=128, show_default=True, help="Global batch (all processes).")
@click.option("--lr", type=FiniteFloat(min=0, min_open=True), default=0.03, show_default=True,
              help="Peak SGD learning rate (after warm-up), for any number of resolutions with --loss-reduction mean.")
@click.option("--loss-reduction", type=click.Choice(["mean", "sum"]), default="mean", show_default=True,
              help="Average or sum the per-resolution losses; sum (the authors' code) needs about lr / S.")
@click.option("--bn-calib-images", type=click.IntRange(min=0), default=256, show_default=True,
              help="Re-estimate BN statistics from N training images before each evaluation (precise BN); 0: off.")
@click.option("--dropout", type=FiniteFloat(min=0, max=0.999999), default=0.0, show_default=True,
              help="Classifier dropout (MobileNetV2); the RS-Nets authors use none, torchvision 0.2.")
@click.option("--clip-grad-norm", type=FiniteFloat(min=0, min_open=True), default=None,
              help="Clip the network's gradient to this L2 norm per step.")
@click.option("--warmup-epochs", type=FiniteFloat(min=0), default=1.0, show_default=True)
@click.option("--weight-decay", type=FiniteFloat(min=0), default=1e-4, show_default=True)
@click.option("--label-smoothing", type=FiniteFloat(min=0, max=0.999999), default=0.0, show_default=True)
@click.option("--crop-scale", default="0.08,1.0", show_default=True, metavar="MIN,MAX",
              help="RandomResizedCrop area range; 0.5,1 suits 28 px images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=click.IntRange(min=0), default=0, show_default=True, help="DataLoader worker processes.")
@click.option("--holdout", type=click.IntRange(min=0), default=0, show_default=True,
              help="Carve N training images out for per-epoch validation (0: validate on val/).")
@click.option("--train-limit", type=click.IntRange(min=1), default=None, help="Train on N random training images only.")
@click.option("--val-limit", type=click.IntRange(min=1), default=None, help="Evaluate on N random val images only.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--init", type=click.Path(exists=True), default=None, help="Start from this checkpoint's weights.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT.resume/resume.pt, exactly.")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bar on stderr.")
def command(data, arch, arch_kwargs, res, out, mode, kd, width_mult, small_input, quant, epochs, batch_size, lr,
            loss_reduction, bn_calib_images, dropout, clip_grad_norm, warmup_epochs, weight_decay,
            label_smoothing, crop_scale, seed, workers, holdout, train_limit, val_limit, device, init, resume,
            progress) -> None:
    """Train an RS-Net (one model, every resolution) or the per-resolution baselines.

    One step crops each image once, resizes the crop to every resolution and sums the losses
    (RS-Nets, Wang et al. 2020). Writes a checkpoint directory that `edgeres eval` and
    `edgeres export` read; a per-epoch log (loss terms, top-1 per resolution, ensemble weights, img/s)
    goes to OUT/train_log.jsonl.

    \b
    Examples:
      edgeres train --data fashion-mnist-mini --arch mobilenet_v2 --width-mult 0.5 --small-input \\
          --res 28,24,20,16,12 --crop-scale 0.5,1 --epochs 6 --holdout 1000 --out runs/rs
      edgeres train ... --out runs/rs --resume                # after an interruption
      edgeres train ... --mode individual --out runs/inets    # I-Net baselines
      torchrun --standalone --nproc_per_node 2 -m edgeres train ... --out runs/rs   # DDP
      edgeres --config train.toml train --out runs/rs         # [train] table sets any option
    """
    from edgeres.arch import parse_arch_kwargs
    from edgeres.train import TrainConfig, train

    options = dict(data=data or "fashion-mnist-mini", arch=arch, arch_kwargs=parse_arch_kwargs(arch_kwargs),
                   mode=mode, kd=kd, width_mult=width_mult, small_input=small_input, quant=quant, epochs=epochs,
                   batch_size=batch_size, lr=lr, loss_reduction=loss_reduction, bn_calib_images=bn_calib_images,
                   dropout=dropout, clip_grad_norm=clip_grad_norm,
                   warmup_epochs=warmup_epochs, weight_decay=weight_decay, label_smoothing=label_smoothing,
                   crop_scale=_floats(crop_scale, "--crop-scale"), seed=seed, workers=workers, holdout=holdout,
                   train_limit=train_limit, val_limit=val_limit, device=device, init=init, resume=resume,
                   progress=progress)
    if res:
        options["res"] = res
    result = train(TrainConfig(out=out, **options))
    if int(os.environ.get("RANK", "0")) == 0:
        _summary(result, mode)


def _summary(out, mode: str) -> None:
    from edgeres._io import read_json
    from edgeres.manifests.checkpoint import read_checkpoint_info
    if mode == "individual":
        rows = read_json(out / "summary.json")["models"]
        for res, row in rows.items():
            click.echo(f"{res} px: top-1 {row.get('top1', float('nan')):.2f}%  ({out / row['checkpoint']})")
        click.echo(f"Next: edgeres eval {out}/individual-<res>", err=True)
        return
    info = read_checkpoint_info(out)
    for res, metric in info.metrics.items():
        click.echo(f"{res} px: top-1 {metric['top1']:.2f}%  top-5 {metric['top5']:.2f}%")
    if info.ensemble_weights:
        click.echo(f"ensemble weights (high -> low): {', '.join(f'{w:.3f}' for w in info.ensemble_weights)}")
    click.echo(f"checkpoint: {out}")
    res_list = ",".join(str(r) for r in info.resolutions)
    click.echo(f"Next: edgeres eval {out}    edgeres export {out} --res {res_list}", err=True)
