"""`edgeres` command line: a thin Click layer over the stage modules.

Each command lives in `edgeres/commands/<name>.py`, parses options, calls one library function and prints a
summary. Errors the user can fix (EdgeresError) print one line and exit 1 (2 for bad usage); anything else is
a bug and keeps its traceback.
"""
import importlib
import logging
import signal
import sys

import click

from edgeres import __version__
from edgeres.errors import EdgeresError, Interrupted, interrupt_behind, one_line

# command name -> module under edgeres.commands (each defines `command`)
COMMANDS = {
    "train": "train", "import": "importer", "eval": "evaluate", "export": "export", "build": "build",
    "bench": "bench", "report": "report", "select": "select", "cascade": "cascade", "demo": "demo",
}


class EdgeresGroup(click.Group):
    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        return importlib.import_module(f"edgeres.commands.{COMMANDS[name]}").command

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through _terminate: temporaries are gone by now
            _exit_interrupted(ctx, exc)
        except Exception as exc:
            interrupt = interrupt_behind(exc)  # e.g. "cannot load weights (initialization failed)" from a signal
            if interrupt is not None:
                _exit_interrupted(ctx, interrupt)
            if not isinstance(exc, EdgeresError):
                raise
            click.echo(f"edgeres: error: {one_line(str(exc))}", err=True)
            ctx.exit(exc.exit_code)


def _exit_interrupted(ctx: click.Context, exc: KeyboardInterrupt) -> None:
    signum = exc.signum if isinstance(exc, Interrupted) else signal.SIGINT
    click.echo(f"edgeres: interrupted by {signal.Signals(signum).name}: outputs are as they were before "
               "this run (re-run the command to finish)", err=True)
    ctx.exit(128 + signum)  # the shell's convention for "ended by signal N"


def _load_config(ctx: click.Context, _param, path):
    """--config FILE.toml: one [section] per command sets that command's option defaults."""
    if path is None:
        return None
    from edgeres.config import load_toml_defaults
    group = ctx.command
    options = {name: [p.name for p in group.get_command(ctx, name).params] for name in COMMANDS}
    try:
        ctx.default_map = load_toml_defaults(path, options)
    except EdgeresError as exc:
        raise click.BadParameter(str(exc)) from None
    return path


@click.group(cls=EdgeresGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgeres")
@click.option("-v", "--verbose", count=True, help="More log detail on stderr (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors on stderr.")
@click.option("--config", type=click.Path(dir_okay=False), callback=_load_config, is_eager=True, expose_value=False,
              help="TOML file whose [train], [export], ... tables set option defaults; flags still win.")
def cli(verbose: int, quiet: bool) -> None:
    """Resolution-switchable CNNs (RS-Nets) from training to a measured edge deployment.

    \b
    Pipeline (each stage reads the previous stage's manifest):
      train/import -> checkpoint.json -> export -> export.json -> build -> build.json -> bench -> report
    \b
    Start with the bundled data, on CPU:
      edgeres train --data fashion-mnist-mini --arch mobilenet_v2 --small-input --res 28,24,20,16,12 --out runs/rs
      edgeres eval runs/rs
    """
    level = logging.WARNING if quiet else (logging.INFO, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


def _terminate(signum, _frame) -> None:
    raise Interrupted(signum)


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)  # run `finally` blocks (temp cleanup) as Ctrl-C does
    cli(prog_name="edgeres")


if __name__ == "__main__":
    main()
