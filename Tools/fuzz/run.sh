#!/usr/bin/env bash
# Builds the libFuzzer executables (release, -sanitize=fuzzer,address) and runs one target.
#
#   Tools/fuzz/run.sh <frame|message|bundle|hub> [seconds] [extra libFuzzer flags...]
#
# The committed corpus Tests/Fuzz/corpus/<target> seeds the run (read-only); new inputs go to
# Tools/fuzz/corpus/<target> (not in git); crashes go to Tools/fuzz/artifacts/<target>. Copy a
# crashing input into Tests/Fuzz/corpus/<target>/ once it is fixed: `swift test --filter
# FuzzCorpusTests` replays every committed input in the ordinary test run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target="${1:?usage: Tools/fuzz/run.sh <frame|message|bundle|hub> [seconds] [libFuzzer flags...]}"
seconds="${2:-600}"
shift $(( $# >= 2 ? 2 : 1 ))
case "$target" in frame|message|bundle|hub) ;; *) echo "unknown target '$target' (frame, message, bundle or hub)" >&2; exit 64 ;; esac
source "$here/../check-deps.sh"
cd "$here"
# SwiftPM's --sanitize=fuzzer links libFuzzer but does not add coverage instrumentation (checked
# with Swift 6.3.1: no __sancov sections in the objects), so it is asked for explicitly.
swift build -c release --scratch-path "$here/.build" --sanitize=fuzzer --sanitize=address \
    -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table
binary="$here/.build/release/fuzz-$target"
mkdir -p "corpus/$target" "artifacts/$target"
scratch="$(mktemp -d -p /dev/shm caresync-fuzz.XXXXXX 2>/dev/null || mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# The stores' temporary files go to memory (/dev/shm) when it exists: fsync there costs nothing.
CARESYNC_FUZZ_TMP="$scratch" ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}" \
    "$binary" "corpus/$target" "$here/../../Tests/Fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="artifacts/$target/" -print_final_stats=1 "$@"
