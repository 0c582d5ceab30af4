"""`edgeres import`: a BN CNN you already have -> an RS-Net with per-resolution BN recalibration."""
import click

from edgeres.options import (
    FiniteFloat,
    arch_kwargs_option,
    arch_option,
    data_option,
    out_option,
    res_option,
)


def _floats(value: str | None, name: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers", param_hint=name) from None


@click.command("import")
@arch_option(required=True)
@arch_kwargs_option()
@click.option("--weights", required=True, metavar="FILE|NAME",
              help="State-dict file (.safetensors/.pt/.pth/.pth.tar, loaded safely; an official RS-Nets checkpoint "
                   "is recognised by its keys) or a torchvision weights name such as IMAGENET1K_V1 (needs internet).")
@res_option(required=True, help_text="Resolutions the RS-Net serves, any order. For an official RS-Nets "
                                     "checkpoint: its training --sizes in their training order (bn_i is the i-th).")
@data_option()
@out_option(help_text="Checkpoint directory to write.")
@click.option("--mean", default=None, metavar="M1,M2,...",
              help="Per-channel normalisation mean on [0, 1] pixels (default: the data's; official RS-Nets: 0).")
@click.option("--std", default=None, metavar="S1,S2,...",
              help="Per-channel normalisation std (default: the data's; official RS-Nets: 1).")
@click.option("--num-classes", type=click.IntRange(min=2), default=None,
              help="Default: the data's class count, else the weights' classifier rows.")
@click.option("--in-channels", type=click.IntRange(min=1), default=None,
              help="Default: the data's channels, else the weights' stem inputs.")
@click.option("--width-mult", type=float, default=1.0, show_default=True, help="mobilenet_v2 width multiplier.")
@click.option("--small-input/--no-small-input", default=False, show_default=True,
              help="The model has a 3x3 stride-1 stem and no max-pool (as `edgeres train --small-input`).")
@click.option("--recalibrate/--no-recalibrate", default=True, show_default=True,
              help="Re-estimate each resolution's BN statistics (needs --data); --no-recalibrate is the naive "
                   "copy baseline. Official RS-Nets checkpoints are never recalibrated (their BNs are trained).")
@click.option("--calib-images", type=click.IntRange(min=1), default=512, show_default=True,
              help="Training images per resolution for recalibration.")
@click.option("--finetune-epochs", type=click.IntRange(min=0), default=0, show_default=True,
              help="Then train this many epochs with MRED (lr 0.003, 0 warm-up epochs).")
@click.option("--finetune-lr", type=FiniteFloat(min=0, min_open=True), default=0.003, show_default=True)
@click.option("--val-limit", type=click.IntRange(min=1), default=None, help="Measure on N random val images only.")
def command(arch, arch_kwargs, weights, res, data, out, mean, std, num_classes, in_channels, width_mult, small_input,
            recalibrate, calib_images, finetune_epochs, finetune_lr, val_limit) -> None:
    """Make a BN CNN you already have into an RS-Net for the resolutions --res.

    Every BatchNorm gets one private copy per resolution (the model is then exactly the original),
    and each copy's running statistics are re-estimated from --calib-images training images shown
    at its resolution (no gradient, nothing else changes). With --data, records val top-1/top-5 per
    resolution; without it (--no-recalibrate, or an official RS-Nets checkpoint) classes and channels
    come from the weights and --mean/--std say how images are normalised.

    \b
    Examples:
      edgeres import --arch resnet18 --weights my_resnet18.pth --data ./flowers --res 224,160,128,96 --out runs/imp
      edgeres import --arch mobilenet_v3_large --weights mv3.pth --data ./flowers --res 224,160,96 --out runs/mv3
      edgeres import --arch timm:resnet26d --weights r26d.safetensors --data ./flowers --res 224,160 --out runs/t
      edgeres import --arch my_nets:build --arch-kwargs '{"width": 32}' --weights mine.pt --data ./flowers \\
          --res 224,160,128 --out runs/mine
      edgeres import --arch resnet18 --weights rsnet18.pth.tar --res 224,192,160,128,96 --out runs/official
      edgeres import ... --no-recalibrate --out runs/naive     # the copy-and-run baseline, to compare
    """
    from edgeres.arch import parse_arch_kwargs
    from edgeres.importer import import_model

    options = {"lr": finetune_lr, "warmup_epochs": 0.0, "val_limit": val_limit}
    result = import_model(arch, weights, res, out, data=data, num_classes=num_classes, in_channels=in_channels,
                          small_input=small_input, width_mult=width_mult, recalibrate=recalibrate,
                          calib_images=calib_images, finetune_epochs=finetune_epochs, finetune_options=options,
                          val_limit=val_limit, arch_kwargs=parse_arch_kwargs(arch_kwargs),
                          mean=_floats(mean, "--mean"), std=_floats(std, "--std"))
    from edgeres.manifests.checkpoint import read_checkpoint_info
    info = read_checkpoint_info(result)
    for r, metric in info.metrics.items():
        click.echo(f"{r} px: top-1 {metric['top1']:.2f}%  top-5 {metric['top5']:.2f}%")
    mapping = info.training.get("bn_mapping") or {}
    if mapping:
        click.echo("official RS-Nets BNs: " + ", ".join(f"{k} -> {v} px" for k, v in mapping.items()))
    click.echo(f"checkpoint: {result}")
    hint = ("" if info.data else " --data DIR") + (" --trust-arch" if info.arch.kind == "factory" else "")
    click.echo(f"Next: edgeres eval {result}{hint}    edgeres export {result}{hint} "
               f"--res {','.join(map(str, info.resolutions))}", err=True)
