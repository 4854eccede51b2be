#!/usr/bin/env bash
# Starts a single-node cluster on defaults, in the foreground: the nameserver on
# 127.0.0.1:9876. The broker does not exist yet (see README); when it does, it is
# started here too. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --bins
exec ./target/release/nameserver "$@"
