#!/usr/bin/env bash
# Instructions per gift of the shard replicas (raft, raft log, ledger, state flushes, sled),
# counted by callgrind: repeatable for one build whatever else the machine is doing, so two
# builds can be compared by one run each (wall-clock figures on this machine vary by 30%
# from one hour to the next). What it runs is node/examples/replica_cost.rs: 3 in-process
# nodes, each with its own sled database, no network and no actors.
#
#   cluster/bench/replica_cost.sh [--gifts 5000] [any other replica_cost argument ...]
#
# Prints the example's own line, then one line
#   replica_cost instructions_per_gift=<n> instructions=<n> gifts=<n>
# Needs valgrind (Debian: apt-get install valgrind). About 1 minute for 5,000 gifts.
set -euo pipefail

gifts=5000
args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --gifts) gifts="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) args+=("$1"); shift ;;
  esac
done
command -v valgrind >/dev/null || { echo "replica_cost.sh: valgrind is not installed" >&2; exit 1; }

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
cargo build --release --locked -p coinledger-node --example replica_cost >&2
out=$(mktemp /tmp/replica-cost.XXXXXX)
trap 'rm -f "$out"' EXIT
# Costs are zeroed when the measured phase starts; the program exits right after it.
valgrind --tool=callgrind --callgrind-out-file="$out" --zero-before='*measure_gifts*' \
  target/release/examples/replica_cost --gifts "$gifts" "${args[@]}" 2> "$out.log" || {
  tail -20 "$out.log" >&2; rm -f "$out.log"; exit 1; }
rm -f "$out.log"
instructions=$(awk '/^totals:/ {print $2}' "$out")
[[ -n "$instructions" ]] || { echo "replica_cost.sh: callgrind wrote no totals" >&2; exit 1; }
echo "replica_cost instructions_per_gift=$((instructions / gifts)) instructions=$instructions gifts=$gifts"
