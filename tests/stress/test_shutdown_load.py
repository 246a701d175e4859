"""SIGTERM under load: 500 running jobs, long-polls, gathers, event waits and WebSockets in flight.

gatherd runs with --shutdown-grace-ms 3000 (no drain) and room for everything below to run at
once. In flight when SIGTERM is sent (each HTTP request on its own fresh connection, all of them
read by the server first: the inline jobs of every gather are running, every event waiter is
counted, and the server holds every connection):

- 500 running `sleep` jobs of 120 s (one `POST /v1/jobs/batch`; a fifth with `cleanup_ms` 50);
- 100 long-polls `GET /v1/jobs/{id}?wait_ms=60000` on them;
- 20 gathers `POST /v1/gather` of 5 of those ids and 2 inline 120 s sleeps each (15 answering
  JSON, 5 streaming NDJSON; every other one with `timeout_ms` 60000);
- 10 event waits `GET /v1/events/{name}?wait_ms=60000` (on events made by `PUT` first);
- 20 WebSockets (python3-websockets) each watching 5 jobs, and 5 raw WebSockets that watch 5 jobs
  but never answer a close frame (a client that hung).

Asserted (strictly): exit status 0 within --shutdown-grace-ms + 1 s of the SIGTERM; every HTTP
request above got a complete answer (any status; the status line, headers and the whole body,
JSON that parses; an NDJSON stream ends with its summary line), none a reset or a truncation;
every WebSocket received a close frame. Printed: the exit time, the statuses and states seen,
the close codes.

Known (issue 14 point 7): WebSocket clients that never answer the close frame can delay the
shutdown past grace + 1 s; the test stays strict about it.
"""

import asyncio
import base64
import collections
import http.client
import json
import os
import signal
import socket
import struct
import threading
import time
import unittest

import stresslib
from stresslib import GatherdTestCase, report

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - reported by the skip below
    websockets = None
    ConnectionClosed = Exception

GRACE_MS = 3000
EXIT_SLACK_S = 1.0
RUNNING_JOBS = 500
LONG_POLLS = 100
GATHERS_JSON = 15
GATHERS_NDJSON = 5
GATHER_IDS = 5
GATHER_INLINE = 2
EVENT_WAITS = 10
WS_CLIENTS = 20
WS_SILENT = 5
WS_WATCH = 5
LONG_SLEEP_MS = 120000
INLINE_JOBS = (GATHERS_JSON + GATHERS_NDJSON) * GATHER_INLINE
SETUP_TIMEOUT_S = 30


def sleep_spec(ms=LONG_SLEEP_MS, **params):
    return {"kind": "sleep", "params": {"duration_ms": ms, **params}}


class Outcome:
    """What one in-flight HTTP request got: (status, complete, detail) or an exception."""

    def __init__(self, what):
        self.what = what
        self.status = None
        self.error = None
        self.note = None  # e.g. the job state or the gather outcome


def http_call(port, method, path, body=None, headers=None, ndjson=False, outcome=None):
    """One request on a fresh connection, read to the end; fills outcome (never raises)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        data = None if body is None else json.dumps(body).encode()
        hdrs = dict(headers or {})
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()  # IncompleteRead on a truncated body (Content-Length or chunked)
        outcome.status = resp.status
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype == "application/x-ndjson":
            lines = [json.loads(line) for line in payload.decode().splitlines() if line.strip()]
            if resp.status == 200 and (not lines or "summary" not in lines[-1]):
                raise AssertionError(f"NDJSON stream without its summary line: {payload[-300:]!r}")
            outcome.note = lines[-1]["summary"]["outcome"] if lines else "empty"
        else:
            doc = json.loads(payload)  # a complete JSON document, or ValueError
            outcome.note = doc.get("state") or doc.get("outcome") or doc.get("code") or (
                f"set={doc['set']}" if "set" in doc else None)
    except Exception as e:  # noqa: BLE001 - asserted by the test
        outcome.error = repr(e)
    finally:
        conn.close()


# ------------------------------------------------------------ a WebSocket client that hangs
def ws_frame(opcode, payload):
    """A masked client frame."""
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


class SilentWebSocket:
    """Handshakes, watches jobs, then reads frames and never answers any (no close reply)."""

    def __init__(self, port, ids):
        self.port, self.ids = port, ids
        self.ready = threading.Event()
        self.error = None
        self.close_code = None
        self.close_at = None
        self.eof_at = None
        self.messages = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _recv_exact(self, sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _run(self):
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=120)
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                          f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(1)
                if not chunk:
                    raise EOFError("closed during the handshake")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise AssertionError(f"handshake answered {head[:100]!r}")
            sock.sendall(ws_frame(1, json.dumps(
                {"op": "watch", "ref": "w", "ids": self.ids}).encode()))
            while True:
                try:
                    b0, b1 = self._recv_exact(sock, 2)
                except EOFError:
                    self.eof_at = time.monotonic()
                    break
                except ConnectionResetError:
                    self.eof_at = time.monotonic()
                    break
                n = b1 & 0x7F
                if n == 126:
                    n = struct.unpack("!H", self._recv_exact(sock, 2))[0]
                elif n == 127:
                    n = struct.unpack("!Q", self._recv_exact(sock, 8))[0]
                payload = self._recv_exact(sock, n)
                opcode = b0 & 0x0F
                if opcode == 8:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 \
                        else 1005
                    self.close_at = time.monotonic()
                elif opcode == 1:
                    self.messages += 1
                    msg = json.loads(payload)
                    if msg.get("type") == "reply" and msg.get("ref") == "w":
                        if msg.get("status") != 200:
                            raise AssertionError(f"watch answered {msg}")
                        self.ready.set()
            sock.close()
        except Exception as e:  # noqa: BLE001 - asserted by the test
            self.error = repr(e)
            self.ready.set()


# ------------------------------------------------------------ well-behaved WebSocket clients
class WsWatchers:
    """WS_CLIENTS websockets-library clients on one asyncio loop in a thread; each watches its
    ids and then reads until the connection closes, recording the close frame it received."""

    def __init__(self, port, id_groups):
        self.port, self.id_groups = port, id_groups
        self.ready = 0
        self.all_ready = threading.Event()
        self.results = []  # (error, close code received or None, messages)
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _one(self, ids):
        messages = 0
        try:
            async with websockets.connect(f"ws://127.0.0.1:{self.port}/v1/ws", ping_interval=None,
                                          compression=None, open_timeout=30,
                                          close_timeout=30) as ws:
                await ws.send(json.dumps({"op": "watch", "ref": "w", "ids": ids}))
                while True:
                    msg = json.loads(await ws.recv())
                    messages += 1
                    if msg.get("type") == "reply" and msg.get("ref") == "w":
                        if msg.get("status") != 200:
                            raise AssertionError(f"watch answered {msg}")
                        break
                self.ready += 1
                if self.ready == len(self.id_groups):
                    self.all_ready.set()
                while True:
                    await ws.recv()
                    messages += 1
        except ConnectionClosed as e:
            self.results.append((None, e.rcvd.code if e.rcvd is not None else None, messages))
        except Exception as e:  # noqa: BLE001 - asserted by the test
            self.results.append((repr(e), None, messages))
            self.all_ready.set()

    async def _main(self):
        await asyncio.gather(*(self._one(ids) for ids in self.id_groups))
        self.all_ready.set()


class ShutdownUnderLoad(GatherdTestCase):
    def test_sigterm_with_everything_in_flight(self):
        if websockets is None:
            raise unittest.SkipTest("the websockets package is not importable by this Python "
                                    "(Debian: apt install python3-websockets; run /usr/bin/python3)")
        stresslib.raise_nofile_limit(1024)
        srv = self.start("--shutdown-grace-ms", GRACE_MS, "--max-running", 2000,
                         "--max-queued", 1000, "--max-connections", 4096, "--log-level", "warn")

        # 500 running jobs.
        specs = [sleep_spec(cleanup_ms=50) if i % 5 == 0 else sleep_spec()
                 for i in range(RUNNING_JOBS)]
        status, _, body = srv.json("POST", "/v1/jobs/batch", {"jobs": specs}, timeout=60)
        self.assertEqual(status, 202, body)
        ids = [job["id"] for job in body["jobs"]]
        self.assertEqual(len(ids), RUNNING_JOBS)
        for i in range(EVENT_WAITS):
            status, _, body = srv.json("PUT", f"/v1/events/stress-{i}", {})
            self.assertEqual(status, 200, body)

        # Everything else, each on its own connection / thread.
        outcomes, threads = [], []

        def launch(what, *args, **kwargs):
            outcome = Outcome(what)
            outcomes.append(outcome)
            t = threading.Thread(target=http_call, args=(srv.port, *args),
                                 kwargs={**kwargs, "outcome": outcome}, daemon=True)
            threads.append(t)
            t.start()

        for i in range(LONG_POLLS):
            launch("long-poll", "GET", f"/v1/jobs/{ids[i]}?wait_ms=60000")
        for i in range(GATHERS_JSON + GATHERS_NDJSON):
            entries = ids[i * GATHER_IDS:(i + 1) * GATHER_IDS] + [sleep_spec()] * GATHER_INLINE
            ndjson = i >= GATHERS_JSON
            body = {"jobs": entries, **({"timeout_ms": 60000} if i % 2 else {})}
            launch("gather ndjson" if ndjson else "gather", "POST", "/v1/gather", body,
                   headers={"Accept": "application/x-ndjson"} if ndjson else None)
        for i in range(EVENT_WAITS):
            launch("event wait", "GET", f"/v1/events/stress-{i}?wait_ms=60000")

        watch_groups = [ids[(i * WS_WATCH) % RUNNING_JOBS:][:WS_WATCH] for i in range(WS_CLIENTS)]
        watchers = WsWatchers(srv.port, watch_groups)
        watchers.thread.start()
        silent = [SilentWebSocket(srv.port, ids[-(i + 1) * WS_WATCH:][:WS_WATCH])
                  for i in range(WS_SILENT)]
        for s in silent:
            s.thread.start()

        # Wait until the server has every one of them in hand.
        self.assertTrue(watchers.all_ready.wait(SETUP_TIMEOUT_S), "WebSockets not watching")
        self.assertEqual([r for r in watchers.results if r[0]], [], "a WebSocket failed")
        for s in silent:
            self.assertTrue(s.ready.wait(SETUP_TIMEOUT_S), "raw WebSocket not watching")
            self.assertIsNone(s.error, "raw WebSocket failed")
        expect_running = RUNNING_JOBS + INLINE_JOBS
        expect_connections = len(outcomes) + WS_CLIENTS + WS_SILENT
        in_hand = stresslib.wait_until(lambda: (
            stresslib.metric(srv, "gatherd_jobs_running") == expect_running
            and (stresslib.metric(srv, "gatherd_primitive_waiters") or 0) >= EVENT_WAITS
            and (stresslib.metric(srv, "gatherd_http_connections_open") or 0)
            >= expect_connections), SETUP_TIMEOUT_S, interval=0.1)
        m = srv.metrics()
        self.assertTrue(in_hand, "not everything in flight: running "
                        f"{stresslib.harness.metric_value(m, 'gatherd_jobs_running')} of "
                        f"{expect_running}, connections "
                        f"{stresslib.harness.metric_value(m, 'gatherd_http_connections_open')} of "
                        f">= {expect_connections}")
        time.sleep(0.5)  # the long-polls' headers are read by now (their connections are open)
        early = [o for o in outcomes if o.status is not None or o.error is not None]
        self.assertEqual([(o.what, o.status, o.error) for o in early], [],
                         "requests answered before the SIGTERM")

        # SIGTERM, and the exit timed by a thread blocked in wait().
        exit_info = {}

        def reap():
            exit_info["rc"] = srv.proc.wait()
            exit_info["t"] = time.monotonic()
        reaper = threading.Thread(target=reap, daemon=True)
        reaper.start()
        t_sig = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        reaper.join(GRACE_MS / 1000 + 30)
        srv.stopped = True
        if reaper.is_alive():
            srv.kill()
            reaper.join(10)
            self.fail(f"gatherd did not exit within {GRACE_MS / 1000 + 30:g} s of SIGTERM\n"
                      f"{srv.diagnostics()}")
        exit_s = exit_info["t"] - t_sig
        for t in threads:
            t.join(30)
        watchers.thread.join(30)
        for s in silent:
            s.thread.join(30)

        by_kind = collections.defaultdict(collections.Counter)
        for o in outcomes:
            by_kind[o.what][f"{o.status} {o.note}" if o.error is None else "error"] += 1
        ws_codes = collections.Counter(code for _, code, _ in watchers.results)
        silent_codes = collections.Counter(s.close_code for s in silent)
        silent_close_s = [round(s.close_at - t_sig, 2) for s in silent if s.close_at]
        silent_eof_s = [round(s.eof_at - t_sig, 2) for s in silent if s.eof_at]
        report("sigterm", f"exit status {exit_info['rc']} {exit_s:.2f} s after SIGTERM "
               f"(--shutdown-grace-ms {GRACE_MS}, bound {GRACE_MS / 1000 + EXIT_SLACK_S:g} s) with "
               f"{expect_running} running jobs, {len(outcomes)} HTTP requests and "
               f"{WS_CLIENTS + WS_SILENT} WebSockets in flight")
        for kind, counts in sorted(by_kind.items()):
            report("sigterm", f"{kind}: " + ", ".join(f"{k} x {n}" for k, n in counts.items()))
        report("sigterm", f"WebSockets: close codes received {dict(ws_codes)}; silent clients "
               f"{dict(silent_codes)}, close frame at {silent_close_s} s, server closed TCP at "
               f"{silent_eof_s} s after SIGTERM")

        failed = [(o.what, o.status, o.error) for o in outcomes if o.error is not None]
        self.assertEqual(failed, [], "in-flight requests without a complete answer")
        self.assertEqual(len(watchers.results), WS_CLIENTS)
        self.assertEqual([r for r in watchers.results if r[0] or r[1] is None], [],
                         "WebSockets that received no close frame (error, code, messages)")
        self.assertEqual([s.error for s in silent if s.error or s.close_code is None], [],
                         "silent WebSockets that received no close frame")
        self.assertEqual(exit_info["rc"], 0, srv.diagnostics())
        self.assertLessEqual(
            exit_s, GRACE_MS / 1000 + EXIT_SLACK_S,
            f"exit {exit_s:.2f} s after SIGTERM, over --shutdown-grace-ms + {EXIT_SLACK_S:g} s; "
            f"the silent WebSockets (never answering the close frame) lost TCP at {silent_eof_s} s "
            f"(issue 14 point 7 when those are the last)\n{srv.diagnostics()}")


if __name__ == "__main__":
    unittest.main()
