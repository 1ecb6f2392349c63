#!/usr/bin/env bash
# Sets up a fresh Debian machine (idempotently) and runs the whole test suite.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
source scripts/env.sh
cargo test --release --no-fail-fast -- --test-threads="${BRAINAGED_TEST_THREADS:-2}"
