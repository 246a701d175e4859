"""Named coordination primitives over HTTP: semaphores, locks, events, barriers and queues.

The contract is proto/openapi.yaml and docs/DECISIONS.md ("Named primitives"): routes, bodies,
errors, metrics. Every test runs the real binary on port 0
through the harness; waiters are real HTTP long-polls on their own connections, in threads.

Flags used: `--max-waiters 2` (429 too_many_waiters), `--max-primitives 3` (429
too_many_primitives); everything else runs with the defaults.

The last class is the issue's concurrency test: 20 client threads increment, 10 times each, a
counter kept in a file outside gatherd (read, sleep ~5 ms, write) under a gatherd lock: exactly
200; and the same without the lock loses updates.
"""

import json
import os
import re
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone

from harness import TIMESTAMP_RE, GatherdTestCase, metric_sum, metric_value, raw_connect, scaled

SEM_STATE = {"name", "permits", "available", "holders", "waiters"}
HOLDER_FIELDS = {"holder", "permit_id", "fencing_token", "count", "expires_at"}
PERMIT_FIELDS = {"permit_id", "fencing_token", "count", "expires_at"}
RELEASE_FIELDS = {"permit_id", "count"}
EVENT_STATE = {"name", "set", "waiters"}
BARRIER_STATE = {"name", "parties", "waiting", "generation"}
BARRIER_PASS = {"generation", "arrival"}
QUEUE_STATS = {"name", "maxsize", "size", "leased", "unfinished", "put_waiters", "get_waiters",
               "max_bytes", "bytes"}
QUEUE_MAX_BYTES = 67108864   # --queue-max-bytes default
PRIMITIVE_TYPES = {"semaphore", "lock", "event", "barrier", "queue"}

DISCONNECT_DEADLINE_S = 2.0  # a client that leaves stops being a waiter within this
LONG_WAIT_MS = 10000         # long-polls that the test ends itself, well before this


def parse_ts(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


class Call:
    """One HTTP call running in its own thread (a long-poll); remembers when it returned."""

    def __init__(self, fn, *args, **kwargs):
        self.result = None
        self.error = None
        self.t_start = time.monotonic()
        self.t_done = None
        self.thread = threading.Thread(target=self._run, args=(fn, args, kwargs), daemon=True)
        self.thread.start()

    def _run(self, fn, args, kwargs):
        try:
            self.result = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in wait()
            self.error = e
        finally:
            self.t_done = time.monotonic()

    def done(self):
        return not self.thread.is_alive()

    def wait(self, timeout=5.0):
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError(f"call still waiting after {timeout}s")
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def elapsed(self):
        return None if self.t_done is None else self.t_done - self.t_start


class PrimTestCase(GatherdTestCase):
    # ------------------------------------------------------------------ plumbing
    def call(self, srv, method, path, body=None, headers=None, timeout=None):
        """srv.json with a socket timeout that outlasts any wait_ms in the body or query."""
        if timeout is None:
            wait = 0
            if isinstance(body, dict) and isinstance(body.get("wait_ms"), int):
                wait = body["wait_ms"]
            m = re.search(r"[?&]wait_ms=(\d+)", path)
            if m:
                wait = int(m.group(1))
            timeout = max(wait, 0) / 1000 + 10.0
        return srv.json(method, path, body, headers, timeout=timeout)

    def bg(self, srv, method, path, body=None, headers=None, timeout=None):
        """The same call in a background thread; the test joins it (Call.wait)."""
        # Daemon threads, not joined at cleanup: a failed test must not wait out their long-polls
        # (the server's SIGTERM at teardown ends them).
        return Call(self.call, srv, method, path, body, headers, timeout)

    def ok(self, resp, status=200, msg=""):
        got, _, body = resp
        self.assertEqual(got, status, f"{msg} -> {got} {body}")
        return body

    def wait_until(self, fn, timeout=3.0, msg="condition", interval=0.02):
        deadline = time.monotonic() + timeout
        while True:
            value = fn()
            if value:
                return value
            if time.monotonic() >= deadline:
                self.fail(f"{msg}: not true within {timeout}s (last: {value!r})")
            time.sleep(interval)

    def metric(self, srv, name, **labels):
        return metric_value(srv.metrics(), name, **labels) or 0.0

    # ------------------------------------------------------------------ semaphores and locks
    def put_sem(self, srv, name, permits):
        body = self.ok(self.call(srv, "PUT", f"/v1/semaphores/{name}", {"permits": permits}),
                       msg=f"PUT semaphore {name}")
        self.assertSemState(body, name, permits)
        return body

    def state(self, srv, kind, name):
        return self.ok(self.call(srv, "GET", f"/v1/{kind}/{name}"), msg=f"GET {kind}/{name}")

    def acquire(self, srv, kind, name, holder, expect=200, **fields):
        resp = self.call(srv, "POST", f"/v1/{kind}/{name}/acquire", {"holder": holder, **fields})
        if expect == 200:
            permit = self.ok(resp, msg=f"acquire {kind}/{name} by {holder}")
            self.assertPermit(permit)
            return permit
        return resp

    def release(self, srv, kind, name, permit_id, expect_count=0):
        body = self.ok(self.call(srv, "POST", f"/v1/{kind}/{name}/release", {"permit_id": permit_id}),
                       msg=f"release {kind}/{name}")
        self.assertEqual(set(body), RELEASE_FIELDS, body)
        self.assertEqual(body["permit_id"], permit_id)
        self.assertEqual(body["count"], expect_count, body)
        return body

    def bg_acquire(self, srv, kind, name, holder, **fields):
        return self.bg(srv, "POST", f"/v1/{kind}/{name}/acquire", {"holder": holder, **fields})

    def wait_waiters(self, srv, kind, name, n, timeout=3.0):
        self.wait_until(lambda: self.state(srv, kind, name)["waiters"] == n, timeout,
                        f"{kind}/{name} has {n} waiters")

    def assertSemState(self, state, name, permits):
        self.assertEqual(set(state), SEM_STATE, state)
        self.assertEqual(state["name"], name)
        self.assertEqual(state["permits"], permits, state)
        self.assertIsInstance(state["available"], int)
        self.assertIsInstance(state["waiters"], int)
        self.assertIsInstance(state["holders"], list)
        for h in state["holders"]:
            self.assertEqual(set(h), HOLDER_FIELDS, h)
            self.assertRegex(h["expires_at"], TIMESTAMP_RE)

    def assertPermit(self, permit):
        self.assertEqual(set(permit), PERMIT_FIELDS, permit)
        self.assertIsInstance(permit["permit_id"], str)
        self.assertTrue(permit["permit_id"])
        self.assertIsInstance(permit["fencing_token"], int)
        self.assertIsInstance(permit["count"], int)
        self.assertGreaterEqual(permit["count"], 1)
        self.assertRegex(permit["expires_at"], TIMESTAMP_RE)


# ====================================================================== 1. semaphores
class Semaphores(PrimTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_404_before_put(self):
        srv = self.srv
        cases = [
            ("GET", "/v1/semaphores/s", None),
            ("POST", "/v1/semaphores/s/acquire", {"holder": "a"}),
            ("POST", "/v1/semaphores/s/acquire", {"holder": "a", "wait_ms": 2000}),
            ("DELETE", "/v1/semaphores/s", None),
        ]
        for method, path, body in cases:
            with self.subTest(method=method, path=path, body=body):
                t0 = time.monotonic()
                self.assertProblem(self.call(srv, method, path, body), 404, "not_found")
                self.assertLess(time.monotonic() - t0, 1.0, "a 404 should not wait")
        # release / keepalive of a permit of a semaphore that does not exist: the spec gives 409
        # not_held for an unknown permit and 404 for a semaphore never PUT; either is a refusal.
        for path, body in (("/v1/semaphores/s/release", {"permit_id": "nope"}),
                           ("/v1/semaphores/s/keepalive", {"permit_id": "nope", "ttl_ms": 1000})):
            with self.subTest(path=path):
                resp = self.call(srv, "POST", path, body)
                self.assertIn(resp[0], (404, 409), resp)
                self.assertProblem(resp, resp[0], "not_found" if resp[0] == 404 else "not_held")
        self.assertEqual(metric_sum(srv.metrics(), "gatherd_primitives") or 0, 0,
                         "a call on a missing semaphore created one")

    def test_create_inspect_acquire_release_delete(self):
        srv = self.srv
        state = self.put_sem(srv, "s1", 2)
        self.assertEqual((state["available"], state["holders"], state["waiters"]), (2, [], 0))
        self.assertEqual(self.state(srv, "semaphores", "s1"), state)

        t_wall = time.time()
        p1 = self.acquire(srv, "semaphores", "s1", "w1", ttl_ms=60000)
        self.assertEqual(p1["count"], 1)
        self.assertAlmostEqual(parse_ts(p1["expires_at"]), t_wall + 60, delta=5,
                               msg=f"expires_at is not now + ttl_ms: {p1}")
        state = self.state(srv, "semaphores", "s1")
        self.assertSemState(state, "s1", 2)
        self.assertEqual(state["available"], 1)
        self.assertEqual(len(state["holders"]), 1)
        h = state["holders"][0]
        self.assertEqual((h["holder"], h["permit_id"], h["fencing_token"], h["count"]),
                         ("w1", p1["permit_id"], p1["fencing_token"], 1))

        p2 = self.acquire(srv, "semaphores", "s1", "w2")  # defaults: wait_ms 0, ttl_ms 30000
        self.assertNotEqual(p2["permit_id"], p1["permit_id"])
        self.assertAlmostEqual(parse_ts(p2["expires_at"]), time.time() + 30, delta=5, msg=p2)
        self.assertEqual(self.state(srv, "semaphores", "s1")["available"], 0)
        # Full: wait_ms 0 (the default) answers 408 at once.
        t0 = time.monotonic()
        self.assertProblem(self.acquire(srv, "semaphores", "s1", "w3", expect=408), 408,
                           "acquire_timeout")
        self.assertLess(time.monotonic() - t0, 1.0)

        self.release(srv, "semaphores", "s1", p1["permit_id"])
        state = self.state(srv, "semaphores", "s1")
        self.assertEqual(state["available"], 1)
        self.assertEqual([h["permit_id"] for h in state["holders"]], [p2["permit_id"]])
        self.release(srv, "semaphores", "s1", p2["permit_id"])
        self.assertEqual(self.state(srv, "semaphores", "s1")["available"], 2)

        status, _, body = self.call(srv, "DELETE", "/v1/semaphores/s1")
        self.assertEqual(status, 204, body)
        self.assertIsNone(body)
        self.assertProblem(self.call(srv, "GET", "/v1/semaphores/s1"), 404, "not_found")
        self.assertProblem(self.call(srv, "DELETE", "/v1/semaphores/s1"), 404, "not_found")

    def test_put_changes_the_permit_count_and_serves_waiters(self):
        srv = self.srv
        self.put_sem(srv, "s", 1)
        self.acquire(srv, "semaphores", "s", "a")
        waiter = self.bg_acquire(srv, "semaphores", "s", "b", wait_ms=LONG_WAIT_MS)
        self.wait_waiters(srv, "semaphores", "s", 1)
        state = self.put_sem(srv, "s", 2)  # one more permit: the waiter gets it
        status, _, permit = waiter.wait(5)
        self.assertEqual(status, 200, permit)
        self.assertLess(waiter.elapsed, 5.0)
        state = self.state(srv, "semaphores", "s")
        self.assertEqual((state["permits"], state["available"], state["waiters"]), (2, 0, 0), state)
        self.assertEqual(sorted(h["holder"] for h in state["holders"]), ["a", "b"])
        state = self.put_sem(srv, "s", 5)
        self.assertEqual(state["available"], 3, state)

    def test_fifo_order_of_waiters(self):
        srv = self.srv
        self.put_sem(srv, "fifo", 1)
        first = self.acquire(srv, "semaphores", "fifo", "holder")
        names = [f"w{i}" for i in range(6)]
        granted = []
        lock = threading.Lock()

        def waiter(holder):
            resp = self.call(srv, "POST", "/v1/semaphores/fifo/acquire",
                             {"holder": holder, "wait_ms": LONG_WAIT_MS})
            with lock:
                granted.append((holder, resp))
            return resp

        calls = []
        for i, holder in enumerate(names):
            calls.append(Call(waiter, holder))
            # Park them one by one so the arrival order is known.
            self.wait_waiters(srv, "semaphores", "fifo", i + 1)

        tokens = [first["fencing_token"]]
        current = first["permit_id"]
        for i, holder in enumerate(names):
            self.release(srv, "semaphores", "fifo", current)
            self.wait_until(lambda: len(granted) > i, 5, f"grant #{i + 1}")
            with lock:
                got_holder, (status, _, permit) = granted[i]
            self.assertEqual(status, 200, permit)
            self.assertEqual(got_holder, holder, f"grant #{i + 1} went to {got_holder}, not in FIFO order")
            self.assertPermit(permit)
            tokens.append(permit["fencing_token"])
            current = permit["permit_id"]
            state = self.state(srv, "semaphores", "fifo")
            self.assertEqual([h["holder"] for h in state["holders"]], [holder])
            self.assertEqual(state["waiters"], len(names) - i - 1)
        self.release(srv, "semaphores", "fifo", current)
        for c in calls:
            c.wait(5)
        self.assertEqual(tokens, sorted(set(tokens)), f"fencing tokens not strictly increasing: {tokens}")

    def test_fencing_tokens_strictly_increase(self):
        srv = self.srv
        self.put_sem(srv, "fence", 3)
        tokens = []
        held = []
        for round_ in range(4):
            for i in range(3):
                p = self.acquire(srv, "semaphores", "fence", f"h{round_}-{i}")
                tokens.append(p["fencing_token"])
                held.append(p["permit_id"])
            for pid in held:
                self.release(srv, "semaphores", "fence", pid)
            held.clear()
        self.assertEqual(len(tokens), 12)
        for a, b in zip(tokens, tokens[1:]):
            self.assertLess(a, b, f"fencing tokens not strictly increasing: {tokens}")
        # A token handed out after a lease expired is still larger.
        p = self.acquire(srv, "semaphores", "fence", "short", ttl_ms=100)
        self.assertGreater(p["fencing_token"], tokens[-1])
        time.sleep(0.3)
        q = self.acquire(srv, "semaphores", "fence", "after")
        self.assertGreater(q["fencing_token"], p["fencing_token"])

    def test_not_held_409(self):
        srv = self.srv
        self.put_sem(srv, "nh", 1)
        p = self.acquire(srv, "semaphores", "nh", "a")
        self.release(srv, "semaphores", "nh", p["permit_id"])
        # over-release
        self.assertProblem(self.call(srv, "POST", "/v1/semaphores/nh/release",
                                     {"permit_id": p["permit_id"]}), 409, "not_held")
        # unknown
        self.assertProblem(self.call(srv, "POST", "/v1/semaphores/nh/release",
                                     {"permit_id": "no-such-permit"}), 409, "not_held")
        self.assertProblem(self.call(srv, "POST", "/v1/semaphores/nh/keepalive",
                                     {"permit_id": "no-such-permit", "ttl_ms": 1000}), 409, "not_held")
        # expired
        e = self.acquire(srv, "semaphores", "nh", "b", ttl_ms=150)
        time.sleep(0.5)
        self.assertProblem(self.call(srv, "POST", "/v1/semaphores/nh/keepalive",
                                     {"permit_id": e["permit_id"], "ttl_ms": 5000}), 409, "not_held")
        self.assertProblem(self.call(srv, "POST", "/v1/semaphores/nh/release",
                                     {"permit_id": e["permit_id"]}), 409, "not_held")
        state = self.state(srv, "semaphores", "nh")
        self.assertEqual((state["available"], state["holders"]), (1, []), state)
        # a permit of another semaphore is not held here
        self.put_sem(srv, "other", 1)
        o = self.acquire(srv, "semaphores", "other", "c")
        self.assertProblem(self.call(srv, "POST", "/v1/semaphores/nh/release",
                                     {"permit_id": o["permit_id"]}), 409, "not_held")
        self.release(srv, "semaphores", "other", o["permit_id"])

    def test_keepalive_extends_the_lease(self):
        srv = self.srv
        self.put_sem(srv, "ka", 1)
        ttl_ms = round(scaled(0.4) * 1000)  # longer when the build is slow (TSan)
        p = self.acquire(srv, "semaphores", "ka", "a", ttl_ms=ttl_ms)
        last_expiry = parse_ts(p["expires_at"])
        for _ in range(4):  # 1.2 s in all, three times the original lease
            time.sleep(scaled(0.3))
            k = self.ok(self.call(srv, "POST", "/v1/semaphores/ka/keepalive",
                                  {"permit_id": p["permit_id"], "ttl_ms": ttl_ms}))
            self.assertPermit(k)
            self.assertEqual((k["permit_id"], k["fencing_token"], k["count"]),
                             (p["permit_id"], p["fencing_token"], 1))
            self.assertGreater(parse_ts(k["expires_at"]), last_expiry)
            last_expiry = parse_ts(k["expires_at"])
        state = self.state(srv, "semaphores", "ka")
        self.assertEqual([h["permit_id"] for h in state["holders"]], [p["permit_id"]])
        k = self.ok(self.call(srv, "POST", "/v1/semaphores/ka/keepalive",
                              {"permit_id": p["permit_id"], "ttl_ms": 60000}))
        self.assertAlmostEqual(parse_ts(k["expires_at"]), time.time() + 60, delta=5)
        self.release(srv, "semaphores", "ka", p["permit_id"])

    def test_lease_expiry_hands_the_permit_to_the_next_waiter(self):
        srv = self.srv
        self.put_sem(srv, "lease", 1)
        expiries0 = self.metric(srv, "gatherd_primitive_lease_expiries_total")
        t0 = time.monotonic()  # before the grant: its lease ends 400 ms after t0 at the earliest
        a = self.acquire(srv, "semaphores", "lease", "crashed", ttl_ms=400)
        waiter = self.bg_acquire(srv, "semaphores", "lease", "next", wait_ms=LONG_WAIT_MS)
        status, _, b = waiter.wait(5)
        waited = time.monotonic() - t0
        self.assertEqual(status, 200, b)
        self.assertPermit(b)
        self.assertGreaterEqual(waited, 0.38, "granted before the lease ended")
        self.assertLess(waited, scaled(2.5), "the expired lease did not hand the permit on")
        self.assertGreater(b["fencing_token"], a["fencing_token"])
        self.assertProblem(self.call(srv, "POST", "/v1/semaphores/lease/release",
                                     {"permit_id": a["permit_id"]}), 409, "not_held")
        state = self.state(srv, "semaphores", "lease")
        self.assertEqual([h["holder"] for h in state["holders"]], ["next"])
        self.assertEqual(self.metric(srv, "gatherd_primitive_lease_expiries_total") - expiries0, 1)
        self.release(srv, "semaphores", "lease", b["permit_id"])

    def test_acquire_timeout_408(self):
        srv = self.srv
        self.put_sem(srv, "busy", 1)
        p = self.acquire(srv, "semaphores", "busy", "a")
        t0 = time.monotonic()
        resp = self.acquire(srv, "semaphores", "busy", "b", expect=408, wait_ms=300)
        elapsed = time.monotonic() - t0
        self.assertProblem(resp, 408, "acquire_timeout")
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 2.5)
        state = self.state(srv, "semaphores", "busy")
        self.assertEqual(state["waiters"], 0, "a timed-out waiter stayed in line")
        self.assertEqual([h["permit_id"] for h in state["holders"]], [p["permit_id"]])
        self.release(srv, "semaphores", "busy", p["permit_id"])
        self.assertEqual(self.state(srv, "semaphores", "busy")["available"], 1,
                         "the permit went to a waiter that had timed out")

    def test_delete_wakes_waiters_with_408(self):
        srv = self.srv
        self.put_sem(srv, "gone", 1)
        self.acquire(srv, "semaphores", "gone", "a")
        waiter = self.bg_acquire(srv, "semaphores", "gone", "b", wait_ms=LONG_WAIT_MS)
        self.wait_waiters(srv, "semaphores", "gone", 1)
        self.assertEqual(self.call(srv, "DELETE", "/v1/semaphores/gone")[0], 204)
        resp = waiter.wait(3)
        self.assertProblem(resp, 408, "acquire_timeout")
        self.assertLess(waiter.elapsed, 3.0)
        self.assertProblem(self.call(srv, "GET", "/v1/semaphores/gone"), 404, "not_found")


class WaiterCap(PrimTestCase):
    def test_too_many_waiters_429(self):
        srv = self.start("--max-waiters", "2")
        self.put_sem(srv, "cap", 1)
        self.acquire(srv, "semaphores", "cap", "holder")
        w = [self.bg_acquire(srv, "semaphores", "cap", f"w{i}", wait_ms=LONG_WAIT_MS) for i in range(2)]
        self.wait_waiters(srv, "semaphores", "cap", 2)
        t0 = time.monotonic()
        resp = self.acquire(srv, "semaphores", "cap", "third", expect=429, wait_ms=LONG_WAIT_MS)
        self.assertProblem(resp, 429, "too_many_waiters")
        self.assertEqual(resp[1].get("Retry-After"), "1", "429 without Retry-After: 1")
        self.assertLess(time.monotonic() - t0, 1.0, "a refused waiter should not wait")
        self.assertEqual(self.state(srv, "semaphores", "cap")["waiters"], 2)
        # The cap is per primitive: another semaphore still takes waiters.
        self.put_sem(srv, "cap2", 1)
        self.acquire(srv, "semaphores", "cap2", "holder")
        w.append(self.bg_acquire(srv, "semaphores", "cap2", "x", wait_ms=LONG_WAIT_MS))
        self.wait_waiters(srv, "semaphores", "cap2", 1)
        # Event long-polls are capped the same way.
        e = [self.bg(srv, "GET", f"/v1/events/ev?wait_ms={LONG_WAIT_MS}") for _ in range(2)]
        self.wait_until(lambda: self.metric(srv, "gatherd_primitive_waiters") == 5, 3, "5 waiters")
        self.assertProblem(self.call(srv, "GET", f"/v1/events/ev?wait_ms={LONG_WAIT_MS}"), 429,
                           "too_many_waiters")
        # Clean up: deleting the semaphores ends their waiters with 408, setting the event its.
        for name in ("cap", "cap2"):
            self.assertEqual(self.call(srv, "DELETE", f"/v1/semaphores/{name}")[0], 204)
        for c in w:
            self.assertProblem(c.wait(3), 408, "acquire_timeout")
        self.ok(self.call(srv, "POST", "/v1/events/ev/set"))
        for c in e:
            self.assertEqual(self.ok(c.wait(3)), {"set": True})


class PrimitiveCap(PrimTestCase):
    def test_too_many_primitives_429(self):
        srv = self.start("--max-primitives", "3")
        self.put_sem(srv, "s", 1)
        self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 1}))
        self.ok(self.call(srv, "PUT", "/v1/locks/l", {}))  # the third
        refused = [
            ("PUT", "/v1/barriers/b", {"parties": 2}),
            ("PUT", "/v1/semaphores/s2", {"permits": 1}),
            ("PUT", "/v1/queues/q2", {"maxsize": 1}),
            ("PUT", "/v1/events/e", {}),
            ("POST", "/v1/events/e/set", {}),
            ("GET", "/v1/events/e?wait_ms=100", None),  # a waiter needs the event to exist
            ("POST", "/v1/locks/l2/acquire", {"holder": "a"}),
        ]
        for method, path, body in refused:
            with self.subTest(method=method, path=path):
                resp = self.call(srv, method, path, body)
                self.assertProblem(resp, 429, "too_many_primitives")
                # Idle primitives exist: Retry-After says when the first one is forgotten
                # (--primitive-idle-ms, capped by --retry-after-max-ms).
                self.assertRegex(resp[1].get("Retry-After") or "", r"^[1-9]\d*$")
        # Reads create nothing, so they are never refused.
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/e")), {"set": False})
        self.assertEqual(self.state(srv, "locks", "l2")["available"], 1)
        # Using the existing ones is not creating: still fine.
        self.put_sem(srv, "s", 2)
        self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 2}))
        p = self.acquire(srv, "locks", "l", "a")
        self.release(srv, "locks", "l", p["permit_id"])
        text = srv.metrics()
        self.assertEqual(metric_sum(text, "gatherd_primitives"), 3)
        # Deleting one makes room for one.
        self.assertEqual(self.call(srv, "DELETE", "/v1/semaphores/s")[0], 204)
        self.ok(self.call(srv, "PUT", "/v1/barriers/b", {"parties": 2}))
        self.assertProblem(self.call(srv, "PUT", "/v1/events/e", {}), 429, "too_many_primitives")


class ReadsAndIdleExpiry(PrimTestCase):
    """Issue 14, defect 4: reads create nothing; idle primitives are forgotten."""

    def test_reads_never_fill_the_primitive_cap(self):
        srv = self.start("--max-primitives", "100")
        for i in range(100):
            self.assertEqual(self.ok(self.call(srv, "GET", f"/v1/events/e{i}")), {"set": False})
            self.assertEqual(self.ok(self.call(srv, "GET", f"/v1/events/e{i}?wait_ms=0")), {"set": False})
            state = self.state(srv, "locks", f"l{i}")
            self.assertSemState(state, f"l{i}", 1)
            self.assertEqual((state["available"], state["holders"], state["waiters"]), (1, [], 0))
        self.assertEqual(metric_sum(srv.metrics(), "gatherd_primitives") or 0, 0, "a read created one")
        # Everyone can still create: the reads took nothing.
        p = self.acquire(srv, "locks", "real", "a")
        self.release(srv, "locks", "real", p["permit_id"])
        self.put_sem(srv, "s", 1)
        self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 1}))
        # A waiter on an absent event makes it for as long as it waits, no longer.
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/w?wait_ms=100")), {"set": False})
        self.assertEqual(metric_value(srv.metrics(), "gatherd_primitives", type="event"), 0)
        self.assertProblem(self.call(srv, "DELETE", "/v1/events/w"), 404, "not_found")
        # Semaphores, barriers and queues need a PUT: reading an absent one stays 404.
        for kind in ("semaphores", "barriers", "queues"):
            self.assertProblem(self.call(srv, "GET", f"/v1/{kind}/absent"), 404, "not_found")

    def test_idle_primitives_expire_and_busy_ones_stay(self):
        srv = self.start("--primitive-idle-ms", "200")
        # Idle: no holder, waiter or item (an event not set).
        self.put_sem(srv, "s", 2)
        p = self.acquire(srv, "locks", "l", "a")
        self.release(srv, "locks", "l", p["permit_id"])
        self.ok(self.call(srv, "PUT", "/v1/events/e", {}))
        self.ok(self.call(srv, "PUT", "/v1/barriers/b", {"parties": 2}))
        self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 5}))
        # Busy, or holding state a client relies on: a set event, a held lock, a queue with an
        # item, a semaphore with a waiter.
        self.ok(self.call(srv, "POST", "/v1/events/kept/set", {}))
        held = self.acquire(srv, "locks", "held", "a", ttl_ms=30000)
        self.ok(self.call(srv, "PUT", "/v1/queues/full", {"maxsize": 5}))
        self.ok(self.call(srv, "POST", "/v1/queues/full/put", {"items": [1]}))
        self.put_sem(srv, "busy", 1)
        self.acquire(srv, "semaphores", "busy", "a", ttl_ms=30000)
        waiter = self.bg_acquire(srv, "semaphores", "busy", "w", wait_ms=LONG_WAIT_MS)
        self.wait_waiters(srv, "semaphores", "busy", 1)

        self.wait_until(lambda: metric_sum(srv.metrics(), "gatherd_primitives_expired_total") == 5,
                        5, "5 idle primitives expired")
        time.sleep(0.5)  # ten idle times more: the busy ones still stay
        text = srv.metrics()
        for t in PRIMITIVE_TYPES:
            self.assertEqual(metric_value(text, "gatherd_primitives_expired_total", type=t), 1, t)
        for t, n in (("semaphore", 1), ("lock", 1), ("event", 1), ("barrier", 0), ("queue", 1)):
            self.assertEqual(metric_value(text, "gatherd_primitives", type=t), n, t)
        for kind in ("semaphores", "barriers", "queues"):
            name = {"semaphores": "s", "barriers": "b", "queues": "q"}[kind]
            self.assertProblem(self.call(srv, "GET", f"/v1/{kind}/{name}"), 404, "not_found")
        self.assertProblem(self.call(srv, "DELETE", "/v1/events/e"), 404, "not_found")
        self.assertFalse(waiter.done(), "the waiter lost its semaphore")
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/kept")), {"set": True})
        self.assertEqual([h["permit_id"] for h in self.state(srv, "locks", "held")["holders"]],
                         [held["permit_id"]])
        self.assertEqual(self.state(srv, "queues", "full")["size"], 1)

    def test_idle_time_from_the_environment(self):
        srv = self.start(env={"GATHERD_PRIMITIVE_IDLE_MS": "200"})
        self.put_sem(srv, "s", 1)
        self.wait_until(lambda: self.metric(srv, "gatherd_primitives_expired_total", type="semaphore") == 1,
                        5, "the semaphore expired")


class QueueBytes(PrimTestCase):
    """Issue 14, defect 5: queues bounded by payload bytes, per queue and server-wide."""

    def put(self, srv, name, items, wait_ms=0):
        return self.call(srv, "POST", f"/v1/queues/{name}/put", {"items": items, "wait_ms": wait_ms})

    def test_byte_budgets(self):
        srv = self.start("--queue-max-bytes", "1000", "--queues-max-bytes", "1500")
        state = self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 100}))
        self.assertEqual(set(state), QUEUE_STATS, state)
        self.assertEqual((state["max_bytes"], state["bytes"]), (1000, 0))
        self.assertProblem(self.call(srv, "PUT", "/v1/queues/q2", {"maxsize": 1, "max_bytes": 1001}),
                           400, "invalid_request", detail_contains="max_bytes")
        small = self.ok(self.call(srv, "PUT", "/v1/queues/small", {"maxsize": 1, "max_bytes": 100}))
        self.assertEqual(small["max_bytes"], 100)

        # More than the queue can ever hold: 413 at once, whatever the wait.
        t0 = time.monotonic()
        self.assertProblem(self.put(srv, "q", ["x" * 1199], wait_ms=5000), 413, "item_too_large")
        self.assertProblem(self.put(srv, "small", ["x" * 99]), 413, "item_too_large")
        self.assertLess(time.monotonic() - t0, 1.0)

        # Payload bytes, counted exactly: a string of 898 characters and its quotes.
        self.ok(self.put(srv, "q", ["x" * 898]))
        self.assertEqual(self.state(srv, "queues", "q")["bytes"], 900)
        self.assertEqual(self.metric(srv, "gatherd_queue_bytes"), 900)

        # Byte-full: the same 429 as a count-full queue, after the put's wait.
        t0 = time.monotonic()
        resp = self.put(srv, "q", ["y" * 198], wait_ms=300)
        self.assertProblem(resp, 429, "queue_bytes_full")
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertRegex(resp[1].get("Retry-After") or "", r"^[1-9]\d*$")
        self.assertEqual(self.state(srv, "queues", "q")["bytes"], 900, "a refused put added bytes")

        # A waiting put gets in once room is made: a get leaves the item held, done frees it.
        waiter = self.bg(srv, "POST", "/v1/queues/q/put", {"items": ["y" * 198], "wait_ms": LONG_WAIT_MS})
        self.wait_until(lambda: self.state(srv, "queues", "q")["put_waiters"] == 1, 3, "put parked")
        got = self.ok(self.call(srv, "POST", "/v1/queues/q/get", {"lease_ms": 30000}))["items"]
        time.sleep(0.2)
        self.assertFalse(waiter.done(), "a get made room: leased items are still held")
        self.ok(self.call(srv, "POST", "/v1/queues/q/done", {"receipts": [got[0]["receipt"]]}))
        self.assertEqual(self.ok(waiter.wait(3)), {"put": 1})
        self.assertEqual(self.state(srv, "queues", "q")["bytes"], 200)

        # Server-wide: 1500 bytes across queues.
        self.ok(self.call(srv, "PUT", "/v1/queues/other", {"maxsize": 100}))
        self.ok(self.call(srv, "PUT", "/v1/queues/third", {"maxsize": 100}))
        self.ok(self.put(srv, "other", ["z" * 998]))
        self.assertEqual(self.metric(srv, "gatherd_queue_bytes"), 1200)
        self.assertProblem(self.put(srv, "third", ["w" * 398], wait_ms=100), 429, "queues_memory_full")
        waiter = self.bg(srv, "POST", "/v1/queues/third/put", {"items": ["w" * 398], "wait_ms": LONG_WAIT_MS})
        self.wait_until(lambda: self.state(srv, "queues", "third")["put_waiters"] == 1, 3, "put parked")
        self.assertEqual(self.call(srv, "DELETE", "/v1/queues/other")[0], 204)  # frees 1000
        self.assertEqual(self.ok(waiter.wait(3)), {"put": 1})
        self.assertEqual(self.metric(srv, "gatherd_queue_bytes"), 600)
        self.assertIn('gatherd_limit{name="queues_max_bytes"} 1500', srv.metrics())


# ====================================================================== 2. locks
class Locks(PrimTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_lock_exists_on_first_use(self):
        srv = self.srv
        state = self.state(srv, "locks", "fresh")  # read as a free lock, not created
        self.assertSemState(state, "fresh", 1)
        self.assertEqual((state["available"], state["holders"], state["waiters"]), (1, [], 0))
        p = self.acquire(srv, "locks", "first-acquire", "a")  # acquire creates it too
        self.assertEqual(p["count"], 1)
        self.assertEqual(self.state(srv, "locks", "first-acquire")["available"], 0)
        state = self.ok(self.call(srv, "PUT", "/v1/locks/put-lock", {}))
        self.assertSemState(state, "put-lock", 1)
        self.assertEqual(metric_value(srv.metrics(), "gatherd_primitives", type="lock"), 2)
        # PUT on an existing lock leaves it as it is.
        state = self.ok(self.call(srv, "PUT", "/v1/locks/first-acquire", {}))
        self.assertEqual([h["permit_id"] for h in state["holders"]], [p["permit_id"]])
        # A lock has one permit: no "permits" field to set.
        self.assertProblem(self.call(srv, "PUT", "/v1/locks/put-lock", {"permits": 2}), 400,
                           "invalid_request", detail_contains="permits")
        self.release(srv, "locks", "first-acquire", p["permit_id"])
        self.assertEqual(self.call(srv, "DELETE", "/v1/locks/first-acquire")[0], 204)
        self.assertProblem(self.call(srv, "DELETE", "/v1/locks/first-acquire"), 404, "not_found")
        self.assertProblem(self.call(srv, "DELETE", "/v1/locks/never-used"), 404, "not_found")

    def test_mutual_exclusion_and_handoff(self):
        srv = self.srv
        a = self.acquire(srv, "locks", "m", "a")
        # Not reentrant by default: the same holder waits like anyone else.
        self.assertProblem(self.acquire(srv, "locks", "m", "a", expect=408), 408, "acquire_timeout")
        self.assertProblem(self.acquire(srv, "locks", "m", "b", expect=408, wait_ms=200), 408,
                           "acquire_timeout")
        waiter = self.bg_acquire(srv, "locks", "m", "b", wait_ms=LONG_WAIT_MS)
        self.wait_waiters(srv, "locks", "m", 1)
        self.release(srv, "locks", "m", a["permit_id"])
        status, _, b = waiter.wait(3)
        self.assertEqual(status, 200, b)
        self.assertGreater(b["fencing_token"], a["fencing_token"])
        self.assertProblem(self.call(srv, "POST", "/v1/locks/m/release", {"permit_id": a["permit_id"]}),
                           409, "not_held")
        k = self.ok(self.call(srv, "POST", "/v1/locks/m/keepalive",
                              {"permit_id": b["permit_id"], "ttl_ms": 5000}))
        self.assertPermit(k)
        self.release(srv, "locks", "m", b["permit_id"])

    def test_reentrant_counts(self):
        srv = self.srv
        p1 = self.acquire(srv, "locks", "re", "a", reentrant=True)
        self.assertEqual(p1["count"], 1)
        p2 = self.acquire(srv, "locks", "re", "a", reentrant=True)
        self.assertEqual((p2["permit_id"], p2["count"]), (p1["permit_id"], 2))
        p3 = self.acquire(srv, "locks", "re", "a", reentrant=True, wait_ms=1000)
        self.assertEqual((p3["permit_id"], p3["count"]), (p1["permit_id"], 3))
        state = self.state(srv, "locks", "re")
        self.assertEqual([(h["holder"], h["count"]) for h in state["holders"]], [("a", 3)])
        # Another holder, reentrant or not, still waits.
        self.assertProblem(self.acquire(srv, "locks", "re", "b", expect=408, reentrant=True), 408,
                           "acquire_timeout")
        # Released as many times as acquired: count down to 0, then not held.
        self.release(srv, "locks", "re", p1["permit_id"], expect_count=2)
        self.release(srv, "locks", "re", p1["permit_id"], expect_count=1)
        self.assertEqual(self.state(srv, "locks", "re")["available"], 0, "freed before the count hit 0")
        self.release(srv, "locks", "re", p1["permit_id"], expect_count=0)
        self.assertEqual(self.state(srv, "locks", "re")["available"], 1)
        self.assertProblem(self.call(srv, "POST", "/v1/locks/re/release", {"permit_id": p1["permit_id"]}),
                           409, "not_held")
        b = self.acquire(srv, "locks", "re", "b")
        self.assertNotEqual(b["permit_id"], p1["permit_id"])
        self.release(srv, "locks", "re", b["permit_id"])


# ====================================================================== 3. events
class Events(PrimTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_put_set_clear_and_first_use(self):
        srv = self.srv
        state = self.ok(self.call(srv, "PUT", "/v1/events/e", {}))
        self.assertEqual(state, {"name": "e", "set": False, "waiters": 0})
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/e")), {"set": False})
        # set / clear take no body at all, or {}.
        status, _, body = srv.json("POST", "/v1/events/e/set")
        self.assertEqual(status, 200, body)
        self.assertEqual(set(body), EVENT_STATE)
        self.assertEqual((body["name"], body["set"]), ("e", True))
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/e?wait_ms=0")), {"set": True})
        t0 = time.monotonic()
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/e?wait_ms=5000")), {"set": True})
        self.assertLess(time.monotonic() - t0, 1.0, "a set event should answer at once")
        body = self.ok(self.call(srv, "POST", "/v1/events/e/clear", {}))
        self.assertEqual(body, {"name": "e", "set": False, "waiters": 0})
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/e")), {"set": False})
        status, _, body = srv.json("POST", "/v1/events/e/clear")
        self.assertEqual((status, body["set"]), (200, False), body)
        # Events exist on first write; a read answers "not set" and creates nothing.
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/by-get")), {"set": False})
        self.assertEqual(self.ok(self.call(srv, "POST", "/v1/events/by-set/set", {}))["set"], True)
        self.assertEqual(metric_value(srv.metrics(), "gatherd_primitives", type="event"), 2)
        self.assertEqual(self.call(srv, "DELETE", "/v1/events/e")[0], 204)
        self.assertProblem(self.call(srv, "DELETE", "/v1/events/e"), 404, "not_found")
        self.assertProblem(self.call(srv, "DELETE", "/v1/events/by-get"), 404, "not_found")
        self.assertEqual(metric_value(srv.metrics(), "gatherd_primitives", type="event"), 1)

    def test_set_wakes_every_waiter_together(self):
        srv = self.srv
        waiters = [self.bg(srv, "GET", f"/v1/events/go?wait_ms={LONG_WAIT_MS}") for _ in range(3)]
        self.wait_until(lambda: self.metric(srv, "gatherd_primitive_waiters") == 3, 3,
                        "3 event waiters parked")
        time.sleep(0.2)
        self.assertFalse(any(c.done() for c in waiters), "a waiter returned before set")
        self.assertEqual(self.ok(self.call(srv, "PUT", "/v1/events/go", {}))["waiters"], 3)
        t_set = time.monotonic()
        body = self.ok(self.call(srv, "POST", "/v1/events/go/set"))
        self.assertEqual(body["set"], True)
        for c in waiters:
            self.assertEqual(self.ok(c.wait(3)), {"set": True})
        done = [c.t_done for c in waiters]
        self.assertLess(max(done) - t_set, 1.0, "waiters not woken promptly by set")
        self.assertLess(max(done) - min(done), 0.5, "waiters not woken together")
        self.assertEqual(self.metric(srv, "gatherd_primitive_waiters"), 0)

    def test_wait_timeout_returns_false(self):
        srv = self.srv
        t0 = time.monotonic()
        body = self.ok(self.call(srv, "GET", "/v1/events/never?wait_ms=300"))
        elapsed = time.monotonic() - t0
        self.assertEqual(body, {"set": False})
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 2.5)
        self.assertEqual(self.ok(self.call(srv, "PUT", "/v1/events/never", {}))["waiters"], 0)

    def test_clear_then_wait_blocks_again(self):
        srv = self.srv
        self.ok(self.call(srv, "POST", "/v1/events/flip/set"))
        self.ok(self.call(srv, "POST", "/v1/events/flip/clear"))
        waiter = self.bg(srv, "GET", f"/v1/events/flip?wait_ms={LONG_WAIT_MS}")
        self.wait_until(lambda: self.metric(srv, "gatherd_primitive_waiters") == 1, 3, "1 waiter")
        time.sleep(0.2)
        self.assertFalse(waiter.done(), "a cleared event did not block the waiter")
        self.ok(self.call(srv, "POST", "/v1/events/flip/set", {}))
        self.assertEqual(self.ok(waiter.wait(3)), {"set": True})


# ====================================================================== 4. barriers
class Barriers(PrimTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_404_before_put(self):
        srv = self.srv
        for method, path, body in (("GET", "/v1/barriers/b", None),
                                   ("POST", "/v1/barriers/b/wait", {"wait_ms": 1000}),
                                   ("DELETE", "/v1/barriers/b", None)):
            with self.subTest(method=method, path=path):
                self.assertProblem(self.call(srv, method, path, body), 404, "not_found")

    def test_three_parties_released_together(self):
        srv = self.srv
        state = self.ok(self.call(srv, "PUT", "/v1/barriers/b", {"parties": 3}))
        self.assertEqual(set(state), BARRIER_STATE, state)
        self.assertEqual((state["name"], state["parties"], state["waiting"]), ("b", 3, 0))
        gen0 = state["generation"]
        self.assertIsInstance(gen0, int)
        self.assertEqual(self.state(srv, "barriers", "b"), state)

        parties = []
        for i in range(3):
            parties.append(self.bg(srv, "POST", "/v1/barriers/b/wait", {"wait_ms": LONG_WAIT_MS}))
            if i < 2:
                self.wait_until(lambda: self.state(srv, "barriers", "b")["waiting"] == i + 1, 3,
                                f"{i + 1} parties waiting")
                time.sleep(0.1)
                self.assertFalse(any(c.done() for c in parties), "released before all arrived")
        passes = []
        for c in parties:
            passes.append(self.ok(c.wait(3)))
        for p in passes:
            self.assertEqual(set(p), BARRIER_PASS, p)
            self.assertEqual(p["generation"], gen0, passes)
        self.assertEqual([p["arrival"] for p in passes], [0, 1, 2], "arrival is not the arrival order")
        done = [c.t_done for c in parties]
        self.assertLess(max(done) - min(done), 0.5, "parties not released together")
        state = self.state(srv, "barriers", "b")
        self.assertEqual(state["waiting"], 0)
        self.assertGreater(state["generation"], gen0)

        # The barrier is reusable: the next three form the next generation.
        again = [self.bg(srv, "POST", "/v1/barriers/b/wait", {"wait_ms": LONG_WAIT_MS}) for _ in range(3)]
        passes2 = [self.ok(c.wait(5)) for c in again]
        self.assertEqual({p["generation"] for p in passes2}, {state["generation"]})
        self.assertEqual(sorted(p["arrival"] for p in passes2), [0, 1, 2])
        self.assertEqual(self.call(srv, "DELETE", "/v1/barriers/b")[0], 204)
        self.assertProblem(self.call(srv, "GET", "/v1/barriers/b"), 404, "not_found")

    def test_a_waiter_that_times_out_leaves_and_the_others_complete(self):
        srv = self.srv
        gen0 = self.ok(self.call(srv, "PUT", "/v1/barriers/t", {"parties": 3}))["generation"]
        first = self.bg(srv, "POST", "/v1/barriers/t/wait", {"wait_ms": LONG_WAIT_MS})
        self.wait_until(lambda: self.state(srv, "barriers", "t")["waiting"] == 1, 3, "1 waiting")
        t0 = time.monotonic()
        resp = self.call(srv, "POST", "/v1/barriers/t/wait", {"wait_ms": 300})
        elapsed = time.monotonic() - t0
        self.assertProblem(resp, 408, "wait_timeout")
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 2.5)
        state = self.state(srv, "barriers", "t")
        self.assertEqual((state["waiting"], state["generation"]), (1, gen0), state)
        self.assertFalse(first.done(), "the timed-out waiter broke the barrier for the others")
        rest = [self.bg(srv, "POST", "/v1/barriers/t/wait", {"wait_ms": LONG_WAIT_MS}) for _ in range(2)]
        passes = [self.ok(c.wait(5)) for c in [first] + rest]
        self.assertEqual({p["generation"] for p in passes}, {gen0})
        self.assertEqual(sorted(p["arrival"] for p in passes), [0, 1, 2])
        self.assertEqual(passes[0]["arrival"], 0)


# ====================================================================== 5. queues
class Queues(PrimTestCase):
    def setUp(self):
        self.srv = self.start()

    def put_queue(self, name, maxsize):
        body = self.ok(self.call(self.srv, "PUT", f"/v1/queues/{name}", {"maxsize": maxsize}))
        self.assertEqual(set(body), QUEUE_STATS, body)
        self.assertEqual((body["name"], body["maxsize"]), (name, maxsize))
        return body

    def stats(self, name):
        body = self.state(self.srv, "queues", name)
        self.assertEqual(set(body), QUEUE_STATS, body)
        return body

    def put(self, name, items, wait_ms=0, expect=200):
        resp = self.call(self.srv, "POST", f"/v1/queues/{name}/put", {"items": items, "wait_ms": wait_ms})
        if expect == 200:
            self.assertEqual(self.ok(resp), {"put": len(items)})
        return resp

    def get(self, name, **fields):
        body = self.ok(self.call(self.srv, "POST", f"/v1/queues/{name}/get", fields))
        self.assertEqual(list(body), ["items"], body)
        for item in body["items"]:
            self.assertEqual(set(item), {"receipt", "value"}, item)
            self.assertIsInstance(item["receipt"], str)
        return body["items"]

    def done(self, name, receipts):
        body = self.ok(self.call(self.srv, "POST", f"/v1/queues/{name}/done", {"receipts": receipts}))
        self.assertEqual(set(body), {"done", "unknown"}, body)
        return body

    def test_404_before_put(self):
        srv = self.srv
        for method, path, body in (("GET", "/v1/queues/q", None),
                                   ("POST", "/v1/queues/q/put", {"items": [1]}),
                                   ("POST", "/v1/queues/q/get", {"wait_ms": 1000}),
                                   ("POST", "/v1/queues/q/done", {"receipts": ["r"]}),
                                   ("GET", "/v1/queues/q/join?wait_ms=1000", None),
                                   ("DELETE", "/v1/queues/q", None)):
            with self.subTest(method=method, path=path):
                self.assertProblem(self.call(srv, method, path, body), 404, "not_found")

    def test_put_get_done_join_roundtrip(self):
        stats = self.put_queue("q", 10)
        self.assertEqual(stats, {"name": "q", "maxsize": 10, "size": 0, "leased": 0, "unfinished": 0,
                                 "put_waiters": 0, "get_waiters": 0,
                                 "max_bytes": QUEUE_MAX_BYTES, "bytes": 0})
        values = [1, "two", {"three": [3]}, None, [5]]
        self.put("q", values)
        self.assertEqual(self.stats("q")["size"], 5)
        got = self.get("q", max_items=2, wait_ms=0, lease_ms=30000)
        self.assertEqual([g["value"] for g in got], values[:2], "not FIFO")
        got += self.get("q")  # defaults: one item
        self.assertEqual(len(got), 3)
        got += self.get("q", max_items=1000)
        self.assertEqual([g["value"] for g in got], values)
        self.assertEqual(len({g["receipt"] for g in got}), 5)
        s = self.stats("q")
        self.assertEqual((s["size"], s["leased"], s["unfinished"]), (0, 5, 5), s)
        self.assertEqual(self.ok(self.call(self.srv, "GET", "/v1/queues/q/join?wait_ms=0")), {"unfinished": 5})
        joiner = self.bg(self.srv, "GET", f"/v1/queues/q/join?wait_ms={LONG_WAIT_MS}")
        self.wait_until(lambda: self.metric(self.srv, "gatherd_primitive_waiters") == 1, 3, "join parked")
        self.assertEqual(self.done("q", [g["receipt"] for g in got[:3]]), {"done": 3, "unknown": []})
        time.sleep(0.2)
        self.assertFalse(joiner.done(), "join returned with items unfinished")
        self.assertEqual(self.done("q", [g["receipt"] for g in got[3:]]), {"done": 2, "unknown": []})
        self.assertEqual(self.ok(joiner.wait(3)), {"unfinished": 0})
        self.assertLess(joiner.t_done - joiner.t_start, 5)
        s = self.stats("q")
        self.assertEqual((s["size"], s["leased"], s["unfinished"]), (0, 0, 0), s)
        # join on a finished queue answers at once
        t0 = time.monotonic()
        self.assertEqual(self.ok(self.call(self.srv, "GET", "/v1/queues/q/join?wait_ms=5000")),
                         {"unfinished": 0})
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(self.call(self.srv, "DELETE", "/v1/queues/q")[0], 204)
        self.assertProblem(self.call(self.srv, "GET", "/v1/queues/q"), 404, "not_found")

    def test_join_timeout_reports_unfinished(self):
        self.put_queue("j", 5)
        self.put("j", ["a", "b"])
        self.get("j")
        t0 = time.monotonic()
        body = self.ok(self.call(self.srv, "GET", "/v1/queues/j/join?wait_ms=300"))
        elapsed = time.monotonic() - t0
        self.assertEqual(body, {"unfinished": 2})
        self.assertGreaterEqual(elapsed, 0.25)
        self.assertLess(elapsed, 2.5)

    def test_queue_full_429_all_or_nothing(self):
        self.put_queue("full", 3)
        self.put("full", [1, 2])
        t0 = time.monotonic()
        resp = self.put("full", [3, 4], expect=429)  # only one fits: none goes in
        self.assertProblem(resp, 429, "queue_full")
        self.assertEqual(resp[1].get("Retry-After"), "1", "429 without Retry-After: 1")
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertEqual(self.stats("full")["size"], 2, "a refused put added items")
        t0 = time.monotonic()
        self.assertProblem(self.put("full", [3, 4], wait_ms=300, expect=429), 429, "queue_full")
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        s = self.stats("full")
        self.assertEqual((s["size"], s["put_waiters"]), (2, 0), s)
        self.put("full", [3])
        self.assertEqual([g["value"] for g in self.get("full", max_items=10)], [1, 2, 3])
        # More items than maxsize can never fit: 400, not a wait.
        t0 = time.monotonic()
        self.assertProblem(self.put("full", [1, 2, 3, 4], wait_ms=5000, expect=400), 400,
                           "invalid_request")
        self.assertLess(time.monotonic() - t0, 1.0)

    def test_bounded_put_waits_for_room(self):
        self.put_queue("room", 2)
        self.put("room", ["a", "b"])
        waiter = self.bg(self.srv, "POST", "/v1/queues/room/put", {"items": ["c", "d"], "wait_ms": LONG_WAIT_MS})
        self.wait_until(lambda: self.stats("room")["put_waiters"] == 1, 3, "put parked")
        first = self.get("room")
        time.sleep(0.2)
        self.assertFalse(waiter.done(), "a put of 2 went in with room for 1")
        self.assertEqual(self.stats("room")["size"], 1)
        second = self.get("room")
        self.assertEqual(self.ok(waiter.wait(3)), {"put": 2})
        # Leased items do not count toward maxsize: 2 leased + 2 ready.
        s = self.stats("room")
        self.assertEqual((s["size"], s["leased"], s["unfinished"], s["put_waiters"]), (2, 2, 4, 0), s)
        self.assertEqual([g["value"] for g in first + second + self.get("room", max_items=5)],
                         ["a", "b", "c", "d"])

    def test_get_waits_for_an_item(self):
        self.put_queue("g", 5)
        t0 = time.monotonic()
        self.assertEqual(self.get("g", wait_ms=300), [])
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        waiter = self.bg(self.srv, "POST", "/v1/queues/g/get", {"wait_ms": LONG_WAIT_MS, "max_items": 5})
        self.wait_until(lambda: self.stats("g")["get_waiters"] == 1, 3, "get parked")
        self.put("g", ["x"])
        body = self.ok(waiter.wait(3))
        self.assertEqual([i["value"] for i in body["items"]], ["x"])
        self.assertLess(waiter.elapsed, 3.0)

    def test_redelivery_after_lease(self):
        self.put_queue("r", 5)
        self.put("r", ["a", "b"])
        expiries0 = self.metric(self.srv, "gatherd_primitive_lease_expiries_total")
        [a] = self.get("r", lease_ms=300)
        self.assertEqual(a["value"], "a")
        time.sleep(0.7)
        self.wait_until(lambda: self.metric(self.srv, "gatherd_primitive_lease_expiries_total")
                        == expiries0 + 1, 3, "lease expiry counted")
        s = self.stats("r")
        self.assertEqual((s["size"], s["leased"], s["unfinished"]), (2, 0, 2), s)
        again = self.get("r", max_items=5, lease_ms=30000)
        self.assertEqual([g["value"] for g in again], ["a", "b"], "redelivered item not at the front")
        self.assertNotEqual(again[0]["receipt"], a["receipt"])
        body = self.done("r", [a["receipt"], again[0]["receipt"]])
        self.assertEqual(body, {"done": 1, "unknown": [a["receipt"]]})

    def test_done_with_unknown_receipts(self):
        self.put_queue("d", 5)
        self.put("d", [1])
        [item] = self.get("d")
        body = self.done("d", ["nope", item["receipt"], "nope2"])
        self.assertEqual(body["done"], 1)
        self.assertEqual(sorted(body["unknown"]), ["nope", "nope2"])
        self.assertEqual(self.done("d", [item["receipt"]]), {"done": 0, "unknown": [item["receipt"]]})
        self.assertEqual(self.stats("d")["unfinished"], 0)


# ====================================================================== 6. validation
class Validation(PrimTestCase):
    def setUp(self):
        self.srv = self.start()

    def test_bad_names_are_404(self):
        srv = self.srv
        bad = ["x" * 129, "bad!name", "bad%20name", "%C3%A9t%C3%A9", "a:b", "a~b", "a%2Fb", "a*"]
        for name in bad:
            for method, path, body in (
                    ("PUT", f"/v1/semaphores/{name}", {"permits": 1}),
                    ("GET", f"/v1/locks/{name}", None),
                    ("POST", f"/v1/locks/{name}/acquire", {"holder": "a"}),
                    ("PUT", f"/v1/events/{name}", {}),
                    ("GET", f"/v1/events/{name}", None),
                    ("POST", f"/v1/events/{name}/set", {}),
                    ("PUT", f"/v1/barriers/{name}", {"parties": 2}),
                    ("PUT", f"/v1/queues/{name}", {"maxsize": 2})):
                with self.subTest(method=method, path=path):
                    resp = self.call(srv, method, path, body)
                    self.assertEqual(resp[0], 404, resp)
                    self.assertProblem(resp, 404, "not_found")
        for path in ("/v1/locks/", "/v1/semaphores/", "/v1/locks/a/b/acquire"):
            with self.subTest(path=path):
                self.assertEqual(self.call(srv, "GET", path)[0], 404)
        self.assertEqual(metric_sum(srv.metrics(), "gatherd_primitives") or 0, 0,
                         "an invalid name created a primitive")
        good = "Az09_.-" + "x" * 121  # 128 characters from the whole alphabet
        self.assertEqual(len(good), 128)
        self.assertEqual(self.state(srv, "locks", good)["name"], good)

    def test_durations_out_of_range_are_400(self):
        srv = self.srv
        self.put_sem(srv, "s", 1)
        self.ok(self.call(srv, "PUT", "/v1/barriers/b", {"parties": 2}))
        self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 2}))
        p = self.acquire(srv, "semaphores", "s", "a")
        bodies = [
            ("/v1/semaphores/s/acquire", {"holder": "b"}, "wait_ms"),
            ("/v1/locks/l/acquire", {"holder": "b"}, "wait_ms"),
            ("/v1/barriers/b/wait", {}, "wait_ms"),
            ("/v1/queues/q/put", {"items": [1]}, "wait_ms"),
            ("/v1/queues/q/get", {}, "wait_ms"),
            ("/v1/semaphores/s/acquire", {"holder": "b"}, "ttl_ms"),
            ("/v1/locks/l/acquire", {"holder": "b"}, "ttl_ms"),
            ("/v1/semaphores/s/keepalive", {"permit_id": p["permit_id"]}, "ttl_ms"),
            ("/v1/queues/q/get", {}, "lease_ms"),
        ]
        for path, body, field in bodies:
            bad_values = [60001, -1, "100", 1.5, None, True] if field == "wait_ms" else \
                [0, -1, 86400001, "100", 1.5, None]
            for value in bad_values:
                with self.subTest(path=path, field=field, value=value):
                    t0 = time.monotonic()
                    self.assertProblem(self.call(srv, "POST", path, {**body, field: value}), 400,
                                       "invalid_request", detail_contains=field)
                    self.assertLess(time.monotonic() - t0, 1.0)
        for path in ("/v1/events/e?wait_ms=60001", "/v1/events/e?wait_ms=-1", "/v1/events/e?wait_ms=abc",
                     "/v1/queues/q/join?wait_ms=60001", "/v1/queues/q/join?wait_ms=-1"):
            with self.subTest(path=path):
                self.assertProblem(self.call(srv, "GET", path), 400, "invalid_request")
        # The bounds themselves are fine.
        lk = self.acquire(srv, "locks", "edge", "a", wait_ms=60000, ttl_ms=86400000)
        self.release(srv, "locks", "edge", lk["permit_id"])
        lk = self.acquire(srv, "locks", "edge", "a", wait_ms=0, ttl_ms=1)
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/e?wait_ms=0")), {"set": False})
        self.assertEqual(self.get_q_items(srv, lease_ms=86400000), [])

    def get_q_items(self, srv, **fields):
        return self.ok(self.call(srv, "POST", "/v1/queues/q/get", fields))["items"]

    def test_counts_and_required_fields_are_checked(self):
        srv = self.srv
        self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 2}))
        self.put_sem(srv, "s", 1)
        cases = [
            ("PUT", "/v1/semaphores/x", {"permits": 0}, "permits"),
            ("PUT", "/v1/semaphores/x", {"permits": 1000001}, "permits"),
            ("PUT", "/v1/semaphores/x", {}, "permits"),
            ("PUT", "/v1/semaphores/x", {"permits": None}, "permits"),
            ("PUT", "/v1/semaphores/x", {"permits": "2"}, "permits"),
            ("PUT", "/v1/barriers/x", {"parties": 0}, "parties"),
            ("PUT", "/v1/barriers/x", {"parties": 10001}, "parties"),
            ("PUT", "/v1/barriers/x", {}, "parties"),
            ("PUT", "/v1/queues/x", {"maxsize": 0}, "maxsize"),
            ("PUT", "/v1/queues/x", {"maxsize": 1000001}, "maxsize"),
            ("PUT", "/v1/queues/x", {}, "maxsize"),
            ("POST", "/v1/semaphores/s/acquire", {}, "holder"),
            ("POST", "/v1/semaphores/s/acquire", {"holder": ""}, "holder"),
            ("POST", "/v1/semaphores/s/acquire", {"holder": "h" * 257}, "holder"),
            ("POST", "/v1/semaphores/s/acquire", {"holder": None}, "holder"),
            ("POST", "/v1/semaphores/s/acquire", {"holder": 5}, "holder"),
            ("POST", "/v1/locks/l/acquire", {"holder": "a", "reentrant": "yes"}, "reentrant"),
            ("POST", "/v1/locks/l/acquire", {"holder": "a", "reentrant": None}, "reentrant"),
            ("POST", "/v1/semaphores/s/release", {}, "permit_id"),
            ("POST", "/v1/semaphores/s/release", {"permit_id": None}, "permit_id"),
            ("POST", "/v1/queues/q/put", {"items": []}, "items"),
            ("POST", "/v1/queues/q/put", {"items": list(range(1001))}, "items"),
            ("POST", "/v1/queues/q/put", {}, "items"),
            ("POST", "/v1/queues/q/put", {"items": 5}, "items"),
            ("POST", "/v1/queues/q/get", {"max_items": 0}, "max_items"),
            ("POST", "/v1/queues/q/get", {"max_items": 1001}, "max_items"),
            ("POST", "/v1/queues/q/done", {"receipts": []}, "receipts"),
            ("POST", "/v1/queues/q/done", {"receipts": ["r"] * 1001}, "receipts"),
            ("POST", "/v1/queues/q/done", {}, "receipts"),
            ("POST", "/v1/queues/q/done", {"receipts": [5]}, "receipts"),
        ]
        for method, path, body, field in cases:
            with self.subTest(method=method, path=path, body=str(body)[:80]):
                self.assertProblem(self.call(srv, method, path, body), 400, "invalid_request",
                                   detail_contains=field)
        self.assertEqual(metric_sum(srv.metrics(), "gatherd_primitives"), 2, "a 400 created a primitive")
        s = self.ok(self.call(srv, "GET", "/v1/queues/q"))
        self.assertEqual(s["size"], 0, "a refused put added items")

    def test_unknown_fields_are_400(self):
        srv = self.srv
        self.put_sem(srv, "s", 1)
        self.ok(self.call(srv, "PUT", "/v1/barriers/b", {"parties": 2}))
        self.ok(self.call(srv, "PUT", "/v1/queues/q", {"maxsize": 2}))
        p = self.acquire(srv, "semaphores", "s", "a")
        cases = [
            ("PUT", "/v1/semaphores/s", {"permits": 1}),
            ("POST", "/v1/semaphores/s/acquire", {"holder": "b"}),
            ("POST", "/v1/semaphores/s/release", {"permit_id": p["permit_id"]}),
            ("POST", "/v1/semaphores/s/keepalive", {"permit_id": p["permit_id"], "ttl_ms": 1000}),
            ("PUT", "/v1/locks/l", {}),
            ("POST", "/v1/locks/l/acquire", {"holder": "b"}),
            ("PUT", "/v1/events/e", {}),
            ("POST", "/v1/events/e/set", {}),
            ("POST", "/v1/events/e/clear", {}),
            ("PUT", "/v1/barriers/b", {"parties": 2}),
            ("POST", "/v1/barriers/b/wait", {"wait_ms": 0}),
            ("PUT", "/v1/queues/q", {"maxsize": 2}),
            ("POST", "/v1/queues/q/put", {"items": [1]}),
            ("POST", "/v1/queues/q/get", {}),
            ("POST", "/v1/queues/q/done", {"receipts": ["r"]}),
        ]
        for method, path, body in cases:
            for typo in ("timeout_ms", "bogus"):
                with self.subTest(method=method, path=path, field=typo):
                    self.assertProblem(self.call(srv, method, path, {**body, typo: 1}), 400,
                                       "invalid_request", detail_contains=typo)
        # Nothing happened: the permit is still held, the queue is empty, the event is unset.
        state = self.state(srv, "semaphores", "s")
        self.assertEqual([h["permit_id"] for h in state["holders"]], [p["permit_id"]])
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/queues/q"))["size"], 0)
        self.assertEqual(self.ok(self.call(srv, "GET", "/v1/events/e")), {"set": False})
        self.assertEqual(self.state(srv, "barriers", "b")["waiting"], 0)

    def test_malformed_bodies(self):
        srv = self.srv
        self.put_sem(srv, "s", 1)
        for raw in (b"{", b"[]", b"\"x\"", b"null", b"{\"holder\": \"a\",}"):
            with self.subTest(body=raw):
                self.assertProblem(srv.json("POST", "/v1/semaphores/s/acquire", raw,
                                            {"Content-Type": "application/json"}), 400, "invalid_request")
        self.assertEqual(self.state(srv, "semaphores", "s")["available"], 1)

    def test_wrong_content_type_is_415(self):
        srv = self.srv
        self.put_sem(srv, "s", 1)
        body = json.dumps({"holder": "a"})
        for ctype in ("text/plain", "application/x-www-form-urlencoded"):
            with self.subTest(ctype=ctype):
                self.assertProblem(srv.json("POST", "/v1/semaphores/s/acquire", body, {"Content-Type": ctype}),
                                   415, "unsupported_media_type")
                self.assertProblem(srv.json("PUT", "/v1/queues/q", json.dumps({"maxsize": 1}),
                                            {"Content-Type": ctype}), 415, "unsupported_media_type")
        self.assertProblem(srv.json("POST", "/v1/semaphores/s/acquire", body.encode()),  # no Content-Type
                           415, "unsupported_media_type")
        self.assertEqual(self.state(srv, "semaphores", "s")["available"], 1, "a 415 acquired a permit")
        self.assertProblem(self.call(srv, "GET", "/v1/queues/q"), 404, "not_found")
        status, _, p = srv.json("POST", "/v1/semaphores/s/acquire", body,
                                {"Content-Type": "application/json; charset=utf-8"})
        self.assertEqual(status, 200, p)


# ====================================================================== 7. disconnect cleanup
class DisconnectCleanup(PrimTestCase):
    def setUp(self):
        self.srv = self.start()

    def raw_post(self, path, body):
        payload = json.dumps(body).encode()
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\n\r\n").encode()
        sock = raw_connect(self.srv)
        self.addCleanup(sock.close)
        sock.sendall(head + payload)
        return sock

    def test_acquire_long_poll_disconnect_leaves_no_waiter(self):
        srv = self.srv
        self.put_sem(srv, "dc", 1)
        held = self.acquire(srv, "semaphores", "dc", "holder")
        sock = self.raw_post("/v1/semaphores/dc/acquire", {"holder": "leaver", "wait_ms": 30000})
        self.wait_waiters(srv, "semaphores", "dc", 1)
        self.assertEqual(self.metric(srv, "gatherd_primitive_waiters"), 1)
        sock.close()
        t_closed = time.monotonic()
        deadline = t_closed + DISCONNECT_DEADLINE_S
        while True:
            waiters = self.state(srv, "semaphores", "dc")["waiters"]
            gauge = self.metric(srv, "gatherd_primitive_waiters")
            if waiters == 0 and gauge == 0:
                break
            if time.monotonic() > deadline:
                self.fail(f"{DISCONNECT_DEADLINE_S}s after the client left: waiters {waiters}, "
                          f"gatherd_primitive_waiters {gauge}\n{srv.diagnostics()}")
            time.sleep(0.02)
        # The permit, once released, is not handed to the client that left.
        self.release(srv, "semaphores", "dc", held["permit_id"])
        state = self.state(srv, "semaphores", "dc")
        self.assertEqual((state["available"], state["holders"], state["waiters"]), (1, [], 0), state)
        self.assertEqual(self.call(srv, "GET", "/healthz")[0], 200)

    def test_queue_get_disconnect_then_put_goes_to_a_later_get(self):
        srv = self.srv
        self.ok(self.call(srv, "PUT", "/v1/queues/dq", {"maxsize": 5}))
        # A long lease: if the item were leased to the client that left, the next get would miss it.
        sock = self.raw_post("/v1/queues/dq/get", {"wait_ms": 30000, "lease_ms": 60000})
        self.wait_until(lambda: self.state(srv, "queues", "dq")["get_waiters"] == 1, 3, "get parked")
        sock.close()
        t_closed = time.monotonic()
        self.wait_until(lambda: self.state(srv, "queues", "dq")["get_waiters"] == 0
                        and self.metric(srv, "gatherd_primitive_waiters") == 0,
                        DISCONNECT_DEADLINE_S - (time.monotonic() - t_closed),
                        "the get waiter left with its client")
        self.ok(self.call(srv, "POST", "/v1/queues/dq/put", {"items": ["keep-me"]}))
        body = self.ok(self.call(srv, "POST", "/v1/queues/dq/get", {"wait_ms": 0}))
        self.assertEqual([i["value"] for i in body["items"]], ["keep-me"], "the item went to the client that left")

    def test_queue_get_disconnect_racing_a_put_loses_no_item(self):
        # The put lands right after the close, maybe before the server has noticed: the item is
        # either never handed to the leaver, given back at once, or (at worst) comes back when
        # the leaver's short lease ends. It is never lost.
        srv = self.srv
        self.ok(self.call(srv, "PUT", "/v1/queues/race", {"maxsize": 5}))
        sock = self.raw_post("/v1/queues/race/get", {"wait_ms": 30000, "lease_ms": 1500})
        self.wait_until(lambda: self.state(srv, "queues", "race")["get_waiters"] == 1, 3, "get parked")
        sock.close()
        self.ok(self.call(srv, "POST", "/v1/queues/race/put", {"items": ["precious"]}))
        body = self.ok(self.call(srv, "POST", "/v1/queues/race/get", {"wait_ms": 5000}))
        self.assertEqual([i["value"] for i in body["items"]], ["precious"], "an item was lost")
        s = self.state(srv, "queues", "race")
        self.assertEqual((s["size"], s["leased"], s["unfinished"], s["get_waiters"]), (0, 1, 1, 0), s)


# ====================================================================== 8. metrics
class PrimitiveMetrics(PrimTestCase):
    def test_metrics_present_with_bounded_labels(self):
        srv = self.start()
        text = srv.metrics()
        for name, kind in (("gatherd_primitives", "gauge"), ("gatherd_primitive_waiters", "gauge"),
                           ("gatherd_primitive_acquire_wait_seconds", "histogram"),
                           ("gatherd_primitive_lease_expiries_total", "counter"),
                           ("gatherd_queue_items", "gauge")):
            self.assertRegex(text, rf"(?m)^# TYPE {name} {kind}$", f"{name} is not a {kind}")
        for name in ("gatherd_primitive_waiters", "gatherd_primitive_lease_expiries_total",
                     "gatherd_queue_items", "gatherd_primitive_acquire_wait_seconds_count",
                     "gatherd_primitive_acquire_wait_seconds_sum"):
            self.assertIsNotNone(metric_value(text, name), f"{name} has no sample")
        self.assertEqual(metric_sum(text, "gatherd_primitives") or 0, 0)
        self.assertEqual(metric_value(text, "gatherd_primitive_waiters"), 0)
        self.assertEqual(metric_value(text, "gatherd_queue_items"), 0)
        count0 = metric_value(text, "gatherd_primitive_acquire_wait_seconds_count")
        sum0 = metric_value(text, "gatherd_primitive_acquire_wait_seconds_sum")
        expiries0 = metric_value(text, "gatherd_primitive_lease_expiries_total")

        # One of each type, with names that must never show up as label values.
        secret = "tenant-7f3a9c-secret"
        self.put_sem(srv, f"sem-{secret}", 1)
        self.ok(self.call(srv, "PUT", f"/v1/locks/lock-{secret}", {}))
        self.ok(self.call(srv, "PUT", f"/v1/events/ev-{secret}", {}))
        self.ok(self.call(srv, "PUT", f"/v1/barriers/bar-{secret}", {"parties": 2}))
        self.ok(self.call(srv, "PUT", f"/v1/queues/q1-{secret}", {"maxsize": 10}))
        self.ok(self.call(srv, "PUT", f"/v1/queues/q2-{secret}", {"maxsize": 10}))
        text = srv.metrics()
        for t, n in (("semaphore", 1), ("lock", 1), ("event", 1), ("barrier", 1), ("queue", 2)):
            self.assertEqual(metric_value(text, "gatherd_primitives", type=t), n, f"gatherd_primitives{{type={t}}}")

        # Waiters: two parked acquires.
        held = self.acquire(srv, "semaphores", f"sem-{secret}", "a")
        taken = []
        waiters = [self.bg_acquire(srv, "semaphores", f"sem-{secret}", f"w{i}", wait_ms=LONG_WAIT_MS)
                   for i in range(2)]
        self.wait_until(lambda: self.metric(srv, "gatherd_primitive_waiters") == 2, 3, "gauge shows 2 waiters")
        time.sleep(0.3)  # so the first waiter waits measurably
        current = held
        for n in range(1, len(waiters) + 1):  # each waiter in turn, in whatever order they parked
            self.release(srv, "semaphores", f"sem-{secret}", current["permit_id"])
            self.wait_until(lambda: sum(c.done() for c in waiters) == n, 3, f"{n} waiters granted")
            [newest] = [c for c in waiters if c.done() and c not in taken]
            taken.append(newest)
            current = self.ok(newest.wait(0))
            self.assertPermit(current)
        self.release(srv, "semaphores", f"sem-{secret}", current["permit_id"])
        text = srv.metrics()
        self.assertEqual(metric_value(text, "gatherd_primitive_waiters"), 0)
        granted = metric_value(text, "gatherd_primitive_acquire_wait_seconds_count") - count0
        self.assertGreaterEqual(granted, 2, "waited acquires not observed")
        self.assertLessEqual(granted, 3)
        self.assertGreaterEqual(metric_value(text, "gatherd_primitive_acquire_wait_seconds_sum") - sum0,
                                0.25, "the histogram does not hold the time waited")

        # Queue items: ready + leased, all queues; done takes them out.
        self.ok(self.call(srv, "POST", f"/v1/queues/q1-{secret}/put", {"items": [1, 2, 3]}))
        self.ok(self.call(srv, "POST", f"/v1/queues/q2-{secret}/put", {"items": [4, 5]}))
        got = self.ok(self.call(srv, "POST", f"/v1/queues/q1-{secret}/get", {"max_items": 2}))["items"]
        self.assertEqual(self.metric(srv, "gatherd_queue_items"), 5)
        self.ok(self.call(srv, "POST", f"/v1/queues/q1-{secret}/done", {"receipts": [got[0]["receipt"]]}))
        self.assertEqual(self.metric(srv, "gatherd_queue_items"), 4)

        # Lease expiries: one permit and one queue item.
        self.acquire(srv, "locks", f"lock-{secret}", "short", ttl_ms=150)
        self.ok(self.call(srv, "POST", f"/v1/queues/q2-{secret}/get", {"lease_ms": 150}))
        self.wait_until(lambda: self.metric(srv, "gatherd_primitive_lease_expiries_total") - expiries0 == 2,
                        3, "2 lease expiries counted")
        time.sleep(0.2)
        self.assertEqual(self.metric(srv, "gatherd_primitive_lease_expiries_total") - expiries0, 2)
        self.assertEqual(self.metric(srv, "gatherd_queue_items"), 4, "an expired lease is still an item")

        # Bounded labels: only `type` (five values) and the histogram's `le`; no names anywhere.
        text = srv.metrics()
        self.assertNotIn(secret, text, "a primitive name appears in /metrics")
        families = ("gatherd_primitives", "gatherd_primitive_waiters", "gatherd_primitive_acquire_wait_seconds",
                    "gatherd_primitive_lease_expiries_total", "gatherd_queue_items",
                    "gatherd_primitives_expired_total", "gatherd_queue_bytes")
        sample = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+\S+")
        label = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
        seen = 0
        for line in text.splitlines():
            m = sample.match(line)
            if not m or not any(m.group(1) == f or m.group(1).startswith(f + "_") for f in families):
                continue
            seen += 1
            for k, v in label.findall(m.group(2) or ""):
                with self.subTest(line=line):
                    self.assertIn(k, ("type", "le"), f"unexpected label {k}")
                    if k == "type":
                        self.assertIn(v, PRIMITIVE_TYPES)
        self.assertGreaterEqual(seen, 9)


# ====================================================================== 9. the concurrency test
COUNTER_THREADS = 20
COUNTER_INCREMENTS = 10
RMW_SLEEP_S = 0.005  # between the read and the write: wide enough that unguarded updates collide


def read_counter(path):
    with open(path) as f:
        count, token = f.read().split()
    return int(count), int(token)


def write_counter(path, count, token):
    # Atomic replace, so a reader never sees a half-written file (only stale values: the race
    # under test is the read-modify-write, not torn writes).
    tmp = f"{path}.{threading.get_ident()}"
    with open(tmp, "w") as f:
        f.write(f"{count} {token}")
    os.replace(tmp, path)


class LockedCounter(PrimTestCase):
    def setUp(self):
        self.srv = self.start()
        self.tmp = tempfile.TemporaryDirectory(prefix="gatherd-counter-")
        self.addCleanup(self.tmp.cleanup)
        self.path = os.path.join(self.tmp.name, "counter")
        write_counter(self.path, 0, 0)

    def run_workers(self, increment):
        errors = []
        start = threading.Barrier(COUNTER_THREADS)

        def worker(i):
            try:
                conn = self.srv.connection(timeout=70)  # one keep-alive connection per client
                try:
                    start.wait(10)
                    for _ in range(COUNTER_INCREMENTS):
                        increment(i, conn)
                finally:
                    conn.close()
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(f"worker {i}: {e!r}")

        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(COUNTER_THREADS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertFalse(any(t.is_alive() for t in threads), "workers did not finish")
        return errors, time.monotonic() - t0

    def test_counter_under_gatherd_lock_is_exact(self):
        srv = self.srv
        fencing_violations = []

        def locked_increment(i, conn):
            status, _, permit = srv.json("POST", "/v1/locks/counter/acquire",
                                         {"holder": f"client-{i}", "wait_ms": 60000, "ttl_ms": 30000},
                                         timeout=70, conn=conn)
            if status != 200:
                raise AssertionError(f"acquire -> {status} {permit}")
            try:
                count, last_token = read_counter(self.path)
                if permit["fencing_token"] <= last_token:
                    fencing_violations.append((last_token, permit["fencing_token"]))
                time.sleep(RMW_SLEEP_S)
                write_counter(self.path, count + 1, permit["fencing_token"])
            finally:
                status, _, body = srv.json("POST", "/v1/locks/counter/release",
                                           {"permit_id": permit["permit_id"]}, timeout=10, conn=conn)
                if status != 200 or body.get("count") != 0:
                    raise AssertionError(f"release -> {status} {body}")

        errors, elapsed = self.run_workers(locked_increment)
        self.assertEqual(errors, [])
        count, _ = read_counter(self.path)
        self.assertEqual(count, COUNTER_THREADS * COUNTER_INCREMENTS,
                         f"lost updates under the lock ({elapsed:.1f}s)")
        self.assertEqual(fencing_violations, [], "a holder saw a fencing token not below its own")
        state = self.state(srv, "locks", "counter")
        self.assertEqual((state["available"], state["holders"], state["waiters"]), (1, [], 0), state)

    def test_counter_without_lock_loses_updates(self):
        def unlocked_increment(i, conn):
            count, token = read_counter(self.path)
            time.sleep(RMW_SLEEP_S)
            write_counter(self.path, count + 1, token)

        errors, _ = self.run_workers(unlocked_increment)
        self.assertEqual(errors, [])
        count, _ = read_counter(self.path)
        self.assertLess(count, COUNTER_THREADS * COUNTER_INCREMENTS,
                        "no update was lost without the lock: the test cannot tell the lock works")


if __name__ == "__main__":
    unittest.main()
