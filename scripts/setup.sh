#!/usr/bin/env bash
# Installs what testing Magnetar needs on a new Debian/Ubuntu machine, and nothing that is
# already there (building alone needs nothing: `protoc` comes from crates.io, see
# .cargo/config.toml):
#   - etcd (Debian's etcd-server, 3.4+): the metadata and cluster tests start real etcd processes;
#   - pkg-config + libssl-dev: the Rust `pulsar` crate (a compatibility-test peer) links OpenSSL;
#   - python3-venv when Python's venv module is missing, then a virtualenv (.venv) with the
#     official Python client, pinned, with fastavro (its Avro schemas), and
#     kubernetes-validate, pinned (the manifests' schema check, deploy/kubernetes/check.py).
# Idempotent; safe to run before every build.
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
pkg-config --exists openssl 2>/dev/null || need+=(libssl-dev)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)

if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install ${need[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The package may start a system etcd on 2379; tests use their own on ephemeral ports,
  # so stop it if a service manager started one.
  if [[ " ${need[*]} " == *" etcd-server "* ]] && command -v systemctl >/dev/null 2>&1; then
    "${sudo[@]}" systemctl disable --now etcd >/dev/null 2>&1 || true
  fi
fi

command -v etcd >/dev/null || { echo "setup: etcd still missing after installing etcd-server" >&2; exit 1; }

# The official Python client, pinned, for the compatibility tests (integration-tests/python).
PULSAR_CLIENT_VERSION=3.13.0
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/.venv"
if ! "$venv/bin/python" -c "import pulsar, sys; sys.exit(0 if pulsar.__version__ == '$PULSAR_CLIENT_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: creating $venv with pulsar-client==$PULSAR_CLIENT_VERSION" >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "pulsar-client==$PULSAR_CLIENT_VERSION"
fi
# Avro support for the client's AvroSchema (its `avro` extra), pinned.
FASTAVRO_VERSION=1.12.1
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('fastavro') == '$FASTAVRO_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing fastavro==$FASTAVRO_VERSION into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "fastavro==$FASTAVRO_VERSION"
fi
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(0 if m.version('kubernetes-validate') == '$KUBERNETES_VALIDATE_VERSION' else 1)" >/dev/null 2>&1; then
  echo "setup: installing kubernetes-validate==$KUBERNETES_VALIDATE_VERSION into $venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
