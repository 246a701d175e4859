"""Jobs over HTTP: kinds, lifecycle, retries, timeouts, cancellation, admission, listing, retention."""

import hashlib
import threading
import time
import unittest
import urllib.parse

from harness import GatherdTestCase, metric_value, scaled


def sleep_spec(ms, **params):
    return {"kind": "sleep", "params": {"duration_ms": ms, **params}}


class SubmitAndKinds(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_submit_returns_202_location_and_job_object(self):
        status, headers, job = self.srv.json(
            "POST", "/v1/jobs", {"kind": "sleep", "params": {"duration_ms": 50},
                                 "labels": {"tenant": "a"}})
        self.assertEqual(status, 202, job)
        self.assertEqual(headers.get("Content-Type", "").split(";")[0], "application/json")
        self.assertJobShape(job)
        self.assertEqual(headers.get("Location"), f"/v1/jobs/{job['id']}")
        self.assertEqual(job["kind"], "sleep")
        self.assertIn(job["state"], ("queued", "running"))
        self.assertEqual(job["labels"], {"tenant": "a"})
        self.assertFalse(job["cancel_requested"])
        self.assertIsNone(job["result"])
        self.assertIsNone(job["error"])
        # >= 122 random bits: at least 31 hex digits (or more characters in another alphabet)
        self.assertGreaterEqual(len(job["id"].replace("-", "")), 22, job["id"])

        done = self.srv.wait_job(job["id"])
        self.assertJobShape(done)
        self.assertEqual(done["state"], "succeeded", done)
        self.assertEqual(done["result"], {"slept_ms": 50})
        self.assertIsNone(done["error"])
        self.assertEqual(done["attempts"], 1)
        self.assertIsNotNone(done["started_at"])
        self.assertIsInstance(done["duration_ms"], (int, float))
        self.assertGreaterEqual(done["duration_ms"], 40, done)
        self.assertLess(done["duration_ms"], 2000, done)
        self.assertEqual(done["created_at"], job["created_at"])

    def test_ids_are_distinct(self):
        ids = {self.srv.submit(sleep_spec(0))["id"] for _ in range(20)}
        self.assertEqual(len(ids), 20)

    def test_sleep_custom_result(self):
        result = {"a": [1, 2, {"b": None}], "s": "x\u00e9"}
        job = self.srv.submit(sleep_spec(10, result=result))
        done = self.srv.wait_job(job["id"])
        self.assertEqual(done["state"], "succeeded", done)
        self.assertEqual(done["result"], result)

    def test_sleep_scalar_result(self):
        job = self.srv.submit(sleep_spec(0, result=42))
        self.assertEqual(self.srv.wait_job(job["id"])["result"], 42)

    def test_sleep_fail(self):
        job = self.srv.submit(sleep_spec(20, fail="boom"))
        done = self.srv.wait_job(job["id"])
        self.assertEqual(done["state"], "failed", done)
        self.assertIsNone(done["result"])
        self.assertEqual(done["error"]["type"], "failed", done)
        self.assertIn("boom", done["error"]["message"])
        self.assertEqual(done["attempts"], 1)

    def test_without_retry_one_attempt(self):
        job = self.srv.submit(sleep_spec(0, fail_attempts=1))
        done = self.srv.wait_job(job["id"])
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["attempts"], 1)

    def test_fail_attempts_with_retry_succeeds(self):
        spec = sleep_spec(10, fail_attempts=2)
        spec["retry"] = {"max_attempts": 4, "initial_backoff_ms": 10, "jitter": False}
        job = self.srv.submit(spec)
        done = self.srv.wait_job(job["id"])
        self.assertEqual(done["state"], "succeeded", done)
        self.assertEqual(done["attempts"], 3)
        self.assertEqual(done["result"], {"slept_ms": 10})
        self.assertIsNone(done["error"])

    def test_retry_exhausted_fails(self):
        spec = sleep_spec(0, fail_attempts=5)
        spec["retry"] = {"max_attempts": 2, "initial_backoff_ms": 10}
        done = self.srv.wait_job(self.srv.submit(spec)["id"])
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["attempts"], 2)
        self.assertEqual(done["error"]["type"], "failed")

    def test_partial_retry_defaults_max_attempts_3(self):
        spec = sleep_spec(0, fail_attempts=10)
        spec["retry"] = {"initial_backoff_ms": 5}
        done = self.srv.wait_job(self.srv.submit(spec)["id"])
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["attempts"], 3)

    def test_backoff_is_applied(self):
        # 2 retries, no jitter: waits 100 + 200 ms before attempts 2 and 3.
        spec = sleep_spec(0, fail_attempts=2)
        spec["retry"] = {"max_attempts": 3, "initial_backoff_ms": 100, "multiplier": 2.0,
                         "jitter": False}
        t0 = time.monotonic()
        done = self.srv.wait_job(self.srv.submit(spec)["id"])
        elapsed = time.monotonic() - t0
        self.assertEqual(done["state"], "succeeded", done)
        self.assertGreaterEqual(elapsed, 0.28, "backoff 100+200 ms was not waited")
        self.assertLess(elapsed, 3.0)

    def test_attempt_timeout_fails_with_timeout_after_max_attempts(self):
        spec = sleep_spec(2000)
        spec["attempt_timeout_ms"] = 50
        spec["retry"] = {"max_attempts": 2, "initial_backoff_ms": 10, "jitter": False}
        t0 = time.monotonic()
        done = self.srv.wait_job(self.srv.submit(spec)["id"], timeout=5)
        self.assertLess(time.monotonic() - t0, 1.5, "attempt timeout did not cut the sleep")
        self.assertEqual(done["state"], "failed", done)
        self.assertEqual(done["error"]["type"], "timeout", done)
        self.assertEqual(done["attempts"], 2)

    def test_timeout_ms_gives_timed_out(self):
        spec = sleep_spec(5000)
        spec["timeout_ms"] = 100
        t0 = time.monotonic()
        done = self.srv.wait_job(self.srv.submit(spec)["id"], timeout=5)
        self.assertLess(time.monotonic() - t0, 2.0)
        self.assertEqual(done["state"], "timed_out", done)
        self.assertEqual(done["error"]["type"], "timeout", done)
        self.assertIsNone(done["result"])

    def test_timeout_ms_runs_cleanup(self):
        spec = sleep_spec(5000, cleanup_ms=300)
        spec["timeout_ms"] = 100
        t0 = time.monotonic()
        done = self.srv.wait_job(self.srv.submit(spec)["id"], timeout=5)
        elapsed = time.monotonic() - t0
        self.assertEqual(done["state"], "timed_out", done)
        self.assertGreaterEqual(elapsed, 0.35, "state became timed_out before the cleanup ran")
        self.assertLess(elapsed, 3.0)

    def test_cancel_running_with_cleanup(self):
        # The cleanup must outlast the cancel call and the pause below (longer when slow: TSan).
        job = self.srv.submit(sleep_spec(10000, cleanup_ms=round(scaled(0.4) * 1000)))
        self.srv.wait_job(job["id"], "running")
        t0 = time.monotonic()
        status, _, body = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")
        self.assertEqual(status, 202, body)
        self.assertJobShape(body)
        self.assertTrue(body["cancel_requested"], body)
        self.assertEqual(body["state"], "running", body)
        time.sleep(0.15)
        mid = self.srv.get_job(job["id"])
        self.assertEqual(mid["state"], "running", f"the cleanup should still run: {mid}")
        self.assertTrue(mid["cancel_requested"])
        done = self.srv.wait_job(job["id"], timeout=5)
        elapsed = time.monotonic() - t0
        self.assertEqual(done["state"], "cancelled", done)
        self.assertEqual(done["error"]["type"], "cancelled", done)
        self.assertTrue(done["cancel_requested"])
        self.assertGreaterEqual(elapsed, 0.3, "cancelled before its cleanup passed")
        self.assertLess(elapsed, scaled(3.0))

    def test_cancel_without_cleanup_lands_fast(self):
        job = self.srv.submit(sleep_spec(10000))
        self.srv.wait_job(job["id"], "running")
        t0 = time.monotonic()
        status, _, _ = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel",
                                     {"reason": "test"})
        self.assertEqual(status, 202)
        done = self.srv.wait_job(job["id"], timeout=3)
        self.assertEqual(done["state"], "cancelled", done)
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_cancel_reason_becomes_error_message(self):
        # The cleanup keeps the job unfinished for the second cancel (longer when slow: TSan).
        job = self.srv.submit(sleep_spec(10000, cleanup_ms=round(scaled(0.2) * 1000)))
        self.srv.wait_job(job["id"], "running")
        status, _, _ = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel",
                                     {"reason": "no longer needed"})
        self.assertEqual(status, 202)
        status, _, _ = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel", {"reason": "second"})
        self.assertEqual(status, 202)
        done = self.srv.wait_job(job["id"])
        self.assertEqual(done["error"], {"type": "cancelled", "message": "no longer needed"})

    def test_cancel_repeated_is_202(self):
        # The cleanup keeps the job unfinished for the repeats (longer when slow: TSan).
        job = self.srv.submit(sleep_spec(10000, cleanup_ms=round(scaled(0.3) * 1000)))
        self.srv.wait_job(job["id"], "running")
        for _ in range(3):
            status, _, body = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")
            self.assertEqual(status, 202, body)
            self.assertTrue(body["cancel_requested"])
        self.assertEqual(self.srv.wait_job(job["id"])["state"], "cancelled")

    def test_cancel_terminal_is_409(self):
        job = self.srv.submit(sleep_spec(0))
        self.srv.wait_job(job["id"])
        resp = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")
        self.assertProblem(resp, 409, "already_finished")
        # The job keeps its real outcome.
        after = self.srv.get_job(job["id"])
        self.assertEqual(after["state"], "succeeded")
        self.assertFalse(after["cancel_requested"])

    def test_cancel_after_cancelled_is_409(self):
        job = self.srv.submit(sleep_spec(10000))
        self.srv.wait_job(job["id"], "running")
        self.assertEqual(self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")[0], 202)
        self.srv.wait_job(job["id"])
        resp = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")
        self.assertProblem(resp, 409, "already_finished")

    def test_cancel_unknown_is_404(self):
        resp = self.srv.json("POST", "/v1/jobs/00000000000000000000000000000000/cancel")
        self.assertProblem(resp, 404, "not_found")

    def test_delete_then_404(self):
        job = self.srv.submit(sleep_spec(0))
        self.srv.wait_job(job["id"])
        status, _, body = self.srv.request("DELETE", f"/v1/jobs/{job['id']}")
        self.assertEqual(status, 204)
        self.assertEqual(body, b"")
        self.assertProblem(self.srv.json("GET", f"/v1/jobs/{job['id']}"), 404, "not_found")
        self.assertProblem(self.srv.json("DELETE", f"/v1/jobs/{job['id']}"), 404, "not_found")

    def test_delete_running_job(self):
        job = self.srv.submit(sleep_spec(10000))
        self.srv.wait_job(job["id"], "running")
        status, _, _ = self.srv.request("DELETE", f"/v1/jobs/{job['id']}")
        self.assertEqual(status, 204)
        self.assertProblem(self.srv.json("GET", f"/v1/jobs/{job['id']}"), 404, "not_found")
        # Its run slot is given back: further jobs run and finish.
        other = self.srv.submit(sleep_spec(0))
        self.assertEqual(self.srv.wait_job(other["id"])["state"], "succeeded")

    def test_get_unknown_is_404(self):
        self.assertProblem(self.srv.json("GET", "/v1/jobs/does-not-exist"), 404, "not_found")
        self.assertProblem(self.srv.json("GET", "/v1/jobs/00000000-0000-4000-8000-000000000000"),
                           404, "not_found")

    def test_job_transition_logged(self):
        job = self.srv.submit(sleep_spec(0))
        self.srv.wait_job(job["id"])
        line = self.srv.wait_for_log(job_id=job["id"], state="succeeded")
        self.assertEqual(line.get("kind"), "sleep", line)
        self.assertIn("attempt", line)
        self.assertIn("duration_ms", line)


class Compute(GatherdTestCase):
    def setUp(self):
        self.srv = self.start("--compute-threads", "2")

    def run_compute(self, params, timeout=10):
        job = self.srv.submit({"kind": "compute", "params": params})
        self.assertEqual(job["kind"], "compute")
        done = self.srv.wait_job(job["id"], timeout=timeout)
        self.assertEqual(done["state"], "succeeded", done)
        return done["result"]

    def test_primes(self):
        self.assertEqual(self.run_compute({"op": "primes", "n": 100}), {"count": 25})
        self.assertEqual(self.run_compute({"op": "primes", "n": 0}), {"count": 0})
        self.assertEqual(self.run_compute({"op": "primes", "n": 2}), {"count": 1})
        self.assertEqual(self.run_compute({"op": "primes", "n": 1000000}), {"count": 78498})

    def test_sha256_one_round(self):
        self.assertEqual(
            self.run_compute({"op": "sha256", "data": "abc", "rounds": 1}),
            {"hex": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"})

    def test_sha256_rounds_hash_raw_digest(self):
        d1 = hashlib.sha256(b"abc").digest()
        self.assertEqual(self.run_compute({"op": "sha256", "data": "abc", "rounds": 2}),
                         {"hex": hashlib.sha256(d1).hexdigest()})
        d = "h\u00e9llo".encode("utf-8")
        for _ in range(1000):
            d = hashlib.sha256(d).digest()
        self.assertEqual(self.run_compute({"op": "sha256", "data": "h\u00e9llo", "rounds": 1000}),
                         {"hex": d.hex()})

    def _cancel_lands_quickly(self, params):
        job = self.srv.submit({"kind": "compute", "params": params})
        self.srv.wait_job(job["id"], "running")
        time.sleep(0.1)  # let it get into the work
        t0 = time.monotonic()
        status, _, body = self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")
        self.assertEqual(status, 202, body)
        done = self.srv.wait_job(job["id"], timeout=5, interval=0.01)
        elapsed = time.monotonic() - t0
        self.assertEqual(done["state"], "cancelled", done)
        self.assertEqual(done["error"]["type"], "cancelled")
        self.assertLess(elapsed, 1.0, "compute cancel did not land within a second")
        # The server still answers promptly (work was not on the I/O threads).
        t1 = time.monotonic()
        self.assertEqual(self.srv.request("GET", "/healthz")[0], 200)
        self.assertLess(time.monotonic() - t1, 0.5)

    def test_sha256_cancel_lands_quickly(self):
        self._cancel_lands_quickly({"op": "sha256", "data": "x", "rounds": 1000000000})

    def test_primes_cancel_lands_quickly(self):
        self._cancel_lands_quickly({"op": "primes", "n": 10000000000})

    def test_io_threads_stay_responsive_during_compute(self):
        jobs = [self.srv.submit({"kind": "compute",
                                 "params": {"op": "sha256", "data": "y", "rounds": 1000000000}})
                for _ in range(2)]
        for job in jobs:
            self.srv.wait_job(job["id"], "running")
        worst = 0.0
        for _ in range(10):
            t0 = time.monotonic()
            self.assertEqual(self.srv.request("GET", "/healthz")[0], 200)
            worst = max(worst, time.monotonic() - t0)
        self.assertLess(worst, 0.5, "I/O threads blocked by compute work")
        for job in jobs:
            self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")


class Idempotency(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_same_key_same_spec_returns_200_same_job(self):
        spec = sleep_spec(50)
        spec["idempotency_key"] = "order-42"
        status, headers, first = self.srv.json("POST", "/v1/jobs", spec)
        self.assertEqual(status, 202, first)
        status, headers, again = self.srv.json("POST", "/v1/jobs", spec)
        self.assertEqual(status, 200, again)
        self.assertEqual(again["id"], first["id"])
        self.srv.wait_job(first["id"])
        status, _, again = self.srv.json("POST", "/v1/jobs", spec)
        self.assertEqual(status, 200, again)
        self.assertEqual(again["id"], first["id"])
        self.assertEqual(again["state"], "succeeded")
        status, _, listing = self.srv.json("GET", "/v1/jobs")
        self.assertEqual(len(listing["jobs"]), 1, listing)

    def test_same_key_different_spec_is_409(self):
        spec = sleep_spec(50)
        spec["idempotency_key"] = "k1"
        self.assertEqual(self.srv.json("POST", "/v1/jobs", spec)[0], 202)
        other = sleep_spec(51)
        other["idempotency_key"] = "k1"
        self.assertProblem(self.srv.json("POST", "/v1/jobs", other), 409, "idempotency_conflict")

    def test_different_keys_are_different_jobs(self):
        a = self.srv.submit({**sleep_spec(0), "idempotency_key": "a"})
        b = self.srv.submit({**sleep_spec(0), "idempotency_key": "b"})
        self.assertNotEqual(a["id"], b["id"])


class Admission(GatherdTestCase):
    def test_single_submit_beyond_running_and_queued_is_429(self):
        srv = self.start("--max-running", "1", "--max-queued", "2")
        a = srv.submit(sleep_spec(5000))
        srv.wait_job(a["id"], "running")
        b = srv.submit(sleep_spec(10))
        c = srv.submit(sleep_spec(10))
        self.assertEqual(b["state"], "queued")
        self.assertEqual(c["state"], "queued")
        resp = srv.json("POST", "/v1/jobs", sleep_spec(10))
        self.assertProblem(resp, 429, "queue_full")
        retry_after = resp[1].get("Retry-After")
        self.assertIsNotNone(retry_after, "429 without Retry-After")
        self.assertRegex(retry_after, r"^\d+$")
        self.assertGreaterEqual(int(retry_after), 1)
        # Once room is made, submissions are admitted again.
        srv.json("POST", f"/v1/jobs/{b['id']}/cancel")
        srv.submit(sleep_spec(10))

    def test_cancel_queued_job_is_immediate(self):
        srv = self.start("--max-running", "1")
        a = srv.submit(sleep_spec(5000))
        srv.wait_job(a["id"], "running")
        b = srv.submit(sleep_spec(10))
        self.assertEqual(b["state"], "queued")
        status, _, body = srv.json("POST", f"/v1/jobs/{b['id']}/cancel")
        self.assertEqual(status, 202, body)
        self.assertEqual(body["state"], "cancelled", body)
        self.assertTrue(body["cancel_requested"])
        self.assertEqual(body["error"]["type"], "cancelled")
        self.assertIsNone(body["started_at"])
        self.assertIsNone(body["duration_ms"])
        self.assertEqual(body["attempts"], 0)
        self.assertIsNotNone(body["finished_at"])
        got = srv.get_job(b["id"])
        self.assertEqual(got["state"], "cancelled")
        self.assertEqual(srv.get_job(a["id"])["state"], "running")

    def test_never_more_than_max_running(self):
        srv = self.start("--max-running", "2")
        ids = [srv.submit(sleep_spec(150))["id"] for _ in range(6)]
        max_seen = 0
        deadline = time.monotonic() + scaled(5)
        while time.monotonic() < deadline:
            running = srv.json("GET", "/v1/jobs?state=running")[2]["jobs"]  # one snapshot
            max_seen = max(max_seen, len(running))
            if not running and not srv.json("GET", "/v1/jobs?state=queued")[2]["jobs"]:
                break
            time.sleep(0.01)
        # The two listings are not one snapshot: both can be empty while a slot passes from a
        # finished job to a queued one, so wait for each job to be final.
        jobs = [srv.wait_job(i) for i in ids]
        self.assertTrue(all(j["state"] == "succeeded" for j in jobs), jobs)
        self.assertLessEqual(max_seen, 2)
        self.assertGreaterEqual(max_seen, 1)
        # The server's own timestamps agree: never more than 2 intervals overlap.
        events = sorted([(j["started_at"], 1) for j in jobs] + [(j["finished_at"], -1) for j in jobs],
                        key=lambda e: (e[0], e[1]))
        level = peak = 0
        for _, delta in events:
            level += delta
            peak = max(peak, level)
        self.assertLessEqual(peak, 2, jobs)

    def test_fifo_order(self):
        srv = self.start("--max-running", "1")
        ids = [srv.submit(sleep_spec(30))["id"] for _ in range(5)]
        jobs = [srv.wait_job(i) for i in ids]
        starts = [j["started_at"] for j in jobs]
        self.assertEqual(starts, sorted(starts), "queued jobs did not start in FIFO order")

    def test_timeout_counts_time_queued(self):
        srv = self.start("--max-running", "1")
        a = srv.submit(sleep_spec(600))
        srv.wait_job(a["id"], "running")
        b = srv.submit({**sleep_spec(10), "timeout_ms": 200})
        done = srv.wait_job(b["id"], timeout=5)
        self.assertEqual(done["state"], "timed_out", done)
        self.assertEqual(done["error"]["type"], "timeout")


class Batch(GatherdTestCase):
    def test_batch_202_in_order(self):
        srv = self.start()
        specs = [
            {**sleep_spec(10), "labels": {"i": "0"}},
            {"kind": "compute", "params": {"op": "primes", "n": 10}, "labels": {"i": "1"}},
            {**sleep_spec(0, result="r2"), "labels": {"i": "2"}},
        ]
        status, _, body = srv.json("POST", "/v1/jobs/batch", {"jobs": specs})
        self.assertEqual(status, 202, body)
        self.assertEqual(list(body), ["jobs"])
        jobs = body["jobs"]
        self.assertEqual([j["labels"]["i"] for j in jobs], ["0", "1", "2"])
        self.assertEqual([j["kind"] for j in jobs], ["sleep", "compute", "sleep"])
        for j in jobs:
            self.assertJobShape(j)
        self.assertEqual(len({j["id"] for j in jobs}), 3)
        self.assertEqual(srv.wait_job(jobs[1]["id"])["result"], {"count": 4})
        self.assertEqual(srv.wait_job(jobs[2]["id"])["result"], "r2")

    def test_batch_empty_or_too_large_is_400(self):
        srv = self.start("--max-batch", "3")
        self.assertProblem(srv.json("POST", "/v1/jobs/batch", {"jobs": []}), 400, "invalid_request")
        self.assertProblem(srv.json("POST", "/v1/jobs/batch", {"jobs": [sleep_spec(0)] * 4}),
                           400, "invalid_request")
        self.assertProblem(srv.json("POST", "/v1/jobs/batch", {}), 400, "invalid_request")
        self.assertProblem(srv.json("POST", "/v1/jobs/batch", {"jobs": "x"}), 400,
                           "invalid_request")
        self.assertProblem(srv.json("POST", "/v1/jobs/batch",
                                    {"jobs": [sleep_spec(0)], "extra": 1}),
                           400, "invalid_request", detail_contains="extra")
        self.assertEqual(srv.json("POST", "/v1/jobs/batch", {"jobs": [sleep_spec(0)] * 3})[0], 202)
        self.assertEqual(len(srv.json("GET", "/v1/jobs")[2]["jobs"]), 3)

    def test_batch_invalid_spec_submits_nothing(self):
        srv = self.start()
        resp = srv.json("POST", "/v1/jobs/batch",
                        {"jobs": [sleep_spec(0), {**sleep_spec(0), "timeout": 1}]})
        body = self.assertProblem(resp, 400, "invalid_request", detail_contains="timeout")
        self.assertIn("jobs[1]", body["detail"], "detail does not say which spec is invalid")
        self.assertEqual(srv.json("GET", "/v1/jobs")[2]["jobs"], [])

    def test_batch_idempotency(self):
        srv = self.start()
        first = srv.submit({**sleep_spec(0), "idempotency_key": "k"})
        status, _, body = srv.json("POST", "/v1/jobs/batch", {"jobs": [
            {**sleep_spec(0), "idempotency_key": "k"},
            {**sleep_spec(1), "idempotency_key": "n"},
            {**sleep_spec(1), "idempotency_key": "n"},
        ]})
        self.assertEqual(status, 202, body)
        ids = [j["id"] for j in body["jobs"]]
        self.assertEqual(ids[0], first["id"])
        self.assertEqual(ids[1], ids[2])
        self.assertNotEqual(ids[0], ids[1])
        resp = srv.json("POST", "/v1/jobs/batch", {"jobs": [
            {**sleep_spec(0), "idempotency_key": "fresh"},
            {**sleep_spec(5), "idempotency_key": "k"},
        ]})
        self.assertProblem(resp, 409, "idempotency_conflict")
        listed = srv.json("GET", "/v1/jobs")[2]["jobs"]
        self.assertEqual(len(listed), 2, "a refused batch admitted jobs")

    def test_batch_admission_all_or_nothing(self):
        srv = self.start("--max-running", "1", "--max-queued", "2")
        resp = srv.json("POST", "/v1/jobs/batch", {"jobs": [sleep_spec(2000)] * 4})
        self.assertProblem(resp, 429, "queue_full")
        self.assertRegex(resp[1].get("Retry-After") or "", r"^[1-9]\d*$", "429 without Retry-After")
        status, _, listing = srv.json("GET", "/v1/jobs")
        self.assertEqual(status, 200)
        self.assertEqual(listing["jobs"], [], "a refused batch left jobs behind")
        status, _, body = srv.json("POST", "/v1/jobs/batch", {"jobs": [sleep_spec(2000)] * 3})
        self.assertEqual(status, 202, body)
        self.assertProblem(srv.json("POST", "/v1/jobs", sleep_spec(0)), 429, "queue_full")


class LongPoll(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_wait_returns_when_job_finishes(self):
        job = self.srv.submit(sleep_spec(300))
        t0 = time.monotonic()
        status, _, body = self.srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms=10000")
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 200, body)
        self.assertEqual(body["state"], "succeeded", body)
        self.assertGreaterEqual(elapsed, 0.15, "returned before the job could have finished")
        self.assertLess(elapsed, 3.0, "did not return when the job finished")

    def test_wait_times_out_with_current_state(self):
        job = self.srv.submit(sleep_spec(5000))
        t0 = time.monotonic()
        status, _, body = self.srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms=200")
        elapsed = time.monotonic() - t0
        self.assertEqual(status, 200, body)
        self.assertIn(body["state"], ("queued", "running"))
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(elapsed, 2.0)

    def test_wait_on_terminal_returns_at_once(self):
        job = self.srv.submit(sleep_spec(0))
        self.srv.wait_job(job["id"])
        t0 = time.monotonic()
        status, _, body = self.srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms=5000")
        self.assertEqual(status, 200)
        self.assertEqual(body["state"], "succeeded")
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_wait_returns_on_cancel(self):
        job = self.srv.submit(sleep_spec(10000))
        self.srv.wait_job(job["id"], "running")
        result = {}

        def poll():
            result["resp"] = self.srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms=10000")
        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.2)
        self.srv.json("POST", f"/v1/jobs/{job['id']}/cancel")
        t.join(5)
        self.assertFalse(t.is_alive(), "long-poll did not return after cancel")
        self.assertEqual(result["resp"][0], 200)
        self.assertEqual(result["resp"][2]["state"], "cancelled")

    def test_wait_ms_bounds(self):
        job = self.srv.submit(sleep_spec(0))
        for bad in ("60001", "-1", "abc", "1.5"):
            with self.subTest(wait_ms=bad):
                self.assertProblem(self.srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms={bad}"),
                                   400, "invalid_request")
        self.assertEqual(self.srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms=0")[0], 200)

    def test_wait_on_deleted_job_is_404(self):
        job = self.srv.submit(sleep_spec(10000))
        result = {}

        def poll():
            result["resp"] = self.srv.json("GET", f"/v1/jobs/{job['id']}?wait_ms=10000")
        t = threading.Thread(target=poll)
        t.start()
        time.sleep(0.2)
        self.assertEqual(self.srv.request("DELETE", f"/v1/jobs/{job['id']}")[0], 204)
        t.join(5)
        self.assertFalse(t.is_alive(), "long-poll did not return after delete")
        self.assertProblem(result["resp"], 404, "not_found")

    def test_wait_unknown_job_404_at_once(self):
        t0 = time.monotonic()
        self.assertProblem(self.srv.json("GET", "/v1/jobs/nope?wait_ms=5000"), 404, "not_found")
        self.assertLess(time.monotonic() - t0, 1.0)


class Listing(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()
        # Submitted in this order; created_at differs by >= 1 ms so newest-first is unambiguous.
        plan = [
            ({**sleep_spec(0), "labels": {"tenant": "a"}}, "succeeded"),
            ({**sleep_spec(10000), "labels": {"tenant": "a"}}, "running"),
            ({"kind": "compute", "params": {"op": "primes", "n": 10}, "labels": {"tenant": "b"}},
             "succeeded"),
            ({**sleep_spec(0, fail="x"), "labels": {"tenant": "b", "tier": "gold"}}, "failed"),
            ({**sleep_spec(10000), "labels": {"tenant": "b"}}, "running"),
        ]
        self.ids = []
        for spec, state in plan:
            job = self.srv.submit(spec)
            self.srv.wait_job(job["id"], state)
            self.ids.append(job["id"])
            time.sleep(0.005)
        self.newest_first = list(reversed(self.ids))

    def list_ids(self, query=""):
        status, _, body = self.srv.json("GET", "/v1/jobs" + query)
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), {"jobs", "next"}, body)
        return [j["id"] for j in body["jobs"]], body["next"]

    def test_list_all_newest_first(self):
        status, _, body = self.srv.json("GET", "/v1/jobs")
        for job in body["jobs"]:
            self.assertJobShape(job)
        ids, nxt = self.list_ids()
        self.assertEqual(ids, self.newest_first)
        self.assertIsNone(nxt)

    def test_filter_state(self):
        self.assertEqual(self.list_ids("?state=running")[0], [self.ids[4], self.ids[1]])
        self.assertEqual(self.list_ids("?state=succeeded")[0], [self.ids[2], self.ids[0]])
        self.assertEqual(self.list_ids("?state=failed")[0], [self.ids[3]])
        self.assertEqual(self.list_ids("?state=queued")[0], [])

    def test_filter_kind(self):
        self.assertEqual(self.list_ids("?kind=compute")[0], [self.ids[2]])
        self.assertEqual(len(self.list_ids("?kind=sleep")[0]), 4)

    def test_filter_label(self):
        self.assertEqual(self.list_ids("?label=tenant:a")[0], [self.ids[1], self.ids[0]])
        self.assertEqual(self.list_ids("?label=" + urllib.parse.quote("tier:gold"))[0],
                         [self.ids[3]])
        self.assertEqual(self.list_ids("?label=tenant:zzz")[0], [])

    def test_filters_combine(self):
        self.assertEqual(self.list_ids("?state=running&label=tenant:b")[0], [self.ids[4]])
        self.assertEqual(self.list_ids("?kind=sleep&label=tenant:b")[0],
                         [self.ids[4], self.ids[3]])

    def test_limit_and_pagination(self):
        seen = []
        ids, nxt = self.list_ids("?limit=2")
        self.assertEqual(ids, self.newest_first[:2])
        self.assertIsNotNone(nxt)
        seen += ids
        pages = 1
        while nxt is not None:
            ids, nxt = self.list_ids("?limit=2&after=" + urllib.parse.quote(nxt, safe=""))
            seen += ids
            pages += 1
            self.assertLess(pages, 10, "pagination does not end")
        self.assertEqual(seen, self.newest_first)
        self.assertEqual(pages, 3)

    def test_pagination_with_filter(self):
        ids, nxt = self.list_ids("?kind=sleep&limit=3")
        self.assertEqual(ids, [self.ids[4], self.ids[3], self.ids[1]])
        ids2, nxt2 = self.list_ids("?kind=sleep&limit=3&after=" + urllib.parse.quote(nxt, safe=""))
        self.assertEqual(ids2, [self.ids[0]])
        self.assertIsNone(nxt2)

    def test_repeated_label_filters_all_match(self):
        self.assertEqual(self.list_ids("?label=tenant:b&label=tier:gold")[0], [self.ids[3]])
        self.assertEqual(self.list_ids("?label=tenant:a&label=tier:gold")[0], [])

    def test_bad_filters_are_400(self):
        for q in ("?state=bogus", "?kind=bogus", "?limit=0", "?limit=1001", "?limit=abc",
                  "?label=nocolon", "?after=%00garbage%ff", "?stat=running", "?limt=2"):
            with self.subTest(query=q):
                self.assertProblem(self.srv.json("GET", "/v1/jobs" + q), 400, "invalid_request")


class Retention(GatherdTestCase):
    def test_default_retention_expires_finished_job(self):
        srv = self.start("--default-retention-ms", "200")
        job = srv.submit(sleep_spec(0))
        srv.wait_job(job["id"])
        time.sleep(1.5)
        self.assertProblem(srv.json("GET", f"/v1/jobs/{job['id']}"), 404, "not_found")
        listed = [j["id"] for j in srv.json("GET", "/v1/jobs")[2]["jobs"]]
        self.assertNotIn(job["id"], listed)

    def test_running_job_is_not_expired(self):
        srv = self.start("--default-retention-ms", "100")
        job = srv.submit(sleep_spec(800))
        time.sleep(0.4)
        self.assertEqual(srv.get_job(job["id"])["state"], "running")
        done = srv.wait_job(job["id"], timeout=3, interval=0.01)
        self.assertEqual(done["state"], "succeeded")

    def test_spec_retention_ms(self):
        srv = self.start()
        short = srv.submit({**sleep_spec(0), "retention_ms": 100})
        long = srv.submit(sleep_spec(0))
        srv.wait_job(short["id"])
        srv.wait_job(long["id"])
        srv.wait_gone(short["id"], timeout=3)
        self.assertEqual(srv.get_job(long["id"])["state"], "succeeded")

    def test_retention_above_max_is_400(self):
        srv = self.start("--max-retention-ms", "1000", "--default-retention-ms", "1000")
        self.assertProblem(srv.json("POST", "/v1/jobs", {**sleep_spec(0), "retention_ms": 1001}),
                           400, "invalid_request", detail_contains="retention_ms")
        srv.submit({**sleep_spec(0), "retention_ms": 1000})

    def test_max_retained_jobs_evicts_oldest_finished(self):
        srv = self.start("--max-retained-jobs", "3")
        ids = []
        for _ in range(5):
            job = srv.submit(sleep_spec(0))
            srv.wait_job(job["id"])
            ids.append(job["id"])
            time.sleep(0.005)
        # The evictions may happen asynchronously; give them a moment.
        srv.wait_gone(ids[0], timeout=3)
        srv.wait_gone(ids[1], timeout=3)
        for job_id in ids[2:]:
            self.assertEqual(srv.get_job(job_id)["state"], "succeeded")
        listed = [j["id"] for j in srv.json("GET", "/v1/jobs")[2]["jobs"]]
        self.assertEqual(listed, list(reversed(ids[2:])))


class JobBytes(GatherdTestCase):
    """Issue 14, defect 5: the payload of the jobs held (specs, labels, results, errors) is bounded
    by --jobs-max-bytes: the oldest finished jobs are evicted first, and submissions are refused
    only when unfinished jobs alone leave no room."""

    @staticmethod
    def weighing(ms):
        # 996 characters and their quotes as the result (the spec holds it too), 2 bytes of labels:
        # 1000 bytes whether unfinished or finished.
        return {**sleep_spec(ms, result="x" * 996), "labels": {"t": "a"}}

    def test_retained_job_bytes_gauge_and_eviction(self):
        srv = self.start("--jobs-max-bytes", "3000")
        self.assertEqual(metric_value(srv.metrics(), "gatherd_jobs_bytes"), 0)
        self.assertIn('gatherd_limit{name="jobs_max_bytes"} 3000', srv.metrics())
        ids = []
        for _ in range(4):
            job = srv.submit(self.weighing(0))
            srv.wait_job(job["id"])
            ids.append(job["id"])
        # Three fit exactly; the fourth evicted the oldest finished.
        srv.wait_gone(ids[0], timeout=3)
        for job_id in ids[1:]:
            self.assertEqual(srv.get_job(job_id)["state"], "succeeded")
        self.assertEqual(metric_value(srv.metrics(), "gatherd_jobs_bytes"), 3000)

        # Unfinished jobs are never evicted: once they alone fill the budget, 429.
        running = [srv.submit(self.weighing(10000))["id"] for _ in range(3)]
        for job_id in ids[1:]:
            srv.wait_gone(job_id, timeout=3)
        resp = srv.json("POST", "/v1/jobs", self.weighing(10000))
        self.assertProblem(resp, 429, "jobs_memory_full")
        self.assertRegex(resp[1].get("Retry-After") or "", r"^[1-9]\d*$")
        self.assertProblem(srv.json("POST", "/v1/jobs/batch", {"jobs": [sleep_spec(0, result="y")]}),
                           429, "jobs_memory_full")
        # More than the whole budget could ever hold: 413.
        self.assertProblem(srv.json("POST", "/v1/jobs", sleep_spec(0, result="x" * 3100)), 413,
                           "job_too_large")
        text = srv.metrics()
        self.assertEqual(metric_value(text, "gatherd_jobs_rejected_total", reason="jobs_memory_full"), 2)
        self.assertEqual(metric_value(text, "gatherd_jobs_rejected_total", reason="job_too_large"), 1)
        # A job that ends makes room (its spec goes, and its small result can be evicted).
        srv.json("POST", f"/v1/jobs/{running[0]}/cancel")
        srv.wait_job(running[0])
        srv.submit(self.weighing(10000))
        self.assertEqual(srv.get_job(running[1])["state"], "running")
        self.assertLessEqual(metric_value(srv.metrics(), "gatherd_jobs_bytes"), 3000)

if __name__ == "__main__":
    unittest.main()
