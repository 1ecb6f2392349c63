#!/usr/bin/env bash
# The ICBM152 2009a template (T1, brain mask, GM/WM/CSF maps) that registration and the subject
# brain mask use. It ships inside the PyPI wheel nilearn==0.14.1; we fetch the wheel without its
# dependencies and unpack only the template files into the data directory, outside git.
# Idempotent: a stamp file records what was unpacked.
set -euo pipefail
data=${BRAINAGED_DATA:-$HOME/.cache/brainaged}
dest="$data/templates/icbm152_2009a"
stamp="$dest/.nilearn-0.14.1"
if [ -f "$stamp" ]; then exit 0; fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    "nilearn==0.14.1" -d "$tmp"
wheel=$(ls "$tmp"/nilearn-0.14.1-*.whl)
mkdir -p "$dest"
python3 - "$wheel" "$dest" <<'PY'
import os, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
prefix = "nilearn/datasets/data/"
count = 0
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = name[len(prefix):]
        if name.startswith(prefix) and base.startswith("mni_icbm152_") and "/" not in base:
            with z.open(name) as src, open(os.path.join(dest, base), "wb") as out:
                out.write(src.read())
            count += 1
if count == 0:
    sys.exit("no mni_icbm152_* files in " + wheel)
print(f"template: {count} files unpacked to {dest}")
PY
touch "$stamp"
