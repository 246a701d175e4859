#!/usr/bin/env bash
# The second command of the README (and all that CI runs): install what is missing, then build
# and run every test: unit, integration and end-to-end in the release and the ASan+UBSan builds,
# the unit and integration tests under ThreadSanitizer, each libFuzzer target for a bounded time
# over its seeds (clang, preset fuzz), then the deployment (scripts/deploy_check.sh: compose,
# promtool, the Grafana panels against a real Prometheus, and the image and stack with podman
# where podman can run). docs/development.md has what each preset runs and costs.
#   scripts/test.sh [PRESET...]   only those presets, without the deployment check
source "$(dirname "$0")/lib.sh"
ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
presets=("${@:-release asan tsan fuzz}")
for preset in ${presets[@]}; do
  echo "=== $preset: build"
  build_preset "$preset"
  echo "=== $preset: test"
  ctest --preset "$preset" --test-dir "$ROOT/build/$preset" -j 2
done
[ $# -gt 0 ] || "$ROOT/scripts/deploy_check.sh"
echo "=== all tests passed"
