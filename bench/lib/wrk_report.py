"""Turn wrk outputs of bench/http_vs_nginx.sh into a markdown table (python3 stdlib).

    python3 bench/lib/wrk_report.py MANIFEST

MANIFEST has one line per wrk run: "<scenario>\t<round>\t<path to wrk output>".
Scenarios: nginx, healthz, post_jobs. Ratios are taken per round (the runs of one round are
adjacent in time, so they share the machine's noise), then the median over rounds is reported.

Exit status: 0 = valid run, 2 = invalid run (errors or non-202 answers, unparsable output);
with BENCH_STRICT=1 also 1 when a target is missed.
"""

import os
import re
import statistics
import sys

SCENARIOS = [
    # key, label, target ratio to nginx (None = the reference)
    ("nginx", "nginx `return 200` GET / (1 worker)", None),
    ("healthz", "gatherd GET /healthz", 0.8),
    ("post_jobs", "gatherd POST /v1/jobs (sleep 0 ms)", 0.3),
]

KNOWN = {key for key, _, _ in SCENARIOS}

UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def parse_wrk(text):
    r = {"rps": None, "p50": None, "p99": None, "requests": None, "non2xx": 0,
         "socket_errors": {}, "post": None}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    if m:
        r["rps"] = float(m.group(1))
    m = re.search(r"^\s*(\d+) requests in ", text, re.M)
    if m:
        r["requests"] = int(m.group(1))
    in_dist = False
    for line in text.splitlines():
        if line.strip() == "Latency Distribution":
            in_dist = True
            continue
        if in_dist:
            m = re.match(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", line)
            if not m:
                in_dist = False
                continue
            ms = float(m.group(2)) * UNIT_MS[m.group(3)]
            if m.group(1) == "50":
                r["p50"] = ms
            elif m.group(1) == "99":
                r["p99"] = ms
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        r["non2xx"] = int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        r["socket_errors"] = {k: int(v) for k, v in
                              zip(("connect", "read", "write", "timeout"), m.groups()) if int(v)}
    m = re.search(r"^post_job: status_202=(\d+) non_202=(\d+) statuses=(\S+)", text, re.M)
    if m:
        r["post"] = {"ok": int(m.group(1)), "bad": int(m.group(2)), "statuses": m.group(3)}
    return r


def fmt_ms(v):
    if v is None:
        return "n/a"
    return f"{v * 1000:.0f} us" if v < 1 else f"{v:.2f} ms"


def main(manifest):
    runs = {}  # scenario -> round -> parsed
    crashes = []  # (scenario, round, note): the server died during that run
    with open(manifest) as f:
        for line in f:
            if not line.strip():
                continue
            scenario, rnd, path, *note = line.rstrip("\n").split("\t")
            if note:
                crashes.append((scenario, int(rnd), note[0]))
            if scenario in KNOWN and os.path.exists(path):
                with open(path, encoding="utf-8", errors="replace") as wf:
                    runs.setdefault(scenario, {})[int(rnd)] = parse_wrk(wf.read())

    invalid, missed, notes = [], [], []
    rows = []
    nginx = runs.get("nginx", {})
    for key, label, target in SCENARIOS:
        by_round = runs.get(key, {})
        problems = [] if by_round else ["not run"]
        problems += [f"round {rnd}: {note}" for sc, rnd, note in crashes if sc == key]
        for rnd, r in sorted(by_round.items()):
            if r["rps"] is None or r["p50"] is None or r["p99"] is None:
                problems.append(f"round {rnd}: unparsable wrk output")
            if r["non2xx"]:
                problems.append(f"round {rnd}: {r['non2xx']} non-2xx responses")
            if r["socket_errors"]:
                errs = ", ".join(f"{k} {v}" for k, v in r["socket_errors"].items())
                notes.append(f"{label}, round {rnd}: socket errors ({errs})")
                if "connect" in r["socket_errors"]:
                    problems.append(f"round {rnd}: socket errors ({errs})")
            if key == "post_jobs":
                p = r["post"]
                if p is None:
                    problems.append(f"round {rnd}: no status count from post_job.lua")
                elif p["bad"] or p["ok"] == 0:
                    problems.append(f"round {rnd}: {p['bad']} non-202 answers ({p['statuses']}), "
                                    f"{p['ok']} x 202")
        rps = [r["rps"] for r in by_round.values() if r["rps"] is not None]
        p50 = [r["p50"] for r in by_round.values() if r["p50"] is not None]
        p99 = [r["p99"] for r in by_round.values() if r["p99"] is not None]
        ratios = [by_round[n]["rps"] / nginx[n]["rps"] for n in by_round
                  if n in nginx and by_round[n]["rps"] and nginx[n]["rps"]]
        ratio = statistics.median(ratios) if ratios else None
        target_s = "-" if target is None else f">= {target:.1f}x"
        if problems:
            holds = "INVALID: " + "; ".join(problems)
            invalid.append(label)
        elif target is None:
            holds = "reference"
        elif ratio is None:
            holds = "n/a"
        elif ratio >= target:
            holds = "yes"
        else:
            holds = "**no**"
            missed.append(label)
        rows.append((label,
                     f"{statistics.median(rps):,.0f}" if rps else "n/a",
                     fmt_ms(statistics.median(p50)) if p50 else "n/a",
                     fmt_ms(statistics.median(p99)) if p99 else "n/a",
                     f"{ratio:.2f}x" if ratio is not None else "n/a",
                     target_s, holds))

    print("| scenario | requests/s | p50 | p99 | ratio to nginx | target | holds |")
    print("|---|---:|---:|---:|---:|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    nrounds = max((len(v) for v in runs.values()), default=0)
    if nrounds > 1:
        print()
        print(f"Medians over {nrounds} interleaved rounds; ratios are per-round ratios, median.")
    for n in notes:
        print(f"\nNote: {n}")
    for sc, rnd, note in crashes:
        if sc not in KNOWN:
            print(f"\n**{note}**")
            invalid.append(sc)
    if invalid:
        print(f"\n**Invalid run** ({', '.join(invalid)}): errors, crashes or missing runs; the numbers "
              "above do not measure the intended work.")
        return 2
    if missed and os.environ.get("BENCH_STRICT") == "1":
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(64)
    sys.exit(main(sys.argv[1]))
