#!/usr/bin/env bash
# Builds the libFuzzer targets (preset fuzz: clang-14, ASan+UBSan; tests/fuzz/) and runs each
# for a bounded time over a copy of its seed corpus, two at a time; fails on any crash (the
# failing input is kept under build/fuzz/tests/fuzz/artifacts/). docs/fuzzing.md has the rest.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 15)
source "$(dirname "$0")/lib.sh"
ensure_packages "${BUILD_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
seconds="${1:-15}"
build_preset fuzz
log="$ROOT/build/fuzz/fuzz-${seconds}s.log"
GATHERD_FUZZ_SECONDS="$seconds" ctest --preset fuzz --test-dir "$ROOT/build/fuzz" -j "$(nproc)" \
  --timeout $((seconds + 300)) --output-log "$log"
grep -h '^fuzz-summary:' "$log" | sed 's/^fuzz-summary: /  /'
echo "=== every fuzz target ran ${seconds} s without a crash ($(date -u +%FT%TZ); log: $log)"
