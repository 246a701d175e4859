"""Start and stop one gatherd process for a Python benchmark (python3 stdlib only).

    with GatherdProcess(binary, ["--log-level", "warn"], tag="gather_10k") as srv:
        srv.port, srv.pid ...

The log goes to a private temp dir (removed on exit unless keep=True). API tokens from the caller's
environment are dropped (they would turn every /v1 call into a 401) and GATHERD_HOST defaults to
loopback. On exit the process gets SIGTERM, then SIGKILL after 15 s.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time

import benchlib

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_bin(path):
    return path if os.path.isabs(path) else os.path.join(REPO_DIR, path)


def display_bin(path):
    return os.path.relpath(path, REPO_DIR) if path.startswith(REPO_DIR + os.sep) else path


def describe_exit(rc):
    if rc is None:
        return "running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"status {rc}"


class GatherdProcess:
    def __init__(self, binary, args, tag, keep=False):
        # binary: a path, or an argv prefix (list) for a stand-in server that takes --port 0
        self.binary = binary
        self.args = list(args)
        self.tag = tag
        self.keep = keep
        self.proc = None
        self.port = None
        self.workdir = tempfile.mkdtemp(prefix=f"gatherd-bench-{tag.replace(' ', '-')}.")
        self.log_path = os.path.join(self.workdir, "gatherd.log")

    @property
    def pid(self):
        return self.proc.pid

    def log(self, msg):
        print(f"{self.tag}: {msg}", file=sys.stderr, flush=True)

    def __enter__(self):
        env = {k: v for k, v in os.environ.items() if k not in ("GATHERD_API_TOKENS", "GATHERD_API_TOKEN")}
        env.setdefault("GATHERD_HOST", "127.0.0.1")
        with open(self.log_path, "wb") as log_file:
            prefix = list(self.binary) if isinstance(self.binary, (list, tuple)) else [self.binary]
            self.proc = subprocess.Popen([*prefix, "--port", "0", *self.args], stdout=log_file,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            self.port = benchlib.wait_gatherd_port(self.proc.pid, self.log_path, 30)
            benchlib.wait_http(f"http://127.0.0.1:{self.port}/healthz", 30)
        except RuntimeError as e:
            first = self.first_log_line()
            self.tail_log()
            self.__exit__(None, None, None)
            raise RuntimeError(f"{e}{f' (log: {first})' if first else ''}") from e
        except BaseException:
            self.tail_log()
            self.__exit__(None, None, None)
            raise
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def exit_note(self):
        """'' while running, else ' (gatherd exited: ...)' for error messages."""
        if self.proc is None or self.proc.poll() is None:
            return ""
        return f" (gatherd exited: {describe_exit(self.proc.returncode)})"

    def first_log_line(self):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.strip():
                        return line.strip()[:300]
        except OSError:
            pass
        return None

    def tail_log(self, n=20):
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = f.readlines()[-n:]
        except OSError:
            return
        if lines:
            self.log("last gatherd log lines:")
            sys.stderr.write("".join(lines))

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                rc = self.proc.wait(15)
                if rc != 0:
                    self.log(f"note: gatherd exited on SIGTERM with {describe_exit(rc)}")
            except subprocess.TimeoutExpired:
                self.log("gatherd ignored SIGTERM for 15 s; killing it")
                self.proc.kill()
                self.proc.wait()
        if self.keep:
            self.log(f"kept {self.workdir}")
        else:
            try:
                os.remove(self.log_path)
            except OSError:
                pass
            try:
                os.rmdir(self.workdir)
            except OSError:
                pass
        return False


def cpu_seconds(pid):
    """utime + stime of PID (all threads) in seconds, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def provenance(binary):
    """'built 2026-11-22 05:34 UTC; tree at commit abc1234' (+ ', with uncommitted source changes')."""
    import subprocess as sp
    parts = []
    try:
        parts.append("built " + time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.stat(binary).st_mtime)))
    except OSError:
        pass
    try:
        head = sp.run(["git", "-C", REPO_DIR, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                      timeout=10).stdout.strip()
        dirty = sp.run(["git", "-C", REPO_DIR, "status", "--porcelain", "--", "libcore", "service", "proto",
                        "CMakeLists.txt"], capture_output=True, text=True, timeout=10).stdout.strip()
        if head:
            parts.append(f"tree at commit {head}" + (", with uncommitted source changes" if dirty else ""))
    except (OSError, sp.SubprocessError):
        pass
    return "; ".join(parts)
