#!/usr/bin/env bash
# Installs the build dependencies when missing and builds one preset: release (default) or asan.
# Targets after the preset build only those (deploy/Dockerfile: `scripts/build.sh release gatherd`).
source "$(dirname "$0")/lib.sh"
ensure_packages "${BUILD_PACKAGES[@]}"
build_preset "${1:-release}" "${@:2}"
