#!/usr/bin/env bash
# Runs the simulated power-loss tests with many more seeds than CI does (CI: 30 seeds of 20
# cuts for the bookie, 20 of 15 for the embedded store, plus the kept seeds).
#   usage: scripts/power-loss.sh [SEEDS] [FIRST_SEED] [CUTS_PER_SEED]
# A failing seed is printed in the panic message; keep it in bookie/tests/power_loss_seeds.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export MAGNETAR_POWER_LOSS_SEEDS=${1:-1000}
export MAGNETAR_POWER_LOSS_FIRST_SEED=${2:-1000}
export MAGNETAR_POWER_LOSS_CUTS=${3:-20}
cargo nextest run --release -p bookie -p meta -E 'test(power_loss)' --no-fail-fast
