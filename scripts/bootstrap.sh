#!/usr/bin/env bash
# Installs whatever a fresh machine lacks: Fashion-MNIST (Debian package), a virtual environment
# in .venv, and selfsight with its dependencies. Idempotent: a second run only checks.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -z "${SELFSIGHT_FASHION_MNIST:-}" ]; then
  echo "[bootstrap] installing Debian package dataset-fashion-mnist"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

# Headless Chromium renders and checks `selfsight report` pages in the tests.
if [ ! -x /usr/bin/chromium ]; then
  echo "[bootstrap] installing Debian package chromium"
  sudo_if_needed apt-get update -qq
  DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq chromium >/dev/null
fi

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[bootstrap] creating .venv"
  "$python" -m venv .venv
fi
stamp=.venv/.selfsight-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "[bootstrap] installing selfsight and its dependencies into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch and torchvision as a matching pair first, so the resolver never mixes builds.
  .venv/bin/python -m pip install -q "torch>=2.11,<2.15" "torchvision>=0.26,<0.30"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
