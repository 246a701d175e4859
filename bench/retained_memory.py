#!/usr/bin/env python3
"""Memory cost of a retained (finished) job in gatherd: RSS delta per job (python3 stdlib only).

Starts gatherd with room for every job (--max-retained-jobs 250000, one-hour retention), reads
VmRSS after startup and a warmup of 1000 jobs, submits 200,000 `sleep` jobs of 0 ms through
POST /v1/jobs/batch (1000 per batch, one keep-alive connection, 429 answered by a short sleep and
a retry), waits until the last job of every batch is terminal (GET /v1/jobs/{id}?wait_ms=...),
reads VmRSS again and reports bytes per job against the target (<= 2048). Then checks that the
jobs are still there: 100 random ids (always including the first and the last) must answer 200.

    GATHERD_BIN=build/release/service/gatherd python3 bench/retained_memory.py

Prints a markdown section on stdout, progress on stderr. Exit status: 0 valid run, 2 invalid run
(a job missing, not terminal, or an unexpected answer); 1 when the target is missed and
BENCH_STRICT=1.
"""

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # keep bench/lib free of __pycache__
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
import benchlib  # noqa: E402
from gatherd_proc import describe_exit  # noqa: E402

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TERMINAL = {"succeeded", "failed", "cancelled", "timed_out"}
TARGET_BYTES_PER_JOB = 2048
SERVER_ARGS = ["--max-retained-jobs", "250000", "--default-retention-ms", "3600000",
               "--max-queued", "200000", "--max-running", "10000", "--log-level", "warn"]


def log(msg):
    print(f"retained_memory: {msg}", file=sys.stderr, flush=True)


class Invalid(Exception):
    """The run did not measure what it claims to (a job missing, an unexpected status...)."""


class Client:
    """One keep-alive HTTP/1.1 connection; reconnects once if the server closed it."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("Connection", "").lower() == "close":
                    self.close()
                return resp.status, resp.headers, data
            except (http.client.HTTPException, ConnectionError) as e:
                self.close()
                if attempt == 2:
                    raise Invalid(f"{method} {path}: {e!r}") from e
        raise AssertionError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def submit_batch(client, body, stats):
    """POST one batch; on 429 sleep briefly and retry. Returns the job ids in order."""
    while True:
        status, headers, data = client.request("POST", "/v1/jobs/batch", body)
        if status == 202:
            jobs = json.loads(data)["jobs"]
            return [j["id"] for j in jobs]
        if status == 429:
            stats["429"] += 1
            retry_after = headers.get("Retry-After")
            try:
                delay = min(float(retry_after), 0.2) if retry_after else 0.02
            except ValueError:
                delay = 0.02
            time.sleep(max(delay, 0.005))
            continue
        raise Invalid(f"POST /v1/jobs/batch answered {status}: {data[:300]!r}")


def wait_terminal(client, job_id, timeout_s=300.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status, _, data = client.request("GET", f"/v1/jobs/{job_id}?wait_ms=10000")
        if status != 200:
            raise Invalid(f"GET /v1/jobs/{job_id} answered {status}: {data[:300]!r}")
        job = json.loads(data)
        if job.get("state") in TERMINAL:
            return job
    raise Invalid(f"job {job_id} not terminal after {timeout_s}s")


def submit_and_wait(client, n_jobs, batch_size, body_for, stats):
    ids, last_of_batch = [], []
    t0 = time.monotonic()
    while len(ids) < n_jobs:
        n = min(batch_size, n_jobs - len(ids))
        batch_ids = submit_batch(client, body_for(n), stats)
        if len(batch_ids) != n:
            raise Invalid(f"batch of {n} returned {len(batch_ids)} jobs")
        ids.extend(batch_ids)
        last_of_batch.append(batch_ids[-1])
        if len(last_of_batch) % 20 == 0:
            log(f"submitted {len(ids):,} jobs ({time.monotonic() - t0:.1f}s, {stats['429']} x 429)")
    t_submit = time.monotonic() - t0
    states = {}
    for job_id in last_of_batch:
        state = wait_terminal(client, job_id)["state"]
        states[state] = states.get(state, 0) + 1
    return ids, t_submit, time.monotonic() - t0, states


def count_listed(client, limit_s=120.0):
    """Count retained succeeded jobs by paging GET /v1/jobs (after the RSS reading, so it costs nothing)."""
    count, after, t0 = 0, None, time.monotonic()
    while True:
        path = "/v1/jobs?state=succeeded&limit=1000" + (f"&after={after}" if after else "")
        status, _, data = client.request("GET", path)
        if status != 200:
            return None, f"listing answered {status}"
        page = json.loads(data)
        count += len(page.get("jobs", []))
        after = page.get("next")
        if not after:
            return count, None
        if time.monotonic() - t0 > limit_s:
            return None, f"listing took over {limit_s:.0f}s (stopped at {count:,})"


def tail_log(path, n=20):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()[-n:]
    except OSError:
        return
    if lines:
        log("last gatherd log lines:")
        sys.stderr.write("".join(lines))


def mib(b):
    return f"{b / (1024 * 1024):.1f} MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gatherd-bin", default=os.environ.get("GATHERD_BIN", "build/release/service/gatherd"))
    ap.add_argument("--jobs", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--warmup", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--no-count", action="store_true", help="skip counting the jobs by listing them")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir with the gatherd log")
    args = ap.parse_args()

    binary = args.gatherd_bin if os.path.isabs(args.gatherd_bin) else os.path.join(REPO_DIR, args.gatherd_bin)
    if not os.access(binary, os.X_OK):
        log(f"no gatherd binary at {binary} (build first: scripts/build.sh release, or set GATHERD_BIN)")
        return 2

    # SIGTERM ends the run through the finally below, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    workdir = tempfile.mkdtemp(prefix="gatherd-bench-mem.")
    log_path = os.path.join(workdir, "gatherd.log")
    env = {k: v for k, v in os.environ.items() if k not in ("GATHERD_API_TOKENS", "GATHERD_API_TOKEN")}
    env.setdefault("GATHERD_HOST", "127.0.0.1")
    proc = None
    client = None
    try:
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen([binary, "--port", "0", *SERVER_ARGS], stdout=log_file,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        port = benchlib.wait_gatherd_port(proc.pid, log_path, 30)
        benchlib.wait_http(f"http://127.0.0.1:{port}/healthz", 30)
        log(f"gatherd pid {proc.pid}, port {port}")
        client = Client(port)

        spec = {"kind": "sleep", "params": {"duration_ms": 0}}
        bodies = {}

        def body_for(n):
            if n not in bodies:
                bodies[n] = json.dumps({"jobs": [spec] * n}).encode()
            return bodies[n]

        stats = {"429": 0}
        rss_start = benchlib.rss_bytes(proc.pid)
        submit_and_wait(client, args.warmup, args.batch, body_for, stats)
        time.sleep(1.0)
        rss_before = benchlib.rss_bytes(proc.pid)
        log(f"RSS after startup {mib(rss_start)}, after {args.warmup} warmup jobs {mib(rss_before)}")

        ids, t_submit, t_done, states = submit_and_wait(client, args.jobs, args.batch, body_for, stats)
        time.sleep(1.0)
        rss_after = benchlib.rss_bytes(proc.pid)
        hwm = benchlib.hwm_bytes(proc.pid)
        log(f"{len(ids):,} jobs submitted in {t_submit:.1f}s, terminal after {t_done:.1f}s; "
            f"RSS {mib(rss_after)}")

        # Still there? The first (oldest, evicted first) and the last, plus random ones.
        sample = [ids[0], ids[-1]] + random.sample(ids[1:-1], max(0, min(args.samples, len(ids)) - 2))
        found, succeeded, bad = 0, 0, []
        for job_id in sample:
            status, _, data = client.request("GET", f"/v1/jobs/{job_id}")
            if status == 200:
                found += 1
                if json.loads(data).get("state") == "succeeded":
                    succeeded += 1
            else:
                bad.append(f"{job_id}: {status}")

        listed, listed_note = (None, "skipped") if args.no_count else count_listed(client)

        delta = rss_after - rss_before
        per_job = delta / len(ids)
        holds = per_job <= TARGET_BYTES_PER_JOB
        problems = []
        if bad:
            problems.append(f"{len(bad)} of {len(sample)} sampled ids not retrievable ({', '.join(bad[:3])})")
        if set(states) != {"succeeded"}:
            problems.append(f"last jobs of the batches ended {states}")
        if listed is not None and listed < len(ids):
            problems.append(f"only {listed:,} succeeded jobs listed")

        total_retained = len(ids) + args.warmup
        print("## Retained job memory")
        print()
        print(f"gatherd `{os.path.relpath(binary, REPO_DIR) if binary.startswith(REPO_DIR) else binary}` "
              f"{' '.join(SERVER_ARGS)}; {len(ids):,} `sleep` jobs (0 ms) in batches of {args.batch} "
              f"over one keep-alive connection, after a warmup of {args.warmup:,}. Started {started}.")
        print()
        print("| metric | value |")
        print("|---|---|")
        print(f"| retained jobs | {len(ids):,} measured (+{args.warmup:,} warmup = {total_retained:,} retained) |")
        print(f"| listed as succeeded | {f'{listed:,}' if listed is not None else listed_note} |")
        print(f"| retrievable (sampled) | {found}/{len(sample)} answered 200 ({succeeded} succeeded) |")
        print(f"| RSS after startup / after warmup | {mib(rss_start)} / {mib(rss_before)} |")
        print(f"| RSS after {len(ids):,} jobs (VmHWM) | {mib(rss_after)} ({mib(hwm) if hwm else 'n/a'}) |")
        print(f"| RSS delta | {mib(delta)} ({delta:,} bytes) |")
        print(f"| bytes per job | {per_job:,.0f} |")
        print(f"| target <= {TARGET_BYTES_PER_JOB} bytes/job | "
              f"{'INVALID' if problems else ('yes' if holds else '**no**')} |")
        print(f"| submit time / all terminal | {t_submit:.1f} s / {t_done:.1f} s "
              f"({len(ids) / t_done:,.0f} jobs/s end to end), {stats['429']} x 429 retried |")
        if problems:
            print()
            print("**Invalid run**: " + "; ".join(problems))
            return 2
        if not holds and os.environ.get("BENCH_STRICT") == "1":
            return 1
        return 0
    except Invalid as e:
        if proc is not None and proc.poll() is not None:
            e = Invalid(f"{e} (gatherd exited: {describe_exit(proc.returncode)})")
        log(f"invalid run: {e}")
        tail_log(log_path)
        print("## Retained job memory\n\n**Invalid run**: " + str(e))
        return 2
    except RuntimeError as e:
        log(str(e))
        tail_log(log_path)
        return 2
    finally:
        if client is not None:
            client.close()
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                rc = proc.wait(15)
                if rc != 0:
                    log(f"note: gatherd exited on SIGTERM with {describe_exit(rc)}")
            except subprocess.TimeoutExpired:
                log("gatherd ignored SIGTERM for 15 s; killing it")
                proc.kill()
                proc.wait()
        if args.keep:
            log(f"kept {workdir}")
        else:
            try:
                os.remove(log_path)
                os.rmdir(workdir)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
