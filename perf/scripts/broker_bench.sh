#!/usr/bin/env bash
# Broker benchmark, one command: starts a release nameserver and broker on a scratch
# store, runs rmq_bench scenarios against them, and measures the references in the
# same run (localhost TCP round trip between two blocking threads; O_DIRECT sequential
# write of the store's disk with dd). Prints everything; the JSON summaries land in
# $OUT (default ./broker-bench-results).
#
#   perf/scripts/broker_bench.sh [extra broker args, e.g. --set flush=sync]
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-./broker-bench-results}
DATA=${DATA:-./broker-bench-data}
SECS=${SECS:-8}
mkdir -p "$OUT"
rm -rf "$DATA" && mkdir -p "$DATA"

cargo build --release -q -p nameserver -p node -p perf --bins
bin=${CARGO_TARGET_DIR:-./target}/release
NS=127.0.0.1:39876
BROKER=127.0.0.1:40911

$bin/nameserver --listen $NS >"$OUT/nameserver.log" 2>&1 &
ns=$!
$bin/broker --namesrv $NS --listen $BROKER --store-dir "$DATA/store" "$@" \
    >"$OUT/broker.out" 2>"$OUT/broker.log" &
broker=$!
cleanup() {
    kill -TERM $broker 2>/dev/null && wait $broker 2>/dev/null || true
    kill -TERM $ns 2>/dev/null && wait $ns 2>/dev/null || true
    rm -rf "$DATA"
}
trap cleanup EXIT
for _ in $(seq 100); do grep -q "ready on" "$OUT/broker.out" 2>/dev/null && break; sleep 0.1; done
cat "$OUT/broker.out"

run() { # name, rmq_bench args...
    local name=$1; shift
    echo "== $name: rmq_bench $*"
    $bin/rmq_bench "$@" --namesrv $NS --json "$OUT/$name.json" | grep -v '^ *[{}"]' || true
    python3 -c "import json,sys; d=json.load(open('$OUT/$name.json')); l=d['latency_us']; print(f\"   {d['msgs_per_sec']:.0f} msgs/s, {d['mb_per_sec']:.1f} MB/s, p50 {l['p50']} us, p99 {l['p99']} us, failures {d['failures']}\")"
}

echo "== reference: localhost TCP round trip (blocking threads)"
$bin/rmq_bench echo | tee "$OUT/echo.json" | grep -E '"p50"|"p99"'
echo "== reference: O_DIRECT sequential write, 1 GiB in 4 MiB blocks (dd)"
dd if=/dev/zero of="$DATA/dd.bin" bs=4M count=256 oflag=direct 2>&1 | tail -1 | tee "$OUT/dd.txt"
rm -f "$DATA/dd.bin"

run send-1-inflight produce --topic BenchSingle --size 1024 --connections 1 --inflight 1 --secs $SECS
run send-256-inflight produce --topic BenchSingle --size 1024 --connections 4 --inflight 64 --secs $SECS
run send-batch-32x1k produce --topic BenchBatch --size 1024 --batch 32 --connections 2 --inflight 16 --secs $SECS
run send-small-batch-64x128 produce --topic BenchHot --size 128 --batch 64 --connections 2 --inflight 8 --secs 3
run consume-hot-32 consume --topic BenchHot --group bench_hot_32 --pull-batch 32 --connections 8 --secs 3
run consume-backlog-32 consume --topic BenchBatch --group bench_cold --pull-batch 32 --connections 8 --secs $SECS
