"""Shared helpers of the stress tests (tests/stress/test_*.py).

The server side is the integration harness (tests/integration/harness.py), imported, not copied:
`Gatherd` starts the real binary (GATHERD_BIN) on 127.0.0.1 with --port 0, `GatherdTestCase` stops
it at cleanup and checks its exit status. This module adds what only the stress tests need:
percentiles, RLIMIT_NOFILE, flag discovery (for flags that are being added while these tests are
written), sockets bound to another loopback source address, and a small report printer.

Python 3 standard library only (test_shutdown_load.py also uses python3-websockets).
"""

import functools
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path

_INTEGRATION = Path(__file__).resolve().parents[1] / "integration"
if str(_INTEGRATION) not in sys.path:
    sys.path.insert(0, str(_INTEGRATION))

import harness  # noqa: E402  (re-exported for the tests)
from harness import CONFIGURATION_PATH, Gatherd, GatherdTestCase, gatherd_bin  # noqa: E402,F401

__all__ = ["ATTACKER_ADDRESS", "Gatherd", "GatherdTestCase", "connect_from", "documented_default",
           "env_float", "fmt_ms", "harness", "has_flag", "help_text", "metric", "percentile",
           "raise_nofile_limit", "report", "wait_until"]

# Linux: every 127/8 address is loopback. The slow sockets come from here, the legitimate
# client from 127.0.0.1, so a per-client-address connection cap tells them apart.
ATTACKER_ADDRESS = "127.0.0.2"
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def report(tag, msg):
    """One line of measured numbers, on stderr (unittest -v output; shows in the ctest log)."""
    print(f"[stress {tag}] {msg}", file=sys.stderr, flush=True)


def percentile(values, q):
    """The q-quantile (0..1) of values by nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def fmt_ms(seconds):
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f} ms"


def raise_nofile_limit(needed):
    """Raise this process's RLIMIT_NOFILE soft limit to its hard limit (children, gatherd among
    them, inherit it). Returns the new soft limit; AssertionError when it is still below needed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    elif hard == resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1 << 20), hard))
        except (ValueError, OSError):
            pass
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise AssertionError(
            f"RLIMIT_NOFILE is {soft} (hard {hard}); this test needs at least {needed} "
            f"descriptors (raise the hard limit: ulimit -Hn)")
    return soft


@functools.lru_cache(maxsize=None)
def help_text():
    """`gatherd --help`, to find out which flags the binary under test has."""
    out = subprocess.run([gatherd_bin(), "--help"], capture_output=True, text=True, timeout=30)
    return out.stdout + out.stderr


def has_flag(name):
    return re.search(r"(^|\s)" + re.escape(name) + r"(\s|=|$)", help_text(), re.M) is not None


def documented_default(flag):
    """The default of `flag` in docs/configuration.md's table (a string), or None."""
    try:
        text = Path(CONFIGURATION_PATH).read_text()
    except OSError:
        return None
    m = re.search(r"^\|\s*`" + re.escape(flag) + r"`\s*\|\s*`?([^`|]*)`?\s*\|", text, re.M)
    return m.group(1).strip() if m else None


def metric(srv, name, **labels):
    """One metric from /metrics (summed over the matching samples), or None."""
    return harness.metric_value(srv.metrics(), name, **labels)


def connect_from(source, host, port, timeout=5.0):
    """A TCP connection to host:port from the local address `source` (bound before connect; the
    port is chosen at connect time, so thousands of these do not run out of ports)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    except OSError:
        pass
    try:
        s.bind((source, 0))
        s.settimeout(timeout)
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def wait_until(predicate, timeout, interval=0.05):
    """Poll predicate() until it returns a true value (returned) or timeout passes (None)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def env_float(name, default):
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default
