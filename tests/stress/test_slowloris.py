"""Slowloris: 1,000 sockets that send a request header one byte at a time, and a legitimate client.

gatherd runs with --header-timeout-ms 4000 and --max-connections 4096 (the process's
RLIMIT_NOFILE soft limit is raised to its hard limit first, for this process and so for gatherd).
A forked attacker process opens SLOW_SOCKETS (1,000) connections from 127.0.0.2 (bound before
connect; all of 127/8 is loopback on Linux) and sends each the start of a request,
`GET /v1/jobs HTTP/1.1\\r\\nHost: ...\\r\\nX-Slow: aaaa...`, one byte per socket every 0.5 s, never
finishing the header. Whenever the server closes one, it opens another (after a pause when the
server closed it at once, as a connection cap does), so about 1,000 stay open for ATTACK_S
(default 8 s). Meanwhile the legitimate client, from 127.0.0.1, makes requests on fresh connections
(GET /healthz and POST /v1/jobs in turn, every 20 ms). At the end the attacker stops reconnecting
and waits for the server to close what is left.

Asserted (strictly): every legitimate request succeeds (200 / 202, complete answer); every slow
socket is closed by the server, none of them answered with anything but nothing or a 408; the
server's open-connection gauge falls back to our own connection. Asserted generously: each slow
socket closed within the header timeout + 2 s of its connect, and none closed before the timeout
except within the first second (refused at accept by a connection cap); the legitimate p99 < 1 s.
Printed: the legitimate client's p50/p99 and success rate, how long the server took to close the
slow sockets, how many it held at once.
"""

import collections
import http.client
import multiprocessing
import selectors
import time
import traceback
import unittest

import stresslib
from stresslib import ATTACKER_ADDRESS, GatherdTestCase, fmt_ms, percentile, report

SLOW_SOCKETS = int(stresslib.env_float("STRESS_SLOW_SOCKETS", 1000))
ATTACK_S = stresslib.env_float("STRESS_SLOWLORIS_S", 8.0)
HEADER_TIMEOUT_MS = 4000
TRICKLE_INTERVAL_S = 0.5
CLOSE_SLACK_S = 2.0           # generous: a loaded 2-core machine may wake us late
REFUSED_WITHIN_S = 1.0        # a close this soon after connect is a refusal at accept
LEGIT_INTERVAL_S = 0.020
LEGIT_P99_BOUND_S = 1.0
REQUEST_START = b"GET /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


class SlowSocket:
    __slots__ = ("sock", "t_connect", "sent", "received")

    def __init__(self, sock, t_connect):
        self.sock, self.t_connect, self.sent, self.received = sock, t_connect, 0, b""


def attacker(host, port, count, t_end, final_wait_s, pipe):
    """Keeps `count` slow sockets open from ATTACKER_ADDRESS until t_end, then waits up to
    final_wait_s for the server to close the rest. Sends back what happened to each socket."""
    out = {"lifetimes": [], "received": collections.Counter(), "connect_errors": [],
           "n_connect_errors": 0, "still_open": 0, "max_open": 0, "opened": 0}
    sel = selectors.DefaultSelector()
    open_socks = {}
    retry_at = []  # times at which to open a replacement

    def open_one():
        try:
            s = stresslib.connect_from(ATTACKER_ADDRESS, host, port, timeout=5)
        except OSError as e:
            out["n_connect_errors"] += 1
            if len(out["connect_errors"]) < 5:
                out["connect_errors"].append(repr(e))
            retry_at.append(time.monotonic() + 0.5)
            return
        s.setblocking(False)
        ss = SlowSocket(s, time.monotonic())
        open_socks[s.fileno()] = ss
        sel.register(s, selectors.EVENT_READ, ss)
        out["opened"] += 1
        trickle(ss)

    def closed_by_server(ss):
        lifetime = time.monotonic() - ss.t_connect
        sel.unregister(ss.sock)
        del open_socks[ss.sock.fileno()]
        ss.sock.close()
        out["lifetimes"].append(lifetime)
        out["received"][ss.received[:40]] += 1
        if time.monotonic() < t_end:
            retry_at.append(time.monotonic() + (0.5 if lifetime < REFUSED_WITHIN_S else 0.0))

    def trickle(ss):
        byte = REQUEST_START[ss.sent:ss.sent + 1] or b"a"
        try:
            ss.sock.send(byte)
            ss.sent += 1
        except BlockingIOError:
            pass
        except OSError:
            pass  # closed by the server: the read side reports it

    try:
        for _ in range(count):
            open_one()
        pipe.send({"ready": out["opened"]})
        next_trickle = time.monotonic() + TRICKLE_INTERVAL_S
        final_deadline = t_end + final_wait_s
        while True:
            now = time.monotonic()
            if now >= t_end and not open_socks:
                break
            if now >= final_deadline:
                break
            out["max_open"] = max(out["max_open"], len(open_socks))
            for key, _ in sel.select(timeout=0.05):
                ss = key.data
                try:
                    data = ss.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    ss.received += data
                else:
                    closed_by_server(ss)
            now = time.monotonic()
            if now >= next_trickle:
                for ss in list(open_socks.values()):
                    trickle(ss)
                next_trickle = now + TRICKLE_INTERVAL_S
            if now < t_end:
                due = [t for t in retry_at if t <= now]
                if due:
                    retry_at[:] = [t for t in retry_at if t > now]
                    for _ in due:
                        open_one()
        out["still_open"] = len(open_socks)
        out["still_open_ages"] = sorted(time.monotonic() - ss.t_connect
                                        for ss in open_socks.values())[-5:]
        for ss in list(open_socks.values()):
            ss.sock.close()
        out["received"] = dict(out["received"])
        pipe.send(out)
    except BaseException:  # noqa: BLE001 - reported by the parent
        pipe.send({"fatal": traceback.format_exc()})
    finally:
        pipe.close()


class Slowloris(GatherdTestCase):
    def test_slow_header_sockets_do_not_starve_a_legitimate_client(self):
        nofile = stresslib.raise_nofile_limit(SLOW_SOCKETS + 512)
        header_timeout_s = HEADER_TIMEOUT_MS / 1000
        srv = self.start("--header-timeout-ms", HEADER_TIMEOUT_MS, "--max-connections", 4096,
                         "--log-level", "warn")
        # Connecting from 127.0.0.2 to the 127.0.0.1 listener works on Linux; check it first.
        stresslib.connect_from(ATTACKER_ADDRESS, srv.host, srv.port).close()

        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe()
        t_end = time.monotonic() + 2.0 + ATTACK_S  # 2 s to open the sockets, then the attack
        final_wait_s = header_timeout_s + CLOSE_SLACK_S
        proc = ctx.Process(target=attacker, daemon=True, args=(
            srv.host, srv.port, SLOW_SOCKETS, t_end, final_wait_s, child_end))
        proc.start()
        child_end.close()
        self.addCleanup(lambda: (proc.terminate(), proc.join(5)) if proc.is_alive() else None)
        self.assertTrue(parent_end.poll(30), "the attacker did not open its sockets within 30 s")
        ready = parent_end.recv()
        self.assertNotIn("fatal", ready, ready.get("fatal"))

        # The legitimate client, from 127.0.0.1, while the attack lasts.
        legit = []  # (ok, seconds, what)
        gauge = []
        i = 0
        t_gauge = time.monotonic() + header_timeout_s / 2
        while time.monotonic() < t_end:
            t0 = time.monotonic()
            if i % 2 == 0:
                method, path, body, expect = "GET", "/healthz", None, 200
            else:
                method, path, body, expect = ("POST", "/v1/jobs",
                                              {"kind": "sleep", "params": {"duration_ms": 0}}, 202)
            i += 1
            try:
                status, _, payload = srv.request(method, path, body, timeout=30)
                ok, what = status == expect and len(payload) > 0, f"{method} {path} -> {status}"
            except (OSError, http.client.HTTPException) as e:
                ok, what = False, f"{method} {path}: {e!r}"
            legit.append((ok, time.monotonic() - t0, what))
            if t0 >= t_gauge and not gauge:
                gauge.append(stresslib.metric(srv, "gatherd_http_connections_open"))
            time.sleep(max(0.0, LEGIT_INTERVAL_S - (time.monotonic() - t0)))

        self.assertTrue(parent_end.poll(final_wait_s + 60), "the attacker sent no result")
        out = parent_end.recv()
        proc.join(10)
        self.assertNotIn("fatal", out, out.get("fatal"))

        lat = [s for _, s, _ in legit]
        failures = [w for ok, _, w in legit if not ok]
        success = 100.0 * (len(legit) - len(failures)) / max(1, len(legit))
        lifetimes = out["lifetimes"]
        refused = [t for t in lifetimes if t < REFUSED_WITHIN_S]
        timed_out = [t for t in lifetimes if t >= REFUSED_WITHIN_S]
        report("slowloris", f"{ready['ready']} slow sockets from {ATTACKER_ADDRESS} opened, "
               f"{out['opened']} over the {ATTACK_S:g} s attack (reopened as the server closed "
               f"them); at most {out['max_open']} open at once on our side, server gauge "
               f"gatherd_http_connections_open {gauge[0] if gauge else 'n/a'} mid-attack; "
               f"RLIMIT_NOFILE {nofile}")
        report("slowloris", f"server closed {len(lifetimes)} slow sockets: {len(timed_out)} at the "
               f"header timeout ({HEADER_TIMEOUT_MS} ms) after p50 {fmt_ms(percentile(timed_out, .5))}, "
               f"max {fmt_ms(max(timed_out, default=None))}; {len(refused)} within "
               f"{REFUSED_WITHIN_S:g} s (refused at accept); connect errors "
               f"{out['n_connect_errors']}; still open at the end {out['still_open']}; "
               f"answers: {out['received']}")
        report("slowloris", f"legitimate client from 127.0.0.1: {len(legit)} requests, success "
               f"{success:.1f}%, p50 {fmt_ms(percentile(lat, .5))}, p99 "
               f"{fmt_ms(percentile(lat, .99))}, max {fmt_ms(max(lat, default=None))}")

        self.assertEqual(failures[:5], [], f"{len(failures)} legitimate requests failed")
        self.assertGreater(len(legit), 50, "the legitimate client made too few requests")
        self.assertEqual(out["n_connect_errors"], 0, out["connect_errors"])
        self.assertEqual(out["still_open"], 0,
                         f"slow sockets still open {final_wait_s:g} s after the attack; oldest "
                         f"ages {out.get('still_open_ages')}")
        self.assertGreaterEqual(len(lifetimes), SLOW_SOCKETS)
        for data in out["received"]:
            self.assertTrue(data == b"" or data.startswith(b"HTTP/1.1 408"),
                            f"a slow socket got {data!r}")
        late = [t for t in lifetimes if t > header_timeout_s + CLOSE_SLACK_S]
        self.assertEqual(late[:5], [], f"{len(late)} slow sockets outlived the header timeout "
                                       f"of {HEADER_TIMEOUT_MS} ms by more than {CLOSE_SLACK_S} s")
        early = [t for t in timed_out if t < header_timeout_s - 0.25]
        self.assertEqual(early[:5], [], f"{len(early)} slow sockets closed before the header "
                                        f"timeout of {HEADER_TIMEOUT_MS} ms")
        self.assertLess(percentile(lat, .99), LEGIT_P99_BOUND_S, "legitimate client p99")
        settled = stresslib.wait_until(
            lambda: (stresslib.metric(srv, "gatherd_http_connections_open") or 0) <= 1, 10)
        self.assertTrue(settled, "server connections did not fall back after the attack: "
                        f"{stresslib.metric(srv, 'gatherd_http_connections_open')}")


if __name__ == "__main__":
    unittest.main()
