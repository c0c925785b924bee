#!/usr/bin/env bash
# The standard throughput matrix: starts a fresh local 3-node cluster per shard count, runs
# `coinctl bench` for every workload of the matrix against it, and writes a markdown table
# (with the date, the machine and the commit) to stdout and to --out.
#
#   cluster/bench/matrix.sh [--duration 20s] [--shards "16 64"] [--out bench-matrix.md]
#
# Every figure comes from the bench's own last line
# (`coinledger gifts/s=.. p50_ms=.. p99_ms=.. p999_ms=.. errors=..`); RSS is the largest
# resident set of the three nodes, read from /proc after the shard count's last run. A run
# whose bench fails (conservation broken, cluster unreachable) fails the script.
set -euo pipefail

duration=20s
shard_counts="16 64"
out=bench-matrix.md
base_port=7401
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --shards) shard_counts="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --base-port) base_port="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "matrix.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# workload | batch | clients [| auto: single calls through the client's automatic batching]
runs=(
  "gift-storm 1 16"
  "gift-storm 1 16 auto"
  "gift-storm 256 16"
  "hot-one 256 16"
  "uniform 256 16"
  "mixed 1 16"
)

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
echo "building release binaries ..." >&2
cargo build --release --locked -p coinledger-node -p coinledger-client -p coinledger-cluster >&2
bin="$root/target/release"

work=$(mktemp -d /tmp/coinledger-matrix.XXXXXX)
up_pid=""
stop_cluster() {
  if [[ -n "$up_pid" ]]; then
    kill -TERM "$up_pid" 2>/dev/null || true
    wait "$up_pid" 2>/dev/null || true
    up_pid=""
  fi
}
trap 'stop_cluster; rm -rf "$work"' EXIT

endpoints="127.0.0.1:$base_port,127.0.0.1:$((base_port + 1)),127.0.0.1:$((base_port + 2))"
rows=()
for shards in $shard_counts; do
  data="$work/shards-$shards"
  "$bin/coinledger-cluster" up --nodes 3 --shards "$shards" --base-port "$base_port" --data-dir "$data" \
    --node-bin "$bin/coinledger-node" > "$work/up-$shards.log" 2>&1 &
  up_pid=$!
  for _ in $(seq 1 120); do
    grep -q "cluster up" "$work/up-$shards.log" && break
    kill -0 "$up_pid" 2>/dev/null || { cat "$work/up-$shards.log" >&2; exit 1; }
    sleep 0.5
  done
  grep -q "cluster up" "$work/up-$shards.log" || { echo "cluster with $shards shards did not start" >&2; exit 1; }
  for run in "${runs[@]}"; do
    read -r workload batch clients mode <<< "$run"
    auto=()
    label="$batch"
    if [[ "${mode:-}" == auto ]]; then auto=(--auto-batch); label="$batch (auto-batched)"; fi
    echo "shards=$shards workload=$workload batch=$label clients=$clients duration=$duration ..." >&2
    log="$work/bench-$shards-$workload-$batch${mode:+-$mode}.log"
    if ! "$bin/coinctl" bench --endpoints "$endpoints" --workload "$workload" --batch "$batch" \
        "${auto[@]}" --clients "$clients" --duration "$duration" > "$log" 2>&1; then
      tail -20 "$log" >&2
      echo "matrix.sh: bench failed (shards=$shards workload=$workload batch=$batch)" >&2
      exit 1
    fi
    line=$(grep '^coinledger gifts/s=' "$log" | tail -1)
    field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<< "$line"; }
    rows+=("| $shards | $workload | $label | $clients | $(field 'gifts\/s') | $(field p50_ms) | $(field p99_ms) | $(field p999_ms) | $(field errors) |")
    tail -1 "$log" >&2
  done
  rss_kib=0
  for pid in $(pgrep -f "coinledger-node .*--data-dir $data/node-" || true); do
    kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
    (( kib > rss_kib )) && rss_kib=$kib
  done
  rows+=("| $shards | *largest node RSS after these runs* | | | $((rss_kib / 1024)) MiB | | | | |")
  stop_cluster
done

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
  echo "Throughput matrix, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)."
  echo "3 nodes on loopback, 3 replicas per shard, fsync on; $duration per run; 10,000 senders, 100 creators, zipf 1.1."
  echo
  echo "| shards | workload | batch | clients | gifts/s | p50 ms | p99 ms | p99.9 ms | errors |"
  echo "|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "batch 1 (auto-batched): 16 tasks make single-command calls through one client with automatic batching"
  echo "(concurrent calls share SubmitBatch calls), as a backend service with 16 concurrent callers would."
  echo "errors are refused commands; in mixed they are business refusals (a cash-out above the creator's"
  echo "diamonds, or by a creator no gift has reached yet), every one checked by the bench's conservation audit."
} | tee "$out"
