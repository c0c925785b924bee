# Shared by the bench scripts (matrix.sh, ab.sh): one bench on a fresh local 3-node cluster.
# Source it, then set `work` (a scratch directory) and `base_port` (and, if any, `node_args`:
# arguments for every node) before calling fresh_run. Not a script of its own.

node_args=()

up_pid=""
stop_cluster() {
  if [[ -n "$up_pid" ]]; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
    up_pid=""
  fi
}

bench_endpoints() { echo "127.0.0.1:$base_port,127.0.0.1:$((base_port + 1)),127.0.0.1:$((base_port + 2))"; }

# Starts an empty cluster of $2 shards from the binaries in $1, with its data under $3;
# sets up_pid.
start_cluster() {
  local bin=$1 shards=$2 data=$3
  "$bin/coinledger-cluster" up --nodes 3 --shards "$shards" --base-port "$base_port" --data-dir "$data" \
    --node-bin "$bin/coinledger-node" "${node_args[@]/#/--node-arg=}" > "$data.up.log" 2>&1 &
  up_pid=$!
  for _ in $(seq 1 120); do
    grep -q "cluster up" "$data.up.log" && return 0
    kill -0 "$up_pid" 2>/dev/null || { cat "$data.up.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "$(basename "$0"): the cluster with $shards shards did not start" >&2
  stop_cluster
  exit 1
}

# The node processes of the cluster whose data is under $1.
node_pids() { pgrep -f "coinledger-node .*--data-dir $1/node-" || true; }

# User + system CPU of the processes $@, in clock ticks.
cpu_ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$(( total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0) ))
  done
  echo "$total"
}

# Runs `coinctl bench ARGS...` (from the binaries in $1) against a fresh cluster of $2 shards,
# then stops the cluster and deletes its data. Prints the bench's last line followed by
# ` node_cpu_s=<user + system s of the 3 nodes during the bench> rss_mib=<largest node's RSS
# after it> entries_per_k=<raft entries proposed per 1,000 gifts> readies_per_k=<Readies per
# 1,000 gifts>` (the last two from the bench's cluster work line, summed over the nodes; "-"
# if it has none). A failed bench (conservation broken, cluster unreachable) exits the script.
fresh_run() {
  local bin=$1 shards=$2
  shift 2
  # Called in a command substitution (a subshell), so the cluster is stopped and its data
  # deleted here, before the subshell ends, also when the bench fails.
  local data="$work/run"
  start_cluster "$bin" "$shards" "$data"
  local pids
  mapfile -t pids < <(node_pids "$data")
  local log="$data.bench.log" cpu_before
  cpu_before=$(cpu_ticks "${pids[@]}")
  if ! "$bin/coinctl" bench --endpoints "$(bench_endpoints)" "$@" > "$log" 2>&1; then
    tail -20 "$log" >&2
    echo "$(basename "$0"): bench failed (shards=$shards $*)" >&2
    stop_cluster
    exit 1
  fi
  local cpu_s rss_kib=0 pid kib
  cpu_s=$(awk -v t=$(( $(cpu_ticks "${pids[@]}") - cpu_before )) -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t / hz}')
  for pid in "${pids[@]}"; do
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    (( kib > rss_kib )) && rss_kib=$kib
  done
  local work entries readies
  work=$(grep '^cluster work per 1,000 gifts' "$log" | tail -1)
  entries=$(sed -n 's/.*: \([0-9.]*\) raft entries proposed.*/\1/p' <<< "$work")
  readies=$(sed -n 's/.* \([0-9.]*\) readies.*/\1/p' <<< "$work")
  echo "$(grep '^coinledger gifts/s=' "$log" | tail -1) node_cpu_s=$cpu_s rss_mib=$((rss_kib / 1024))" \
    "entries_per_k=${entries:--} readies_per_k=${readies:--}"
  stop_cluster
  rm -rf "$data"
}

# The value of field $1 (e.g. p50_ms) in a line printed by fresh_run ($2).
field() { sed -n "s/.*[ ]$1=\([^ ]*\).*/\1/p" <<< " $2"; }
