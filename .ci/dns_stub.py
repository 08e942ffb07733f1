#!/usr/bin/env python3
"""A tiny DNS server for the static-binary check: answers A queries for
names under kiae-dns.test with 127.0.0.1, AAAA with no data, the rest with
NXDOMAIN. Listens on 127.0.0.1:53 (UDP) until killed."""
import socket
import struct

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 53))
while True:
    data, peer = sock.recvfrom(512)
    if len(data) < 12:
        continue
    qid, _flags, qd = struct.unpack(">HHH", data[:6])
    i, labels = 12, []
    while i < len(data) and data[i] != 0:
        n = data[i]
        labels.append(data[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    question = data[12:i + 5]
    qtype = struct.unpack(">H", data[i + 1:i + 3])[0] if i + 3 <= len(data) else 0
    name = ".".join(labels).lower()
    ours = name.endswith("kiae-dns.test")
    answers = b""
    if ours and qtype == 1:
        answers = struct.pack(">HHHIH", 0xC00C, 1, 1, 60, 4) + socket.inet_aton("127.0.0.1")
    rcode = 0 if ours else 3
    header = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
    sock.sendto(header + question + answers, peer)
