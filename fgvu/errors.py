"""The base class of every user-facing error: the CLI prints these without a traceback."""


class FgvuError(ValueError):
    """A problem with the user's input, files or setup, explained in the message."""
