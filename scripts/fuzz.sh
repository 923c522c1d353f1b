#!/usr/bin/env bash
# Runs every fuzz target (the tests named fuzz_*: Pulsar frames and commands, payload and batch
# metadata, compaction's batch parsing, schema definitions, the admin REST API, bookie gRPC
# requests, journal and ledger files, the embedded metadata log) for SECONDS each (default 60),
# two at a time. A crash fails its target and saves the input in fuzz/crashes/; add it to
# fuzz/corpus/<target>/ with the fix so every run replays it. The ordinary test suite runs each
# target briefly (common::fuzz::DEFAULT_ITERATIONS inputs).
#   scripts/fuzz.sh [SECONDS]            all targets
#   MAGNETAR_FUZZ_SEED=N scripts/fuzz.sh repeat a run
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-60}
[[ $secs =~ ^[0-9]+$ ]] || { echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2; }
MAGNETAR_FUZZ_SECONDS=$secs exec cargo nextest run --workspace --profile fuzz --no-fail-fast \
  --success-output final -E 'test(/(^|::)fuzz_/)'
