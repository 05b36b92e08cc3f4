#!/usr/bin/env bash
# Proves the images on a throw-away containerd of this script's own: builds
# them (cached), imports them with import.sh, runs each with `ctr run` as the
# operator's children would run it, then stops that containerd and removes
# everything it made.
#
#   e2e/images/test.sh [IMAGE...]   every image, or the ones named
#
# IMAGE is one of: commlab pause postgres nats (commlab's check also runs
# catalog against the postgres and nats images).
# Everything lives under ${COMMLAB_IMAGES_TEST_DIR:-/tmp/imgtest}: containerd's
# root, state, socket and runc root, the data directories, the logs. That
# containerd runs in a private mount namespace with a tmpfs on /run, since
# containerd 1.6's shims put their sockets in /run/containerd/s whatever the
# configuration says; the host's /run/containerd and /var/lib/containerd are
# never touched. Every container joins one network namespace that holds only
# a loopback interface, and the checks reach the servers from inside it
# (nsenter): nothing listens on the host's interfaces and nothing can leave.
# COMMLAB_KEEP_FAILED=1 keeps the directory after a failure;
# COMMLAB_IMAGES_TEST_TIMEOUT (seconds per wait, default 60).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=images.sh
source "$(dirname "${BASH_SOURCE[0]}")/images.sh"

TEST_DIR="${COMMLAB_IMAGES_TEST_DIR:-/tmp/imgtest}"
# It is removed whole at the end: refuse / and top-level directories.
[[ "$TEST_DIR" == /*/* ]] || die "COMMLAB_IMAGES_TEST_DIR must be an absolute path below a top-level directory"
TIMEOUT="${COMMLAB_IMAGES_TEST_TIMEOUT:-60}"
SOCKET="$TEST_DIR/containerd.sock"
NETNS="$TEST_DIR/netns"
RUNC_ROOT="$TEST_DIR/runc"
# ctr makes its IO fifos here (by default in /run/containerd/fifo, which the
# containerd of the private mount namespace would not even see).
FIFO_DIR="$TEST_DIR/fifo"
LOGS="$TEST_DIR/logs"
# The operator's database settings (children/database.rs); the password has
# a space and quotes so the entrypoint's quoting is tested too.
DB_USER=commlab
DB_NAME=catalog
DB_PASSWORD="pw 'with' \"quotes\" $(od -An -tx1 -N6 /dev/urandom | tr -d ' \n')"
PGDATA_IN_IMAGE=/var/lib/postgresql/data/pgdata
# What Pod Security "restricted" asks of a container: the runtime's default
# seccomp profile and every capability dropped (ctr sets no_new_privs itself).
# ctr has no "ALL": these are all the capabilities its default spec grants.
RESTRICTED=(--seccomp)
for cap in CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP \
  NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE; do
  RESTRICTED+=(--cap-drop "CAP_$cap")
done

((EUID == 0)) || die "test.sh runs as root (containerd, namespaces, bind mounts)"
for tool in containerd ctr runc unshare nsenter psql curl jq; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian packages containerd, runc, util-linux, postgresql-client, curl, jq)"
done

lock images-test

c() { ctr -a "$SOCKET" -n k8s.io "$@"; }

# --- the throw-away containerd ---

containerd_pid() {
  local pid
  [[ -f "$TEST_DIR/containerd.pid" ]] || return 0
  pid="$(cat "$TEST_DIR/containerd.pid")"
  [[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == "$(command -v containerd)" ]] && echo "$pid"
  return 0
}

# shim_pids: the runc shims serving this containerd (they outlive it).
shim_pids() {
  local pid
  for pid in $(pgrep -f containerd-shim-runc-v2 || true); do
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-address $SOCKET " && echo "$pid"
  done
  return 0
}

teardown() {
  local id pid
  if [[ -S "$SOCKET" ]] && c version >/dev/null 2>&1; then
    for id in $(c task ls -q 2>/dev/null); do
      c task kill -s SIGKILL "$id" >/dev/null 2>&1 || true
    done
    for id in $(c container ls -q 2>/dev/null); do
      wait_until 10 "task $id to stop" task_not_running "$id" || true
      c task delete "$id" >/dev/null 2>&1 || true
      c container delete "$id" >/dev/null 2>&1 || true
    done
  fi
  pid="$(containerd_pid)"
  if [[ -n "$pid" ]]; then
    kill "$pid"
    wait_until 10 "containerd to exit" test ! -e "/proc/$pid" || kill -9 "$pid" 2>/dev/null || true
  fi
  for pid in $(shim_pids); do kill -9 "$pid" 2>/dev/null || true; done
  if mountpoint -q "$NETNS" 2>/dev/null; then umount "$NETNS"; fi
  rmdir /sys/fs/cgroup/*/commlab-imgtest-* 2>/dev/null || true
  rm -rf "$TEST_DIR"
}

on_exit() {
  local rc=$?
  if ((rc != 0)); then
    log "FAILED; logs:"
    local f
    for f in "$LOGS"/*.log; do
      [[ -f "$f" ]] || continue
      printf -- '--- %s\n' "$f" >&2
      tail -n 15 "$f" >&2
    done
    if [[ "${COMMLAB_KEEP_FAILED:-}" == 1 ]]; then
      log "kept $TEST_DIR (containerd pid $(containerd_pid)); run this script again to clean it up"
      exit "$rc"
    fi
  fi
  teardown
  exit "$rc"
}

start_containerd() {
  mkdir -p "$TEST_DIR" "$LOGS" "$RUNC_ROOT" "$FIFO_DIR"
  cat >"$TEST_DIR/config.toml" <<TOML
version = 2
root = "$TEST_DIR/root"
state = "$TEST_DIR/state"
# No CRI: ctr is the only client here.
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "$SOCKET"

[ttrpc]
  address = "$SOCKET.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "$TEST_DIR/opt"
TOML
  # A network namespace with only loopback, kept open by a bind mount.
  touch "$NETNS"
  unshare --net="$NETNS" true
  nsenter --net="$NETNS" ip link set lo up
  # The lock's descriptor (9) stays with this script, not with containerd.
  # shellcheck disable=SC2016 # $1 is expanded by that sh
  unshare --mount --propagation private -- sh -c \
    'mount -t tmpfs -o mode=0755 commlab-imgtest /run && exec containerd --config "$1"' \
    sh "$TEST_DIR/config.toml" >"$LOGS/containerd.log" 2>&1 9>&- &
  echo $! >"$TEST_DIR/containerd.pid"
  wait_until "$TIMEOUT" "containerd at $SOCKET" c version
  log "containerd $(c version | sed -n 's/^ *Version: *//p' | tail -1) at $SOCKET (pid $(containerd_pid))"
}

# --- running containers ---

task_status() { c task ls 2>/dev/null | awk -v id="$1" '$1 == id { print $3 }'; }
task_stopped() { [[ "$(task_status "$1")" == STOPPED ]]; }
task_running() { [[ "$(task_status "$1")" == RUNNING ]]; }
task_not_running() { [[ "$(task_status "$1")" != RUNNING ]]; }
task_pid() { c task ls | awk -v id="$1" '$1 == id { print $2 }'; }

# start ID IMAGE [CTR_RUN_FLAG...] -- [ARG...]: runs a detached container in
# the test's network namespace, its output in $LOGS/ID.log.
start() {
  local id="$1" image="$2" flags=()
  shift 2
  while (($#)) && [[ "$1" != -- ]]; do
    flags+=("$1")
    shift
  done
  (($#)) && shift
  c run -d --fifo-dir "$FIFO_DIR" --runc-root "$RUNC_ROOT" --cgroup "/commlab-imgtest-$id" \
    --with-ns "network:$NETNS" --log-uri "file://$LOGS/$id.log" \
    "${flags[@]}" "$image" "$id" "$@" >/dev/null
  wait_until "$TIMEOUT" "$id to run" task_running "$id"
}

# stop ID: sends the image's stop signal and waits; fails unless it exits 0.
stop() {
  local id="$1" status
  c task kill "$id"
  wait_until "$TIMEOUT" "$id to stop" task_stopped "$id"
  status="$(c task delete "$id" 2>&1 || true)"
  c container delete "$id"
  [[ -z "$status" ]] || die "$id did not exit cleanly: $status"
}

# run_once ID IMAGE [CTR_RUN_FLAG...] -- ARG...: runs a container to its end,
# prints its output, fails with its exit code.
run_once() {
  local id="$1" image="$2" flags=()
  shift 2
  while (($#)) && [[ "$1" != -- ]]; do
    flags+=("$1")
    shift
  done
  (($#)) && shift
  c run --rm --fifo-dir "$FIFO_DIR" --runc-root "$RUNC_ROOT" --cgroup "/commlab-imgtest-$id" \
    --with-ns "network:$NETNS" "${flags[@]}" "$image" "$id" "$@"
}

# exec_in ID ARG...: runs a command in a running container, like a probe.
EXEC_COUNT=0
exec_in() {
  EXEC_COUNT=$((EXEC_COUNT + 1))
  c task exec --fifo-dir "$FIFO_DIR" --exec-id "check-$EXEC_COUNT" "$1" "${@:2}"
}

# alive ID CMD...: runs CMD while container ID runs; exits 3 (wait_until
# stops waiting) once it does not.
alive() {
  task_running "$1" || return 3
  "${@:2}"
}

# host_uid ID: the real uid of a container's first process, read on the host.
host_uid() { awk '/^Uid:/ { print $2 }' "/proc/$(task_pid "$1")/status"; }
# host_caps ID: its bounding capability set.
host_caps() { awk '/^CapBnd:/ { print $2 }' "/proc/$(task_pid "$1")/status"; }

# in_netns CMD...: runs a host command inside the containers' network namespace.
in_netns() { nsenter --net="$NETNS" "$@"; }

expect() {
  local what="$1" want="$2" got="$3"
  [[ "$got" == "$want" ]] || die "$what: want '$want', got '$got'"
  log "ok: $what = $got"
}
expect_match() {
  local what="$1" pattern="$2" got="$3"
  grep -qE -- "$pattern" <<<"$got" || die "$what: want /$pattern/, got: $got"
  log "ok: $what"
}

# data_dir NAME MODE: an empty directory for a bind mount.
data_dir() {
  install -d -m "$2" "$TEST_DIR/data/$1"
  echo "$TEST_DIR/data/$1"
}
bind() { echo "type=bind,src=$1,dst=$2,options=rbind:rw"; }

psql_tcp() {
  in_netns env PGPASSWORD="$1" PGCONNECT_TIMEOUT=5 \
    psql -X -h 127.0.0.1 -p 5432 -U "$DB_USER" -d "$DB_NAME" -Atc "$2"
}
pg_env() {
  printf '%s\n' --env "POSTGRES_USER=$DB_USER" --env "POSTGRES_DB=$DB_NAME" \
    --env "POSTGRES_PASSWORD=$DB_PASSWORD" --env "PGDATA=$PGDATA_IN_IMAGE"
}
pg_ready() { alive "$1" exec_in "$1" pg_isready -U "$DB_USER" -d "$DB_NAME"; }

# --- the checks ---

check_pause() {
  local ref
  ref="$(image_ref pause)"
  expect "pause -v" "pause.c 3.10" "$(run_once pause-version "$ref" -- /pause -v 2>&1)"
  start pause "$ref" "${RESTRICTED[@]}" --
  expect "pause runs as" 65535 "$(host_uid pause)"
  stop pause
}

check_postgres() {
  local ref dir env=() started
  ref="$(image_ref postgres)"
  mapfile -t env < <(pg_env)

  # As the operator runs it: the image's user (999), an empty 0777 directory
  # (what an emptyDir is) at /var/lib/postgresql/data, PGDATA below it.
  dir="$(data_dir pg 0777)"
  started="$EPOCHREALTIME"
  start pg "$ref" "${RESTRICTED[@]}" "${env[@]}" --mount "$(bind "$dir" /var/lib/postgresql/data)" --
  wait_until "$TIMEOUT" "pg_isready -U $DB_USER -d $DB_NAME in the container" pg_ready pg
  log "postgres ready $(awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s after start"
  # When the probe first passed, one server had ever been ready: the real one,
  # started after the database was created.
  local log_at_ready
  log_at_ready="$(cat "$LOGS/pg.log")"
  expect "servers that were ready when pg_isready first passed" 1 \
    "$(grep -c "database system is ready to accept connections" <<<"$log_at_ready")"
  expect_match "the database was created before that" \
    "creating database $DB_NAME.*ready to accept connections" "$(tr '\n' ' ' <<<"$log_at_ready")"
  expect "PID 1" "postgres" "$(exec_in pg cat /proc/1/comm)"
  expect "server uid" 999 "$(host_uid pg)"
  expect "server capabilities" 0000000000000000 "$(host_caps pg)"
  if grep -q "no usable system locales" "$LOGS/pg.log"; then die "initdb found no system locale"; fi
  expect "PGDATA owner on the host" 999 "$(stat -c %u "$dir/pgdata")"
  in_netns pg_isready -q -h 127.0.0.1 -p 5432 || die "pg_isready -h 127.0.0.1 failed from the network namespace"
  expect "TCP login with the password" "commlab|catalog|*|scram-sha-256" \
    "$(psql_tcp "$DB_PASSWORD" "select current_user, current_database(), current_setting('listen_addresses'), current_setting('password_encryption')")"
  local refused
  refused="$(psql_tcp wrong-password 'select 1' 2>&1 || true)"
  expect_match "TCP login with a wrong password is refused" 'password authentication failed for user "commlab"' "$refused"
  psql_tcp "$DB_PASSWORD" "create table kept (note text); insert into kept values ('survives a restart')" >/dev/null
  stop pg
  expect_match "stop signal: fast shutdown" "received fast shutdown request" "$(cat "$LOGS/pg.log")"

  # A new container on the same directory: no initialisation, data kept.
  start pg-again "$ref" "${env[@]}" --mount "$(bind "$dir" /var/lib/postgresql/data)" --
  wait_until "$TIMEOUT" "pg_isready in the second container" pg_ready pg-again
  expect "row from the first container" "survives a restart" "$(psql_tcp "$DB_PASSWORD" 'select note from kept')"
  if grep -q initialising "$LOGS/pg-again.log"; then die "the second container initialised PGDATA again"; fi
  stop pg-again

  # No password, empty directory: refuses to start, says why.
  local out
  dir="$(data_dir pg-nopw 0777)"
  if out="$(run_once pg-nopw "$ref" --env "PGDATA=$PGDATA_IN_IMAGE" \
    --mount "$(bind "$dir" /var/lib/postgresql/data)" -- 2>&1)"; then
    die "postgres started on an empty PGDATA without POSTGRES_PASSWORD: $out"
  fi
  expect_match "no POSTGRES_PASSWORD: refused" "POSTGRES_PASSWORD is empty" "$out"
}

# Started as root (ctr has no --user; `ctr run --rootfs` on the image's own
# unpacked root file system runs as root) on a root-owned 0755 directory:
# the entrypoint hands PGDATA to 999 and the server runs as 999.
check_postgres_as_root() {
  local ref dir env=() tag
  ref="$(image_ref postgres)"
  tag="${ref##*:}"
  mapfile -t env < <(pg_env)
  mkdir -p "$TEST_DIR/pg-root/oci"
  tar -C "$TEST_DIR/pg-root/oci" -xf "$(image_archive postgres)"
  umoci unpack --image "$TEST_DIR/pg-root/oci:$tag" "$TEST_DIR/pg-root/bundle" >/dev/null
  dir="$(data_dir pg-root 0755)"
  c run -d --rootfs --fifo-dir "$FIFO_DIR" --runc-root "$RUNC_ROOT" --cgroup /commlab-imgtest-pg-root \
    --with-ns "network:$NETNS" --log-uri "file://$LOGS/pg-root.log" \
    --env "PATH=/usr/lib/postgresql/15/bin:/usr/local/bin:/usr/bin:/bin" --env LANG=C.UTF-8 \
    "${env[@]}" --mount "$(bind "$dir" /var/lib/postgresql/data)" \
    "$TEST_DIR/pg-root/bundle/rootfs" pg-root /usr/local/bin/postgres-entrypoint >/dev/null
  wait_until "$TIMEOUT" "pg_isready in the container started as root" pg_ready pg-root
  expect "server uid when started as root" 999 "$(host_uid pg-root)"
  expect "PGDATA owner when started as root" 999 "$(stat -c %u "$dir/pgdata")"
  expect "TCP login (started as root)" 1 "$(psql_tcp "$DB_PASSWORD" 'select 1')"
  c task kill -s SIGINT pg-root
  wait_until "$TIMEOUT" "pg-root to stop" task_stopped pg-root
  c task delete pg-root >/dev/null 2>&1 || true
  c container delete pg-root
}

check_nats() {
  local ref dir
  ref="$(image_ref nats)"
  dir="$(data_dir nats 0777)"
  # ctr replaces the whole command line; the kubelet keeps the entrypoint
  # and passes the operator's args (children/broker.rs) after it.
  start nats "$ref" "${RESTRICTED[@]}" --mount "$(bind "$dir" /data)" -- \
    /usr/local/bin/nats-server --jetstream --store_dir /data --http_port 8222
  wait_until "$TIMEOUT" "nats /healthz?js-enabled-only=true" \
    alive nats in_netns curl -fsS --max-time 2 'http://127.0.0.1:8222/healthz?js-enabled-only=true'
  expect "nats /healthz?js-enabled-only=true" '{"status":"ok"}' \
    "$(in_netns curl -fsS --max-time 2 'http://127.0.0.1:8222/healthz?js-enabled-only=true')"
  expect "nats uid" 65532 "$(host_uid nats)"
  expect "JetStream store owner on the host" 65532 "$(stat -c %u "$dir/jetstream")"
  stop nats
}

check_commlab() {
  local ref user help url env=()
  ref="$(image_ref commlab)"
  mapfile -t env < <(pg_env)
  c container create "$ref" commlab-config >/dev/null
  user="$(c container info commlab-config | jq -r '.Spec.process | "\(.user.uid):\(.user.gid) \(.args | join(" ")) \(.cwd)"')"
  c container delete commlab-config
  expect "commlab image: user, command, cwd" "65532:65532 commlab-operator run /home/nonroot" "$user"
  help="$(run_once commlab-help "$ref" --read-only -- commlab --help)"
  expect_match "commlab --help" "^Usage: commlab" "$help"
  help="$(run_once commlab-operator-help "$ref" --read-only -- commlab-operator --help)"
  expect_match "commlab-operator --help" "^Usage: commlab-operator" "$help"

  # catalog as the operator runs it (read-only root, uid 65532) against the
  # postgres and nats containers, with the pattern that needs both.
  start pg-for-catalog "$(image_ref postgres)" "${env[@]}" \
    --mount "$(bind "$(data_dir pg-for-catalog 0777)" /var/lib/postgresql/data)" --
  start nats-for-catalog "$(image_ref nats)" -- /usr/local/bin/nats-server --jetstream --store_dir /tmp/js
  wait_until "$TIMEOUT" "pg_isready for catalog" pg_ready pg-for-catalog
  url="postgres://$DB_USER:$(jq -rn --arg p "$DB_PASSWORD" '$p | @uri')@127.0.0.1:5432/$DB_NAME"
  start catalog "$ref" "${RESTRICTED[@]}" --read-only --env "COMMLAB_DATABASE_URL=$url" -- \
    commlab serve catalog --pattern CacheWithUpdateEvents --listen 127.0.0.1:8080 \
    --broker-url nats://127.0.0.1:4222 --products 10
  wait_until "$TIMEOUT" "catalog /readyz" alive catalog in_netns curl -fsS --max-time 2 http://127.0.0.1:8080/readyz
  expect "catalog uid" 65532 "$(host_uid catalog)"
  expect_match "catalog serves a product" '"id": *1' "$(in_netns curl -fsS --max-time 2 http://127.0.0.1:8080/products/1)"
  stop catalog
  stop pg-for-catalog
  stop nats-for-catalog
}

checks=("$@")
for name in "${checks[@]}"; do known_image "$name"; done
((${#checks[@]})) || checks=("${IMAGES[@]}")
needed=("${checks[@]}")
[[ " ${checks[*]} " != *" commlab "* ]] || needed+=(postgres nats)
mapfile -t needed < <(printf '%s\n' "${needed[@]}" | sort -u)

trap on_exit EXIT
teardown # whatever an earlier run left
"$IMAGES_SCRIPT_DIR/build.sh" "${needed[@]}"
start_containerd
"$IMAGES_SCRIPT_DIR/import.sh" "$SOCKET" "${needed[@]}"
for name in "${checks[@]}"; do
  case "$name" in
    pause) check_pause ;;
    postgres) check_postgres && check_postgres_as_root ;;
    nats) check_nats ;;
    commlab) check_commlab ;;
  esac
done
log "image checks passed: ${checks[*]}"
