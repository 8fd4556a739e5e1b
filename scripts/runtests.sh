#!/usr/bin/env bash
# Run every test binary given; print each one's cmocka output and a closing
# line "N passed, N failed" counted over the binaries' test cases.
set -u
pass=0; fail=0; skip=0; bad=()
for t in "$@"; do
  out=$("$t" 2>&1); rc=$?
  printf '%s\n' "$out"
  p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END{print s+0}')
  f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END{print s+0}')
  s=$(printf '%s\n' "$out" | sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' | awk '{s+=$1} END{print s+0}')
  pass=$((pass+p)); fail=$((fail+f)); skip=$((skip+s))
  if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then fail=$((fail+1)); bad+=("$t (exit $rc)"); fi
  [ $rc -ne 0 ] && [ "$f" -gt 0 ] && bad+=("$t")
done
[ ${#bad[@]} -gt 0 ] && printf 'failing: %s\n' "${bad[@]}"
echo "tests: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
