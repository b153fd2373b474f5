#!/usr/bin/env bash
# ansible-test only runs from inside ansible_collections/<namespace>/<name>: copy the files git
# knows (tracked, plus new files not ignored) there and run the sanity tests with this Python.
# The copy lives outside this repository: inside it, ansible-test would ask git for the file list
# and see nothing under an ignored directory.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=scripts/lib.sh
. "$here/scripts/lib.sh"
# ansible-test's shellcheck test is skipped without the program.
command -v shellcheck >/dev/null 2>&1 || ! is_root_debian || apt_install shellcheck
# One copy per checkout, so two checkouts on one machine never share (and wipe) the same copy.
dest="${SANITY_ROOT:-${TMPDIR:-/var/tmp}/streamcloud-sanity-$(printf '%s' "$here" | md5sum | cut -c1-8)}/ansible_collections/streamcloud/platform"
rm -rf "$dest" && mkdir -p "$dest"
# Only what the collection ships (plus tests/): Molecule scenarios, benchmarks and these scripts
# are tooling, not collection content, and ruff checks them already.
(cd "$here" && git ls-files -co --exclude-standard -z -- . ':!molecule' ':!benchmarks' ':!scripts' \
  | rsync -a --from0 --files-from=- ./ "$dest/")
# Collections the plugins import or take doc fragments from (amazon.aws for ec2_stop_protection):
# ansible-test finds them next to this one, so the installed copies are linked in.
for dep in amazon; do
  src=$(python3 -c "import ansible_collections.$dep as m; print(list(m.__path__)[-1])")
  ln -sfn "$src" "$(dirname "$(dirname "$dest")")/$dep"
done
cd "$dest"
# ansible-test fetches a pip bootstrap script from a host that may be unreachable; give it ours.
pip_version=$(python3 -c 'import ansible_test._internal.python_requirements as r, inspect, re
print(re.search(r"pip=.([0-9.]+)", inspect.getsource(r)).group(1))')
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
[ -f "$cache" ] || { mkdir -p "$(dirname "$cache")" && cp "$here/scripts/pip-bootstrap.py" "$cache"; }
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
ansible-test sanity --color no --python "$py" --requirements "$@"
