#!/usr/bin/env bash
# Builds the libFuzzer targets (preset fuzz: clang-14, ASan+UBSan; tests/fuzz/) and runs each
# for a bounded time over a copy of its seed corpus, nproc at a time; fails on any crash (the
# failing input is kept under build/fuzz/tests/fuzz/artifacts/). docs/fuzzing.md has the rest.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 15; GATHERD_FUZZ_JOBS targets at a time, default nproc)
source "$(dirname "$0")/lib.sh"
ensure_packages "${BUILD_PACKAGES[@]}" "${FUZZ_PACKAGES[@]}"
seconds="${1:-15}"
build_preset fuzz
summary="$ROOT/build/fuzz/fuzz-${seconds}s.txt"
: >"$summary"
GATHERD_FUZZ_SECONDS="$seconds" GATHERD_FUZZ_SUMMARY="$summary" \
  ctest --preset fuzz --test-dir "$ROOT/build/fuzz" -j "${GATHERD_FUZZ_JOBS:-$(nproc)}" \
  --timeout $((seconds + 300))
sort "$summary"
echo "=== every fuzz target ran ${seconds} s without a crash ($(date -u +%FT%TZ), $summary)"
