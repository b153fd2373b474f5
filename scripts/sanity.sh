#!/usr/bin/env bash
# ansible-test only runs from inside ansible_collections/<namespace>/<name>: copy the files git
# knows (tracked, plus new files not ignored) there and run the sanity tests with this Python.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
dest="$here/.build/sanity/ansible_collections/streamcloud/platform"
rm -rf "$dest" && mkdir -p "$dest"
(cd "$here" && git ls-files -co --exclude-standard -z | rsync -a --from0 --files-from=- ./ "$dest/")
cd "$dest"
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
ansible-test sanity --color no --python "$py" --requirements --exclude molecule/ --exclude scripts/ "$@"
