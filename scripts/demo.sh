#!/usr/bin/env bash
# Installs what is missing, then pretrains SimCLR on Fashion-MNIST for a short wall-clock budget
# (BUDGET seconds, default 300) and evaluates it (kNN and linear accuracy beside the raw-pixel
# kNN baseline, clustering, few-shot, robustness), then writes the HTML report. Each stage says
# how long it took.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/bootstrap.sh
budget="${BUDGET:-300}"
run="runs/demo-$(date +%Y%m%d-%H%M%S)"
took() { echo "[demo] $1: $((SECONDS - started)) s" >&2; started=$SECONDS; }
started=$SECONDS
# The CPU recipe measured in BENCHMARKS.md: a ResNet-10 with a 256-wide last stage and a
# 16-channel stem (resnet10_cpu, the CPU default) on 20-px crops, batch 512, at the precision
# the hardware runs fastest (--precision auto).
.venv/bin/selfsight pretrain fashion-mnist --backbone resnet10_cpu --view-size 20 \
  --batch-size 512 --time-budget "$budget" --out "$run"
took pretrain
.venv/bin/selfsight evaluate "$run" --data fashion-mnist
took evaluate
.venv/bin/selfsight report "$run"
took report
echo "[demo] run folder: $run" >&2
