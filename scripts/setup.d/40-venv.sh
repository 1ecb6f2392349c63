#!/usr/bin/env bash
# The tools' virtualenv (torch, MONAI, onnx), kept outside the repository so that a fresh clone on
# the same machine reuses it; rebuilt only when tools/requirements.txt changes.
set -euo pipefail
venv=${BRAINAGED_VENV:-$HOME/.cache/brainaged/venv}
req="$BRAINAGED_ROOT/tools/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
