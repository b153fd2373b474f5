#!/usr/bin/env bash
# pgbench against the postgresql role's tuned server and the same server with the distribution's
# stock settings, alternating A/B/A/B (tuned, stock, tuned, stock) in one run, in one container
# limited to a t2.medium's size (2 CPUs, 4 GB). Workloads: TPC-B-like at scale 50, select-only (-S)
# at scale 50, TPC-B-like at scale 200 (about 3 GB: far beyond shared_buffers).
#
# Usage: benchmarks/postgresql/run.sh            (from the repository root, with .venv set up)
#   DURATION=60 CLIENTS=10 PAIRS=2 WARMUP=10 LARGE_SCALE=200 BENCH_DISTRO=debian12 KEEP=0 (1 keeps the container)
# Prints a Markdown table; raw figures go to benchmarks/postgresql/last-run.csv.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
LARGE_SCALE=${LARGE_SCALE:-200} DURATION=${DURATION:-60} CLIENTS=${CLIENTS:-10} PAIRS=${PAIRS:-2} WARMUP=${WARMUP:-10} KEEP=${KEEP:-0}
C=postgresql-bench
OUT=benchmarks/postgresql/last-run.csv

cleanup() {
  if [ "$KEEP" != 1 ]; then
    docker rm -f "$C" >/dev/null 2>&1 || true
    docker network rm postgresql-bench >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

ansible-playbook -i localhost, benchmarks/postgresql/playbook.yml >&2

ex() { docker exec "$C" "$@"; }
pg() { docker exec -u postgres "$C" "$@"; }
VERSION=$(ex sh -c 'ls /usr/lib/postgresql | sort -n | tail -1')
CONF=/etc/postgresql/$VERSION/main/conf.d/50-streamcloud.conf

mode() { # tuned: the role's conf.d file in place; stock: set aside (Debian's postgresql.conf alone)
  if [ "$1" = tuned ]; then
    ex sh -c "[ -f $CONF ] || mv /root/50-streamcloud.conf $CONF"
  else
    ex sh -c "[ ! -f $CONF ] || mv $CONF /root/50-streamcloud.conf"
  fi
  ex systemctl restart "postgresql@$VERSION-main"
  until pg pg_isready -q; do sleep 1; done
}

echo "== init (scale 50 and 200) $(date -u +%T)" >&2
mode tuned
for s in 50 "$LARGE_SCALE"; do
  pg dropdb --if-exists "bench$s"
  pg createdb "bench$s"
  pg pgbench -i -q -s "$s" "bench$s" >&2
done

run() { # workload db extra-args -> TPS
  local db=$1; shift
  pg psql -qXc CHECKPOINT "$db"
  pg pgbench -c "$CLIENTS" -j 2 -T "$WARMUP" "$@" "$db" >/dev/null 2>&1
  pg pgbench -c "$CLIENTS" -j 2 -T "$DURATION" "$@" "$db" 2>/dev/null \
    | awk '/^tps = / {print $3}'
}

echo "workload,pair,mode,tps,shared_buffers" > "$OUT"
for w in "rw-s50:bench50:" "ro-s50:bench50:-S" "rw-s$LARGE_SCALE:bench$LARGE_SCALE:"; do
  IFS=: read -r name db args <<<"$w"
  for pair in $(seq 1 "$PAIRS"); do
    for m in tuned stock; do
      mode "$m"
      sb=$(pg psql -qXAtc 'SHOW shared_buffers' postgres)
      # shellcheck disable=SC2086
      tps=$(run "$db" $args)
      echo "$name,$pair,$m,$tps,$sb" | tee -a "$OUT" >&2
    done
  done
done
mode tuned

HW="$(nproc) host CPUs ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB host RAM; container: 2 CPUs, 4 GB; PostgreSQL $(pg psql -qXAtc 'SHOW server_version' postgres) on $(ex sh -c '. /etc/os-release; echo $PRETTY_NAME'); storage $(docker info -f '{{.Driver}}') on $(df --output=source /var/lib/docker | tail -1); pgbench -c $CLIENTS -j 2 -T $DURATION (after a ${WARMUP} s warm-up); $(date -u +%F)"
python3 benchmarks/postgresql/summarize.py "$OUT" "$HW"
