"""The routes the binary serves are exactly the routes proto/openapi.yaml lists."""

import re
import subprocess
import unittest

import yaml

from harness import OPENAPI_PATH, GatherdTestCase, child_env, gatherd_bin

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
PROBE_METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")


def spec_routes():
    doc = yaml.safe_load(OPENAPI_PATH.read_text())
    routes = set()
    for path, item in (doc.get("paths") or {}).items():
        for method in item or {}:
            if method in HTTP_METHODS:
                routes.add((method.upper(), path))
    return routes


def printed_routes():
    res = subprocess.run([gatherd_bin(), "--print-routes"], capture_output=True, text=True,
                         timeout=10, env=child_env())
    if res.returncode != 0:
        raise AssertionError(f"--print-routes exited {res.returncode}: {res.stderr}")
    routes = set()
    for line in res.stdout.splitlines():
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].startswith("/"):
            raise AssertionError(f"--print-routes line is not 'METHOD /path': {line!r}")
        routes.add((parts[0].upper(), parts[1]))
    return routes


def template_regex(path):
    return re.compile("^" + re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path)) + "$")


def concrete(path):
    return re.sub(r"\{[^}]*\}", "probe-0123456789abcdef", path)


class RoutesMatchContract(GatherdTestCase):
    def test_print_routes_equals_openapi(self):
        spec = spec_routes()
        self.assertTrue(spec, "proto/openapi.yaml lists no routes")
        printed = printed_routes()
        self.assertEqual(sorted(printed - spec), [], "served but not in proto/openapi.yaml")
        self.assertEqual(sorted(spec - printed), [], "in proto/openapi.yaml but not served")

    def test_core_routes_are_in_contract(self):
        spec = spec_routes()
        for route in [("POST", "/v1/jobs"), ("GET", "/v1/jobs"), ("POST", "/v1/jobs/batch"),
                      ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"),
                      ("GET", "/openapi.yaml")]:
            self.assertIn(route, spec)
        templated = {(m, re.sub(r"\{[^}]*\}", "{}", p)) for m, p in spec}
        for route in [("GET", "/v1/jobs/{}"), ("DELETE", "/v1/jobs/{}"),
                      ("POST", "/v1/jobs/{}/cancel")]:
            self.assertIn(route, templated)

    def test_every_contract_route_is_routed(self):
        """Each listed (method, path) reaches a handler (never the 404/405 of the router), and
        every other method on a listed path gets 405 with an Allow header naming the listed
        ones."""
        spec = spec_routes()
        srv = self.start()
        patterns = [(m, p, template_regex(p)) for m, p in spec]
        for path in sorted({p for _, p in spec}):
            url = concrete(path)
            served = {m for m, _, rx in patterns if rx.match(url)}
            own = {m for m, p in spec if p == path}
            for method in PROBE_METHODS:
                body = {} if method in ("POST", "PUT") else None
                with self.subTest(method=method, path=url):
                    status, headers, payload = srv.request(method, url, body)
                    if method in own:
                        self.assertNotEqual(status, 405, payload)
                        if "{" not in path:
                            self.assertNotEqual(status, 404, payload)
                        else:
                            # A 404 here must be about the resource, not the route.
                            self.assertIn(status // 100, (2, 4), payload)
                    elif method not in served:
                        self.assertEqual(status, 405, payload)
                        allow = {a.strip().upper() for a in
                                 (headers.get("Allow") or "").split(",") if a.strip()}
                        self.assertTrue(own <= allow, f"Allow {allow} lacks {own}")
                        self.assertTrue(allow <= served | {"HEAD", "OPTIONS"},
                                        f"Allow {allow} names methods not served on {url}")
        self.assertEqual(srv.request("GET", "/healthz")[0], 200)

    def test_unlisted_paths_are_404(self):
        spec = spec_routes()
        srv = self.start()
        patterns = [template_regex(p) for _, p in spec]
        for path in ("/v1/unlisted", "/v1/jobs/a/b", "/admin", "/v1/jobs/x/cancel/y",
                     "/openapi.json", "/debug/pprof"):
            self.assertFalse(any(rx.match(path) for rx in patterns), path)
            with self.subTest(path=path):
                self.assertProblem(srv.json("GET", path), 404, "not_found")


if __name__ == "__main__":
    unittest.main()
