#!/usr/bin/env bash
# Builds the systemd-ready test images (streamcloud/<distro>) that Molecule and the lab boot.
#   scripts/build-images.sh [distro ...]       distros: debian12 debian13 ubuntu2404 (default: debian12)
# An image that already exists at the current IMAGE_VERSION is kept (FORCE=1 rebuilds). A Dockerfile build is tried first; where
# the base image cannot be pulled (no registry), the root file system is made with debootstrap from
# the Debian archive and imported. Ubuntu needs its own archive, so it is Dockerfile-only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

declare -A BASE=([debian12]=debian:bookworm [debian13]=debian:trixie [ubuntu2404]=ubuntu:24.04)
declare -A SUITE=([debian12]=bookworm [debian13]=trixie)
# Bump when the image content changes: older images are then rebuilt instead of kept.
IMAGE_VERSION=3
# python3-apt as on cloud images: Ansible's apt module needs it for check mode.
PACKAGES=python3,python3-apt,systemd,systemd-sysv,sudo,dbus,ca-certificates,iproute2,procps

build_with_dockerfile() {
  local distro=$1
  log "$distro: trying a Dockerfile build from ${BASE[$distro]}"
  timeout 120 docker pull -q "${BASE[$distro]}" >/dev/null 2>&1 || return 1
  docker build -q --build-arg "BASE=${BASE[$distro]}" --label "streamcloud.image-version=$IMAGE_VERSION" -t "streamcloud/$distro" "$here/images" >/dev/null
}

build_with_debootstrap() {
  local distro=$1 suite root m
  suite=${SUITE[$distro]:-}
  [ -n "$suite" ] || die "$distro: no registry reachable and debootstrap only builds Debian; use debian12 or debian13"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  m=$(debian_mirror)
  root=$(mktemp -d "/var/tmp/streamcloud-$distro.XXXXXX")
  log "$distro: debootstrap $suite from $m (about 80 s)"
  # apt-cacher-ng on this machine, when it runs, keeps repeated builds off the network.
  local proxy=
  if (exec 3<>/dev/tcp/127.0.0.1/3142) 2>/dev/null; then proxy=http://127.0.0.1:3142; fi
  http_proxy=$proxy debootstrap --variant=minbase --include="$PACKAGES" "$suite" "$root" "$m" \
    >"$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; die "$distro: debootstrap failed (log: $root.log)"; }
  rm -f "$root.log"
  cat >"$root/etc/apt/sources.list" <<EOF
deb $m $suite main
deb $m $suite-updates main
deb ${m%/debian*}/debian-security $suite-security main
EOF
  cp "$here/images/customize.sh" "$root/tmp/customize.sh"
  chroot "$root" sh /tmp/customize.sh
  log "$distro: importing the root file system"
  tar -C "$root" -c . | docker import \
    -c 'ENV container=docker' -c "LABEL streamcloud.image-version=$IMAGE_VERSION" -c 'CMD ["/lib/systemd/systemd"]' \
    - "streamcloud/$distro" >/dev/null
  rm -rf "$root"
}

build_one() {
  local distro=$1 started have
  have=$(docker image inspect -f '{{ index .Config.Labels "streamcloud.image-version" }}' "streamcloud/$distro" 2>/dev/null || true)
  if [ -z "${FORCE:-}" ] && [ "$have" = "$IMAGE_VERSION" ]; then
    log "$distro: image streamcloud/$distro (version $IMAGE_VERSION) is present"
    return 0
  fi
  [ -n "$have" ] && log "$distro: image streamcloud/$distro is version ${have:-unknown}; rebuilding as $IMAGE_VERSION"
  started=$(date +%s)
  build_with_dockerfile "$distro" || build_with_debootstrap "$distro"
  log "$distro: image streamcloud/$distro built in $(( $(date +%s) - started )) s"
}

main() {
  local distros=("$@") distro pids=() rc=0 pid
  [ ${#distros[@]} -gt 0 ] || distros=("${MOLECULE_DISTRO:-debian12}")
  for distro in "${distros[@]}"; do
    [ -n "${BASE[$distro]:-}" ] || die "unknown distro '$distro': choose debian12, debian13 or ubuntu2404"
  done
  ensure_docker
  # The distros are built side by side: a build mostly waits on the archive (or the registry).
  for distro in "${distros[@]}"; do
    build_one "$distro" & pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
  return $rc
}

main "$@"
