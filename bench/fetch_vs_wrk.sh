#!/usr/bin/env bash
# Outbound fetch, side by side in one run (issue 4's targets):
#   1. throughput: gatherd fetching N URLs from a local nginx (`return 200`, one worker) with
#      `concurrency` C, against wrk with C connections on the same nginx (target >= 0.5x wrk);
#   2. limiter accuracy: one batch of 10,000 requests at rate 1,000/s, burst 1: the achieved rate
#      (N - 1) / elapsed against 1,000/s (target: within 1%).
#
#   bench/fetch_vs_wrk.sh
#
# Env: GATHERD_BIN (build/release/service/gatherd), FETCH_CONNS (64), FETCH_N (20000 per round),
#      WRK_DURATION (10s), BENCH_ROUNDS (3, interleaved: wrk then gatherd), LIMIT_RATE (1000),
#      LIMIT_N (10000). Prints a markdown section on stdout, progress on stderr.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
GATHERD_BIN=${GATHERD_BIN:-build/release/service/gatherd}
case $GATHERD_BIN in /*) ;; *) GATHERD_BIN="$REPO_DIR/$GATHERD_BIN" ;; esac
CONNS=${FETCH_CONNS:-64}
N=${FETCH_N:-20000}
WRK_DURATION=${WRK_DURATION:-10s}
ROUNDS=${BENCH_ROUNDS:-3}
LIMIT_RATE=${LIMIT_RATE:-1000}
LIMIT_N=${LIMIT_N:-10000}

source "$BENCH_DIR/lib/nginx.sh"
source "$BENCH_DIR/lib/gatherd.sh"

die() {
    echo "fetch_vs_wrk: $*" >&2
    exit 2
}
[[ -x $GATHERD_BIN ]] || die "no gatherd binary at $GATHERD_BIN (build first: scripts/build.sh release)"
command -v wrk >/dev/null || die "wrk not found (apt-get install wrk)"
[[ -x $NGINX_BIN ]] || die "nginx not found at $NGINX_BIN (apt-get install nginx-light)"

WORKDIR=$(mktemp -d -t gatherd-bench-fetch.XXXXXX)
cleanup() {
    stop_gatherd
    stop_nginx
    rm -rf "$WORKDIR"
}
trap cleanup EXIT

start_nginx "$WORKDIR" || die "could not start nginx"
start_gatherd "$WORKDIR" --log-level warn --allow-private-fetch --max-body-bytes 67108864 \
    --fetch-max-requests 1000000 --fetch-max-concurrency 4096 \
    --fetch-max-connections-per-host 4096 || die "could not start gatherd"
echo "nginx on $NGINX_PORT, gatherd on $GATHERD_PORT" >&2
TARGET="http://127.0.0.1:$NGINX_PORT/"
API="http://127.0.0.1:$GATHERD_PORT/v1/fetch"

# batch_body COUNT CONCURRENCY [RATE]: the JSON of one batch to nginx.
batch_body() {
    python3 - "$TARGET" "$1" "$2" "${3:-}" <<'PY'
import json, sys
url, n, conc, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
body = {"requests": [url] * n, "concurrency": conc}
if rate:
    body["rate"] = {"per_second": float(rate), "burst": 1}
print(json.dumps(body))
PY
}

# cpu_ticks PID -> user + system clock ticks of the process so far
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}
NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -n 1)
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# run_batch FILE -> "ok elapsed_ms wall_ms gatherd_cpu_us nginx_cpu_us" of one POST /v1/fetch
# (CPU: user + system of gatherd and of the nginx worker over the whole call, JSON included)
run_batch() {
    local started ended g0 n0 g1 n1
    # shellcheck disable=SC2153 # GATHERD_PID is set by start_gatherd (lib/gatherd.sh)
    g0=$(cpu_ticks "$GATHERD_PID")
    n0=$(cpu_ticks "$NGINX_WORKER")
    started=$(date +%s%N)
    curl -sS -X POST -H 'Content-Type: application/json' --data-binary "@$1" "$API" >"$WORKDIR/answer.json"
    ended=$(date +%s%N)
    g1=$(cpu_ticks "$GATHERD_PID")
    n1=$(cpu_ticks "$NGINX_WORKER")
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["ok"], s["elapsed_ms"], *sys.argv[2:])' \
        "$WORKDIR/answer.json" "$(((ended - started) / 1000000))" \
        "$(((g1 - g0) * TICK_US))" "$(((n1 - n0) * TICK_US))"
}

batch_body "$N" "$CONNS" >"$WORKDIR/batch.json"
batch_body 2000 "$CONNS" >"$WORKDIR/warmup.json"
run_batch "$WORKDIR/warmup.json" >/dev/null
wrk -t1 -c"$CONNS" -d2s "$TARGET" >/dev/null

rows=()
for ((round = 1; round <= ROUNDS; round++)); do
    echo "round $round: wrk -t1 -c$CONNS -d$WRK_DURATION" >&2
    wrk_rps=$(wrk -t1 -c"$CONNS" -d"$WRK_DURATION" "$TARGET" | awk '/^Requests\/sec:/ {print $2}')
    sleep 1
    echo "round $round: gatherd, $N URLs at concurrency $CONNS" >&2
    read -r ok elapsed wall gatherd_cpu nginx_cpu < <(run_batch "$WORKDIR/batch.json")
    [[ $ok == "$N" ]] || die "gatherd fetched only $ok of $N"
    rows+=("$round $wrk_rps $N $elapsed $wall $gatherd_cpu $nginx_cpu")
    sleep 1
done

echo "limiter: $LIMIT_N requests at $LIMIT_RATE/s, burst 1" >&2
batch_body "$LIMIT_N" "$CONNS" "$LIMIT_RATE" >"$WORKDIR/limit.json"
read -r limit_ok limit_elapsed _ _ _ < <(run_batch "$WORKDIR/limit.json")

echo "## Fetch: gatherd vs wrk against one nginx, and the rate limiter"
echo
echo "nginx \`return 200\` with one worker on loopback; $(nproc) cores shared by nginx, wrk/gatherd" \
    "and the client; nothing pinned. Binary \`${GATHERD_BIN#"$REPO_DIR"/}\`$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null | sed 's/^/ at commit /')."
echo "Command: \`FETCH_CONNS=$CONNS FETCH_N=$N BENCH_ROUNDS=$ROUNDS bench/fetch_vs_wrk.sh\`."
echo
echo "| round | wrk -c$CONNS req/s | gatherd: URLs | server elapsed ms | gatherd fetches/s | ratio | gatherd CPU us/URL | nginx CPU us/URL |"
echo "|---|---|---|---|---|---|---|---|"
python3 - "${rows[@]}" <<'PY'
import statistics, sys
ratios = []
for row in sys.argv[1:]:
    rnd, wrk, n, elapsed, wall, gcpu, ncpu = row.split()
    rate = int(n) / (int(elapsed) / 1000)
    ratio = rate / float(wrk)
    ratios.append(ratio)
    print(f"| {rnd} | {float(wrk):,.0f} | {int(n):,} | {int(elapsed):,} | {rate:,.0f} | {ratio:.2f}x "
          f"| {int(gcpu) / int(n):.1f} | {int(ncpu) / int(n):.1f} |")
print()
print(f"Median ratio: **{statistics.median(ratios):.2f}x** wrk (target >= 0.5x). CPU columns: user + "
      "system time of gatherd (all threads, request and answer JSON included) and of the nginx "
      "worker over the whole `POST /v1/fetch`, from /proc, per URL.")
PY
python3 - "$limit_ok" "$LIMIT_N" "$limit_elapsed" "$LIMIT_RATE" <<'PY'
import sys
ok, n, elapsed_ms, rate = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ideal = (n - 1) / rate  # the first request goes at once
achieved = (n - 1) / (elapsed_ms / 1000)
error = (achieved - rate) / rate * 100
print()
print(f"Limiter: {ok:,} of {n:,} requests at {rate:,.0f}/s (burst 1) took {elapsed_ms:,} ms "
      f"(ideal {ideal * 1000:,.0f} ms): {achieved:,.1f} requests/s, {error:+.2f}% "
      f"(target within 1%).")
PY
