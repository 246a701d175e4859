# shellcheck shell=bash
# shellcheck disable=SC2153 # GATHERD_BIN is set by the script that sources this file
# Start/stop the gatherd binary for the benchmarks. Source this file, then:
#   start_gatherd WORKDIR ARGS...   -> sets GATHERD_PID and GATHERD_PORT (logs in WORKDIR/gatherd.log)
#   stop_gatherd                    -> SIGTERM, up to 15 s, then SIGKILL

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

start_gatherd() {
    local workdir=$1
    shift
    GATHERD_LOG="$workdir/gatherd.log"
    # Auth from the caller's environment would turn every /v1 call into a 401; the host defaults to
    # loopback through the GATHERD_HOST variable (harmless if the flag is unknown).
    env -u GATHERD_API_TOKENS -u GATHERD_API_TOKEN GATHERD_HOST="${GATHERD_HOST:-127.0.0.1}" \
        "$GATHERD_BIN" --port 0 "$@" >"$GATHERD_LOG" 2>&1 &
    GATHERD_PID=$!
    if ! GATHERD_PORT=$(python3 "$BENCH_DIR/lib/benchlib.py" gatherd-port "$GATHERD_PID" "$GATHERD_LOG" 30); then
        echo "gatherd failed to start; last log lines:" >&2
        tail -n 20 "$GATHERD_LOG" >&2 || true
        return 1
    fi
    python3 "$BENCH_DIR/lib/benchlib.py" wait-http "http://127.0.0.1:$GATHERD_PORT/healthz" 30
}

gatherd_alive() {
    [[ -n ${GATHERD_PID:-} ]] && kill -0 "$GATHERD_PID" 2>/dev/null
}

stop_gatherd() {
    local i rc
    if [[ -z ${GATHERD_PID:-} ]]; then
        return 0
    fi
    kill -TERM "$GATHERD_PID" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$GATHERD_PID" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$GATHERD_PID" 2>/dev/null; then
        echo "gatherd (pid $GATHERD_PID) ignored SIGTERM for 15 s; killing it" >&2
        kill -KILL "$GATHERD_PID" 2>/dev/null || true
    fi
    rc=0
    wait "$GATHERD_PID" 2>/dev/null || rc=$?
    if [[ $rc -ne 0 ]]; then
        echo "note: gatherd exited with status $rc" >&2
    fi
    GATHERD_PID=""
}
