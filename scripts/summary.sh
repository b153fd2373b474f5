#!/usr/bin/env bash
# summary.sh FILE [TOTAL_SECONDS]: the table `make test` ends with, from the lines scripts/stage.sh
# and scripts/molecule_all.py appended to FILE (name, result, seconds; tab-separated).
set -euo pipefail
file=$1; total=${2:-}
[ -s "$file" ] || { echo "no test summary in $file" >&2; exit 0; }
{
  printf '\n=== Test summary\n'
  printf '  %-34s %-9s %6s\n' "stage / scenario (distro)" "result" "time"
  while IFS=$'\t' read -r name result seconds; do
    # A Molecule line carries "result: detail" (the reason for a skip, or the time per action).
    printf '  %-34s %-9s %5ss\n' "$name" "${result%%:*}" "$seconds"
    case $result in *:\ ?*) printf '  %-34s   %s\n' "" "${result#*: }" ;; esac
  done <"$file"
  failed=$(cut -f2 "$file" | grep -c '^FAILED' || true)
  [ -n "$total" ] && printf '  %-34s %-9s %5ss\n' "total (wall clock)" "$([ "$failed" -eq 0 ] && echo passed || echo FAILED)" "$total"
} >&2
