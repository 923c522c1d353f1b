#!/usr/bin/env bash
# Measures how long a topic is unavailable when its owning broker dies: etcd, three bookies
# and two brokers (lease TTL $TTL, E=3 Qw=2 Qa=2) on this machine, `magnetar perf produce`
# through the first broker at a fixed rate, and SIGKILL to the topic's owner after
# $KILL_AFTER seconds. Prints perf's figures: every message is acknowledged in the end, and
# "longest wait for a receipt" is the unavailability window (lease expiry + lookup + fencing
# recovery of the old ledger + reconnect).
#
#   bench/failover.sh [SECONDS] [RATE]      (default: 20 s at 2000 msg/s)
#
# A benchmark, not a test: it uses ports from BASE_PORT (default 27000) upwards, keeps its
# data in a temporary directory, and stops everything it started on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-20}
rate=${2:-2000}
ttl=${TTL:-5s}
kill_after=${KILL_AFTER:-5}
base=${BASE_PORT:-27000}

scripts/setup.sh >/dev/null
cargo build --release --quiet -p cli --bin magnetar
bin=$PWD/target/release/magnetar
dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

wait_line() { # FILE PATTERN: wait up to 60 s for a line in a log
  for _ in $(seq 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "failover: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

etcd_url=http://127.0.0.1:$base
etcd --data-dir "$dir/etcd" --listen-client-urls "$etcd_url" --advertise-client-urls "$etcd_url" \
     --listen-peer-urls "http://127.0.0.1:$((base + 1))" >"$dir/etcd.log" 2>&1 &
pids+=($!)
meta=etcd://127.0.0.1:$base
for _ in $(seq 600); do
  "$bin" ledgers --meta-url "$meta" list-bookies >/dev/null 2>&1 && break; sleep 0.1
done
for i in 1 2 3; do
  "$bin" bookie --meta-url "$meta" --bookie-id "bookie$i" \
      --journal-dir "$dir/bookie$i/journal" --ledger-dir "$dir/bookie$i/ledgers" \
      --bind "127.0.0.1:$((base + 10 + i))" --http-bind "127.0.0.1:$((base + 20 + i))" \
      >"$dir/bookie$i.log" 2>&1 &
  pids+=($!)
  wait_line "$dir/bookie$i.log" "ready"
done
declare -A broker_pid
for i in 1 2; do
  MAGNETAR_OWNERSHIP__LEASE_TTL=$ttl "$bin" broker --meta-url "$meta" \
      --bind "127.0.0.1:$((base + 30 + i))" --http-bind "127.0.0.1:$((base + 40 + i))" \
      --ensemble 3 --write-quorum 2 --ack-quorum 2 >"$dir/broker$i.log" 2>&1 &
  pids+=($!)
  broker_pid[pulsar://127.0.0.1:$((base + 30 + i))]=$!
  wait_line "$dir/broker$i.log" "ready"
done

echo "failover: 2 brokers (lease $ttl), 3 bookies (E=3 Qw=2 Qa=2); producing $secs s at $rate msg/s through both brokers' URLs; the owner gets SIGKILL after $kill_after s"
"$bin" perf produce --service-url "pulsar://127.0.0.1:$((base + 31)),127.0.0.1:$((base + 32))" --rate "$rate" \
    --duration "${secs}s" --size 1024 >"$dir/perf.out" 2>"$dir/perf.err" &
perf=$!
sleep "$kill_after"
# The owner of the perf topic: whichever broker's log says it loaded the managed ledger.
for url in "${!broker_pid[@]}"; do
  port=${url##*:}; i=$((port - base - 30))
  if grep -q "managed ledger opened" "$dir/broker$i.log"; then
    echo "failover: killing broker $i ($url), the owner"
    kill -9 "${broker_pid[$url]}"
  fi
done
wait "$perf" || { cat "$dir/perf.err" >&2; exit 1; }
cat "$dir/perf.out"
grep -c "reconnecting" "$dir/perf.err" | sed 's/^/failover: reconnect attempts logged by perf: /'
