# Environment shared by scripts/test.sh and scripts/run.sh (sourced, not run).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The reference DICOM lives beside the project, never inside it.
export BRAINAGED_SHARED=${BRAINAGED_SHARED:-$(cd "$root/.." && pwd)/shared}
# DCMTK and Orthanc peers are 20–50× slower with Nagle's algorithm on.
export TCP_NODELAY=1
# Database for tests: the machine's PostgreSQL; each test creates its own database in it.
export BRAINAGED_TEST_PG=${BRAINAGED_TEST_PG:-postgres://postgres@127.0.0.1:5432/postgres}
[ -f "$root/.cache/ort/env.sh" ] && source "$root/.cache/ort/env.sh"
true
export BRAINAGED_VENV=${BRAINAGED_VENV:-$HOME/.cache/brainaged/venv}
