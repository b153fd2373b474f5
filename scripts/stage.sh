#!/usr/bin/env bash
# stage.sh NAME COMMAND...: runs one stage, prints its wall time, and keeps its exit code; with
# TEST_SUMMARY set, also appends NAME, result and seconds to that file (tab-separated).
set -uo pipefail
name=$1; shift
start=$(date +%s)
printf '\n=== stage %s: %s\n' "$name" "$*" >&2
"$@"
rc=$?
result=$([ $rc -eq 0 ] && echo passed || echo "FAILED (exit $rc)")
seconds=$(( $(date +%s) - start ))
printf '=== stage %s: %s in %d s\n' "$name" "$result" "$seconds" >&2
# `make test` collects one line per stage (and per Molecule run) and prints them as a table at the end.
[ -n "${TEST_SUMMARY:-}" ] && printf '%s\t%s\t%d\n' "$name" "$result" "$seconds" >>"$TEST_SUMMARY"
exit $rc
