"""POST /v1/fetch and the fetch job kinds against real upstreams on loopback (upstream.py):
concurrency, rate limits, retries with Retry-After, body caps, TLS, the egress guard, NDJSON,
async batches and the fetch job kind."""

import json
import socket
import threading
import time
import unittest

from harness import GatherdTestCase, metric_value, metric_sum, scaled
from upstream import TestCA, Upstream

RESULT_FIELDS = {"url", "status", "headers", "body", "body_bytes", "truncated", "attempts",
                 "elapsed_ms", "error"}


def max_in_window(times, window=1.0):
    """The most events inside any half-open window [t, t + window) that starts at an event."""
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + window:
            j += 1
        best = max(best, j - i)
    return best


class FetchTestCase(GatherdTestCase):
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

    def fetch(self, srv, body, expect=200, headers=None, timeout=30.0):
        status, hdrs, doc = srv.json("POST", "/v1/fetch", body, headers, timeout=timeout)
        self.assertEqual(status, expect, f"POST /v1/fetch -> {status} {doc}")
        return doc


class Batches(FetchTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.start("--allow-private-fetch")

    def test_results_in_input_order_and_statuses_are_results(self):
        urls = [self.up.url("/delay/150"), self.up.url("/status/404"),
                {"url": self.up.url("/echo"), "method": "POST",
                 "headers": {"X-Test": "yes", "content-type": "text/plain"}, "body": "hi"}]
        doc = self.fetch(self.srv, {"requests": urls, "concurrency": 3})
        self.assertEqual(set(doc), {"results", "summary"})
        results = doc["results"]
        self.assertEqual([r["url"] for r in results],
                         [urls[0], urls[1], urls[2]["url"]])
        for r in results:
            self.assertEqual(set(r), RESULT_FIELDS, r)
        self.assertEqual([r["status"] for r in results], [200, 404, 200])
        self.assertEqual(results[0]["body"], "slept")
        self.assertIsNone(results[1]["error"])  # a 404 is a result, not an error
        echo = json.loads(results[2]["body"])
        self.assertEqual(echo["method"], "POST")
        self.assertEqual(echo["body"], "hi")
        self.assertEqual(echo["headers"]["x-test"], "yes")
        self.assertTrue(echo["headers"]["user-agent"].startswith("gatherd"))
        self.assertEqual(results[2]["headers"]["content-type"], "application/json")
        self.assertEqual(results[2]["body_bytes"], len(results[2]["body"]))
        self.assertEqual(doc["summary"]["ok"], 3)
        self.assertEqual(doc["summary"]["failed"], 0)
        self.assertGreaterEqual(doc["summary"]["elapsed_ms"], 140)
        self.assertEqual(doc["summary"]["throttled_ms"], 0)

    def test_concurrency_limit_holds_at_the_upstream(self):
        urls = [self.up.url("/delay/150?concurrency")] * 16
        started = time.monotonic()
        doc = self.fetch(self.srv, {"requests": urls, "concurrency": 4})
        elapsed = time.monotonic() - started
        self.assertEqual(doc["summary"]["ok"], 16)
        self.assertEqual(self.up.max_inflight("/delay/150?concurrency"), 4)  # never more; all used
        self.assertGreaterEqual(elapsed, 4 * 0.15 * 0.95)

    def test_rate_limit_100_at_50_per_second_takes_two_seconds(self):
        urls = [self.up.url("/echo?rate")] * 100
        started = time.monotonic()
        doc = self.fetch(self.srv, {"requests": urls, "concurrency": 16,
                                    "rate": {"per_second": 50, "burst": 1}})
        elapsed = time.monotonic() - started
        self.assertEqual(doc["summary"]["ok"], 100)
        # 99 intervals of 20 ms after the first request
        self.assertGreater(elapsed, 1.9)
        self.assertLess(elapsed, 2.8)
        # GCRA's bound: at most burst + rate * window starts in any window (50 + 1 here). The
        # upstream sees arrivals, each a little after its start: a late one followed by prompt
        # ones squeezes the gaps, so the window vouched for is shorter by that jitter.
        window = 1.0 - scaled(0.02)
        self.assertLessEqual(max_in_window(self.up.hit_times("/echo"), window), 51)
        self.assertGreater(doc["summary"]["throttled_ms"], 0)

    def test_rate_per_batch_shares_one_limiter_across_hosts(self):
        urls = [self.up.url("/echo", host) for host in ("127.0.0.1", "localhost")] * 10
        started = time.monotonic()
        doc = self.fetch(self.srv, {"requests": urls, "concurrency": 8,
                                    "rate": {"per_second": 20, "burst": 1, "per": "batch"}})
        self.assertEqual(doc["summary"]["ok"], 20)
        self.assertGreater(time.monotonic() - started, 0.9)  # 19 intervals of 50 ms

    def test_retries_until_success(self):
        doc = self.fetch(self.srv, {"requests": [self.up.url("/flaky/a?fail=2&status=503")],
                                    "retry": {"max_attempts": 3, "initial_backoff_ms": 10,
                                              "jitter": False}})
        r = doc["results"][0]
        self.assertEqual((r["status"], r["attempts"], r["body"]), (200, 3, "ok after 2"))
        self.assertEqual(len(self.up.hit_times("/flaky/a")), 3)

    def test_retry_after_is_honoured(self):
        doc = self.fetch(self.srv, {"requests": [self.up.url("/flaky/b?fail=1&status=429&retry_after=1")],
                                    "retry": {"max_attempts": 2, "initial_backoff_ms": 10}})
        self.assertEqual(doc["results"][0]["status"], 200)
        hits = self.up.hit_times("/flaky/b")
        self.assertEqual(len(hits), 2)
        self.assertGreaterEqual(hits[1] - hits[0], 0.95)

    def test_no_retry_without_a_retry_object_and_4xx_never_retried(self):
        doc = self.fetch(self.srv, {"requests": [self.up.url("/flaky/c?fail=5&status=503"),
                                                 self.up.url("/status/400")]})
        self.assertEqual([r["status"] for r in doc["results"]], [503, 400])
        self.assertEqual([r["attempts"] for r in doc["results"]], [1, 1])
        doc = self.fetch(self.srv, {"requests": [self.up.url("/status/404")],
                                    "retry": {"max_attempts": 3, "initial_backoff_ms": 1}})
        self.assertEqual(doc["results"][0]["attempts"], 1)

    def test_connect_errors_are_retried_and_fail_only_their_url(self):
        with socket.socket() as s:  # a port with nobody listening
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        doc = self.fetch(self.srv, {"requests": [f"http://127.0.0.1:{dead}/", self.up.url("/echo")],
                                    "retry": {"max_attempts": 2, "initial_backoff_ms": 5}})
        bad, good = doc["results"]
        self.assertEqual(bad["error"]["type"], "connect")
        self.assertIsNone(bad["status"])
        self.assertEqual(bad["attempts"], 2)
        self.assertEqual(good["status"], 200)
        self.assertEqual((doc["summary"]["ok"], doc["summary"]["failed"]), (1, 1))

    def test_body_cap_cuts_and_marks_truncated(self):
        doc = self.fetch(self.srv, {"requests": [self.up.url("/bytes/5000"),
                                                 self.up.url("/bytes/5000?chunked=1"),
                                                 self.up.url("/bytes/800")],
                                    "max_body_bytes": 1000})
        cut, cut_chunked, whole = doc["results"]
        for r in (cut, cut_chunked):
            self.assertEqual((r["body_bytes"], r["truncated"], r["error"]), (1000, True, None))
            self.assertEqual(r["body"], "x" * 1000)
        self.assertEqual((whole["body_bytes"], whole["truncated"]), (800, False))

    def test_attempt_timeout(self):
        started = time.monotonic()
        doc = self.fetch(self.srv, {"requests": [self.up.url("/delay/3000")], "timeout_ms": 300})
        self.assertEqual(doc["results"][0]["error"]["type"], "timeout")
        self.assertLess(time.monotonic() - started, 2.0)

    def test_deadline_stops_unfinished_requests(self):
        doc = self.fetch(self.srv, {"requests": [self.up.url("/delay/400")] * 4,
                                    "concurrency": 1, "deadline_ms": 600})
        types = [r["error"]["type"] if r["error"] else None for r in doc["results"]]
        self.assertEqual(types, [None, "deadline", "deadline", "deadline"])
        self.assertLess(doc["summary"]["elapsed_ms"], 1000)

    def test_redirects_only_when_asked(self):
        doc = self.fetch(self.srv, {"requests": [self.up.url("/redirect/2")]})
        self.assertEqual(doc["results"][0]["status"], 302)
        doc = self.fetch(self.srv, {"requests": [self.up.url("/redirect/2")], "max_redirects": 3})
        self.assertEqual((doc["results"][0]["status"], doc["results"][0]["body"]), (200, "arrived"))
        doc = self.fetch(self.srv, {"requests": [self.up.url("/redirect/5")], "max_redirects": 2})
        self.assertEqual(doc["results"][0]["error"]["type"], "redirects")

    def test_ndjson_streams_in_completion_order_then_the_summary(self):
        urls = [self.up.url("/delay/600"), self.up.url("/delay/50"), self.up.url("/status/500")]
        status, hdrs, payload = self.srv.request(
            "POST", "/v1/fetch", {"requests": urls, "concurrency": 3},
            {"Accept": "application/x-ndjson"}, timeout=10)
        self.assertEqual(status, 200)
        self.assertTrue(hdrs["Content-Type"].startswith("application/x-ndjson"))
        lines = [json.loads(l) for l in payload.decode().splitlines()]
        self.assertEqual(len(lines), 4)
        self.assertEqual([l["index"] for l in lines[:3]][-1], 0)  # the slow one last
        self.assertEqual(sorted(l["index"] for l in lines[:3]), [0, 1, 2])
        for l in lines[:3]:
            self.assertEqual(set(l), RESULT_FIELDS | {"index"})
            self.assertEqual(l["url"], urls[l["index"]])
        self.assertEqual(set(lines[3]), {"summary"})
        self.assertEqual(lines[3]["summary"]["ok"], 3)

    def test_client_that_leaves_cancels_the_batch(self):
        body = json.dumps({"requests": [self.up.url("/delay/3000")] * 2}).encode()
        s = socket.create_connection((self.srv.host, self.srv.port))
        s.sendall(b"POST /v1/fetch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        time.sleep(0.3)
        s.close()
        line = self.srv.wait_for_log(msg="http.request", route="/v1/fetch", timeout=2.0)
        self.assertEqual(line["status"], 499)

    def test_keep_alive_connections_are_reused(self):
        self.fetch(self.srv, {"requests": [self.up.url("/echo")] * 5, "concurrency": 1})
        metrics = self.srv.metrics()
        self.assertGreaterEqual(metric_value(metrics, "gatherd_fetch_connections_reused_total"), 4)
        self.assertGreaterEqual(metric_value(metrics, "gatherd_fetch_requests_total",
                                             outcome="2xx"), 5)
        self.assertGreaterEqual(metric_value(metrics, "gatherd_fetch_connections"), 1)


class Validation(FetchTestCase):
    def test_bad_batches_are_400_naming_the_field(self):
        srv = self.start("--allow-private-fetch", "--fetch-max-requests", "3")
        cases = [
            ({}, "requests"),
            ({"requests": []}, "requests"),
            ({"requests": ["a", "b", "c", "d"]}, "requests"),
            ({"requests": ["ftp://example.com/x"]}, "requests[0]"),
            ({"requests": ["/relative"]}, "requests[0]"),
            ({"requests": [{"url": self.up.url("/"), "headers": {"X": "a\r\nB: c"}}]}, "X"),
            ({"requests": [{"url": self.up.url("/"), "headers": {"Content-Length": "1"}}]},
             "Content-Length"),
            ({"requests": [{"url": self.up.url("/"), "method": "GE T"}]}, "method"),
            ({"requests": [{"url": self.up.url("/"), "timeout_ms": 5}]}, "timeout_ms"),
            ({"requests": [self.up.url("/")], "timeout": 5}, "timeout"),
            ({"requests": [self.up.url("/")], "concurrency": 0}, "concurrency"),
            ({"requests": [self.up.url("/")], "rate": {"per_second": 0}}, "per_second"),
            ({"requests": [self.up.url("/")], "rate": {"per_second": 5, "per": "url"}}, "per"),
            ({"requests": [self.up.url("/")], "max_redirects": 11}, "max_redirects"),
        ]
        for body, field in cases:
            self.assertProblem(srv.json("POST", "/v1/fetch", body), 400, "invalid_request",
                               field, msg=json.dumps(body))
        self.assertProblem(srv.json("POST", "/v1/jobs", {"kind": "fetch_batch", "params": {}}),
                           400, "invalid_request", "POST /v1/fetch")
        self.assertProblem(srv.json("POST", "/v1/jobs", {"kind": "fetch", "params": {}}),
                           400, "invalid_request", "url")


class EgressGuard(FetchTestCase):
    def test_loopback_names_and_addresses_are_refused_without_the_flag(self):
        srv = self.start()
        doc = self.fetch(srv, {"requests": [self.up.url("/echo"), self.up.url("/echo", "localhost"),
                                            "http://169.254.169.254/latest/meta-data/"]})
        for r in doc["results"]:
            self.assertEqual(r["error"]["type"], "fetch_denied", r)
            self.assertEqual(r["attempts"], 1)
        self.assertEqual(self.up.hit_times("/echo"), [])  # nothing reached the upstream
        self.assertEqual(metric_value(srv.metrics(), "gatherd_fetch_egress_denied_total"), 3)
        job = srv.submit({"kind": "fetch", "params": {"url": self.up.url("/echo", "localhost")},
                          "retry": {"max_attempts": 3}})
        job = srv.wait_job(job["id"])
        self.assertEqual((job["state"], job["error"]["type"], job["attempts"]),
                         ("failed", "fetch_denied", 1))  # not retried

    def test_allow_listed_host_passes(self):
        srv = self.start("--fetch-allow-host", "localhost")
        doc = self.fetch(srv, {"requests": [self.up.url("/echo", "localhost"),
                                            self.up.url("/echo")]})
        self.assertEqual(doc["results"][0]["status"], 200)
        self.assertEqual(doc["results"][1]["error"]["type"], "fetch_denied")


class Tls(FetchTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ca = TestCA()
        cls.tls = Upstream(cls.ca.cert_file, cls.ca.key_file)

    @classmethod
    def tearDownClass(cls):
        cls.tls.close()
        cls.ca.close()
        super().tearDownClass()

    def test_verified_against_the_configured_ca(self):
        srv = self.start("--allow-private-fetch", "--fetch-ca-file", self.ca.ca_file)
        doc = self.fetch(srv, {"requests": [self.tls.url("/echo", "localhost"),
                                            self.tls.url("/echo")]})
        self.assertEqual([r["status"] for r in doc["results"]], [200, 200], doc)

    def test_unknown_ca_is_a_tls_error(self):
        srv = self.start("--allow-private-fetch")  # the system CAs do not know the test CA
        doc = self.fetch(srv, {"requests": [self.tls.url("/echo", "localhost")],
                               "retry": {"max_attempts": 3}})
        r = doc["results"][0]
        self.assertEqual((r["error"]["type"], r["attempts"]), ("tls", 1))


class HostLimits(FetchTestCase):
    def test_server_wide_host_limit_holds_across_concurrent_batches(self):
        srv = self.start("--allow-private-fetch",
                         "--fetch-host-rate-for", f"127.0.0.1:{self.up.port}=20:1")
        results = []

        def batch():
            results.append(self.fetch(srv, {"requests": [self.up.url("/echo?host")] * 20,
                                            "concurrency": 10}))

        threads = [threading.Thread(target=batch) for _ in range(2)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        self.assertEqual([r["summary"]["ok"] for r in results], [20, 20])
        self.assertGreater(elapsed, 1.85)  # 40 requests at 20/s: 39 intervals of 50 ms
        self.assertLessEqual(max_in_window(self.up.hit_times("/echo")), 21)
        self.assertGreater(metric_sum(srv.metrics(), "gatherd_fetch_throttled_seconds_total"), 0)


class FetchJobs(FetchTestCase):
    def setUp(self):
        super().setUp()
        self.srv = self.start("--allow-private-fetch")

    def test_fetch_job_result_is_one_result_object(self):
        job = self.srv.submit({"kind": "fetch", "params": {"url": self.up.url("/status/404")}})
        self.assertEqual(job["kind"], "fetch")
        job = self.srv.wait_job(job["id"])
        self.assertEqual(job["state"], "succeeded")  # any status that is not retried
        self.assertEqual(set(job["result"]), RESULT_FIELDS)
        self.assertEqual(job["result"]["status"], 404)

    def test_fetch_job_retries_5xx_with_the_job_retry_policy(self):
        job = self.srv.submit({"kind": "fetch",
                               "params": {"url": self.up.url("/flaky/j?fail=2&status=502")},
                               "retry": {"max_attempts": 3, "initial_backoff_ms": 10}})
        job = self.srv.wait_job(job["id"])
        self.assertEqual((job["state"], job["attempts"], job["result"]["status"]),
                         ("succeeded", 3, 200))

    def test_async_batch_is_a_job_that_can_be_gathered(self):
        status, hdrs, job = self.srv.json("POST", "/v1/fetch", {
            "requests": [self.up.url("/echo"), self.up.url("/status/503")], "async": True})
        self.assertEqual(status, 202)
        self.assertEqual(job["kind"], "fetch_batch")
        self.assertEqual(hdrs["Location"], f"/v1/jobs/{job['id']}")
        status, _, gathered = self.srv.json("POST", "/v1/gather", {"jobs": [job["id"]]})
        self.assertEqual(status, 200)
        done = gathered["jobs"][0]
        self.assertEqual(done["state"], "succeeded")
        self.assertEqual([r["status"] for r in done["result"]["results"]], [200, 503])
        self.assertEqual(done["result"]["summary"]["ok"], 2)

    def test_cancelling_an_async_batch_stops_its_requests(self):
        _, _, job = self.srv.json("POST", "/v1/fetch", {
            "requests": [self.up.url("/delay/200")] * 50, "concurrency": 2, "async": True})
        time.sleep(0.3)
        self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")
        job = self.srv.wait_job(job["id"])
        self.assertEqual(job["state"], "cancelled")
        hits = len(self.up.hit_times("/delay/200"))
        time.sleep(0.6)
        self.assertLessEqual(len(self.up.hit_times("/delay/200")), hits)  # no new requests
        self.assertLess(hits, 10)


if __name__ == "__main__":
    unittest.main()
