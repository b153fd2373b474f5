# Shared helpers for the scripts the Makefile and CI call. Source it; do not run it.
# shellcheck shell=bash

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
need_cmd() { command -v "$1" >/dev/null 2>&1 || die "'$1' is missing: $2"; }

debian_mirror() {
  # The Debian mirror this machine's apt already uses (no trailing slash); deb.debian.org otherwise.
  local m
  m=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
      | grep -v security | head -n1 | tr -d ' ')
  m=${m%/}
  echo "${m:-http://deb.debian.org/debian}"
}

is_root_debian() { [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; }

apt_install() {
  # Installs Debian packages that are missing; only as root on Debian/Ubuntu.
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  is_root_debian || die "packages missing: ${missing[*]}; install them (apt-get install ${missing[*]})"
  log "installing ${missing[*]}"
  if [ -z "${__apt_updated:-}" ]; then apt-get -o DPkg::Lock::Timeout=600 update -qq; __apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_docker() {
  # A reachable Docker engine: used as it is when it answers; installed and started here when the
  # user is root on Debian/Ubuntu and nothing runs it (this machine has no init system for it).
  if docker info >/dev/null 2>&1; then return 0; fi
  if ! command -v dockerd >/dev/null 2>&1; then
    is_root_debian || die "no Docker engine: install Docker (Docker Desktop, or docker.io) and start it"
    apt_install docker.io
  fi
  is_root_debian || die "the Docker engine is installed but not running: start it (systemctl start docker)"
  log "starting dockerd"
  mkdir -p /var/log/streamcloud
  nohup dockerd >/var/log/streamcloud/dockerd.log 2>&1 &
  local _
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && { log "dockerd is up"; return 0; }
    sleep 1
  done
  tail -n 20 /var/log/streamcloud/dockerd.log >&2
  die "dockerd did not answer within 60 s (log above)"
}

ensure_apt_cache() {
  # apt-cacher-ng on port 3142: test containers find it through their default gateway (see
  # scripts/images/customize.sh) and fall back to the archive when it is not there. Optional.
  if (exec 3<>/dev/tcp/127.0.0.1/3142) 2>/dev/null; then return 0; fi
  is_root_debian || { log "no apt cache on :3142 (optional; containers go to the archive directly)"; return 0; }
  apt_install apt-cacher-ng
  # The package's default backend for Debian is ftp.debian.org; use the mirror this machine's own
  # apt uses, so the cache reaches the archive wherever the host does.
  printf '%s/\n' "$(debian_mirror)" >/etc/apt-cacher-ng/backends_debian
  log "starting apt-cacher-ng"
  mkdir -p /var/run/apt-cacher-ng
  chown apt-cacher-ng: /var/run/apt-cacher-ng 2>/dev/null || true
  if [ -x /etc/init.d/apt-cacher-ng ]; then /etc/init.d/apt-cacher-ng start >/dev/null 2>&1 || true; fi
  local _
  for _ in $(seq 1 10); do
    (exec 3<>/dev/tcp/127.0.0.1/3142) 2>/dev/null && return 0
    sleep 1
  done
  log "apt-cacher-ng did not start (optional; continuing without it)"
}
