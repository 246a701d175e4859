#!/usr/bin/env bash
# The first command of the README: install what is missing, build, and start gatherd with
# sensible defaults on port 8080 (override with flags or GATHERD_* variables, see --help).
source "$(dirname "$0")/lib.sh"
ensure_packages "${BUILD_PACKAGES[@]}"
build_preset release
exec "$ROOT/build/release/service/gatherd" "$@"
