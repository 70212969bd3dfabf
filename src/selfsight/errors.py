"""Exceptions the command line turns into one line and an exit code (no torch here: the CLI
imports this module before any verb runs).

A ``UserError`` is a problem with what the user gave (a file, a folder, an option): the CLI
prints its message, which names the file or option, and exits 2. Any other exception is a bug
and keeps its traceback. The subclasses also derive from the built-in exception a Python caller
would expect (``FileNotFoundError`` for a missing input, ...), so library users can catch
either."""

from __future__ import annotations

import signal


class UserError(ValueError):
    """Bad input: the message names the file or option and the problem."""


class MissingInput(UserError, FileNotFoundError):
    """A file or folder the command needs is not there."""


class RunFolderTaken(UserError, FileExistsError):
    """The output folder already holds a run that this command would overwrite."""


class BadOptionValue(UserError, TypeError):
    """An option's value has the wrong type (e.g. text where a number belongs)."""


class Diverged(UserError, FloatingPointError):
    """Training went non-finite (loss or weights); the last good checkpoint is kept."""


class NoSpace(UserError, OSError):
    """The disk (or the user's quota) has no room for a file selfsight writes; ``errno`` is
    ENOSPC or EDQUOT, as on the OSError it replaces."""


class NotWritable(UserError, PermissionError):
    """A folder selfsight must write in is read-only (EROFS) or not writable (EACCES, EPERM)."""


class RunInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after writing its checkpoint; the command exits
    with 128 + the signal number, as a shell reports a process ended by that signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}: {message}")
        self.signum = signum
        self.trainer: object = None  # the stopped Lightning trainer, for the caller's last save
