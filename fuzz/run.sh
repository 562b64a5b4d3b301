#!/usr/bin/env bash
# Runs the libFuzzer harnesses built by `make BUILD=fuzz fuzz-bins`.
#   fuzz/run.sh [--replay] BUILD_DIR SECONDS JOBS NAME...
# For each NAME: with --replay, first every committed input of
# fuzz/corpus/NAME/ once (-runs=0: a regression check), then SECONDS of
# fuzzing, JOBS harnesses at a time. New inputs go to BUILD_DIR/corpus/NAME/
# (the committed corpus is only read), crashes to BUILD_DIR/artifacts/,
# logs to BUILD_DIR/logs/NAME.log; fuzz/dict/NAME.dict, if present, is passed
# as a libFuzzer dictionary. Prints one line per harness: executions and
# speed; coverage (edges, features) when the run started, from the corpora,
# and when it ended; the corpus before and after; and the execution at which
# the last new input was found, as a share of the run (early: a plateau).
# Exits non-zero if any harness failed.
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
  local before
  before=$(ls "$work" | wc -l)
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
  local execs speed start end last share
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # "#123 INITED cov: 300 ft: 400 ..." / "#99999 DONE cov: 350 ft: 470 ..."
  start=$(sed -n 's/^#[0-9]*[[:space:]]*INITED cov: \([0-9]*\) ft: \([0-9]*\).*/\1\/\2/p' "$log" | tail -1)
  end=$(sed -n 's/^#[0-9]*[[:space:]]*DONE *cov: \([0-9]*\) ft: \([0-9]*\).*/\1\/\2/p' "$log" | tail -1)
  last=$(sed -n 's/^#\([0-9]*\)[[:space:]]*NEW .*/\1/p' "$log" | tail -1)
  share="-"
  [[ -n $last && -n $execs && $execs -gt 0 ]] && share="$((100 * last / execs))%"
  echo "ok   $name: ${execs:-?} execs in ${SECONDS_EACH}s (${speed:-?}/s);" \
       "cov/ft ${start:-?} -> ${end:-?}; corpus $before -> $(ls "$work" | wc -l) new" \
       "+ $(ls "$seeds" | wc -l) committed; last new input at ${share} of the run"
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
