#!/usr/bin/env bash
# Python peers and reference tools used by the tests, pinned.
set -euo pipefail
pip install -q --disable-pip-version-check -r "$BRAINAGED_ROOT/tools/requirements-test.txt"
