"""How fast the command line answers: wall time (median of 3) and peak memory of
``selfsight --help``, ``selfsight pretrain --help`` and ``selfsight list methods``, each in a
fresh process, with the CPU it ran on. Run it on a quiet machine: a busy one inflates the times.

    python benchmarks/cli_startup.py
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from process_cost import run_measured

COMMANDS = (["--help"], ["pretrain", "--help"], ["evaluate", "--help"], ["list", "methods"],
            ["list", "backbones"])
OUT = Path("benchmarks/results/cli_startup.json")


def run_once(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident MB) of one ``selfsight ARGS`` process."""
    cost = run_measured([str(Path(sys.executable).parent / "selfsight"), *args])
    if cost.returncode != 0:
        raise SystemExit(f"selfsight {' '.join(args)} failed: {cost.stderr[-2000:]}")
    return cost.seconds, cost.peak_rss_mb


def main() -> None:
    results = {}
    for args in COMMANDS:
        runs = [run_once(args) for _ in range(3)]
        name = " ".join(args)
        results[name] = {"median_seconds": round(statistics.median(w for w, _ in runs), 3),
                         "peak_rss_mb": round(max(m for _, m in runs), 1)}
        print(f"selfsight {name:<18} {results[name]['median_seconds']:>6.3f} s"
              f"  {results[name]['peak_rss_mb']:>7.1f} MB")
    from selfsight.device import cpu_facts  # torch: only after the children were measured

    summary = {"command": "python benchmarks/cli_startup.py", "cpu": cpu_facts(),
               "commands": results}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(summary, indent=2))
    print(f"written to {OUT}")


if __name__ == "__main__":
    main()
