#!/usr/bin/env bash
# Runs every test suite and ends with one summary line: "tests: N passed, M failed".
#   unit:        build dir tests/test_* (cmocka), counted per test case
#   integration: tests/integration/*.sh (exit 0 pass, 77 skip), counted per script
#   python:      tests/integration/test_*.py under Debian's python3 + pytest
# Logs of each suite go to $O/test-logs/.
set -uo pipefail
O=${O:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
LOGS="$O/test-logs"
rm -rf "$LOGS"; mkdir -p "$LOGS"
export TSR_BUILD_DIR="$ROOT/$O" TSR_BIN="$ROOT/$O/bin" TSR_ROOT="$ROOT"
export PYTHONPATH="$ROOT/$O/py${PYTHONPATH:+:$PYTHONPATH}"
export CMOCKA_MESSAGE_OUTPUT=stdout
# LeakSanitizer stays on; make UBSan stop at the first report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0 failed=0 skipped=0
failures=()

# Every scratch file of this run goes under one fresh TMPDIR (the C tests
# through tu_temp_path, python's tempfile by itself); at the end it must be
# empty and no process may still use it: a test leaves nothing behind.
RUN_TMP=$(mktemp -d /tmp/tsr-run.XXXXXX)
chmod 1777 "$RUN_TMP"   # like /tmp: tests run workloads as nobody under it
export TMPDIR="$RUN_TMP"
leftovers() {
  local bad=0 pids=() p
  for p in /proc/[0-9]*; do
    [[ ${p#/proc/} == "$$" ]] && continue
    if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qF "$RUN_TMP"; then
      pids+=("${p#/proc/}")
    fi
  done
  if [[ ${#pids[@]} -gt 0 ]]; then
    bad=1
    echo "FAIL left behind: ${#pids[@]} process(es)"
    for p in "${pids[@]}"; do
      echo "     $p: $({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | grep -oE "[^ ]*$RUN_TMP[^ ]*" | head -3 | tr '\n' ' ')"
    done
    kill -KILL "${pids[@]}" 2>/dev/null
    sleep 0.5
  fi
  local mnt
  while read -r mnt; do
    bad=1
    echo "FAIL left behind: mount $mnt"
    umount -l "$mnt" 2>/dev/null
  done < <(awk -v t="$RUN_TMP" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r)
  if [[ -n $(ls -A "$RUN_TMP" 2>/dev/null) ]]; then
    bad=1
    echo "FAIL left behind in TMPDIR:"
    (cd "$RUN_TMP" && ls -A | head -20 | sed 's/^/     /')
  fi
  rm -rf "$RUN_TMP"
  return $bad
}

for t in "$O"/tests/test_*; do
  [[ -x "$t" ]] || continue
  name=$(basename "$t")
  log="$LOGS/$name.log"
  if "$t" >"$log" 2>&1; then rc=0; else rc=$?; fi
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
  p=${p:-0}; f=${f:-0}
  if [[ $rc -ne 0 && $f -eq 0 ]]; then f=1; fi   # crash or sanitizer abort
  passed=$((passed + p)); failed=$((failed + f))
  if [[ $f -ne 0 ]]; then failures+=("$name (see $log)"); echo "FAIL unit $name"; else echo "ok   unit $name ($p)"; fi
done

for t in tests/integration/*.sh; do
  [[ -f "$t" ]] || continue
  name=$(basename "$t" .sh)
  log="$LOGS/$name.log"
  if timeout 600 bash "$t" >"$log" 2>&1; then rc=0; else rc=$?; fi
  case $rc in
    0)  passed=$((passed + 1)); echo "ok   integration $name" ;;
    77) skipped=$((skipped + 1)); echo "skip integration $name: $(tail -1 "$log")" ;;
    *)  failed=$((failed + 1)); failures+=("$name (see $log)"); echo "FAIL integration $name"; tail -20 "$log" | sed 's/^/     /' ;;
  esac
done

if compgen -G "tests/integration/test_*.py" >/dev/null; then
  log="$LOGS/pytest.log"
  timeout 900 /usr/bin/python3 -m pytest -q -rs -p no:cacheprovider --basetemp="$RUN_TMP/pytest" \
    tests/integration >"$log" 2>&1
  rc=$?
  rm -rf "$RUN_TMP/pytest"   # pytest's own tmp_path tree
  summary=$(tail -1 "$log")
  p=$(grep -o '[0-9]* passed' <<<"$summary" | grep -o '[0-9]*' || true)
  f=$(grep -o '[0-9]* failed' <<<"$summary" | grep -o '[0-9]*' || true)
  e=$(grep -o '[0-9]* error' <<<"$summary" | grep -o '[0-9]*' || true)
  s=$(grep -o '[0-9]* skipped' <<<"$summary" | grep -o '[0-9]*' || true)
  p=${p:-0}; f=$(( ${f:-0} + ${e:-0} )); s=${s:-0}
  if [[ $rc -ne 0 && $rc -ne 5 && $f -eq 0 ]]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if [[ $f -ne 0 ]]; then
    failures+=("pytest (see $log)"); echo "FAIL python: $summary"
    grep -E '^(FAILED|ERROR)' "$log" | head -30 | sed 's/^/     /'
  else
    echo "ok   python: $summary"
  fi
  grep -E '^SKIPPED' "$log" | sed 's/^/     /'   # each skip with its reason
fi

if ! leftovers; then
  failed=$((failed + 1)); failures+=("the run left processes, mounts or files behind (above)")
fi

echo
if [[ ${#failures[@]} -gt 0 ]]; then
  printf 'failed: %s\n' "${failures[@]}"
fi
line="tests: $passed passed, $failed failed"
[[ $skipped -gt 0 ]] && line+=", $skipped skipped"
echo "$line"
[[ $failed -eq 0 && $passed -gt 0 ]]
