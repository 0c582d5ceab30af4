"""TOML config files: one table per command, feeding Click's default_map (flags on the command line win)."""
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from edgeres.errors import EdgeresError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (JetPack 6)
    import tomli as tomllib


def load_toml_defaults(path: str, commands: Mapping[str, Sequence[str]]) -> dict[str, dict[str, Any]]:
    """{"train": {"epochs": 5, "res": "28,20"}} from a file with [train] epochs = 5 ... ; keys use _ or -.

    commands: command name -> its option names; a table or key not among them is refused (a typo would
    otherwise be ignored silently and the run would use the default)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeresError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise EdgeresError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = [k for k in data if k not in commands or not isinstance(data[k], dict)]
    if unknown:
        raise EdgeresError(f"config file {path}: unknown table(s) {', '.join(unknown)}; "
                           f"use one of [{'], ['.join(commands)}]")
    tables = {cmd: {k.replace("-", "_"): _as_option(v) for k, v in table.items()} for cmd, table in data.items()}
    for cmd, table in tables.items():
        wrong = [k for k in table if k not in commands[cmd]]
        if wrong:
            valid = ", ".join(k.replace("_", "-") for k in commands[cmd])
            raise EdgeresError(f"config file {path}: unknown key(s) {', '.join(wrong)} in [{cmd}]; valid keys: {valid}")
    return tables


def _as_option(value: Any) -> Any:
    if isinstance(value, list):  # res = [224, 128] -> "224,128"; multiple options take the list as is
        return ",".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else value
    return value
