"""Small rich tables shared by commands (results go to stdout)."""
import sys

from rich.console import Console
from rich.table import Table

_stdout = Console()


def wide_console() -> Console:
    """A stdout console that does not squash wide tables to 80 columns in pipes and CI logs."""
    return Console(width=None if sys.stdout.isatty() else 160)


def print_accuracy_table(results: dict, title: str) -> None:
    """results: resolution -> Accuracy (top1/top5 in percent)."""
    table = Table(title=title)
    for column in ("resolution", "top-1 %", "top-1 95% interval", "top-5 %", "images"):
        table.add_column(column, justify="right")
    for res, acc in results.items():
        low, high = acc.top1_interval()
        table.add_row(str(res), f"{acc.top1:.2f}", f"{low:.1f}-{high:.1f}", f"{acc.top5:.2f}", str(acc.count))
    _stdout.print(table)
