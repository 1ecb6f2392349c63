#!/usr/bin/env python3
"""Sends every DICOM instance under the given folders to a storage SCP with pynetdicom, one
association per folder, proposing each file's own SOP class and transfer syntax.

usage: send_pynetdicom.py HOST PORT CALLED_AE CALLING_AE FOLDER...
Prints one JSON object: {"sent": n, "statuses": {"0x0000": n, ...}, "rejected_contexts": n,
"association_failures": n, "echoes": {...}}.

Environment: SCU_TLS_CA=PEM connects over TLS, trusting that CA for the server's certificate
(checked against the name "localhost"); SCU_TLS_CERT and SCU_TLS_KEY add a client certificate.
SCU_ECHO=1 sends a C-ECHO on each association before the C-STOREs. SCU_LOG sets pynetdicom's
log level (default WARNING).
"""
import json
import logging
import os
import ssl
import sys

import pydicom
from pynetdicom import AE

# pynetdicom explains aborts and timeouts in its log; keep its warnings for the test output.
# It may not explain a rejection: reading a fast one before it has looked at its socket, it takes
# it for a failed connection and logs nothing. Tests read rejection reasons from DCMTK instead.
logging.basicConfig(level=os.environ.get("SCU_LOG", "WARNING"), stream=sys.stderr)

host, port, called, calling = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
result = {"sent": 0, "statuses": {}, "rejected_contexts": 0, "association_failures": 0, "echoes": {}}
echo = os.environ.get("SCU_ECHO") == "1"
VERIFICATION = "1.2.840.10008.1.1"


def tls_args():
    ca = os.environ.get("SCU_TLS_CA")
    if not ca:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
    if os.environ.get("SCU_TLS_CERT"):
        context.load_cert_chain(os.environ["SCU_TLS_CERT"], os.environ["SCU_TLS_KEY"])
    return (context, "localhost")


def count(table, code):
    table[code] = table.get(code, 0) + 1


def files(folder):
    for root, _dirs, names in os.walk(folder):
        for name in sorted(names):
            path = os.path.join(root, name)
            try:
                ds = pydicom.dcmread(path)
            except Exception:
                continue
            if "SOPInstanceUID" in ds and "SOPClassUID" in ds:
                yield ds


for folder in sys.argv[5:]:
    datasets = list(files(folder))
    if not datasets:
        continue
    ae = AE(ae_title=calling)
    ae.acse_timeout = 30
    ae.dimse_timeout = 60
    for key in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(key[0], [key[1]])
    if echo:
        ae.add_requested_context(VERIFICATION)
    assoc = ae.associate(host, port, ae_title=called, max_pdu=0, tls_args=tls_args())
    if not assoc.is_established:
        result["association_failures"] += 1
        continue
    if echo:
        status = assoc.send_c_echo()
        count(result["echoes"], "none" if not status else "0x%04X" % status.Status)
    accepted = {(c.abstract_syntax, c.transfer_syntax[0]) for c in assoc.accepted_contexts}
    for ds in datasets:
        key = (str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID))
        if key not in accepted:
            result["rejected_contexts"] += 1
            continue
        status = assoc.send_c_store(ds)
        count(result["statuses"], "none" if not status else "0x%04X" % status.Status)
        result["sent"] += 1
    assoc.release()

print(json.dumps(result))
