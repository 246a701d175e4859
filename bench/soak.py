#!/usr/bin/python3
"""Soak: mixed load on one gatherd for a long time, with its RSS sampled throughout (python3 stdlib).

Starts a local HTTP upstream (tests/integration/upstream.py, in this process) and gatherd
(--log-level warn --allow-private-fetch --max-running 512 --max-queued 10000
--default-retention-ms 10000, so the retained jobs reach a steady state within the warm-up), then
runs SOAK_SECONDS (default 300) of mixed load from SOAK_WORKERS (16) keep-alive HTTP/1.1
connections spread over SOAK_PROCS (2) client processes, each connection a thread running one
operation after another, in turn:

- jobs: submit a 0-20 ms sleep and long-poll it until `succeeded`; a `compute` sha256 (2,000
  rounds), the same; a batch of 10 sleeps; a 10 s sleep cancelled at once (`cancelled`);
- gathers: 10 inline 10 ms sleeps (JSON, `completed`), and 5 streamed (NDJSON, ending with the
  summary);
- primitives: lock acquire + release (8 names), semaphore acquire + release (4 names, 4 permits
  each), event set + wait + clear (4 names), queue put 5 + get 5 + done (4 names);
- fetches against the upstream: a `POST /v1/fetch` of 4 requests (200 echo, 2 KB body, 404, a
  5 ms delay), the same streamed as NDJSON, and a `fetch` job long-polled until `succeeded`.

Every answer is checked (status, and the state, outcome or per-result error that says the
operation really worked); anything else counts as an error. Every SOAK_SAMPLE_S (5) seconds the
main process reads gatherd's VmRSS and open descriptors (/proc/PID) and a few gauges from
/metrics. Reported: operations/s per kind after the warm-up (SOAK_WARMUP_S, 30), latency p50/p99,
errors; RSS after startup, at the end of the warm-up, at the end and its high-water mark; the
drift (end - after warm-up) and the slope of a least-squares line through the samples after the
warm-up (KiB per minute); descriptors at both ends.

    GATHERD_BIN=build/release/service/gatherd nice /usr/bin/python3 bench/soak.py
    SOAK_SECONDS=60 /usr/bin/python3 bench/soak.py           # a short run

Prints a markdown section on stdout, progress on stderr. Exit status: 0 valid run, 2 invalid run
(an operation failed, gatherd died, a worker process failed) or setup failure. No target is set:
the numbers are reported, not judged.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import random
import signal
import sys
import threading
import time
import traceback
import urllib.request

sys.dont_write_bytecode = True  # keep bench/lib and tests/integration free of __pycache__
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "lib"))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))
import benchlib  # noqa: E402
from gatherd_proc import GatherdProcess, cpu_seconds, display_bin, provenance, resolve_bin  # noqa: E402

TAG = "soak"
Invalid = benchlib.InvalidRun
LOCKS, SEMAPHORES, EVENTS, QUEUES = 8, 4, 4, 4
SERVER_ARGS = ["--log-level", "warn", "--allow-private-fetch", "--max-running", "512",
               "--max-queued", "10000", "--default-retention-ms", "10000"]


def log(msg):
    print(f"{TAG}: {msg}", file=sys.stderr, flush=True)


def env_num(name, default, kind=float):
    value = os.environ.get(name)
    return kind(value) if value not in (None, "") else default


def sleep_spec(ms, **extra):
    return {"kind": "sleep", "params": {"duration_ms": ms}, **extra}


# ---------------------------------------------------------------------------------- operations
class OpError(Exception):
    """The operation got an answer that says it did not work."""


class Client:
    """One keep-alive connection (reopened after a failure)."""

    def __init__(self, port, upstream_port, index, rnd):
        self.port, self.upstream_port, self.index, self.rnd = port, upstream_port, index, rnd
        self.conn = None
        self.seq = 0

    def call(self, method, path, body=None, accept=None, expect=(200,)):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = "application/json"
        if accept:
            headers["Accept"] = accept
        try:
            self.conn.request(method, path, body=data, headers=headers)
            resp = self.conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = None
            raise
        if resp.status not in expect:
            raise OpError(f"{method} {path.split('?')[0]} -> {resp.status} {payload[:200]!r}")
        if accept == "application/x-ndjson" and resp.status == 200:
            lines = [json.loads(line) for line in payload.splitlines() if line.strip()]
            if not lines or "summary" not in lines[-1]:
                raise OpError(f"{path}: NDJSON without a summary line")
            return resp.status, lines
        return resp.status, (json.loads(payload) if payload else None)

    def wait_state(self, job_id, want):
        deadline = time.monotonic() + 30
        while True:
            _, job = self.call("GET", f"/v1/jobs/{job_id}?wait_ms=10000")
            if job["state"] not in ("queued", "running"):
                if job["state"] != want:
                    raise OpError(f"job {job['kind']} ended {job['state']} {job.get('error')}, not {want}")
                return job
            if time.monotonic() > deadline:
                raise OpError(f"job {job_id} not final within 30 s")

    def upstream(self, path):
        return f"http://127.0.0.1:{self.upstream_port}{path}"

    # --- jobs
    def op_job(self):
        _, job = self.call("POST", "/v1/jobs", sleep_spec(self.rnd.randint(0, 20)), expect=(202,))
        self.wait_state(job["id"], "succeeded")

    def op_compute(self):
        _, job = self.call("POST", "/v1/jobs", {"kind": "compute", "params": {
            "op": "sha256", "data": f"soak-{self.index}", "rounds": 2000}}, expect=(202,))
        self.wait_state(job["id"], "succeeded")

    def op_batch(self):
        _, body = self.call("POST", "/v1/jobs/batch", {"jobs": [sleep_spec(5)] * 10}, expect=(202,))
        if len(body["jobs"]) != 10:
            raise OpError(f"batch answered {len(body['jobs'])} jobs")
        self.wait_state(body["jobs"][-1]["id"], "succeeded")

    def op_cancel(self):
        _, job = self.call("POST", "/v1/jobs", sleep_spec(10000), expect=(202,))
        self.call("POST", f"/v1/jobs/{job['id']}/cancel", {"reason": "soak"}, expect=(200, 202))
        self.wait_state(job["id"], "cancelled")

    # --- gathers
    def op_gather(self):
        _, body = self.call("POST", "/v1/gather", {"jobs": [sleep_spec(10)] * 10})
        if body["outcome"] != "completed" or len(body["done"]) != 10:
            raise OpError(f"gather {body['outcome']} done {body['done']}")

    def op_gather_stream(self):
        _, lines = self.call("POST", "/v1/gather", {"jobs": [sleep_spec(10)] * 5},
                             accept="application/x-ndjson")
        if lines[-1]["summary"]["outcome"] != "completed" or len(lines) != 6:
            raise OpError(f"streamed gather: {len(lines)} lines, {lines[-1]}")

    # --- primitives
    def op_lock(self):
        name = f"soak-lock-{self.rnd.randrange(LOCKS)}"
        holder = f"w{self.index}"
        _, permit = self.call("POST", f"/v1/locks/{name}/acquire",
                              {"holder": holder, "wait_ms": 10000, "ttl_ms": 30000})
        self.call("POST", f"/v1/locks/{name}/release", {"permit_id": permit["permit_id"]})

    def op_semaphore(self):
        name = f"soak-sem-{self.rnd.randrange(SEMAPHORES)}"
        body = {"holder": f"w{self.index}", "wait_ms": 10000, "ttl_ms": 30000}
        status, permit = self.call("POST", f"/v1/semaphores/{name}/acquire", body, expect=(200, 404))
        if status == 404:  # gone idle and reclaimed (or never made): make it and try again
            self.call("PUT", f"/v1/semaphores/{name}", {"permits": 4}, expect=(200, 201))
            _, permit = self.call("POST", f"/v1/semaphores/{name}/acquire", body)
        self.call("POST", f"/v1/semaphores/{name}/release", {"permit_id": permit["permit_id"]})

    def op_event(self):
        name = f"soak-event-{self.rnd.randrange(EVENTS)}"
        self.call("POST", f"/v1/events/{name}/set", {}, expect=(200, 204))
        _, state = self.call("GET", f"/v1/events/{name}?wait_ms=1000")
        self.call("POST", f"/v1/events/{name}/clear", {}, expect=(200, 204))
        if not isinstance(state, dict) or "set" not in state:
            raise OpError(f"event wait answered {state}")

    def op_queue(self):
        name = f"soak-queue-{self.rnd.randrange(QUEUES)}"
        self.seq += 1
        items = [{"w": self.index, "n": self.seq, "i": i} for i in range(5)]
        status, _ = self.call("POST", f"/v1/queues/{name}/put", {"items": items, "wait_ms": 5000},
                              expect=(200, 404))
        if status == 404:
            self.call("PUT", f"/v1/queues/{name}", {"maxsize": 10000}, expect=(200, 201))
            self.call("POST", f"/v1/queues/{name}/put", {"items": items, "wait_ms": 5000})
        _, got = self.call("POST", f"/v1/queues/{name}/get",
                           {"max_items": 5, "wait_ms": 5000, "lease_ms": 30000})
        receipts = [item["receipt"] for item in got["items"]]
        if not receipts:
            raise OpError("queue get answered no items after a put")
        _, done = self.call("POST", f"/v1/queues/{name}/done", {"receipts": receipts})
        if done["done"] != len(receipts):
            raise OpError(f"queue done: {done}")

    # --- fetch
    def fetch_requests(self):
        return [self.upstream("/echo"), self.upstream("/bytes/2000"), self.upstream("/status/404"),
                self.upstream("/delay/5")]

    def op_fetch(self):
        _, body = self.call("POST", "/v1/fetch", {"requests": self.fetch_requests()})
        statuses = [r["status"] for r in body["results"]]
        if body["summary"]["failed"] or statuses != [200, 200, 404, 200]:
            raise OpError(f"fetch: statuses {statuses}, errors "
                          f"{[r['error'] for r in body['results'] if r['error']]}")

    def op_fetch_stream(self):
        _, lines = self.call("POST", "/v1/fetch", {"requests": self.fetch_requests()},
                             accept="application/x-ndjson")
        if lines[-1]["summary"]["failed"] or len(lines) != 5:
            raise OpError(f"streamed fetch: {len(lines)} lines, {lines[-1]}")

    def op_fetch_job(self):
        _, job = self.call("POST", "/v1/jobs", {"kind": "fetch", "params": {
            "url": self.upstream("/bytes/100")}}, expect=(202,))
        job = self.wait_state(job["id"], "succeeded")
        if job["result"]["status"] != 200:
            raise OpError(f"fetch job: {job['result']}")


OPS = ["job", "compute", "batch", "cancel", "gather", "gather_stream", "lock", "semaphore", "event",
       "queue", "fetch", "fetch_stream", "fetch_job"]


def worker_process(indices, pipe):
    """Waits for (port, upstream port, t_warm, t_end), runs one thread per index, sends results."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    try:
        port, upstream_port, t_warm, t_end = pipe.recv()
        lock = threading.Lock()
        out = {op: {"n": 0, "n_warm": 0, "errors": 0, "lat": []} for op in OPS}
        samples = []

        def run(index):
            rnd = random.Random(index)
            client = Client(port, upstream_port, index, rnd)
            k = index  # each thread starts at another place in the cycle
            while time.monotonic() < t_end:
                op = OPS[k % len(OPS)]
                k += 1
                t0 = time.monotonic()
                try:
                    getattr(client, "op_" + op)()
                    ok, err = True, None
                except (OpError, OSError, http.client.HTTPException, ValueError, KeyError,
                        TypeError) as e:
                    ok, err = False, f"{op}: {e!r}"[:300]
                t1 = time.monotonic()
                with lock:
                    rec = out[op]
                    rec["n"] += 1
                    if not ok:
                        rec["errors"] += 1
                        if len(samples) < 10:
                            samples.append(f"{time.strftime('%H:%M:%S')} {err}")
                    elif t0 >= t_warm and t1 <= t_end:
                        rec["n_warm"] += 1
                        rec["lat"].append(t1 - t0)
                if not ok:
                    time.sleep(0.1)  # do not spin on a failing server
            if client.conn is not None:
                client.conn.close()

        threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in indices]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, t_end - time.monotonic()) + 120)
        pipe.send({"out": out, "samples": samples,
                   "hung": sum(1 for t in threads if t.is_alive())})
    except BaseException:  # noqa: BLE001 - reported by the parent
        pipe.send({"fatal": traceback.format_exc()})
    finally:
        pipe.close()


# ---------------------------------------------------------------------------------- sampling
def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def gauges(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    want = ("gatherd_jobs_retained", "gatherd_jobs_running", "gatherd_http_connections_open",
            "gatherd_fetch_connections", "gatherd_queue_items")
    found = {}
    for line in text.splitlines():
        name = line.split("{")[0].split(" ")[0]
        if name in want:
            found[name] = found.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return found


def slope_per_min(points):
    """Least-squares slope of (seconds, bytes) points, in bytes per minute."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / var * 60


def mib(b):
    return f"{b / 2**20:.1f} MiB"


def pct(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * q))]


def fmt_lat(seconds):
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:,.1f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:,.0f} us"


def setup_primitives(port):
    for i in range(SEMAPHORES):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/semaphores/soak-sem-{i}",
                                     data=b'{"permits":4}', method="PUT",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()
    for i in range(QUEUES):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/queues/soak-queue-{i}",
                                     data=b'{"maxsize":10000}', method="PUT",
                                     headers={"Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=10).close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gatherd-bin", default=os.environ.get("GATHERD_BIN", "build/release/service/gatherd"))
    ap.add_argument("--seconds", type=float, default=env_num("SOAK_SECONDS", 300.0))
    ap.add_argument("--warmup", type=float, default=env_num("SOAK_WARMUP_S", 30.0),
                    help="seconds at the start whose RSS and operations are not in the figures")
    ap.add_argument("--sample", type=float, default=env_num("SOAK_SAMPLE_S", 5.0),
                    help="seconds between RSS samples")
    ap.add_argument("--workers", type=int, default=env_num("SOAK_WORKERS", 16, int))
    ap.add_argument("--procs", type=int, default=env_num("SOAK_PROCS", 2, int))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the gatherd log")
    args = ap.parse_args()
    if args.seconds <= args.warmup or args.warmup < 0 or args.sample <= 0:
        ap.error("--seconds must be above --warmup (>= 0), --sample positive")
    if args.workers < 1 or args.procs < 1:
        ap.error("--workers and --procs must be positive")
    procs = min(args.procs, args.workers)
    title = f"Soak: {args.seconds:g} s of mixed load"

    binary = resolve_bin(args.gatherd_bin)
    if not os.access(binary, os.X_OK):
        log(f"no gatherd binary at {binary} (build first: scripts/build.sh release, or set GATHERD_BIN)")
        return 2
    try:
        from upstream import Upstream
    except ImportError as e:
        log(f"cannot import tests/integration/upstream.py: {e}")
        return 2

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # The client processes are forked before any thread exists in this one.
    ctx = multiprocessing.get_context("fork")
    workers = []
    for p in range(procs):
        parent_end, child_end = ctx.Pipe()
        proc = ctx.Process(target=worker_process, daemon=True,
                           args=(list(range(p, args.workers, procs)), child_end))
        proc.start()
        child_end.close()
        workers.append((proc, parent_end))

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    upstream = Upstream()
    samples = []  # (t since start, rss, fds, gauges)
    try:
        with GatherdProcess(binary, SERVER_ARGS, TAG, keep=args.keep) as srv:
            setup_primitives(srv.port)
            log(f"gatherd pid {srv.pid}, port {srv.port}; upstream port {upstream.port}; "
                f"{args.workers} connections over {procs} process(es); {args.warmup:g} s warm-up, "
                f"{args.seconds:g} s in all, a sample every {args.sample:g} s")
            rss_start = benchlib.rss_bytes(srv.pid)
            fds_start = fd_count(srv.pid)
            t0 = time.monotonic()
            t_warm, t_end = t0 + 1.0 + args.warmup, t0 + 1.0 + args.seconds
            for _, pipe in workers:
                pipe.send((srv.port, upstream.port, t_warm, t_end))
            cpu0 = cpu_seconds(srv.pid)
            next_sample = t0 + 1.0
            last_log = 0.0
            while True:
                now = time.monotonic()
                if now >= next_sample:
                    if not srv.alive():
                        raise Invalid(f"gatherd died {now - t0:.0f} s into the soak{srv.exit_note()}")
                    samples.append((now - t0, benchlib.rss_bytes(srv.pid), fd_count(srv.pid),
                                    gauges(srv.port)))
                    if now - last_log >= 30 or now >= t_end:
                        s = samples[-1]
                        log(f"{s[0]:6.0f} s: RSS {mib(s[1])}, fds {s[2]}, retained "
                            f"{s[3].get('gatherd_jobs_retained', 0):.0f}, running "
                            f"{s[3].get('gatherd_jobs_running', 0):.0f}")
                        last_log = now
                    if now >= t_end:
                        break
                    next_sample = min(next_sample + args.sample, t_end)
                time.sleep(max(0.0, min(next_sample, t_end) - time.monotonic()))
            cpu1 = cpu_seconds(srv.pid)
            results = []
            for proc, pipe in workers:
                if not pipe.poll(180):
                    raise Invalid(f"a client process sent no result within 180 s of the end"
                                  f"{srv.exit_note()}")
                results.append(pipe.recv())
                proc.join(10)
            hwm = benchlib.hwm_bytes(srv.pid)
            alive = srv.alive()
    except (Invalid, RuntimeError) as e:
        return benchlib.failed_run(TAG, title, e)
    finally:
        upstream.close()
        for proc, _ in workers:
            if proc.is_alive():
                proc.terminate()
                proc.join(5)

    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        return benchlib.failed_run(TAG, title, Invalid(f"a client process failed: {fatal[0]}"))
    per_op = {op: {"n": 0, "n_warm": 0, "errors": 0, "lat": []} for op in OPS}
    error_samples, hung = [], 0
    for r in results:
        hung += r["hung"]
        error_samples += r["samples"]
        for op, rec in r["out"].items():
            agg = per_op[op]
            for key in ("n", "n_warm", "errors"):
                agg[key] += rec[key]
            agg["lat"] += rec["lat"]
    measured_s = args.seconds - args.warmup
    errors = sum(rec["errors"] for rec in per_op.values())
    total_warm = sum(rec["n_warm"] for rec in per_op.values())

    after_warm = [s for s in samples if s[0] >= 1.0 + args.warmup - 1e-6]
    rss_warm, rss_end = after_warm[0][1], samples[-1][1]
    slope = slope_per_min([(s[0], s[1]) for s in after_warm])
    fds_warm, fds_end = after_warm[0][2], samples[-1][2]

    summary = (f"RSS after warm-up {mib(rss_warm)}, at the end {mib(rss_end)} (drift "
               f"{(rss_end - rss_warm) / 2**20:+.1f} MiB, slope "
               f"{'-' if slope is None else f'{slope / 1024:+,.0f} KiB/min'}); {errors} errors")
    if errors or hung or not alive:
        detail = "; ".join(error_samples[:5])
        return benchlib.failed_run(TAG, title, Invalid(
            f"{errors} failed operations, {hung} hung client threads, gatherd "
            f"{'alive' if alive else 'dead'}; {summary}; e.g. {detail}"))

    print(f"## {title}")
    print()
    print(f"gatherd `{display_bin(binary)}` ({provenance(binary)}) {' '.join(SERVER_ARGS)}; "
          f"{args.workers} keep-alive HTTP/1.1 connections from {procs} python3 client process(es), "
          f"one operation after another on each (the 13 kinds below in turn); the upstream is "
          f"tests/integration/upstream.py on loopback; {args.warmup:g} s warm-up, "
          f"{args.seconds:g} s in all, RSS sampled every {args.sample:g} s; client, upstream and "
          f"gatherd share {os.cpu_count()} cores. Python {sys.version.split()[0]}. Started {started}.")
    print()
    print("| operation | done after warm-up | per second | p50 | p99 | errors (whole run) |")
    print("|---|---:|---:|---:|---:|---:|")
    for op in OPS:
        rec = per_op[op]
        print(f"| {op} | {rec['n_warm']:,} | {rec['n_warm'] / measured_s:,.1f} "
              f"| {fmt_lat(pct(rec['lat'], 0.5))} | {fmt_lat(pct(rec['lat'], 0.99))} "
              f"| {rec['errors']} |")
    print(f"| **all** | {total_warm:,} | {total_warm / measured_s:,.1f} | | | {errors} |")
    print()
    print("| memory | value |")
    print("|---|---|")
    print(f"| VmRSS after startup | {mib(rss_start)} |")
    print(f"| VmRSS after the warm-up ({args.warmup:g} s) | {mib(rss_warm)} |")
    print(f"| VmRSS at the end ({args.seconds:g} s) | {mib(rss_end)} |")
    print(f"| VmHWM | {mib(hwm) if hwm else '-'} |")
    print(f"| drift (end - after warm-up) | {(rss_end - rss_warm) / 2**20:+.1f} MiB |")
    print(f"| slope after the warm-up (least squares, {len(after_warm)} samples) | "
          f"{'-' if slope is None else f'{slope / 1024:+,.0f} KiB/min'} |")
    print(f"| RSS range after the warm-up | {mib(min(s[1] for s in after_warm))} - "
          f"{mib(max(s[1] for s in after_warm))} |")
    print(f"| open descriptors: startup / after warm-up / end | {fds_start} / {fds_warm} / {fds_end} |")
    g_end = samples[-1][3]
    print(f"| retained jobs at the end | {g_end.get('gatherd_jobs_retained', 0):,.0f} |")
    print(f"| gatherd CPU | {cpu1 - cpu0:,.1f} s ({(cpu1 - cpu0) / args.seconds * 100:.0f}% of a core) |")
    print()
    step = max(1, len(samples) // 10)
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    print("RSS over time: " + ", ".join(f"{s[0]:.0f} s {s[1] / 2**20:.1f}" for s in shown) + " (MiB).")
    print()
    print("Every operation's answer is checked (status and the state, outcome or per-result error); "
          "an error makes the run invalid. RSS includes allocator slack and pages freed but kept; "
          "finished jobs are retained 10 s, so the registry is in a steady state after the warm-up. "
          "No target is set: the numbers are reported, not judged.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
