"""The HTTP layer: validation and problem documents, limits, request ids and logs, auth,
keep-alive, slow clients and the connection cap."""

import http.client
import json
import re
import threading
import time
import unittest

from harness import GatherdTestCase, raw_connect, read_until_closed

GOOD = {"kind": "sleep", "params": {"duration_ms": 1}}


def sleep_with(**params):
    return {"kind": "sleep", "params": {"duration_ms": 1, **params}}


class Validation(GatherdTestCase):
    def setUp(self):
        self.srv = self.start("--max-retention-ms", "100000", "--default-retention-ms", "100000")

    def check_400(self, body, detail_contains=None, path="/v1/jobs", raw=False):
        headers = {"Content-Type": "application/json"}
        data = body if raw else json.dumps(body)
        resp = self.srv.json("POST", path, data, headers)
        return self.assertProblem(resp, 400, "invalid_request", detail_contains,
                                  msg=f"POST {path} {data!r}")

    def test_good_spec_is_accepted(self):
        # Guards the cases below: they differ from an accepted spec only in the bad part.
        full = {
            "kind": "sleep", "params": {"duration_ms": 1, "result": {"x": 1}, "cleanup_ms": 0},
            "timeout_ms": 5000, "attempt_timeout_ms": 1000,
            "retry": {"max_attempts": 3, "initial_backoff_ms": 100, "multiplier": 2.0,
                      "max_backoff_ms": 10000, "jitter": True},
            "idempotency_key": "order-42", "labels": {"tenant": "a"}, "retention_ms": 60000,
        }
        self.assertEqual(self.srv.json("POST", "/v1/jobs", full)[0], 202)
        self.assertEqual(self.srv.json("POST", "/v1/jobs", sleep_with(fail="x", fail_attempts=1))[0],
                         202)
        for params in ({"op": "primes", "n": 10}, {"op": "sha256", "data": "abc", "rounds": 1}):
            self.assertEqual(self.srv.json("POST", "/v1/jobs",
                                           {"kind": "compute", "params": params})[0], 202)

    def test_unknown_fields_are_named(self):
        cases = [
            ({**GOOD, "timeout": 5}, "timeout"),
            ({"kind": "sleep", "params": {"duration_ms": 1, "durration_ms": 5}}, "durration_ms"),
            ({**GOOD, "retry": {"max_attempt": 3}}, "max_attempt"),
            ({"kind": "compute", "params": {"op": "primes", "n": 5, "extra_param": 1}},
             "extra_param"),
            ({"kind": "compute", "params": {"op": "sha256", "data": "a", "rounds": 1,
                                            "salt_value": "x"}}, "salt_value"),
        ]
        for body, field in cases:
            with self.subTest(field=field):
                self.check_400(body, field)

    def test_wrong_types(self):
        cases = [
            ({"kind": 5}, "kind"),
            ({"kind": "sleep", "params": "x"}, "params"),
            (sleep_with(duration_ms="10"), "duration_ms"),
            (sleep_with(duration_ms=1.5), "duration_ms"),
            (sleep_with(duration_ms=None), "duration_ms"),
            ({**GOOD, "timeout_ms": True}, "timeout_ms"),
            ({**GOOD, "timeout_ms": "100"}, "timeout_ms"),
            ({**GOOD, "labels": {"a": 1}}, "labels"),
            ({**GOOD, "labels": ["a"]}, "labels"),
            ({**GOOD, "retry": "x"}, "retry"),
            ({**GOOD, "retry": {"jitter": "yes"}}, "jitter"),
            ({**GOOD, "retry": {"multiplier": "2"}}, "multiplier"),
            ({**GOOD, "retry": {"max_attempts": 2.5}}, "max_attempts"),
            ({**GOOD, "idempotency_key": 5}, "idempotency_key"),
            (sleep_with(fail=5), "fail"),
            (sleep_with(fail_attempts="2"), "fail_attempts"),
            (sleep_with(cleanup_ms=[1]), "cleanup_ms"),
            ({"kind": "compute", "params": {"op": "sha256", "data": 5, "rounds": 1}}, "data"),
            ({"kind": "compute", "params": {"op": "sha256", "data": "a", "rounds": 1.5}},
             "rounds"),
            ({"kind": "compute", "params": {"op": "primes", "n": "100"}}, None),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                self.check_400(body, field)

    def test_null_for_typed_fields_is_400(self):
        # The schema types these fields (object / integer); null is not one of them and must not
        # silently mean "absent".
        for body, field in [({**GOOD, "labels": None}, "labels"),
                            ({**GOOD, "retry": None}, "retry"),
                            ({**GOOD, "timeout_ms": None}, "timeout_ms"),
                            ({**GOOD, "retry": {"max_attempts": None}}, "max_attempts")]:
            with self.subTest(body=body):
                self.check_400(body, field)

    def test_out_of_range(self):
        cases = [
            (sleep_with(duration_ms=-1), "duration_ms"),
            (sleep_with(duration_ms=86400001), "duration_ms"),
            (sleep_with(cleanup_ms=-1), "cleanup_ms"),
            (sleep_with(fail_attempts=-1), "fail_attempts"),
            ({**GOOD, "timeout_ms": -1}, "timeout_ms"),
            ({**GOOD, "attempt_timeout_ms": -5}, "attempt_timeout_ms"),
            ({**GOOD, "retention_ms": -1}, "retention_ms"),
            ({**GOOD, "retention_ms": 100001}, "retention_ms"),
            ({**GOOD, "retry": {"max_attempts": 0}}, "max_attempts"),
            ({**GOOD, "retry": {"max_attempts": 101}}, "max_attempts"),
            ({**GOOD, "retry": {"multiplier": 0.5}}, "multiplier"),
            ({**GOOD, "retry": {"multiplier": 101}}, "multiplier"),
            ({**GOOD, "retry": {"initial_backoff_ms": -1}}, "initial_backoff_ms"),
            ({**GOOD, "retry": {"max_backoff_ms": 86400001}}, "max_backoff_ms"),
            ({"kind": "compute", "params": {"op": "primes", "n": -1}}, None),
            ({"kind": "compute", "params": {"op": "primes", "n": 10000000001}}, None),
            ({"kind": "compute", "params": {"op": "sha256", "data": "a", "rounds": 0}},
             "rounds"),
            ({"kind": "compute", "params": {"op": "sha256", "data": "a", "rounds": 1000000001}},
             "rounds"),
            ({**GOOD, "labels": {f"k{i}": "v" for i in range(33)}}, "labels"),
            ({**GOOD, "labels": {"k": "v" * 257}}, "labels"),
            ({**GOOD, "labels": {"k" * 257: "v"}}, "labels"),
            ({**GOOD, "idempotency_key": ""}, "idempotency_key"),
            ({**GOOD, "idempotency_key": "k" * 257}, "idempotency_key"),
        ]
        for body, field in cases:
            with self.subTest(body=str(body)[:120]):
                self.check_400(body, field)

    def test_edges_of_ranges_are_accepted(self):
        ok = [
            {**GOOD, "labels": {f"k{i}": "v" * 256 for i in range(32)}},
            {**GOOD, "retry": {"max_attempts": 100, "multiplier": 100, "initial_backoff_ms": 0}},
            {**GOOD, "retry": {"max_attempts": 1, "multiplier": 1}},
            {**GOOD, "retention_ms": 100000},
            sleep_with(duration_ms=0),
        ]
        for body in ok:
            with self.subTest(body=str(body)[:120]):
                status, _, resp = self.srv.json("POST", "/v1/jobs", body)
                self.assertEqual(status, 202, resp)

    def test_missing_or_unknown(self):
        self.check_400({}, "kind")
        self.check_400({"params": {"duration_ms": 1}}, "kind")
        self.check_400({"kind": "nope", "params": {}})
        self.check_400({"kind": "sleep"})
        self.check_400({"kind": "sleep", "params": {}}, "duration_ms")
        self.check_400({"kind": "compute", "params": {"n": 5}}, "op")
        self.check_400({"kind": "compute", "params": {"op": "md5", "data": "a"}}, "op")
        self.check_400({"kind": "compute", "params": {"op": "sha256", "rounds": 1}}, "data")
        self.check_400({"kind": "compute", "params": {"op": "primes"}})

    def test_invalid_json(self):
        for raw in ('{"kind":', "", "[]", '"sleep"', "null", '{"kind":"sleep",}', "{'kind':1}",
                    b'{"kind":"sl\xffeep"}'):
            with self.subTest(body=raw):
                self.check_400(raw, raw=True)

    def test_json_limits(self):
        def nested(depth):  # a sleep result `depth` arrays deep: the body is depth + 2 levels
            return ('{"kind":"sleep","params":{"duration_ms":1,"result":%s}}'
                    % ("[" * depth + "]" * depth))
        self.assertEqual(self.srv.json("POST", "/v1/jobs", nested(62),
                                       {"Content-Type": "application/json"})[0], 202)
        self.check_400(nested(63), "deeper than 64", raw=True)
        self.check_400('{"kind":"sleep","params":{"duration_ms":1,"result":1e400}}',
                       "out of range", raw=True)

    def test_batch_and_cancel_bodies_are_validated(self):
        self.check_400({"jobs": [GOOD, {**GOOD, "timeout": 1}]}, "timeout", path="/v1/jobs/batch")
        job = self.srv.submit({"kind": "sleep", "params": {"duration_ms": 5000}})
        self.check_400({"reasn": "x"}, "reasn", path=f"/v1/jobs/{job['id']}/cancel")
        self.check_400({"reason": 5}, "reason", path=f"/v1/jobs/{job['id']}/cancel")
        self.check_400({"reason": "r" * 1025}, "reason", path=f"/v1/jobs/{job['id']}/cancel")
        self.assertEqual(self.srv.get_job(job["id"])["cancel_requested"], False)
        self.assertEqual(self.srv.json("GET", "/v1/jobs")[2]["jobs"][0]["id"], job["id"])
        self.assertEqual(len(self.srv.json("GET", "/v1/jobs")[2]["jobs"]), 1)

    def test_wrong_content_type_is_415(self):
        for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
            with self.subTest(ctype=ctype):
                resp = self.srv.json("POST", "/v1/jobs", json.dumps(GOOD), {"Content-Type": ctype})
                self.assertProblem(resp, 415, "unsupported_media_type")
        resp = self.srv.json("POST", "/v1/jobs", json.dumps(GOOD).encode())  # no Content-Type
        self.assertProblem(resp, 415, "unsupported_media_type")
        status, _, body = self.srv.json("POST", "/v1/jobs", json.dumps(GOOD),
                                        {"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(status, 202, body)
        self.assertEqual(len(self.srv.json("GET", "/v1/jobs")[2]["jobs"]), 1)

    def test_sha256_rounds_defaults_to_1(self):
        job = self.srv.submit({"kind": "compute", "params": {"op": "sha256", "data": "abc"}})
        done = self.srv.wait_job(job["id"])
        self.assertEqual(done["result"]["hex"],
                         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")

    def test_chunked_body_is_accepted(self):
        conn = self.srv.connection()
        try:
            conn.request("POST", "/v1/jobs", body=iter([b'{"kind":"sleep",', b'"params":',
                                                        b'{"duration_ms":1}}']),
                         headers={"Content-Type": "application/json"}, encode_chunked=True)
            resp = conn.getresponse()
            body = resp.read()
            self.assertEqual(resp.status, 202, body)
        finally:
            conn.close()


class Limits(GatherdTestCase):
    def test_body_too_large_is_413(self):
        srv = self.start("--max-body-bytes", "1024")
        big = {"kind": "sleep", "params": {"duration_ms": 1, "result": "x" * 2000}}
        self.assertProblem(srv.json("POST", "/v1/jobs", big), 413, "payload_too_large")
        small = {"kind": "sleep", "params": {"duration_ms": 1, "result": "x" * 500}}
        self.assertEqual(srv.json("POST", "/v1/jobs", small)[0], 202)
        self.assertEqual(len(srv.json("GET", "/v1/jobs")[2]["jobs"]), 1)

    def test_chunked_body_too_large_is_413(self):
        srv = self.start("--max-body-bytes", "1024")
        conn = srv.connection()
        try:
            chunks = [b'{"kind":"sleep","params":{"duration_ms":1,"result":"'] + \
                     [b"x" * 100] * 20 + [b'"}}']
            conn.request("POST", "/v1/jobs", body=iter(chunks),
                         headers={"Content-Type": "application/json"}, encode_chunked=True)
            resp = conn.getresponse()
            body = resp.read()
            self.assertProblem((resp.status, resp.headers, body), 413, "payload_too_large")
        finally:
            conn.close()

    def test_headers_too_large_is_431(self):
        srv = self.start("--max-header-bytes", "1024")
        resp = srv.json("GET", "/healthz", headers={"X-Big": "a" * 2000})
        self.assertProblem(resp, 431, "headers_too_large")
        self.assertEqual(srv.json("GET", "/healthz", headers={"X-Small": "a" * 300})[0], 200)

    def test_default_header_limit_8k(self):
        srv = self.start()
        self.assertEqual(srv.json("GET", "/healthz", headers={"X-Big": "a" * 6000})[0], 200)
        self.assertProblem(srv.json("GET", "/healthz", headers={"X-Big": "a" * 9000}),
                           431, "headers_too_large")


class Routing(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_unknown_route_is_404(self):
        for path in ("/", "/v1", "/v1/nope", "/v2/jobs", "/v1/jobs/a/b/c", "/healthz/x"):
            with self.subTest(path=path):
                self.assertProblem(self.srv.json("GET", path), 404, "not_found")

    def test_wrong_method_is_405_with_allow(self):
        cases = [
            ("PUT", "/v1/jobs", {"GET", "POST"}),
            ("DELETE", "/v1/jobs", {"GET", "POST"}),
            ("PATCH", "/v1/jobs/abc", {"GET", "DELETE"}),
            ("GET", "/v1/jobs/abc/cancel", {"POST"}),
            ("POST", "/healthz", {"GET"}),
            ("DELETE", "/metrics", {"GET"}),
        ]
        for method, path, expected in cases:
            with self.subTest(method=method, path=path):
                resp = self.srv.json(method, path)
                self.assertProblem(resp, 405, "method_not_allowed")
                allow = {m.strip().upper() for m in (resp[1].get("Allow") or "").split(",")
                         if m.strip()}
                self.assertTrue(expected <= allow, f"Allow: {resp[1].get('Allow')!r}")
                self.assertNotIn(method, allow)


class RequestIdAndLogs(GatherdTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_request_id_echoed_and_logged(self):
        rid = "test-rid-0123.ABC_xyz"
        status, headers, job = self.srv.json("POST", "/v1/jobs", GOOD, {"X-Request-Id": rid})
        self.assertEqual(status, 202)
        self.assertEqual(headers.get("X-Request-Id"), rid)
        line = self.srv.wait_for_log(msg="http.request", request_id=rid)
        self.assertEqual(line.get("method"), "POST", line)
        self.assertEqual(line.get("route"), "/v1/jobs", line)
        self.assertEqual(line.get("status"), 202, line)
        self.assertIsInstance(line.get("duration_ms"), (int, float), line)
        self.assertGreaterEqual(line["duration_ms"], 0)
        self.assertRegex(str(line.get("remote")), r"^127\.0\.0\.1:\d+$", line)
        self.assertIn("ts", line)
        self.assertIn("level", line)

    def test_request_id_generated(self):
        s1, h1, _ = self.srv.request("GET", "/healthz")
        s2, h2, _ = self.srv.request("GET", "/healthz")
        r1, r2 = h1.get("X-Request-Id"), h2.get("X-Request-Id")
        self.assertTrue(r1, "no X-Request-Id generated")
        self.assertTrue(r2)
        self.assertNotEqual(r1, r2)
        line = self.srv.wait_for_log(msg="http.request", request_id=r1)
        self.assertEqual(line.get("status"), 200)

    def test_overlong_request_id_is_replaced(self):
        sent = "x" * 129
        _, headers, _ = self.srv.request("GET", "/healthz", headers={"X-Request-Id": sent})
        got = headers.get("X-Request-Id")
        self.assertTrue(got)
        self.assertNotEqual(got, sent)
        ok = "y" * 128
        _, headers, _ = self.srv.request("GET", "/healthz", headers={"X-Request-Id": ok})
        self.assertEqual(headers.get("X-Request-Id"), ok)

    def test_request_id_on_errors(self):
        resp = self.srv.json("GET", "/v1/nope", headers={"X-Request-Id": "err-1"})
        self.assertEqual(resp[0], 404)
        self.assertEqual(resp[1].get("X-Request-Id"), "err-1")
        line = self.srv.wait_for_log(msg="http.request", request_id="err-1")
        self.assertEqual(line.get("status"), 404)
        resp = self.srv.json("POST", "/v1/jobs", {"kind": 1}, {"X-Request-Id": "err-2"})
        self.assertEqual(resp[1].get("X-Request-Id"), "err-2")
        self.assertEqual(self.srv.wait_for_log(msg="http.request", request_id="err-2")["status"],
                         400)

    def test_route_is_the_template_not_the_path(self):
        job = self.srv.submit(GOOD)
        self.srv.request("GET", f"/v1/jobs/{job['id']}", headers={"X-Request-Id": "tmpl-1"})
        line = self.srv.wait_for_log(msg="http.request", request_id="tmpl-1")
        self.assertNotIn(job["id"], str(line.get("route")), line)
        self.assertEqual(line.get("method"), "GET")

    def test_job_transitions_logged(self):
        job = self.srv.submit({"kind": "sleep", "params": {"duration_ms": 10}})
        self.srv.wait_job(job["id"])
        for state in ("running", "succeeded"):
            line = self.srv.wait_for_log(job_id=job["id"], state=state)
            self.assertEqual(line.get("kind"), "sleep", line)

    def test_every_line_is_json(self):
        self.srv.submit(GOOD)
        self.srv.request("GET", "/v1/nope")
        self.srv.wait_for_log(msg="http.request", status=404)
        lines = [l for l in self.srv.raw_output().splitlines() if l.strip()]
        self.assertGreater(len(lines), 2)
        for raw in lines:
            obj = json.loads(raw)
            self.assertIsInstance(obj, dict)
            self.assertIn("msg", obj)


class Auth(GatherdTestCase):
    def check_auth(self, srv, good_tokens, bad_tokens):
        for headers in ({}, *({"Authorization": f"Bearer {t}"} for t in bad_tokens),
                        {"Authorization": f"Basic {good_tokens[0]}"}):
            with self.subTest(headers=headers):
                resp = srv.json("POST", "/v1/jobs", GOOD, headers)
                self.assertProblem(resp, 401, "unauthorized")
                self.assertTrue((resp[1].get("WWW-Authenticate") or "").startswith("Bearer"),
                                "401 without a Bearer WWW-Authenticate challenge")
                self.assertProblem(srv.json("GET", "/v1/jobs", headers=headers), 401,
                                   "unauthorized")
                self.assertProblem(srv.json("GET", "/v1/jobs/abc", headers=headers), 401,
                                   "unauthorized")
        for token in good_tokens:
            auth = {"Authorization": f"Bearer {token}"}
            status, _, job = srv.json("POST", "/v1/jobs", GOOD, auth)
            self.assertEqual(status, 202, job)
            self.assertEqual(srv.json("GET", f"/v1/jobs/{job['id']}", headers=auth)[0], 200)
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.yaml"):
            self.assertEqual(srv.request("GET", path)[0], 200, path)
        # Nothing was submitted by the refused requests.
        listing = srv.json("GET", "/v1/jobs",
                           headers={"Authorization": f"Bearer {good_tokens[0]}"})[2]
        self.assertEqual(len(listing["jobs"]), len(good_tokens))

    def test_api_token_flag(self):
        srv = self.start("--api-token", "secret")
        self.check_auth(srv, ["secret"], ["wrong", "secret2", "secre"])

    def test_api_token_repeatable(self):
        srv = self.start("--api-token", "one", "--api-token", "two")
        self.check_auth(srv, ["one", "two"], ["three"])

    def test_api_tokens_env(self):
        srv = self.start(env={"GATHERD_API_TOKENS": "alpha,beta"})
        self.check_auth(srv, ["alpha", "beta"], ["gamma", "alpha,beta"])

    def test_no_token_no_auth(self):
        srv = self.start()
        self.assertEqual(srv.json("POST", "/v1/jobs", GOOD)[0], 202)


class Connections(GatherdTestCase):
    def test_keep_alive_several_requests_one_connection(self):
        srv = self.start()
        conn = srv.connection()
        try:
            conn.connect()
            sock = conn.sock
            for method, path, body in [
                ("GET", "/healthz", None),
                ("POST", "/v1/jobs", GOOD),
                ("GET", "/v1/jobs", None),
                ("GET", "/v1/nope", None),
                ("POST", "/v1/jobs", {"kind": 1}),
                ("GET", "/metrics", None),
                ("GET", "/readyz", None),
            ]:
                status, _, _ = srv.request(method, path, body, conn=conn)
                self.assertLess(status, 500, (method, path))
                self.assertIs(conn.sock, sock, f"connection was closed after {method} {path}")
        finally:
            conn.close()

    def test_pipelined_requests_answered_in_order(self):
        srv = self.start()
        s = raw_connect(srv)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: p1\r\n\r\n"
                      b"GET /v1/nope HTTP/1.1\r\nHost: x\r\nX-Request-Id: p2\r\n\r\n"
                      b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Request-Id: p3\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 5
            while data.count(b"HTTP/1.1 ") < 3 and time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
            statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
            ids = re.findall(rb"(?im)^x-request-id: *(\S+)\r$", data)
            self.assertEqual(statuses, [b"200", b"404", b"200"], data)
            self.assertEqual(ids, [b"p1", b"p2", b"p3"], data)
        finally:
            s.close()

    def test_slow_client_dropped_after_header_timeout(self):
        srv = self.start("--header-timeout-ms", "500")
        s = raw_connect(srv)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Half: ")
            closed, data, secs = read_until_closed(s, timeout=5)
            self.assertTrue(closed, "slow client was not dropped within 5 s")
            self.assertGreaterEqual(secs, 0.3, "dropped before the header timeout")
            self.assertNotIn(b"200 OK", data)
        finally:
            s.close()
        # The server still serves others.
        self.assertEqual(srv.request("GET", "/healthz")[0], 200)

    def test_idle_connection_dropped_after_header_timeout(self):
        srv = self.start("--header-timeout-ms", "500")
        s = raw_connect(srv)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.1)
            # First response arrives; then the idle keep-alive connection is dropped.
            closed, data, secs = read_until_closed(s, timeout=5)
            self.assertTrue(closed, "idle connection was not dropped within 5 s")
            self.assertIn(b" 200 ", data.split(b"\r\n", 1)[0])
            self.assertGreaterEqual(secs, 0.2)
        finally:
            s.close()

    def test_header_within_timeout_is_served(self):
        srv = self.start("--header-timeout-ms", "1000")
        s = raw_connect(srv)
        try:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            time.sleep(0.3)
            s.sendall(b"\r\n")
            data = s.recv(4096)
            self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)
        finally:
            s.close()

    def test_max_connections(self):
        srv = self.start("--max-connections", "2")
        held = []
        try:
            for _ in range(2):
                c = srv.connection()
                self.assertEqual(srv.request("GET", "/healthz", conn=c)[0], 200)
                held.append(c)
            third = raw_connect(srv)
            try:
                try:
                    third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                except OSError:
                    pass
                closed, data, _ = read_until_closed(third, timeout=3)
                self.assertTrue(closed, "third connection was neither closed nor refused")
                self.assertFalse(data.startswith(b"HTTP/1.1 200"), data)
            finally:
                third.close()
            # The held connections still work.
            for c in held:
                self.assertEqual(srv.request("GET", "/healthz", conn=c)[0], 200)
            # Freeing one makes room again.
            held.pop().close()
            deadline = time.monotonic() + 3
            while True:
                try:
                    if srv.request("GET", "/healthz", timeout=2)[0] == 200:
                        break
                except (OSError, http.client.HTTPException):
                    pass
                self.assertLess(time.monotonic(), deadline, "connection slot was not released")
                time.sleep(0.05)
        finally:
            for c in held:
                c.close()

    def test_concurrent_clients(self):
        srv = self.start()
        errors = []

        def worker():
            try:
                for _ in range(20):
                    status, _, job = srv.json("POST", "/v1/jobs", GOOD)
                    if status != 202:
                        errors.append(status)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        self.assertEqual(errors, [])
        listing = srv.json("GET", "/v1/jobs?limit=1000")[2]
        self.assertEqual(len(listing["jobs"]), 160)


if __name__ == "__main__":
    unittest.main()
