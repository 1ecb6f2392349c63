#!/usr/bin/env bash
# What one durable spool write costs on a filesystem, without DICOM or a database: the floor that
# the durability rule puts under every C-STORE of one association (storescu waits for each
# response, so nothing else can overlap it).
#
# For each of N files of SIZE bytes, in the directory DIR (use the spool's filesystem):
#   plain     create, write, close                           (what storescp to disk does)
#   datasync  create, write, fdatasync, close
#   durable   create, write, fdatasync, rename, fsync(dir)   (the rule with a named temporary
#                                                             file, as brainaged's spool writes)
#   commit    append 8 KiB to a log file, fdatasync           (what a database commit flushes)
#   both      durable and commit at the same time, from two threads: the two durable writes the
#             rule needs before each C-STORE response (spool file and index), overlapped as
#             brainaged overlaps them, with nothing else (PostgreSQL keeps its WAL on the same
#             filesystem unless told otherwise)
# Prints the median and 90th percentile of each, in ms.
#
# usage: bench/durable_write.sh [DIR] [N] [SIZE]
#   DIR   default: a new directory under /tmp (removed afterwards)
#   N     default: 500
#   SIZE  default: 43000 (a Philips DWI slice; the ingest benchmark's data)
set -euo pipefail
dir=${1:-}
n=${2:-500}
size=${3:-43000}
own=""
if [ -z "$dir" ]; then dir=$(mktemp -d /tmp/brainaged-flush.XXXXXX); own=1; fi
trap '[ -n "$own" ] && rm -rf "$dir"' EXIT
python3 - "$dir" "$n" "$size" <<'PY'
import os, sys, threading, time
root, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = os.urandom(size)
record = os.urandom(8192)


def write_file(d, dfd, i, mode):
    tmp = os.path.join(d, f".{i}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, data)
    if mode != "plain":
        os.fdatasync(fd)
    os.close(fd)
    if mode in ("durable", "both"):
        os.rename(tmp, os.path.join(d, f"{i}.dcm"))
        os.fsync(dfd)


class Committer(threading.Thread):
    """Appends a record to a log and flushes it each time it is asked, like a commit."""

    def __init__(self, path):
        super().__init__(daemon=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.asked, self.done = threading.Semaphore(0), threading.Semaphore(0)
        self.start()

    def run(self):
        while True:
            self.asked.acquire()
            os.write(self.fd, record)
            os.fdatasync(self.fd)
            self.done.release()


def run(mode):
    d = os.path.join(root, mode)
    os.makedirs(d)
    dfd = os.open(d, os.O_RDONLY)
    log = Committer(os.path.join(d, "log")) if mode in ("commit", "both") else None
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        if log:
            log.asked.release()
        if mode != "commit":
            write_file(d, dfd, i, mode)
        if log:
            log.done.acquire()
        times.append(time.perf_counter() - t0)
    os.close(dfd)
    times.sort()
    return times[n // 2] * 1e3, times[int(n * 0.9)] * 1e3

print(f"{n} files of {size} bytes in {root}")
for mode in ("plain", "datasync", "durable", "commit", "both"):
    med, p90 = run(mode)
    print(f"{mode:9s} median {med:6.3f} ms   p90 {p90:6.3f} ms")
PY
