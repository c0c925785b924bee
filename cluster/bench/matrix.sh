#!/usr/bin/env bash
# The standard throughput matrix: for every shard count and every workload of the matrix,
# starts a fresh local 3-node cluster, runs `coinctl bench` against it, and writes a markdown
# table (with the date, the machine, its speed and the commit) to stdout and to --out.
#
#   cluster/bench/matrix.sh [--duration 20s] [--shards "16 64"] [--out bench-matrix.md]
#                           [--node-arg ARG ...]
#
# Every run gets its own empty cluster, so no run is slowed by the data of the runs before
# it and rows compare as they stand (a second batched run on one 64-shard cluster measured
# 10,319 gifts/s after a first of 11,413). Every figure comes from the bench's own last line
# (`coinledger gifts/s=.. p50_ms=.. p99_ms=.. p999_ms=.. errors=..`); node CPU is the user and
# system time the three node processes spent during the bench (its seeding included), RSS
# the largest resident set of the three, read from /proc right after the run. A run whose
# bench fails (conservation broken, cluster unreachable) fails the script. Every --node-arg
# goes to every node (e.g. --node-arg=--one-thread) and is named in the table's heading.
set -euo pipefail

duration=20s
shard_counts="16 64"
out=bench-matrix.md
base_port=7401
extra_node_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --duration) duration="$2"; shift 2 ;;
    --shards) shard_counts="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --base-port) base_port="$2"; shift 2 ;;
    --node-arg) extra_node_args+=("$2"); shift 2 ;;
    --node-arg=*) extra_node_args+=("${1#--node-arg=}"); shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "matrix.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# workload | batch | clients [| auto: single calls through the client's automatic batching]
runs=(
  "gift-storm 1 16"
  "gift-storm 1 16 auto"
  "gift-storm 256 16"
  "gift-storm 2048 16"
  "hot-one 256 16"
  "uniform 256 16"
  "mixed 1 16"
)

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
echo "building release binaries ..." >&2
cargo build --release --locked -p coinledger-node -p coinledger-client -p coinledger-cluster --bins --example replica_cost >&2
bin="$root/target/release"

# Machines of this kind differ by up to 1.8x in speed, and one machine drifts from hour to hour,
# so the table says how fast this one ran: the median wall time per gift of three
# `replica_cost` runs (the shard replicas of 3 nodes in one process, real fsyncs, no network),
# before and after the matrix. Lower is faster; a matrix compares to another as these do.
speed_us_per_gift() {
  local runs=() i
  for i in 1 2 3; do
    runs+=("$("$bin/examples/replica_cost" --gifts 20000 2>/dev/null | sed -n 's/.*us_per_gift=\([0-9.]*\).*/\1/p')")
  done
  [[ -n "${runs[0]}" && -n "${runs[1]}" && -n "${runs[2]}" ]] || { echo "matrix.sh: replica_cost failed" >&2; exit 1; }
  printf '%s\n' "${runs[@]}" | sort -n | sed -n 2p
}
echo "machine speed (replica_cost) ..." >&2
speed_before=$(speed_us_per_gift)

# shellcheck source=lib.sh
source "$root/cluster/bench/lib.sh"
node_args=("${extra_node_args[@]}")
work=$(mktemp -d /tmp/coinledger-matrix.XXXXXX)
trap 'stop_cluster; rm -rf "$work"' EXIT

rows=()
for shards in $shard_counts; do
  for run in "${runs[@]}"; do
    read -r workload batch clients mode <<< "$run"
    auto=()
    label="$batch"
    if [[ "${mode:-}" == auto ]]; then auto=(--auto-batch); label="$batch (auto-batched)"; fi
    echo "shards=$shards workload=$workload batch=$label clients=$clients duration=$duration ..." >&2
    line=$(fresh_run "$bin" "$shards" --workload "$workload" --batch "$batch" "${auto[@]}" \
      --clients "$clients" --duration "$duration")
    echo "$line" >&2
    rows+=("| $shards | $workload | $label | $clients | $(field 'gifts\/s' "$line") | $(field p50_ms "$line") | $(field p99_ms "$line") | $(field p999_ms "$line") | $(field errors "$line") | $(field node_cpu_s "$line") | $(field rss_mib "$line") | $(field entries_per_k "$line") | $(field readies_per_k "$line") |")
  done
done

speed_after=$(speed_us_per_gift)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
{
  echo "Throughput matrix, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
  echo "Machine: $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)."
  echo "3 nodes on loopback, 3 replicas per shard, fsync on; $duration per run, each on a fresh cluster; 10,000 senders, 100 creators, zipf 1.1."
  echo "Machine speed: replica_cost (16 shards, 20,000 gifts, median of 3) $speed_before us per gift before the runs, $speed_after after (lower is faster)."
  if [[ ${#node_args[@]} -gt 0 ]]; then echo "Every node started with: ${node_args[*]}."; fi
  echo
  echo "| shards | workload | batch | clients | gifts/s | p50 ms | p99 ms | p99.9 ms | errors | node CPU s | max RSS MiB | raft entries / 1k gifts | Readies / 1k gifts |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "batch 1 (auto-batched): 16 tasks make single-command calls through one client with automatic batching"
  echo "(concurrent calls share frames of one SubmitStream, each answered on its own), as a backend service with 16 concurrent callers would."
  echo "errors are refused commands; in mixed they are business refusals (a cash-out above the creator's"
  echo "diamonds, or by a creator no gift has reached yet), every one checked by the bench's conservation audit."
  echo "node CPU s: user + system time of the three nodes during the bench (seeding 10,000 accounts included);"
  echo "max RSS MiB: the largest node's resident set right after the run."
  echo "raft entries / 1k gifts, Readies / 1k gifts: raft entries the shard leaders proposed and raft-rs Readies"
  echo "the replicas handled, summed over the nodes, per 1,000 gifts (the bench's cluster work line)."
} | tee "$out"
