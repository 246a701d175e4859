"""Regression tests for what probing gatherd as an attacker found (issue 14): HTTP framing
(trailers, Host, transfer codings, slow bodies), the WebSocket handshake and close, the admin
listener and the per-client connection cap, outbound URL injection and confusion, what fetch
errors reveal, retries that end on a retryable status, and a computed Retry-After.

Each test failed on the code before its fix."""

import base64
import json
import os
import signal
import socket
import time
import unittest

from harness import GatherdTestCase, metric_value, raw_connect, read_until_closed
from upstream import Upstream


def parse_response(data):
    """(status, headers with lower-case names, body) of one HTTP/1.1 response in `data`."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.decode().strip().lower()] = value.decode().strip()
    if "content-length" in headers:
        body = body[:int(headers["content-length"])]
    return status, headers, body


def exchange(srv, raw, timeout=5.0, source=None):
    """Sends raw request bytes; returns the parsed response the server sent before closing."""
    sock = socket.socket()
    if source:
        sock.bind((source, 0))
    sock.settimeout(timeout)
    sock.connect((srv.host, srv.port))
    try:
        sock.sendall(raw)
        closed, data, _ = read_until_closed(sock, timeout)
        if not data:
            raise AssertionError(f"no answer to {raw[:120]!r} (closed: {closed})")
        return parse_response(data)
    finally:
        sock.close()


class HardeningCase(GatherdTestCase):
    def assertRawProblem(self, response, status, code):
        got, headers, body = response
        self.assertEqual(got, status, (headers, body))
        self.assertEqual(headers.get("content-type"), "application/problem+json", headers)
        doc = json.loads(body)
        self.assertEqual((doc["status"], doc["code"]), (status, code), doc)
        return doc


# ================================================================================ HTTP framing
JOB = b'{"kind":"sleep","params":{"duration_ms":1}}'


def chunked_post(trailers=b"", version=b"1.1", coding=b"chunked"):
    return (b"POST /v1/jobs HTTP/" + version + b"\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: " + coding + b"\r\nConnection: close\r\n\r\n" +
            b"%x\r\n%s\r\n0\r\n" % (len(JOB), JOB) + trailers + b"\r\n")


class Framing(HardeningCase):
    def setUp(self):
        self.srv = self.start("--max-header-bytes", "2048", "--body-timeout-ms", "400")

    def test_chunked_trailers_count_against_the_header_limit(self):
        huge = b"".join(b"X-T%d: %s\r\n" % (i, b"v" * 40) for i in range(5000))  # ~250 KB
        self.assertRawProblem(exchange(self.srv, chunked_post(huge)), 431, "headers_too_large")
        self.assertEqual(len(self.srv.json("GET", "/v1/jobs")[2]["jobs"]), 0, "nothing admitted")
        small = b"X-Checksum: abc\r\n"
        self.assertEqual(exchange(self.srv, chunked_post(small))[0], 202)

    def test_http11_needs_exactly_one_host(self):
        doc = self.assertRawProblem(
            exchange(self.srv, b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n"),
            400, "invalid_request")
        self.assertIn("Host", doc["detail"])
        self.assertRawProblem(
            exchange(self.srv, b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            400, "invalid_request")
        self.assertEqual(exchange(self.srv, b"GET /healthz HTTP/1.0\r\n\r\n")[0], 200)
        self.assertEqual(
            exchange(self.srv, b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")[0],
            200)

    def test_only_a_lone_chunked_coding_is_accepted(self):
        for coding in (b"gzip, chunked", b"deflate,chunked", b"chunked, chunked"):
            with self.subTest(coding=coding):
                self.assertRawProblem(exchange(self.srv, chunked_post(coding=coding)),
                                      400, "unsupported_transfer_coding")
        self.assertEqual(len(self.srv.json("GET", "/v1/jobs")[2]["jobs"]), 0)
        self.assertEqual(exchange(self.srv, chunked_post(coding=b"Chunked"))[0], 202)

    def test_chunked_on_http10_is_refused(self):
        doc = self.assertRawProblem(exchange(self.srv, chunked_post(version=b"1.0")),
                                    400, "invalid_request")
        self.assertIn("HTTP/1.0", doc["detail"])

    def test_slow_body_is_answered_408(self):
        sock = raw_connect(self.srv)
        try:
            sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"kind\":")
            closed, data, secs = read_until_closed(sock, timeout=5)
        finally:
            sock.close()
        self.assertTrue(closed, "the slow body's connection was not closed")
        self.assertRawProblem(parse_response(data), 408, "body_timeout")
        self.assertGreaterEqual(secs, 0.3)


# =============================================================================== WebSockets
def upgrade(key=None, version=b"13"):
    key = key if key is not None else base64.b64encode(os.urandom(16))
    lines = [b"GET /v1/ws HTTP/1.1", b"Host: x", b"Upgrade: websocket", b"Connection: Upgrade"]
    if key != b"":
        lines.append(b"Sec-WebSocket-Key: " + key)
    if version:
        lines.append(b"Sec-WebSocket-Version: " + version)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class WebSocketHandshake(HardeningCase):
    def setUp(self):
        self.srv = self.start()

    def head_of(self, raw):
        sock = raw_connect(self.srv)
        try:
            sock.sendall(raw)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            if not data.startswith(b"HTTP/1.1 101"):  # a refusal: read the whole problem
                sock.settimeout(2)
                try:
                    while True:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except socket.timeout:
                    pass
            return parse_response(data)
        finally:
            sock.close()

    def test_handshake_errors_are_problem_documents(self):
        self.assertRawProblem(self.head_of(upgrade(key=b"")), 400, "invalid_request")
        for key in (b"!!", b"dGhlIHNhbXBsZSBub25jZQ", b"dGhlIHNhbXBsZSBub25jZR==",
                    b"dGhlIHNhbXBsZSBub25jZQ==AA"):
            with self.subTest(key=key):
                self.assertRawProblem(self.head_of(upgrade(key=key)), 400, "invalid_request")
        for version in (b"8", b""):
            with self.subTest(version=version):
                status, headers, _ = response = self.head_of(upgrade(version=version))
                self.assertRawProblem(response, 426, "unsupported_websocket_version")
                self.assertEqual(headers.get("sec-websocket-version"), "13")
                self.assertEqual(headers.get("upgrade"), "websocket")
        self.assertEqual(self.head_of(upgrade(key=b"dGhlIHNhbXBsZSBub25jZQ=="))[0], 101)

    def test_a_peer_that_never_answers_close_does_not_hold_the_shutdown(self):
        srv = self.start("--shutdown-grace-ms", "1000", "--ws-close-timeout-ms", "300",
                         check_exit=False)
        sock = raw_connect(srv)
        try:
            sock.sendall(upgrade())
            self.assertTrue(sock.recv(4096).startswith(b"HTTP/1.1 101"))
            began = time.monotonic()
            code = srv.stop(timeout=10)  # the peer reads nothing and never sends its close
            took = time.monotonic() - began
        finally:
            sock.close()
        self.assertEqual(code, 0)
        self.assertLess(took, 2.0, f"shutdown took {took:.1f} s with a mute WebSocket peer")

    def test_a_cleanup_of_a_day_does_not_hold_the_shutdown(self):
        srv = self.start("--shutdown-grace-ms", "100", "--shutdown-cleanup-ms", "300",
                         check_exit=False)
        job = srv.submit({"kind": "sleep",
                          "params": {"duration_ms": 60000, "cleanup_ms": 86400000}})
        srv.wait_job(job["id"], "running")
        began = time.monotonic()
        code = srv.stop(timeout=10)
        took = time.monotonic() - began
        self.assertEqual(code, 0)
        self.assertLess(took, 3.0, f"shutdown took {took:.1f} s with a cleanup of a day")
        done = srv.wait_for_log(msg="shutdown.done")
        self.assertEqual((done["cleanups_cut"], done["jobs_left"]), (1, 0))


# ============================================================== admin listener, per-client cap
class Listeners(HardeningCase):
    def admin_port(self, srv):
        line = srv.wait_for_log(msg="admin_listening")
        return int(line["port"])

    def get(self, port, path, source=None):
        sock = socket.socket()
        if source:
            sock.bind((source, 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            _, data, _ = read_until_closed(sock, 5)
            return parse_response(data)
        finally:
            sock.close()

    def test_admin_port_serves_probes_and_metrics_only(self):
        srv = self.start("--admin-port", "0", "--max-connections", "2")
        port = self.admin_port(srv)
        self.assertNotEqual(port, srv.port)
        held = [srv.connection(), srv.connection()]
        try:
            for c in held:  # the main listener is full now
                self.assertEqual(srv.request("GET", "/healthz", conn=c)[0], 200)
            for path in ("/healthz", "/readyz", "/metrics"):
                with self.subTest(path=path):
                    status, _, body = self.get(port, path)
                    self.assertEqual(status, 200, body[:200])
            self.assertIn(b"gatherd_http_connections_open", self.get(port, "/metrics")[2])
            for path in ("/v1/jobs", "/openapi.yaml", "/v1/ws"):
                with self.subTest(path=path):
                    self.assertEqual(self.get(port, path)[0], 404)
        finally:
            for c in held:
                c.close()

    def test_admin_port_is_off_by_default(self):
        srv = self.start()
        self.assertEqual(srv.find_logs(msg="admin_listening"), [])

    def test_connections_per_client_address_are_capped(self):
        srv = self.start("--max-connections-per-client", "2")
        held = [srv.connection(), srv.connection()]
        try:
            for c in held:
                self.assertEqual(srv.request("GET", "/healthz", conn=c)[0], 200)
            third = raw_connect(srv)
            try:
                try:
                    third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                except OSError:
                    pass
                closed, data, _ = read_until_closed(third, timeout=3)
                self.assertTrue(closed and not data, data)
            finally:
                third.close()
            # Another address is another client.
            self.assertEqual(self.get(srv.port, "/healthz", source="127.0.0.2")[0], 200)
        finally:
            for c in held:
                c.close()
        deadline = time.monotonic() + 5
        while srv.request("GET", "/healthz")[0] != 200:  # slots come back
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        text = srv.metrics()
        self.assertEqual(metric_value(text, "gatherd_http_connections_rejected_total",
                                      reason="max_connections_per_client"), 1)


# ==================================================================================== fetch
class Fetch(HardeningCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.up = Upstream()

    @classmethod
    def tearDownClass(cls):
        cls.up.close()
        super().tearDownClass()

    def setUp(self):
        self.up.reset()

    def test_hosts_that_decode_to_control_characters_are_refused_before_sending(self):
        srv = self.start("--allow-private-fetch")
        port = self.up.port
        urls = [f"http://localhost%00%0d%0aX-Injected%3a%20yes:{port}/a",
                f"http://localhost%0d%0a%0d%0aGET%20/b%20HTTP/1.1:{port}/a",
                f"http://127.0.0.1%00.example.com:{port}/a",
                f"http://127.0.0.1%20:{port}/a",
                f"http://local%09host:{port}/a"]
        for url in urls:
            with self.subTest(url=url):
                status, _, doc = srv.json("POST", "/v1/fetch", {"requests": [url]})
                if status == 200:  # refused per result, never sent
                    self.assertEqual(doc["results"][0]["error"]["type"], "invalid_url", doc)
                else:
                    self.assertProblem((status, _, doc), 400, "invalid_request")
                status, _, doc = srv.json("POST", "/v1/jobs",
                                          {"kind": "fetch", "params": {"url": url}})
                self.assertEqual(status, 400, doc)
        time.sleep(0.2)
        self.assertEqual(self.up.hits, [], "nothing may reach the upstream")

    def test_fetch_denied_does_not_say_where_a_name_points(self):
        srv = self.start()  # loopback is not public: refused
        status, _, doc = srv.json("POST", "/v1/fetch",
                                  {"requests": [self.up.url("/echo", host="localhost")]})
        self.assertEqual(status, 200, doc)
        error = doc["results"][0]["error"]
        self.assertEqual(error["type"], "fetch_denied", error)
        self.assertIn("localhost", error["message"])
        for address in ("127.0.0.1", "::1"):
            self.assertNotIn(address, error["message"])

    def test_retries_that_end_on_a_retryable_status_fail(self):
        srv = self.start("--allow-private-fetch")
        retry = {"max_attempts": 3, "initial_backoff_ms": 5, "jitter": False}
        status, _, doc = srv.json("POST", "/v1/fetch", {
            "requests": [self.up.url("/status/503"), self.up.url("/status/404")],
            "retry": retry})
        self.assertEqual(status, 200, doc)
        failed, missing = doc["results"]
        self.assertEqual((failed["status"], failed["attempts"]), (503, 3), failed)
        self.assertEqual(failed["error"]["type"], "http_status", failed)
        self.assertIn("503", failed["error"]["message"])
        self.assertEqual((missing["status"], missing["error"]), (404, None), missing)
        self.assertEqual((doc["summary"]["ok"], doc["summary"]["failed"]), (1, 1))
        # Without retries a 503 is a result, as before.
        doc = srv.json("POST", "/v1/fetch", {"requests": [self.up.url("/status/503")]})[2]
        self.assertEqual((doc["results"][0]["status"], doc["results"][0]["error"]), (503, None))
        # The fetch job kind fails the same way.
        job = srv.submit({"kind": "fetch", "params": {"url": self.up.url("/status/502")},
                          "retry": {"max_attempts": 2, "initial_backoff_ms": 5}})
        done = srv.wait_job(job["id"])
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["attempts"], 2)
        self.assertEqual(done["error"]["type"], "http_status", done)
        self.assertIn("502", done["error"]["message"])


# ============================================================================== Retry-After
class RetryAfter(HardeningCase):
    def fill(self, srv, duration_ms, n):
        return [srv.submit({"kind": "sleep", "params": {"duration_ms": duration_ms}})
                for _ in range(n)]

    def refusal(self, srv):
        status, headers, doc = srv.json("POST", "/v1/jobs",
                                        {"kind": "sleep", "params": {"duration_ms": 1}})
        self.assertProblem((status, headers, doc), 429, "queue_full")
        return int(headers["Retry-After"])

    def test_retry_after_follows_the_drain_rate_within_its_bound(self):
        srv = self.start("--max-running", "1", "--max-queued", "1")
        for job in self.fill(srv, 50, 2):
            srv.wait_job(job["id"])  # two slots released: a rate to go by
        self.fill(srv, 60000, 2)  # full, and draining stalls from here
        time.sleep(3.2)
        # The last releases are ~3.3 s old: at that rate the next slot is ~1.7 s away.
        self.assertIn(self.refusal(srv), (2, 3))

    def test_retry_after_is_bounded_by_the_flag(self):
        srv = self.start("--max-running", "1", "--max-queued", "1", "--retry-after-max-ms", "1000")
        for job in self.fill(srv, 50, 2):
            srv.wait_job(job["id"])
        self.fill(srv, 60000, 2)
        time.sleep(3.2)
        self.assertEqual(self.refusal(srv), 1)

    def test_without_a_rate_yet_retry_after_is_one_second(self):
        srv = self.start("--max-running", "1", "--max-queued", "1")
        self.fill(srv, 60000, 2)
        self.assertEqual(self.refusal(srv), 1)


if __name__ == "__main__":
    unittest.main()
