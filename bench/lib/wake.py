#!/usr/bin/env python3
"""What one socket hand-off costs on this machine: a byte sent back and forth
between two processes over a Unix socket pair, with both pinned to the same
core, then to different cores, either back to back or with a pause between
round trips (as requests arriving at 2,000 req/s leave the cores idle in
between). Each round trip is two hand-offs. Prints one JSON object with
the p50 and p99 round trip in microseconds per case.

The difference between "other core, paused" and "same core, paused" is what
waking an idle core costs, twice: on a virtual machine that is an
inter-processor interrupt through the hypervisor.
"""
import json
import os
import socket
import time


def round_trips(core_a, core_b, n, pause_s):
    a, b = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        a.close()
        os.sched_setaffinity(0, {core_b})
        while True:
            d = b.recv(64)
            if not d:
                os._exit(0)
            b.send(d)
    b.close()
    os.sched_setaffinity(0, {core_a})
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        a.send(b"x")
        a.recv(64)
        times.append((time.perf_counter() - t0) * 1e6)
        if pause_s:
            time.sleep(pause_s)
    a.close()
    os.waitpid(pid, 0)
    times.sort()
    return {"p50_us": round(times[len(times) // 2], 1), "p99_us": round(times[int(len(times) * 0.99)], 1)}


def main():
    if len(os.sched_getaffinity(0)) < 2:
        print(json.dumps({"error": "needs two cores"}))
        return
    out = {}
    for pause_name, pause in (("back_to_back", 0.0), ("paused_500us", 0.0005)):
        n = 20000 if pause == 0 else 3000
        out[f"same_core_{pause_name}"] = round_trips(0, 0, n, pause)
        out[f"other_core_{pause_name}"] = round_trips(0, 1, n, pause)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
