"""The one exception a user can fix: the CLI prints it as one line and exits 1 (2 for bad usage).

Anything else that escapes is a bug and keeps its traceback.
"""


class EdgeresError(Exception):
    """Bad input, a missing file or extra, a failed check: say what was wrong and what to do."""

    exit_code = 1


class EdgeresUsageError(EdgeresError):
    """Bad command-line usage (an option value that cannot work)."""

    exit_code = 2
