#!/usr/bin/env bash
# Installs everything brainaged needs to build, run and test on a fresh Debian machine.
# Idempotent: every step checks before it installs. Each step is a file in scripts/setup.d/,
# run in name order, so that a new dependency is one new file.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export BRAINAGED_ROOT=$(cd "$here/.." && pwd)
export DEBIAN_FRONTEND=noninteractive
for step in "$here"/setup.d/*.sh; do
    echo "== setup: $(basename "$step")"
    bash "$step"
done
