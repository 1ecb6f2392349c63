#!/usr/bin/env bash
# What one call of the index function costs PostgreSQL, with and without the short path for a
# known series (migration 20261127000006): pgbench, one client, prepared statements, every call
# another instance of the same series and patient (what a study's instances almost all are).
#
# Two scratch databases on the same server: "before" has the migrations up to the one that adds
# the short path, "after" has all of them. They take turns, ROUNDS times, each for SECS seconds,
# with the commit flushed (synchronous_commit = on, what the receiver does) and unflushed (off:
# the server's work plus the round trip). Prints each median latency per call and after/before.
#
# usage: bench/index_function.sh [ROUNDS] [SECS]
#   PGHOST/PGPORT/PGUSER as for psql; default 127.0.0.1:5432, user postgres.
set -euo pipefail
rounds=${1:-5}
secs=${2:-6}
root=$(cd "$(dirname "$0")/.." && pwd)
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
short_path=20261127000006
work=$(mktemp -d /tmp/brainaged-ixbench.XXXXXX)
dbs=(brainaged_ixbench_before_$$ brainaged_ixbench_after_$$)
cleanup() {
    for db in "${dbs[@]}"; do psql -q -d postgres -c "DROP DATABASE IF EXISTS $db" || true; done
    rm -rf "$work"
}
trap cleanup EXIT

for db in "${dbs[@]}"; do
    psql -q -d postgres -c "CREATE DATABASE $db"
    for f in "$root"/migrations/*.sql; do
        version=$(basename "$f" | cut -d_ -f1)
        if [[ $db == *before* && $version -ge $short_path ]]; then continue; fi
        psql -q -v ON_ERROR_STOP=1 -d "$db" -f "$f"
    done
done

cat > "$work/call.sql" <<'EOF'
\set n random(1, 1000000000)
SELECT brainaged_index_instance('1.2.840.99.' || :client_id || '.' || :n,
    '1.2.840.10008.5.1.4.1.1.4', '1.2.840.99.series', '1.2.840.99.study', 7,
    'study/series/' || :n || '.dcm', '1.2.840.10008.1.2.1', 41234, 'STORESCU', now(), 'PID123',
    'Doe^Jane', 'F', '1950-01-01', '070Y', '2020-01-01', 'brain', 'ACC1', 'MR', 5, 'DTI',
    'DTI_32dir', 'ORIGINAL\PRIMARY\M');
EOF

for commit in on off; do
    for _ in $(seq "$rounds"); do
        for db in "${dbs[@]}"; do
            ms=$(PGOPTIONS="-c synchronous_commit=$commit" pgbench -n -c 1 -T "$secs" \
                -M prepared -f "$work/call.sql" "$db" |
                awk '/latency average/ {print $4}')
            echo "$commit ${db%_*} $ms" >> "$work/results"
        done
    done
done

python3 - "$work/results" <<'EOF'
import collections, statistics, sys
runs = collections.defaultdict(list)
for line in open(sys.argv[1]):
    commit, db, ms = line.split()
    runs[(commit, db.rsplit("_", 1)[-1])].append(float(ms))
for commit in ("on", "off"):
    before = statistics.median(runs[(commit, "before")])
    after = statistics.median(runs[(commit, "after")])
    print(f"synchronous_commit={commit:3}  before {before:.3f} ms  after {after:.3f} ms  "
          f"after/before {after / before:.2f}  (runs: {runs[(commit, 'before')]} / "
          f"{runs[(commit, 'after')]})")
EOF
