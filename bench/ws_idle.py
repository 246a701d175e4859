#!/usr/bin/python3
"""Memory cost of an idle WebSocket connection (GET /v1/ws): server RSS delta per connection.

For each server measured (gatherd, then an asyncio reference: a python3 `websockets` server that
speaks just enough of the protocol, started by this script with --fake-server), in one run:

1. start it (gatherd: --max-connections and --ws-max-connections above C, --log-level warn), with
   RLIMIT_NOFILE raised for this process and, by inheritance, the server;
2. warm up: open WS_WARMUP connections, answer one `submit`, close them, wait until the
   `gatherd_ws_connections` gauge is back to 0; read VmRSS (/proc/PID/status) and the
   `process_resident_memory_bytes` metric: "before";
3. open C (WS_CONNECTIONS, default 10,000) connections, at most WS_PARALLEL handshakes in flight,
   send nothing on them (client ping_interval=None, no compression; the library still answers the
   server's pings), hold them WS_HOLD_S seconds, read VmRSS and the metric again: "after";
   bytes per connection = (after - before) / C;
4. check: the gauge equals C, every client connection is still open, and three of them (the first
   opened, the middle one, the last) answer a `submit` with 202; then close them all.

    GATHERD_BIN=build/release/service/gatherd python3 bench/ws_idle.py
    WS_CONNECTIONS=2000 python3 bench/ws_idle.py --servers asyncio   # client mechanics only

Needs python3-websockets (Debian 10.4). Prints a markdown section on stdout, progress on stderr.
Exit status: 0 valid run, 2 invalid run or setup failure (a server missing connections, a refused
handshake, a submit not answered), 1 when gatherd misses the target (<= 16 KiB per connection) and
BENCH_STRICT=1.
"""

import argparse
import asyncio
import itertools
import json
import os
import re
import resource
import signal
import sys
import time
import urllib.request
from http import HTTPStatus

sys.dont_write_bytecode = True  # keep bench/lib free of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib  # noqa: E402
from gatherd_proc import GatherdProcess, display_bin, provenance, resolve_bin  # noqa: E402

TAG = "ws_idle"
TARGET_BYTES = 16 * 1024
FD_HEADROOM = 512  # fds beyond C: listening socket, log, metrics requests, library internals


def log(msg):
    print(f"{TAG}: {msg}", file=sys.stderr, flush=True)


class Invalid(Exception):
    """The run did not measure what it claims to."""


class Interrupted(BaseException):
    """SIGTERM or SIGINT: stop, clean up, exit 128 + signal."""

    def __init__(self, signum):
        super().__init__(f"signal {signum}")
        self.code = 128 + signum


def on_signal_sync(signum, _frame):
    raise Interrupted(signum)


def install_sync_handlers():
    # (again after each asyncio.run: closing the loop resets the signals it handled to their defaults)
    signal.signal(signal.SIGTERM, on_signal_sync)
    signal.signal(signal.SIGINT, on_signal_sync)


async def interruptible(coro, pool):
    """Run coro; SIGTERM/SIGINT cancel it. On any early exit every connection in pool is aborted."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    got = []

    def on_signal(signum):
        got.append(signum)
        task.cancel()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    ok = False
    try:
        result = await coro
        ok = True
        return result
    except asyncio.CancelledError:
        if got:
            raise Interrupted(got[0]) from None
        raise
    finally:
        if not ok:
            for ws in pool:
                if ws.transport is not None:
                    ws.transport.abort()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


def env_int(name, default):
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else default


# --------------------------------------------------------------------------------------------
# The asyncio reference server (also the stand-in to test this script while gatherd lacks /v1/ws)
# --------------------------------------------------------------------------------------------

def fake_server_main(argv):
    ap = argparse.ArgumentParser(prog="ws_idle.py --fake-server")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ping-interval", type=float, default=30.0)  # gatherd: half of --ws-idle-timeout-ms
    args, _unknown = ap.parse_known_args(argv)  # gatherd flags are ignored
    asyncio.run(_fake_server(args))
    return 0


async def _fake_server(args):
    import websockets

    connected = set()
    counters = {"total": 0}
    job_seq = itertools.count(1)

    def rss():
        return benchlib.rss_bytes(os.getpid())

    def problem(status, code, detail):
        return {"type": f"urn:gatherd:{code}", "title": code, "status": status, "detail": detail, "code": code}

    async def process_request(path, headers):
        route = path.split("?", 1)[0]
        if route == "/healthz":
            return HTTPStatus.OK, [("Content-Type", "application/json")], b'{"status":"ok"}\n'
        if route == "/metrics":
            body = (f"gatherd_ws_connections {len(connected)}\n"
                    f"gatherd_ws_connections_total {counters['total']}\n"
                    f"process_resident_memory_bytes {rss()}\n"
                    f"process_open_fds {len(os.listdir('/proc/self/fd'))}\n").encode()
            return HTTPStatus.OK, [("Content-Type", "text/plain; version=0.0.4")], body
        if route != "/v1/ws":
            return HTTPStatus.NOT_FOUND, [("Content-Type", "application/problem+json")], \
                json.dumps(problem(404, "not_found", route)).encode()
        return None  # the library answers 426 itself when the upgrade headers are missing

    async def handler(ws):
        connected.add(ws)
        counters["total"] += 1
        try:
            async for raw in ws:
                try:
                    msg = json.loads(raw)
                except (ValueError, TypeError):
                    await ws.send(json.dumps({"type": "error", "ref": None,
                                              "problem": problem(400, "invalid_json", "not JSON")}))
                    continue
                ref = msg.get("ref") if isinstance(msg, dict) else None
                if isinstance(msg, dict) and msg.get("op") == "submit" and isinstance(msg.get("job"), dict):
                    job = {"id": f"{next(job_seq):032x}", "kind": msg["job"].get("kind"), "state": "queued"}
                    await ws.send(json.dumps({"type": "reply", "ref": ref, "status": 202, "body": job}))
                else:
                    await ws.send(json.dumps({"type": "error", "ref": ref,
                                              "problem": problem(400, "unknown_op", "stand-in server")}))
        finally:
            connected.discard(ws)

    # A reference server needs no graceful shutdown: with thousands of connections open, closing them
    # one by one would only delay the benchmark's cleanup. (A plain handler, not the loop's: it runs
    # even while the loop is busy with thousands of callbacks.)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    stop = asyncio.get_running_loop().create_future()
    async with websockets.serve(handler, "127.0.0.1", args.port, process_request=process_request,
                                compression=None, ping_interval=args.ping_interval, ping_timeout=30,
                                max_size=1 << 20, backlog=4096) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"msg": "listening", "port": port, "server": f"websockets {websockets.__version__}"}),
              flush=True)
        await stop


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------

def raise_nofile(needed):
    """Raise RLIMIT_NOFILE (soft, and hard if we may) to at least `needed`. Returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft, hard
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            return resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def ephemeral_ports():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return hi - lo + 1
    except (OSError, ValueError):
        return None


def scrape(port):
    """The unlabelled samples of /metrics as {name: float} (labelled ones under 'name{...}')."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


async def scrape_async(port):
    return await asyncio.to_thread(scrape, port)


def count_fds(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


async def open_many(uri, n, parallel, label, pool):
    """Open n connections, at most `parallel` handshakes in flight. Returns (conns in order, errors).
    Every connection opened is also appended to pool (for the cleanup when interrupted)."""
    import websockets

    sem = asyncio.Semaphore(parallel)
    errors = {}
    done = [0]
    t0 = time.monotonic()

    async def one(i):
        async with sem:
            try:
                ws = await websockets.connect(uri, ping_interval=None, compression=None, open_timeout=60,
                                              close_timeout=5, max_size=1 << 20)
            except Exception as e:  # noqa: BLE001 - every failure is counted and reported
                if isinstance(e, websockets.exceptions.InvalidStatusCode):
                    key = f"HTTP {e.status_code}"
                else:
                    key = f"{type(e).__name__}: {e}"[:160]
                errors[key] = errors.get(key, 0) + 1
                return None
            pool.append(ws)
            done[0] += 1
            if done[0] % 2000 == 0:
                log(f"{label}: {done[0]:,} open ({time.monotonic() - t0:.1f}s)")
            return (i, ws)

    results = await asyncio.gather(*(one(i) for i in range(n)))
    conns = [ws for _, ws in sorted(r for r in results if r is not None)]
    return conns, errors


async def close_many(conns, parallel):
    sem = asyncio.Semaphore(parallel)

    async def one(ws):
        async with sem:
            try:
                await ws.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                pass

    await asyncio.gather(*(one(ws) for ws in conns))


async def submit_check(ws, ref, timeout_s=10.0):
    """Send one submit; returns the reply's status (or a string saying what went wrong)."""
    msg = {"op": "submit", "ref": ref, "job": {"kind": "sleep", "params": {"duration_ms": 0}}}
    try:
        await ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout_s
        while True:
            raw = await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic()))
            reply = json.loads(raw)
            if reply.get("ref") != ref:
                continue
            if reply.get("type") == "reply":
                body = reply.get("body") or {}
                if reply.get("status") in (200, 202) and not body.get("id"):
                    return "reply without a job id"
                return reply.get("status")
            return f"{reply.get('type')}: {json.dumps(reply)[:200]}"
    except asyncio.TimeoutError:
        return f"no reply within {timeout_s:.0f}s"
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"[:200]


async def wait_gauge(port, value, timeout_s):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = (await scrape_async(port)).get("gatherd_ws_connections")
        if last == value:
            return last
        await asyncio.sleep(0.1)
    return last


async def measure(srv, label, n, parallel, hold_s, warmup, pool):
    """Steps 2-4 of the module docstring against a running server. Returns a result dict."""
    uri = f"ws://127.0.0.1:{srv.port}/v1/ws"
    res = {"problems": []}

    # 2. warmup and baseline
    if warmup > 0:
        conns, errors = await open_many(uri, warmup, parallel, f"{label} warmup", pool)
        if errors:
            raise Invalid(f"warmup handshakes failed: {errors}{srv.exit_note()}")
        status = await submit_check(conns[0], "warmup")
        if status != 202:
            raise Invalid(f"warmup submit: {status}")
        await close_many(conns, parallel)
        del conns
        pool.clear()
    gauge = await wait_gauge(srv.port, 0.0, 10.0)
    if gauge is None:
        raise Invalid("no gatherd_ws_connections in /metrics")
    if gauge != 0:
        res["problems"].append(f"gauge {gauge:.0f} (not 0) 10 s after the warmup connections closed")
    await asyncio.sleep(1.0)
    res["rss_before"] = benchlib.rss_bytes(srv.pid)
    res["metric_before"] = (await scrape_async(srv.port)).get("process_resident_memory_bytes")

    # 3. open n, hold
    t0 = time.monotonic()
    conns, errors = await open_many(uri, n, parallel, label, pool)
    res["open_s"] = time.monotonic() - t0
    res["opened"] = len(conns)
    res["open_errors"] = errors
    if errors:
        res["problems"].append(f"{n - len(conns):,} handshakes failed: "
                               + ", ".join(f"{k} x{v}" for k, v in sorted(errors.items())))
    log(f"{label}: {len(conns):,}/{n:,} open in {res['open_s']:.1f}s; holding {hold_s:g}s")
    await asyncio.sleep(hold_s)
    res["rss_after"] = benchlib.rss_bytes(srv.pid)
    res["hwm"] = benchlib.hwm_bytes(srv.pid)
    metrics = await scrape_async(srv.port)
    res["metric_after"] = metrics.get("process_resident_memory_bytes")
    res["gauge"] = metrics.get("gatherd_ws_connections")
    res["server_fds"] = count_fds(srv.pid)
    res["client_open"] = sum(1 for ws in conns if ws.open)
    closed = [ws.close_code for ws in conns if not ws.open]
    if res["gauge"] != n:
        res["problems"].append(f"gatherd_ws_connections is {res['gauge']}, not {n:,}")
    if closed:
        codes = {}
        for c in closed:
            codes[c] = codes.get(c, 0) + 1
        res["problems"].append(f"{len(closed):,} connections closed during the hold (close codes {codes})")

    # 4. still usable? (after the RSS reading, so the jobs cost nothing in the measurement)
    picks = [(0, "first")]
    if len(conns) > 2:
        picks.append((len(conns) // 2, "middle"))
    if len(conns) > 1:
        picks.append((len(conns) - 1, "last"))
    answers = []
    for i, name in picks:
        if i < len(conns):
            status = await submit_check(conns[i], f"bench-{name}")
            answers.append((name, status))
    res["submits"] = answers
    bad = [f"{name}: {status}" for name, status in answers if status != 202]
    if bad or not answers:
        res["problems"].append("submit not answered 202 (" + ", ".join(bad or ["no connection"]) + ")")

    t0 = time.monotonic()
    await close_many(conns, parallel)
    res["close_s"] = time.monotonic() - t0
    return res


def run_server(label, binary, server_args, args, keep):
    """Start one server, measure it, stop it. Returns the result dict (with 'invalid' on failure)."""
    res = {"label": label, "args": server_args, "problems": []}
    try:
        with GatherdProcess(binary, server_args, f"{TAG} {label}", keep=keep) as srv:
            log(f"{label}: pid {srv.pid}, port {srv.port}")
            pool = []
            try:
                res.update(asyncio.run(interruptible(
                    measure(srv, label, args.connections, args.parallel, args.hold, args.warmup, pool), pool)))
            except Invalid as e:
                res["invalid"] = f"{e}{srv.exit_note()}"
            except OSError as e:
                res["invalid"] = f"{e!r}{srv.exit_note()}"
            finally:
                install_sync_handlers()
                pool.clear()
            if not res.get("invalid") and not srv.alive():
                res["problems"].append(f"server exited during the run{srv.exit_note()}")
            if res.get("invalid") or res["problems"]:
                srv.tail_log()
    except RuntimeError as e:  # did not start (e.g. an unknown flag: no /v1/ws support yet)
        res["invalid"] = re.sub(r"; see \S+", "", str(e))  # the log dir is gone unless --keep
    if res.get("invalid"):
        log(f"{label}: invalid: {res['invalid']}")
    return res


def kib(b):
    return f"{b / 1024:,.1f} KiB"


def mib(b):
    return f"{b / (1 << 20):,.1f} MiB"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--fake-server":
        return fake_server_main(sys.argv[2:])

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gatherd-bin", default=os.environ.get("GATHERD_BIN", "build/release/service/gatherd"))
    ap.add_argument("--connections", type=int, default=env_int("WS_CONNECTIONS", 10_000))
    ap.add_argument("--parallel", type=int, default=env_int("WS_PARALLEL", 200),
                    help="handshakes in flight at once")
    ap.add_argument("--hold", type=float, default=float(os.environ.get("WS_HOLD_S", "5")),
                    help="seconds the connections are held before the second reading")
    ap.add_argument("--warmup", type=int, default=env_int("WS_WARMUP", 100))
    ap.add_argument("--servers", default=os.environ.get("WS_SERVERS", "gatherd,asyncio"),
                    help="comma-separated: gatherd, asyncio (the python websockets reference)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs with the server logs")
    args = ap.parse_args()
    servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    if not servers or set(servers) - {"gatherd", "asyncio"}:
        ap.error("--servers takes gatherd and/or asyncio")

    try:
        import websockets
    except ImportError:
        log("needs the websockets library for python3 (Debian: apt-get install python3-websockets)")
        return 2

    n = args.connections
    needed = n + args.warmup + FD_HEADROOM
    soft, hard = raise_nofile(needed)
    if soft < needed:
        log(f"RLIMIT_NOFILE is {soft} (hard {hard}) and cannot be raised to {needed}: lower WS_CONNECTIONS "
            f"(to about {max(0, soft - args.warmup - FD_HEADROOM)}) or raise the hard limit (ulimit -Hn)")
        return 2
    ports = ephemeral_ports()
    if ports is not None and ports < n + 1000:
        log(f"only {ports} ephemeral ports (net.ipv4.ip_local_port_range) for {n} loopback connections: "
            "lower WS_CONNECTIONS or widen the range")
        return 2

    install_sync_handlers()
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    binary = resolve_bin(args.gatherd_bin)
    room = str(n + args.warmup + 100)
    gatherd_args = ["--max-connections", room, "--ws-max-connections", room, "--log-level", "warn"]
    results = []
    if "gatherd" in servers and not os.access(binary, os.X_OK):
        log(f"no gatherd binary at {binary} (build first: scripts/build.sh release, or set GATHERD_BIN)")
        return 2
    try:
        for name in servers:
            if name == "gatherd":
                results.append(run_server("gatherd", binary, gatherd_args, args, args.keep))
            else:
                results.append(run_server("asyncio", [sys.executable, os.path.abspath(__file__), "--fake-server"],
                                          [], args, args.keep))
    except Interrupted as e:
        log(f"interrupted ({e}); every process started was stopped")
        return e.code

    def per_conn(r, key_before, key_after):
        if r.get(key_before) is None or r.get(key_after) is None:
            return None
        return (r[key_after] - r[key_before]) / n

    ref = next((r for r in results if r["label"] == "asyncio" and not r.get("invalid")), None)
    ref_per = per_conn(ref, "rss_before", "rss_after") if ref else None

    print("## Idle WebSocket connections")
    print()
    print(f"{n:,} idle connections to `GET /v1/ws` opened from one python3 asyncio client "
          f"(websockets {websockets.__version__}, ping_interval=None, no compression, at most {args.parallel} "
          f"handshakes in flight), held {args.hold:g} s, after a warmup of {args.warmup} connections opened "
          f"and closed; RLIMIT_NOFILE {soft} for the client and the server; client and server share "
          f"{os.cpu_count()} cores on loopback. Started {started}.")
    print()
    for r in results:
        if r["label"] == "gatherd":
            print(f"- gatherd: `{display_bin(binary)}` ({provenance(binary)}) {' '.join(gatherd_args)}")
        else:
            print(f"- asyncio reference: a python3 websockets {websockets.__version__} server "
                  "(`ws_idle.py --fake-server`: compression off, ping every 30 s, answers `submit` with a stub "
                  "job)")
    print()
    print("| server | open at the end (gauge / client) | VmRSS before -> after | bytes per connection (VmRSS) "
          "| bytes per connection (`process_resident_memory_bytes`) | ratio to asyncio reference "
          f"| target <= {TARGET_BYTES // 1024} KiB |")
    print("|---|---:|---:|---:|---:|---:|---|")
    worst = 0
    for r in results:
        if r.get("invalid"):
            print(f"| {r['label']} | INVALID: {r['invalid']} | | | | | |")
            worst = 2
            continue
        pc = per_conn(r, "rss_before", "rss_after")
        pm = per_conn(r, "metric_before", "metric_after")
        ratio = f"{pc / ref_per:.2f}x" if ref_per and pc is not None and ref_per > 0 else "-"
        if r["problems"]:
            verdict = "INVALID"
            worst = 2
        elif r["label"] == "gatherd":
            verdict = "yes" if pc <= TARGET_BYTES else "**no**"
            if pc > TARGET_BYTES and os.environ.get("BENCH_STRICT") == "1":
                worst = max(worst, 1)
        else:
            verdict = "reference"
        gauge = f"{r['gauge']:,.0f}" if r.get("gauge") is not None else "n/a"
        print(f"| {r['label']} | {gauge} / {r['client_open']:,} | {mib(r['rss_before'])} -> {mib(r['rss_after'])} "
              f"| {pc:,.0f} ({kib(pc)}) | {f'{pm:,.0f}' if pm is not None else 'n/a'} | {ratio} | {verdict} |")
    print()
    for r in results:
        if r.get("invalid"):
            continue
        subs = ", ".join(f"{name} {status}" for name, status in r.get("submits", []))
        print(f"- {r['label']}: {r['opened']:,} opened in {r['open_s']:.1f} s ({r['opened'] / r['open_s']:,.0f}/s), "
              f"closed in {r['close_s']:.1f} s; server fds while held {r['server_fds']:,}; VmHWM "
              f"{mib(r['hwm'])}; `submit` on the first / middle / last connection: {subs}.")
        for p in r["problems"]:
            print(f"  **Invalid**: {p}")
    return worst


if __name__ == "__main__":
    sys.exit(main())
