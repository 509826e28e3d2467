"""Errors a user can act on: the CLI prints them as one line instead of a traceback.

Two kinds matter to the flow stage (docs/reliability.md): a *video's* error is recorded for
that video and the run goes on; an *environment* error (:class:`EnvironmentFailure`, and its
:class:`StorageError`) stops the run with one line, marks nothing failed and caches nothing.
"""


class UserError(RuntimeError):
    """Something outside the code is wrong (disk, paths, inputs); the message says what."""


class EnvironmentFailure(UserError):
    """The machine, not the video, is at fault (driver, out of memory, a missing import or
    checkpoint, permissions, disk). Flow engines raise it (or a subclass) for such faults;
    the flow stage then stops instead of recording the video as failed."""


class StorageError(EnvironmentFailure):
    """The output directory cannot be written (full, read-only, quota): the run stops.

    Nothing half-written remains; rerun when the disk is fixed.
    """
