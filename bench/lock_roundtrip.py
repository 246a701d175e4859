#!/usr/bin/python3
"""Lock round trips (acquire + release) per second under 64 concurrent clients (python3 stdlib).

Starts gatherd (--log-level warn, job admission and retention set as in http_vs_nginx.sh so the
POST /v1/jobs reference cannot fill memory), then runs BENCH_ROUNDS interleaved rounds of these
scenarios, each BENCH_SECONDS long after BENCH_WARMUP_S discarded seconds, all with the same
client: C (BENCH_CLIENTS, 64) keep-alive HTTP/1.1 connections spread over P client processes
(BENCH_CLIENT_PROCS, 2), each connection one asyncio task sending raw requests back to back:

1. reference: `GET /healthz` twice per round trip (the HTTP floor for two requests);
2. reference: `POST /v1/jobs` of a 0 ms sleep twice per round trip (two small JSON POSTs that
   reach the engine);
3. uncontended: `POST /v1/locks/bench-u-<i>/acquire` then `.../release`, one lock name per
   connection (64 distinct names): a lock that is always free;
4. contended: the same on one name, `bench-c`, for all 64 connections (acquire with
   wait_ms 60000): one holder, 63 parked waiters, every release hands the lock to the next.

    GATHERD_BIN=build/release/service/gatherd BENCH_SECONDS=10 /usr/bin/python3 bench/lock_roundtrip.py

A round trip is counted when it completes inside the measured window; its latency is from the
first byte of the acquire (or first request) sent to the last byte of the release (or second
answer) read. Reports round trips/s, p50/p99 latency, gatherd CPU time per round trip
(/proc/PID/stat, all threads, over the window) and the per-round ratio to the `GET /healthz`
reference. Every answer must be the expected status (200; 202 for jobs; release `count` 0) and
every lock must be free with no waiter after its scenario, or the run is invalid.

Prints a markdown section on stdout, progress on stderr. Exit status: 0 valid run, 2 invalid run
or setup failure. The issue gives no target number: the numbers are reported, not judged.
"""

import argparse
import array
import asyncio
import json
import multiprocessing
import os
import signal
import statistics
import sys
import time
import urllib.request

sys.dont_write_bytecode = True  # keep bench/lib free of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib  # noqa: E402
from gatherd_proc import GatherdProcess, cpu_seconds, display_bin, provenance, resolve_bin  # noqa: E402

TAG = "lock_roundtrip"
SCENARIOS = {
    "healthz": "reference: `GET /healthz` x2",
    "jobs": "reference: `POST /v1/jobs` (sleep 0 ms) x2",
    "uncontended": "lock acquire + release, 64 distinct names (uncontended)",
    "contended": "lock acquire + release, one name (contended)",
}
REFERENCE = "healthz"
JOB_BODY = json.dumps({"kind": "sleep", "params": {"duration_ms": 0}}, separators=(",", ":")).encode()


def log(msg):
    print(f"{TAG}: {msg}", file=sys.stderr, flush=True)


Invalid = benchlib.InvalidRun


# ---------------------------------------------------------------------------------- client side
def request_bytes(method, path, port, body=None):
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if body is None:
        return (head + "\r\n").encode()
    return (head + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


async def exchange(reader, writer, data):
    """Send one request, read one response; returns (status, body bytes)."""
    writer.write(data)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" or (name == "connection" and "close" in value.lower()):
            raise Invalid(f"unexpected response header {line!r} (status {status})")
    body = await reader.readexactly(length) if length else b""
    return status, body


async def one_client(index, port, scenario, t_go, t_measure, t_end, out):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        holder = f"c{index}".encode()
        lock = "bench-c" if scenario == "contended" else f"bench-u-{index}"
        acquire = request_bytes("POST", f"/v1/locks/{lock}/acquire", port,
                                b'{"holder":"' + holder + b'","wait_ms":60000}')
        healthz = request_bytes("GET", "/healthz", port)
        job = request_bytes("POST", "/v1/jobs", port, JOB_BODY)
        await asyncio.sleep(max(0.0, t_go - time.monotonic()))
        lat = out["lat"]
        while True:
            t0 = time.monotonic()
            if t0 >= t_end:
                break
            if scenario == "healthz":
                s1, b1 = await exchange(reader, writer, healthz)
                s2, b2 = await exchange(reader, writer, healthz)
                ok = s1 == 200 and s2 == 200
            elif scenario == "jobs":
                s1, b1 = await exchange(reader, writer, job)
                s2, b2 = await exchange(reader, writer, job)
                ok = s1 == 202 and s2 == 202
            else:
                s1, b1 = await exchange(reader, writer, acquire)
                if s1 != 200:
                    ok, s2, b2 = False, None, b""
                else:
                    permit_id = json.loads(b1)["permit_id"]
                    s2, b2 = await exchange(reader, writer, request_bytes(
                        "POST", f"/v1/locks/{lock}/release", port,
                        json.dumps({"permit_id": permit_id}, separators=(",", ":")).encode()))
                    ok = s2 == 200 and json.loads(b2).get("count") == 0
            t1 = time.monotonic()
            if not ok:
                out["errors"] += 1
                if len(out["samples"]) < 3:
                    out["samples"].append(f"{s1} {b1[:200]!r} / {s2} {b2[:200]!r}")
                continue
            if t_measure <= t1 <= t_end:
                out["count"] += 1
                lat.append(t1 - t0)
    finally:
        writer.close()


def client_process(port, scenario, indices, pipe):
    """One client process: connects its share, says ready, runs when told, sends results back."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us

    async def main():
        out = {"count": 0, "errors": 0, "samples": [], "lat": array.array("d")}
        t_go, t_measure, t_end = pipe.recv()
        tasks = [asyncio.create_task(one_client(i, port, scenario, t_go, t_measure, t_end, out))
                 for i in indices]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [repr(r) for r in results if isinstance(r, BaseException)]
        return out, failures

    try:
        out, failures = asyncio.run(main())
        pipe.send({"count": out["count"], "errors": out["errors"], "samples": out["samples"],
                   "failures": failures[:3], "n_failures": len(failures),
                   "lat": out["lat"].tobytes()})
    except BaseException as e:  # noqa: BLE001 - reported by the parent
        pipe.send({"fatal": repr(e)})
    finally:
        pipe.close()


def run_scenario(srv, scenario, clients, procs, seconds, warmup):
    """Runs one scenario; returns its measurements."""
    ctx = multiprocessing.get_context("fork")
    shares = [list(range(p, clients, procs)) for p in range(procs)]
    workers = []
    try:
        for share in shares:
            parent_end, child_end = ctx.Pipe()
            proc = ctx.Process(target=client_process, args=(srv.port, scenario, share, child_end),
                               daemon=True)
            proc.start()
            child_end.close()
            workers.append((proc, parent_end))
        t_go = time.monotonic() + 0.5
        t_measure = t_go + warmup
        t_end = t_measure + seconds
        for _, pipe in workers:
            pipe.send((t_go, t_measure, t_end))
        time.sleep(max(0.0, t_measure - time.monotonic()))
        cpu0 = cpu_seconds(srv.pid)
        time.sleep(max(0.0, t_end - time.monotonic()))
        cpu1 = cpu_seconds(srv.pid)
        results = []
        for proc, pipe in workers:
            if not pipe.poll(60 + warmup):
                raise Invalid(f"{scenario}: a client process sent no result within 60 s of the end"
                              f"{srv.exit_note()}")
            results.append(pipe.recv())
            proc.join(10)
    finally:
        for proc, _ in workers:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)

    lat = array.array("d")
    count = errors = 0
    problems = []
    for r in results:
        if "fatal" in r:
            raise Invalid(f"{scenario}: client process failed: {r['fatal']}{srv.exit_note()}")
        count += r["count"]
        errors += r["errors"]
        problems += r["samples"] + r["failures"]
        if r["n_failures"]:
            errors += r["n_failures"]
        lat.frombytes(r["lat"])
    if errors:
        raise Invalid(f"{scenario}: {errors} failed round trips or connections, e.g. {problems[:3]}"
                      f"{srv.exit_note()}")
    if count == 0:
        raise Invalid(f"{scenario}: no round trip completed in the window{srv.exit_note()}")
    ordered = sorted(lat)
    return {
        "rate": count / seconds,
        "count": count,
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "cpu_us": (cpu1 - cpu0) * 1e6 / count,
    }


def check_locks_free(srv, scenario, clients):
    """After a lock scenario every lock it used is free, with nobody waiting."""
    names = ["bench-c"] if scenario == "contended" else [f"bench-u-{i}" for i in range(clients)]
    for name in names:
        deadline = time.monotonic() + 5
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/v1/locks/{name}", timeout=5) as r:
                state = json.load(r)
            if state.get("holders") == [] and state.get("waiters") == 0 and state.get("available") == 1:
                break
            if time.monotonic() > deadline:
                raise Invalid(f"{scenario}: lock {name} not free after the run: {state}")
            time.sleep(0.05)


def fmt_latency(seconds):
    return f"{seconds * 1e6:,.0f} us" if seconds < 1e-3 else f"{seconds * 1e3:,.2f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gatherd-bin", default=os.environ.get("GATHERD_BIN", "build/release/service/gatherd"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "10")))
    ap.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP_S", "2")),
                    help="seconds run and discarded at the start of each scenario")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "1")))
    ap.add_argument("--clients", type=int, default=int(os.environ.get("BENCH_CLIENTS", "64")))
    ap.add_argument("--procs", type=int, default=int(os.environ.get("BENCH_CLIENT_PROCS", "2")),
                    help="client processes the connections are spread over")
    ap.add_argument("--scenarios", default=os.environ.get("BENCH_LOCK_SCENARIOS", ",".join(SCENARIOS)),
                    help="comma-separated, in the order run each round (healthz is the ratio's reference)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the gatherd log")
    args = ap.parse_args()
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS]
    if unknown:
        ap.error(f"unknown scenario(s) {unknown}; known: {list(SCENARIOS)}")
    if args.rounds < 1 or args.clients < 1 or args.procs < 1 or args.seconds <= 0:
        ap.error("--rounds, --clients, --procs and --seconds must be positive")
    procs = min(args.procs, args.clients)

    binary = resolve_bin(args.gatherd_bin)
    if not os.access(binary, os.X_OK):
        log(f"no gatherd binary at {binary} (build first: scripts/build.sh release, or set GATHERD_BIN)")
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    server_args = ["--log-level", "warn", "--max-running", "100000", "--max-queued", "1000000",
                   "--default-retention-ms", "1000"]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = {s: [] for s in scenarios}
    try:
        with GatherdProcess(binary, server_args, TAG, keep=args.keep) as srv:
            log(f"gatherd pid {srv.pid}, port {srv.port}; {args.clients} connections over {procs} client "
                f"process(es); {args.warmup:g} s warm-up + {args.seconds:g} s per scenario")
            for r in range(args.rounds):
                for scenario in scenarios:
                    m = run_scenario(srv, scenario, args.clients, procs, args.seconds, args.warmup)
                    if scenario in ("uncontended", "contended"):
                        check_locks_free(srv, scenario, args.clients)
                    rows[scenario].append(m)
                    log(f"round {r + 1}/{args.rounds} {scenario}: {m['rate']:,.0f} round trips/s, "
                        f"p50 {fmt_latency(m['p50'])}, p99 {fmt_latency(m['p99'])}, "
                        f"gatherd CPU {m['cpu_us']:.1f} us per round trip")
                    if not srv.alive():
                        raise Invalid(f"gatherd died during {scenario}{srv.exit_note()}")
    except (Invalid, RuntimeError) as e:
        return benchlib.failed_run(TAG, f"Lock round trips under {args.clients} clients", e)

    print(f"## Lock round trips (acquire + release) under {args.clients} clients")
    print()
    print(f"gatherd `{display_bin(binary)}` ({provenance(binary)}) {' '.join(server_args)}; "
          f"{args.clients} keep-alive HTTP/1.1 connections from {procs} python3 asyncio client "
          f"process(es) (raw sockets, one request in flight per connection), "
          f"{args.warmup:g} s warm-up then {args.seconds:g} s measured per scenario, {args.rounds} "
          f"interleaved round(s) ({' -> '.join(scenarios)}); client and gatherd share "
          f"{os.cpu_count()} cores, nothing pinned. Python {sys.version.split()[0]}. Started {started}.")
    print()
    ref = rows.get(REFERENCE)
    print("| scenario | round trips/s | p50 | p99 | gatherd CPU per round trip | ratio to `GET /healthz` x2 |")
    print("|---|---:|---:|---:|---:|---:|")
    for scenario in scenarios:
        ms = rows[scenario]
        ratio = "-"
        if ref:
            ratio = f"{statistics.median(m['rate'] / x['rate'] for m, x in zip(ms, ref)):.2f}x"
        print(f"| {SCENARIOS[scenario]} | {statistics.median(m['rate'] for m in ms):,.0f} "
              f"| {fmt_latency(statistics.median(m['p50'] for m in ms))} "
              f"| {fmt_latency(statistics.median(m['p99'] for m in ms))} "
              f"| {statistics.median(m['cpu_us'] for m in ms):,.1f} us "
              f"| {ratio} |")
    print()
    print("A round trip is two HTTP requests on one connection (acquire then release; or the same "
          "request twice for the references). Medians over the rounds; ratios are per-round ratios, "
          "median. The client is Python: with 2 shared cores it can be the bottleneck of the cheap "
          "scenarios, so the CPU gatherd spends per round trip is the figure to compare across "
          "machines. No target is set by the issue.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
