"""`edgeres import`: a torchvision BN CNN you already have -> an RS-Net with per-resolution BN recalibration."""
import click

from edgeres.options import FiniteFloat, data_option, out_option, res_option


@click.command("import")
@click.option("--arch", required=True, help="resnet18, resnet34, resnet50 or mobilenet_v2 (torchvision).")
@click.option("--weights", required=True, metavar="FILE|NAME",
              help="State-dict file (.safetensors/.pt/.pth, loaded safely) or a torchvision weights name "
                   "such as IMAGENET1K_V1 (downloads: needs internet).")
@res_option(required=True, help_text="Resolutions the RS-Net serves, any order.")
@data_option()
@out_option(help_text="Checkpoint directory to write.")
@click.option("--num-classes", type=click.IntRange(min=2), default=None, help="Default: the data's class count.")
@click.option("--in-channels", type=click.IntRange(min=1), default=None, help="Default: the data's channels.")
@click.option("--width-mult", type=float, default=1.0, show_default=True)
@click.option("--small-input/--no-small-input", default=False, show_default=True,
              help="The model has a 3x3 stride-1 stem and no max-pool (as `edgeres train --small-input`).")
@click.option("--recalibrate/--no-recalibrate", default=True, show_default=True,
              help="Re-estimate each resolution's BN statistics; --no-recalibrate is the naive copy baseline.")
@click.option("--calib-images", type=click.IntRange(min=1), default=512, show_default=True,
              help="Training images per resolution for recalibration.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Then train this many epochs with MRED (lr 0.003, 0 warm-up epochs).")
@click.option("--finetune-lr", type=FiniteFloat(min=0, min_open=True), default=0.003, show_default=True)
@click.option("--val-limit", type=click.IntRange(min=1), default=None, help="Measure on N random val images only.")
def command(arch, weights, res, data, out, num_classes, in_channels, width_mult, small_input, recalibrate,
            calib_images, finetune_epochs, finetune_lr, val_limit) -> None:
    """Make a BN CNN you already have into an RS-Net for the resolutions --res.

    Every BatchNorm gets one private copy per resolution (the model is then exactly the original),
    and each copy's running statistics are re-estimated from --calib-images training images shown
    at its resolution (no gradient, nothing else changes). Records val top-1/top-5 per resolution.

    \b
    Examples:
      edgeres import --arch resnet18 --weights my_resnet18.pth --data ./flowers --res 224,160,128,96 --out runs/imp
      edgeres import --arch mobilenet_v2 --weights model.pt --width-mult 0.5 --small-input \\
          --data fashion-mnist-mini --res 28,20,12 --out runs/imp --finetune-epochs 2
      edgeres import ... --no-recalibrate --out runs/naive     # the copy-and-run baseline, to compare
    """
    from edgeres.train.importer import import_model

    options = {"lr": finetune_lr, "warmup_epochs": 0.0, "val_limit": val_limit}
    result = import_model(arch, weights, res, out, data=data or "fashion-mnist-mini", num_classes=num_classes,
                          in_channels=in_channels, small_input=small_input, width_mult=width_mult,
                          recalibrate=recalibrate, calib_images=calib_images, finetune_epochs=finetune_epochs,
                          finetune_options=options, val_limit=val_limit)
    from edgeres.manifests.checkpoint import read_checkpoint_info
    info = read_checkpoint_info(result)
    for r, metric in info.metrics.items():
        click.echo(f"{r} px: top-1 {metric['top1']:.2f}%  top-5 {metric['top5']:.2f}%")
    click.echo(f"checkpoint: {result}")
    click.echo(f"Next: edgeres eval {result}    edgeres export {result} --res {','.join(map(str, info.resolutions))}",
               err=True)
