#!/usr/bin/env python3
"""Streaming latency probe: sends N streamed chat requests one after another on
one keep-alive HTTP/1.1 connection and times, per request, the first SSE
`data:` byte and the last byte of the chunked body. Prints one JSON object.

Raw sockets (no HTTP library) so the client's own cost is small and the same
for every target; what matters is the difference between targets.
"""
import argparse
import json
import socket
import statistics
import sys
import time


def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


class Conn:
    """A socket with a read buffer consumed by offset (no copy of the rest of
    the buffer per line or chunk taken)."""

    def __init__(self, host, port):
        self.addr = (host, port)
        self.sock = None
        self.buf = b""
        self.pos = 0

    def connect(self):
        self.sock = socket.create_connection(self.addr, timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.pos = 0

    def read_more(self):
        d = self.sock.recv(65536)
        if not d:
            raise ConnectionError("connection closed")
        self.buf = self.buf[self.pos:] + d
        self.pos = 0

    def read_until(self, sep):
        while True:
            i = self.buf.find(sep, self.pos)
            if i >= 0:
                out = self.buf[self.pos:i]
                self.pos = i + len(sep)
                return out
            self.read_more()

    def read_exact(self, n):
        while len(self.buf) - self.pos < n:
            self.read_more()
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def one(conn, request):
    """Returns (status, t_first_data, t_last, body) with times relative to the send."""
    t0 = time.perf_counter()
    conn.sock.sendall(request)
    head = conn.read_until(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        headers[k.strip().lower()] = v.strip()
    t_first = None
    body = b""
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        # Parts joined once at the end: a 10,000-chunk stream must not cost
        # the probe a quadratic copy.
        parts = []
        while True:
            size_line = conn.read_until(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                conn.read_until(b"\r\n")
                break
            chunk = conn.read_exact(size)
            conn.read_exact(2)
            parts.append(chunk)
            if t_first is None and (b"data:" in chunk or b"data:" in b"".join(parts[-2:])):
                t_first = time.perf_counter() - t0
        body = b"".join(parts)
    else:
        n = int(headers.get(b"content-length", b"0"))
        body = conn.read_exact(n)
        t_first = time.perf_counter() - t0
    t_last = time.perf_counter() - t0
    if headers.get(b"connection", b"").lower() == b"close":
        conn.sock.close()
        conn.connect()
    return status, t_first, t_last, body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/v1/chat/completions")
    ap.add_argument("--body", required=True)
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("-n", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args()

    body = args.body.encode()
    hdrs = [f"POST {args.path} HTTP/1.1", f"Host: {args.host}:{args.port}", "Content-Type: application/json",
            f"Content-Length: {len(body)}", "Accept: text/event-stream"] + args.header
    request = ("\r\n".join(hdrs) + "\r\n\r\n").encode() + body

    conn = Conn(args.host, args.port)
    conn.connect()
    firsts, lasts, errors, checked = [], [], 0, False
    for i in range(args.warmup + args.n):
        try:
            status, tf, tl, b = one(conn, request)
        except Exception as e:  # noqa: BLE001 - a probe reports, it does not crash
            errors += 1
            print(f"stream_client: {e}", file=sys.stderr)
            conn.connect()
            continue
        if status != 200 or tf is None:
            errors += 1
            if errors < 3:
                print(f"stream_client: status {status}: {b[:300]!r}", file=sys.stderr)
            continue
        if not checked:
            checked = True
            if b"data:" in b and b"[DONE]" not in b and b"message_stop" not in b:
                print(f"stream_client: stream without a terminator: {b[-200:]!r}", file=sys.stderr)
        if i >= args.warmup:
            firsts.append(tf * 1e6)
            lasts.append(tl * 1e6)
    out = {"n": len(firsts), "errors": errors}
    for name, xs in (("ttfb_us", firsts), ("ttlb_us", lasts)):
        out[name] = {p: pct(xs, float(p)) for p in ("50", "90", "99")}
        out[name]["mean"] = statistics.fmean(xs) if xs else None
    print(json.dumps(out))


if __name__ == "__main__":
    main()
