#!/usr/bin/env bash
# Every committed fuzz corpus (fuzz/corpus/<name>/: seeds and the reproducers
# of every crash found) replayed through its harness, built without libFuzzer
# by this build's compiler and flags ($TSR_BUILD_DIR/tests/fuzzreplay_<name>):
# under `make BUILD=asan test` this is the regression check of every finding.
# A harness missing, a corpus missing or empty, a crash, a broken invariant or
# a sanitizer report fails the test.
set -uo pipefail

ROOT=${TSR_ROOT:?TSR_ROOT not set}
B=${TSR_BUILD_DIR:?TSR_BUILD_DIR not set}
cd "$ROOT"

names=()
for h in fuzz/fuzz_*.c; do
  [[ -f $h ]] || continue
  n=${h#fuzz/fuzz_}
  names+=("${n%.c}")
done
[[ ${#names[@]} -gt 0 ]] || { echo "no harness in fuzz/"; exit 1; }

failed=0
for n in "${names[@]}"; do
  bin="$B/tests/fuzzreplay_$n" corpus="fuzz/corpus/$n"
  if [[ ! -x $bin ]]; then echo "FAIL $n: $bin not built"; failed=1; continue; fi
  if [[ ! -d $corpus ]]; then echo "FAIL $n: no $corpus"; failed=1; continue; fi
  log=$(mktemp)
  if "$bin" "$corpus" >"$log" 2>&1; then
    echo "ok   $n: $(tail -1 "$log")"
  else
    echo "FAIL $n:"
    grep -v '^replay: ' "$log" | tail -30
    grep '^replay: ' "$log" | tail -1   # the input that failed
    failed=1
  fi
  rm -f "$log"
done
exit $failed
