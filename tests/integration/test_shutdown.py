"""Graceful shutdown on SIGTERM/SIGINT: readiness, drain, in-flight requests, running jobs."""

import http.client
import json
import random
import signal
import socket
import threading
import time
import unittest

from harness import GatherdTestCase, scaled


def sleep_spec(ms, **params):
    return {"kind": "sleep", "params": {"duration_ms": ms, **params}}


class Shutdown(GatherdTestCase):
    def assertRefused(self, srv):
        with self.assertRaises(OSError):
            socket.create_connection((srv.host, srv.port), timeout=2).close()

    def test_sigterm_idle_exits_0_promptly(self):
        srv = self.start()
        self.assertEqual(srv.request("GET", "/healthz")[0], 200)
        t0 = time.monotonic()
        self.assertEqual(srv.stop(timeout=10), 0, srv.diagnostics())
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertRefused(srv)

    def test_sigint_exits_0(self):
        srv = self.start()
        srv.submit(sleep_spec(10000))
        self.assertEqual(srv.stop(sig=signal.SIGINT, timeout=10), 0, srv.diagnostics())

    def test_drain_readyz_503_healthz_200(self):
        drain = scaled(1.0)  # the windows below stretch with it when the build is slow (TSan)
        srv = self.start("--drain-ms", str(round(drain * 1000)))
        status, _, body = srv.json("GET", "/readyz")
        self.assertEqual((status, body), (200, {"status": "ready"}))
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        deadline = t0 + 0.6 * drain
        while True:
            status, _, body = srv.json("GET", "/readyz")
            if status == 503:
                break
            self.assertLess(time.monotonic(), deadline, "/readyz not 503 soon after SIGTERM")
            time.sleep(0.01)
        self.assertEqual(body, {"status": "draining"})
        status, _, body = srv.json("GET", "/healthz")
        self.assertEqual((status, body), (200, {"status": "ok"}))
        # While draining, work is still served: load balancers may send traffic until they see
        # the 503 readiness, and refusing it would defeat the drain.
        status, _, body = srv.json("POST", "/v1/jobs", sleep_spec(1))
        self.assertEqual(status, 202, body)
        status, _, body = srv.json("POST", "/v1/jobs/batch", {"jobs": [sleep_spec(1)]})
        self.assertEqual(status, 202, body)
        self.assertLess(time.monotonic() - t0, 0.9 * drain, "test too slow to observe the drain")
        rc = srv.stop(timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.diagnostics())
        self.assertGreaterEqual(elapsed, 0.8 * drain, "exited before --drain-ms passed")
        self.assertLess(elapsed, 5.0 * drain)
        self.assertRefused(srv)

    def test_running_jobs_cancelled_after_grace(self):
        srv = self.start("--shutdown-grace-ms", "300", "--compute-threads", "1")
        sleeper = srv.submit(sleep_spec(30000, cleanup_ms=100))
        cruncher = srv.submit({"kind": "compute",
                               "params": {"op": "sha256", "data": "z", "rounds": 1000000000}})
        srv.wait_job(sleeper["id"], "running")
        srv.wait_job(cruncher["id"], "running")
        t0 = time.monotonic()
        rc = srv.stop(timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.diagnostics())
        self.assertGreaterEqual(elapsed, 0.25, "jobs were not given the grace period")
        self.assertLess(elapsed, 4.0, "shutdown not prompt after the grace period")
        # Their cleanup ran and the transitions were logged (logs flushed before exit).
        for job in (sleeper, cruncher):
            self.assertTrue(srv.find_logs(job_id=job["id"], state="cancelled"),
                            f"no 'cancelled' log line for {job['id']}\n{srv.diagnostics()}")

    def test_job_finishing_within_grace_succeeds(self):
        srv = self.start("--shutdown-grace-ms", "5000")
        job = srv.submit(sleep_spec(400))
        srv.wait_job(job["id"], "running")
        t0 = time.monotonic()
        rc = srv.stop(timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, srv.diagnostics())
        self.assertGreaterEqual(elapsed, 0.2, "did not wait for the running job")
        self.assertLess(elapsed, 3.0, "waited for the whole grace period after jobs ended")
        self.assertTrue(srv.find_logs(job_id=job["id"], state="succeeded"), srv.diagnostics())
        self.assertFalse(srv.find_logs(job_id=job["id"], state="cancelled"))

    def test_in_flight_long_poll_is_answered(self):
        srv = self.start("--shutdown-grace-ms", "5000")
        job = srv.submit(sleep_spec(500))
        result = {}

        def poll():
            try:
                result["resp"] = srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms=10000")
            except Exception as e:  # noqa: BLE001 - asserted below
                result["error"] = e
        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.15)
        rc = srv.stop(timeout=10)
        t.join(10)
        self.assertEqual(rc, 0, srv.diagnostics())
        self.assertNotIn("error", result, f"in-flight long-poll failed: {result.get('error')!r}")
        status, _, body = result["resp"]
        if status == 503:
            self.assertEqual(body.get("code"), "shutting_down", body)
        else:
            self.assertEqual(status, 200, body)
            self.assertEqual(body["state"], "succeeded", body)

    def test_sigterm_under_load(self):
        # Every window stretches when the build is slow (TSan): the drain must still outlast the
        # reading of requests sent before the signal, and the load must still submit enough.
        srv = self.start("--max-running", "4", "--max-queued", "10000",
                         "--drain-ms", str(round(scaled(0.3) * 1000)),
                         "--shutdown-grace-ms", str(round(scaled(0.3) * 1000)))
        records = []  # (what, t_sent or None, t_end, status or None, code or exception repr)
        lock = threading.Lock()
        ids = []
        stop = threading.Event()

        def one(method, path, body=None):
            conn = http.client.HTTPConnection(srv.host, srv.port, timeout=15)
            t_sent = None
            try:
                data = None if body is None else json.dumps(body).encode()
                headers = {"Content-Type": "application/json"} if body is not None else {}
                conn.request(method, path, body=data, headers=headers)
                t_sent = time.monotonic()
                resp = conn.getresponse()
                payload = resp.read()
                try:
                    parsed = json.loads(payload) if payload else None
                except ValueError:
                    parsed = payload
                code = parsed.get("code") if isinstance(parsed, dict) else None
                with lock:
                    records.append((f"{method} {path}", t_sent, time.monotonic(), resp.status,
                                    code))
                return resp.status, parsed
            except (OSError, http.client.HTTPException) as e:
                with lock:
                    records.append((f"{method} {path}", t_sent, time.monotonic(), None, repr(e)))
                return None, None
            finally:
                conn.close()

        def submitter():
            rnd = random.Random()
            while not stop.is_set():
                status, job = one("POST", "/v1/jobs", sleep_spec(rnd.randint(20, 400)))
                if status == 202:
                    with lock:
                        ids.append(job["id"])
                elif status is None:
                    return

        def poller():
            rnd = random.Random()
            while not stop.is_set():
                with lock:
                    pick = rnd.choice(ids[-50:]) if ids else None
                if pick is None:
                    time.sleep(0.01)
                    continue
                status, _ = one("GET", f"/v1/jobs/{pick}?wait_ms=2000")
                if status is None:
                    return

        threads = [threading.Thread(target=submitter) for _ in range(4)] + \
                  [threading.Thread(target=poller) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(scaled(0.8))
        t_sig = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait_exit(timeout=15)
        t_exit = time.monotonic()
        stop.set()
        for t in threads:
            t.join(20)
        self.assertFalse(any(t.is_alive() for t in threads), "client threads hung")
        self.assertEqual(rc, 0, srv.diagnostics())
        self.assertLess(t_exit - t_sig, scaled(6.0), "shutdown under load was not prompt")

        before = [r for r in records if r[1] is not None and r[1] < t_sig]
        failed_before = [r for r in records if r[1] is None and r[2] < t_sig]
        self.assertEqual(failed_before, [], "requests failed before SIGTERM")
        def acceptable(r):
            return r[3] in (200, 202) or (r[3] == 503 and r[4] == "shutting_down")
        bad = [r for r in before if not acceptable(r)]
        self.assertEqual(bad, [], "requests sent before SIGTERM got errors")
        bad_after = [r for r in records if r[3] is not None and r[3] >= 500
                     and not (r[3] == 503 and r[4] == "shutting_down")]
        self.assertEqual(bad_after, [], "5xx other than 503 shutting_down")
        submitted = sum(1 for r in before if r[0] == "POST /v1/jobs" and r[3] == 202)
        polled = sum(1 for r in before if r[0].startswith("GET") and r[3] == 200)
        self.assertGreater(submitted, 10, "load generator did not submit jobs")
        self.assertGreater(polled, 3, "load generator did not long-poll")
        self.assertRefused(srv)


if __name__ == "__main__":
    unittest.main()
