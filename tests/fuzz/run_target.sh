#!/usr/bin/env bash
# Runs one fuzz target for a bounded time over a copy of its seeds (the repository's corpus is
# never modified) with its dictionary, and fails on any crash, leak, timeout, out-of-memory or
# broken invariant. The failing input is kept in $GATHERD_FUZZ_ARTIFACTS (default: artifacts/
# beside the binary). Used by `ctest --preset fuzz` and scripts/fuzz.sh; docs/fuzzing.md.
#   tests/fuzz/run_target.sh BINARY SECONDS [more libFuzzer flags]
# GATHERD_FUZZ_SECONDS, when set, replaces SECONDS (scripts/fuzz.sh runs ctest's tests longer).
set -euo pipefail
binary="$1"
seconds="${GATHERD_FUZZ_SECONDS:-$2}"
shift 2
name="$(basename "$binary")"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
artifacts="${GATHERD_FUZZ_ARTIFACTS:-$(dirname "$binary")/artifacts}/$name"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
if [ -d "$here/corpus/$name" ]; then cp -r "$here/corpus/$name/." "$work/corpus/"; fi

# Inputs past these lengths add nothing but time; the request path needs room for the server's
# 8 KiB header limit (431) and a body.
max_len=4096
[ "$name" = fuzz_request_path ] && max_len=12288
flags=(-max_total_time="$seconds" -timeout=25 -rss_limit_mb=2048 -max_len="$max_len"
  -artifact_prefix="$work/artifacts/" -print_final_stats=1)
if [ -f "$here/dict/$name.dict" ]; then flags+=(-dict="$here/dict/$name.dict"); fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1}"
status=0
"$binary" "${flags[@]}" "$@" "$work/corpus" >"$work/log" 2>&1 || status=$?
# libFuzzer keeps slow-unit-* inputs (over 10 s of wall time, with exit 0) too: on a loaded machine
# those are the scheduler's doing, and a real hang is a timeout-* crash (-timeout) anyway. They
# are kept and reported, not failed on.
slow="$(find "$work/artifacts" -name 'slow-unit-*' | wc -l)"
if [ "$slow" -gt 0 ]; then
  mkdir -p "$artifacts"
  cp "$work/artifacts"/slow-unit-* "$artifacts/"
  rm -f "$work/artifacts"/slow-unit-*
fi
if [ "$status" -ne 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
  cat "$work/log" >&2
  mkdir -p "$artifacts"
  cp -r "$work/artifacts/." "$artifacts/"
  echo "$name FAILED (exit $status); reproduce with: $binary $artifacts/<file>" >&2
  ls -l "$artifacts" >&2
  exit 1
fi
# One line per run, from libFuzzer's final stats; also appended to $GATHERD_FUZZ_SUMMARY when
# set (scripts/fuzz.sh collects them there: ctest keeps no output of a test that passed).
runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")"
line="$name: ${runs:-?} inputs run in ${seconds} s, no crash; $(find "$work/corpus" -type f | wc -l) in the corpus after"
[ "$slow" -eq 0 ] || line="$line; $slow slow (over 10 s) kept in $artifacts"
echo "$line"
if [ -n "${GATHERD_FUZZ_SUMMARY:-}" ]; then echo "$line" >>"$GATHERD_FUZZ_SUMMARY"; fi
