# Shared by the scripts: paths and the Debian packages gatherd needs.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

BUILD_PACKAGES=(g++ cmake ninja-build ccache pkg-config
  libboost1.81-all-dev libboost-url1.81-dev nlohmann-json3-dev libspdlog-dev prometheus-cpp-dev
  libssl-dev libgtest-dev libgmock-dev libbenchmark-dev libjemalloc-dev libhiredis-dev)
TEST_PACKAGES=(python3 python3-yaml python3-websockets python3-jsonschema prometheus curl
  redis-server redis-tools)
BENCH_PACKAGES=(nginx-light wrk)
# scripts/fuzz.sh: the libFuzzer targets build with clang (preset fuzz).
FUZZ_PACKAGES=(clang-14 libfuzzer-14-dev)
# scripts/deploy_check.sh: compose validation always; the containers when podman can run them
# (service names resolve with netavark + aardvark-dns, or CNI + dnsname: whichever podman uses).
DEPLOY_PACKAGES=(docker-compose)
CONTAINER_PACKAGES=(podman buildah debootstrap runc docker-compose
  netavark aardvark-dns golang-github-containernetworking-plugin-dnsname)

# Installs whichever of the given packages are missing (needs root on Debian 12).
ensure_packages() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Configures and builds one preset (release or asan): every target, or only the targets given
# after it (the image builds just `gatherd`).
build_preset() {
  local preset="$1"
  shift
  cmake --preset "$preset" -S "$ROOT" >/dev/null
  cmake --build --preset "$preset" -j "$(nproc)" ${1:+--target "$@"}
}
