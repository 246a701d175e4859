#!/usr/bin/env bash
# Proves the docker-compose deployment (docs/operations.md "Deploy"). scripts/test.sh runs it last, so CI does.
#   scripts/deploy_check.sh [--no-containers]
#
# Always:
#   - docker-compose.yml (alone and with deploy/compose.ci.yml) passes `docker-compose config`;
#   - promtool: check config, check rules, and the rule unit tests
#     (deploy/prometheus/alerts_test.yml);
#   - scripts/deploy_check_dashboard.py: every query of every Grafana panel against a real
#     Prometheus scraping a real gatherd (build/release, or GATHERD_BIN) under load, the alert
#     rules evaluated there too, and gatherd exiting 0 on SIGTERM.
# Where podman can run containers (root, docs/operations.md "Containers with podman"), else a SKIP line and exit 0 for
# this part only:
#   - the image deploy/Dockerfile, Prometheus and nginx built from Debian packages
#     (deploy/compose.ci.yml: the official images cannot be pulled here; Grafana is left out),
#     brought up by docker-compose against a private podman socket;
#   - the image's HEALTHCHECK passes, gatherd runs as non-root and reaches the upstream by name;
#   - a job and a fetch batch (to the upstream, by service name) through the published port, and
#     Prometheus in the stack reporting up{job="gatherd"} == 1, the job and fetch counters, the
#     configured limits and the loaded alert rules;
#   - `docker-compose stop`: gatherd drains and exits 0.
# Idempotent: it removes what a previous interrupted run left (same compose project name) and
# leaves no container, volume, network or process behind. Images are kept as the build cache:
# the debootstrapped debian:bookworm-slim base and the images it built.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

containers=1
case "${1:-}" in
  "") ;;
  --no-containers) containers=0 ;;
  *) echo "usage: $0 [--no-containers]" >&2; exit 2 ;;
esac

PROJECT="gatherd-deploy-check"
COMPOSE=(docker-compose -p "$PROJECT" -f docker-compose.yml -f deploy/compose.ci.yml)
SERVICES=(gatherd prometheus upstream)
T0=$SECONDS
step() { echo "=== deploy [$((SECONDS - T0))s]: $*"; }

# --------------------------------------------------------------------------- always
step "packages"
ensure_packages "${DEPLOY_PACKAGES[@]}" "${TEST_PACKAGES[@]}"

step "docker-compose config"
docker-compose -f docker-compose.yml config -q
docker-compose -f docker-compose.yml -f deploy/compose.ci.yml config -q

step "promtool"
promtool check config deploy/prometheus/prometheus.yml
promtool check rules deploy/prometheus/alerts.yml
promtool test rules deploy/prometheus/alerts_test.yml

step "Grafana panels against Prometheus and gatherd"
if [ -z "${GATHERD_BIN:-}" ] && [ ! -x build/release/service/gatherd ]; then
  scripts/build.sh release gatherd
fi
/usr/bin/python3 scripts/deploy_check_dashboard.py

# --------------------------------------------------------------------------- containers
SOCK_DIR=""
SERVICE_PID=""

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cleanup() {
  if [ -n "$SOCK_DIR" ] && [ -S "$SOCK_DIR/podman.sock" ] && [ -n "${DOCKER_HOST:-}" ]; then
    "${COMPOSE[@]}" down -v --remove-orphans -t 30 >/dev/null 2>&1 || true
  fi
  if [ -n "$SERVICE_PID" ] && kill -0 "$SERVICE_PID" 2>/dev/null; then
    kill "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
  fi
  [ -z "$SOCK_DIR" ] || rm -rf "$SOCK_DIR"
}

skip() {
  echo "=== deploy: SKIP the container half: $*"
  echo "    (the compose, promtool and dashboard checks above ran and passed)"
}

# debian:bookworm-slim cannot be pulled here: make it with debootstrap from the host's Debian
# mirror (docs/operations.md), with the same apt sources as the official image.
ensure_base_image() {
  podman image exists docker.io/library/debian:bookworm-slim && return 0
  local sources=/etc/apt/sources.list.d/debian.sources mirror security tmp
  mirror=$(awk 'BEGIN{RS=""} /Suites:[^\n]*bookworm([ \n]|$)/ {for(i=1;i<NF;i++) if($i=="URIs:") {print $(i+1); exit}}' "$sources" 2>/dev/null || true)
  security=$(awk 'BEGIN{RS=""} /bookworm-security/ {for(i=1;i<NF;i++) if($i=="URIs:") {print $(i+1); exit}}' "$sources" 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  security=${security:-http://deb.debian.org/debian-security}
  step "base image: debootstrap bookworm from $mirror"
  tmp=$(mktemp -d /tmp/gatherd-rootfs.XXXXXX)
  if ! debootstrap --variant=minbase bookworm "$tmp/rootfs" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
    tail -5 "$tmp/debootstrap.log"
    rm -rf "$tmp"
    return 1
  fi
  rm -rf "$tmp"/rootfs/var/cache/apt/archives/*.deb "$tmp"/rootfs/var/cache/apt/*.bin \
    "$tmp"/rootfs/var/lib/apt/lists/* "$tmp/rootfs/etc/apt/sources.list"
  # As in the official image: apt keeps no package caches in image layers.
  cat >"$tmp/rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  cat >"$tmp/rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  tar -C "$tmp/rootfs" --numeric-owner -cf "$tmp/base.tar" .
  podman import --change 'CMD ["/bin/bash"]' "$tmp/base.tar" localhost/debian:bookworm >/dev/null
  podman tag localhost/debian:bookworm docker.io/library/debian:bookworm \
    docker.io/library/debian:bookworm-slim
  rm -rf "$tmp"
}

# Polls until the command succeeds or the deadline (seconds) passes.
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "timed out waiting for $what" >&2
      return 1
    fi
    sleep 1
  done
}

# One value of an instant query to the stack's Prometheus ("" when there is none).
prom_value() {
  curl -fsS --get "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/query" --data-urlencode "query=$1" |
    /usr/bin/python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")'
}
prom_at_least() { [ "$(prom_value "$1 >= $2")" != "" ]; }

container_check() {
  if [ "$(id -u)" -ne 0 ]; then skip "not root (podman runs rootful here)"; return 0; fi
  if ! ensure_packages "${CONTAINER_PACKAGES[@]}"; then skip "could not install ${CONTAINER_PACKAGES[*]}"; return 0; fi
  if [ ! -e /etc/containers/containers.conf ]; then
    # This VM refuses podman's default rlimits and crun's cgroup mode (CONTAINERS.md).
    mkdir -p /etc/containers
    printf '%s\n' '[containers]' 'default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]' \
      '[engine]' 'runtime = "runc"' >/etc/containers/containers.conf
  fi
  if ! ensure_base_image; then skip "could not debootstrap a debian:bookworm-slim base image"; return 0; fi
  local out
  if ! out=$(podman run --rm docker.io/library/debian:bookworm-slim true 2>&1); then
    skip "podman cannot run a container here: $out"
    return 0
  fi

  SOCK_DIR=$(mktemp -d /tmp/gatherd-podman.XXXXXX)
  trap cleanup EXIT
  step "podman system service on $SOCK_DIR/podman.sock"
  podman system service --time=0 "unix://$SOCK_DIR/podman.sock" >"$SOCK_DIR/service.log" 2>&1 &
  SERVICE_PID=$!
  export DOCKER_HOST="unix://$SOCK_DIR/podman.sock"
  wait_until 30 "the podman socket" curl -fsS --unix-socket "$SOCK_DIR/podman.sock" http://podman/_ping
  # Host ports of the stack: free ones, so that a gatherd or Prometheus on 8080/9090 is no obstacle.
  GATHERD_HTTP_PORT=$(free_port) PROMETHEUS_PORT=$(free_port) GRAFANA_PORT=$(free_port)
  export GATHERD_HTTP_PORT PROMETHEUS_PORT GRAFANA_PORT
  "${COMPOSE[@]}" down -v --remove-orphans >/dev/null 2>&1 || true

  step "docker-compose build ${SERVICES[*]}"
  local t=$SECONDS
  "${COMPOSE[@]}" build "${SERVICES[@]}"
  step "images built in $((SECONDS - t))s"
  podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep gatherd || true

  step "docker-compose up -d ${SERVICES[*]}"
  "${COMPOSE[@]}" up -d --no-build "${SERVICES[@]}"
  local gatherd_id gatherd="http://127.0.0.1:$GATHERD_HTTP_PORT"
  gatherd_id=$("${COMPOSE[@]}" ps -q gatherd)
  wait_until 60 "gatherd on the published port" curl -fsS "$gatherd/healthz"
  # podman does not schedule healthchecks without systemd: run the image's HEALTHCHECK once.
  podman healthcheck run "$gatherd_id"
  echo "HEALTHCHECK: healthy"
  # podman exec, not docker-compose exec: an exec through the API leaves its conmon for 5 minutes.
  local uid
  uid=$(podman exec "$gatherd_id" id -u)
  [ "$uid" != 0 ] || { echo "gatherd runs as root" >&2; return 1; }
  echo "gatherd runs as uid $uid"
  wait_until 30 "the upstream from gatherd's container" podman exec "$gatherd_id" curl -fsS http://upstream/healthz
  podman exec "$gatherd_id" curl -fsS http://upstream/json

  step "a job through the published port"
  local id
  id=$(curl -fsS "$gatherd/v1/jobs" -H 'Content-Type: application/json' \
    -d '{"kind":"sleep","params":{"duration_ms":50},"labels":{"from":"deploy_check"}}' |
    /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  local job
  job=$(curl -fsS "$gatherd/v1/jobs/$id?wait_ms=10000")
  grep -q '"state":"succeeded"' <<<"$job" || { echo "job: $job" >&2; return 1; }
  echo "job $id succeeded"

  step "a fetch batch through the published port to the upstream in the stack"
  local fetch
  fetch=$(curl -fsS "$gatherd/v1/fetch" -H 'Content-Type: application/json' \
    -d '{"requests":["http://upstream/json","http://upstream/status/404"]}')
  /usr/bin/python3 -c '
import json, sys
doc = json.loads(sys.argv[1])
got = [r["status"] for r in doc["results"]]
assert got == [200, 404] and "hello from upstream" in doc["results"][0]["body"], doc
print("fetch: statuses %s, GATHERD_FETCH_ALLOW_HOSTS lets gatherd reach upstream by name" % got)
' "$fetch" || { echo "fetch: $fetch" >&2; return 1; }

  step "Prometheus in the stack (scrape interval 15s)"
  wait_until 120 'up{job="gatherd"} == 1' prom_at_least 'up{job="gatherd"}' 1
  wait_until 120 "gatherd_jobs_submitted_total > 0" prom_at_least 'sum(gatherd_jobs_submitted_total{job="gatherd"})' 1
  wait_until 60 "gatherd_fetch_requests_total >= 2" prom_at_least 'sum(gatherd_fetch_requests_total{job="gatherd"})' 2
  echo "up{job=\"gatherd\"} = $(prom_value 'up{job="gatherd"}')," \
    "jobs submitted = $(prom_value 'sum(gatherd_jobs_submitted_total{job="gatherd"})')," \
    "fetch attempts = $(prom_value 'sum(gatherd_fetch_requests_total{job="gatherd"})')," \
    "max_queued = $(prom_value 'gatherd_limit{job="gatherd",name="max_queued"}')"
  local rules
  rules=$(curl -fsS "http://127.0.0.1:$PROMETHEUS_PORT/api/v1/rules" | /usr/bin/python3 -c '
import json, sys
groups = json.load(sys.stdin)["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [r["name"] for r in rules if r.get("health") not in ("ok", "unknown")]
print(len(rules) if rules and not bad else "bad: %s" % bad)')
  [[ "$rules" =~ ^[0-9]+$ ]] || { echo "alert rules in the stack: $rules" >&2; return 1; }
  echo "Prometheus loaded $rules rules from alerts.yml"

  step "docker-compose stop"
  t=$SECONDS
  "${COMPOSE[@]}" stop -t 30
  local code
  local logs
  code=$(podman inspect -f '{{.State.ExitCode}}' "$gatherd_id")
  logs=$("${COMPOSE[@]}" logs --no-color gatherd)
  tail -3 <<<"$logs"
  [ "$code" = 0 ] || { echo "gatherd exited with $code" >&2; return 1; }
  grep -q '"msg":"shutdown.done"' <<<"$logs"
  echo "gatherd exited 0 after draining (stack stopped in $((SECONDS - t))s)"

  "${COMPOSE[@]}" down -v --remove-orphans
  cleanup
  trap - EXIT
  SOCK_DIR="" SERVICE_PID=""
}

if [ "$containers" = 1 ]; then
  container_check
else
  echo "=== deploy: containers not checked (--no-containers)"
fi
step "deployment checks passed"
