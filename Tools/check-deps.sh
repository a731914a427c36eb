#!/usr/bin/env bash
# Checks (and on Debian/Ubuntu as root, installs) what building CareSync needs beyond Swift:
# the SQLite development files (GRDB links the system libsqlite3) and the sqlite3 CLI used by the
# demo to show that replicas are plain SQLite files.
set -euo pipefail

if ! command -v swift >/dev/null 2>&1; then
  for candidate in /opt/swift/usr/bin /usr/share/swift/usr/bin; do
    [ -x "$candidate/swift" ] && export PATH="$candidate:$PATH"
  done
fi
command -v swift >/dev/null 2>&1 || { echo "error: Swift 6 toolchain not found on PATH (https://swift.org/install)" >&2; exit 1; }

missing=()
[ -e /usr/include/sqlite3.h ] || missing+=(libsqlite3-dev)
command -v sqlite3 >/dev/null 2>&1 || missing+=(sqlite3)
[ -e /usr/include/zlib.h ] || missing+=(zlib1g-dev)

if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing: ${missing[*]}" >&2
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  elif command -v apt-get >/dev/null 2>&1 && command -v sudo >/dev/null 2>&1; then
    echo "installing with sudo: ${missing[*]}" >&2
    sudo apt-get update -qq >/dev/null
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "error: missing system packages: ${missing[*]} (install them with your package manager)" >&2
    exit 1
  fi
fi
