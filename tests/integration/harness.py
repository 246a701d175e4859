"""Test harness: runs the real gatherd binary on loopback and talks HTTP to it.

The binary comes from the environment variable GATHERD_BIN (default:
build/release/service/gatherd under the repository root). When GATHERD_BIN is
unset and the default binary does not exist, the tests are skipped with a clear
message; when GATHERD_BIN names a missing file, they error.

Python 3 standard library only (plus PyYAML in the tests that read the contract).
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "build" / "release" / "service" / "gatherd"
OPENAPI_PATH = REPO_ROOT / "proto" / "openapi.yaml"
DECISIONS_PATH = REPO_ROOT / "docs" / "DECISIONS.md"
CONFIGURATION_PATH = REPO_ROOT / "docs" / "configuration.md"

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled", "timed_out"})
JOB_FIELDS = frozenset({
    "id", "kind", "state", "labels", "attempts", "cancel_requested", "created_at",
    "started_at", "finished_at", "duration_ms", "result", "error",
})
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

# Knobs for slow or instrumented builds (the tsan test preset sets both):
#   GATHERD_TEST_THREADS=N      every server gets `--threads N` unless the test passes its own,
#                               so sessions run on several I/O threads even on a 2-core machine.
#   GATHERD_TEST_TIME_SCALE=F   multiplies the harness's waits (start-up, wait_job, wait_for_log,
#                               stop, HTTP timeouts) and what tests pass to scaled().
TEST_THREADS = os.environ.get("GATHERD_TEST_THREADS", "")
TIME_SCALE = float(os.environ.get("GATHERD_TEST_TIME_SCALE", "1") or "1")


def scaled(seconds):
    """A wait in seconds, stretched by GATHERD_TEST_TIME_SCALE for slow builds."""
    return seconds * TIME_SCALE


STARTUP_TIMEOUT_S = 10.0


def gatherd_bin():
    """Path of the binary under test, or raise SkipTest when none is configured."""
    configured = os.environ.get("GATHERD_BIN")
    if configured:
        if not os.access(configured, os.X_OK):
            raise AssertionError(f"GATHERD_BIN={configured!r} is not an executable file")
        return configured
    if os.access(DEFAULT_BIN, os.X_OK):
        return str(DEFAULT_BIN)
    raise unittest.SkipTest(
        f"gatherd binary not found: set GATHERD_BIN or build {DEFAULT_BIN}")


def child_env(extra=None):
    """The environment for a child gatherd: no GATHERD_* leaks from the caller."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATHERD_")}
    env.update(extra or {})
    return env


def _has_flag(flags, name):
    return any(f == name or f.startswith(name + "=") for f in flags)


def encode_body(body, headers):
    """dict/list -> JSON (sets Content-Type unless given); str -> UTF-8; bytes as is."""
    if body is None:
        return None
    if isinstance(body, (dict, list)):
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        return json.dumps(body).encode()
    if isinstance(body, str):
        return body.encode()
    return body


class Gatherd:
    """One running gatherd process on 127.0.0.1:<port picked by the server>."""

    def __init__(self, *flags, env=None, startup_timeout=STARTUP_TIMEOUT_S):
        startup_timeout = scaled(startup_timeout)
        self.binary = gatherd_bin()
        self._tmp = tempfile.TemporaryDirectory(prefix="gatherd-test-")
        self.stdout_path = os.path.join(self._tmp.name, "stdout.log")
        self.stderr_path = os.path.join(self._tmp.name, "stderr.log")
        flags = [str(f) for f in flags]
        args = [self.binary, "--port", "0", "--log-format", "json"]
        if not _has_flag(flags, "--host"):
            args += ["--host", "127.0.0.1"]
        # Keep teardown fast: jobs left running by a test are cancelled soon after SIGTERM.
        if not _has_flag(flags, "--shutdown-grace-ms"):
            args += ["--shutdown-grace-ms", "200"]
        if TEST_THREADS and not _has_flag(flags, "--threads"):
            args += ["--threads", TEST_THREADS]
        args += flags
        self.args = args
        self.stopped = False
        self.returncode = None
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(args, stdout=out, stderr=err,
                                         stdin=subprocess.DEVNULL, env=child_env(env))
        try:
            self.listening = self._wait_listening(startup_timeout)
        except BaseException:
            self.kill()
            raise
        self.port = int(self.listening["port"])
        self.host = "127.0.0.1"

    # ---------------------------------------------------------------- process
    def _wait_listening(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log_lines():
                if line.get("msg") == "listening" and "port" in line:
                    return line
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"gatherd exited with {self.proc.returncode} before listening\n"
                    f"args: {self.args}\n{self.diagnostics()}")
            time.sleep(0.02)
        raise AssertionError(
            f"no 'listening' log line within {timeout}s\nargs: {self.args}\n{self.diagnostics()}")

    def running(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Send SIGTERM (default) and return the exit code; fail if it takes longer than timeout."""
        self.stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout):
        timeout = scaled(timeout)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"gatherd did not exit within {timeout}s of the signal\n{self.diagnostics()}")
        return self.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass

    def close(self):
        self.kill()
        self._tmp.cleanup()

    # ---------------------------------------------------------------- logs
    def raw_output(self):
        try:
            with open(self.stdout_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stderr_output(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_lines(self):
        """Every complete stdout line that is a JSON object, parsed."""
        lines = []
        text = self.raw_output()
        for raw in text.split("\n")[:-1]:  # the last piece may be a partial line
            raw = raw.strip()
            if not raw:
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                lines.append(obj)
        return lines

    def find_logs(self, **fields):
        return [l for l in self.log_lines() if all(l.get(k) == v for k, v in fields.items())]

    def wait_for_log(self, predicate=None, timeout=5.0, **fields):
        """First log line with the given field values (and predicate), waiting for async logging."""
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if all(line.get(k) == v for k, v in fields.items()) and (
                        predicate is None or predicate(line)):
                    return line
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"no log line with {fields} within {timeout}s\n{self.diagnostics()}")
            time.sleep(0.02)

    def diagnostics(self, tail=15):
        out = [l[:300] for l in self.raw_output().splitlines()[-tail:]]
        stderr = self.stderr_output()
        if "WARNING: ThreadSanitizer" in stderr:  # the whole report: its stacks are the point
            return ("--- gatherd stdout (tail) ---\n" + "\n".join(out) +
                    "\n--- gatherd stderr (ThreadSanitizer) ---\n" +
                    stderr[stderr.index("WARNING: ThreadSanitizer"):])
        err = [l[:300] for l in stderr.splitlines()[-tail:]]
        return ("--- gatherd stdout (tail) ---\n" + "\n".join(out) +
                "\n--- gatherd stderr (tail) ---\n" + "\n".join(err))

    # ---------------------------------------------------------------- HTTP
    def connection(self, timeout=10.0):
        return http.client.HTTPConnection(self.host, self.port, timeout=scaled(timeout))

    def request(self, method, path, body=None, headers=None, timeout=10.0, conn=None):
        """One request; returns (status, headers, body_bytes). Uses a fresh connection unless conn."""
        headers = dict(headers or {})
        data = encode_body(body, headers)
        own = conn is None
        if own:
            conn = self.connection(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp.headers, payload
        finally:
            if own:
                conn.close()

    def json(self, method, path, body=None, headers=None, timeout=10.0, conn=None):
        """Like request() but parses the body as JSON (None when empty)."""
        status, hdrs, payload = self.request(method, path, body, headers, timeout, conn)
        if not payload:
            return status, hdrs, None
        try:
            return status, hdrs, json.loads(payload)
        except ValueError:
            raise AssertionError(
                f"{method} {path} -> {status}: body is not JSON: {payload[:500]!r}")

    # ---------------------------------------------------------------- jobs
    def submit(self, spec, expect=202, headers=None):
        status, hdrs, body = self.json("POST", "/v1/jobs", spec, headers)
        if status != expect:
            raise AssertionError(f"POST /v1/jobs {spec} -> {status} {body}, expected {expect}")
        return body

    def get_job(self, job_id, expect=200):
        status, _, body = self.json("GET", f"/v1/jobs/{job_id}")
        if status != expect:
            raise AssertionError(f"GET /v1/jobs/{job_id} -> {status} {body}, expected {expect}")
        return body

    def wait_job(self, job_id, states=TERMINAL_STATES, timeout=5.0, interval=0.02):
        """Poll GET /v1/jobs/{id} until its state is in states; returns the job."""
        if isinstance(states, str):
            states = {states}
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        job = None
        while True:
            job = self.get_job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"job {job_id} not in {sorted(states)} within {timeout}s; last: {job}")
            time.sleep(interval)

    def wait_gone(self, job_id, timeout=5.0):
        timeout = scaled(timeout)
        deadline = time.monotonic() + timeout
        while True:
            status, _, body = self.json("GET", f"/v1/jobs/{job_id}")
            if status == 404:
                return body
            if time.monotonic() >= deadline:
                raise AssertionError(f"job {job_id} still present after {timeout}s: {status} {body}")
            time.sleep(0.05)

    def metrics(self):
        status, _, payload = self.request("GET", "/metrics")
        if status != 200:
            raise AssertionError(f"GET /metrics -> {status}")
        return payload.decode()


def metric_sum(text, name):
    """Sum of every sample of the metric `name` (any labels) in Prometheus text; None if absent."""
    total, seen = 0.0, False
    pattern = re.compile(r"^" + re.escape(name) + r"(\{[^}]*\})?\s+(\S+)")
    for line in text.splitlines():
        m = pattern.match(line)
        if m:
            seen = True
            total += float(m.group(2))
    return total if seen else None


_LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def metric_value(text, name, **labels):
    """Sum of the samples of `name` whose labels include every given label=value pair
    (metric_value(text, "x_total", reason="idle")); None when no such sample exists."""
    total, seen = 0.0, False
    pattern = re.compile(r"^" + re.escape(name) + r"(?:\{([^}]*)\})?\s+(\S+)")
    for line in text.splitlines():
        m = pattern.match(line)
        if not m:
            continue
        have = dict(_LABEL_RE.findall(m.group(1) or ""))
        if all(have.get(k) == str(v) for k, v in labels.items()):
            seen = True
            total += float(m.group(2))
    return total if seen else None


def raw_connect(server, timeout=5.0):
    s = socket.create_connection((server.host, server.port), timeout=timeout)
    s.settimeout(timeout)
    return s


def read_until_closed(sock, timeout):
    """Read until EOF/reset. Returns (closed, data, seconds). closed is False on timeout."""
    sock.settimeout(0.1)
    start = time.monotonic()
    data = b""
    while time.monotonic() - start < timeout:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            return True, data, time.monotonic() - start
        if not chunk:
            return True, data, time.monotonic() - start
        data += chunk
    return False, data, time.monotonic() - start


class GatherdTestCase(unittest.TestCase):
    """Base class: start() a server that is always stopped (and killed) at cleanup."""

    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        gatherd_bin()  # skip the whole class when no binary is configured

    def start(self, *flags, env=None, check_exit=True):
        srv = Gatherd(*flags, env=env)
        self.addCleanup(self._cleanup_server, srv, check_exit)
        return srv

    def _cleanup_server(self, srv, check_exit):
        try:
            if not srv.stopped:
                if srv.running():
                    rc = srv.stop(timeout=10)
                else:
                    rc = srv.proc.returncode
                    check_exit = True  # it died on its own during the test: always report
                if check_exit:
                    self.assertEqual(rc, 0, f"gatherd exit status at teardown\n{srv.diagnostics()}")
        finally:
            srv.close()

    # ------------------------------------------------------------ assertions
    def assertProblem(self, response, status, code, detail_contains=None, msg=""):
        """response is (status, headers, body_bytes or parsed) from request()/json()."""
        got_status, headers, body = response
        ctx = f"{msg} -> {got_status} {headers.get('Content-Type')} {body!r}"
        self.assertEqual(got_status, status, ctx)
        ctype = headers.get("Content-Type", "")
        self.assertEqual(ctype.split(";")[0].strip().lower(), "application/problem+json", ctx)
        if isinstance(body, (bytes, bytearray)):
            try:
                body = json.loads(body)
            except ValueError:
                self.fail(f"problem body is not JSON: {ctx}")
        self.assertIsInstance(body, dict, ctx)
        for field in ("type", "title", "status", "detail", "code"):
            self.assertIn(field, body, ctx)
        self.assertEqual(body["code"], code, ctx)
        self.assertEqual(body["status"], status, ctx)
        self.assertEqual(body["type"], f"urn:gatherd:{code}", ctx)
        self.assertIsInstance(body["title"], str, ctx)
        self.assertTrue(body["title"], ctx)
        self.assertIsInstance(body["detail"], str, ctx)
        if detail_contains is not None:
            self.assertIn(detail_contains, body["detail"], ctx)
        return body

    def assertJobShape(self, job):
        self.assertIsInstance(job, dict)
        self.assertEqual(set(job), JOB_FIELDS, f"job fields: {job}")
        self.assertIsInstance(job["id"], str)
        self.assertIn(job["state"], TERMINAL_STATES | {"queued", "running"})
        self.assertIsInstance(job["labels"], dict)
        self.assertIsInstance(job["attempts"], int)
        self.assertIsInstance(job["cancel_requested"], bool)
        self.assertRegex(job["created_at"], TIMESTAMP_RE)
        for field in ("started_at", "finished_at"):
            if job[field] is not None:
                self.assertRegex(job[field], TIMESTAMP_RE)
        if job["state"] in TERMINAL_STATES:
            self.assertIsNotNone(job["finished_at"], job)
        else:
            self.assertIsNone(job["finished_at"], job)
            self.assertIsNone(job["duration_ms"], job)
