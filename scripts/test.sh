#!/usr/bin/env bash
# The project's test command (README, CI): builds the binaries the end-to-end tests
# start, runs every workspace test, then the third-party client compatibility tests.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins
# The kill -9 crash test drives this example as its child process.
cargo build -p storage --examples
cargo test --workspace
cargo test --manifest-path tests/compat-rust-client/Cargo.toml
