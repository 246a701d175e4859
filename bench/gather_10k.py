#!/usr/bin/python3
"""One gather of 10,000 inline sleep jobs of 100 ms, against asyncio.gather of the same (python3 stdlib).

Starts gatherd (--max-running 20000 --max-queued 20000, a body limit that fits the request), then
runs BENCH_ROUNDS interleaved rounds (after --warmup discarded ones) of:

1. gatherd: one `POST /v1/gather` whose `jobs` are 10,000 inline `{"kind":"sleep","params":
   {"duration_ms":100}}` specs, on a fresh loopback connection (connected before the clock starts),
   timed from the first byte sent to the last byte of the response received; plus the server's own
   `elapsed_ms`.
2. asyncio: `await asyncio.gather(*(asyncio.sleep(0.1) for _ in range(10000)))` in a long-lived
   python3 subprocess (same interpreter, its loop warmed up), timed inside the coroutine.
3. asyncio again with 1,000 sleeps (the size of the reference figure).

    GATHERD_BIN=build/release/service/gatherd BENCH_ROUNDS=5 python3 bench/gather_10k.py

Prints a markdown section on stdout, progress on stderr. Every gather must answer 200 with
`outcome: completed`, all 10,000 jobs `succeeded`, nothing pending, or the run is invalid.
Exit status: 0 valid run, 2 invalid run or setup failure; 1 when the target (the response within
150 ms, client side, median) is missed and BENCH_STRICT=1.
"""

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime

sys.dont_write_bytecode = True  # keep bench/lib free of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib  # noqa: E402
from gatherd_proc import GatherdProcess, cpu_seconds, display_bin, provenance, resolve_bin  # noqa: E402

TARGET_MS = 150.0
TAG = "gather_10k"

# The asyncio side: reads "N SECONDS" lines, answers each with the gather's wall time in seconds.
ASYNCIO_WORKER = r"""
import asyncio, sys, time

async def one(n, s):
    t0 = time.perf_counter()
    await asyncio.gather(*(asyncio.sleep(s) for _ in range(n)))
    return time.perf_counter() - t0

loop = asyncio.new_event_loop()
for line in sys.stdin:
    n, s = line.split()
    print(loop.run_until_complete(one(int(n), float(s))), flush=True)
loop.close()
"""


def log(msg):
    print(f"{TAG}: {msg}", file=sys.stderr, flush=True)


Invalid = benchlib.InvalidRun


def parse_ts(s):
    # "2026-11-22T05:24:06.579Z" (ms resolution)
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def timed_gather(port, request, n_jobs, timeout_s=60.0):
    """One POST /v1/gather over a fresh connection. Returns a dict of timings (ms) and checks."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        chunks = []
        t0 = time.perf_counter()
        sock.sendall(request)
        t_sent = time.perf_counter()
        t_first = None
        head_end, content_length, received = -1, None, 0
        buf = b""
        while True:
            data = sock.recv(1 << 20)
            if not data:
                raise Invalid(f"connection closed after {received} bytes of the response")
            if t_first is None:
                t_first = time.perf_counter()
            chunks.append(data)
            received += len(data)
            if head_end < 0:
                buf += data
                head_end = buf.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = buf[:head_end].decode("latin-1")
                    for line in head.split("\r\n")[1:]:
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            content_length = int(value.strip())
                        elif name.strip().lower() == "transfer-encoding":
                            raise Invalid(f"unexpected Transfer-Encoding: {value.strip()}")
                    if content_length is None:
                        raise Invalid(f"response without Content-Length: {head[:200]!r}")
                    buf = b""
            if head_end >= 0 and received >= head_end + 4 + content_length:
                break
        t_last = time.perf_counter()
    finally:
        sock.close()

    raw = b"".join(chunks)
    head, body = raw[:head_end].decode("latin-1"), raw[head_end + 4:]
    status = int(head.split(" ", 2)[1])
    if status != 200:
        raise Invalid(f"POST /v1/gather answered {status}: {body[:300]!r}")
    res = json.loads(body)
    jobs = res.get("jobs", [])
    states = {}
    for job in jobs:
        states[job.get("state")] = states.get(job.get("state"), 0) + 1
    problems = []
    if res.get("outcome") != "completed":
        problems.append(f"outcome {res.get('outcome')}")
    if len(jobs) != n_jobs or states != {"succeeded": n_jobs}:
        problems.append(f"{len(jobs)} jobs, states {states}")
    if res.get("pending") or len(res.get("done", [])) != n_jobs or res.get("first_error") is not None:
        problems.append(f"{len(res.get('done', []))} done, {len(res.get('pending', []))} pending, "
                        f"first_error {res.get('first_error')}")
    if problems:
        raise Invalid("gather not completed: " + "; ".join(problems))

    created = [parse_ts(j["created_at"]) for j in jobs]
    started = [parse_ts(j["started_at"]) for j in jobs]
    finished = [parse_ts(j["finished_at"]) for j in jobs]
    first = min(created)
    return {
        "wall": (t_last - t0) * 1000,
        "send": (t_sent - t0) * 1000,
        "ttfb": (t_first - t0) * 1000,
        "elapsed": float(res["elapsed_ms"]),
        # From the job timestamps (ms resolution): how long until the last job started, until the
        # last one finished, and the longest single job (100 ms plus its timer's lateness).
        "start_spread": (max(started) - first) * 1000,
        "last_finish": (max(finished) - first) * 1000,
        "max_duration": float(max(j["duration_ms"] for j in jobs)),
        "response_bytes": len(body),
    }


class AsyncioWorker:
    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", ASYNCIO_WORKER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)

    def gather_ms(self, n, seconds):
        self.proc.stdin.write(f"{n} {seconds}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"asyncio worker exited ({self.proc.wait()})")
        return float(line) * 1000

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def fmt_ms(v):
    return f"{v:,.1f} ms"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gatherd-bin", default=os.environ.get("GATHERD_BIN", "build/release/service/gatherd"))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "5")))
    ap.add_argument("--warmup", type=int, default=3, help="discarded rounds before measuring")
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--small", type=int, default=1_000, help="size of the second asyncio reference")
    ap.add_argument("--sleep-ms", type=int, default=100)
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the gatherd log")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")

    binary = resolve_bin(args.gatherd_bin)
    if not os.access(binary, os.X_OK):
        log(f"no gatherd binary at {binary} (build first: scripts/build.sh release, or set GATHERD_BIN)")
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    spec = {"kind": "sleep", "params": {"duration_ms": args.sleep_ms}}
    body = json.dumps({"jobs": [spec] * args.jobs}, separators=(",", ":")).encode()
    total_rounds = args.warmup + args.rounds
    server_args = ["--max-running", "20000", "--max-queued", "20000",
                   "--max-gather", str(max(10_000, args.jobs)),
                   "--max-body-bytes", str(max(4 << 20, 2 * len(body))),
                   # every job of the run stays retained: no eviction or expiry sweep during a round
                   "--max-retained-jobs", str(max(100_000, args.jobs * (total_rounds + 1))),
                   "--log-level", "warn"]
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    sleep_s = args.sleep_ms / 1000

    worker = AsyncioWorker()
    try:
        with GatherdProcess(binary, server_args, TAG, keep=args.keep) as srv:
            log(f"gatherd pid {srv.pid}, port {srv.port}; request body {len(body):,} bytes")
            request = (f"POST /v1/gather HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\n"
                       f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                       ).encode() + body
            rows = {"gatherd": [], "big": [], "small": []}
            cpu_before = None
            try:
                for r in range(total_rounds):
                    measuring = r >= args.warmup
                    if measuring and cpu_before is None:
                        cpu_before = cpu_seconds(srv.pid)
                    g = timed_gather(srv.port, request, args.jobs)
                    cpu_after = cpu_seconds(srv.pid)
                    a_big = worker.gather_ms(args.jobs, sleep_s)
                    a_small = worker.gather_ms(args.small, sleep_s)
                    kind = f"round {r - args.warmup + 1}/{args.rounds}" if measuring else \
                        f"warmup {r + 1}/{args.warmup}"
                    log(f"{kind}: gatherd wall {g['wall']:.1f} ms (server {g['elapsed']:.0f} ms, first byte "
                        f"{g['ttfb']:.1f} ms); asyncio {args.jobs:,} {a_big:.1f} ms, {args.small:,} {a_small:.1f} ms")
                    if measuring:
                        rows["gatherd"].append(g)
                        rows["big"].append(a_big)
                        rows["small"].append(a_small)
                    time.sleep(0.2)
            except Invalid as e:
                raise Invalid(f"{e}{srv.exit_note()}") from e
            except OSError as e:
                raise Invalid(f"POST /v1/gather: {e!r}{srv.exit_note()}") from e
            server_cpu_ms = (cpu_after - cpu_before) * 1000 / args.rounds
            rss = benchlib.rss_bytes(srv.pid)
            hwm = benchlib.hwm_bytes(srv.pid)
    except (Invalid, RuntimeError) as e:
        return benchlib.failed_run(TAG, f"Gather of {args.jobs:,} sleep jobs", e)
    finally:
        worker.close()

    g_rows = rows["gatherd"]

    def col(key):
        return [g[key] for g in g_rows]

    def stats(values):
        return statistics.median(values), min(values), max(values)

    big_med = statistics.median(rows["big"])
    small_med = statistics.median(rows["small"])
    measures = [
        (f"gatherd `POST /v1/gather`, {args.jobs:,} jobs: client wall (send -> last byte)", col("wall"),
         [g["wall"] / b for g, b in zip(g_rows, rows["big"])], True),
        ("gatherd: server `elapsed_ms`", col("elapsed"),
         [g["elapsed"] / b for g, b in zip(g_rows, rows["big"])], True),
        ("gatherd: client time to first response byte", col("ttfb"),
         [g["ttfb"] / b for g, b in zip(g_rows, rows["big"])], False),
        (f"asyncio.gather {args.jobs:,} x sleep({sleep_s:g})", rows["big"], [1.0] * len(rows["big"]), False),
        (f"asyncio.gather {args.small:,} x sleep({sleep_s:g})", rows["small"],
         [s / b for s, b in zip(rows["small"], rows["big"])], False),
    ]

    wall_med = statistics.median(col("wall"))
    holds = wall_med <= TARGET_MS
    print(f"## Gather of {args.jobs:,} sleep jobs ({args.sleep_ms} ms each)")
    print()
    print(f"gatherd `{display_bin(binary)}` ({provenance(binary)}) {' '.join(server_args)}; "
          f"{args.rounds} interleaved round(s) "
          f"(gatherd -> asyncio {args.jobs:,} -> asyncio {args.small:,}) after {args.warmup} discarded; "
          f"request {len(body):,} bytes, response {g_rows[-1]['response_bytes']:,} bytes; client, gatherd and "
          f"the asyncio process share {os.cpu_count()} cores, nothing pinned. asyncio: Python "
          f"{sys.version.split()[0]}, default event loop, one warm process. Started {started}.")
    print()
    print(f"| measurement | median | min | max | over the {args.sleep_ms} ms sleep (median) "
          f"| ratio to asyncio {args.jobs:,} (median) | target <= {TARGET_MS:.0f} ms |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, values, ratios, judged in measures:
        med, lo, hi = stats(values)
        verdict = ("yes" if med <= TARGET_MS else "**no**") if judged else "-"
        print(f"| {name} | {fmt_ms(med)} | {fmt_ms(lo)} | {fmt_ms(hi)} | {fmt_ms(med - args.sleep_ms)} "
              f"| {statistics.median(ratios):.2f}x | {verdict} |")
    print()
    print("Medians over the rounds; ratios are per-round ratios, median. Target (issue): the response to "
          f"a gather of {args.jobs:,} within {TARGET_MS:.0f} ms, judged on the client wall time; the "
          "reference asyncio figure is ~150 ms for 1,000 "
          f"(here asyncio.gather of {args.small:,} took {small_med:.1f} ms and of {args.jobs:,} {big_med:.1f} ms).")
    print()
    print(f"Where the gatherd time goes (medians): request sent after {statistics.median(col('send')):.1f} ms; "
          f"last job started {statistics.median(col('start_spread')):.0f} ms and last job finished "
          f"{statistics.median(col('last_finish')):.0f} ms after the first was created (job timestamps, "
          f"ms resolution); longest job {statistics.median(col('max_duration')):.0f} ms; server "
          f"`elapsed_ms` {statistics.median(col('elapsed')):.0f} ms, first response byte at "
          f"{statistics.median(col('ttfb')):.1f} ms, last at {wall_med:.1f} ms. gatherd CPU per gather "
          f"{server_cpu_ms:.0f} ms (user + system, all threads); VmRSS after the run "
          f"{rss / (1 << 20):.1f} MiB (VmHWM {hwm / (1 << 20):.1f} MiB).")
    print()
    print(f"Target: gather of {args.jobs:,} answered within {TARGET_MS:.0f} ms (client, median): "
          f"{'yes' if holds else '**no**'} ({wall_med:.1f} ms).")
    if not holds and os.environ.get("BENCH_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
