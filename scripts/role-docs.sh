#!/usr/bin/env bash
# role-docs.sh [--check] [ROLE_DIR...]: writes the variables section of each role's README.md (between
# <!-- BEGIN_ANSIBLE_DOCS --> and <!-- END_ANSIBLE_DOCS -->) from its meta/argument_specs.yml, with
# aar-doc and the template scripts/role-docs/variables.md.j2. Without ROLE_DIR: every roles/*/ that has
# meta/argument_specs.yml. A README without the markers gets a "## Variables" section at its end.
# --check: changes nothing; exits 1 and names each README that differs from what would be written.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
template=$here/role-docs/variables.md.j2
begin='<!-- BEGIN_ANSIBLE_DOCS -->'
end='<!-- END_ANSIBLE_DOCS -->'

# Roles whose README has no generated section yet (scripts/role-docs/pending, one name a line) are
# left alone (and reported) until they are named on the command line: that adds their section.
pending=$(grep -v '^#' "$here/role-docs/pending" 2>/dev/null || true)

check=false
if [ "${1:-}" = --check ]; then check=true; shift; fi
if [ $# -eq 0 ]; then
  set --
  for spec in "$root"/roles/*/meta/argument_specs.yml; do
    [ -e "$spec" ] || continue
    role=$(dirname "$(dirname "$spec")")
    if grep -qxF "$(basename "$role")" <<<"$pending" && ! grep -qsxF "$begin" "$role/README.md"; then
      echo "role-docs: ${role#"$root"/}/README.md has no generated section yet (scripts/role-docs/pending):" \
        "run scripts/role-docs.sh ${role#"$root"/} to add it" >&2
      continue
    fi
    set -- "$@" "$role"
  done
fi

aar_doc=$(command -v aar-doc || echo "$root/.venv/bin/aar-doc")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

stale=()
for role in "$@"; do
  role=$(cd "$role" && pwd)
  name=$(basename "$role")
  readme=$role/README.md
  out=$tmp/$name.md
  if [ -e "$readme" ]; then cp "$readme" "$out"; else printf '# %s\n' "$name" >"$out"; fi
  if ! grep -qxF "$begin" "$out" || ! grep -qxF "$end" "$out"; then
    printf '\n## Variables\n\n%s\n%s\n' "$begin" "$end" >>"$out"
  fi
  # aar-doc reads the role's meta/ and rewrites the marked section of the copy.
  (cd "$tmp" && "$aar_doc" --output-file "$out" --output-template "$template" --output-mode inject "$role" markdown) \
    >"$tmp/aar-doc.log" 2>&1 || { cat "$tmp/aar-doc.log" >&2; echo "role-docs: aar-doc failed on $role" >&2; exit 2; }
  if cmp -s "$out" "$readme" 2>/dev/null; then continue; fi
  if $check; then
    diff -u "$readme" "$out" >&2 || true
    stale+=("${readme#"$root"/}")
  else
    cp "$out" "$readme"
    echo "role-docs: wrote ${readme#"$root"/}"
  fi
done

if [ ${#stale[@]} -gt 0 ]; then
  for readme in "${stale[@]}"; do
    echo "role-docs: $readme is stale: its variables section does not match meta/argument_specs.yml." >&2
  done
  echo "role-docs: run scripts/role-docs.sh (or make role-docs) and commit the READMEs." >&2
  exit 1
fi
