"""Errors a user can act on: the CLI prints them as one line instead of a traceback."""


class UserError(RuntimeError):
    """Something outside the code is wrong (disk, paths, inputs); the message says what."""
