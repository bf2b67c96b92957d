#!/usr/bin/env bash
# Runs one libFuzzer binary for a bounded number of inputs over a corpus it
# may not change: new inputs go to NEW_DIR (emptied first), crashes to the
# working directory. Fails if libFuzzer finds a crash, a leak, a timeout or
# an allocation over the limits.
#
#   run_libfuzzer.sh FUZZER CORPUS_DIR NEW_DIR RUNS
set -euo pipefail
fuzzer=$1 corpus=$2 new=$3 runs=$4
rm -rf "$new"
mkdir -p "$new"
# libFuzzer writes new inputs to its first directory only.
exec "$fuzzer" "$new" "$corpus" -runs="$runs" -rss_limit_mb=512 -malloc_limit_mb=64 \
  -timeout=10 -max_len=8192 -print_final_stats=1
