# shellcheck shell=bash
# Start nginx (one worker, `return 200 "ok"`) in the foreground on a free loopback port.
# Source this file, then: start_nginx WORKDIR  -> sets NGINX_PID and NGINX_PORT.
# Everything nginx writes (pid, lock, temp dirs, error log) stays under WORKDIR/nginx.

BENCH_DIR=${BENCH_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}

start_nginx() {
    local workdir=$1 prefix user_line attempt
    prefix="$workdir/nginx"
    mkdir -p "$prefix"
    # The worker drops to nobody when the master is root; let it traverse the prefix.
    chmod 755 "$workdir" "$prefix"
    user_line=""
    if [[ $(id -u) -eq 0 ]]; then
        user_line="user nobody nogroup;"
    fi
    for attempt in 1 2 3 4 5; do
        NGINX_PORT=$(python3 "$BENCH_DIR/lib/benchlib.py" free-port)
        sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@USER_LINE@|$user_line|g" \
            "$BENCH_DIR/nginx.conf.template" >"$prefix/nginx.conf"
        # -p/-e keep nginx away from its compiled-in /etc/nginx, /var/log/nginx and /run paths.
        "$NGINX_BIN" -p "$prefix/" -e stderr -c "$prefix/nginx.conf" 2>>"$prefix/error.log" &
        NGINX_PID=$!
        if python3 "$BENCH_DIR/lib/benchlib.py" wait-http "http://127.0.0.1:$NGINX_PORT/" 10 2>/dev/null; then
            return 0
        fi
        kill "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        echo "nginx did not start on port $NGINX_PORT (attempt $attempt):" >&2
        tail -n 5 "$prefix/error.log" >&2 || true
    done
    return 1
}

stop_nginx() {
    if [[ -n ${NGINX_PID:-} ]]; then
        # SIGQUIT = graceful; SIGTERM = fast. The master takes its worker down with it.
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=""
    fi
}
