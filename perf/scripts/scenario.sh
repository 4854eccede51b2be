#!/usr/bin/env bash
# One named benchmark scenario, one command: builds the release binaries (into
# $CARGO_TARGET_DIR, default ./target) and runs `rmq_perf scenario NAME`, which starts a
# nameserver and broker on a scratch store under ./perf-data (removed afterwards), measures
# the same-run references and writes report.json + plot.svg (default ./perf-out/DATE-NAME).
#
#   perf/scripts/scenario.sh sweep|soak|queues|latency|recovery [rmq_perf options]
#   perf/scripts/scenario.sh soak --backlog-gib 40 --rate-mb 100
#   perf/scripts/scenario.sh latency --target 10.0.0.5:9876     # any RocketMQ broker
#
# SKIP_BUILD=1 uses the binaries already built.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { sed -n '2,11p' "$0"; exit 2; }
target_dir=${CARGO_TARGET_DIR:-./target}
if [ -z "${SKIP_BUILD:-}" ]; then
    cargo build --release -q -p perf -p node -p nameserver --bins
fi
name=$1; shift
exec "$target_dir/release/rmq_perf" scenario "$name" --bin-dir "$target_dir/release" "$@"
