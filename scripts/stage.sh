#!/usr/bin/env bash
# stage.sh NAME COMMAND...: runs one stage, prints its wall time, and keeps its exit code.
set -uo pipefail
name=$1; shift
start=$(date +%s)
printf '\n=== stage %s: %s\n' "$name" "$*" >&2
"$@"
rc=$?
printf '=== stage %s: %s in %d s\n' "$name" "$([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)")" "$(( $(date +%s) - start ))" >&2
exit $rc
