#!/usr/bin/env bash
# Runs the libFuzzer harnesses built by `make BUILD=fuzz fuzz-bins`.
#   fuzz/run.sh [--replay] BUILD_DIR SECONDS JOBS NAME...
# For each NAME: with --replay, first every committed input of
# fuzz/corpus/NAME/ once (-runs=0: a regression check), then SECONDS of
# fuzzing, JOBS harnesses at a time. New inputs go to BUILD_DIR/corpus/NAME/
# (the committed corpus is only read), crashes to BUILD_DIR/artifacts/,
# logs to BUILD_DIR/logs/NAME.log; fuzz/dict/NAME.dict, if present, is passed
# as a libFuzzer dictionary. Prints one line per harness with its
# executions and speed; exits non-zero if any harness failed.
set -uo pipefail
cd "$(dirname "$0")/.."

replay=0
if [[ ${1:-} == --replay ]]; then replay=1; shift; fi
[[ $# -ge 4 ]] || { echo "usage: $0 [--replay] BUILD_DIR SECONDS JOBS NAME..." >&2; exit 2; }
B=$1 SECONDS_EACH=$2 JOBS=$3
shift 3

mkdir -p "$B/logs" "$B/artifacts"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# One harness: replay (optional), then fuzz. Output: one summary line.
one() {
  local name=$1 bin="$B/bin/fuzz_$1" log="$B/logs/$1.log" seeds="fuzz/corpus/$1"
  local work="$B/corpus/$1" dict=()
  mkdir -p "$work"
  [[ -f fuzz/dict/$name.dict ]] && dict=(-dict="fuzz/dict/$name.dict")
  : >"$log"
  if [[ ! -x $bin ]]; then echo "FAIL $name: $bin not built"; return 1; fi
  if [[ $replay -eq 1 ]]; then
    if ! "$bin" -runs=0 "${dict[@]}" "$seeds" >>"$log" 2>&1; then
      echo "FAIL $name: committed corpus crashes (see $log)"; return 1
    fi
  fi
  if ! "$bin" -max_total_time="$SECONDS_EACH" -timeout=25 -rss_limit_mb=2048 -max_len=65536 \
       -print_final_stats=1 -artifact_prefix="$B/artifacts/$name-" "${dict[@]}" \
       "$work" "$seeds" >>"$log" 2>&1; then
    echo "FAIL $name: see $log and $B/artifacts/$name-*"; return 1
  fi
  local execs speed
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  echo "ok   $name: ${execs:-?} execs in ${SECONDS_EACH}s (${speed:-?}/s), corpus $(ls "$work" | wc -l) new + $(ls "$seeds" | wc -l) committed"
}

names=() failed=0
for name in "$@"; do
  while [[ $(jobs -rp | wc -l) -ge $JOBS ]]; do wait -n; done
  rm -f "$B/logs/$name.summary"
  one "$name" > "$B/logs/$name.summary" 2>&1 &
  names+=("$name")
done
wait
for name in "${names[@]}"; do
  cat "$B/logs/$name.summary"
  grep -q '^ok ' "$B/logs/$name.summary" || failed=1
done
if [[ $failed -ne 0 ]]; then echo "fuzz: FAILED"; exit 1; fi
echo "fuzz: ${#names[@]} harnesses passed"
