#!/usr/bin/env python3
"""Checks a brainaged spool against the folders that were sent to it, with pydicom as the
independent reader.

usage: compare.py SOURCE_DIR INDEX_JSON ACCEPTED_CLASSES_JSON

INDEX_JSON maps SOP Instance UID -> {"path": absolute spool file, "ts": transfer syntax in the
index}. Every DICOM instance under SOURCE_DIR whose SOP class is accepted must be in the index,
and its spool file must be valid part-10 with the same SOP Instance UID and byte-identical pixel
data (when the file was sent in its own transfer syntax) or the same decoded pixels (otherwise).
Prints one JSON object with the counts and every problem found.
"""
import json
import os
import sys

import pydicom


def instances(source):
    for root, _dirs, files in os.walk(source):
        for name in sorted(files):
            path = os.path.join(root, name)
            try:
                ds = pydicom.dcmread(path)
            except Exception:
                continue  # README, notes, anything that is not DICOM
            uid = ds.get("SOPInstanceUID")
            if uid is None:
                continue  # DICOMDIR and other non-instances
            yield path, ds


def main():
    source, index_path, accepted_path = sys.argv[1:4]
    with open(index_path) as f:
        index = json.load(f)
    with open(accepted_path) as f:
        accepted = set(json.load(f))
    report = {"expected": 0, "matched": 0, "not_accepted": 0, "missing": [], "mismatched": []}
    for path, src in instances(source):
        uid = str(src.SOPInstanceUID)
        if str(src.SOPClassUID) not in accepted:
            report["not_accepted"] += 1
            continue
        report["expected"] += 1
        row = index.get(uid)
        if row is None:
            report["missing"].append(path)
            continue
        problem = check(src, row)
        if problem:
            report["mismatched"].append({"source": path, "problem": problem})
        else:
            report["matched"] += 1
    report["indexed"] = len(index)
    print(json.dumps(report))


def check(src, row):
    try:
        got = pydicom.dcmread(row["path"])  # part-10 with preamble and meta, or this fails
    except Exception as e:
        return f"stored file unreadable: {e}"
    if str(got.SOPInstanceUID) != str(src.SOPInstanceUID):
        return "SOP Instance UID differs"
    if str(got.file_meta.MediaStorageSOPInstanceUID) != str(src.SOPInstanceUID):
        return "MediaStorageSOPInstanceUID differs"
    if str(got.file_meta.TransferSyntaxUID) != row["ts"]:
        return f"meta transfer syntax {got.file_meta.TransferSyntaxUID} != index {row['ts']}"
    if "PixelData" not in src:
        return None
    if "PixelData" not in got:
        return "pixel data missing"
    if got.file_meta.TransferSyntaxUID == src.file_meta.TransferSyntaxUID:
        if got.PixelData != src.PixelData:
            return "pixel data bytes differ"
        return None
    # Sent in another transfer syntax: the decoded pixels must agree.
    if not (got.pixel_array == src.pixel_array).all():
        return "decoded pixels differ"
    return None


if __name__ == "__main__":
    main()
