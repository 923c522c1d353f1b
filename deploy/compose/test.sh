#!/usr/bin/env bash
# The Compose fault tests: builds the images (deploy/base-image.sh first, since no registry may
# be reachable), starts the cluster of deploy/compose/docker-compose.yml under a project name of
# its own, runs deploy/compose/test_cluster.py [SCENARIO...] with the official Python client
# (.venv, from scripts/setup.sh) and removes the cluster, volumes included.
# Skipped, with a line saying so, when no Docker engine answers.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! docker info >/dev/null 2>&1; then
  echo "compose tests: SKIPPED: no Docker engine answers ('docker info' failed)"
  exit 0
fi
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
t0=$SECONDS
deploy/base-image.sh
docker build -q -f deploy/Dockerfile -t magnetar:dev . >/dev/null
docker build -q -t magnetar-etcd:dev deploy/etcd >/dev/null
echo "compose tests: images built in $((SECONDS - t0)) s"

project=magnetartest$$
file=deploy/compose/docker-compose.yml
down() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    "${compose[@]}" -f "$file" -p "$project" logs --no-color --tail 60 >&2 || true
  fi
  "${compose[@]}" -f "$file" -p "$project" down -v --remove-orphans >/dev/null 2>&1 || true
  exit "$rc"
}
trap down EXIT
# a 2 s lease and a 4 s storage timeout keep each failover short (exported: the test's own `up --scale` calls see it too)
export MAGNETAR_LEASE_TTL=2s MAGNETAR_STORAGE_TIMEOUT=4s
"${compose[@]}" -f "$file" -p "$project" up -d 2>&1 | grep -v '^Creating\|^Starting' || true
.venv/bin/python deploy/compose/test_cluster.py "$project" "$@"
echo "compose tests: done in $((SECONDS - t0)) s"
