#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a directory
# under the run's TMPDIR, listening only on a unix socket in that directory.
#   cluster.sh start DIR   -> prints the libpq DSN on stdout
#   cluster.sh stop DIR    -> stops the server and removes DIR
# As root the server runs as the postgres user (initdb refuses root).
set -euo pipefail
cmd=${1:?start|stop}
dir=${2:?directory}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$bin/initdb" ]] || { echo "cluster.sh: no PostgreSQL server (make deps)" >&2; exit 1; }
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
start)
  mkdir -p "$dir"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$dir"
  as_pg "$bin/initdb" -D "$dir/data" -U tessera -A trust --no-sync -E UTF8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; exit 1; }
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c fsync=on -c max_connections=200" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }
  echo "host=$dir user=tessera dbname=postgres"
  ;;
stop)
  if [[ -d "$dir/data" ]]; then
    as_pg "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
  ;;
restart-stop)   # stop the server, keep the data (outage tests)
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
  ;;
restart-start)
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
    -o "-c listen_addresses='' -c unix_socket_directories='$dir' -c max_connections=200" \
    start >/dev/null
  ;;
*) echo "cluster.sh: unknown command $cmd" >&2; exit 2 ;;
esac
