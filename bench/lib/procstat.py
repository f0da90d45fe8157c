#!/usr/bin/env python3
"""CPU time and peak memory of a process tree, from /proc.

`procstat.py cpu SID`  -> utime+stime in milliseconds, summed over every process of session SID
`procstat.py rss SID`  -> VmHWM (peak RSS) in KiB, summed over the session's processes
`procstat.py vmrss SID` -> VmRSS (current RSS) in KiB, summed likewise
The gateways are started with `setsid`, so a session is exactly one gateway
and everything it spawned (LiteLLM's uvicorn worker, tollgate's threads).
"""
import os
import sys

TICK = os.sysconf("SC_CLK_TCK")


def session_pids(sid):
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # Fields after the command name (which may hold spaces) start at state.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid:  # field 6: session
            yield int(name), fields


def cpu_ms(sid):
    total = 0
    for _, fields in session_pids(sid):
        total += int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    return total * 1000 // TICK


def rss_kib(sid, field="VmHWM:"):
    total = 0
    for pid, _ in session_pids(sid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith(field):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


if __name__ == "__main__":
    what, sid = sys.argv[1], int(sys.argv[2])
    print(cpu_ms(sid) if what == "cpu" else rss_kib(sid, "VmRSS:") if what == "vmrss" else rss_kib(sid))
