#!/usr/bin/env bash
# The whole test suite: installs what is missing (scripts/setup.sh), then runs every test in
# the workspace — unit tests, the metadata conformance suite against a real etcd and the
# embedded store, and the process-level fault tests.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# The process-level tests run the `magnetar` binary; build it up front (the harness would
# otherwise build it from inside the first tests, against their time limit).
cargo build -p cli --bin magnetar

if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
