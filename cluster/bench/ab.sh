#!/usr/bin/env bash
# Two builds compared back to back: runs the same bench against fresh local 3-node clusters
# of build A and build B in turn (A B A B ...), so that both see the same hour of this
# machine, whose speed drifts by 20-30% from one hour to the next. Prints every run, then
# each build's median gifts/s and node CPU seconds.
#
#   cluster/bench/ab.sh A_BIN_DIR B_BIN_DIR [--shards 16] [--pairs 2]
#                       [--a-node-arg ARG ...] [--b-node-arg ARG ...] [-- BENCH ARGS ...]
#
# A_BIN_DIR and B_BIN_DIR hold coinledger-node, coinledger-cluster and coinctl (e.g. the
# target/release of two checkouts; the same directory twice to compare node arguments, given
# to build A's or B's nodes with --a-node-arg / --b-node-arg, e.g. --b-node-arg=--one-thread).
# The bench arguments default to 150,000 batched gifts:
# --workload gift-storm --batch 256 --clients 16 --gifts 150000 --duration 600s.
# Compare node CPU (user + system seconds the 3 nodes spent for the same gifts) rather than
# gifts/s: it varies less from run to run.
set -euo pipefail

[[ $# -ge 2 ]] || { sed -n '2,16p' "$0"; exit 2; }
dir_a=$(cd "$1" && pwd)
dir_b=$(cd "$2" && pwd)
shift 2
shards=16
pairs=2
base_port=7451
args_a=()
args_b=()
bench=(--workload gift-storm --batch 256 --clients 16 --gifts 150000 --duration 600s)
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shards) shards="$2"; shift 2 ;;
    --pairs) pairs="$2"; shift 2 ;;
    --base-port) base_port="$2"; shift 2 ;;
    --a-node-arg) args_a+=("$2"); shift 2 ;;
    --a-node-arg=*) args_a+=("${1#--a-node-arg=}"); shift ;;
    --b-node-arg) args_b+=("$2"); shift 2 ;;
    --b-node-arg=*) args_b+=("${1#--b-node-arg=}"); shift ;;
    --) shift; bench=("$@"); break ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "ab.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
for dir in "$dir_a" "$dir_b"; do
  for exe in coinledger-node coinledger-cluster coinctl; do
    [[ -x "$dir/$exe" ]] || { echo "ab.sh: $dir/$exe is missing" >&2; exit 1; }
  done
done

root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=lib.sh
source "$root/cluster/bench/lib.sh"
work=$(mktemp -d /tmp/coinledger-ab.XXXXXX)
trap 'rm -rf "$work"' EXIT

declare -A rates cpus
for pair in $(seq 1 "$pairs"); do
  for build in A B; do
    dir=$dir_a
    node_args=("${args_a[@]}")
    if [[ $build == B ]]; then dir=$dir_b; node_args=("${args_b[@]}"); fi
    line=$(fresh_run "$dir" "$shards" "${bench[@]}")
    echo "pair $pair build $build: $line"
    rates[$build]+="$(field 'gifts\/s' "$line") "
    cpus[$build]+="$(field node_cpu_s "$line") "
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
for build in A B; do
  echo "build $build: median gifts/s $(median <<< "${rates[$build]}") median node_cpu_s $(median <<< "${cpus[$build]}") (runs: gifts/s ${rates[$build]}; node CPU s ${cpus[$build]})"
done
