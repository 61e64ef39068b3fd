"""The one exception type the CLI turns into a single line instead of a traceback."""


class BenchError(Exception):
    """A problem the user can fix: the message says what happened and what to do."""
