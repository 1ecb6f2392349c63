"""Seed corpora for the fuzz targets, made from the real series in ../shared/dicom.

Usage: python3 fuzz/seeds.py SHARED_DICOM_DIR OUT_DIR

Writes OUT_DIR/<target>/<name> for every target. Seeds are derived from the shared data, so
they are written outside the repository (fuzz/corpus is ignored) and never committed.
"""

import hashlib
import pathlib
import re
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent


def syntaxes():
    """The transfer syntaxes of src/scp/fuzz.rs, in its order: a seed's first byte picks one."""
    source = (HERE.parent / "src" / "scp" / "fuzz.rs").read_text()
    table = source[source.index("const SYNTAXES") :]
    return re.findall(r'"([0-9.]+)"', table[: table.index("];")])


SYNTAXES = syntaxes()
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
MAX_SEED = 1 << 20

# DCMTK's encoders, so that the converter's decoders (JPEG-LS, JPEG lossless, RLE) and the
# deflated reader are fuzzed from real encoded data, not only reached by chance.
COMPRESSORS = [
    ("dcmcjpls", ["+el"]),
    ("dcmcjpeg", ["+e1"]),
    ("dcmcrle", []),
    ("dcmconv", ["+td"]),
]


def part10(path):
    """(transfer syntax, dataset bytes) of a part-10 file, or None."""
    return part10_bytes(path.read_bytes())


def part10_bytes(raw):
    """(transfer syntax, dataset bytes) of a part-10 file's bytes, or None."""
    if len(raw) < 144 or raw[128:132] != b"DICM":
        return None
    group_len = struct.unpack_from("<I", raw, 140)[0]
    meta = raw[132 : 144 + group_len]
    start = 144 + group_len
    ts = None
    pos = 12
    while pos + 8 <= len(meta):
        elem = struct.unpack_from("<H", meta, pos + 2)[0]
        vr = meta[pos + 4 : pos + 6]
        if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT"):
            length = struct.unpack_from("<I", meta, pos + 8)[0]
            value = meta[pos + 12 : pos + 12 + length]
            pos += 12 + length
        else:
            length = struct.unpack_from("<H", meta, pos + 6)[0]
            value = meta[pos + 8 : pos + 8 + length]
            pos += 8 + length
        if elem == 0x0010:
            ts = value.decode("ascii", "replace").rstrip("\0 ")
    return ts, raw[start:]


def uid_element(elem, uid):
    value = uid.encode() + (b"\0" if len(uid) % 2 else b"")
    return struct.pack("<HHI", 0, elem, len(value)) + value


def us_element(elem, n):
    return struct.pack("<HHIH", 0, elem, 2, n)


def c_store_command(sop_instance):
    body = (
        uid_element(0x0002, MR_IMAGE)
        + us_element(0x0100, 0x0001)
        + us_element(0x0110, 7)
        + us_element(0x0700, 0)
        + us_element(0x0800, 0x0000)
        + uid_element(0x1000, sop_instance)
    )
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def item(kind, payload):
    return struct.pack(">BBH", kind, 0, len(payload)) + payload


def associate_rq(syntaxes):
    contexts = b""
    for i, ts in enumerate(syntaxes):
        sub = item(0x30, MR_IMAGE.encode()) + item(0x40, ts.encode())
        contexts += item(0x20, struct.pack(">BBBB", 2 * i + 1, 0, 0, 0) + sub)
    user = item(0x51, struct.pack(">I", 16384)) + item(0x52, b"1.2.3.4")
    body = (
        struct.pack(">HH", 1, 0)
        + b"BRAINAGED".ljust(16)
        + b"STORESCU".ljust(16)
        + bytes(32)
        + item(0x10, b"1.2.840.10008.3.1.1.1")
        + contexts
        + item(0x50, user)
    )
    return struct.pack(">BBI", 0x01, 0, len(body)) + body


def p_data(context, control, data):
    pdv = struct.pack(">IBB", len(data) + 2, context, control) + data
    return struct.pack(">BBI", 0x04, 0, len(pdv)) + pdv


def compressed(path):
    """The part-10 bytes of `path` re-encoded by each of COMPRESSORS found on PATH."""
    encoded = []
    with tempfile.TemporaryDirectory() as tmp:
        for tool, args in COMPRESSORS:
            dst = pathlib.Path(tmp) / tool
            if shutil.which(tool) is None:
                continue
            done = subprocess.run([tool, *args, str(path), str(dst)], capture_output=True)
            if done.returncode == 0 and dst.stat().st_size <= MAX_SEED:
                encoded.append(dst.read_bytes())
    return encoded


def write_file_seeds(out, raw):
    """A part-10 file as a seed of every target that reads files, and its dataset as one of
    c_store_dataset when the receiver accepts its transfer syntax."""
    for target in ("spool_file_converted", "convert_file", "spool_file_read_back"):
        write(out, target, raw)
    ts, dataset = part10_bytes(raw)
    if ts in SYNTAXES and len(dataset) <= MAX_SEED:
        write(out, "c_store_dataset", bytes([SYNTAXES.index(ts)]) + dataset)


def write(out, target, data):
    d = out / target
    d.mkdir(parents=True, exist_ok=True)
    (d / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    shared, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    for folder in sorted(p for p in shared.iterdir() if p.is_dir()):
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        encoded = False
        for path in files[:: max(1, len(files) // 6)]:
            if path.stat().st_size > 4 * MAX_SEED or part10(path) is None:
                continue
            write_file_seeds(out, path.read_bytes())
            if not encoded and path.stat().st_size <= MAX_SEED:
                for raw in compressed(path):
                    write_file_seeds(out, raw)
                encoded = True
    command = c_store_command("1.2.3.4.5")
    write(out, "command_set", command)
    write(out, "command_set", us_element(0x0100, 0x0030) + us_element(0x0110, 1))
    rq = associate_rq(SYNTAXES[:2])
    write(out, "pdu_stream", rq)
    write(out, "pdu_stream", rq + p_data(1, 0x03, command) + p_data(1, 0x02, b"\x08\x00\x18\x00"))
    write(out, "pdu_stream", associate_rq(SYNTAXES))


if __name__ == "__main__":
    main()
