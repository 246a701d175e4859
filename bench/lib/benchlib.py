"""Shared helpers for the gatherd benchmarks (python3 stdlib only).

Used as a module by bench/retained_memory.py and as a small CLI by the shell scripts:

    python3 bench/lib/benchlib.py free-port
    python3 bench/lib/benchlib.py gatherd-port PID LOGFILE [TIMEOUT_S]
    python3 bench/lib/benchlib.py wait-http URL [TIMEOUT_S]
"""

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request


class InvalidRun(Exception):
    """The run did not measure what it claims to (an error answer, a job not succeeded...)."""


def failed_run(tag, title, error):
    """Reports a run that failed: an InvalidRun also goes into the markdown report under `title`.
    Returns the exit status (2)."""
    if isinstance(error, InvalidRun):
        print(f"{tag}: invalid run: {error}", file=sys.stderr, flush=True)
        print(f"## {title}\n\n**Invalid run**: {error}")
    else:
        print(f"{tag}: {error}", file=sys.stderr, flush=True)
    return 2


def free_port(host="127.0.0.1"):
    """A port that was free a moment ago (the caller retries if it races)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_from_log(path):
    """The port of the first {"msg":"listening",...} JSON line in a log file, or None."""
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if '"listening"' not in line:
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if obj.get("msg") == "listening" and isinstance(obj.get("port"), int):
                    return obj["port"]
    except FileNotFoundError:
        pass
    return None


def _socket_inodes(pid):
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(os.path.join(fd_dir, name))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening_ports_of(pid):
    """TCP ports a process listens on, read from /proc (fallback when the log line is filtered)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for row in f:
                    cols = row.split()
                    if len(cols) > 9 and cols[3] == "0A" and cols[9] in inodes:
                        ports.add(int(cols[1].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return sorted(ports)


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("State:"):
                    return "Z" not in line.split()[1]
    except OSError:
        return False
    return True


def wait_gatherd_port(pid, log_path, timeout_s=30.0):
    """Wait for gatherd's "listening" line (or, failing that, a listening socket of PID)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        port = port_from_log(log_path)
        if port:
            return port
        if not pid_alive(pid):
            raise RuntimeError(f"gatherd (pid {pid}) exited during startup; see {log_path}")
        ports = listening_ports_of(pid)
        if len(ports) == 1:
            # Listening but the line may be filtered by --log-level; give it a moment, then trust /proc.
            time.sleep(0.2)
            return port_from_log(log_path) or ports[0]
        time.sleep(0.05)
    raise RuntimeError(f"gatherd (pid {pid}) did not report a port within {timeout_s}s; see {log_path}")


def wait_http(url, timeout_s=30.0, expect=200):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == expect:
                    return
                last = f"status {r.status}"
        except urllib.error.HTTPError as e:
            last = f"status {e.code}"
        except OSError as e:
            last = str(e)
        time.sleep(0.05)
    raise RuntimeError(f"{url} not answering {expect} within {timeout_s}s (last: {last})")


def rss_bytes(pid):
    """VmRSS of PID in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def hwm_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


def _main(argv):
    if len(argv) >= 1 and argv[0] == "free-port":
        print(free_port())
        return 0
    if len(argv) >= 3 and argv[0] == "gatherd-port":
        timeout = float(argv[3]) if len(argv) > 3 else 30.0
        print(wait_gatherd_port(int(argv[1]), argv[2], timeout))
        return 0
    if len(argv) >= 2 and argv[0] == "wait-http":
        timeout = float(argv[2]) if len(argv) > 2 else 30.0
        wait_http(argv[1], timeout)
        return 0
    print(__doc__, file=sys.stderr)
    return 64


if __name__ == "__main__":
    try:
        sys.exit(_main(sys.argv[1:]))
    except RuntimeError as e:
        print(f"benchlib: {e}", file=sys.stderr)
        sys.exit(1)
