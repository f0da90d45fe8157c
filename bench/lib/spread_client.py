#!/usr/bin/env python3
"""Spreads requests over many keys and tag values: request i carries the key
secret and the tags that `--key` and `--tags` give for i (Python format
strings over `i`), on keep-alive HTTP/1.1 connections from a few threads.
Used by `scale.sh` to put many distinct keys and tag values in use before a
measurement. Prints one JSON object: requests sent, status codes, seconds.

    spread_client.py --port P --body JSON -n 100000 \
        --key 'tg_scale{i:037d}' --tags 'user=u-{i},feature=summarize'
"""
import argparse
import http.client
import json
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("-n", type=int, required=True)
    ap.add_argument("--start", type=int, default=0, help="the first i (requests are i = start .. start + n - 1)")
    ap.add_argument("--key", required=True, help="format string over i: the key secret of request i")
    ap.add_argument("--tags", default="", help="format string over i: the x-tollgate-tags of request i")
    ap.add_argument("--threads", type=int, default=4)
    a = ap.parse_args()
    body = a.body.encode()
    codes = {}
    lock = threading.Lock()
    nxt = [a.start]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
        mine = {}
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= a.start + a.n:
                break
            headers = {"content-type": "application/json", "authorization": "Bearer " + a.key.format(i=i)}
            if a.tags:
                headers["x-tollgate-tags"] = a.tags.format(i=i)
            for attempt in range(2):
                try:
                    conn.request("POST", "/v1/chat/completions", body, headers)
                    r = conn.getresponse()
                    r.read()
                    mine[r.status] = mine.get(r.status, 0) + 1
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
                    if attempt == 1:
                        mine["error"] = mine.get("error", 0) + 1
        with lock:
            for k, v in mine.items():
                codes[str(k)] = codes.get(str(k), 0) + v

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    secs = time.monotonic() - t0
    print(json.dumps({"requests": a.n, "codes": codes, "seconds": round(secs, 2)}))
    if codes.get("200", 0) != a.n:
        print(f"not every answer was 200: {codes}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
