#!/usr/bin/env bash
# The cost of security: `magnetar perf produce` (1 KiB messages, one topic) against one
# standalone with token authentication, over plain `pulsar://` and over `pulsar+ssl://`
# (TLS 1.3, a fresh RSA-2048 certificate), alternating ROUNDS times, and prints each run and
# the TLS/plain ratio of the medians.
#
#   bench/tls-cost.sh [SECONDS] [ROUNDS]      (default: 15 s per run, 3 rounds)
#
# MAGNETAR_BIN=path uses that binary instead of building target/release/magnetar.
# A benchmark, not a test: it always exits 0 unless something fails to run.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-15}
rounds=${2:-3}
if [ -n "${MAGNETAR_BIN:-}" ]; then
  bin=$(readlink -f "$MAGNETAR_BIN")
else
  cargo build --release --quiet -p cli --bin magnetar
  bin=$PWD/target/release/magnetar
fi
work=$(mktemp -d)
trap 'kill "$sa" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
cd "$work"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj "/CN=localhost" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -set_serial 1 -days 2 -extfile ext -out broker.pem 2>/dev/null
"$bin" tokens create-secret-key --output secret.key
token=$("$bin" tokens create --subject bench --secret-key "file://$work/secret.key")
MAGNETAR_TLS_BIND=127.0.0.1:0 MAGNETAR_TLS_CERTIFICATE_FILE=$work/broker.pem MAGNETAR_TLS_KEY_FILE=$work/broker.key \
MAGNETAR_AUTHENTICATION_ENABLED=true MAGNETAR_AUTHENTICATION_PROVIDERS=token \
MAGNETAR_TOKEN_SECRET_KEY=file://$work/secret.key MAGNETAR_LOG=warn \
  "$bin" standalone --data-dir "$work/data" --bind 127.0.0.1:0 --http-bind 127.0.0.1:0 > sa.log 2>&1 &
sa=$!
for _ in $(seq 1 300); do grep -q ' ready: ' sa.log && break; sleep 0.1; done
plain=$(sed -n 's/.* service=\([^ ]*\).*/\1/p' sa.log)
tls=$(sed -n 's/.* tls=\([^ ]*\).*/\1/p' sa.log)
[ -n "$plain" ] && [ -n "$tls" ] || { cat sa.log; echo "standalone did not start"; exit 1; }
echo "standalone: $plain and $tls, token authentication; ${secs} s per run, 1 KiB messages"
run() {
  MAGNETAR_TOKEN=$token "$bin" perf produce --service-url "$1" --tls-trust-cert-path ca.pem \
    --duration "${secs}s" --stats-interval 0s --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["produced"]["msg_per_sec"])'
}
p=(); t=()
for r in $(seq 1 "$rounds"); do
  a=$(run "$plain"); b=$(run "$tls")
  p+=("$a"); t+=("$b")
  printf 'round %d  plain %8.0f msg/s   tls %8.0f msg/s\n' "$r" "$a" "$b"
done
python3 - "${p[*]}" "${t[*]}" <<'PY'
import statistics, sys
p = [float(x) for x in sys.argv[1].split()]; t = [float(x) for x in sys.argv[2].split()]
mp, mt = statistics.median(p), statistics.median(t)
print(f"median  plain {mp:8.0f} msg/s   tls+token {mt:8.0f} msg/s   tls/plain {100*mt/mp:.0f} %")
PY
