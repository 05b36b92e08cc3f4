#!/usr/bin/env bash
# Scale benchmark of the operator against a real control plane (kwok plays
# the kubelet): in a fresh namespace it starts commlab-operator, creates
# BENCH_COUNT CommunicationPatterns at once (copies of one example with
# distinct names) and prints
#   - the time until every object's pods are Ready and until every object is
#     Ready, and per object how long Ready came after its pods were Ready
#     (target: under 60 s);
#   - reconciles per object until the operator settles (the reconcile counter
#     from /metrics stops moving for BENCH_SETTLE seconds) (target: a handful);
#   - the operator's peak RSS, VmHWM from /proc/PID/status (target: < 50 MiB).
# Then it stops the operator and deletes the namespace. Every wait is bounded.
#
#   bench/operator-scale.sh
#
# Environment (defaults in brackets):
#   COMMLAB_KUBECONFIG    cluster to use [the one e2e/cluster/up.sh starts or finds]
#   BENCH_COUNT           objects [200]
#   BENCH_EXAMPLE         manifest to copy [examples/direct-api-call.yaml]
#   BENCH_PROFILE         cargo profile of the operator: release | debug [release]
#   BENCH_READY_TIMEOUT   seconds to wait for every object to be Ready [600]
#   BENCH_SETTLE          seconds the reconcile counter must stand still [10]
#   BENCH_SETTLE_TIMEOUT  seconds to wait for that [300]
#   BENCH_RESYNC          the operator's periodic requeue of a settled object, in
#                         seconds [300]; resyncs alone also count as settled
#   BENCH_CONCURRENCY     the operator's --concurrency [its default]
#   BENCH_OUT             where the raw figures go [target/bench/operator-scale-<time>]
#
# Each object needs orders + catalog + database (+ broker) pods; the check
# before the run fails when the cluster's fake nodes have too few free pod
# slots (each fits 200). A cluster of its own with more nodes, on free ports:
#   COMMLAB_CLUSTER_DIR=/tmp/commlab-bench COMMLAB_FAKE_NODES=6 e2e/cluster/up.sh
# (stop it afterwards with the same COMMLAB_CLUSTER_DIR and e2e/cluster/down.sh).
#
# Figures from one run (200 x DirectApiCall, 6 fake nodes, a busy 2-core
# machine) are in the commit message that added this paragraph.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source-path=SCRIPTDIR source=../e2e/cluster/lib.sh
source e2e/cluster/lib.sh

COUNT="${BENCH_COUNT:-200}"
EXAMPLE="${BENCH_EXAMPLE:-examples/direct-api-call.yaml}"
PROFILE="${BENCH_PROFILE:-release}"
READY_TIMEOUT="${BENCH_READY_TIMEOUT:-600}"
SETTLE="${BENCH_SETTLE:-10}"
SETTLE_TIMEOUT="${BENCH_SETTLE_TIMEOUT:-300}"
RESYNC="${BENCH_RESYNC:-300}"
CONCURRENCY="${BENCH_CONCURRENCY:-}"
OUT="${BENCH_OUT:-target/bench/operator-scale-$(date +%Y%m%d-%H%M%S)}"
DELETE_TIMEOUT=180
FIELD_MANAGER=commlab-bench

[[ "$COUNT" =~ ^[1-9][0-9]*$ ]] || die "BENCH_COUNT must be a positive integer, not '$COUNT'"
[[ -f "$EXAMPLE" ]] || die "no such example: $EXAMPLE"
case "$PROFILE" in
  release) target_dir=release ;;
  debug) target_dir=debug PROFILE=dev ;;
  *) die "BENCH_PROFILE must be release or debug, not '$PROFILE'" ;;
esac
for tool in jq curl python3; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

KUBECONFIG_FILE="${COMMLAB_KUBECONFIG:-$(e2e/cluster/up.sh | tail -n 1)}"
KUBECTL="$(component_bin kubectl)"
[[ -x "$KUBECTL" ]] || die "$KUBECTL is missing; run e2e/cluster/build.sh"
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" --request-timeout=60s "$@"; }

now() { echo "$EPOCHREALTIME"; }
# seconds_since START [END]: END (default now) minus START, one decimal.
seconds_since() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.1f", b - a }'; }

mkdir -p "$OUT"
workdir="$OUT"
namespace=""
operator_pid=""
watcher_pids=()

cleanup() {
  local rc=$? pid
  for pid in "${watcher_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  if [[ -n "$operator_pid" ]] && kill -0 "$operator_pid" 2>/dev/null; then
    kill "$operator_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$operator_pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$operator_pid" 2>/dev/null || true
    wait "$operator_pid" 2>/dev/null || true
  fi
  if [[ -n "$namespace" ]]; then
    log "deleting namespace $namespace (up to ${DELETE_TIMEOUT}s)"
    k delete namespace "$namespace" --wait=false >/dev/null 2>&1 || true
    k wait --for=delete "namespace/$namespace" --timeout="${DELETE_TIMEOUT}s" >/dev/null 2>&1 ||
      log "namespace $namespace is still terminating"
  fi
  if ((rc != 0)) && [[ -s "$workdir/operator.log" ]]; then
    log "the operator's last log lines:"
    tail -n 20 "$workdir/operator.log" >&2
  fi
  log "raw figures in $OUT"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the operator binary ---
log "building commlab-operator ($PROFILE)"
cargo build -q --profile "$PROFILE" -p commlab-controller --bin commlab-operator
operator_bin="target/$target_dir/commlab-operator"
[[ -x "$operator_bin" ]] || die "$operator_bin is missing after the build"

# --- the CRDs and the objects to create ---
log "applying the CRDs"
k apply --server-side --force-conflicts --field-manager="$FIELD_MANAGER" -f crds/ >/dev/null
k wait --for=condition=Established crd --all --timeout=30s >/dev/null

k create --dry-run=client -o json -f "$EXAMPLE" | jq 'del(.metadata.namespace)' >"$workdir/example.json"
kind="$(jq -r .kind "$workdir/example.json")"
[[ "$kind" == CommunicationPattern ]] || die "$EXAMPLE is a $kind, not a CommunicationPattern"
# Pods one object asks for: orders and catalog replicas, the database, and a
# broker for the two patterns that have one.
pods_per_object="$(jq '.spec.components.replicas as $r
  | ($r.orders // 1) + ($r.catalog // 1) + 1
  + (if .spec.pattern == "AsyncMessaging" or .spec.pattern == "CacheWithUpdateEvents" then 1 else 0 end)' \
  "$workdir/example.json")"
pods_needed=$((COUNT * pods_per_object))
jq --argjson n "$COUNT" '. as $o | {apiVersion: "v1", kind: "List",
  items: [range(0; $n) | . as $i | $o | .metadata.name = ($o.metadata.name + "-" + ($i | tostring))]}' \
  "$workdir/example.json" >"$workdir/objects.json"

# --- room for the pods ---
slots="$(k get nodes -o json | jq '[.items[]
  | select(any(.status.conditions[]; .type == "Ready" and .status == "True"))
  | select(.spec.unschedulable != true)
  | .status.allocatable.pods | tonumber] | add // 0')"
used="$(k get pods --all-namespaces -o json \
  --field-selector=status.phase!=Succeeded,status.phase!=Failed |
  jq '[.items[] | select(.spec.nodeName)] | length')"
free=$((slots - used))
if ((pods_needed > free)); then
  die "$COUNT objects need $pods_needed pods ($pods_per_object each) but the cluster's nodes have $free free pod slots ($slots in all); use a cluster with more fake nodes, e.g. COMMLAB_CLUSTER_DIR=/tmp/commlab-bench COMMLAB_FAKE_NODES=$(((pods_needed + 199) / 200 + 1)) e2e/cluster/up.sh, then COMMLAB_KUBECONFIG=<the path it prints> $0"
fi
log "$COUNT objects x $pods_per_object pods = $pods_needed pods; $free of $slots pod slots free"

# --- a fresh namespace and the operator watching it ---
namespace="commlab-bench-$(date +%H%M%S)-$$"
k create namespace "$namespace" >/dev/null
k label namespace "$namespace" commlab.dev/test=true commlab.dev/bench=true >/dev/null
wait_until 30 "the namespace's default ServiceAccount" \
  k get serviceaccount default --namespace "$namespace"

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
metrics_url="http://127.0.0.1:$port/metrics"
operator_args=(run --namespace "$namespace" --listen "127.0.0.1:$port")
if [[ -n "$CONCURRENCY" ]]; then
  operator_args+=(--concurrency "$CONCURRENCY")
fi
KUBECONFIG="$KUBECONFIG_FILE" RUST_LOG=warn "$operator_bin" "${operator_args[@]}" \
  >"$workdir/operator.log" 2>&1 &
operator_pid=$!
operator_ready() {
  kill -0 "$operator_pid" 2>/dev/null || return 3
  curl -sf --max-time 2 "http://127.0.0.1:$port/readyz"
}
wait_until 30 "the operator's /readyz" operator_ready || die "the operator did not become ready"
log "operator pid $operator_pid (${operator_args[*]}), metrics at $metrics_url"

# sum_metric NAME: the sum of every series of NAME in /metrics.
sum_metric() {
  curl -sf --max-time 5 "$metrics_url" |
    awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $NF } END { printf "%d", sum }'
}

# --- watch the children's ready counts, with the time each change arrives ---
# watch-<kind>.txt: epoch seconds, event, name, instance, ready, desired.
stamp() { while IFS= read -r line; do printf '%s %s\n' "$EPOCHREALTIME" "$line"; done; }
for kind in deployments statefulsets; do
  "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" get "$kind" --namespace "$namespace" \
    --watch --output-watch-events --no-headers \
    -o 'custom-columns=EVENT:.type,NAME:.object.metadata.name,INSTANCE:.object.metadata.labels.app\.kubernetes\.io/instance,READY:.object.status.readyReplicas,DESIRED:.object.spec.replicas' \
    > >(stamp >"$workdir/watch-$kind.txt") 2>/dev/null &
  watcher_pids+=($!)
done

# --- create every object at once ---
log "creating $COUNT CommunicationPatterns from $EXAMPLE"
start="$(now)"
k create --namespace "$namespace" -f "$workdir/objects.json" >/dev/null
created="$(now)"
log "created in $(seconds_since "$start" "$created")s"

# reconciles.tsv: seconds since the create, reconciles so far; one line a second.
sample_reconciles() {
  local count
  count="$(sum_metric commlab_operator_reconciles_total)" || return 0
  printf '%s\t%s\n' "$(seconds_since "$start")" "$count" >>"$workdir/reconciles.tsv"
  echo "$count"
}
ready_count() {
  k get communicationpatterns.commlab.dev --namespace "$namespace" -o json |
    jq '[.items[] | select(any(.status.conditions[]?; .type == "Ready" and .status == "True"))] | length'
}
deadline=$((SECONDS + READY_TIMEOUT))
next_report=$((SECONDS + 10))
all_ready=""
ready=0
while :; do
  sample_reconciles >/dev/null
  ready="$(ready_count || echo "$ready")"
  if ((ready == COUNT)); then
    all_ready="$(now)"
    break
  fi
  ((SECONDS < deadline)) || break
  if ((SECONDS >= next_report)); then
    log "t=$(seconds_since "$start")s: $ready/$COUNT Ready"
    next_report=$((SECONDS + 10))
  fi
  sleep 1
done
reconciles_at_ready="$(sample_reconciles)"
if [[ -z "$all_ready" ]]; then
  log "timed out after ${READY_TIMEOUT}s: $ready/$COUNT Ready; measuring what there is"
fi

# --- reconciles until the counter stands still ---
# Settled: no reconcile for SETTLE s, or, over the last 60 s, no more than the
# periodic resync accounts for (COUNT objects every RESYNC s, plus a fifth).
log "waiting until reconciles settle (still for ${SETTLE}s, or resyncs only; up to ${SETTLE_TIMEOUT}s)"
window=60
resync_allowance=$((COUNT * window * 6 / (RESYNC * 5) + 1))
settle_deadline=$((SECONDS + SETTLE_TIMEOUT))
settle_start=$SECONDS
last="$reconciles_at_ready"
last_change=$SECONDS
history=()
settled="not within ${SETTLE_TIMEOUT} s"
while ((SECONDS < settle_deadline)); do
  sleep 1
  current="$(sample_reconciles)"
  [[ -n "$current" ]] || continue
  history+=("$current")
  if ((current != last)); then
    last="$current"
    last_change=$SECONDS
  fi
  if ((SECONDS - last_change >= SETTLE)); then
    settled="still for ${SETTLE} s"
    break
  fi
  if ((${#history[@]} > window)) &&
    ((current - history[${#history[@]} - window - 1] <= resync_allowance)); then
    settled="only resyncs in the last ${window} s"
    break
  fi
done
settle_seconds=$((SECONDS - settle_start))
reconciles="$last"
failures="$(sum_metric commlab_operator_reconcile_failures_total)"
curl -sf --max-time 5 "$metrics_url" >"$workdir/metrics.txt" || true
duration_sum="$(awk '$1 == "commlab_operator_reconcile_duration_seconds_sum" { print $2 }' "$workdir/metrics.txt")"
duration_count="$(awk '$1 == "commlab_operator_reconcile_duration_seconds_count" { print $2 }' "$workdir/metrics.txt")"
peak_rss_kib="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$operator_pid/status")"
rss_kib="$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$operator_pid/status")"
# utime + stime, in clock ticks (fields 14 and 15 after the command name).
cpu_seconds="$(awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); printf "%.1f", ($12 + $13) / hz }' \
  "/proc/$operator_pid/stat")"

# --- per object: when its pods were all Ready, when it was first Ready ---
# Pod times are condition timestamps (whole seconds); an object's first Ready
# is its first ComponentsReady event (microseconds), else its Ready
# condition's lastTransitionTime.
k get pods --namespace "$namespace" -o json >"$workdir/pods.json"
# children.json: per instance, when every child first reported all replicas ready.
cat "$workdir"/watch-*.txt 2>/dev/null | awk '
  { child[$3] = $4 }
  $5 == $6 && !($3 in ready) { ready[$3] = $1 }
  END {
    for (c in child) { children[child[c]]++; if (c in ready) { n[child[c]]++; if (ready[c] > at[child[c]]) at[child[c]] = ready[c] } }
    printf "{"; sep = ""
    for (i in children) { printf "%s\"%s\": {\"children\": %d, \"ready\": %d, \"at\": %s}", sep, i, children[i], n[i] + 0, (i in at) ? at[i] : "null"; sep = ", " }
    print "}"
  }' >"$workdir/children.json"
k get communicationpatterns.commlab.dev --namespace "$namespace" -o json >"$workdir/objects-status.json"
k get events.events.k8s.io --namespace "$namespace" -o json >"$workdir/events.json"
jq --slurpfile pods "$workdir/pods.json" --slurpfile events "$workdir/events.json" \
  --slurpfile children "$workdir/children.json" '
  def ts: capture("^(?<s>[^.Z]+)(?<f>\\.[0-9]+)?Z$") | (.s + "Z" | fromdateiso8601) + ((.f // "0") | tonumber);
  def ready_at: [.status.conditions[]? | select(.type == "Ready" and .status == "True")
                 | .lastTransitionTime | ts] | first;
  ($pods[0].items
    | map(select(.status.phase != "Succeeded" and .status.phase != "Failed"
                 and .metadata.labels["app.kubernetes.io/instance"] != null))
    | group_by(.metadata.labels["app.kubernetes.io/instance"])
    | map({key: .[0].metadata.labels["app.kubernetes.io/instance"],
           value: {pods: length, at: (if all(.[]; ready_at != null) then map(ready_at) | max else null end)}})
    | from_entries) as $by
  | ($events[0].items | map(select(.regarding.kind == "CommunicationPattern"))
    | group_by(.regarding.name)
    | map({key: .[0].regarding.name,
           value: {first_ready: ([.[] | select(.reason == "ComponentsReady") | (.eventTime // .deprecatedFirstTimestamp) | ts] | min),
                   became_ready: ([.[] | select(.reason == "ComponentsReady") | (.series.count // 1)] | add // 0),
                   became_degraded: ([.[] | select(.reason == "ComponentFailing") | (.series.count // 1)] | add // 0)}})
    | from_entries) as $ev
  | [.items[] | .metadata.name as $name
     | {name: $name, pods: ($by[$name].pods // 0), pods_ready_at: $by[$name].at,
        children_ready_at: ($children[0][$name] | if . != null and .ready == .children then .at else null end),
        ready_at: ($ev[$name].first_ready // ready_at), ready_now: (ready_at != null),
        became_ready: ($ev[$name].became_ready // 0), became_degraded: ($ev[$name].became_degraded // 0)}]' \
  "$workdir/objects-status.json" >"$workdir/per-object.json"

# --- report ---
row() { printf '%-34s %s\n' "$1" "$2"; }
{
  jq -r --argjson start "$start" --argjson n "$COUNT" '
    def pct(p): .[((length - 1) * p + 0.5) | floor];
    def s: . * 10 | round / 10;
    # stats(from; to): the spread of to - from over the objects having both.
    def stats(from; to): [.[] | select(from != null and to != null) | to - from] | sort
      | if length == 0 then "no object has both times"
        else "p50 \(pct(0.5) | s) s, p90 \(pct(0.9) | s) s, max \(last | s) s (\(length) objects); \(map(select(. > 60)) | length) over 60 s" end;
    def after_create(f): map(f | select(. != null)) | if length == 0 then "" else ", the last \(max - $start | s) s after the create" end;
    "objects with all pods Ready\t\(map(select(.pods_ready_at != null)) | length)/\($n)\(after_create(.pods_ready_at))",
    "objects Ready\t\(map(select(.ready_at != null)) | length)/\($n)\(after_create(.ready_at))",
    "first Ready after its pods\t\(stats(.pods_ready_at; .ready_at)) (target: under 60 s)",
    "  children report ready after pods\t\(stats(.pods_ready_at; .children_ready_at)) (kube-controller-manager)",
    "  first Ready after children ready\t\(stats(.children_ready_at; .ready_at)) (the operator)",
    "ComponentsReady events\t\(map(.became_ready) | add) for \($n) objects (more than one: Ready flipped, or announced twice); ComponentFailing \(map(.became_degraded) | add)",
    (map(select(.pods_ready_at != null and .ready_at != null and .ready_at - .pods_ready_at > 60))
      | sort_by(.pods_ready_at - .ready_at) | .[:5][]
      | "  slow: \(.name)\tpods Ready +\(.pods_ready_at - $start | s) s, children ready +\(if .children_ready_at then .children_ready_at - $start | s else "?" end) s, first Ready +\(.ready_at - $start | s) s")' \
    "$workdir/per-object.json"
} | while IFS=$'\t' read -r label value; do row "$label" "$value"; done
row "create call took" "$(seconds_since "$start" "$created") s"
if [[ -n "$all_ready" ]]; then
  row "all Ready (polled every 1 s)" "$(seconds_since "$start" "$all_ready") s after the create"
else
  row "all Ready (polled every 1 s)" "not within ${READY_TIMEOUT} s"
fi
per_object() { awk -v r="$1" -v n="$COUNT" 'BEGIN { printf "%d (%.1f per object)", r, r / n }'; }
row "reconciles when all were Ready" "$(per_object "$reconciles_at_ready")"
row "reconciles until settled" "$(per_object "$reconciles"), ${settle_seconds} s after all Ready: $settled"
row "reconcile failures" "$failures"
if [[ -n "$duration_count" ]] && ((duration_count > 0)); then
  row "reconcile duration" "$(awk -v s="$duration_sum" -v c="$duration_count" 'BEGIN { printf "%.0f ms on average", 1000 * s / c }')"
fi
row "operator peak RSS (VmHWM)" "$(awk -v p="$peak_rss_kib" -v c="$rss_kib" 'BEGIN { printf "%.1f MiB (now %.1f MiB); target < 50 MiB", p / 1024, c / 1024 }')"
row "operator CPU time" "$cpu_seconds s"
