#!/usr/bin/env bash
# molecule-all.sh "DISTROS" SCENARIO...: `molecule test` for each scenario on each distro, every run
# to the end, then a summary line; exits non-zero when any run failed. A scenario whose driver is not
# docker (the moto-backed vpc scenario) runs once, whatever the distro; a scenario with a file
# molecule/<scenario>/distros runs only on the distros listed there (and in DISTROS).
set -uo pipefail
distros=$1; shift
passed=0; failed=0; summary=()
for scenario in "$@"; do
  runs=$distros
  grep -qE '^\s*name:\s*(default|delegated)\s*$' "molecule/$scenario/molecule.yml" && runs=${distros%% *}
  if [ -f "molecule/$scenario/distros" ]; then
    runs=$(for d in $runs; do grep -qxF "$d" "molecule/$scenario/distros" && echo "$d"; done)
  fi
  for distro in $runs; do
    start=$(date +%s)
    printf '\n--- molecule test -s %s (%s)\n' "$scenario" "$distro" >&2
    if MOLECULE_DISTRO=$distro molecule test -s "$scenario"; then
      passed=$((passed + 1)); result=passed
    else
      failed=$((failed + 1)); result=FAILED
    fi
    summary+=("$(printf '%-14s %-10s %-7s %4d s' "$scenario" "$distro" "$result" "$(( $(date +%s) - start ))")")
  done
done
printf '\nMolecule summary\n' >&2
printf '  %s\n' "${summary[@]}" >&2
echo "molecule: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
