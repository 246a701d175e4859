#!/usr/bin/env bash
# Run every gatherd benchmark and print one markdown report on stdout (progress on stderr).
#
#   bench/run_all.sh                                   # uses build/release/service/gatherd
#   GATHERD_BIN=/path/to/gatherd bench/run_all.sh > bench/results.md
#
# Env is passed through: WRK_THREADS, WRK_CONNS, WRK_DURATION, WRK_WARMUP, BENCH_ROUNDS, BENCH_STRICT,
# WS_CONNECTIONS, WS_PARALLEL, WS_HOLD_S, WS_WARMUP, WS_SERVERS, BENCH_SECONDS, BENCH_WARMUP_S,
# BENCH_CLIENTS, BENCH_CLIENT_PROCS, BENCH_LOCK_SCENARIOS. BENCH_PYTHON (default /usr/bin/python3, the
# Debian interpreter that has python3-websockets) runs the Python benchmarks.
# Exit status: the worst of the benchmarks' (0 valid, 1 target missed with BENCH_STRICT=1, 2 invalid).
set -uo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${BENCH_PYTHON:-/usr/bin/python3}
[[ -x $PYTHON ]] || PYTHON=python3
export GATHERD_BIN=${GATHERD_BIN:-build/release/service/gatherd}

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null)
echo "# gatherd benchmarks"
echo
echo "Host: $(nproc) cores${cpu:+ ($cpu)}, $(uname -sr); $(wrk --version 2>&1 | head -n1 | awk '{print $1, $2}');" \
    "$(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //'). Command: \`bench/run_all.sh\`."
echo

# Each benchmark cleans up its own processes on SIGTERM; forward ours to the one running.
CHILD=""
# shellcheck disable=SC2317 # invoked by the trap
on_signal() {
    if [[ -n $CHILD ]]; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    exit 143
}
trap on_signal INT TERM

worst=0
run() {
    local rc
    "$@" &
    CHILD=$!
    wait "$CHILD"
    rc=$?
    CHILD=""
    ((rc > worst)) && worst=$rc
    return 0
}

run "$BENCH_DIR/http_vs_nginx.sh"
echo
run "$PYTHON" "$BENCH_DIR/retained_memory.py"
echo
run "$PYTHON" "$BENCH_DIR/gather_10k.py"
echo
run "$PYTHON" "$BENCH_DIR/ws_idle.py"
echo
run "$PYTHON" "$BENCH_DIR/lock_roundtrip.py"
echo
run "$BENCH_DIR/fetch_vs_wrk.sh"
exit "$worst"
