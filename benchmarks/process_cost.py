"""Wall time and peak resident memory of one command in a fresh process (for the benchmark
scripts beside this file: they run ``selfsight`` as a user would)."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass


@dataclass
class ProcessCost:
    returncode: int
    stderr: str
    seconds: float
    peak_rss_mb: float


def run_measured(command: list[str], env: dict[str, str] | None = None,
                 quiet: bool = True) -> ProcessCost:
    """Run ``command``; its stderr is captured (and echoed unless ``quiet``), stdout dropped."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL if quiet else None,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stderr:
        lines.append(line)
        if not quiet:
            print(line, end="", flush=True)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not the parent's
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ProcessCost(proc.returncode, "".join(lines), time.perf_counter() - started,
                       usage.ru_maxrss / 1024)
