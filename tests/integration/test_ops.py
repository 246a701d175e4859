"""Operations: health, readiness, metrics, the served contract, --help and configuration."""

import re
import subprocess
import unittest

import yaml

from harness import (CONFIGURATION_PATH, DECISIONS_PATH, OPENAPI_PATH, GatherdTestCase, child_env, gatherd_bin,
                     metric_sum)

SLEEP = {"kind": "sleep", "params": {"duration_ms": 1}}


def decision_flags():
    """Every `--flag` in the flag table of docs/configuration.md plus the documented basics."""
    flags = set(re.findall(r"^\|\s*`(--[a-z0-9-]+)`", CONFIGURATION_PATH.read_text(), re.M))
    flags |= {"--port", "--max-running", "--max-queued",
              "--shutdown-grace-ms", "--drain-ms", "--api-token", "--log-level", "--log-format"}
    return flags


class Health(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_healthz(self):
        status, headers, body = self.srv.json("GET", "/healthz")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ok"})
        self.assertEqual(headers.get("Content-Type", "").split(";")[0], "application/json")

    def test_readyz(self):
        status, _, body = self.srv.json("GET", "/readyz")
        self.assertEqual(status, 200)
        self.assertEqual(body, {"status": "ready"})


class Metrics(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_metrics_names_and_values(self):
        before = self.srv.metrics()
        submitted0 = metric_sum(before, "gatherd_jobs_submitted_total") or 0.0
        jobs = [self.srv.submit(SLEEP) for _ in range(3)]
        for job in jobs:
            self.srv.wait_job(job["id"])
        self.srv.request("GET", "/v1/nope")
        status, headers, payload = self.srv.request("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(headers.get("Content-Type", "").startswith("text/plain"),
                        headers.get("Content-Type"))
        text = payload.decode()
        for name in ("gatherd_http_requests_total", "gatherd_jobs_submitted_total",
                     "process_resident_memory_bytes"):
            self.assertIsNotNone(metric_sum(text, name), f"{name} missing from /metrics")
        self.assertEqual(metric_sum(text, "gatherd_jobs_submitted_total") - submitted0, 3)
        self.assertGreaterEqual(metric_sum(text, "gatherd_http_requests_total"), 5)
        self.assertGreater(metric_sum(text, "process_resident_memory_bytes"), 1e6)
        self.assertRegex(text, r"(?m)^# TYPE gatherd_http_requests_total counter$")
        self.assertRegex(text, r"(?m)^# TYPE gatherd_jobs_submitted_total counter$")

    def test_no_unbounded_labels(self):
        job = self.srv.submit({**SLEEP, "labels": {"tenant": "label-value-secret-xyz"}})
        self.srv.wait_job(job["id"])
        self.srv.request("GET", f"/v1/jobs/{job['id']}")
        self.srv.request("GET", "/v1/unlisted-path-abcdef")
        text = self.srv.metrics()
        self.assertNotIn(job["id"], text)
        self.assertNotIn("label-value-secret-xyz", text)
        self.assertNotIn("unlisted-path-abcdef", text)

    def test_metric_names_follow_conventions(self):
        text = self.srv.metrics()
        types = dict(re.findall(r"(?m)^# TYPE (\S+) (\S+)$", text))
        self.assertTrue(types)
        for name, kind in types.items():
            with self.subTest(metric=name):
                self.assertTrue(name.startswith("gatherd_") or name.startswith("process_"), name)
                if kind == "counter":
                    self.assertTrue(name.endswith("_total"), name)


class Contract(GatherdTestCase):
    def test_openapi_served_equals_file(self):
        srv = self.start()
        status, headers, payload = srv.request("GET", "/openapi.yaml")
        self.assertEqual(status, 200)
        self.assertIn("yaml", headers.get("Content-Type", ""))
        served = yaml.safe_load(payload)
        self.assertEqual(served, yaml.safe_load(OPENAPI_PATH.read_text()))
        self.assertTrue(str(served.get("openapi", "")).startswith("3.1"), served.get("openapi"))


class CommandLine(GatherdTestCase):
    def test_help_lists_every_flag(self):
        res = subprocess.run([gatherd_bin(), "--help"], capture_output=True, text=True,
                             timeout=10, env=child_env())
        self.assertEqual(res.returncode, 0, res.stderr)
        text = res.stdout + res.stderr
        flags = decision_flags()
        self.assertGreaterEqual(len(flags), 20, "could not read the flag table of docs/configuration.md")
        missing = sorted(f for f in flags if not re.search(re.escape(f) + r"(?![a-z0-9-])", text))
        self.assertEqual(missing, [], f"--help does not list these flags:\n{text}")

    def test_unknown_flag_fails(self):
        res = subprocess.run([gatherd_bin(), "--no-such-flag"], capture_output=True, text=True,
                             timeout=10, env=child_env())
        self.assertNotEqual(res.returncode, 0)

    def test_print_routes_exits_0(self):
        res = subprocess.run([gatherd_bin(), "--print-routes"], capture_output=True, text=True,
                             timeout=10, env=child_env())
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("POST /v1/jobs", res.stdout.splitlines())


class EnvironmentConfig(GatherdTestCase):
    def fill(self, srv, n):
        ids = [srv.submit({"kind": "sleep", "params": {"duration_ms": 5000}})["id"]
               for _ in range(n)]
        srv.wait_job(ids[0], "running")
        return ids

    def test_env_max_running_and_queued(self):
        srv = self.start(env={"GATHERD_MAX_RUNNING": "1", "GATHERD_MAX_QUEUED": "1"})
        self.fill(srv, 2)
        self.assertProblem(srv.json("POST", "/v1/jobs", SLEEP), 429, "queue_full")

    def test_flag_wins_over_env(self):
        srv = self.start("--max-queued", "3",
                         env={"GATHERD_MAX_RUNNING": "1", "GATHERD_MAX_QUEUED": "1"})
        self.fill(srv, 4)
        self.assertProblem(srv.json("POST", "/v1/jobs", SLEEP), 429, "queue_full")

    def test_env_max_batch_and_body(self):
        srv = self.start(env={"GATHERD_MAX_BATCH": "2", "GATHERD_MAX_BODY_BYTES": "2048"})
        self.assertProblem(srv.json("POST", "/v1/jobs/batch", {"jobs": [SLEEP] * 3}), 400,
                           "invalid_request")
        self.assertEqual(srv.json("POST", "/v1/jobs/batch", {"jobs": [SLEEP] * 2})[0], 202)
        big = {"kind": "sleep", "params": {"duration_ms": 1, "result": "x" * 3000}}
        self.assertProblem(srv.json("POST", "/v1/jobs", big), 413, "payload_too_large")

    def test_env_default_retention(self):
        srv = self.start(env={"GATHERD_DEFAULT_RETENTION_MS": "100"})
        job = srv.submit(SLEEP)
        srv.wait_job(job["id"])
        srv.wait_gone(job["id"], timeout=3)

    def test_env_log_format_text_is_overridden_by_flag(self):
        # The harness passes --log-format json; the flag must win, so start-up still works.
        srv = self.start(env={"GATHERD_LOG_FORMAT": "text"})
        self.assertEqual(srv.request("GET", "/healthz")[0], 200)


if __name__ == "__main__":
    unittest.main()
