#!/usr/bin/env bash
# Coverage-guided fuzzing of what a DICOM peer controls, with libFuzzer on the stable toolchain
# (the instrumentation cargo-fuzz asks rustc for, without its nightly-only sanitizer).
#
#   bash fuzz/run.sh [SECONDS] [TARGET...]     # default: 300 s for each target
#
# Targets (fuzz/fuzz_targets/, entry points in src/scp/fuzz.rs):
#   c_store_dataset       a C-STORE dataset in any accepted transfer syntax, as the receiver
#                         reads it
#   command_set           a DIMSE command set
#   pdu_stream            a TCP stream of PDUs: A-ASSOCIATE-RQ negotiation, P-DATA-TF framing
#   spool_file_converted  a part-10 file whose dataset the receiver accepts, converted and
#                         written as the job worker does
#   convert_file          any file with the part-10 magic, converted as `brainaged convert`
#                         reads a folder
#   spool_file_read_back  any file in the spool, read back as `brainaged reindex` reads it
# Seeds come from the shared real series (BRAINAGED_SHARED, default ../shared) into
# fuzz/corpus/ (ignored); findings go to fuzz/artifacts/<target>/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-300}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(c_store_dataset command_set pdu_stream spool_file_converted convert_file spool_file_read_back)
shared=${BRAINAGED_SHARED:-$here/../../shared}

export SQLX_OFFLINE=true
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps these flags off build scripts and proc macros, which are linked
# without libFuzzer.
triple=$(rustc -vV | sed -n 's/^host: //p')
(cd "$here" && cargo build --release --bins --target "$triple")
bin="$here/target/$triple/release"

[ -d "$here/corpus" ] || python3 "$here/seeds.py" "$shared/dicom" "$here/corpus"
status=0
for t in "${targets[@]}"; do
    mkdir -p "$here/corpus/$t" "$here/artifacts/$t"
    echo "== $t: ${secs} s"
    "$bin/$t" "$here/corpus/$t" \
        -max_total_time="$secs" -max_len=4194304 -rss_limit_mb=4096 -timeout=20 \
        -artifact_prefix="$here/artifacts/$t/" -print_final_stats=1 || status=$?
done
exit $status
