#!/usr/bin/env bash
# A step never imports another step: what two share lives in pkg/, and a step that runs another asks the
# runner. Fails on any plugins/X -> plugins/Y import (tests included) that is not listed below; the
# listed ones are the last couplings left (sub-steps and their undo), to be removed, never added to.
set -euo pipefail
cd "$(dirname "$0")/.."
allowed=(
  "plugins/migratens -> plugins/migrategw"  # --pin-gateways runs migrate-gw as a sub-step; its undo moves them back
  "plugins/tagmove -> plugins/migrategw"    # the same pins
  "plugins/tagmove -> plugins/migratens"    # --restart runs migrate-ns as a sub-step; its undo restarts back
  "plugins/undo -> plugins/migratens"       # (test) entries to undo are made by a real migrate-ns
)
mod=$(go list -m)
found=$(go list -test -f '{{.ImportPath}} {{join .Imports " "}}' ./plugins/... |
  sed "s#$mod/##g" | awk '{src=$1; sub(/ \[.*/, "", src); sub(/\.test$/, "", src); sub(/_test$/, "", src);
    for (i = 2; i <= NF; i++) if ($i ~ /^plugins\/[a-z]+$/ && $i != src && src != "plugins") print src " -> " $i}' | sort -u)
bad=0
while IFS= read -r line; do
  [ -z "$line" ] && continue
  ok=0
  for a in "${allowed[@]}"; do [ "$line" = "${a%%  #*}" ] && ok=1; done
  if [ $ok = 0 ]; then echo "a step imports another step: $line (share it through pkg/, or run the step through the runner)"; bad=1; fi
done <<< "$found"
exit $bad
