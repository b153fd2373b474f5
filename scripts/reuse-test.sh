#!/usr/bin/env bash
# reuse-test.sh: proves that a role works from the built collection alone. Builds the tarball
# (ansible-galaxy collection build), installs it into an empty directory (ansible-galaxy collection
# install), and, from a project directory outside this repository, applies streamcloud.platform.common
# to one fresh container (reuse-host, network reuse, booted by the installed lab_container role);
# then logs in over SSH with the admin key the role installed and checks what sshd enforces.
# Collections come only from that directory and the virtualenv's bundled ones (amazon.aws,
# community.docker, ...): nothing is found in this repository. The container and network are
# removed at the end, also on failure. REUSE_DISTRO=debian13 for the other image.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
distro=${REUSE_DISTRO:-debian12}
start=$(date +%s)
say() { echo "reuse: [$(( $(date +%s) - start )) s] $*"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/streamcloud-reuse.XXXXXX")
project=$work/project
installed=$work/collections
mkdir -p "$project" "$installed" "$work/dist"
teardown() {
  rc=$?
  # The container exists only once the playbook has been copied out and started.
  if [ -f "$project/teardown.yml" ]; then
    (cd "$project" && ansible-playbook -i localhost, teardown.yml >"$work/teardown.log" 2>&1) \
      || { echo "reuse: teardown failed:" >&2; tail -20 "$work/teardown.log" >&2; rc=1; }
  fi
  rm -rf "$work"
  exit $rc
}
trap teardown EXIT

# The bundled collections of the ansible package in this Python's site-packages.
bundled=$(python3 -c 'import ansible_collections, os; print(os.path.dirname(next(iter(ansible_collections.__path__))))') \
  || { echo "reuse: the ansible package is not in this Python (activate .venv, or run make reuse)" >&2; exit 1; }
export ANSIBLE_COLLECTIONS_PATH=$installed:$bundled
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false
export ANSIBLE_ROLES_PATH=$project/roles
export ANSIBLE_CONFIG=$project/ansible.cfg
export ANSIBLE_HOST_KEY_CHECKING=false
unset ANSIBLE_INVENTORY ANSIBLE_LIBRARY ANSIBLE_MODULE_UTILS ANSIBLE_FILTER_PLUGINS


say "building the collection"
ansible-galaxy collection build --output-path "$work/dist" "$here" >/dev/null
tarball=$(ls "$work"/dist/streamcloud-platform-*.tar.gz)
say "installing $(basename "$tarball") into an empty directory"
# --offline: the dependencies (galaxy.yml) are satisfied by the bundled collections, no server asked.
ansible-galaxy collection install --offline -p "$installed" "$tarball" >"$work/install.log" 2>&1 \
  || { cat "$work/install.log" >&2; exit 1; }

# The user's project: the playbooks copied out of the repository, an ansible.cfg of its own.
cp "$here/tests/reuse/playbook.yml" "$here/tests/reuse/teardown.yml" "$project/"
printf '[defaults]\ninterpreter_python = auto_silent\nretry_files_enabled = false\ncallbacks_enabled = ansible.posix.profile_tasks\n' \
  >"$project/ansible.cfg"
ssh-keygen -q -t ed25519 -N '' -C reuser -f "$work/id_reuser"
cd "$project"

where=$(ansible-galaxy collection list streamcloud.platform --format json)
case $where in
  *"$installed"*) ;;
  *) echo "reuse: streamcloud.platform is not found in $installed: $where" >&2; exit 1 ;;
esac
if [ "$(grep -o '"streamcloud.platform"' <<<"$where" | wc -l)" -ne 1 ]; then
  echo "reuse: streamcloud.platform is found more than once: $where" >&2; exit 1
fi

say "applying streamcloud.platform.common to reuse-host (streamcloud/$distro)"
ansible-playbook -i localhost, playbook.yml -e "reuse_image=streamcloud/$distro" \
  -e "reuse_public_key=$work/id_reuser.pub" >"$work/play.log" 2>&1 || { tail -40 "$work/play.log" >&2; exit 1; }

address=$(docker inspect --format '{{(index .NetworkSettings.Networks "reuse").IPAddress}}' reuse-host)
ssh_opts=(-o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ConnectTimeout=10
          -o IdentitiesOnly=yes -i "$work/id_reuser")
say "logging in to $address as the admin the role created"
who=$(ssh "${ssh_opts[@]}" "reuser@$address" 'id -un; sudo -n sshd -T')
grep -qx reuser <<<"$who" || { echo "reuse: the SSH login did not run as reuser" >&2; exit 1; }
for want in "passwordauthentication no" "permitrootlogin no" "allowgroups sshusers"; do
  grep -qx "$want" <<<"$who" || { echo "reuse: sshd -T lacks '$want'" >&2; exit 1; }
done
if ssh "${ssh_opts[@]}" -o PreferredAuthentications=password -o PubkeyAuthentication=no "reuser@$address" true 2>/dev/null; then
  echo "reuse: a login without the key was accepted" >&2; exit 1
fi
# The slowest tasks of the converge (ansible.posix.profile_tasks), for the time budget.
sed -n '/^=====/,$p' "$work/play.log" | sed -n '2,6p' | sed 's/^/reuse:   /'
say "passed (build, install, boot, converge, checks)"
