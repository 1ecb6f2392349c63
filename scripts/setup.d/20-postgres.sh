#!/usr/bin/env bash
# The shared PostgreSQL server on 127.0.0.1:5432 that the tests use; start it if it is down.
set -euo pipefail
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    version=$(ls /etc/postgresql | sort -n | tail -1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432
