"""The one exception a user can fix: the CLI prints it as one line and exits 1 (2 for bad usage).

Anything else that escapes is a bug and keeps its traceback.
"""


class EdgeresError(Exception):
    """Bad input, a missing file or extra, a failed check: say what was wrong and what to do."""

    exit_code = 1


class EdgeresUsageError(EdgeresError):
    """Bad command-line usage (an option value that cannot work)."""

    exit_code = 2


class Interrupted(KeyboardInterrupt):
    """SIGTERM turned into an exception (like SIGINT's KeyboardInterrupt), so that `finally` blocks remove
    half-written temporaries before the process ends."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def interrupt_behind(exc: BaseException | None) -> KeyboardInterrupt | None:
    """The interrupt an import failed from, if any: a signal that lands while a C extension initialises (e.g.
    `import onnxruntime`) comes back as ImportError("initialization failed") raised from it, possibly wrapped
    again by a handler of that ImportError. Only an ImportError stands for the interrupt behind it: any other
    error raised while an interrupt unwinds (a failed cleanup) is a failure of its own and keeps its traceback."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        behind = exc.__cause__ or exc.__context__
        if isinstance(exc, ImportError) and isinstance(behind, KeyboardInterrupt):
            return behind
        exc = behind
    return None


def reraise_interrupt(exc: BaseException) -> None:
    """Raise the interrupt behind `exc`, if any, before handling `exc` as a missing or broken module or a
    failed attempt: a signal during an import is the user stopping the run."""
    interrupt = interrupt_behind(exc)
    if interrupt is not None:
        raise interrupt


def one_line(message: str) -> str:
    """The message as one line. An error raised in a DataLoader worker comes back wrapped by torch as
    "Caught X in DataLoader worker process 0.\\nOriginal Traceback ...\\nmodule.X: <message>": keep <message>."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return ""
    if len(lines) > 1 and lines[1].startswith("Original Traceback"):
        last = lines[-1]
        return last.split(": ", 1)[1] if ": " in last and "Error" in last.split(": ", 1)[0] else last
    return "; ".join(lines)
