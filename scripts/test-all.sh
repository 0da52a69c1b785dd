#!/usr/bin/env bash
# The whole test suite: formatting, lints, build, unit, storage and end-to-end tests, including
# real QEMU guests through libvirt and real Terraform. Installs what it needs: libvirt and QEMU
# (scripts/setup-libvirt.sh, as root, Debian 12) with its daemons left running, and the test guest
# (scripts/build-guest-image.sh). Terraform must be on PATH; its test fails, saying so, without it.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

echo "== libvirt and QEMU"
bash scripts/setup-libvirt.sh
echo "== test guest"
bash scripts/build-guest-image.sh target/guest
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --features andromede-agent/libvirt -- -D warnings
echo "== build binaries used by the end-to-end tests"
cargo build -p andromede-server -p cloudctl -p terraform-provider-andromede -p andromede-agent \
  --features andromede-agent/libvirt
echo "== cargo test"
ANDROMEDE_BIN_DIR="$PWD/target/debug" ANDROMEDE_GUEST_DIR="$PWD/target/guest" \
  cargo test --workspace --features andromede-agent/libvirt -- --test-threads=2
