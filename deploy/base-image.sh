#!/usr/bin/env bash
# Builds, from Debian's packages and with no image registry, the two base images that
# deploy/Dockerfile names in its FROM lines, and tags them with those names:
#
#   debian:bookworm-slim      the runtime base: `mmdebstrap --variant=minbase bookworm`, imported
#   rust:1.95-slim-bookworm   the build base: the same plus gcc, libc6-dev and ca-certificates,
#                             with this machine's Rust toolchain (rustup's `stable`, which must be
#                             1.95) under /usr/local/rust, laid out like the official image
#                             (CARGO_HOME=/usr/local/cargo, cargo and rustc on PATH), trusting
#                             the CA certificates this machine trusts
#
# Where a registry is reachable these are the official images and this script is not needed:
# the same Dockerfile builds from them unchanged. An image that already exists is kept
# (`--force` rebuilds both). Needs root (mmdebstrap's root mode) and a Docker engine; installs
# mmdebstrap with apt-get when it is missing.
#
# usage: deploy/base-image.sh [--force]
set -euo pipefail

RUNTIME=debian:bookworm-slim
BUILD=rust:1.95-slim-bookworm
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
force=0
[ "${1:-}" = "--force" ] && force=1

log() { echo "base-image: $*" >&2; }
have() { [ "$force" = 0 ] && docker image inspect "$1" >/dev/null 2>&1; }

docker info >/dev/null 2>&1 || { log "no Docker engine answers (docker info failed)"; exit 1; }
if ! command -v mmdebstrap >/dev/null; then
  log "installing mmdebstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >/dev/null
fi

# Removes what a container never needs (docs, man pages, apt lists) from a root file system.
slim='rm -rf "$1"/usr/share/doc/* "$1"/usr/share/man/* "$1"/usr/share/info/* "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*'

if have "$RUNTIME"; then
  log "$RUNTIME exists (--force rebuilds)"
else
  log "building $RUNTIME from $MIRROR"
  mmdebstrap --quiet --variant=minbase --customize-hook="$slim" "$SUITE" - "$MIRROR" \
    | docker import --change 'CMD ["bash"]' - "$RUNTIME" >/dev/null
fi

if have "$BUILD"; then
  log "$BUILD exists (--force rebuilds)"
else
  toolchain=$(rustup +stable which rustc 2>/dev/null | xargs -r dirname | xargs -r dirname)
  [ -n "$toolchain" ] && [ -x "$toolchain/bin/cargo" ] || { log "no rustup stable toolchain here"; exit 1; }
  version=$("$toolchain/bin/rustc" --version | awk '{print $2}')
  case "$version" in 1.95.*) ;; *) log "the stable toolchain is $version, the image is named for 1.95"; exit 1 ;; esac
  log "building $BUILD from $MIRROR and the toolchain in $toolchain ($version)"
  copy="mkdir -p \"\$1/usr/local/rust\" \"\$1/usr/local/cargo/bin\" && cp -a '$toolchain/bin' '$toolchain/lib' \"\$1/usr/local/rust/\""
  copy="$copy && for b in cargo rustc rustdoc; do ln -s /usr/local/rust/bin/\$b \"\$1/usr/local/cargo/bin/\$b\"; done"
  # Trust what this machine trusts: a TLS-intercepting proxy in front of crates.io has its CA
  # in this machine's bundle, and cargo in the build stage must accept it too.
  copy="$copy && cp /etc/ssl/certs/ca-certificates.crt \"\$1/etc/ssl/certs/ca-certificates.crt\""
  mmdebstrap --quiet --variant=minbase --include=gcc,libc6-dev,ca-certificates \
    --customize-hook="$slim" --customize-hook="$copy" "$SUITE" - "$MIRROR" \
    | docker import \
      --change 'ENV CARGO_HOME=/usr/local/cargo' \
      --change 'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["bash"]' - "$BUILD" >/dev/null
fi
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^($RUNTIME|$BUILD) " >&2
