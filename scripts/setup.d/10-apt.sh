#!/usr/bin/env bash
# Debian packages: the PostgreSQL server (embedded cluster and tests), DCMTK and Orthanc (real DICOM
# peers), cmake and g++ (CharLS for JPEG-LS), MRtrix3 (DTI parity), python venv support,
# e2fsprogs and xfsprogs (the spool power-cut test makes and checks those filesystems), openssl
# (the DICOM-over-TLS tests make their certificates with it).
set -euo pipefail
packages=(postgresql dcmtk orthanc cmake g++ mrtrix3 python3-venv curl unzip e2fsprogs xfsprogs openssl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi
# The Debian orthanc package starts a service on 4242/8042; tests run their own instance.
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now orthanc >/dev/null 2>&1 || true; fi
pkill -x Orthanc 2>/dev/null || true
