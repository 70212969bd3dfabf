"""Exceptions the command line turns into one line and an exit code (no torch here: the CLI
imports this module before any verb runs)."""

from __future__ import annotations

import signal


class RunInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after writing its checkpoint; the command exits
    with 128 + the signal number, as a shell reports a process ended by that signal."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}: {message}")
        self.signum = signum
        self.trainer: object = None  # the stopped Lightning trainer, for the caller's last save
