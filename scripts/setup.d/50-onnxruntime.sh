#!/usr/bin/env bash
# ONNX Runtime's shared library for the `ort` crate (load-dynamic), taken from the PyPI wheel so
# that the version is pinned and no system package is needed. CPU build by default;
# BRAINAGED_GPU=1 takes onnxruntime-gpu and the CUDA 13 / cuDNN 9 wheels instead.
# Result: $BRAINAGED_ROOT/.cache/ort/{lib/,env.sh}; scripts/env.sh sources env.sh.
set -euo pipefail
root=${BRAINAGED_ROOT:?BRAINAGED_ROOT must be set}
version=1.31.1
gpu=${BRAINAGED_GPU:-0}
flavour=cpu
[ "$gpu" = "1" ] && flavour=gpu
dest="$root/.cache/ort"
stamp="$dest/.installed"
want="onnxruntime-$flavour-$version"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$dest/env.sh" ] \
    && ls "$dest"/lib/libonnxruntime.so.* >/dev/null 2>&1; then exit 0; fi

wheels=${BRAINAGED_WHEEL_CACHE:-$HOME/.cache/brainaged/wheels}
mkdir -p "$wheels" "$dest/lib"
rm -f "$dest/lib"/*

unpack() { # wheel, glob inside the wheel, target dir
    python3 - "$1" "$2" "$3" <<'PY'
import fnmatch, os, sys, zipfile
wheel, pattern, target = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if fnmatch.fnmatch(name, pattern):
            out = os.path.join(target, os.path.basename(name))
            with z.open(name) as src, open(out, "wb") as dst:
                dst.write(src.read())
PY
}

if [ "$flavour" = "cpu" ]; then
    pkg=onnxruntime
else
    pkg=onnxruntime-gpu
fi
wheel=$(ls "$wheels"/${pkg//-/_}-$version-*.whl 2>/dev/null | head -1 || true)
if [ -z "$wheel" ]; then
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        -d "$wheels" "$pkg==$version"
    wheel=$(ls "$wheels"/${pkg//-/_}-$version-*.whl | head -1)
fi
unpack "$wheel" 'onnxruntime/capi/libonnxruntime*' "$dest/lib"

extra=""
if [ "$flavour" = "gpu" ]; then
    # CUDA 13 runtime libraries and cuDNN 9 as NVIDIA publishes them on PyPI.
    cuda_dir="$dest/cuda"
    mkdir -p "$cuda_dir"
    python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: -d "$wheels" \
        "nvidia-cuda-runtime==13.*" "nvidia-cublas==13.*" "nvidia-cufft==12.*" "nvidia-curand==10.*" \
        "nvidia-cuda-nvrtc==13.*" "nvidia-cudnn-cu13==9.*"
    for w in "$wheels"/nvidia_*.whl; do
        unpack "$w" 'nvidia/*/lib/lib*.so*' "$cuda_dir"
    done
    extra="export LD_LIBRARY_PATH=\"$cuda_dir:$dest/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}\""
fi

lib=$(ls "$dest"/lib/libonnxruntime.so.* | head -1)
{
    echo "# Written by scripts/setup.d/50-onnxruntime.sh ($want)."
    echo "export ORT_DYLIB_PATH=\"$lib\""
    [ -n "$extra" ] && echo "$extra"
    true
} > "$dest/env.sh"
echo "$want" > "$stamp"
echo "onnxruntime $version ($flavour) at $lib"
