#!/usr/bin/env bash
# The whole test suite: installs what is missing (scripts/setup.sh), then runs every test in
# the workspace — unit tests, the metadata conformance suite against a real etcd and the
# embedded store, the process-level fault tests — then the deployment checks: the Kubernetes
# manifests rendered and validated (deploy/kubernetes/check.py) and the Compose cluster's fault
# tests (deploy/compose/test.sh; skipped, saying so, where no Docker engine runs).
# Arguments go to the test runner and run only those workspace tests (e.g. `scripts/test.sh t72`).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# The process-level tests run the `magnetar` binary; build it up front (the harness would
# otherwise build it from inside the first tests, against their time limit).
cargo build -p cli --bin magnetar

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi
if [ $# -eq 0 ]; then
  .venv/bin/python deploy/kubernetes/check.py target/debug/magnetar || status=$?
  deploy/compose/test.sh || status=$?
fi
exit "$status"
