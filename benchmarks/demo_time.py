"""How long ``bash scripts/demo.sh`` takes after set-up, stage by stage, and its figures.

Runs the demo as a user would (``BUDGET=B bash scripts/demo.sh``), reads the ``[demo] stage: N s``
lines it prints, the run's evaluation and its peak resident memory (the largest of its
processes), and writes them with the CPU's facts. Set ONEDNN_MAX_CPU_ISA=AVX2
ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 to time it as on a CPU without native bf16.

    python benchmarks/demo_time.py --budget 60
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from process_cost import run_measured

OUT = Path("benchmarks/results/demo_time")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=int, default=300)
    args = p.parse_args()
    cost = run_measured(["bash", "scripts/demo.sh"], env={**os.environ,
                                                         "BUDGET": str(args.budget)})
    if cost.returncode != 0:
        raise SystemExit(f"demo failed:\n{cost.stderr[-3000:]}")
    stages = {m[1]: int(m[2]) for m in re.finditer(r"^\[demo\] (\w+): (\d+) s$", cost.stderr,
                                                   re.MULTILINE)}
    run = Path(re.findall(r"^\[demo\] run folder: (\S+)$", cost.stderr, re.MULTILINE)[-1])
    from selfsight.device import cpu_facts

    summary = {"command": f"python {' '.join(sys.argv)}", "budget_seconds": args.budget,
               "cpu": cpu_facts(), "total_seconds": round(cost.seconds, 1),
               "stage_seconds": stages, "peak_rss_mb": round(cost.peak_rss_mb)}
    result = json.loads((run / "eval" / "fashion-mnist.json").read_text())
    summary["figures"] = {k: result.get(k) for k in (
        "precision", "knn_k200", "knn_k20", "linear_top1", "pixels_knn_k200", "pixels_knn_k20",
        "eval_seconds")}
    summary["run"] = str(run)
    print(json.dumps(summary, indent=2))
    name = f"budget{args.budget}" + ("_avx2" if os.environ.get("ONEDNN_MAX_CPU_ISA") else "")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
