#!/usr/bin/env python3
"""Capacity of one Redis primary as tollgate's shared counter store.

A scaled-down simulation: it drives the real counter script
(`crates/tollgate/src/store/counters.lua`) the way the gateway's
`RedisCounters` does, and measures what each gateway request costs Redis.

One simulated request = one `reserve` call of the script touching K counters
(the asks built exactly as `push_ask` / `kind_args` build them: key, kind, a,
b, limit, amount), then one `settle` call with the actual amounts. That is
two round trips per request. `reserve` also runs the lease-expiry sweep
(`expire()` at the top of the reserve branch), so there is no third call.

For each scenario the script runs C client connections (threads spread over
a few driver processes) for a fixed time and reports:

  - requests/s completed;
  - round trips per request (counted by the driver);
  - Redis commands per request, from `INFO commandstats` deltas: the outer
    EVALSHA/EVAL calls and the commands the script runs inside Redis;
  - Redis CPU per request, from `INFO cpu` deltas (used_cpu_user +
    used_cpu_sys of the server process, and of its main thread): this is
    the figure that extrapolates, since the script runs on the main thread;
  - the script's own execution time per request (commandstats usec of
    EVALSHA/EVAL);
  - p50 / p99 latency of `reserve` as the client saw it (includes the
    driver's own queuing: Python threads under one GIL per process);
  - how busy Redis was (CPU seconds / wall seconds), to tell whether Redis
    or the driver was the bottleneck.

A ceiling row runs the same driver with two plain INCRs per "request"
instead of the script: if the script rows reach about the same requests/s
as the ceiling, the driver saturated, not Redis.

Scenarios (defaults; about 2.5 minutes in all at 10 s each):
  - concurrency sweep, K=4 counters (key budget, team budget, org budget, key
    rpm token bucket), C = 1, 4, 16, 64;
  - counters sweep at C=16: K = 1, 8;
  - K=4 with EVAL of the full script text on every call (what
    `RedisCounters::call` does today) instead of EVALSHA;
  - K=4 + one rolling budget seeded with 3,600 seconds of spend (a 1-hour
    rolling budget on a busy scope), to show the cost of kind R;
  - K=4 where 1 % of requests never settle and hold a 2 s lease, so later
    reserves sweep and give back expired leases;
  - K=4 pipelined: 4 connections each sending the reserves of 32 requests
    in one pipeline, then their 32 settles. Not how the gateway talks (its
    multiplexed connection pipelines only what is concurrent); it takes most
    of the per-call overhead out of Redis's figure and pushes Redis harder
    than the one-at-a-time rows (latency columns are per batch there);
  - the INCR ceiling at C = 1, 16, 64.

Budget counters are seeded once per run before the clock starts (the
script refuses to reserve on a budget counter never seeded, as the gateway
seeds each budget from its ledger when it installs it).

Requirements: Python 3.9+ and redis-py (`pip install redis`). If the
`hiredis` package happens to be installed redis-py uses it and the driver
gets faster; it is not needed.

Usage:
  python3 bench/redis_capacity.py                      # all scenarios, 10 s each
  python3 bench/redis_capacity.py --duration 3         # quicker
  python3 bench/redis_capacity.py --reps 3 --duration 5   # medians of 3 runs (noisy machine)
  python3 bench/redis_capacity.py --url redis://127.0.0.1:6379/0 --json out.json

All keys live under the prefix `tgbench:<pid>:` (KEYS[1] of the script) and
are deleted at the end. The script is loaded with SCRIPT LOAD and left in the
script cache (it is the gateway's own script; SCRIPT FLUSH would affect
other users of the server).

Caveats: the driver runs on the same machine as Redis and competes with it
for CPU; the connection layout (C separate connections, one request at a time
on each) costs Redis more system time per command than the gateway's single
multiplexed connection per replica would, so CPU per request here is, if
anything, pessimistic for the network part.
"""

from __future__ import annotations

import argparse
import calendar
import json
import multiprocessing as mp
import os
import random
import re
import statistics
import sys
import threading
import time
from datetime import datetime, timezone

try:
    import redis
except ImportError:  # pragma: no cover
    sys.exit("redis-py is required: pip install redis")

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT_PATH = os.path.join(HERE, "..", "crates", "tollgate", "src", "store", "counters.lua")

# The gateway's lease (crates/tollgate/src/govern/governor.rs LEASE_MS).
LEASE_MS = 15 * 60_000

# Simulated tenants: keys belong to teams, teams to orgs.
N_KEYS, N_TEAMS, N_ORGS = 1000, 50, 10

# Every command counters.lua calls (INFO commandstats counts commands run by
# scripts too); filled from the script's text in main().
SCRIPT_COMMANDS: set = set()

NANOS = 1_000_000_000  # nano-dollars per dollar (the counters' money unit)


# ---------------------------------------------------------------- asks


def month_window(now_ms: int) -> tuple[int, int]:
    d = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
    start = datetime(d.year, d.month, 1, tzinfo=timezone.utc)
    ny, nm = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
    end = datetime(ny, nm, 1, tzinfo=timezone.utc)
    return calendar.timegm(start.timetuple()) * 1000, calendar.timegm(end.timetuple()) * 1000


def day_window(now_ms: int) -> tuple[int, int]:
    start = now_ms - now_ms % 86_400_000
    return start, start + 86_400_000


def ask(key: str, kind: str, a: int, b: int, limit: int, amount: int) -> list[str]:
    """Six fields, as `push_ask` writes them (limit -1 = none)."""
    return [key, kind, str(a), str(b), str(limit), str(amount)]


def build_asks(k: int, key_no: int, now_ms: int, rolling: bool, cost: int, tokens: int):
    """The counters one request touches, in the order the governor asks them
    (budgets first, then limits): a list of (ask, what settle books on it),
    ask being the 6 fields and what one of "cost", "tokens", "one"."""
    team, org = key_no % N_TEAMS, key_no % N_ORGS
    ms, me = month_window(now_ms)
    ds, de = day_window(now_ms)
    big = 10**6 * NANOS  # $1M: limits that never refuse in a 10 s run, but are checked
    # Key names as the governor builds them: budget:<id>:<scope>:<period>, limit:<id>.
    budgets = [
        (ask(f"budget:key-{key_no}:key=vk-{key_no}:month", "W", ms, me, big, cost), "cost"),
        (ask(f"budget:team-{team}:team=team-{team}:day", "W", ds, de, big, cost), "cost"),
        (ask(f"budget:org-{org}:org=org-{org}:month", "W", ms, me, big, cost), "cost"),
        (ask("budget:prod:env=prod:month", "W", ms, me, big, cost), "cost"),
        (ask(f"budget:feat-{key_no % 7}:feature=f{key_no % 7}:day", "W", ds, de, big, cost), "cost"),
        # alert-only (no limit)
        (ask(f"budget:model-{key_no % 3}:model=m{key_no % 3}*:month", "W", ms, me, -1, cost), "cost"),
    ]
    limits = [
        # Rate { capacity, window_ms } -> ("T", capacity, window_ms, -1)
        (ask(f"limit:rpm-{key_no}", "T", 100_000, 60_000, -1, 1), "one"),
        (ask(f"limit:tpm-{key_no}", "T", 10**9, 60_000, -1, tokens), "tokens"),
    ]
    if k == 1:
        chosen = budgets[:1]
    elif k == 4:
        chosen = budgets[:3] + limits[:1]
    elif k == 8:
        chosen = budgets[:6] + limits[:2]
    else:  # any other K: budgets first, then limits, repeated shapes
        pool = budgets + limits
        chosen = [pool[i % len(pool)] for i in range(k)]
    if rolling:
        # Rolling { len_ms, limit } -> ("R", len_ms, 0, limit)
        roll = ask(f"budget:team-{team}-1h:team=team-{team}:rolling:1h", "R", 3_600_000, 0, big, cost)
        chosen = chosen[:-1] + [(roll, "cost")] + chosen[-1:]
    return chosen


def seed_counters(r, cfg: dict) -> int:
    """Seeds every budget counter (kinds W and R) the scenario can touch, as
    the gateway does when it installs a budget (`seed`, from the ledger):
    the script refuses to reserve on a sum counter never seeded. Window
    budgets start empty; the 1-hour rolling budgets start with a spend in
    each of the last 3,600 seconds (what a busy scope carries in steady
    state). Token buckets (T) need no seed."""
    if cfg["mode"] == "incr":
        return 0
    now = int(time.time() * 1000)
    secs = now // 1000
    seen = {}
    for key_no in range(N_KEYS):
        for a, _ in build_asks(cfg["k"], key_no, now, cfg["rolling"], 1, 1):
            if a[1] != "T":
                seen.setdefault(a[0], a[:5])
    pipe = r.pipeline(transaction=False)
    for i, (key, kind, a, b, limit) in enumerate(seen.values()):
        args = ["seed", str(now), key, kind, a, b, limit]
        if kind == "R":
            for sec in range(secs - 3599, secs + 1):
                args.extend([str(sec), "1000000"])
        pipe.evalsha(cfg["sha"], 1, cfg["prefix"], *args)
        if i % 200 == 199:
            pipe.execute()
    pipe.execute()
    return len(seen)


# ---------------------------------------------------------------- workers


def worker_proc(cfg: dict, n_threads: int, ready, go, deadline, out_q, seed: int):
    """One driver process: n_threads threads, one connection each."""
    results = []
    errors = []
    lock = threading.Lock()

    def thread_main(tid: int):
        rng = random.Random(seed * 1000 + tid)
        r = redis.Redis.from_url(cfg["url"], single_connection_client=True)
        r.ping()
        prefix, sha, script = cfg["prefix"], cfg["sha"], cfg["script"]
        mode, k = cfg["mode"], cfg["k"]
        abandon = cfg["abandon"]
        lease_ms = cfg["lease_ms"]
        lat = []
        done = refused = abandoned = 0
        ready.release()
        go.wait()
        end = deadline.value
        now_f = time.time
        mono = time.monotonic
        if mode == "incr":
            k1, k2 = prefix + "ceil:a", prefix + "ceil:b"
            while mono() < end:
                t0 = mono()
                r.execute_command("INCR", k1)
                lat.append(mono() - t0)
                r.execute_command("INCR", k2)
                done += 1
        else:
            use_eval = mode == "eval"
            call = ("EVAL", script) if use_eval else ("EVALSHA", sha)

            def one():
                """A request's asks, its reserve arguments, and a function of the lease giving its settle arguments."""
                key_no = rng.randrange(N_KEYS)
                cost = rng.randint(5_000_000, 50_000_000)  # upper bound: $0.005 .. $0.05
                tokens = rng.randint(500, 8_000)
                chosen = build_asks(k, key_no, int(now_f() * 1000), cfg["rolling"], cost, tokens)
                args = ["reserve", str(int(now_f() * 1000)), str(lease_ms), str(len(chosen))]
                for a, _ in chosen:
                    args.extend(a)
                # The lease id, chosen at random by the caller (as RedisCounters does).
                args.append(str(rng.getrandbits(63)))

                def settle(lease):
                    # settle: lease, n, the same asks, then what was actually used
                    actual_cost = cost * rng.randint(20, 100) // 100
                    actual_tokens = tokens * rng.randint(20, 100) // 100
                    sargs = ["settle", str(int(now_f() * 1000)), str(lease), str(len(chosen))]
                    used = []
                    for a, what in chosen:
                        sargs.extend(a)
                        used.append(actual_cost if what == "cost" else actual_tokens if what == "tokens" else int(a[5]))
                    sargs.extend(str(u) for u in used)
                    return sargs

                return chosen, args, settle

            def check(v, chosen) -> bool:
                if v[0] == b"ok":
                    return True
                if v[0] == b"unseeded":
                    with lock:
                        errors.append(f"counter {chosen[int(v[1])][0][0]} was not seeded")
                    raise StopIteration
                return False

            batch = cfg.get("batch", 0)
            try:
                while mono() < end:
                    if batch:
                        # Saturation check: `batch` requests' reserves in one pipeline, then their settles.
                        reqs = [one() for _ in range(batch)]
                        pipe = r.pipeline(transaction=False)
                        for _, args, _ in reqs:
                            pipe.execute_command(*call, 1, prefix, *args)
                        t0 = mono()
                        answers = pipe.execute()
                        lat.append(mono() - t0)
                        pipe = r.pipeline(transaction=False)
                        for (chosen, _, settle), v in zip(reqs, answers):
                            if check(v, chosen):
                                pipe.execute_command(*call, 1, prefix, *settle(v[1]))
                            else:
                                refused += 1
                        pipe.execute()
                        done += batch
                        continue
                    chosen, args, settle = one()
                    t0 = mono()
                    v = r.execute_command(*call, 1, prefix, *args)
                    lat.append(mono() - t0)
                    if not check(v, chosen):
                        refused += 1
                        done += 1
                        continue
                    if abandon and rng.random() < abandon:
                        abandoned += 1  # the "replica died": never settled, its lease runs out
                        done += 1
                        continue
                    r.execute_command(*call, 1, prefix, *settle(v[1]))
                    done += 1
            except StopIteration:
                pass
        r.close()
        with lock:
            results.append((done, refused, abandoned, lat))

    threads = [threading.Thread(target=thread_main, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = sum(x[0] for x in results)
    refused = sum(x[1] for x in results)
    abandoned = sum(x[2] for x in results)
    lat = [v for x in results for v in x[3]]
    # Keep the result message bounded: a uniform sample of latencies.
    if len(lat) > 200_000:
        lat = random.Random(seed).sample(lat, 200_000)
    out_q.put((done, refused, abandoned, lat, errors))


# ---------------------------------------------------------------- Redis stats


def snapshot(r: "redis.Redis") -> dict:
    cpu = r.info("cpu")
    stats = r.info("commandstats")
    cmds = {name[len("cmdstat_"):] if name.startswith("cmdstat_") else name: v for name, v in stats.items()}
    return {
        "t": time.monotonic(),
        "cpu": cpu["used_cpu_user"] + cpu["used_cpu_sys"],
        "cpu_main": cpu.get("used_cpu_user_main_thread", 0) + cpu.get("used_cpu_sys_main_thread", 0),
        "cmds": {k: (v["calls"], v["usec"]) for k, v in cmds.items()},
    }


def delta_cmds(a: dict, b: dict) -> dict:
    out = {}
    for name, (calls, usec) in b["cmds"].items():
        c0, u0 = a["cmds"].get(name, (0, 0))
        if calls - c0:
            out[name] = (calls - c0, usec - u0)
    # INFO is ours (the snapshots); not part of the workload.
    out.pop("info", None)
    return out


def pct(xs: list, p: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    i = min(len(xs) - 1, max(0, int(round(p / 100 * (len(xs) - 1)))))
    return xs[i]


# ---------------------------------------------------------------- one run


def run(r, base_cfg: dict, name: str, mode: str, c: int, k: int, duration: float, procs: int, **extra) -> dict:
    cfg = dict(base_cfg, mode=mode, k=k, rolling=False, abandon=0.0, lease_ms=LEASE_MS)
    cfg.update(extra)
    seed_counters(r, cfg)
    n_procs = max(1, min(procs, c))
    per = [c // n_procs + (1 if i < c % n_procs else 0) for i in range(n_procs)]
    ctx = mp.get_context("fork")
    ready = ctx.Semaphore(0)
    go = ctx.Event()
    deadline = ctx.Value("d", 0.0)
    out_q = ctx.Queue()
    ps = [
        ctx.Process(target=worker_proc, args=(cfg, n, ready, go, deadline, out_q, 7919 * (i + 1)), daemon=True)
        for i, n in enumerate(per)
    ]
    for p in ps:
        p.start()
    for _ in range(c):
        ready.acquire()
    before = snapshot(r)
    deadline.value = time.monotonic() + duration
    go.set()
    res = [out_q.get() for _ in ps]
    for p in ps:
        p.join()
    after = snapshot(r)
    errs = [e for x in res for e in x[4]]
    if errs:
        raise SystemExit(f"{name}: {errs[0]} ({len(errs)} errors)")
    wall = after["t"] - before["t"]
    done = sum(x[0] for x in res)
    refused = sum(x[1] for x in res)
    abandoned = sum(x[2] for x in res)
    lat = [v for x in res for v in x[3]]
    cmds = delta_cmds(before, after)
    outer_names = ("evalsha", "eval") if mode != "incr" else ("incr",)
    outer = sum(cmds.get(n, (0, 0))[0] for n in outer_names)
    script_usec = sum(cmds.get(n, (0, 0))[1] for n in ("evalsha", "eval"))
    # Only the commands counters.lua can run; anything else is another client of the server.
    inner = {n: v[0] for n, v in cmds.items() if n in SCRIPT_COMMANDS and n not in outer_names}
    inner_total = sum(inner.values()) if mode != "incr" else 0
    other = sum(v[0] for n, v in cmds.items() if n not in outer_names and (mode == "incr" or n not in SCRIPT_COMMANDS))
    settled = done - refused - abandoned
    rt = (done + settled) / done if mode != "incr" and done else 2.0
    if cfg.get("batch"):
        rt /= cfg["batch"]
    cpu = after["cpu"] - before["cpu"]
    cpu_main = after["cpu_main"] - before["cpu_main"]
    expected_outer = (done + settled) if mode != "incr" else 2 * done
    row = {
        "name": name,
        "mode": mode,
        "C": c,
        "K": len(build_asks(k, 0, int(time.time() * 1000), cfg["rolling"], 1, 1)) if mode != "incr" else 0,
        "rolling": cfg["rolling"],
        "abandon": cfg["abandon"],
        "lease_ms": cfg["lease_ms"],
        "seconds": round(wall, 2),
        "requests": done,
        "refused": refused,
        "abandoned": abandoned,
        "req_per_s": done / wall,
        "round_trips_per_req": rt,
        "outer_cmds_per_req": outer / done if done else 0,
        "inner_cmds_per_req": inner_total / done if done else 0,
        "inner_cmds": {n: round(v / done, 2) for n, v in sorted(inner.items())} if done else {},
        "redis_cpu_us_per_req": cpu / done * 1e6 if done else 0,
        "redis_main_cpu_us_per_req": cpu_main / done * 1e6 if done else 0,
        "script_us_per_req": script_usec / done if done else 0,
        "redis_busy": cpu / wall,
        "reserve_p50_ms": pct(lat, 50) * 1e3,
        "reserve_p99_ms": pct(lat, 99) * 1e3,
        # Other clients of the same server would show up as extra outer calls.
        "foreign_calls": outer - expected_outer,
        "other_cmds": other,
        "loadavg_1m": os.getloadavg()[0],
    }
    return row


def cleanup(r, prefix: str) -> int:
    n = 0
    for batch in _chunks(r.scan_iter(match=prefix + "*", count=1000), 500):
        n += r.delete(*batch)
    return n


def _chunks(it, size):
    buf = []
    for x in it:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


# ---------------------------------------------------------------- report


def table(rows: list) -> str:
    head = (
        "| scenario | C | K | req/s | round trips/req | Redis cmds/req (outer + inside script) "
        "| Redis CPU µs/req (process / main thread) | script µs/req | Redis busy | reserve p50 ms | reserve p99 ms |"
    )
    sep = "|" + "---|" * 11
    lines = [head, sep]
    for x in rows:
        cmds = (
            f"{x['outer_cmds_per_req']:.0f} + {x['inner_cmds_per_req']:.1f}"
            if x["mode"] != "incr"
            else f"{x['outer_cmds_per_req']:.0f}"
        )
        script = f"{x['script_us_per_req']:.1f}" if x["mode"] != "incr" else "—"
        spread = f" ({x['cpu_min']:.0f}–{x['cpu_max']:.0f})" if x.get("reps", 1) > 1 else ""
        lines.append(
            f"| {x['name']} | {x['C']} | {x['K'] or '—'} | {x['req_per_s']:,.0f} | {x['round_trips_per_req']:.2f} "
            f"| {cmds} | {x['redis_cpu_us_per_req']:.1f} / {x['redis_main_cpu_us_per_req']:.1f}{spread} | {script} "
            f"| {x['redis_busy'] * 100:.0f} % | {x['reserve_p50_ms']:.2f} | {x['reserve_p99_ms']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per scenario (default 10)")
    ap.add_argument("--procs", type=int, default=2, help="driver processes (default 2; threads are spread over them)")
    ap.add_argument("--concurrency", default="1,4,16,64", help="C values of the K=4 sweep")
    ap.add_argument("--k-values", default="1,8", help="extra K values run at --k-concurrency")
    ap.add_argument("--k-concurrency", type=int, default=16)
    ap.add_argument("--ceiling", default="1,16,64", help="C values of the INCR ceiling ('' to skip)")
    ap.add_argument("--no-extras", action="store_true", help="skip the EVAL, rolling and abandoned-lease rows")
    ap.add_argument("--reps", type=int, default=1, help="runs per scenario; the median by Redis CPU/req is shown")
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()

    with open(SCRIPT_PATH, "rb") as f:
        script = f.read().decode()
    SCRIPT_COMMANDS.update(m.lower() for m in re.findall(r"redis\.call\('([A-Za-z]+)'", script))
    r = redis.Redis.from_url(args.url)
    server = r.info("server")
    sha = r.script_load(script)  # the SHA1 of the script text: names the exact version measured
    prefix = f"tgbench:{os.getpid()}:"
    cfg = {"url": args.url, "prefix": prefix, "sha": sha, "script": script}
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731

    plan = []
    for c in ints(args.concurrency):
        plan.append(("reserve+settle", "evalsha", c, 4, {}))
    for k in ints(args.k_values):
        plan.append(("reserve+settle", "evalsha", args.k_concurrency, k, {}))
    if not args.no_extras:
        kc = args.k_concurrency
        plan.append(("EVAL full text (as the gateway sends it today)", "eval", kc, 4, {}))
        plan.append(("+1 rolling 1 h budget (3,600 s seeded)", "evalsha", kc, 4, {"rolling": True}))
        plan.append(("1 % never settled, lease 2 s", "evalsha", kc, 4, {"abandon": 0.01, "lease_ms": 2000}))
        plan.append(("pipelined ×32 (p50/p99 per batch)", "evalsha", 4, 4, {"batch": 32}))
    for c in ints(args.ceiling):
        plan.append(("ceiling: 2 × INCR", "incr", c, 0, {}))

    load0 = os.getloadavg()
    print(
        f"# Redis {server['redis_version']} at {args.url}, {os.cpu_count()} CPUs, "
        f"{args.duration:g} s per scenario, {len(plan)} scenarios, driver: {args.procs} processes",
        file=sys.stderr,
    )
    rows = []
    try:
        for name, mode, c, k, extra in plan:
            reps = []
            for _ in range(max(1, args.reps)):
                reps.append(run(r, cfg, name, mode, c, k, args.duration, args.procs, **extra))
                if extra.get("abandon"):
                    reps[-1]["leases_left"] = r.zcard(prefix + "leases")
                # Each run starts from empty counters.
                cleanup(r, prefix)
            # The repetition with the median Redis CPU per request stands for the scenario.
            reps.sort(key=lambda x: x["redis_cpu_us_per_req"])
            row = dict(reps[len(reps) // 2])
            row["reps"] = len(reps)
            row["cpu_min"] = reps[0]["redis_cpu_us_per_req"]
            row["cpu_max"] = reps[-1]["redis_cpu_us_per_req"]
            rows.append(row)
            print(
                f"  {name:<48} C={c:<3} K={row['K']:<2} {row['req_per_s']:>9,.0f} req/s  "
                f"Redis {row['redis_cpu_us_per_req']:6.1f} µs/req  busy {row['redis_busy'] * 100:3.0f} %  "
                f"p99 {row['reserve_p99_ms']:.2f} ms",
                file=sys.stderr,
            )
            if row["foreign_calls"]:
                print(f"    warning: {row['foreign_calls']} calls not from this driver", file=sys.stderr)
            if row["refused"]:
                print(f"    note: {row['refused']} reservations refused", file=sys.stderr)
            if row["abandon"]:
                print(
                    f"    {row['abandoned']} reservations abandoned; {row['leases_left']} leases still held after "
                    f"the run (the rest were swept by later reserves)",
                    file=sys.stderr,
                )
    finally:
        cleanup(r, prefix)
    load1 = os.getloadavg()

    print()
    print(
        f"Redis {server['redis_version']} on {args.url}; {os.cpu_count()} CPUs shared by Redis and the driver; "
        f"{args.duration:g} s per run, {args.reps} run(s) per row; load average {load0[0]:.2f} before, "
        f"{load1[0]:.2f} after. counters.lua SHA1 {sha}."
    )
    if args.reps > 1:
        print("Redis CPU: the median run; in brackets the lowest and highest of the runs.")
    print()
    print(table(rows))
    print()
    print("Commands run inside the script, per request:")
    print()
    for x in rows:
        if x["mode"] != "incr":
            inner = ", ".join(f"{n} {v:g}" for n, v in x["inner_cmds"].items())
            print(f"- {x['name']}, C={x['C']}, K={x['K']}: {inner}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"redis": server["redis_version"], "cpus": os.cpu_count(), "script_sha1": sha, "rows": rows}, f, indent=1
            )


if __name__ == "__main__":
    main()
