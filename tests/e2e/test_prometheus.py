"""End to end: a real Prometheus (Debian package) scrapes gatherd; promtool checks /metrics.

Run: GATHERD_BIN=build/release/service/gatherd /usr/bin/python3 -m unittest discover -s tests/e2e -v
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from harness import GatherdTestCase  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SCRAPE_DEADLINE_S = 40


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@unittest.skipUnless(os.access(PROMETHEUS, os.X_OK),
                     f"{PROMETHEUS} is missing: apt-get install prometheus")
class PrometheusScrape(GatherdTestCase):
    def test_promtool_check_metrics(self):
        srv = self.start()
        job = srv.submit({"kind": "sleep", "params": {"duration_ms": 1}})
        srv.wait_job(job["id"])
        srv.request("GET", "/v1/nope")
        body = srv.metrics()
        res = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(res.returncode, 0,
                         f"promtool check metrics failed:\n{res.stdout}\n{res.stderr}")

    def test_prometheus_scrapes_gatherd(self):
        srv = self.start()
        tmp = tempfile.TemporaryDirectory(prefix="gatherd-prom-")
        self.addCleanup(tmp.cleanup)
        config = os.path.join(tmp.name, "prometheus.yml")
        with open(config, "w") as f:
            f.write(
                "global:\n"
                "  scrape_interval: 1s\n"
                "  evaluation_interval: 1s\n"
                "scrape_configs:\n"
                "  - job_name: gatherd\n"
                "    scrape_interval: 1s\n"
                "    scrape_timeout: 1s\n"
                "    static_configs:\n"
                f"      - targets: ['127.0.0.1:{srv.port}']\n")
        prom_port = free_port()
        prom_log = open(os.path.join(tmp.name, "prometheus.log"), "wb")
        self.addCleanup(prom_log.close)
        prom = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}",
             f"--storage.tsdb.path={os.path.join(tmp.name, 'data')}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            stdout=prom_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

        def stop_prometheus():
            if prom.poll() is None:
                prom.terminate()
                try:
                    prom.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    prom.kill()
                    prom.wait()
        self.addCleanup(stop_prometheus)

        for _ in range(3):
            srv.submit({"kind": "sleep", "params": {"duration_ms": 10}})
        srv.submit({"kind": "compute", "params": {"op": "primes", "n": 1000}})

        def query(expr):
            url = (f"http://127.0.0.1:{prom_port}/api/v1/query?" +
                   urllib.parse.urlencode({"query": expr}))
            with urllib.request.urlopen(url, timeout=5) as resp:
                doc = json.load(resp)
            if doc.get("status") != "success":
                return None
            result = doc["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        up = submitted = None
        deadline = time.monotonic() + SCRAPE_DEADLINE_S
        while time.monotonic() < deadline:
            self.assertIsNone(prom.poll(), "prometheus exited: see its log in the temp dir")
            try:
                up = query('up{job="gatherd"}')
                submitted = query('sum(gatherd_jobs_submitted_total{job="gatherd"})')
            except (urllib.error.URLError, OSError, ValueError):
                pass  # not listening yet
            if up == 1 and submitted is not None and submitted >= 4:
                break
            time.sleep(0.5)
        with open(os.path.join(tmp.name, "prometheus.log"), "rb") as f:
            log = f.read().decode(errors="replace")
        self.assertEqual(up, 1, f"up{{job=\"gatherd\"}} = {up}\n{log[-3000:]}")
        self.assertIsNotNone(submitted, "gatherd_jobs_submitted_total never scraped")
        self.assertGreaterEqual(submitted, 4)
        self.assertIsNotNone(query('process_resident_memory_bytes{job="gatherd"}'))


if __name__ == "__main__":
    unittest.main()
