#!/usr/bin/env bash
# Raw HTTP throughput of gatherd against nginx `return 200` (one worker), side by side, interleaved.
#
#   GATHERD_BIN=build/release/service/gatherd bench/http_vs_nginx.sh
#
# Env: GATHERD_BIN (default build/release/service/gatherd), WRK_THREADS (2), WRK_CONNS (64),
#      WRK_DURATION (10s), BENCH_ROUNDS (1: rounds of nginx -> healthz -> POST, medians reported),
#      WRK_WARMUP (2s per target before round 1, discarded; 0 to skip), BENCH_STRICT (1: exit 1 when
#      a target is missed), BENCH_KEEP (1: keep the temp dir with wrk outputs and logs).
# Builds nothing and pins nothing. Prints a markdown section on stdout, progress on stderr.
# Exit status: 0 valid run, 2 invalid run (errors, non-202 answers) or setup failure.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$BENCH_DIR/.." && pwd)
GATHERD_BIN=${GATHERD_BIN:-build/release/service/gatherd}
case $GATHERD_BIN in /*) ;; *) GATHERD_BIN="$REPO_DIR/$GATHERD_BIN" ;; esac
WRK_BIN=${WRK_BIN:-wrk}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-64}
WRK_DURATION=${WRK_DURATION:-10s}
WRK_WARMUP=${WRK_WARMUP:-2s}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}

# shellcheck source=bench/lib/nginx.sh
source "$BENCH_DIR/lib/nginx.sh"
# shellcheck source=bench/lib/gatherd.sh
source "$BENCH_DIR/lib/gatherd.sh"

die() {
    echo "http_vs_nginx: $*" >&2
    exit 2
}

[[ -x $GATHERD_BIN ]] || die "no gatherd binary at $GATHERD_BIN (build first: scripts/build.sh release, or set GATHERD_BIN)"
command -v "$WRK_BIN" >/dev/null || die "wrk not found (apt-get install wrk)"
[[ -x $NGINX_BIN ]] || die "nginx not found at $NGINX_BIN (apt-get install nginx-light)"

START_TS=$(date -u +%Y-%m-%dT%H:%M:%SZ)
WORKDIR=$(mktemp -d -t gatherd-bench-http.XXXXXX)
WRK_PID=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ -n $WRK_PID ]]; then
        kill -TERM "$WRK_PID" 2>/dev/null || true
        wait "$WRK_PID" 2>/dev/null || true
    fi
    stop_gatherd
    stop_nginx
    if [[ ${BENCH_KEEP:-0} == 1 ]]; then
        echo "kept $WORKDIR" >&2
    else
        rm -rf "$WORKDIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_nginx "$WORKDIR" || die "could not start nginx"
echo "nginx: pid $NGINX_PID, port $NGINX_PORT (1 worker)" >&2

start_gatherd "$WORKDIR" --log-level warn --max-running 100000 --max-queued 1000000 \
    --default-retention-ms 1000 || die "could not start gatherd ($GATHERD_BIN)"
# shellcheck disable=SC2153 # set by start_gatherd
echo "gatherd: pid $GATHERD_PID, port $GATHERD_PORT" >&2

# Sanity: the POST must be accepted before its speed means anything.
post_status=$(curl -s -o "$WORKDIR/post_check.json" -w '%{http_code}' -X POST \
    -H 'Content-Type: application/json' --data '{"kind":"sleep","params":{"duration_ms":0}}' \
    "http://127.0.0.1:$GATHERD_PORT/v1/jobs" || true)
if [[ $post_status != 202 ]]; then
    echo "warning: POST /v1/jobs answered $post_status: $(head -c 300 "$WORKDIR/post_check.json" 2>/dev/null)" >&2
fi

# run_wrk NAME URL OUTFILE DURATION [wrk args...]: wrk in the background so that a signal ends it at once.
run_wrk() {
    local name=$1 url=$2 out=$3 duration=$4 rc=0
    shift 4
    echo "wrk $name: -t$WRK_THREADS -c$WRK_CONNS -d$duration $* $url" >&2
    "$WRK_BIN" -t"$WRK_THREADS" -c"$WRK_CONNS" -d"$duration" --latency "$@" "$url" >"$out" 2>&1 &
    WRK_PID=$!
    wait "$WRK_PID" || rc=$?
    WRK_PID=""
    if [[ $rc -ne 0 ]]; then
        echo "wrk $name exited with status $rc:" >&2
        cat "$out" >&2
    fi
    if ! gatherd_alive; then
        rc=0
        wait "$GATHERD_PID" 2>/dev/null || rc=$?
        GATHERD_PID=""
        if ((rc > 128)); then
            GATHERD_DEATH="killed by SIG$(kill -l $((rc - 128)))"
        else
            GATHERD_DEATH="exit status $rc"
        fi
        echo "gatherd died during '$name' ($GATHERD_DEATH); last log lines:" >&2
        tail -n 20 "$GATHERD_LOG" >&2 || true
        return 1
    fi
    sleep 1 # let sockets and CPU settle between runs
}

# measure SCENARIO ROUND URL [wrk args...]: one measured run, recorded in the manifest.
measure() {
    local scenario=$1 round=$2 url=$3 out
    shift 3
    out="$WORKDIR/$scenario-$round.txt"
    if run_wrk "$scenario (round $round)" "$url" "$out" "$WRK_DURATION" "$@"; then
        printf '%s\t%d\t%s\n' "$scenario" "$round" "$out" >>"$MANIFEST"
    else
        printf '%s\t%d\t%s\t%s\n' "$scenario" "$round" "$out" "gatherd crashed ($GATHERD_DEATH)" >>"$MANIFEST"
        return 1
    fi
}

NGINX_URL="http://127.0.0.1:$NGINX_PORT/"
HEALTHZ_URL="http://127.0.0.1:$GATHERD_PORT/healthz"
POST_URL="http://127.0.0.1:$GATHERD_PORT/v1/jobs"
POST_SCRIPT="$BENCH_DIR/post_job.lua"

MANIFEST="$WORKDIR/manifest.tsv"
: >"$MANIFEST"
GATHERD_DEATH=""
crashed=0
if [[ $WRK_WARMUP != 0 ]]; then
    run_wrk warmup-nginx "$NGINX_URL" "$WORKDIR/warmup-nginx.txt" "$WRK_WARMUP" &&
        run_wrk warmup-healthz "$HEALTHZ_URL" "$WORKDIR/warmup-healthz.txt" "$WRK_WARMUP" &&
        run_wrk warmup-post_jobs "$POST_URL" "$WORKDIR/warmup-post_jobs.txt" "$WRK_WARMUP" -s "$POST_SCRIPT" ||
        crashed=1
    if ((crashed)); then
        printf 'warmup\t0\t-\tgatherd crashed during the warmup (%s)\n' "$GATHERD_DEATH" >>"$MANIFEST"
    fi
fi

for ((round = 1; round <= BENCH_ROUNDS && !crashed; round++)); do
    measure nginx "$round" "$NGINX_URL" &&
        measure healthz "$round" "$HEALTHZ_URL" &&
        measure post_jobs "$round" "$POST_URL" -s "$POST_SCRIPT" ||
        crashed=1
done

rss_note="gatherd crashed ($GATHERD_DEATH); log tail on stderr."
if gatherd_alive; then
    rss_kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$GATHERD_PID/status")
    hwm_kib=$(awk '/^VmHWM:/ {print $2}' "/proc/$GATHERD_PID/status")
    rss_note="gatherd after the run: VmRSS $((rss_kib / 1024)) MiB, VmHWM $((hwm_kib / 1024)) MiB."
fi

echo "## Raw HTTP: gatherd vs nginx"
echo
echo "wrk -t$WRK_THREADS -c$WRK_CONNS -d$WRK_DURATION --latency, $BENCH_ROUNDS interleaved round(s)" \
    "(nginx -> GET /healthz -> POST /v1/jobs), warmup $WRK_WARMUP per target;" \
    "$(nproc) cores shared by wrk, nginx and gatherd, nothing pinned. Started $START_TS," \
    "binary \`${GATHERD_BIN#"$REPO_DIR"/}\`$(git -C "$REPO_DIR" rev-parse --short HEAD 2>/dev/null | sed 's/^/ at commit /')."
echo
report_rc=0
python3 "$BENCH_DIR/lib/wrk_report.py" "$MANIFEST" || report_rc=$?
echo
echo "$rss_note"
if [[ $report_rc -ne 0 ]]; then
    if [[ $report_rc -eq 2 ]]; then
        for f in "$WORKDIR"/*.txt; do
            echo "--- $(basename "$f")" >&2
            cat "$f" >&2
        done
    fi
    exit "$report_rc"
fi
