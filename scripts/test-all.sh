#!/usr/bin/env bash
# The whole test suite: formatting, lints, build, unit, storage and end-to-end tests.
# Installs what it needs (only a Rust toolchain for now) and starts no daemon it does not stop.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is required (https://rustup.rs)" >&2
  exit 1
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== build binaries used by the end-to-end tests"
cargo build -p andromede-server -p cloudctl -p terraform-provider-andromede
echo "== cargo test"
ANDROMEDE_BIN_DIR="$PWD/target/debug" cargo test --workspace -- --test-threads=2
