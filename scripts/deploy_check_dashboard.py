#!/usr/bin/python3
"""The always-run half of scripts/deploy_check.sh: the Grafana dashboard and the alert rules
against a real Prometheus that scraped a real gatherd under load.

1. The dashboard JSON parses, panel ids are unique, and every panel and target uses the
   datasource uid that deploy/grafana/provisioning/datasources/ provisions.
2. gatherd (GATHERD_BIN, default build/release/service/gatherd) starts on a free port with small
   admission limits so that a 429 is cheap, and fetch allowed to reach 127.0.0.1 (by name:
   --fetch-allow-host 127.0.0.1) but not `localhost`, so that the egress guard has something to
   refuse; every metric named by the dashboard or the rules must be on its /metrics. A local
   HTTP/1.1 upstream (http.server, in this process) answers the fetches.
3. Prometheus (Debian's /usr/bin/prometheus) scrapes it every second and evaluates
   deploy/prometheus/alerts.yml every second.
4. Load: jobs of both kinds in every terminal state, retries, a batch, a list, a cancel, 404 and
   400 answers, 429 queue_full, gathers that complete and time out, and a WebSocket session
   (submit, watch, gather, an invalid message, a client close), and named primitives (a lock, a
   semaphore lease that expires, a queue), the admission queue held full for a scrape, and
   fetch batches (json and streamed) to the upstream: 2xx, 4xx and 5xx answers, a retried 503, a
   connect error (a closed port), an egress refusal, keep-alive reuse and rate-limit waits.
5. Every query of every panel (and the template variable's) is run as a range query over the
   load with $instance = the gatherd instance and $__rate_interval = 5s: it must succeed without
   warnings and return at least one non-NaN sample, and the panels listed in EXPECT_NONZERO must
   show those series above zero. Every rule group must evaluate with health "ok".
6. gatherd stops on SIGTERM with exit status 0.

Panels that may legitimately show no data: none under this load. In production, the latency,
queue-wait, job, gather and fetch attempt duration quantiles and the ratio panels show no data for a window
without traffic of their kind (a quantile or a ratio of zero rates is NaN); counters and gauges
always have data because gatherd exports every label value from the start.

Usage: deploy_check_dashboard.py  (run by scripts/deploy_check.sh; Python 3 standard library,
PyYAML and python3-websockets, all Debian packages)
"""

import asyncio
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy/grafana/dashboards/gatherd.json"
DATASOURCES = ROOT / "deploy/grafana/provisioning/datasources"
RULES = ROOT / "deploy/prometheus/alerts.yml"
PROMETHEUS = "/usr/bin/prometheus"
GATHERD_BIN = os.environ.get("GATHERD_BIN") or str(ROOT / "build/release/service/gatherd")
RATE_INTERVAL_S = 5  # Grafana's $__rate_interval is at least 4 scrape intervals (1s here)
RATE_INTERVAL = f"{RATE_INTERVAL_S}s"
LOAD_ROUNDS = 3

# Panel title -> label values whose series must exceed zero somewhere in the load window
# ("{instance}" stands for the gatherd instance, for legends that name it).
EXPECT_NONZERO = {
    "Jobs finished by state": {"succeeded", "failed", "cancelled", "timed_out"},
    "Jobs submitted by kind": {"sleep", "compute", "sleep retries"},
    "Admission rejections": {"queue_full"},
    "Responses by status code": {"200", "202", "400", "404", "429"},
    "Gathers by outcome": {"completed", "timed_out"},
    "WebSocket messages": {"in submit", "in watch", "in gather", "in invalid", "out reply",
                           "out job", "out gather", "out gather_done", "out error"},
    "WebSocket connections": {"accepted / s"},
    "WebSocket closes by reason": {"client"},
    "Lease expiries": {"expired / s"},
    "Queue saturation": {"queued {instance}", "run slots {instance}"},
    "Limits in use": {"connections {instance}", "retained jobs {instance}",
                      "fetch connections {instance}"},
    "Fetch requests by outcome": {"2xx", "4xx", "5xx", "connect", "fetch_denied"},
    "Fetch attempt duration": {"p50", "p95", "p99"},
    "Fetch batches by mode": {"json", "stream"},
    "Fetch retries": {"retries / s"},
    "Fetch rate-limit waits": {"throttled"},
    "Fetch connections": {"open", "opened / s", "reused / s"},
    "Fetch egress denied": {"denied / s"},
}


def log(msg):
    print(f"[dashboard] {msg}", flush=True)


def fail(msg):
    raise SystemExit(f"[dashboard] FAIL: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=10):
    """(status, parsed JSON or text); never raises on HTTP error statuses."""
    data = json.dumps(body).encode() if isinstance(body, (dict, list)) else body
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    text = raw.decode("utf-8", "replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


# --------------------------------------------------------------------------- 1. static
def datasource_uid():
    uids = []
    for f in sorted(DATASOURCES.glob("*.yml")):
        for ds in yaml.safe_load(f.read_text()).get("datasources", []):
            if ds.get("type") == "prometheus":
                uids.append(ds["uid"])
    if len(uids) != 1:
        fail(f"expected one provisioned Prometheus datasource in {DATASOURCES}, found {uids}")
    return uids[0]


def panel_targets(dashboard):
    """(panel title, legendFormat, expr) for every target of every panel, rows included."""
    out = []

    def walk(panels):
        for p in panels:
            walk(p.get("panels", []))
            for t in p.get("targets", []):
                out.append((p["title"], t.get("legendFormat", ""), t["expr"]))
    walk(dashboard["panels"])
    return out


def lint(dashboard, uid):
    ids = []

    def walk(panels):
        for p in panels:
            ids.append(p["id"])
            walk(p.get("panels", []))
            if p["type"] == "row":
                continue
            if p.get("datasource", {}).get("uid") != uid:
                fail(f"panel {p['title']!r}: datasource {p.get('datasource')} is not uid {uid!r}")
            for t in p.get("targets", []):
                if t.get("datasource", {}).get("uid") != uid:
                    fail(f"panel {p['title']!r} target {t.get('refId')}: datasource is not {uid!r}")
                if not t.get("expr"):
                    fail(f"panel {p['title']!r} target {t.get('refId')}: no expr")
            if not p.get("targets"):
                fail(f"panel {p['title']!r} has no query")
    walk(dashboard["panels"])
    if len(ids) != len(set(ids)):
        fail(f"duplicate panel ids: {sorted(ids)}")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query" and var.get("datasource", {}).get("uid") != uid:
            fail(f"variable {var['name']}: datasource is not {uid!r}")
    log(f"dashboard {DASHBOARD.name}: {len(ids)} panels, datasource uid {uid!r} everywhere")


METRIC_RE = re.compile(r"\b((?:gatherd|process)_[a-z0-9_]+)\b")


def referenced_metrics(exprs):
    names = set()
    for e in exprs:
        names.update(METRIC_RE.findall(e))
    return names


def exposed_metrics(text):
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
    return names


def check_metric_names(base, dashboard):
    """After the load, since gatherd adds HTTP series on first use of a route."""
    _, text = http("GET", f"{base}/metrics")
    rule_exprs = [r.get("expr", "") for g in yaml.safe_load(RULES.read_text())["groups"]
                  for r in g["rules"]]
    wanted = referenced_metrics([e for _, _, e in panel_targets(dashboard)] + rule_exprs)
    unknown = sorted(wanted - exposed_metrics(text))
    if unknown:
        fail(f"the dashboard or the rules name metrics gatherd does not expose: {unknown}")
    log(f"the {len(wanted)} metric names in the dashboard and the rules are all on /metrics")


# --------------------------------------------------------------------------- 2./3. processes
class Proc:
    def __init__(self, name, args, logdir, env=None):
        self.name = name
        self.log_path = Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "wb")
        self.p = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=env)

    def tail(self, n=3000):
        return self.log_path.read_text(errors="replace")[-n:]

    def stop(self, timeout=20):
        """SIGTERM, then the exit status (SIGKILL and None if it does not exit in time)."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
                return None
        self._log.close()
        return self.p.returncode


def start_gatherd(tmp):
    if not os.access(GATHERD_BIN, os.X_OK):
        fail(f"{GATHERD_BIN} is missing: build it with scripts/build.sh release")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATHERD_")}
    g = Proc("gatherd", [GATHERD_BIN, "--host", "127.0.0.1", "--port", "0",
                         "--max-running", "4", "--max-queued", "4",
                         "--fetch-allow-host", "127.0.0.1",
                         "--shutdown-grace-ms", "500", "--log-level", "warn"], tmp, env)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        for line in g.log_path.read_text(errors="replace").splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if obj.get("msg") == "listening":
                return g, int(obj["port"])
        if g.p.poll() is not None:
            fail(f"gatherd exited with {g.p.returncode}:\n{g.tail()}")
        time.sleep(0.05)
    g.stop()
    fail(f"gatherd printed no 'listening' line:\n{g.tail()}")


def start_prometheus(tmp, gatherd_port):
    port = free_port()
    config = Path(tmp) / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  scrape_timeout: 1s\n"
        "  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: gatherd\n"
        "    static_configs:\n"
        f"      - targets: ['127.0.0.1:{gatherd_port}']\n")
    p = Proc("prometheus", [PROMETHEUS, f"--config.file={config}",
                            f"--storage.tsdb.path={Path(tmp) / 'data'}",
                            f"--web.listen-address=127.0.0.1:{port}"], tmp)
    return p, f"http://127.0.0.1:{port}"


def prom_get(prom, path, params):
    url = f"{prom}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    status, doc = http("GET", url, timeout=10)
    if not isinstance(doc, dict):
        raise RuntimeError(f"{url}: HTTP {status}: {doc!r}"[:500])
    return status, doc


def prom_scalar(prom, expr):
    try:
        _, doc = prom_get(prom, "/api/v1/query", {"query": expr})
    except (urllib.error.URLError, OSError, RuntimeError):
        return None
    if doc.get("status") != "success" or not doc["data"]["result"]:
        return None
    return float(doc["data"]["result"][0]["value"][1])


def wait_for(what, predicate, timeout, proc):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.p.poll() is not None:
            fail(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        if predicate():
            return
        time.sleep(0.25)
    fail(f"timed out waiting for {what}:\n{proc.tail()}")


class Upstream:
    """The fetch load's upstream: HTTP/1.1 keep-alive on 127.0.0.1; /ok answers 200,
    /status/<code> that status, /delay/<ms> 200 after <ms> milliseconds."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            parts = self.path.split("?")[0].strip("/").split("/")
            code = 200
            if parts[0] == "status" and len(parts) > 1:
                code = int(parts[1])
            elif parts[0] == "delay" and len(parts) > 1:
                time.sleep(int(parts[1]) / 1000)
            body = json.dumps({"path": self.path, "status": code}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def __init__(self):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, host="127.0.0.1"):
        return f"http://{host}:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------- 4. load
def fetch_load(base, up, closed_port):
    """POST /v1/fetch batches to the upstream: every panel of the Fetch row gets data."""
    def batch(body, headers=None):
        status, doc = http("POST", f"{base}/v1/fetch", body, headers, timeout=30)
        if status != 200:
            fail(f"POST /v1/fetch {body} -> {status} {doc}")
        return doc

    # One connection at a time: the /ok requests reuse a keep-alive connection. The 404 is an
    # answer, the closed port a connect error, `localhost` refused by the egress guard (only
    # 127.0.0.1 is allowed), and nothing of that is retried without a retry policy.
    doc = batch({"requests": [up.url("/ok")] * 4 + [up.url("/delay/30"), up.url("/status/404"),
                 f"http://127.0.0.1:{closed_port}/", up.url("/ok", "localhost")],
                 "concurrency": 1})
    got = [(r["status"], (r["error"] or {}).get("type")) for r in doc["results"]]
    want = [(200, None)] * 5 + [(404, None), (None, "connect"), (None, "fetch_denied")]
    if got != want:
        fail(f"fetch batch: {got}, expected {want}")
    # A 503 retried once, and still 503 (a status, not an error, once the attempts are used up).
    doc = batch({"requests": [up.url("/status/503")],
                 "retry": {"max_attempts": 2, "initial_backoff_ms": 10, "jitter": False}})
    r = doc["results"][0]
    if (r["status"], r["attempts"]) != (503, 2):
        fail(f"fetch with retry: {r}")
    # Streamed (NDJSON), rate-limited: 10 requests at 20/s wait for their tokens.
    _, text = http("POST", f"{base}/v1/fetch",
                   {"requests": [up.url("/ok")] * 10, "concurrency": 4,
                    "rate": {"per_second": 20, "burst": 1}},
                   {"Accept": "application/x-ndjson"}, timeout=30)
    lines = [json.loads(line) for line in str(text).splitlines() if line.strip()]
    summary = lines[-1].get("summary") if lines else None
    if len(lines) != 11 or not summary or summary.get("ok") != 10 or not summary["throttled_ms"]:
        fail(f"streamed fetch batch: {text!r}"[:1000])


def generate_load(base, up, closed_port):
    def job(spec, expect=202):
        status, body = http("POST", f"{base}/v1/jobs", spec)
        if status != expect:
            fail(f"POST /v1/jobs {spec} -> {status} {body}")
        return body

    def wait(job_id, state):
        status, body = http("GET", f"{base}/v1/jobs/{job_id}?wait_ms=10000", timeout=15)
        if status != 200 or body.get("state") != state:
            fail(f"job {job_id}: expected {state}, got {status} {body}")

    for _ in range(10):
        wait(job({"kind": "sleep", "params": {"duration_ms": 5}})["id"], "succeeded")
    wait(job({"kind": "compute", "params": {"op": "sha256", "data": "abc", "rounds": 1000}})["id"],
         "succeeded")
    wait(job({"kind": "sleep", "params": {"duration_ms": 1, "fail_attempts": 5},
              "retry": {"max_attempts": 2, "initial_backoff_ms": 10}})["id"], "failed")
    wait(job({"kind": "sleep", "params": {"duration_ms": 2000}, "timeout_ms": 50})["id"],
         "timed_out")
    long = job({"kind": "sleep", "params": {"duration_ms": 10000}})["id"]
    status, _ = http("POST", f"{base}/v1/jobs/{long}/cancel", {"reason": "deploy check"})
    if status not in (200, 202):
        fail(f"cancel -> {status}")
    wait(long, "cancelled")
    status, _ = http("POST", f"{base}/v1/jobs/batch",
                     {"jobs": [{"kind": "sleep", "params": {"duration_ms": 1}}] * 3})
    if status != 202:
        fail(f"POST /v1/jobs/batch -> {status}")
    for path, expect in (("/v1/jobs", 200), ("/v1/jobs/0123456789abcdef", 404), ("/nope", 404)):
        status, _ = http("GET", base + path)
        if status != expect:
            fail(f"GET {path} -> {status}, expected {expect}")
    status, _ = http("POST", f"{base}/v1/jobs", b"{not json",
                     {"Content-Type": "application/json"})
    if status != 400:
        fail(f"POST /v1/jobs with bad JSON -> {status}")
    status, body = http("POST", f"{base}/v1/gather",
                        {"jobs": [{"kind": "sleep", "params": {"duration_ms": 5}}] * 3})
    if status != 200 or body.get("outcome") != "completed":
        fail(f"gather -> {status} {body}")
    status, body = http("POST", f"{base}/v1/gather",
                        {"jobs": [{"kind": "sleep", "params": {"duration_ms": 2000}}],
                         "timeout_ms": 20, "cancel_pending": True})
    if status != 200 or body.get("outcome") != "timed_out":
        fail(f"gather with timeout -> {status} {body}")
    asyncio.run(websocket_session(base.replace("http://", "ws://") + "/v1/ws"))
    primitives(base)
    fetch_load(base, up, closed_port)
    # Admission control: 4 run slots and 4 queue places; the ninth long job gets 429 queue_full.
    ids, codes = [], []
    for _ in range(10):
        status, body = http("POST", f"{base}/v1/jobs",
                            {"kind": "sleep", "params": {"duration_ms": 30000}})
        codes.append(status)
        if status == 202:
            ids.append(body["id"])
    if 429 not in codes:
        fail(f"no 429 from a full queue: {codes}")
    time.sleep(1.5)  # a scrape (every second) sees the queue and the run slots full
    for i in ids:
        http("POST", f"{base}/v1/jobs/{i}/cancel", {})
    for i in ids:
        wait(i, "cancelled")


def primitives(base):
    """A lock held and released, a semaphore permit left to expire, a queue item got and done."""
    def call(method, path, body, expect=200):
        status, answer = http(method, base + path, body)
        if status != expect:
            fail(f"{method} {path} {body} -> {status} {answer}")
        return answer

    lock = call("POST", "/v1/locks/deploy-check/acquire",
                {"holder": "a", "wait_ms": 1000, "ttl_ms": 5000})
    call("POST", "/v1/locks/deploy-check/release", {"permit_id": lock["permit_id"]})
    call("PUT", "/v1/semaphores/deploy-check", {"permits": 1})
    call("POST", "/v1/semaphores/deploy-check/acquire",
         {"holder": "a", "wait_ms": 1000, "ttl_ms": 100})  # never released: its lease expires
    call("POST", "/v1/semaphores/deploy-check/acquire",
         {"holder": "b", "wait_ms": 5000, "ttl_ms": 100})  # waits for that expiry
    call("PUT", "/v1/queues/deploy-check", {"maxsize": 10})
    call("POST", "/v1/queues/deploy-check/put", {"items": [1, 2]})
    got = call("POST", "/v1/queues/deploy-check/get",
               {"max_items": 2, "wait_ms": 0, "lease_ms": 5000})
    call("POST", "/v1/queues/deploy-check/done",
         {"receipts": [i["receipt"] for i in got["items"]]})


async def websocket_session(url):
    import websockets  # python3-websockets (Debian)
    async with websockets.connect(url) as ws:
        await ws.send(json.dumps({"op": "watch", "ref": "w", "all": True}))
        await ws.send(json.dumps({"op": "submit", "ref": "s",
                                  "job": {"kind": "sleep", "params": {"duration_ms": 5}}}))
        await ws.send(json.dumps({"op": "gather", "ref": "g",
                                  "jobs": [{"kind": "sleep", "params": {"duration_ms": 5}}] * 2}))
        await ws.send("not json")
        seen = set()
        deadline = time.monotonic() + 10
        while not {"reply", "job", "gather", "gather_done", "error"} <= seen:
            left = deadline - time.monotonic()
            if left <= 0:
                fail(f"WebSocket session: only saw {sorted(seen)}")
            seen.add(json.loads(await asyncio.wait_for(ws.recv(), left))["type"])
    # leaving the block closes the connection from the client side: reason "client"


# --------------------------------------------------------------------------- 5. queries
def expand(expr, instance):
    """As Grafana interpolates: a multi-value variable in a regex matcher is regex-escaped, and
    the backslashes doubled for the PromQL string."""
    value = re.escape(instance).replace("\\", "\\\\")
    return expr.replace("$__rate_interval", RATE_INTERVAL).replace("$instance", value)


def series_name(legend, metric):
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), legend)


def raw_short(expr, width=84):
    return expr if len(expr) <= width else expr[:width - 3] + "..."


def check_queries(prom, dashboard, instance, start, end):
    var = dashboard["templating"]["list"][0]
    m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", var["query"]["query"])
    if not m:
        fail(f"unexpected variable query {var['query']}")
    _, doc = prom_get(prom, f"/api/v1/label/{m.group(2)}/values",
                      {"match[]": m.group(1), "start": start, "end": end})
    if doc.get("status") != "success" or instance not in doc["data"]:
        fail(f"variable {var['name']}: {var['query']['query']} -> {doc}")
    log(f"variable ${var['name']}: {doc['data']}")

    failures = []
    nonzero = {}  # panel title -> legend values seen above zero
    targets = panel_targets(dashboard)
    # Each query with $instance = the gatherd instance, and = All (.*).
    runs = [(t, l, expand(e, instance)) for t, l, e in targets]
    runs += [(t, l, e.replace("$__rate_interval", RATE_INTERVAL).replace("$instance", ".*"))
             for t, l, e in targets if "$instance" in e]
    for i, (title, legend, expr) in enumerate(runs):
        try:
            status, doc = prom_get(prom, "/api/v1/query_range",
                                   {"query": expr, "start": start, "end": end, "step": "1s"})
        except (urllib.error.URLError, OSError, RuntimeError) as e:
            failures.append(f"{title}: {expr}: {e}")
            continue
        if doc.get("status") != "success" or doc.get("warnings"):
            failures.append(f"{title}: {expr}: HTTP {status} {doc.get('error')} "
                            f"{doc.get('warnings')}")
            continue
        result = doc["data"]["result"]
        values = [(series_name(legend, s["metric"]), float(v))
                  for s in result for _, v in s["values"]]
        real = [(n, v) for n, v in values if not math.isnan(v)]
        if not real:
            failures.append(f"{title}: no data: {expr}")
            continue
        nonzero.setdefault(title, set()).update(n for n, v in real if v > 0)
        if i < len(targets):  # the All pass repeats the same queries: not logged again
            log(f"ok  {title:28} {len(result):2} series  {raw_short(expr)}")
    for title, want in EXPECT_NONZERO.items():
        missing = {w.format(instance=instance) for w in want} - nonzero.get(title, set())
        if missing:
            failures.append(f"{title}: never above zero: {sorted(missing)} "
                            f"(saw {sorted(nonzero.get(title, set()))})")
    if failures:
        fail("panel queries:\n  " + "\n  ".join(failures))
    log(f"all {len(targets)} panel queries ({len(runs)} with both values of $instance) returned "
        f"data; {len(EXPECT_NONZERO)} panels showed their expected series")

    _, doc = prom_get(prom, "/api/v1/rules", {})
    rules = [r for g in doc["data"]["groups"] for r in g["rules"]]
    bad = [f"{r['name']}: {r.get('lastError')}" for r in rules if r.get("health") != "ok"]
    if bad or not rules:
        fail(f"rule evaluation: {bad or 'no rules loaded'}")
    log(f"{len(rules)} rules of {RULES.name} evaluate with health ok")


def main():
    # Interrupted by the calling script: still stop gatherd and Prometheus (the finally below).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    dashboard = json.loads(DASHBOARD.read_text())
    uid = datasource_uid()
    lint(dashboard, uid)

    with tempfile.TemporaryDirectory(prefix="gatherd-deploy-check-") as tmp:
        gatherd, port = start_gatherd(tmp)
        prom = None
        up = Upstream()
        try:
            base = f"http://127.0.0.1:{port}"
            prom, prom_url = start_prometheus(tmp, port)
            instance = f"127.0.0.1:{port}"
            wait_for("the first scrape", lambda: prom_scalar(prom_url, 'up{job="gatherd"}') == 1,
                     60, prom)
            start = time.time() - 2
            t0 = time.monotonic()
            # Rounds a few scrapes apart: a series that gatherd creates on first use (a route, a
            # status code) starts at its first scraped value, so only later rounds show as a rate.
            closed_port = free_port()  # nothing listens there: a connect error
            for i in range(LOAD_ROUNDS):
                if i:
                    time.sleep(2)
                generate_load(base, up, closed_port)
            log(f"{LOAD_ROUNDS} rounds of load in {time.monotonic() - t0:.1f}s")
            check_metric_names(base, dashboard)
            # Scrapes after the load, and the recording rules evaluated on them.
            _, text = http("GET", f"{base}/metrics")
            m = re.search(r"^gatherd_ws_connections_total (\S+)$", text, re.M)
            target = float(m.group(1)) if m else 1
            wait_for("a scrape after the load",
                     lambda: (prom_scalar(prom_url, 'sum(gatherd_ws_connections_total)') or 0)
                     >= target, 30, prom)
            wait_for("the recording rules",
                     lambda: prom_scalar(prom_url, "gatherd:http_slow_requests:ratio_rate5m")
                     is not None, 30, prom)
            time.sleep(RATE_INTERVAL_S)
            check_queries(prom_url, dashboard, instance, start, time.time())
        finally:
            if prom:
                prom.stop()
            code = gatherd.stop()
            up.close()
        if code != 0:
            fail(f"gatherd exited with {code} on SIGTERM:\n{gatherd.tail()}")
        log("gatherd exited 0 on SIGTERM")


if __name__ == "__main__":
    main()
