#!/usr/bin/env bash
# Runs each fuzz target for a fixed time (default 120 s) from its seed corpus and prints what
# libFuzzer reports: executions, coverage, and whether anything crashed. Not part of the test
# command. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
#   fuzz/run.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(config request frames)
status=0
for t in "${targets[@]}"; do
  # Work on a copy of the seeds, so a run does not grow the corpus in the repository.
  work=$(mktemp -d)
  cp fuzz/corpus/"$t"/* "$work"/
  log=$(mktemp)
  cargo +nightly fuzz run -O "$t" "$work" -- -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=4096 >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  corpus=$(ls "$work" | wc -l)
  if [ $rc -eq 0 ]; then verdict="no crash"; else verdict="FINDING (rc $rc): see $log"; status=1; fi
  printf '%-8s %6ss  %9s execs  cov %6s  ft %6s  corpus %5s  %s\n' "$t" "$seconds" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$verdict"
  [ $rc -eq 0 ] && rm -f "$log"
  rm -rf "$work"
done
exit $status
