"""POST /v1/gather: fan-in over existing jobs and inline specs (asyncio.gather / wait / TaskGroup).

Timings are the seed scenarios scaled to milliseconds; bounds are generous so that a loaded machine
does not make them flaky, while still telling "returned at the first completion" from "waited for
all".
"""

import http.client
import json
import threading
import time
import unittest

import yaml

from harness import OPENAPI_PATH, TERMINAL_STATES, GatherdTestCase

RESPONSE_FIELDS = {"outcome", "elapsed_ms", "jobs", "done", "pending", "first_error"}


def sleep_spec(ms, **params):
    return {"kind": "sleep", "params": {"duration_ms": ms, **params}}


class GatherTestCase(GatherdTestCase):
    def gather(self, srv, body, expect=200, timeout=15.0):
        """POST /v1/gather; returns (parsed body, client-side seconds). Checks the 200 shape."""
        t0 = time.monotonic()
        status, headers, res = srv.json("POST", "/v1/gather", body, timeout=timeout)
        wall = time.monotonic() - t0
        self.assertEqual(status, expect, f"POST /v1/gather {body} -> {status} {res}")
        if status == 200:
            self.assertEqual(headers.get("Content-Type", "").split(";")[0], "application/json")
            self.assertGatherShape(body, res)
        return res, wall

    def assertGatherShape(self, request, res):
        self.assertIsInstance(res, dict, res)
        self.assertEqual(set(res), RESPONSE_FIELDS, res)
        self.assertIn(res["outcome"], ("completed", "failed", "timed_out"), res)
        self.assertIsInstance(res["elapsed_ms"], int, res)
        self.assertGreaterEqual(res["elapsed_ms"], 0, res)
        n = len(request["jobs"])
        self.assertEqual(len(res["jobs"]), n, res)
        for job in res["jobs"]:
            self.assertJobShape(job)
        for i, entry in enumerate(request["jobs"]):
            if isinstance(entry, str):
                self.assertEqual(res["jobs"][i]["id"], entry, f"jobs[{i}] is not the job named")
        # done and pending partition the indices; done jobs are terminal, pending ones are not.
        self.assertEqual(len(res["done"]), len(set(res["done"])), res["done"])
        self.assertEqual(sorted(res["done"] + res["pending"]), list(range(n)), res)
        self.assertEqual(res["pending"], sorted(res["pending"]), res)
        for i in res["done"]:
            self.assertIn(res["jobs"][i]["state"], TERMINAL_STATES, (i, res["jobs"][i]))
        for i in res["pending"]:
            self.assertNotIn(res["jobs"][i]["state"], TERMINAL_STATES, (i, res["jobs"][i]))
        fe = res["first_error"]
        if fe is not None:
            self.assertEqual(set(fe), {"index", "id", "error"}, fe)
            self.assertIn(fe["index"], res["done"], fe)
            job = res["jobs"][fe["index"]]
            self.assertEqual(fe["id"], job["id"], fe)
            self.assertNotEqual(job["state"], "succeeded", fe)
            self.assertEqual(fe["error"], job["error"], fe)
            self.assertEqual(set(fe["error"]), {"type", "message"}, fe)
        if res["outcome"] != "timed_out" and fe is None and res["pending"]:
            # Only first_completed can end early without a failure and without timing out.
            self.assertEqual(request.get("return_when"), "first_completed", res)

    def listing_ids(self, srv):
        status, _, body = srv.json("GET", "/v1/jobs?limit=1000")
        self.assertEqual(status, 200, body)
        return [j["id"] for j in body["jobs"]]


class ReturnWhen(GatherTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_first_completed_returns_at_the_first_done_even_a_failure(self):
        body = {"jobs": [sleep_spec(200), sleep_spec(100, fail="boom"), sleep_spec(300),
                         sleep_spec(150)],
                "return_when": "first_completed"}
        res, wall = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [1], res)
        self.assertEqual(res["pending"], [0, 2, 3], res)
        self.assertGreaterEqual(res["elapsed_ms"], 90, res)
        self.assertLess(wall, 1.0)
        self.assertEqual(res["jobs"][1]["state"], "failed", res)
        self.assertEqual(res["jobs"][1]["error"], {"type": "failed", "message": "boom"})
        self.assertEqual(res["first_error"],
                         {"index": 1, "id": res["jobs"][1]["id"],
                          "error": {"type": "failed", "message": "boom"}})
        for i in (0, 2, 3):
            self.assertEqual(res["jobs"][i]["state"], "running", res["jobs"][i])
            self.assertFalse(res["jobs"][i]["cancel_requested"])
        # asyncio.wait semantics: the pending ones keep running and finish on their own.
        self.assertEqual(self.srv.get_job(res["jobs"][2]["id"])["state"], "running")
        for i in (0, 2, 3):
            done = self.srv.wait_job(res["jobs"][i]["id"])
            self.assertEqual(done["state"], "succeeded", done)
            self.assertFalse(done["cancel_requested"], done)

    def test_first_completed_with_cancel_pending(self):
        body = {"jobs": [sleep_spec(5000, cleanup_ms=150), sleep_spec(50)],
                "return_when": "first_completed", "cancel_pending": True}
        res, wall = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [1, 0], res)
        self.assertEqual(res["pending"], [], res)
        self.assertIsNone(res["first_error"], res)
        self.assertGreaterEqual(res["elapsed_ms"], 190, "answered before the cleanup ran")
        self.assertLess(wall, 3.0)
        cancelled = res["jobs"][0]
        self.assertEqual(cancelled["state"], "cancelled", cancelled)
        self.assertEqual(cancelled["error"]["type"], "cancelled", cancelled)
        self.assertTrue(cancelled["cancel_requested"], cancelled)
        self.assertEqual(self.srv.get_job(cancelled["id"])["state"], "cancelled")

    def test_first_exception_returns_at_the_first_failure(self):
        body = {"jobs": [sleep_spec(100), sleep_spec(150), sleep_spec(250, fail="third"),
                         sleep_spec(600)],
                "return_when": "first_exception"}
        res, wall = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [0, 1, 2], res)
        self.assertEqual(res["pending"], [3], res)
        self.assertGreaterEqual(res["elapsed_ms"], 240, res)
        self.assertLess(wall, 0.55, "waited for the 600 ms job")
        self.assertEqual(res["first_error"]["index"], 2, res)
        self.assertEqual(res["first_error"]["error"], {"type": "failed", "message": "third"})
        self.assertEqual(res["jobs"][3]["state"], "running", res)
        self.assertEqual(self.srv.wait_job(res["jobs"][3]["id"])["state"], "succeeded")

    def test_first_exception_without_failure_waits_for_all(self):
        body = {"jobs": [sleep_spec(200), sleep_spec(50)], "return_when": "first_exception"}
        res, _ = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [1, 0], res)
        self.assertEqual(res["pending"], [], res)
        self.assertIsNone(res["first_error"])
        self.assertGreaterEqual(res["elapsed_ms"], 190, res)

    def test_all_completed_is_the_default_and_keeps_input_order(self):
        body = {"jobs": [sleep_spec(300, result="a"), sleep_spec(100, result="b"),
                         sleep_spec(200, result="c")]}
        res, wall = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual([j["result"] for j in res["jobs"]], ["a", "b", "c"], res)
        self.assertEqual([j["state"] for j in res["jobs"]], ["succeeded"] * 3, res)
        self.assertEqual(res["done"], [1, 2, 0], res)
        self.assertEqual(res["pending"], [], res)
        self.assertIsNone(res["first_error"])
        self.assertGreaterEqual(res["elapsed_ms"], 290, res)
        self.assertGreaterEqual(wall, 0.29)
        self.assertLess(wall, 3.0)
        self.assertEqual(len({j["id"] for j in res["jobs"]}), 3)

    def test_all_completed_with_failures_waits_for_all(self):
        # return_exceptions defaults to true: failures are results, the wait goes on.
        body = {"jobs": [sleep_spec(300, fail="late"), sleep_spec(100, fail="early"),
                         sleep_spec(200)]}
        res, _ = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [1, 2, 0], res)
        self.assertEqual([j["state"] for j in res["jobs"]], ["failed", "failed", "succeeded"])
        self.assertEqual(res["first_error"]["index"], 1, "first_error is the earliest to finish")
        self.assertEqual(res["first_error"]["error"]["message"], "early")
        self.assertGreaterEqual(res["elapsed_ms"], 290, res)

    def test_return_exceptions_false_returns_at_the_first_failure(self):
        body = {"jobs": [sleep_spec(300), sleep_spec(100, fail="boom"), sleep_spec(200)],
                "return_exceptions": False}
        res, wall = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(res["done"], [1], res)
        self.assertEqual(res["pending"], [0, 2], res)
        self.assertGreaterEqual(res["elapsed_ms"], 90, res)
        self.assertLess(wall, 0.19, "waited for a sibling after the failure")
        self.assertEqual(res["first_error"]["index"], 1, res)
        self.assertEqual(res["first_error"]["error"], {"type": "failed", "message": "boom"})
        # Without cancel_on_error / cancel_pending the siblings keep running.
        for i in (0, 2):
            self.assertEqual(res["jobs"][i]["state"], "running", res)
            done = self.srv.wait_job(res["jobs"][i]["id"])
            self.assertEqual(done["state"], "succeeded", done)

    def test_return_exceptions_false_without_failure_completes(self):
        body = {"jobs": [sleep_spec(100), sleep_spec(50)], "return_exceptions": False}
        res, _ = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [1, 0], res)
        self.assertIsNone(res["first_error"])

    def test_return_exceptions_false_with_cancel_pending(self):
        body = {"jobs": [sleep_spec(5000, cleanup_ms=100), sleep_spec(50, fail="x")],
                "return_exceptions": False, "cancel_pending": True}
        res, _ = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(res["done"], [1, 0], res)
        self.assertEqual(res["pending"], [], res)
        self.assertEqual(res["jobs"][0]["state"], "cancelled", res)
        self.assertEqual(res["first_error"]["index"], 1, res)
        self.assertGreaterEqual(res["elapsed_ms"], 140, res)


class CancelOnError(GatherTestCase):
    def test_cancels_siblings_and_waits_for_their_cleanup(self):
        srv = self.start()
        body = {"jobs": [sleep_spec(10000, cleanup_ms=300), sleep_spec(100, fail="boom"),
                         sleep_spec(10000, cleanup_ms=150)],
                "cancel_on_error": True}
        res, wall = self.gather(srv, body)
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(res["pending"], [], res)
        self.assertEqual(res["done"], [1, 2, 0], res)
        self.assertGreaterEqual(res["elapsed_ms"], 100 + 300 - 10, "answered before the cleanup")
        self.assertGreaterEqual(wall, 0.39)
        self.assertLess(wall, 3.0)
        self.assertEqual(res["first_error"],
                         {"index": 1, "id": res["jobs"][1]["id"],
                          "error": {"type": "failed", "message": "boom"}})
        for i in (0, 2):
            job = res["jobs"][i]
            self.assertEqual(job["state"], "cancelled", job)
            self.assertEqual(job["error"]["type"], "cancelled", job)
            self.assertTrue(job["cancel_requested"], job)
            self.assertEqual(srv.get_job(job["id"])["state"], "cancelled")
        self.assertEqual(res["jobs"][1]["state"], "failed")

    def test_applies_with_first_exception(self):
        srv = self.start()
        body = {"jobs": [sleep_spec(10000, cleanup_ms=100), sleep_spec(50, fail="x")],
                "return_when": "first_exception", "cancel_on_error": True}
        res, _ = self.gather(srv, body)
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(res["done"], [1, 0], res)
        self.assertEqual(res["jobs"][0]["state"], "cancelled", res)
        self.assertEqual(res["first_error"]["index"], 1, res)

    def test_queued_siblings_are_cancelled_without_starting(self):
        srv = self.start("--max-running", "1")
        body = {"jobs": [sleep_spec(100, fail="x"), sleep_spec(5000), sleep_spec(5000)],
                "cancel_on_error": True}
        res, wall = self.gather(srv, body)
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(res["done"][0], 0, res)
        self.assertEqual(sorted(res["done"]), [0, 1, 2], res)
        self.assertLess(wall, 1.5)
        for i in (1, 2):
            self.assertEqual(res["jobs"][i]["state"], "cancelled", res)
        # jobs[1] may have taken the run slot jobs[0] freed just before the cancel; jobs[2] was
        # still queued behind it and never started.
        self.assertIsNone(res["jobs"][2]["started_at"], res)
        self.assertEqual(res["jobs"][2]["attempts"], 0, res)
        self.assertEqual(res["first_error"]["index"], 0, res)

    def test_no_failure_no_cancel(self):
        srv = self.start()
        res, _ = self.gather(srv, {"jobs": [sleep_spec(50), sleep_spec(100)],
                                   "cancel_on_error": True})
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual([j["state"] for j in res["jobs"]], ["succeeded", "succeeded"])
        self.assertFalse(any(j["cancel_requested"] for j in res["jobs"]))


class Timeout(GatherTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_timeout_leaves_pending_jobs_running(self):
        body = {"jobs": [sleep_spec(700), sleep_spec(50)], "timeout_ms": 200}
        res, wall = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "timed_out", res)
        self.assertEqual(res["done"], [1], res)
        self.assertEqual(res["pending"], [0], res)
        self.assertIsNone(res["first_error"], res)
        self.assertGreaterEqual(res["elapsed_ms"], 190, res)
        self.assertLess(wall, 0.65, "waited for the pending job")
        pending = res["jobs"][0]
        self.assertEqual(pending["state"], "running", pending)
        self.assertFalse(pending["cancel_requested"])
        self.assertEqual(self.srv.get_job(pending["id"])["state"], "running")
        done = self.srv.wait_job(pending["id"])
        self.assertEqual(done["state"], "succeeded", done)
        self.assertFalse(done["cancel_requested"], done)

    def test_timeout_with_cancel_pending_cancels_after_cleanup(self):
        body = {"jobs": [sleep_spec(10000, cleanup_ms=200), sleep_spec(50), sleep_spec(10000)],
                "timeout_ms": 200, "cancel_pending": True}
        res, wall = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "timed_out", res)
        self.assertEqual(res["pending"], [], res)
        self.assertEqual(res["done"], [1, 2, 0], res)
        self.assertIsNone(res["first_error"], "a job the gather cancelled is never first_error")
        self.assertGreaterEqual(res["elapsed_ms"], 200 + 200 - 10, "answered before the cleanup")
        self.assertLess(wall, 3.0)
        self.assertEqual(res["jobs"][1]["state"], "succeeded")
        for i in (0, 2):
            job = res["jobs"][i]
            self.assertEqual(job["state"], "cancelled", job)
            self.assertEqual(job["error"]["type"], "cancelled", job)
            self.assertTrue(job["cancel_requested"], job)

    def test_timeout_reports_a_failure_that_came_before_it(self):
        body = {"jobs": [sleep_spec(50, fail="early"), sleep_spec(10000)],
                "timeout_ms": 200, "cancel_pending": True}
        res, _ = self.gather(self.srv, body)
        self.assertEqual(res["outcome"], "timed_out", res)
        self.assertEqual(res["done"], [0, 1], res)
        self.assertEqual(res["jobs"][1]["state"], "cancelled", res)
        self.assertEqual(res["first_error"]["index"], 0, res)
        self.assertEqual(res["first_error"]["error"]["message"], "early")

    def test_no_timeout_when_everything_finishes_first(self):
        res, _ = self.gather(self.srv, {"jobs": [sleep_spec(50)], "timeout_ms": 2000})
        self.assertEqual(res["outcome"], "completed", res)
        self.assertLess(res["elapsed_ms"], 1500, res)


class LargeGathers(GatherTestCase):
    """Gathers of 256 jobs or more write each job's JSON as it finishes, on another thread, and
    the rest at the end: the answer must be the same as one written at the end."""

    def setUp(self):
        self.srv = self.start("--max-gather", "2000", "--max-running", "2000")

    def assertSameAsGet(self, res, indices):
        for i in indices:
            job = res["jobs"][i]
            self.assertEqual(job, self.srv.get_job(job["id"]), f"jobs[{i}] differs from its GET")

    def test_input_order_kept_when_jobs_finish_out_of_order(self):
        n = 1000
        jobs = []
        for i in range(n):
            params = {"result": {"i": i}}
            if i % 97 == 0:
                params = {"fail": f"job {i} fails"}
            jobs.append({**sleep_spec((i * 37) % 200, **params), "labels": {"i": str(i)}})
        res, _ = self.gather(self.srv, {"jobs": jobs}, timeout=30)
        self.assertEqual(res["outcome"], "completed", res["outcome"])
        self.assertEqual(res["pending"], [])
        for i, job in enumerate(res["jobs"]):
            self.assertEqual(job["labels"], {"i": str(i)}, f"jobs[{i}] is not entry {i}")
            if i % 97 == 0:
                self.assertEqual(job["state"], "failed", job)
                self.assertEqual(job["error"], {"type": "failed", "message": f"job {i} fails"})
            else:
                self.assertEqual(job["state"], "succeeded", job)
                self.assertEqual(job["result"], {"i": i}, job)
        # Completion order follows the durations, not the input order.
        durations = [(i * 37) % 200 for i in res["done"]]
        self.assertNotEqual(res["done"], sorted(res["done"]))
        self.assertLessEqual(sum(a > b + 20 for a, b in zip(durations, durations[1:])), 5, durations)
        self.assertSameAsGet(res, range(0, n, 7))

    def test_entries_read_on_two_threads_name_the_first_invalid_one(self):
        # 2,000 entries are read in two halves at once; the answer names the first bad entry,
        # as reading them in order would, and nothing is submitted.
        jobs = [sleep_spec(10) for _ in range(2000)]

        def detail(expect_status, expect_code):
            response = self.srv.json("POST", "/v1/gather", {"jobs": jobs})
            self.assertProblem(response, expect_status, expect_code)
            return response[2]["detail"]

        jobs[1500] = sleep_spec(-1)
        self.assertIn("jobs[1500].params.duration_ms", detail(400, "invalid_request"))
        jobs[300] = {"kind": "sleep", "params": {}}
        self.assertIn("jobs[300].params.duration_ms", detail(400, "invalid_request"))
        jobs[300] = sleep_spec(10)
        jobs[1999] = "not-a-job-id"
        self.assertIn("jobs[1500]", detail(400, "invalid_request"))
        jobs[1500] = sleep_spec(10)
        self.assertIn("jobs[1999]", detail(404, "not_found"))
        self.assertEqual(self.listing_ids(self.srv), [], "a refused gather submitted something")

    def test_timeout_writes_pending_and_cancelled_jobs_as_they_are(self):
        n = 600
        jobs = [sleep_spec(20 if i % 2 else 5000, result=i) for i in range(n)]
        res, _ = self.gather(self.srv, {"jobs": jobs, "timeout_ms": 400}, timeout=30)
        self.assertEqual(res["outcome"], "timed_out", res["outcome"])
        self.assertEqual(sorted(res["done"]), list(range(1, n, 2)))
        self.assertEqual(res["pending"], list(range(0, n, 2)))
        for i, job in enumerate(res["jobs"]):
            self.assertEqual(job["state"], "succeeded" if i % 2 else "running", job)
        self.assertSameAsGet(res, range(1, n, 10))

        res, _ = self.gather(self.srv, {"jobs": jobs, "timeout_ms": 400, "cancel_pending": True},
                             timeout=30)
        self.assertEqual(res["outcome"], "timed_out", res["outcome"])
        self.assertEqual(res["pending"], [])
        for i, job in enumerate(res["jobs"]):
            self.assertEqual(job["state"], "succeeded" if i % 2 else "cancelled", job)
            self.assertEqual(job["result"], i if i % 2 else None, job)
        self.assertSameAsGet(res, range(0, n, 10))


class Entries(GatherTestCase):
    def test_existing_id_and_inline_specs(self):
        srv = self.start()
        existing = srv.submit(sleep_spec(150, result="existing"))
        body = {"jobs": [existing["id"], sleep_spec(50, result="a"), sleep_spec(100, result="b")]}
        res, _ = self.gather(srv, body)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["jobs"][0]["id"], existing["id"])
        self.assertEqual([j["result"] for j in res["jobs"]], ["existing", "a", "b"])
        self.assertEqual(res["done"], [1, 2, 0], res)
        ids = [j["id"] for j in res["jobs"]]
        self.assertEqual(len(set(ids)), 3)
        # The inline specs were submitted as ordinary jobs.
        self.assertEqual(set(self.listing_ids(srv)), set(ids))
        for job_id in ids[1:]:
            self.assertEqual(srv.get_job(job_id)["state"], "succeeded")

    def test_already_finished_job_counts_as_done_at_once(self):
        srv = self.start()
        finished = srv.wait_job(srv.submit(sleep_spec(0))["id"])
        self.assertEqual(finished["state"], "succeeded")
        res, wall = self.gather(srv, {"jobs": [sleep_spec(500), finished["id"]],
                                      "return_when": "first_completed"})
        self.assertEqual(res["done"], [1], res)
        self.assertEqual(res["pending"], [0], res)
        self.assertLess(res["elapsed_ms"], 200, res)
        self.assertLess(wall, 0.4)
        self.assertEqual(res["jobs"][1], finished)

        res, wall = self.gather(srv, {"jobs": [finished["id"]]})
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [0], res)
        self.assertLess(wall, 0.4)

    def test_already_failed_job_ends_a_first_exception_wait_at_once(self):
        srv = self.start()
        failed = srv.wait_job(srv.submit(sleep_spec(0, fail="before"))["id"])
        self.assertEqual(failed["state"], "failed")
        res, wall = self.gather(srv, {"jobs": [sleep_spec(500), failed["id"]],
                                      "return_when": "first_exception"})
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [1], res)
        self.assertEqual(res["first_error"]["id"], failed["id"], res)
        self.assertLess(wall, 0.4)
        res, wall = self.gather(srv, {"jobs": [sleep_spec(500), failed["id"]],
                                      "return_exceptions": False})
        self.assertEqual(res["outcome"], "failed", res)
        self.assertEqual(res["done"], [1], res)
        self.assertLess(wall, 0.4)

    def test_external_cancel_is_a_failure_of_the_gather(self):
        # The gather waits on completions without blocking other requests; a job cancelled by
        # someone else is a failure like any other (and can be the first_error).
        srv = self.start()
        a = srv.submit(sleep_spec(10000))
        b = srv.submit(sleep_spec(10000))
        out = {}

        def run():
            out["response"] = srv.json("POST", "/v1/gather",
                                       {"jobs": [a["id"], b["id"]],
                                        "return_when": "first_exception"}, timeout=15)

        t = threading.Thread(target=run)
        t.start()
        time.sleep(0.2)
        self.assertTrue(t.is_alive(), f"gather answered early: {out}")
        status, _, body = srv.json("POST", f"/v1/jobs/{b['id']}/cancel", {"reason": "by hand"})
        self.assertEqual(status, 202, body)
        t.join(5)
        self.assertFalse(t.is_alive(), "gather did not end after the cancel")
        status, _, res = out["response"]
        self.assertEqual(status, 200, res)
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(res["done"], [1], res)
        self.assertEqual(res["pending"], [0], res)
        self.assertEqual(res["first_error"],
                         {"index": 1, "id": b["id"],
                          "error": {"type": "cancelled", "message": "by hand"}})
        self.assertEqual(srv.get_job(a["id"])["state"], "running")

    def test_unknown_id_is_404_and_nothing_is_submitted(self):
        srv = self.start()
        before = srv.submit(sleep_spec(0))
        listing = self.listing_ids(srv)
        unknown = "0123456789abcdef0123456789abcdef"
        for bad in (unknown, "not-a-job-id", ""):
            with self.subTest(entry=bad):
                body = {"jobs": [sleep_spec(10), bad, sleep_spec(10)]}
                response = srv.json("POST", "/v1/gather", body)
                self.assertProblem(response, 404, "not_found", detail_contains="jobs[1]")
        # A deleted job is unknown too.
        status, _, _ = srv.request("DELETE", f"/v1/jobs/{before['id']}")
        self.assertEqual(status, 204)
        self.assertProblem(srv.json("POST", "/v1/gather",
                                    {"jobs": [sleep_spec(10), before["id"]]}),
                           404, "not_found", detail_contains="jobs[1]")
        self.assertEqual(listing, [before["id"]])
        self.assertEqual(self.listing_ids(srv), [], "a gather answered 404 submitted something")

    def test_too_many_entries_is_400(self):
        srv = self.start("--max-gather", "3")
        response = srv.json("POST", "/v1/gather", {"jobs": [sleep_spec(0)] * 4})
        self.assertProblem(response, 400, "invalid_request", detail_contains="jobs")
        self.assertEqual(self.listing_ids(srv), [])
        res, _ = self.gather(srv, {"jobs": [sleep_spec(0)] * 3})
        self.assertEqual(res["outcome"], "completed", res)
        self.assertEqual(len(self.listing_ids(srv)), 3)

    def test_queue_full_when_inline_specs_do_not_fit(self):
        srv = self.start("--max-running", "1", "--max-queued", "1")
        running = srv.submit(sleep_spec(3000))
        srv.wait_job(running["id"], "running")
        response = srv.json("POST", "/v1/gather",
                            {"jobs": [running["id"], sleep_spec(10), sleep_spec(10)]})
        self.assertProblem(response, 429, "queue_full")
        retry_after = response[1].get("Retry-After")
        self.assertIsNotNone(retry_after, "429 without Retry-After")
        self.assertGreaterEqual(int(retry_after), 1)
        self.assertEqual(self.listing_ids(srv), [running["id"]], "something was admitted")
        # One spec fits (it waits queued); ids alone never need room.
        res, _ = self.gather(srv, {"jobs": [running["id"], sleep_spec(10)], "timeout_ms": 100})
        self.assertEqual(res["outcome"], "timed_out", res)
        self.assertEqual(res["pending"], [0, 1], res)
        self.assertEqual(res["jobs"][1]["state"], "queued", res)
        res, _ = self.gather(srv, {"jobs": [running["id"]], "timeout_ms": 50})
        self.assertEqual(res["outcome"], "timed_out", res)

    def test_idempotent_inline_spec(self):
        srv = self.start()
        spec = sleep_spec(10)
        spec["idempotency_key"] = "gather-k"
        first, _ = self.gather(srv, {"jobs": [spec]})
        again, _ = self.gather(srv, {"jobs": [spec]})
        self.assertEqual(again["jobs"][0]["id"], first["jobs"][0]["id"])
        other = dict(spec, params={"duration_ms": 11})
        self.assertProblem(srv.json("POST", "/v1/gather", {"jobs": [sleep_spec(10), other]}),
                           409, "idempotency_conflict")
        self.assertEqual(self.listing_ids(srv), [first["jobs"][0]["id"]])


class Validation(GatherTestCase):
    def setUp(self):
        self.srv = self.start()

    def bad(self, body, field=None, status=400, code="invalid_request"):
        with self.subTest(body=body):
            self.assertProblem(self.srv.json("POST", "/v1/gather", body), status, code,
                               detail_contains=field, msg=str(body))

    def test_unknown_field(self):
        self.bad({"jobs": [sleep_spec(0)], "timeout": 100}, "timeout")
        self.bad({"jobs": [sleep_spec(0)], "return_exception": False}, "return_exception")

    def test_jobs_missing_or_wrong(self):
        self.bad({}, "jobs")
        self.bad({"return_when": "first_completed"}, "jobs")
        for jobs in ([], None, "abc", {"kind": "sleep"}, 3):
            self.bad({"jobs": jobs}, "jobs")

    def test_entry_of_wrong_type(self):
        for entry in (1, None, True, [], ["x"], 1.5):
            self.bad({"jobs": [sleep_spec(0), entry]}, "jobs[1]")

    def test_invalid_inline_spec_is_named(self):
        self.bad({"jobs": [sleep_spec(0), {"kind": "nope"}]}, "jobs[1]")
        self.bad({"jobs": [{"kind": "sleep"}]}, "jobs[0]")
        self.bad({"jobs": [{"kind": "sleep", "params": {"duration_ms": 1, "x": 1}}]}, "jobs[0]")

    def test_bad_return_when(self):
        for value in ("FIRST_COMPLETED", "all", "", 1, None, True):
            self.bad({"jobs": [sleep_spec(0)], "return_when": value}, "return_when")

    def test_non_bool_flags(self):
        for flag in ("return_exceptions", "cancel_on_error", "cancel_pending"):
            for value in ("true", 1, 0, None, "false", [True]):
                self.bad({"jobs": [sleep_spec(0)], flag: value}, flag)

    def test_bad_timeout(self):
        for value in (-1, "100", 1.5, None, 86400001):
            self.bad({"jobs": [sleep_spec(0)], "timeout_ms": value}, "timeout_ms")

    def test_body_not_a_json_object(self):
        for raw in (b"{", b"[]", b"null", b'"jobs"'):
            with self.subTest(raw=raw):
                self.assertProblem(self.srv.json("POST", "/v1/gather", raw,
                                                 {"Content-Type": "application/json"}),
                                   400, "invalid_request")

    def test_wrong_content_type_is_415(self):
        self.assertProblem(self.srv.json("POST", "/v1/gather", b'{"jobs":[]}',
                                         {"Content-Type": "text/plain"}),
                           415, "unsupported_media_type")

    def test_nothing_submitted_by_invalid_requests(self):
        self.bad({"jobs": [sleep_spec(0), sleep_spec(0)], "return_when": "x"}, "return_when")
        self.bad({"jobs": [sleep_spec(0), 7]}, "jobs[1]")
        self.bad({"jobs": [sleep_spec(0)], "cancel_pending": "yes"}, "cancel_pending")
        self.assertEqual(self.listing_ids(self.srv), [])

    def test_every_field_accepted(self):
        res, _ = self.gather(self.srv, {"jobs": [sleep_spec(0)], "return_when": "all_completed",
                                        "return_exceptions": True, "cancel_on_error": False,
                                        "cancel_pending": False, "timeout_ms": 10000})
        self.assertEqual(res["outcome"], "completed", res)
        for when in ("all_completed", "first_completed", "first_exception"):
            res, _ = self.gather(self.srv, {"jobs": [sleep_spec(0)], "return_when": when,
                                            "timeout_ms": 0, "return_exceptions": False,
                                            "cancel_on_error": True, "cancel_pending": True})
            self.assertIn(res["outcome"], ("completed", "timed_out"), res)


class LimitsAndAuth(GatherTestCase):
    def test_auth_required_with_tokens(self):
        srv = self.start("--api-token", "s3cret")
        self.assertProblem(srv.json("POST", "/v1/gather", {"jobs": [sleep_spec(0)]}),
                           401, "unauthorized")
        status, _, res = srv.json("POST", "/v1/gather", {"jobs": [sleep_spec(0)]},
                                  {"Authorization": "Bearer s3cret"})
        self.assertEqual(status, 200, res)
        self.assertEqual(res["outcome"], "completed", res)

    def test_body_too_large_is_413(self):
        srv = self.start("--max-body-bytes", "512")
        body = {"jobs": [sleep_spec(0, result="x" * 600)]}
        self.assertProblem(srv.json("POST", "/v1/gather", body), 413, "payload_too_large")


class Contract(GatherTestCase):
    """The route's request and response fields are the ones proto/openapi.yaml declares."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        doc = yaml.safe_load(OPENAPI_PATH.read_text())
        cls.schemas = doc["components"]["schemas"]
        cls.operation = doc["paths"]["/v1/gather"]["post"]

    def test_schemas_match_the_implementation(self):
        request = self.schemas["GatherRequest"]
        self.assertFalse(request.get("additionalProperties", True))
        self.assertEqual(set(request["properties"]),
                         {"jobs", "return_when", "return_exceptions", "cancel_on_error",
                          "cancel_pending", "timeout_ms"})
        self.assertEqual(set(request["properties"]["return_when"]["enum"]),
                         {"all_completed", "first_completed", "first_exception"})
        response = self.schemas["GatherResponse"]
        self.assertEqual(set(response["properties"]), RESPONSE_FIELDS)
        self.assertEqual(set(response["required"]), RESPONSE_FIELDS)
        self.assertEqual(set(response["properties"]["outcome"]["enum"]),
                         {"completed", "failed", "timed_out", "abandoned"})
        self.assertEqual(set(self.schemas["GatherError"]["required"]), {"index", "id", "error"})
        for code in ("200", "400", "401", "404", "409", "413", "415", "429", "503"):
            self.assertIn(code, self.operation["responses"])


if __name__ == "__main__":
    unittest.main()


class Observability(GatherTestCase):
    def test_gathers_are_counted_by_outcome_and_logged(self):
        srv = self.start()
        self.gather(srv, {"jobs": [{"kind": "sleep", "params": {"duration_ms": 10}}]})
        self.gather(srv, {"jobs": [{"kind": "sleep", "params": {"duration_ms": 500}}],
                          "timeout_ms": 50, "cancel_pending": True})
        text = srv.metrics()
        self.assertRegex(text, r'gatherd_gathers_total\{outcome="completed"\} 1(\.0+)?\n')
        self.assertRegex(text, r'gatherd_gathers_total\{outcome="timed_out"\} 1(\.0+)?\n')
        self.assertRegex(text, r'gatherd_gather_duration_seconds_count 2(\.0+)?\n')
        deadline = time.monotonic() + 5
        while True:
            logs = [l for l in srv.log_lines() if l.get("msg") == "gather.done"]
            if len(logs) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual(sorted(l["outcome"] for l in logs), ["completed", "timed_out"], logs)
        for line in logs:
            self.assertEqual(line["jobs"], 1, line)
            self.assertIn("request_id", line)


class Streaming(GatherTestCase):
    """Accept: application/x-ndjson: jobs as they complete, then the summary."""

    def stream(self, srv, body):
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("POST", "/v1/gather", json.dumps(body),
                     {"Content-Type": "application/json", "Accept": "application/x-ndjson"})
        return conn, conn.getresponse()

    def test_lines_arrive_in_completion_order_as_jobs_finish(self):
        srv = self.start()
        body = {"jobs": [{"kind": "sleep", "params": {"duration_ms": 300}},
                         {"kind": "sleep", "params": {"duration_ms": 100, "fail": "boom"}},
                         {"kind": "sleep", "params": {"duration_ms": 200}}]}
        t0 = time.monotonic()
        conn, resp = self.stream(srv, body)
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("Content-Type"), "application/x-ndjson")
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        lines, arrivals = [], []
        while True:
            raw = resp.readline()
            if not raw:
                break
            lines.append(json.loads(raw))
            arrivals.append(time.monotonic() - t0)
        conn.close()
        self.assertEqual(len(lines), 4, lines)
        jobs, summary = lines[:3], lines[3]["summary"]
        self.assertEqual([j["state"] for j in jobs], ["failed", "succeeded", "succeeded"])
        # Each line is sent when its job is done, not all at the end.
        self.assertLess(arrivals[0], 0.25, arrivals)
        self.assertGreaterEqual(arrivals[2], 0.28, arrivals)
        self.assertEqual(set(summary), {"outcome", "elapsed_ms", "done", "pending", "first_error"})
        self.assertEqual(summary["outcome"], "completed")
        self.assertEqual(summary["done"], [1, 2, 0])
        self.assertEqual(summary["pending"], [])
        self.assertEqual(summary["first_error"]["index"], 1)
        self.assertEqual(summary["first_error"]["id"], jobs[0]["id"])

    def test_refusals_are_problem_documents_before_any_line(self):
        srv = self.start()
        conn, resp = self.stream(srv, {"jobs": ["0123456789abcdef0123456789abcdef"]})
        self.assertEqual(resp.status, 404)
        self.assertEqual(resp.getheader("Content-Type"), "application/problem+json")
        self.assertEqual(json.loads(resp.read())["code"], "not_found")
        conn.close()

    def test_a_client_that_leaves_mid_stream_does_not_hurt_the_server(self):
        srv = self.start()
        conn, resp = self.stream(srv, {"jobs": [{"kind": "sleep", "params": {"duration_ms": 50}},
                                                {"kind": "sleep", "params": {"duration_ms": 300}}]})
        self.assertEqual(resp.status, 200)
        first = json.loads(resp.readline())
        self.assertEqual(first["state"], "succeeded")
        conn.close()  # gone before the second job and the summary
        time.sleep(0.5)
        status, _, body = srv.json("GET", "/healthz")
        self.assertEqual((status, body), (200, {"status": "ok"}))
        res, _ = self.gather(srv, {"jobs": [{"kind": "sleep", "params": {"duration_ms": 1}}]})
        self.assertEqual(res["outcome"], "completed")
