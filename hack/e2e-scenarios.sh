#!/usr/bin/env bash
# Every e2e scenario runs from the ordered lists in test/e2e/scenarios_test.go: a test function written
# but not listed would never run, and a top-level Test would run in file order, outside the list.
set -euo pipefail
cd "$(dirname "$0")/../test/e2e"
status=0
for fn in $(grep -ho '^func test[A-Za-z0-9_]*(t \*testing.T)' ./*_test.go | sed -E 's/^func (test[A-Za-z0-9_]*).*/\1/'); do
	if ! grep -qE "[{ ,]$fn[}]" scenarios_test.go; then
		echo "e2e: $fn is not in a scenario list of test/e2e/scenarios_test.go, so it never runs"
		status=1
	fi
done
for f in $(grep -l '^func Test' ./*_test.go); do
	for t in $(grep -ho '^func Test[A-Za-z0-9_]*' "$f" | sed 's/^func //'); do
		case "$t" in TestMain | TestIstioctl | TestHelm | TestAmbient) ;; *)
			echo "e2e: $f: $t runs outside the scenario lists; name it test… and list it in scenarios_test.go"
			status=1
			;;
		esac
	done
done
exit $status
