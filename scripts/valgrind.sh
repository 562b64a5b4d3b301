#!/usr/bin/env bash
# `make valgrind`: every unit test under valgrind memcheck (release build).
# Fails on any memory error or definite leak.
set -uo pipefail
O=${1:-build}
export TSR_BUILD_DIR="$(pwd)/$O" CMOCKA_MESSAGE_OUTPUT=stdout
mkdir -p "$O/test-logs"
failed=0 passed=0
for t in "$O"/tests/test_*; do
  [[ -x "$t" ]] || continue
  name=$(basename "$t")
  if valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
       --show-leak-kinds=definite "$t" >"$O/test-logs/valgrind-$name.log" 2>&1; then
    passed=$((passed + 1)); echo "ok   valgrind $name"
  else
    failed=$((failed + 1)); echo "FAIL valgrind $name (see $O/test-logs/valgrind-$name.log)"
  fi
done
echo "valgrind: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
