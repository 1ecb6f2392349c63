#!/usr/bin/env bash
# Sets up a fresh Debian machine (idempotently), builds brainaged and runs the daemon on the
# embedded default: a private PostgreSQL cluster and the spool under ./var, DICOM on port 11112,
# any calling AE accepted (a demo set-up; production lists its callers in a config file).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bash scripts/setup.sh
source scripts/env.sh
cargo build --release
export BRAINAGED__SPOOL__DIR=${BRAINAGED__SPOOL__DIR:-$root/var/spool}
export BRAINAGED__DICOM__ACCEPT_ANY_CALLER=${BRAINAGED__DICOM__ACCEPT_ANY_CALLER:-true}
exec ./target/release/brainaged serve "$@"
