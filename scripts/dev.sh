#!/usr/bin/env bash
# Brings up a working single-node cloud on this machine: one server (SQLite under
# ./andromede-data), one datacenter, and a local agent on real libvirt/QEMU guests when libvirt can
# be installed and started here, else on the fake driver (it says so). Extra arguments go to
# `andromede-server dev` (see `andromede-server dev --help`). Set ANDROMEDE_NO_LIBVIRT=1 to skip
# the libvirt setup entirely.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

features=()
if [ "${ANDROMEDE_NO_LIBVIRT:-0}" != 1 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    if bash scripts/setup-libvirt.sh && bash scripts/build-guest-image.sh target/guest; then
      features=(--features andromede-agent/libvirt)
    else
      echo "dev: libvirt or the test guest could not be set up; the local agent will use the FAKE driver" >&2
    fi
  elif pkg-config --exists libvirt 2>/dev/null; then
    # Not root: use a libvirt that is already installed, if any.
    features=(--features andromede-agent/libvirt)
  else
    echo "dev: not root, and no libvirt installed: the local agent will use the FAKE driver" >&2
  fi
fi

cargo build --release -p andromede-server -p andromede-agent -p cloudctl "${features[@]}"
exec target/release/andromede-server dev --guest-dir target/guest "$@"
