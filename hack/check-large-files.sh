#!/usr/bin/env bash
# Fails when git tracks a file over 1 MiB outside a testdata folder: build
# outputs and data dumps do not belong in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
limit=$((1024 * 1024))
bad=0
while IFS= read -r -d '' f; do
  [[ -f $f ]] || continue
  case "$f" in */testdata/*|testdata/*) continue ;; esac
  size=$(stat -c %s "$f")
  if (( size > limit )); then
    echo "check-large-files: $f is $size bytes (over 1 MiB): keep build outputs and data out of git"
    bad=1
  fi
done < <(git ls-files -z)
exit $bad
