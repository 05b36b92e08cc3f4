#!/bin/sh
# Entrypoint of localhost/commlab/postgres (e2e/images/README.md): the part of
# the official postgres image's interface that commlab's operator uses.
#
#   POSTGRES_PASSWORD  password of POSTGRES_USER; needed to initialise
#   POSTGRES_USER      the superuser initdb creates (default postgres)
#   POSTGRES_DB        the database created at initialisation (default POSTGRES_USER)
#   PGDATA             the cluster's directory (default /var/lib/postgresql/data)
#   POSTGRES_INITDB_ARGS  more initdb flags, split at spaces (e.g. --no-sync)
#
# An empty PGDATA is initialised with no server listening anywhere: initdb,
# then the single-user backend (no socket, no TCP) creates the database. So
# pg_isready can pass only once the real server, which this script becomes
# (exec, PID 1), accepts connections. The socket trusts local users (the
# readiness probe, kubectl exec); TCP from any address needs the password.
#
# Runs as postgres (uid 999), the image's user. Started as root, it hands
# PGDATA to uid 999 and runs itself again as that user through setpriv.
# Busybox's sh runs this: POSIX sh only.
set -eu

postgres_uid=999
# Written once the database exists: a start interrupted between initdb and
# CREATE DATABASE finishes the job at the next start.
initialised_mark=commlab-initialised

log() { printf 'postgres-entrypoint: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# As in the official image: no arguments or `postgres ARGS...` start the
# server, flags alone (`-c name=value`) are the server's, anything else runs
# as given.
if [ $# -eq 0 ] || [ "${1#-}" != "$1" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi
shift

PGDATA="${PGDATA:-/var/lib/postgresql/data}"
export PGDATA
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

if [ "$(id -u)" = 0 ]; then
  # The parent of PGDATA must let uid 999 through (an emptyDir does: 0777).
  mkdir -p "$PGDATA" /var/run/postgresql
  chown "$postgres_uid:$postgres_uid" "$PGDATA" /var/run/postgresql
  chmod 0700 "$PGDATA"
  # The full path: busybox sh prefers its own applets, and its setpriv lacks --reuid.
  exec /usr/bin/setpriv --reuid="$postgres_uid" --regid="$postgres_uid" --init-groups -- "$0" postgres "$@"
fi

# sql_identifier NAME: NAME as a quoted SQL identifier.
sql_identifier() {
  printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  [ -n "${POSTGRES_PASSWORD:-}" ] ||
    die "$PGDATA holds no database and POSTGRES_PASSWORD is empty: set it to initialise one"
  log "initialising $PGDATA: superuser $POSTGRES_USER, UTF8, locale C.UTF-8"
  # The password goes through a pipe, never a file or an argument.
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of flags
  printf '%s\n' "$POSTGRES_PASSWORD" |
    initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile=/dev/stdin \
      --auth-local=trust --auth-host=scram-sha-256 \
      --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >&2
  cat >"$PGDATA/pg_hba.conf" <<'HBA'
# localhost/commlab/postgres: the socket trusts local users (probes, exec);
# TCP from any address needs the password (SCRAM).
local all all trust
host  all all all scram-sha-256
HBA
  printf "\n# localhost/commlab/postgres\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
fi

if [ ! -e "$PGDATA/$initialised_mark" ]; then
  if [ "$POSTGRES_DB" != postgres ]; then
    log "creating database $POSTGRES_DB"
    # The single-user backend reports an SQL error on stderr and still exits 0.
    output="$(printf 'CREATE DATABASE %s\n' "$(sql_identifier "$POSTGRES_DB")" |
      postgres --single -D "$PGDATA" template1 2>&1 >/dev/null)" ||
      die "the single-user backend failed: $output"
    case "$output" in
      *"ERROR:  database \"$POSTGRES_DB\" already exists"*) log "database $POSTGRES_DB already exists" ;;
      *ERROR:*) die "could not create database $POSTGRES_DB: $output" ;;
    esac
  fi
  : >"$PGDATA/$initialised_mark"
fi

# The server does not need the password; keep it out of its environment.
unset POSTGRES_PASSWORD
exec postgres "$@"
