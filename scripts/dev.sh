#!/usr/bin/env bash
# Brings up a working single-node cloud on this machine: one server (SQLite under
# ./andromede-data), one datacenter, and a local agent on real libvirt/QEMU guests when libvirt can
# be installed and started here, else on the fake driver (it says so, last thing before the server
# starts). Extra arguments go to `andromede-server dev` (see `andromede-server dev --help`). Set
# ANDROMEDE_NO_LIBVIRT=1 to skip the libvirt setup entirely (the agent then runs the fake driver).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

features=()
driver=fake
why=""
if [ "${ANDROMEDE_NO_LIBVIRT:-0}" = 1 ]; then
  why="ANDROMEDE_NO_LIBVIRT=1"
elif [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  if bash scripts/setup-libvirt.sh && bash scripts/build-guest-image.sh target/guest; then
    features=(--features andromede-agent/libvirt)
    driver=libvirt
  else
    why="libvirt or the test guest could not be set up (see the messages above)"
  fi
elif pkg-config --exists libvirt 2>/dev/null && [ -S /run/libvirt/libvirt-sock ]; then
  # Not root: use a libvirt that is already installed and running, if any.
  features=(--features andromede-agent/libvirt)
  driver=libvirt
else
  why="not root, and no running libvirt here"
fi

cargo build --release -p andromede-server -p andromede-agent -p cloudctl "${features[@]}"
if [ "$driver" = fake ]; then
  echo "dev: $why: the local agent runs the FAKE driver (guests are simulated, not real VMs)" >&2
else
  echo "dev: the local agent runs the libvirt driver (real QEMU guests)" >&2
fi
args=(--guest-dir target/guest)
case " $* " in
  *" --agent-driver"*) ;; # the caller chose
  *) args+=(--agent-driver "$driver") ;;
esac
exec target/release/andromede-server dev "${args[@]}" "$@"
