#!/usr/bin/env bash
# Installs the Debian packages the test suite exercises for real. Needs root and apt; elsewhere it says what it skipped.
set -u
need=()
for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "setup_system: not root or no apt; tests needing ${need[*]} will skip" >&2
  exit 0
fi
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
