#!/usr/bin/env bash
# Installs what building and testing Magnetar needs on a fresh Debian/Ubuntu machine, and
# nothing that is already there:
#   - protoc (Debian's protobuf-compiler): our proto crate and etcd-client compile .proto files;
#   - etcd (Debian's etcd-server, 3.4+): the metadata tests start real etcd processes.
# Idempotent; safe to run before every build.
set -euo pipefail

need=()
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)

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

command -v protoc >/dev/null && command -v etcd >/dev/null || {
  echo "setup: protoc or etcd still missing after install" >&2
  exit 1
}
