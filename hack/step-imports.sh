#!/usr/bin/env bash
# A step never imports another step: what two share lives in pkg/, and a step that runs another asks the
# runner by the registry (Run.SubStep, step.RestorerOf). Fails on any plugins/X -> plugins/Y import,
# tests included (a test that runs two steps lives in plugins/, which may import them all).
set -euo pipefail
cd "$(dirname "$0")/.."
mod=$(go list -m)
found=$(go list -test -f '{{.ImportPath}} {{join .Imports " "}}' ./plugins/... |
  sed "s#$mod/##g" | awk '{src=$1; sub(/ \[.*/, "", src); sub(/\.test$/, "", src); sub(/_test$/, "", src);
    for (i = 2; i <= NF; i++) if ($i ~ /^plugins\/[a-z]+$/ && $i != src && src != "plugins") print src " -> " $i}' | sort -u)
bad=0
while IFS= read -r line; do
  [ -z "$line" ] && continue
  echo "a step imports another step: $line (share it through pkg/, or run the step through the registry)"
  bad=1
done <<< "$found"
exit $bad
