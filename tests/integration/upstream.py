"""An HTTP(S) upstream for the fetch tests, in the test process (standard library only).

Endpoints (GET or POST):
  /echo                      200 {"method","path","headers","body"}
  /delay/<ms>                200 after <ms> milliseconds
  /status/<code>             that status; ?retry_after=S adds Retry-After: S
  /flaky/<key>?fail=N&status=503&retry_after=S
                             the first N hits of <key> answer `status`, later ones 200
  /bytes/<n>                 n bytes of 'x'; ?chunked=1 sends them chunked
  /redirect/<n>              302 to /redirect/<n-1>; /redirect/0 is 200
Every hit is recorded (path with query, monotonic time), and so is the most requests in flight
at once for each path with query (tests give theirs a unique query).
"""

import http.server
import json
import os
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        self._serve()

    def do_POST(self):
        self._serve()

    def _serve(self):
        up = self.server.upstream
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        up.enter(self.path)
        try:
            self._answer(up, parts, query, body)
        finally:
            up.leave(self.path)

    def _send(self, status, body=b"", headers=None, chunked=False):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(body), 1000):
                piece = body[i:i + 1000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def _answer(self, up, parts, query, body):
        name = parts[0]
        if name == "echo":
            doc = {"method": self.command, "path": self.path,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": body.decode("utf-8", "replace")}
            self._send(200, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        elif name == "delay":
            time.sleep(int(parts[1]) / 1000)
            self._send(200, b"slept")
        elif name == "status":
            headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
            self._send(int(parts[1]), b"status %s" % parts[1].encode(), headers)
        elif name == "flaky":
            hits = up.count_hit(parts[1])
            if hits <= int(query.get("fail", "1")):
                headers = {"Retry-After": query["retry_after"]} if "retry_after" in query else {}
                self._send(int(query.get("status", "503")), b"not yet", headers)
            else:
                self._send(200, b"ok after %d" % (hits - 1))
        elif name == "bytes":
            self._send(200, b"x" * int(parts[1]), chunked=query.get("chunked") == "1")
        elif name == "redirect":
            n = int(parts[1])
            if n > 0:
                self._send(302, b"", {"Location": f"/redirect/{n - 1}"})
            else:
                self._send(200, b"arrived")
        else:
            self._send(404, b"no such endpoint")


class Upstream:
    """A threaded HTTP server on 127.0.0.1 (HTTPS when given a certificate and key)."""

    def __init__(self, certfile=None, keyfile=None):
        self._lock = threading.Lock()
        self.hits = []  # (path, monotonic seconds)
        self._inflight = {}
        self._max_inflight = {}
        self._counts = {}
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.server.upstream = self
        self.scheme = "http"
        if certfile:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path, host="127.0.0.1"):
        return f"{self.scheme}://{host}:{self.port}{path}"

    def enter(self, path):
        with self._lock:
            self.hits.append((path, time.monotonic()))
            self._inflight[path] = self._inflight.get(path, 0) + 1
            self._max_inflight[path] = max(self._max_inflight.get(path, 0), self._inflight[path])

    def leave(self, path):
        with self._lock:
            self._inflight[path] -= 1

    def max_inflight(self, path):
        with self._lock:
            return self._max_inflight.get(path, 0)

    def count_hit(self, key):
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1
            return self._counts[key]

    def hit_times(self, prefix):
        with self._lock:
            return [t for p, t in self.hits if p.startswith(prefix)]

    def reset(self):
        with self._lock:
            self.hits.clear()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TestCA:
    """A throwaway CA and a certificate for localhost/127.0.0.1 signed by it (openssl CLI)."""

    def __init__(self, names=("localhost",), ips=("127.0.0.1",)):
        self._tmp = tempfile.TemporaryDirectory(prefix="gatherd-ca-")
        d = self._tmp.name
        self.ca_file = os.path.join(d, "ca.pem")
        self.cert_file = os.path.join(d, "leaf.pem")
        self.key_file = os.path.join(d, "leaf.key")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        run = lambda *args: subprocess.run(["openssl", *args], check=True, capture_output=True)
        run("req", "-x509", *ec, "-keyout", os.path.join(d, "ca.key"), "-out", self.ca_file,
            "-days", "1", "-subj", "/CN=gatherd test CA")
        run("req", *ec, "-keyout", self.key_file, "-out", os.path.join(d, "leaf.csr"),
            "-subj", "/CN=" + names[0])
        alt = ",".join([f"DNS:{n}" for n in names] + [f"IP:{i}" for i in ips])
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write(f"subjectAltName={alt}\n")
        run("x509", "-req", "-in", os.path.join(d, "leaf.csr"), "-CA", self.ca_file,
            "-CAkey", os.path.join(d, "ca.key"), "-CAcreateserial", "-out", self.cert_file,
            "-days", "1", "-extfile", ext)

    def close(self):
        self._tmp.cleanup()
